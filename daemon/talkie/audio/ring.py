"""Preallocated single-producer / single-consumer ring buffer of int16 samples.

The producer (the asyncio loop thread) calls :meth:`Ring.write` and :meth:`Ring.flush`; the consumer
(PortAudio's callback thread) calls :meth:`Ring.read_into`.  No locks: every field is written by one
side only, and CPython makes a single attribute store atomic.  Positions are running totals (Python
ints never overflow), so ``written - read`` is the fill level.

Flush is asynchronous by design: the producer cannot move the consumer's read position, so it
records the write position at the time of the flush and bumps a generation counter.  The consumer
notices the new generation at the start of its next :meth:`read_into` and skips to that position,
so a flush takes effect within one callback period and never discards samples written after it.
"""

from __future__ import annotations

import numpy as np


class Ring:
    """Fixed-capacity int16 ring buffer for one producer thread and one consumer thread.

    Counters: ``overflows`` (samples dropped by :meth:`write` because the ring was full),
    ``written`` / ``read`` (running totals of samples accepted / handed out or skipped).
    """

    def __init__(self, capacity: int) -> None:
        if capacity <= 0:
            raise ValueError(f"ring capacity must be > 0, got {capacity}")
        self.capacity = int(capacity)
        self._buf = np.zeros(self.capacity, dtype=np.int16)
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
        """Total samples accepted by :meth:`write` since creation."""
        return self._w

    @property
    def read(self) -> int:
        """Total samples consumed (handed out, or skipped by a flush the consumer has applied)."""
        return self._r

    def available(self) -> int:
        """Samples waiting to be read, as seen by the producer (pending flushes already applied)."""
        return self._w - max(self._r, self._flush_to)

    def free(self) -> int:
        """Samples that :meth:`write` can accept right now without dropping."""
        return self.capacity - self.available()

    # -- producer ----------------------------------------------------------------------------
    def write(self, samples: np.ndarray) -> int:
        """Append ``samples`` (1-D int16); returns how many were accepted.  The excess is dropped and
        counted in ``overflows`` (the newest samples are the ones dropped)."""
        n = len(samples)
        room = self.capacity - (self._w - max(self._r, self._flush_to))
        if n > room:
            self.overflows += n - room
            n = room
        if n <= 0:
            return 0
        start = self._w % self.capacity
        first = min(n, self.capacity - start)
        self._buf[start : start + first] = samples[:first]
        if first < n:
            self._buf[: n - first] = samples[first:n]
        self._w += n  # publish only after the data is in place
        return n

    def flush(self) -> None:
        """Discard everything written so far and not yet read (applied by the consumer's next read)."""
        self._flush_to = self._w
        self._flush_gen += 1

    # -- consumer ----------------------------------------------------------------------------
    def read_into(self, out: np.ndarray) -> int:
        """Copy up to ``len(out)`` samples into ``out`` (a 1-D int16 view); returns the count copied.
        The rest of ``out`` is left untouched.  Consumer thread only."""
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
