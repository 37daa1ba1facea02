"""The echo canceller's reference: what the speaker really played, on the microphone's clock.

The playback callback keeps the last seconds of what it handed to PortAudio (``Playback.history``)
and, for its latest block, the DAC time of that block's first sample (``Playback.dac_stamp``).
Each microphone block comes with the ADC time of its first sample. The sample the speaker played
at that instant has index ``count + (adc - dac) * rate``; the reference handed to the canceller
starts ``lead_ms`` after it (already handed to PortAudio, not yet heard), so that it leads its echo
even when the clocks' estimate is that much off. The canceller's tail covers the lead, the room's
delay (10-40 ms) and its reverb.

The reference is read as one continuous stream (resampled to the microphone's rate with soxr, in
order); it is re-synchronised only when the estimate moves by more than ``resync_ms`` (a flush, an
xrun, a restarted stream), and nudged by one sample when it drifts more than ``nudge_ms``.
"""

from __future__ import annotations

import numpy as np

#: Reference blocks quieter than this (peak, s16) are silence; the far end counts as active this
#: long after the last loud one (the room's reverb tail).
SILENT_PEAK = 16
HANGOVER_S = 0.3


class EchoReference:
    """Reads aligned reference blocks at ``rate`` from a playback's history."""

    def __init__(self, playback, rate: int = 16000, *, lead_ms: float = 20.0,
                 resync_ms: float = 15.0, nudge_ms: float = 2.0) -> None:
        self.playback = playback
        self.rate = int(rate)
        self.lead_ms = float(lead_ms)
        self.resync_ms = float(resync_ms)
        self.nudge_ms = float(nudge_ms)
        self.resyncs = 0
        self._next: int | None = None  # next history index (device rate) to read
        self._dev_rate = 0
        self._resampler = None
        self._fifo = np.zeros(0, dtype=np.int16)
        self._quiet_s = HANGOVER_S  # seconds since the reference was last loud

    def take(self, n: int, adc_time: float) -> tuple[np.ndarray, bool]:
        """``n`` reference samples for the microphone samples from ``adc_time`` on, and whether the
        far end is active (loud now or within the reverb hangover)."""
        stamp = self.playback.dac_stamp
        if stamp is None:
            self._next = None
            return np.zeros(n, dtype=np.int16), False
        count, dac = stamp
        dev_rate = self.playback.device_rate
        if dev_rate != self._dev_rate:
            self._dev_rate, self._next = dev_rate, None
            self._resampler = None
            if dev_rate != self.rate:
                from talkie.audio.resample import Resampler

                self._resampler = Resampler(dev_rate, self.rate)
        want = count + (adc_time - dac + self.lead_ms / 1000.0) * dev_rate
        if self._next is None or abs(want - self._expected()) > self.resync_ms * dev_rate / 1000:
            self._resync(int(round(want)))
        elif want - self._expected() > self.nudge_ms * dev_rate / 1000:
            self._next += 1
        elif self._expected() - want > self.nudge_ms * dev_rate / 1000:
            self._next -= 1
        while len(self._fifo) < n:
            k = max(1, (n - len(self._fifo)) * dev_rate // self.rate)
            seg = self._read(self._next, k)
            self._next += k
            if self._resampler is not None:
                seg = self._resampler.process(seg)
            self._fifo = np.concatenate((self._fifo, seg)) if len(self._fifo) else seg
        block, self._fifo = self._fifo[:n], self._fifo[n:]
        if len(block) and int(np.max(np.abs(block.astype(np.int32)))) > SILENT_PEAK:
            self._quiet_s = 0.0
        else:
            self._quiet_s += n / self.rate
        return block, self._quiet_s < HANGOVER_S

    # ---- internals

    def _expected(self) -> float:
        """The device-rate index the fifo's next sample corresponds to."""
        return self._next - len(self._fifo) * self._dev_rate / self.rate

    def _resync(self, index: int) -> None:
        self.resyncs += self._next is not None
        self._next = index
        self._fifo = np.zeros(0, dtype=np.int16)
        if self._resampler is not None:
            self._resampler.reset()

    def _read(self, start: int, k: int) -> np.ndarray:
        """History samples [start, start + k): zeros for what is not (or no longer) there."""
        hist = self.playback.history
        cap = len(hist)
        written = self.playback.history_written
        out = np.zeros(k, dtype=np.int16)
        lo, hi = max(start, written - cap, 0), min(start + k, written)
        if hi > lo:
            a, b = lo % cap, (hi - 1) % cap + 1
            if a < b:
                out[lo - start:hi - start] = hist[a:b]
            else:
                split = cap - a
                out[lo - start:lo - start + split] = hist[a:]
                out[lo - start + split:hi - start] = hist[:b]
        return out
