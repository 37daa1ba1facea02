"""The barge-in DSP chain on arrays: a simulated room around the real :class:`MicChain`.

The speaker plays the assistant's audio (16 kHz here: the playback history's resampling is tested on
its own); the microphone hears it through :func:`corpus.room_response`, plus noise, plus (in a trial)
the user. The chain gets the microphone in 10 ms capture blocks and a reference that leads the echo
by ``LEAD_MS`` (as :class:`talkie.audio.reference.EchoReference` arranges on the device).

Latency is counted in samples: from the user's first sample in the microphone signal to the first
silent sample at the speaker, which is the end of the capture block in which the gate decided plus
one output callback period (a flush empties the playback ring and cuts what PortAudio holds, so
silence reaches the speaker within one period).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from talkie.audio.echo import SpeexEcho
from talkie.audio.uplink_chain import MicChain
from talkie.audio.vad import SpeechGate
from tests.support import corpus as c

RATE = c.RATE
BLOCK = 160  # capture block: 10 ms
OUT_PERIOD = 160  # one output callback period (10 ms), the flush's granularity
LEAD_MS = 20


class ArrayReference:
    """The reference on the microphone's clock: the speaker signal ``LEAD_MS`` ahead."""

    def __init__(self, speaker: np.ndarray) -> None:
        self.speaker = speaker
        self.lead = RATE * LEAD_MS // 1000

    aligned = True

    def microphone(self, mic: np.ndarray) -> None:
        """The delay here is known: nothing to estimate."""

    def take(self, n: int, adc_time: float):
        start = int(round(adc_time * RATE)) + self.lead
        block = np.zeros(n, dtype=np.int16)
        lo, hi = max(start, 0), min(start + n, len(self.speaker))
        if hi > lo:
            block[lo - start:hi - start] = self.speaker[lo:hi]
        return block


@dataclass
class Chain:
    """A MicChain with its gate and canceller, fed by :meth:`run`."""

    echo: str = "aec"
    tail_ms: int = 200
    aggressiveness: int = 3
    start_frames: int = 2
    window_frames: int = 3
    #: Makes the echo canceller (default: talkie's SpeexEcho with ``tail_ms``).
    canceller: Callable[[], object] | None = None

    def build(self, speaker: np.ndarray):
        self.events: list[tuple[int, bool]] = []
        self.gate = SpeechGate(aggressiveness=self.aggressiveness, start_frames=self.start_frames,
                               window_frames=self.window_frames)
        make = self.canceller or (lambda: SpeexEcho(filter_ms=self.tail_ms))
        self.aec = make() if self.echo == "aec" else None
        self.reference = ArrayReference(speaker)
        self.out: list[bytes] = []
        self.chain = MicChain(on_chunk=self.out.append, on_speech=self._speech, echo=self.echo,
                              barge_in=True, gate=self.gate, canceller=self.aec,
                              reference=self.reference)
        self._at = 0
        return self

    def _speech(self, started: bool) -> None:
        self.events.append((self._at, started))

    def run(self, mic: np.ndarray, *, stop_at_start: bool = False) -> int | None:
        """Feed ``mic`` (int16); the sample (block end) of the first START, or None."""
        for i in range(0, len(mic) - BLOCK + 1, BLOCK):
            self._at = i + BLOCK
            self.chain.push(mic[i:i + BLOCK].tobytes(), i / RATE)
            if stop_at_start and any(s for _, s in self.events):
                break
        starts = [at for at, s in self.events if s]
        return starts[0] if starts else None


def room_mic(speaker: np.ndarray, *, delay_ms: float, gain_db: float, seed: int,
             noise: str = "fan", noise_db: float = -50.0) -> np.ndarray:
    """The microphone (float) hearing the speaker through the room, plus noise."""
    h = c.room_response(delay_ms, gain_db, rt60_ms=150.0, seed=seed)
    echo = c.through_room(speaker, h)
    seconds = len(speaker) / RATE
    if noise == "babble":
        echo = echo + c.babble(seconds, noise_db, seed=seed)
    else:
        echo = echo + c.fan_noise(seconds, noise_db, seed=seed)
    return echo


def trial(k: int, *, chain: Chain | None = None, warm_s: float = 4.0) -> dict:
    """Trial ``k``: the assistant talks; after ``warm_s`` plus a random wait the user speaks over it.
    Room, voices, coupling, delay and noise vary with ``k``. Returns the figures in samples."""
    rng = np.random.default_rng(1000 + k)
    speaker = c.assistant_talk(warm_s + 4.0, seed=k)
    delay = float(rng.uniform(10, 40))
    gain = float(rng.uniform(-20, 0))
    noise = "babble" if k % 3 == 2 else "fan"
    mic = room_mic(speaker, delay_ms=delay, gain_db=gain, seed=k, noise=noise,
                   noise_db=float(rng.uniform(-55, -45)))
    user = c.speech(c.USER_LINES[k % len(c.USER_LINES)], c.USER_VOICES[k % len(c.USER_VOICES)])
    user = c.scale_to(user, float(rng.uniform(-30, -22)))  # a person at arm's length
    at = int((warm_s + rng.uniform(0, 1.5)) * RATE)
    m = min(len(user), len(mic) - at)
    mic[at:at + m] += user[:m]
    onset = at  # the clip starts at its first sample above 2 % of its peak (corpus.speech)
    chain = (chain or Chain()).build(c.to_s16(speaker))
    detected = chain.run(c.to_s16(mic), stop_at_start=True)
    early = detected is not None and detected < onset
    silent = None if detected is None else -(-detected // OUT_PERIOD) * OUT_PERIOD + OUT_PERIOD
    return {"onset": onset, "detected": detected, "early": early,
            "latency_samples": None if silent is None or early else silent - onset,
            "detect_samples": None if detected is None or early else detected - onset,
            "gain_db": gain, "delay_ms": delay, "noise": noise}


def echo_only(seconds: float, *, gain_db: float, seed: int, chain: Chain | None = None,
              noise: str = "fan") -> dict:
    """``seconds`` of the assistant through the room with no user: the gate's false starts, the
    canceller's ERLE (dB, after its first 2 s), and the CPU time the chain took (s)."""
    import time

    speaker = c.assistant_talk(seconds, seed=seed)
    mic = room_mic(speaker, delay_ms=10 + (seed % 4) * 10, gain_db=gain_db, seed=seed, noise=noise,
                   noise_db=-60.0)
    chain = (chain or Chain()).build(c.to_s16(speaker))
    mic16 = c.to_s16(mic)
    t0 = time.process_time()
    chain.run(mic16)
    cpu = time.process_time() - t0
    false = sum(1 for _, s in chain.events if s)
    cleaned = np.frombuffer(b"".join(chain.out), dtype=np.int16)
    skip = 2 * RATE  # after the canceller's first convergence
    n = min(len(cleaned), len(mic16))
    e_in = float(np.mean(mic16[skip:n].astype(np.float64) ** 2))
    e_out = float(np.mean(cleaned[skip:n].astype(np.float64) ** 2)) or 1e-9
    return {"false": false, "erle_db": 10 * np.log10(e_in / e_out), "cpu_s": cpu}
