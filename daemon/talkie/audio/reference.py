"""The echo canceller's reference: what the speaker really played, on the microphone's clock.

The playback callback keeps the last seconds of what it handed to PortAudio (``Playback.history``)
and, for its latest block, the DAC time of that block's first sample (``Playback.dac_stamp``).
Each microphone block comes with the ADC time of its first sample. The sample the speaker played
at that instant has index ``count + (adc - dac) * rate``; the reference handed to the canceller
starts ``lead_ms`` after it (already handed to PortAudio, not yet heard), so that it leads its echo
even when the clocks' estimate is that much off. The canceller's tail covers the lead, the room's
delay (10-40 ms) and its reverb.

What the timestamps cannot see (a USB card's or a sound server's own buffering, 0-300 ms) is
measured: :class:`EchoDelay` finds the echo in the microphone by the phase correlation of the two
over the last half second (GCC-PHAT), to a fraction of a sample, and the reference moves to lead
it by ``lead_ms``: about 0.4 s into the first answer (the envelope correlation before it took 2.7
s). An echo too faint to find (below the room's noise after 3 s of loud reference) cannot fool the
speech gate either: the timestamps are trusted then.

The reference is read as one continuous stream, resampled to the microphone's rate by a low-pass
FIR and linear interpolation at exact positions. Until the echo is found it moves on by the samples
it reads and takes ``follow`` (0.2 %) of the timestamps' disagreement each block: a time constant
of 5 s, so their jitter (0.1-0.5 ms on USB cards, 5-24 samples at 48 kHz) is averaged away instead
of becoming a wobble the canceller cannot follow. Once it is found the position is **counted**: the
echo's delay is measured every second, and the line through the last 20 s of measurements (where
the reference should have read, against the microphone's sample count) gives the two clocks' rate
and the position, onto which the reference glides. A drift the timestamps do not show (some
drivers report the nominal rate) is followed as well as one they do; the timestamps then only
learn their own offset, and a jump in it by more than ``resync_ms`` (a flush, an xrun, a restarted
stream) re-synchronises the reference and starts the count again.
"""

from __future__ import annotations

import numpy as np

from talkie.audio.ring import Ring

#: An echo found this many samples (at 16 kHz: 20 ms) off where the reference leads it has moved
#: (a restarted stream, buffering that changed): the reference follows it there.
MOVED = 320
#: A reference frame louder than -50 dBFS (s16 power) is loud enough to find its echo by.
LOUD_POWER = (32768 * 10 ** (-50 / 20)) ** 2


class EchoReference:
    """Reads aligned reference blocks at ``rate`` from a playback's history."""

    #: A GCC-PHAT peak this many times the correlation's spread is the echo (noise: about 4).
    CONFIDENCE = 8.0
    #: With the reference loud this long and still no echo found, it is too faint to find (below
    #: the room's noise): the timestamps are trusted as they are.
    FAINT_S = 3.0
    #: Once aligned, the delay is measured every this many frames (1 s); the line through the
    #: measurements of the last ``TRACK_S`` seconds (5 at least, over 4 s) places the reference,
    #: which glides onto it (``LOCK_FOLLOW`` a frame).
    TRACK_FRAMES = 100
    TRACK_S = 20.0
    LOCK_FOLLOW = 0.02
    #: ... but never faster than this (s/s: 100 ppm): the canceller follows a reference that
    #: slides slowly, as under a drift, and loses the room if it jumps. Until the line is known
    #: the timestamps place it, and where they hide a drift it has slid off the line by then
    #: (tens of samples); the canceller has followed it there.
    GLIDE = 1e-4
    #: A measurement this many samples off the line is not the echo (three in a row: it moved).
    OUTLIER = 4.0
    #: No pair of clocks drifts apart faster than this (s/s: 1000 ppm).
    MAX_DRIFT = 1e-3

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
        self.estimator: EchoDelay | None = EchoDelay(self.rate)
        self.found = False  # the echo has been found (or is too faint to matter)
        self._candidate: float | None = None
        self._frames = self._loud_frames = 0
        self._block = np.zeros(0, dtype=np.int16)
        self._next: float | None = None  # history position (device rate) of the next sample
        self._m = 0  # microphone samples taken
        self._pos = Ring(64, dtype=np.float64)  # per frame: the history position it read from
        #: (microphone sample, history position of its echo): the measured delays since aligned
        self._points: list[tuple[float, float]] = []
        self._misses = 0
        #: The line they lie on (position, slope, at microphone sample): None until it is known.
        self._line: tuple[float, float, float] | None = None
        self._dev_rate = 0
        self._fir = np.ones(1, dtype=np.float32)
        self._arange = np.arange(1024, dtype=np.float64)

    def take(self, n: int, adc_time: float) -> np.ndarray:
        """``n`` reference samples for the microphone samples from ``adc_time`` on."""
        self._m += n
        stamp = self.playback.dac_stamp
        if stamp is None:
            self._next = None
            self._block = np.zeros(n, dtype=np.int16)
            return self._block
        count, dac = stamp
        dev_rate = self.playback.device_rate
        if dev_rate != self._dev_rate:
            self._dev_rate, self._next, self._line = dev_rate, None, None
            self._fir = (
                _lowpass(self.rate / dev_rate)
                if dev_rate > self.rate
                else np.ones(1, dtype=np.float32)
            )
        # where the timestamps put the sample the microphone hears now, ``lead_ms`` ahead, and
        # the echo's delay beyond them
        stamped = count + (adc_time - dac + self.lead_ms / 1000.0) * dev_rate
        lag = self.extra_delay_s * dev_rate
        if self._next is None or abs(stamped - lag - self._next) > self.resync_ms * dev_rate / 1000:
            self.resyncs += self._next is not None
            self._next = float(round(stamped - lag))
            # the streams restarted (a pause, a flush): the count starts again from the
            # timestamps, at the rate measured (the clocks are the same)
            if self._line is not None:
                self._line = (self._next, self._line[1], float(self._m - n))
            self._points.clear()
        elif self._line is not None:  # counted: the line the measured delays lie on
            a, b, m0 = self._line
            cap = self.GLIDE * n * b
            glide = self.LOCK_FOLLOW * (a + b * (self._m - n - m0) - self._next)
            self._next += min(cap, max(-cap, glide))
            # the timestamps' disagreement is only learnt (a jump in it is a restart)
            self.extra_delay_s += self.follow * (stamped - self._next - lag) / dev_rate
        else:  # follow the timestamps' slow drift, not their jitter
            self._next += self.follow * (stamped - lag - self._next)
        self._pos.append(self._next)
        self._block = self._resampled(self._next, n, dev_rate / self.rate)
        self._next += n * self._rate()
        return self._block

    def _rate(self) -> float:
        """History samples a microphone sample: the clocks' rate once measured, else nominal."""
        return self._dev_rate / self.rate if self._line is None else self._line[1]

    def skip(self, n: int) -> None:
        """``n`` microphone samples went by unread (the audio was not wanted): counted as read."""
        self._m += n
        if self._next is not None and self._dev_rate:
            self._next += n * self._rate()

    def _resampled(self, start: float, n: int, step: float) -> np.ndarray:
        """``n`` samples at history positions ``start + k * step``: low-passed, then linearly
        interpolated (exactly timed: no resampler state to drift)."""
        if step == 1.0 and start == int(start):
            return self._read(int(start), n)
        half = len(self._fir) // 2
        lo = int(np.floor(start)) - half
        span = int(np.ceil(start + n * step)) + half + 2 - lo
        raw = self._read(lo, span)
        if not raw.any():  # the speaker played silence: so is its reference (no work)
            return np.zeros(n, dtype=np.int16)
        x = np.convolve(raw.astype(np.float32), self._fir, mode="valid")
        # start + arange(n) * step - (lo + half), the same sums, in place
        grid = self._grid(max(n, len(x)))
        pos = grid[:n] * step
        pos += start
        pos -= lo + half
        y = np.interp(pos, grid[: len(x)], x)
        np.rint(y, out=y)
        np.minimum(y, 32767.0, out=y)
        np.maximum(y, -32768.0, out=y)
        return y.astype(np.int16)

    def _grid(self, k: int) -> np.ndarray:
        """0, 1, ... up to at least ``k - 1`` (float64), made once: positions are read off it."""
        if len(self._arange) < k:
            self._arange = np.arange(max(k, 2 * len(self._arange)), dtype=np.float64)
        return self._arange

    @property
    def aligned(self) -> bool:
        """Whether the echo has been found (until then the reference cannot be trusted to lead
        it: only the button barges in)."""
        return self.estimator is None or self.found

    def microphone(self, mic: np.ndarray) -> None:
        """The microphone frame that goes with the latest :meth:`take`: where its echo is.

        Until the echo is found, every 100 ms a search over the whole reach (300 ms); two
        confident measurements that agree (within 3 samples) move the reference to lead the
        echo by ``lead_ms``: half a second into the first answer. From then on every 2 s a
        search finds an echo that moved by more than 20 ms (a restarted stream, buffering that
        changed) and moves the reference again; the clocks' slow drift is the timestamps' to
        follow, and the canceller's."""
        est = self.estimator
        if est is None or len(self._block) != len(mic):
            return
        est.push(mic, self._block)
        self._frames += 1
        lead = self.lead_ms * self.rate / 1000.0
        if not self.found:
            x = self._block.astype(np.float32)
            self._loud_frames += float(np.dot(x, x)) / len(x) > LOUD_POWER
            if self._frames % 10 == 0:
                self._seek(est.search(), lead)
            if not self.found and self._loud_frames * 0.01 >= self.FAINT_S:
                self.found = True  # too faint to find: the timestamps are trusted
            return
        if self._frames % self.TRACK_FRAMES == 0:
            got = est.search()
            if got is None or got[1] < self.CONFIDENCE:
                return
            if abs(got[0] - lead) > MOVED:
                self._seek(got, lead)
            else:
                self._track(got[0] - lead)

    def _track(self, off: float) -> None:
        """A measurement since aligned: the echo ``off`` samples later than the reference leads
        it by, in the middle of the search's window. Where its echo says the reference should
        have read then goes on the list; the line through the last ``TRACK_S`` of them is the
        position from then on: counted in microphone samples at the rate of the two clocks."""
        half = self.estimator.window // 2 if self.estimator is not None else 4096
        frame = len(self._block)
        back = -(-half // frame)  # frames back to the one holding the window's middle
        if min(self._pos.written, self._pos.capacity) < back or self._dev_rate == 0:
            return
        step = self._dev_rate / self.rate
        m = self._m - half  # the window's middle (microphone sample)
        start = self._m - back * frame  # ... lies in the frame read from here
        p = float(self._pos.latest(back)[0]) + (m - start - off) * step
        if self._line is not None:
            a, b, m0 = self._line
            if abs(p - (a + b * (m - m0))) > self.OUTLIER * step:
                self._misses += 1
                if self._misses < 3:
                    return  # a door, a word of the user's: not the echo moving
                self._points.clear()  # three in a row: it has moved
                self._line = None
        self._misses = 0
        points = self._points
        points.append((float(m), p))
        while points[-1][0] - points[0][0] > self.TRACK_S * self.rate:
            points.pop(0)
        ms = np.array([q[0] for q in points]) - m
        ps = np.array([q[1] for q in points])
        if len(points) >= 5 and -ms[0] >= 4 * self.rate:
            b, a = np.polyfit(ms, ps - ps[-1], 1)
            if abs(b / step - 1.0) <= self.MAX_DRIFT:
                self._line = (float(a + ps[-1]), float(b), float(m))

    @property
    def drift(self) -> float:
        """The two clocks' drift as the measured delays show it (s/s; 0 until it is known)."""
        if self._line is None or not self._dev_rate:
            return 0.0
        return self._line[1] * self.rate / self._dev_rate - 1.0

    def _seek(self, got: tuple[float, float] | None, lead: float) -> None:
        if got is None or got[1] < self.CONFIDENCE:
            self._candidate = None
            return
        if self._candidate is None or abs(got[0] - self._candidate) > 3.0:
            self._candidate = got[0]
            return
        self._candidate = None
        self.found = True
        self._points.clear()
        self._line = None
        # move the reference: the echo is that much later (or sooner) than it leads it by
        self.extra_delay_s += float(got[0] - lead) / self.rate
        self._next = None
        if self.estimator is not None:
            self.estimator.clear()

    # ---- internals

    def _read(self, start: int, k: int) -> np.ndarray:
        """History samples [start, start + k): zeros for what is not (or no longer) there."""
        history = self.playback.history
        if history is None:
            return np.zeros(k, dtype=np.int16)
        return history.window(start, k)


class EchoDelay:
    """Where the echo is, to a fraction of a sample: the microphone against the reference by
    GCC-PHAT (the cross-correlation of their phases, 300 Hz-4 kHz), over the last half second.

    ``search()`` looks over lags of 0 .. ``max_lag_s`` and returns the lag in samples (the echo
    that much later than the reference) and its confidence (the peak over the correlation's
    spread), or None when the reference was too quiet to tell. Cheap: two FFTs of 8192 samples,
    ten times a second until the echo is found, then every 2 s.
    """

    def __init__(self, rate: int = 16000, *, window: int = 8192, max_lag_s: float = 0.3) -> None:
        self.rate, self.window = rate, window
        self.max_lag = int(max_lag_s * rate)
        self._mic = Ring(window, dtype=np.float32)
        self._ref = Ring(window, dtype=np.float32)
        self._loud = Ring(window // 160, dtype=np.float64)  # the reference's level, a frame each
        f = np.fft.rfftfreq(window, 1 / rate)
        self._band = ((f >= 300) & (f <= 4000)).astype(np.float32)
        self._hann = np.hanning(window).astype(np.float32)

    def push(self, mic: np.ndarray, ref: np.ndarray) -> None:
        self._mic.push(mic.astype(np.float32))
        self._ref.push(ref.astype(np.float32))
        x = ref.astype(np.float32)
        self._loud.append(float(np.dot(x, x)) / max(1, len(x)))

    def clear(self) -> None:
        for ring in (self._mic, self._ref, self._loud):
            ring.clear()

    @property
    def loud_s(self) -> float:
        """How much of the window the reference was loud for (above -50 dBFS), in seconds."""
        n = min(self._loud.written, self._loud.capacity)
        if n == 0:
            return 0.0
        levels = self._loud.latest(n)
        return float(np.count_nonzero(levels > LOUD_POWER)) * 0.01

    def search(self) -> tuple[float, float] | None:
        return self._measure(0, self.max_lag)

    def _measure(self, lo: int, hi: int) -> tuple[float, float] | None:
        n = min(self._mic.written, self.window)
        if n < self.window // 2 or self.loud_s < 0.25:
            return None
        mic = np.zeros(self.window, dtype=np.float32)
        ref = np.zeros(self.window, dtype=np.float32)
        mic[-n:], ref[-n:] = self._mic.latest(n), self._ref.latest(n)
        cross = np.fft.rfft(mic * self._hann) * np.conj(np.fft.rfft(ref * self._hann))
        cross *= self._band / np.maximum(np.abs(cross), 1e-9)
        r = np.fft.irfft(cross, self.window)[lo : hi + 1]
        if len(r) < 3:
            return None
        k = int(np.argmax(r))
        spread = float(np.std(r)) or 1e-9
        frac = 0.0
        if 0 < k < len(r) - 1:  # the peak between samples: a parabola through three
            a, b, c = r[k - 1], r[k], r[k + 1]
            den = a - 2 * b + c
            frac = 0.5 * (a - c) / den if den < 0 else 0.0
        # float64: a float32 here would make every position after it float32 (NumPy's scalar
        # promotion), too coarse for a sample count in the millions
        return float(lo + k + frac), float(r[k]) / spread


def _lowpass(cutoff: float, taps: int = 31) -> np.ndarray:
    """A windowed-sinc low-pass at ``cutoff`` times the input's Nyquist frequency (the output's
    Nyquist, with 10 % to spare), unity gain at DC."""
    k = np.arange(taps) - taps // 2
    h = np.sinc(cutoff * 0.9 * k) * np.hamming(taps)
    return (h / h.sum()).astype(np.float32)
