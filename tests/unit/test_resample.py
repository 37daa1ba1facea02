"""Streaming resampler: chunked output equals one-shot soxr, no chunk-boundary artefacts."""

import numpy as np
import pytest
import soxr

from talkie.audio.resample import Resampler


def chunked(resampler: Resampler, x: np.ndarray, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    parts, pos = [], 0
    while pos < len(x):
        k = int(rng.integers(1, 1500))
        parts.append(resampler.process(x[pos:pos + k]))
        pos += k
    parts.append(resampler.drain())
    return np.concatenate(parts)


def sine(freq: float, rate: int, seconds: float, amplitude: float = 12000.0) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return np.rint(amplitude * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def noise(rate: int, seconds: float) -> np.ndarray:
    rng = np.random.default_rng(42)
    return (rng.standard_normal(int(rate * seconds)) * 4000).clip(-32768, 32767).astype(np.int16)


@pytest.mark.parametrize("in_rate,out_rate", [(48000, 16000), (16000, 24000), (44100, 16000)])
def test_chunked_stream_matches_one_shot(in_rate, out_rate):
    x = noise(in_rate, 3.0)
    got = chunked(Resampler(in_rate, out_rate), x)
    want = soxr.resample(x.astype(np.float32), in_rate, out_rate, quality="HQ")
    want = np.clip(np.rint(want), -32768, 32767).astype(np.int16)
    assert got.dtype == np.int16
    assert abs(len(got) - len(want)) <= 1
    n = min(len(got), len(want))
    assert np.max(np.abs(got[:n].astype(int) - want[:n].astype(int))) <= 1


@pytest.mark.parametrize("in_rate,out_rate,freq", [(48000, 16000, 1000.0), (16000, 24000, 440.0)])
def test_sine_keeps_frequency_and_amplitude_across_chunks(in_rate, out_rate, freq):
    amplitude = 12000.0
    got = chunked(Resampler(in_rate, out_rate), sine(freq, in_rate, 2.0, amplitude), seed=1)
    assert abs(len(got) - 2.0 * out_rate) <= 2
    # Ideal sine at the output rate, fitted for phase (the filter delay is compensated by soxr).
    body = got[out_rate // 10: -out_rate // 10].astype(np.float64)  # skip filter edges
    t = (np.arange(len(body)) + out_rate // 10) / out_rate
    basis = np.stack([np.sin(2 * np.pi * freq * t), np.cos(2 * np.pi * freq * t)], axis=1)
    coef, *_ = np.linalg.lstsq(basis, body, rcond=None)
    fitted = basis @ coef
    assert abs(np.hypot(*coef) - amplitude) < amplitude * 0.01
    residual = body - fitted
    snr_db = 10 * np.log10(np.sum(fitted**2) / np.sum(residual**2))
    assert snr_db > 60, f"SNR {snr_db:.1f} dB: chunk-boundary artefacts?"
    assert np.max(np.abs(residual)) < 8  # no clicks anywhere (a click would be hundreds of LSB)
    spectrum = np.abs(np.fft.rfft(body * np.hanning(len(body))))
    peak_hz = np.argmax(spectrum) * out_rate / len(body)
    assert abs(peak_hz - freq) < 2.0


def test_drain_resets_for_the_next_stream():
    x = noise(48000, 0.5)
    r = Resampler(48000, 16000)
    first = chunked(r, x)
    second = chunked(r, x)
    assert np.array_equal(first, second)
    assert len(r.drain()) == 0  # nothing pending after a drain


def test_reset_drops_held_back_samples():
    r = Resampler(16000, 24000)
    r.process(noise(16000, 0.1))
    r.reset()
    fresh = Resampler(16000, 24000)
    x = sine(300.0, 16000, 0.2)
    assert np.array_equal(chunked(r, x), chunked(fresh, x))


def test_rejects_bad_rates():
    with pytest.raises(ValueError):
        Resampler(0, 16000)
