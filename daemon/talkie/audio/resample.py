"""Thin streaming resampler for mono int16 audio (wraps ``soxr.ResampleStream``).

One :class:`Resampler` carries the filter state across chunks, so resampling a stream chunk by
chunk gives the same result as resampling it in one go (no chunk-boundary artefacts).  Use it from
one thread only (the asyncio loop in talkie).
"""

from __future__ import annotations


class Resampler:
    """Streaming mono int16 resampler from ``in_rate`` to ``out_rate`` Hz.

    :meth:`process` takes and returns 1-D int16 numpy arrays (the output length varies by a sample
    from call to call; the filter holds back ``delay`` output samples).  :meth:`drain` returns the
    held-back tail at the end of a stream and resets the state for the next one; :meth:`reset`
    drops it instead.
    """

    def __init__(self, in_rate: int | float, out_rate: int | float, quality: str = "HQ") -> None:
        import soxr

        if in_rate <= 0 or out_rate <= 0:
            raise ValueError(f"resampler rates must be > 0, got {in_rate} -> {out_rate}")
        self.in_rate = in_rate
        self.out_rate = out_rate
        # float32 inside: soxr dithers int16 output, which would make results non-deterministic.
        self._stream = soxr.ResampleStream(in_rate, out_rate, 1, dtype="float32", quality=quality)
        self._dirty = False

    @property
    def delay(self) -> float:
        """Output samples currently held back inside the filter."""
        return float(self._stream.delay())

    def process(self, samples):
        """Resample one chunk (1-D int16 array, any length); returns the int16 output so far."""
        import numpy as np

        x = np.asarray(samples, dtype=np.float32)
        if len(x):
            self._dirty = True
        return _to_int16(self._stream.resample_chunk(x))

    def drain(self):
        """End of stream: return the held-back tail (int16) and reset for a new stream."""
        import numpy as np

        if not self._dirty:
            return np.zeros(0, dtype=np.int16)
        tail = self._stream.resample_chunk(np.zeros(0, dtype=np.float32), last=True)
        self.reset()
        return _to_int16(tail)

    def reset(self) -> None:
        """Forget all state (discontinuity: e.g. after a flush)."""
        self._stream.clear()
        self._dirty = False


def _to_int16(y):
    import numpy as np

    np.rint(y, out=y)
    np.clip(y, -32768.0, 32767.0, out=y)
    return y.astype(np.int16)
