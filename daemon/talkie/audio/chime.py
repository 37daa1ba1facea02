"""The ring of a timer or an alarm, made in code: three bell strikes rising (A, C sharp, E), then
silence, about two seconds in all, played over and over while it rings.

Each strike is a few bell-like partials (a fundamental, its octave and a slightly sharp twelfth)
decaying exponentially, the higher ones faster, with a 5 ms attack and a fade at its end: no
click. The notes sit between 0.9 and 4 kHz, where a small speaker is loudest.
"""

from __future__ import annotations

import functools

import numpy as np

#: The strikes' fundamentals (Hz) and when each starts (s).
NOTES = ((880.0, 0.0), (1108.73, 0.4), (1318.51, 0.8))
#: (ratio to the fundamental, amplitude, decay time constant in s) of each partial.
PARTIALS = ((1.0, 1.0, 0.22), (2.0, 0.45, 0.12), (3.01, 0.2, 0.07))
STRIKE_S = 0.6
TOTAL_S = 2.0
ATTACK_S = 0.005
FADE_S = 0.05
#: The loudest sample at volume 1, as a fraction of full scale.
PEAK = 0.9


def chime(volume: float, rate: int = 24000) -> bytes:
    """One ring's pattern as s16le mono at ``rate`` Hz: its peak ``volume`` x 0.9 full scale."""
    return _chime(round(min(1.0, max(0.0, float(volume))), 4), int(rate))


@functools.lru_cache(maxsize=8)
def _chime(volume: float, rate: int) -> bytes:
    if rate <= 0:
        raise ValueError("rate must be > 0")
    out = np.zeros(round(TOTAL_S * rate), dtype=np.float64)
    n = round(STRIKE_S * rate)
    t = np.arange(n) / rate
    envelope = np.minimum(1.0, t / ATTACK_S)  # from 0: no click at the start
    fade = round(FADE_S * rate)
    envelope[n - fade :] *= np.linspace(1.0, 0.0, fade)  # to 0: none at the end
    for fundamental, start in NOTES:
        strike = np.zeros(n)
        for ratio, amplitude, decay in PARTIALS:
            strike += amplitude * np.exp(-t / decay) * np.sin(2 * np.pi * fundamental * ratio * t)
        begin = round(start * rate)
        out[begin : begin + n] += (strike * envelope)[: len(out) - begin]
    peak = float(np.max(np.abs(out)))
    if volume <= 0.0 or peak == 0.0:
        return bytes(2 * len(out))
    scaled = np.round(out * (volume * PEAK * 32767 / peak))
    return np.clip(scaled, -32767, 32767).astype("<i2").tobytes()
