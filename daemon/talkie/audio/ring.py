"""The one ring buffer: preallocated, fixed capacity, positions counted as running totals.

A :class:`Ring` is used in one of two ways:

* **a queue** between two threads (the playback jitter buffer): the producer calls :meth:`write`
  (which never overwrites what the consumer has not read: the excess is dropped and counted in
  ``overflows``) and :meth:`flush`; the consumer calls :meth:`read_into`;
* **a history** (what the speaker played, the microphone's pre-roll, the echo delay estimator's
  envelopes): :meth:`push` and :meth:`append` keep the newest ``capacity`` values, overwriting the
  oldest; :meth:`window` reads any span by position (``fill`` for what is gone or not there yet),
  :meth:`latest` the newest values, oldest first.

No locks: every field is written by one side only, and CPython makes a single attribute store
atomic. Positions are running totals (Python ints never overflow), so ``written - read`` is the
fill level and a position names one sample for good.

A flush is asynchronous by design: the producer cannot move the consumer's read position, so it
records the write position at the time of the flush and bumps a generation counter. The consumer
notices the new generation at the start of its next :meth:`read_into` and skips to that position,
so a flush takes effect within one callback period and never discards samples written after it.

A long queue (the speaker's: two minutes of audio) lives in its own anonymous mapping: its pages
are only resident once written, and :meth:`release` gives them back once the consumer has read
everything, so the memory an answer used is not kept for good by a ring it swept through.
"""

from __future__ import annotations

import mmap
from typing import Any

import numpy as np

#: A zero-filled ring of at least this many bytes gets its own mapping (:meth:`Ring.release`).
RELEASABLE_BYTES = 1 << 20


class Ring:
    """Fixed-capacity ring of ``dtype`` values for one producer thread and one consumer thread.

    Counters: ``overflows`` (values dropped by :meth:`write` because the queue was full),
    ``written`` / ``read`` (running totals of values accepted / handed out or skipped).
    """

    def __init__(self, capacity: int, dtype: Any = np.int16, fill: float = 0) -> None:
        if capacity <= 0:
            raise ValueError(f"ring capacity must be > 0, got {capacity}")
        self.capacity = int(capacity)
        self.fill = fill
        nbytes = self.capacity * np.dtype(dtype).itemsize
        # zeros: pages the system hands out as they are first written (a long ring costs only
        # what has been used of it); a long one in a mapping of its own, to give them back
        self._map: mmap.mmap | None = None
        if fill == 0 and nbytes >= RELEASABLE_BYTES and hasattr(mmap, "MADV_DONTNEED"):
            self._map = mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
            self._buf = np.frombuffer(self._map, dtype=dtype)
        elif fill == 0:
            self._buf = np.zeros(self.capacity, dtype=dtype)
        else:
            self._buf = np.full(self.capacity, fill, dtype=dtype)
        # Producer-owned.
        self._w = 0
        self._flush_gen = 0
        self._flush_to = 0
        self.overflows = 0
        # Consumer-owned.
        self._r = 0
        self._seen_gen = 0

    # -- shared views ------------------------------------------------------------------------
    @property
    def written(self) -> int:
        """Total values accepted (by :meth:`write`, :meth:`push` or :meth:`append`)."""
        return self._w

    @property
    def read(self) -> int:
        """Total values consumed (handed out, or skipped by a flush the consumer has applied)."""
        return self._r

    def available(self) -> int:
        """Values waiting to be read, as seen by the producer (pending flushes applied)."""
        return self._w - max(self._r, self._flush_to)

    def free(self) -> int:
        """Values that :meth:`write` can accept right now without dropping."""
        return self.capacity - self.available()

    # -- a queue: the producer ---------------------------------------------------------------
    def write(self, samples: np.ndarray) -> int:
        """Append ``samples`` (1-D) unless that would overwrite unread ones; returns how many were
        accepted. The excess is dropped and counted in ``overflows`` (the newest are dropped)."""
        n = len(samples)
        room = self.capacity - (self._w - max(self._r, self._flush_to))
        if n > room:
            self.overflows += n - room
            n = room
        if n <= 0:
            return 0
        self._store(samples, n)
        return n

    def flush(self) -> None:
        """Discard everything written and not yet read (applied by the consumer's next read)."""
        self._flush_to = self._w
        self._flush_gen += 1

    # -- a queue: the consumer ---------------------------------------------------------------
    def read_into(self, out: np.ndarray) -> int:
        """Copy up to ``len(out)`` values into ``out`` (a 1-D view); returns the count copied.
        The rest of ``out`` is left untouched. Consumer thread only."""
        gen = self._flush_gen
        if gen != self._seen_gen:
            self._seen_gen = gen
            if self._flush_to > self._r:
                self._r = self._flush_to
        r = self._r
        n = min(len(out), self._w - r)
        if n <= 0:
            return 0
        start = r % self.capacity
        first = min(n, self.capacity - start)
        out[:first] = self._buf[start : start + first]
        if first < n:
            out[first:n] = self._buf[: n - first]
        self._r = r + n
        return n

    def release(self) -> bool:
        """Give the pages of a queue the consumer has emptied back to the system (the next write
        touches them afresh: what was read is zeros). Producer thread; False, and nothing done,
        while something is left to read or for a ring without a mapping of its own.

        Safe against the consumer: with nothing left to read it does not touch the buffer, and
        only the producer, this thread, can give it something to read."""
        if self._map is None or self._r < self._w:
            return False
        self._map.madvise(mmap.MADV_DONTNEED)
        return True

    # -- a history ---------------------------------------------------------------------------
    def push(self, values: np.ndarray) -> None:
        """Append ``values`` (1-D), overwriting the oldest once the ring is full (no allocation)."""
        n = len(values)
        if n > self.capacity:  # all but the newest ``capacity`` are overwritten at once
            self._w += n - self.capacity
            values, n = values[n - self.capacity :], self.capacity
        self._store(values, n)

    def append(self, value: float) -> None:
        """Append one value, overwriting the oldest once the ring is full."""
        self._buf[self._w % self.capacity] = value
        self._w += 1

    def window(self, start: int, n: int) -> np.ndarray:
        """A copy of the values at positions ``[start, start + n)``: ``fill`` for those already
        overwritten or not written yet."""
        out = np.full(n, self.fill, dtype=self._buf.dtype)
        cap, written = self.capacity, self._w
        lo, hi = max(start, written - cap, 0), min(start + n, written)
        if hi > lo:
            a, b = lo % cap, (hi - 1) % cap + 1
            if a < b:
                out[lo - start : hi - start] = self._buf[a:b]
            else:
                split = cap - a
                out[lo - start : lo - start + split] = self._buf[a:]
                out[lo - start + split : hi - start] = self._buf[:b]
        return out

    def latest(self, n: int) -> np.ndarray:
        """A copy of the newest ``n`` values (at most ``capacity``), oldest first."""
        return self.window(self._w - n, n)

    def clear(self) -> None:
        """Forget everything: positions back to 0, every value ``fill`` (single-threaded use)."""
        self._buf[:] = self.fill
        self._w = self._r = self._flush_to = 0
        self._flush_gen = self._seen_gen = 0

    # -- internals ---------------------------------------------------------------------------
    def _store(self, values: np.ndarray, n: int) -> None:
        start = self._w % self.capacity
        first = min(n, self.capacity - start)
        self._buf[start : start + first] = values[:first]
        if first < n:
            self._buf[: n - first] = values[first:n]
        self._w += n  # publish only after the data is in place
