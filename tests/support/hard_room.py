"""A harder world for the barge-in chain: what real hardware does to the microphone and the speaker.

The daemon's own chain runs here, unchanged: :func:`talkie.shell.factories` builds it (the speex
canceller, the real :class:`~talkie.audio.reference.EchoReference` with its delay estimator, the
speech gate at the shipped settings) around :class:`SimPlayback`, which stands where the real
``Playback`` does: what its callback handed to PortAudio goes into ``history`` at 48 kHz, and each
callback block's DAC time into ``dac_stamp``, as the real one does.

What the world does between the two (:class:`Condition`):

* **Two clocks.** The speaker's DAC runs ``drift_ppm`` fast; the microphone's ADC is the host's
  clock. Its DAC timestamps follow the true clock (``stamps_drift``) or the nominal rate (the
  drift then goes unseen, as with some drivers).
* **Jittering timestamps**: each DAC and ADC time is off by up to ``jitter_ms`` (uniform), as
  USB cards report per 1 ms packet.
* **Hidden delay**: the sound leaves the speaker ``hidden_ms`` later than the timestamps say
  (a sound server's or a USB card's own buffering).
* **A small speaker close by**: ``distance_cm`` from the microphone, the echo ``coupling_db`` above
  (or below) the reference's level at the microphone, driven into soft clipping (``clip``: 0 none,
  1 hard: tanh at a drive of 1 + 4 * clip).
* **A room**: an image-method room (pyroomacoustics) of ``room`` metres with ``rt60_s``; the user
  1-2 m away speaks at ``user_db`` dBFS at the microphone, with an onset of class ``onset``; noise
  (``fan``, ``babble``, ``tv``: a talk show across the room) at ``noise_db`` dBFS.

Everything is at 16 kHz float unless said; the acoustic paths are computed once per condition.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace

import numpy as np

from tests.support import corpus as c

RATE = c.RATE
DEVICE_RATE = 48000
BLOCK = 160  # capture block: 10 ms
OUT_BLOCK = 480  # one output callback: 10 ms at 48 kHz
OUT_LATENCY_S = 0.03  # a callback runs this long before its first sample reaches the DAC

#: Phrases whose first sound is of each onset class, and the voices that say them.
ONSETS = {
    "fricative": ("Stop, stop it.", "Sorry, say that again.", "Fine, that's enough.",
                  "Hold on a second.", "Shush now."),
    "plosive": ("Pardon, what was that?", "Tell me the time.", "Kindly stop.",
                "Buy milk tomorrow.", "Do it again."),
    "vowel": ("Actually, never mind.", "Okay, thank you.", "Excuse me.", "I have a question.",
              "Are you sure?"),
    "nasal": ("No, the other one.", "Maybe later.", "Now, what about tomorrow?",
              "Never mind that.", "My turn now."),
    "whisper": ("Wait, stop.", "Hey, listen.", "Please be quiet.", "Stop talking.",
                "Hang on."),
}
TV_LINES = c.ASSISTANT_LINES + c.USER_LINES


@dataclass(frozen=True)
class Condition:
    """One world: a room, a device in it, a user, a noise."""

    name: str = "default"
    room: tuple[float, float, float] = (4.0, 3.5, 2.6)
    rt60_s: float = 0.4
    distance_cm: float = 10.0
    coupling_db: float = -6.0
    clip: float = 0.0
    drift_ppm: float = 100.0
    stamps_drift: bool = True
    jitter_ms: float = 0.25
    hidden_ms: float = 10.0
    noise: str = "fan"
    noise_db: float = -55.0
    user_db: float = -30.0
    user_m: float = 1.5
    onset: str = "vowel"
    seed: int = 0

    @property
    def easy(self) -> bool:
        """A room in which the goal is no false barge-in at all: coupling <= 0 dB, no clipping."""
        return self.coupling_db <= 0.0 and self.clip == 0.0


def hard_set(n: int, *, seed: int = 0) -> list[Condition]:
    """``n`` conditions drawn over the whole hard range (seeded)."""
    rng = np.random.default_rng(seed)
    rooms = ((3.0, 2.5, 2.4), (4.0, 3.5, 2.6), (5.5, 4.0, 2.7), (7.0, 5.0, 3.0))
    out = []
    for k in range(n):
        room = rooms[k % len(rooms)]
        out.append(Condition(
            name=f"c{k}",
            room=room,
            rt60_s=float(rng.uniform(0.2, 0.8)),
            distance_cm=float(rng.uniform(3, 30)),
            coupling_db=float(rng.uniform(-20, 6)),
            clip=float(rng.choice([0.0, 0.0, 0.3, 0.7, 1.0])),
            drift_ppm=float(rng.uniform(50, 200)) * float(rng.choice([-1, 1])),
            stamps_drift=bool(rng.random() < 0.5),
            jitter_ms=float(rng.uniform(0, 0.5)),
            hidden_ms=float(rng.uniform(0, 30)),
            noise=str(rng.choice(["fan", "babble", "tv", "fan"])),
            noise_db=float(rng.uniform(-60, -46)),
            user_db=float(rng.uniform(-45, -18)),
            user_m=float(rng.uniform(1.0, 2.0)),
            onset=str(list(ONSETS)[k % len(ONSETS)]),
            seed=seed * 1000 + k,
        ))
    return out


# ---- the acoustic paths ----------------------------------------------------------------------


@functools.lru_cache(maxsize=64)
def _rir(room: tuple[float, float, float], rt60: float, src: tuple[float, float, float],
         mic: tuple[float, float, float]) -> np.ndarray:
    import pyroomacoustics as pra

    absorption, order = pra.inverse_sabine(rt60, list(room))
    shoebox = pra.ShoeBox(list(room), fs=RATE, materials=pra.Material(absorption),
                          max_order=min(order, 40))
    shoebox.add_source(list(src))
    shoebox.add_microphone(list(mic))
    shoebox.compute_rir()
    h = np.asarray(shoebox.rir[0][0], dtype=np.float64)
    return (h / max(1e-9, float(np.max(np.abs(h))))).astype(np.float32)  # direct path ~ 1


def paths(cond: Condition) -> dict[str, np.ndarray]:
    """The impulse responses at the microphone: from the speaker, the user, the noise source."""
    w, d, _ = cond.room
    mic = (w * 0.4, d * 0.5, 0.9)  # the device on a table
    speaker = (mic[0] + cond.distance_cm / 100.0, mic[1], mic[2])
    user = (min(w - 0.3, mic[0] + cond.user_m * 0.8), min(d - 0.3, mic[1] + cond.user_m * 0.6),
            1.4)
    far = (w - 0.3, d - 0.3, 1.2)  # the TV, or the people talking across the room
    return {"echo": _rir(cond.room, cond.rt60_s, speaker, mic),
            "user": _rir(cond.room, cond.rt60_s, user, mic),
            "noise": _rir(cond.room, cond.rt60_s, far, mic)}


def soft_clip(x: np.ndarray, clip: float) -> np.ndarray:
    """A small speaker driven too hard: tanh at a drive of 1 + 4 * clip, its peak kept."""
    if clip <= 0.0:
        return x
    drive = 1.0 + 4.0 * clip
    peak = float(np.max(np.abs(x))) or 1.0
    return (np.tanh(drive * x / peak) / np.tanh(drive) * peak).astype(np.float32)


# ---- what the speaker plays, and the microphone hears ----------------------------------------


@dataclass
class Scene:
    """One run: the 48 kHz samples played, their callbacks' DAC stamps, the 16 kHz microphone."""

    played: np.ndarray  # what the playback handed to PortAudio (int16, 48 kHz)
    busy: np.ndarray  # per output block: a turn is playing (the playback's ``busy``)
    dac_true: np.ndarray  # per output block: when its first sample truly left the speaker (s)
    dac_seen: np.ndarray  # per output block: the DAC time PortAudio reported (s)
    mic: np.ndarray  # int16 at 16 kHz, the host's clock, from t = 0
    adc_seen: np.ndarray  # per capture block: the ADC time reported (s)
    onset: int | None  # the user's first sample at the microphone (16 kHz), if a user speaks
    echo_only: np.ndarray  # float: the microphone's echo alone (for ERLE)
    first_answer_s: float  # when the first answer's first sample left the speaker
    #: per output block: when its callback runs (host clock). The DAC's own clock drives the
    #: callbacks (one runs whenever the card wants a block), ``OUT_LATENCY_S`` before the block
    #: reaches the DAC, whatever rate the timestamps claim.
    due: np.ndarray


def _speaker_timeline(talk: np.ndarray, cond: Condition, rng) -> tuple[np.ndarray, ...]:
    """The 16 kHz assistant audio as played: 48 kHz blocks, their true and reported DAC times."""
    import soxr

    played = soxr.resample(talk, RATE, DEVICE_RATE).astype(np.float32)
    blocks = -(-len(played) // OUT_BLOCK)
    played = np.pad(played, (0, blocks * OUT_BLOCK - len(played)))
    rate_true = DEVICE_RATE * (1.0 + cond.drift_ppm * 1e-6)
    start = 0.5  # the speaker's first block leaves at 0.5 s (host clock)
    j = np.arange(blocks)
    dac_true = start + j * OUT_BLOCK / rate_true + cond.hidden_ms / 1000.0
    nominal = start + j * OUT_BLOCK / DEVICE_RATE
    base = (dac_true - cond.hidden_ms / 1000.0) if cond.stamps_drift else nominal
    jitter = rng.uniform(-cond.jitter_ms, cond.jitter_ms, blocks) / 1000.0
    return played, dac_true, base + jitter


def _emitted(played: np.ndarray, dac_true: np.ndarray, cond: Condition, n16: int) -> np.ndarray:
    """The speaker's sound on the host's clock at 16 kHz (clipped, on the drifting DAC clock)."""
    import soxr

    rate_true = DEVICE_RATE * (1.0 + cond.drift_ppm * 1e-6)
    # The DAC's samples, band-limited as a DAC makes them, re-timed onto the host's 48 kHz clock:
    # a proper resampler at the clocks' true ratio (interpolating between the played samples
    # instead would be a filter that changes as the two sample grids slide past each other, a
    # modulation no real DAC adds).
    timed = soxr.resample(soft_clip(played, cond.clip), rate_true, DEVICE_RATE, quality="VHQ")
    start = dac_true[0] * DEVICE_RATE  # where the first played sample sounds, at 48 kHz host
    whole = int(np.floor(start))
    frac = start - whole  # one constant fractional delay: a fixed filter, as a cable would be
    timed = np.concatenate([[0.0], timed]).astype(np.float32)
    timed = (1.0 - frac) * timed[1:] + frac * timed[:-1]
    sound = np.zeros(int(n16 * DEVICE_RATE / RATE), dtype=np.float32)
    m = max(0, min(len(timed), len(sound) - whole))
    sound[whole:whole + m] = timed[:m]
    out = soxr.resample(sound, DEVICE_RATE, RATE).astype(np.float32)[:n16]
    return np.pad(out, (0, n16 - len(out)))


def _noise(cond: Condition, seconds: float, h: np.ndarray, rng) -> np.ndarray:
    if cond.noise == "babble":
        x = c.babble(seconds, -30.0, seed=cond.seed)
    elif cond.noise == "tv":  # one talker and a little music, across the room
        n = int(seconds * RATE)
        x = np.zeros(n, dtype=np.float32)
        pos = 0
        while pos < n:
            s = c.speech(TV_LINES[int(rng.integers(len(TV_LINES)))],
                         c.USER_VOICES[int(rng.integers(len(c.USER_VOICES)))])
            m = min(len(s), n - pos)
            x[pos:pos + m] += s[:m]
            pos += m + int(rng.integers(RATE // 20, RATE // 3))
        t = np.arange(n) / RATE
        x += 0.05 * np.sin(2 * np.pi * 220 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 0.5 * t))
        x = c.through_room(x.astype(np.float32), h)
    else:
        x = c.fan_noise(seconds, -30.0, seed=cond.seed)
    return c.scale_to(x, cond.noise_db)


def user_clip(cond: Condition, k: int) -> np.ndarray:
    """The user's phrase of the condition's onset class (16 kHz float, its first sound at 0)."""
    lines = ONSETS[cond.onset]
    voice = c.USER_VOICES[k % len(c.USER_VOICES)]
    if cond.onset == "whisper":
        voice = voice.split("+")[0] + "+whisper"
    return c.speech(lines[k % len(lines)], voice)


def scene(cond: Condition, seconds: float, *, user_at: float | None = None, k: int = 0,
          answers: list[tuple[float, float]] | None = None) -> Scene:
    """``seconds`` of the world: the assistant talking in ``answers`` ((start, length) s on the
    speaker's timeline; default one answer throughout), the user speaking at ``user_at``."""
    rng = np.random.default_rng(cond.seed * 7 + k)
    n = int(seconds * RATE)
    answers = answers or [(0.0, seconds - 1.0)]
    talk = np.zeros(n, dtype=np.float32)
    busy16 = np.zeros(n, dtype=bool)
    for a, (start, length) in enumerate(answers):
        lo, hi = int(start * RATE), min(n, int((start + length) * RATE))
        said = c.assistant_talk((hi - lo + 1) / RATE, seed=cond.seed + 31 * a + k)[:hi - lo]
        talk[lo:lo + len(said)] = said
        busy16[lo:hi] = True
    talk = c.scale_to(talk, -20.0)  # the answer's level as played: -20 dBFS RMS over the run
    played, dac_true, dac_seen = _speaker_timeline(talk, cond, rng)
    busy = busy16[np.minimum(np.arange(len(dac_true)) * BLOCK, n - 1)]
    h = paths(cond)
    sound = _emitted(played, dac_true, cond, n)
    echo = c.through_room(sound, h["echo"])
    # the coupling: the echo's level over the reference's (the answer as played)
    ref_rms = float(np.sqrt(np.mean(talk[busy16] ** 2))) if busy16.any() else 1.0
    echo_rms = float(np.sqrt(np.mean(echo[busy16] ** 2))) or 1e-9
    echo *= ref_rms / echo_rms * 10 ** (cond.coupling_db / 20)
    mic = echo + _noise(cond, seconds, h["noise"], rng)
    onset = None
    if user_at is not None:
        user = user_clip(cond, k)
        heard = c.through_room(np.pad(user, (0, len(h["user"]))), h["user"])
        voiced = np.abs(user) > 0.02 * float(np.max(np.abs(user)))
        gain = 10 ** (cond.user_db / 20) / (float(np.sqrt(np.mean(heard[:len(user)][voiced] ** 2)))
                                            or 1e-9)
        at = int(user_at * RATE)
        m = min(len(heard), n - at)
        mic[at:at + m] += gain * heard[:m]
        # the first sample of the user's sound at the microphone (above -80 dBFS, a few LSB):
        # latency is counted from there, and any detection before it is a false one
        onset = at + int(np.argmax(np.abs(gain * heard) > 1e-4))
    adc_seen = (np.arange(n // BLOCK) * BLOCK / RATE
                + rng.uniform(-cond.jitter_ms, cond.jitter_ms, n // BLOCK) / 1000.0)
    first = float(dac_true[int(np.argmax(busy))]) if busy.any() else 0.0
    due = dac_true - cond.hidden_ms / 1000.0 - OUT_LATENCY_S
    return Scene(c.to_s16(played), busy, dac_true, dac_seen, c.to_s16(mic), adc_seen, onset,
                 echo, first, due)


def speaking_at(sc: Scene, sample: int, hangover_s: float = 0.05) -> bool:
    """Whether the assistant is speaking when the microphone's ``sample`` is recorded: an answer
    (its pauses included) is playing at the speaker, or its last sound left less than
    ``hangover_s`` ago. A speech start then stops the answer, a barge-in; once the last sample
    has played the daemon is ready again and a start opens nothing."""
    t = sample / RATE
    lo, hi = np.searchsorted(sc.dac_true, [t - hangover_s, t + OUT_LATENCY_S])
    return bool(sc.busy[max(0, lo - 1):hi].any())


# ---- the daemon's chain, fed by the scene -----------------------------------------------------


class SimPlayback:
    """Stands where :class:`talkie.audio.playback.Playback` does, for the echo reference: its
    ``history`` (what was handed to PortAudio, 48 kHz), ``dac_stamp`` and ``busy``."""

    device_rate = DEVICE_RATE

    def __init__(self) -> None:
        from talkie.audio.ring import Ring

        self.history = Ring(int(DEVICE_RATE * 2.0))
        self.dac_stamp: tuple[int, float] | None = None
        self.busy = False


def chain_for(echo: str, playback: SimPlayback, events: list, at: list[int]):
    """The daemon's microphone chain as ``[audio]`` makes it, with ``echo``."""
    from talkie.config.settings import AudioSettings, Settings
    from talkie.shell.factories import _default_mic_chain

    settings = Settings(audio=replace(AudioSettings(), echo=echo, barge_in=True))
    return _default_mic_chain(settings, playback, on_chunk=lambda pcm: None,
                              on_speech=lambda started: events.append((at[0], started)))


def run_chain(sc: Scene, echo: str = "aec", *, stop_at_start: bool = False,
              canceller=None, on_chain=None) -> dict:
    """Feed ``sc`` to the daemon's chain in capture blocks, the playback's callbacks running
    ``OUT_LATENCY_S`` before their blocks reach the DAC, on the DAC's clock (``Scene.due``).
    Returns the speech starts (sample at the end of the deciding block), where the turn each
    started would begin (``turn_from``: its pre-roll's first sample), when the reference was
    first aligned (s), the CPU time (s) and the cleaned output. ``on_chain(chain)`` is called once
    the chain is built."""
    import time

    playback = SimPlayback()
    events: list[tuple[int, bool]] = []
    at = [0]
    chain = chain_for(echo, playback, events, at)
    if canceller is not None and echo == "aec":
        chain.canceller = canceller()  # another canceller in speex's place
    out: list[bytes] = []
    chain.on_chunk = out.append
    if on_chain is not None:  # a caller's look inside (tests/bench/gate_replay.py records)
        on_chain(chain)
    reference = getattr(chain, "reference", None)
    j, blocks = 0, len(sc.dac_true)
    aligned_at = None
    cpu = 0.0
    spans: list[int] = []  # at each start: the pre-roll a turn would begin with
    for k in range(len(sc.mic) // BLOCK):
        t = k * BLOCK / RATE
        while j < blocks and sc.due[j] <= t:  # callbacks so far
            count = playback.history.written
            playback.history.push(sc.played[j * OUT_BLOCK:(j + 1) * OUT_BLOCK])
            playback.dac_stamp = (count, float(sc.dac_seen[j]))
            playback.busy = bool(sc.busy[j])
            j += 1
        at[0] = (k + 1) * BLOCK
        t0 = time.process_time()
        chain.push(sc.mic[k * BLOCK:(k + 1) * BLOCK].tobytes(), float(sc.adc_seen[k]))
        cpu += time.process_time() - t0
        if len(spans) < sum(1 for _, s in events if s):
            spans.append(chain.preroll_span)
        if aligned_at is None and reference is not None and reference.aligned and playback.busy:
            aligned_at = t
        if stop_at_start and any(s for _, s in events):
            break
    starts = [a for a, s in events if s]
    return {"starts": starts, "turn_from": [a - n for a, n in zip(starts, spans)],
            "aligned_at": aligned_at, "cpu_s": cpu,
            "out": np.frombuffer(b"".join(out), dtype=np.int16), "reference": reference}
