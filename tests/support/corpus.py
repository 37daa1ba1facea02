"""A small speech corpus made at test time, and a simulated room.

* :func:`speech` renders a sentence with espeak-ng in a given voice at 16 kHz (cached per process and
  on disk under ``$TALKIE_CORPUS_DIR`` or the system temp dir), so no recordings are committed.
* :func:`room_response` is the echo path from the device's speaker to its microphone: a delay
  (10-40 ms), a coupling gain (-20 to 0 dB) and a decaying reverb tail; :func:`through_room` applies it.
* :func:`fan_noise` and :func:`babble` are the noises: low-passed hum-and-hiss, and overlapped speech.

Everything is float32 in [-1, 1] at ``RATE`` unless :func:`to_s16` says otherwise.
"""

from __future__ import annotations

import functools
import hashlib
import io
import os
import shutil
import subprocess
import tempfile
import wave
from pathlib import Path

import numpy as np

RATE = 16000

#: Voices for the user and for the assistant (espeak-ng voice + variant), kept apart.
USER_VOICES = ("en-us+m3", "en-gb+f3", "en-us+f4", "en-gb-scotland+m1", "en-029+m2", "en-us+f2")
ASSISTANT_VOICES = ("en-gb-x-rp+f1", "en-us+m7", "en-gb+f5")

USER_LINES = (
    "Wait, stop. What time is it?",
    "Hold on, I have another question.",
    "No, I meant the other one.",
    "Sorry, can you say that again?",
    "Okay, thank you, that's enough.",
    "Hey, what about tomorrow's weather?",
    "Stop please.",
    "Actually, tell me a joke instead.",
)
ASSISTANT_LINES = (
    "Sure. The weather tomorrow looks mostly sunny with a high of twenty two degrees and a light "
    "breeze from the west. In the evening clouds will move in, and there is a small chance of "
    "rain after midnight.",
    "Here is a short story. Once upon a time there was a small robot who lived on a kitchen "
    "shelf. Every morning it listened to the kettle, and every evening it told the cat what it "
    "had learned that day.",
    "The capital of Australia is Canberra, not Sydney as many people think. It was chosen as a "
    "compromise between Sydney and Melbourne, and the parliament moved there in nineteen twenty "
    "seven.",
    "To make a good cup of tea, warm the pot first, use one spoon of leaves per cup, pour water "
    "just off the boil and wait three to five minutes before you pour.",
)


def available() -> bool:
    return shutil.which("espeak-ng") is not None


def _cache_dir() -> Path:
    folder = Path(os.environ.get("TALKIE_CORPUS_DIR") or Path(tempfile.gettempdir()) / "talkie-corpus")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@functools.lru_cache(maxsize=64)
def speech(text: str, voice: str, speed: int = 165) -> np.ndarray:
    """``text`` spoken by espeak-ng ``voice``, float32 at 16 kHz, leading/trailing silence trimmed."""
    import soxr

    key = hashlib.sha256(f"{voice}|{speed}|{text}".encode()).hexdigest()[:16]
    path = _cache_dir() / f"{key}.npy"
    if path.exists():
        return np.load(path)
    wav = subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "--stdout", text],
                         check=True, capture_output=True).stdout
    with wave.open(io.BytesIO(wav)) as w:
        rate = w.getframerate()
        x = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16).astype(np.float32) / 32768
    x = soxr.resample(x, rate, RATE).astype(np.float32)
    loud = np.flatnonzero(np.abs(x) > 0.01)
    x = x[loud[0]:loud[-1] + 1] if len(loud) else x
    x = (x / max(1e-6, float(np.max(np.abs(x)))) * 0.5).astype(np.float32)  # peak -6 dBFS
    tmp = path.with_suffix(".tmp.npy")
    np.save(tmp, x)
    os.replace(tmp, path)
    return x


def room_response(delay_ms: float, gain_db: float, rt60_ms: float = 150.0, *,
                  seed: int = 0, rate: int = RATE) -> np.ndarray:
    """Impulse response speaker -> microphone: the direct path after ``delay_ms`` at ``gain_db``,
    then a reverb tail (noise decaying by 60 dB in ``rt60_ms``), ~10 dB below the direct path."""
    rng = np.random.default_rng(seed)
    d = int(rate * delay_ms / 1000)
    n_tail = int(rate * rt60_ms / 1000)
    h = np.zeros(d + n_tail + 1, dtype=np.float32)
    g = 10 ** (gain_db / 20)
    h[d] = g
    t = np.arange(n_tail, dtype=np.float32) / rate
    tail = rng.standard_normal(n_tail).astype(np.float32) * np.exp(-6.9 * t / (rt60_ms / 1000))
    tail *= g * 0.3 / max(1e-6, float(np.sqrt(np.sum(tail ** 2))))  # tail energy ~ -10 dB
    h[d + 1:] += tail
    return h


def through_room(x: np.ndarray, h: np.ndarray) -> np.ndarray:
    """``x`` as the microphone hears it through ``h`` (same length as ``x``)."""
    from numpy.fft import irfft, rfft

    n = len(x) + len(h) - 1
    size = 1 << (n - 1).bit_length()
    y = irfft(rfft(x, size) * rfft(h, size), size)[:len(x)]
    return y.astype(np.float32)


def fan_noise(seconds: float, level_db: float = -45.0, *, seed: int = 0, rate: int = RATE) -> np.ndarray:
    """A fan: low-passed noise with a 100 Hz hum, RMS ``level_db`` dBFS."""
    rng = np.random.default_rng(seed)
    n = int(seconds * rate)
    x = rng.standard_normal(n).astype(np.float32)
    # one-pole low-pass at ~300 Hz (a "whoosh"), done in the frequency domain for speed
    f = np.fft.rfftfreq(n, 1 / rate)
    x = np.fft.irfft(np.fft.rfft(x) / (1 + 1j * f / 300.0), n).astype(np.float32)
    x += 0.5 * np.sin(2 * np.pi * 100 * np.arange(n) / rate).astype(np.float32) * np.std(x)
    return scale_to(x, level_db)


def babble(seconds: float, level_db: float = -40.0, *, talkers: int = 5, seed: int = 0) -> np.ndarray:
    """Several people talking at once, far away: overlapped corpus speech, RMS ``level_db`` dBFS."""
    rng = np.random.default_rng(seed)
    n = int(seconds * RATE)
    out = np.zeros(n, dtype=np.float32)
    lines = USER_LINES + ASSISTANT_LINES
    for k in range(talkers):
        pos = int(rng.integers(0, RATE))
        while pos < n:
            s = speech(lines[int(rng.integers(len(lines)))], USER_VOICES[k % len(USER_VOICES)])
            m = min(len(s), n - pos)
            out[pos:pos + m] += s[:m]
            pos += m + int(rng.integers(0, RATE // 4))
    return scale_to(out, level_db)


def scale_to(x: np.ndarray, level_db: float) -> np.ndarray:
    """``x`` scaled to an RMS of ``level_db`` dBFS."""
    rms = float(np.sqrt(np.mean(x.astype(np.float64) ** 2))) or 1e-9
    return (x * (10 ** (level_db / 20) / rms)).astype(np.float32)


def to_s16(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x * 32767), -32768, 32767).astype(np.int16)


def assistant_talk(seconds: float, *, seed: int = 0) -> np.ndarray:
    """The assistant speaking for ``seconds``: corpus lines in the assistant's voices, short pauses."""
    rng = np.random.default_rng(seed)
    n = int(seconds * RATE)
    out = np.zeros(n, dtype=np.float32)
    pos = 0
    while pos < n:
        s = speech(ASSISTANT_LINES[int(rng.integers(len(ASSISTANT_LINES)))],
                   ASSISTANT_VOICES[int(rng.integers(len(ASSISTANT_VOICES)))])
        m = min(len(s), n - pos)
        out[pos:pos + m] = s[:m]
        pos += m + int(rng.integers(RATE // 10, RATE // 2))
    return out
