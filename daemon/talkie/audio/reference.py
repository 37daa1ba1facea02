"""The echo canceller's reference: what the speaker really played, on the microphone's clock.

The playback callback keeps the last seconds of what it handed to PortAudio (``Playback.history``)
and, for its latest block, the DAC time of that block's first sample (``Playback.dac_stamp``).
Each microphone block comes with the ADC time of its first sample. The sample the speaker played
at that instant has index ``count + (adc - dac) * rate``; the reference handed to the canceller
starts ``lead_ms`` after it (already handed to PortAudio, not yet heard), so that it leads its echo
even when the clocks' estimate is that much off. The canceller's tail covers the lead, the room's
delay (10-40 ms) and its reverb.

What the timestamps cannot see (a USB card's or a sound server's own buffering) is measured:
:class:`DelayEstimator` correlates the microphone's and the reference's 10 ms energy envelopes over
the last seconds and, once it is sure, moves the reference later by the echo's extra delay.

The reference is read as one continuous stream, resampled to the microphone's rate by a low-pass
FIR and linear interpolation at exact positions. It moves on by the samples it reads, and takes
``follow`` (0.2 %) of the timestamps' disagreement each block: a time constant of 5 s, so their
jitter (0.1-0.5 ms on USB cards, 5-24 samples at 48 kHz) is averaged away instead of becoming a
wobble the canceller cannot follow, while a clock drift of 200 ppm is followed within a
millisecond. It jumps only when the estimate moves by more than ``resync_ms`` (a flush, an xrun,
a restarted stream).
"""

from __future__ import annotations

import numpy as np

from talkie.audio.ring import Ring


class EchoReference:
    """Reads aligned reference blocks at ``rate`` from a playback's history."""

    def __init__(
        self,
        playback,
        rate: int = 16000,
        *,
        lead_ms: float = 20.0,
        resync_ms: float = 15.0,
        follow: float = 0.002,
    ) -> None:
        self.playback = playback
        self.rate = int(rate)
        self.lead_ms = float(lead_ms)
        self.resync_ms = float(resync_ms)
        self.follow = float(follow)
        self.resyncs = 0
        #: Echo delay beyond the timestamps' estimate, as measured (seconds).
        self.extra_delay_s = 0.0
        self.estimator: DelayEstimator | None = DelayEstimator()
        self._next: float | None = None  # history position (device rate) of the next sample
        self._dev_rate = 0
        self._fir = np.ones(1, dtype=np.float32)

    def take(self, n: int, adc_time: float) -> np.ndarray:
        """``n`` reference samples for the microphone samples from ``adc_time`` on."""
        stamp = self.playback.dac_stamp
        if stamp is None:
            self._next = None
            return np.zeros(n, dtype=np.int16)
        count, dac = stamp
        dev_rate = self.playback.device_rate
        if dev_rate != self._dev_rate:
            self._dev_rate, self._next = dev_rate, None
            self._fir = (
                _lowpass(self.rate / dev_rate)
                if dev_rate > self.rate
                else np.ones(1, dtype=np.float32)
            )
        step = dev_rate / self.rate
        want = count + (adc_time - dac + self.lead_ms / 1000.0 - self.extra_delay_s) * dev_rate
        if self.estimator is not None:  # the envelope the echo delay is measured against
            self.estimator.reference(self._energy(int(want), max(1, int(n * step))))
        if self._next is None or abs(want - self._next) > self.resync_ms * dev_rate / 1000:
            self.resyncs += self._next is not None
            self._next = float(round(want))
        else:  # follow the clocks' slow drift, not their jitter
            self._next += self.follow * (want - self._next)
        block = self._resampled(self._next, n, step)
        self._next += n * step
        return block

    def _resampled(self, start: float, n: int, step: float) -> np.ndarray:
        """``n`` samples at history positions ``start + k * step``: low-passed, then linearly
        interpolated (exactly timed: no resampler state to drift)."""
        if step == 1.0:
            return self._read(int(round(start)), n)
        half = len(self._fir) // 2
        lo = int(np.floor(start)) - half
        span = int(np.ceil(start + n * step)) + half + 2 - lo
        x = np.convolve(self._read(lo, span).astype(np.float32), self._fir, mode="valid")
        pos = start + np.arange(n) * step - (lo + half)
        y = np.interp(pos, np.arange(len(x)), x)
        return np.clip(np.rint(y), -32768, 32767).astype(np.int16)

    # ---- internals

    @property
    def aligned(self) -> bool:
        """Whether the echo delay has been measured (until then the reference cannot be trusted
        to lead its echo: only the button barges in)."""
        return self.estimator is None or self.estimator.estimates > 0

    def microphone(self, mic: np.ndarray) -> None:
        """The microphone frame that goes with the latest :meth:`take`: feeds the delay estimate."""
        if self.estimator is None:
            return
        x = mic.astype(np.float32)
        self.estimator.microphone(float(np.dot(x, x)) / max(1, len(x)))
        found = self.estimator.estimate()
        if found is not None and abs(found) >= self.estimator.step_s:
            # the next take() re-synchronises on it; the envelopes start afresh
            self.extra_delay_s = max(0.0, self.extra_delay_s + found)
            self.estimator.restart()

    def _energy(self, start: int, k: int) -> float:
        x = self._read(start, k).astype(np.float32)
        return float(np.dot(x, x)) / k

    def _read(self, start: int, k: int) -> np.ndarray:
        """History samples [start, start + k): zeros for what is not (or no longer) there."""
        history = self.playback.history
        if history is None:
            return np.zeros(k, dtype=np.int16)
        return history.window(start, k)


class DelayEstimator:
    """How much later than the reference the echo arrives, from 10 ms energy envelopes.

    Every ``every`` frames it correlates the log-energy envelope of the last ``window`` frames of
    the microphone with the reference's at lags 0 .. ``max_lag`` frames, and reports a delay when
    the best lag's correlation beats ``confidence`` twice in a row at the same place (to the frame).
    Only frames where the reference was loud count. Cheap: 100 values a second, a few dot products.
    """

    def __init__(
        self,
        *,
        window: int = 200,
        max_lag: int = 40,
        every: int = 25,
        confidence: float = 0.6,
        margin_frames: int = 2,
    ) -> None:
        self.window, self.max_lag, self.every = window, max_lag, every
        self.confidence, self.margin = confidence, margin_frames
        self.step_s = 0.02
        size = window + max_lag
        # the envelopes, one value per frame, written in step (so both hold ``frames`` values)
        self._ref = Ring(size, dtype=np.float64, fill=-120.0)
        self._mic = Ring(size, dtype=np.float64, fill=-120.0)
        self._pending: float | None = None  # a reference level waiting for its microphone frame
        self._last: int | None = None
        self.estimates = 0

    def reference(self, power: float) -> None:
        self._pending = 10 * np.log10(power + 1.0)

    def microphone(self, power: float) -> None:
        if self._pending is None:
            return
        self._ref.append(self._pending)
        self._pending = None
        self._mic.append(10 * np.log10(power + 1.0))

    def restart(self) -> None:
        """Forget the envelopes (the reference moved)."""
        self._ref.clear()
        self._mic.clear()
        self._last = None

    def estimate(self) -> float | None:
        """How much later (or, negative, sooner) the reference should be read, in seconds, when a
        confident measurement says so; else None."""
        frames, size = self._mic.written, self._mic.capacity
        if frames < size or frames % self.every:
            return None
        mic_env, ref_env = self._mic.latest(size), self._ref.latest(size)  # oldest first
        mic = mic_env[self.max_lag :]
        loud = ref_env > 30.0  # s16 power of -60 dBFS and up
        best, best_lag = -1.0, 0
        for lag in range(self.max_lag + 1):
            ref = ref_env[self.max_lag - lag : len(ref_env) - lag]
            use = loud[self.max_lag - lag : len(ref_env) - lag]
            if use.sum() < self.window // 4:
                continue
            a, b = mic[use] - mic[use].mean(), ref[use] - ref[use].mean()
            den = float(np.sqrt(np.dot(a, a) * np.dot(b, b)))
            corr = float(np.dot(a, b)) / den if den > 0 else 0.0
            if corr > best:
                best, best_lag = corr, lag
        if best < self.confidence:
            self._last = None
            return None
        confirmed = self._last is not None and abs(best_lag - self._last) <= 1
        self._last = best_lag
        if not confirmed:
            return None
        self.estimates += 1
        return (best_lag - self.margin) * 0.01


def _lowpass(cutoff: float, taps: int = 31) -> np.ndarray:
    """A windowed-sinc low-pass at ``cutoff`` times the input's Nyquist frequency (the output's
    Nyquist, with 10 % to spare), unity gain at DC."""
    k = np.arange(taps) - taps // 2
    h = np.sinc(cutoff * 0.9 * k) * np.hamming(taps)
    return (h / h.sum()).astype(np.float32)
