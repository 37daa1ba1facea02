"""Is what the echo canceller left still the speaker's echo? Coherence with the reference.

A linear canceller that has not learnt part of the room yet (a new voice, bands it has not
heard, the first seconds of an answer) leaves echo behind that is as loud as a user would be,
and a level rule cannot tell the two apart. But what it leaves is still a linear function of
what the speaker played, and the user's voice is not: the magnitude-squared coherence between
the reference and the canceller's (linear) output, over the 32 ms windows of the last eight
10 ms frames (weighted 0.8 per frame back), averaged over 200 Hz - 4 kHz by the output's power
in the newest window, is near 1 for the echo left behind and near 0 for a voice over it.
Measured on the hard bench's recorded frames: frames the speech gate called voiced in the
assistant's speech alone, in easy rooms, 0.6-0.99; the users' voiced frames, median 0.09, 90 %
below 0.27.

The reference leads its echo by ``lead`` samples (where :class:`EchoReference` puts it), so it
is read that much later; the coherence does not depend on a small constant offset beyond that
(the room's direct path). Pure computation on arrays (no I/O).
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from talkie.audio.ring import Ring

#: Window (samples at 16 kHz: 32 ms), the weight of each earlier frame in the smoothed spectra,
#: and how many frames they are smoothed over (0.8 ** 8: what is older weighs 17 %).
WINDOW = 512
SMOOTH = 0.8
FRAMES = 8
BAND_HZ = (200.0, 4000.0)


class EchoCoherence:
    """``push`` the reference block and the canceller's linear output of each 10 ms frame (into
    two history rings: cheap); :meth:`measure` the coherence when it is wanted, for the few
    frames the speech gate would otherwise take for a voice (eight windows' spectra then)."""

    def __init__(self, rate: int = 16000, frame: int = 160, lead: int = 320) -> None:
        self.rate, self.frame, self.lead = int(rate), int(frame), max(0, int(lead))
        self._span = WINDOW + (FRAMES - 1) * self.frame
        self._ref = Ring(self._span + self.lead)
        self._out = Ring(self._span)
        self._window = np.hanning(WINDOW).astype(np.float32)
        freqs = np.fft.rfftfreq(WINDOW, 1.0 / self.rate)
        self._band = slice(
            int(np.searchsorted(freqs, BAND_HZ[0])), int(np.searchsorted(freqs, BAND_HZ[1])) + 1
        )
        # newest window first
        self._weights = (SMOOTH ** np.arange(FRAMES))[:, None]
        #: The last value :meth:`measure` returned.
        self.value = 0.0

    @property
    def pushed(self) -> int:
        """Samples pushed since the last reset."""
        return self._out.written

    def reset(self) -> None:
        """Forget the history (the speaker fell silent: the next answer starts afresh); nothing
        to do when there is none."""
        if self._out.written:
            self._ref.clear()
            self._out.clear()
        self.value = 0.0

    def push(self, ref: np.ndarray, out: np.ndarray) -> None:
        """One frame of the reference (as the canceller had it) and of what the canceller left."""
        self._ref.push(ref)
        self._out.push(out)

    def measure(self) -> float:
        """The coherence over the last frames (0 until the rings are full)."""
        if self._ref.written < self._ref.capacity:
            self.value = 0.0
            return 0.0
        # what the speaker played ``lead`` samples earlier, and what the canceller left since
        ref = self._ref.window(self._ref.written - self._ref.capacity, self._span)
        out = self._out.latest(self._span)
        frames = slice(None, None, -self.frame)
        x = np.fft.rfft(sliding_window_view(ref, WINDOW)[frames][:FRAMES] * self._window)
        y = np.fft.rfft(sliding_window_view(out, WINDOW)[frames][:FRAMES] * self._window)
        x, y = x[:, self._band], y[:, self._band]
        xx = x.real * x.real + x.imag * x.imag
        yy = y.real * y.real + y.imag * y.imag
        w = self._weights
        sxy = (w * (x * np.conj(y))).sum(axis=0)
        sxx = (w * xx).sum(axis=0)
        syy = (w * yy).sum(axis=0)
        msc = (sxy.real * sxy.real + sxy.imag * sxy.imag) / (sxx * syy + 1e-9)
        now = yy[0]
        total = float(now.sum())
        self.value = float(np.dot(msc, now) / total) if total > 1e-3 else 0.0
        return self.value
