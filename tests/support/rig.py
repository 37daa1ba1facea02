"""A rig for the supervisor's tests: the daemon in-process with the real SDK and the Live double, real
playback through the PulseAudio speaker, the mock panel, and two stand-ins that make the tests exact
and fast:

* :class:`NumberedMic` takes the microphone's place (same interface as ``talkie.audio.capture.Capture``).
  Every 20 ms chunk it delivers carries its sequence number in its samples, so a test can check that
  each chunk of a turn reached the service exactly once and in order across drops and handovers,
  which recorded speech cannot show. (The real capture path has its own tests.)
* :class:`VirtualClock` keeps the app's timers (back-off, idle close, handover deadline) on a clock the
  test advances, so a 20 s outage takes no 20 s and the back-off delays can be read back exactly.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

CHUNK = 320  # samples: 20 ms at 16 kHz
#: [audio] settings under which the numbered chunks reach the outbox untouched: no echo canceller
#: rewriting their samples, no voice detector listening to them.
PLAIN_AUDIO = 'echo = "off"\nbarge_in = false'


def chunk_for(seq: int) -> bytes:
    """The PCM of chunk ``seq`` (every sample holds seq + 1)."""
    return np.full(CHUNK, seq + 1, dtype=np.int16).tobytes()


def seqs_of(pcm: bytes) -> list[int]:
    """The sequence numbers of the chunks in ``pcm`` (as sent: one chunk per message)."""
    samples = np.frombuffer(pcm, dtype=np.int16)
    return [int(samples[i]) - 1 for i in range(0, len(samples), CHUNK)]


class NumberedMic:
    """A microphone the test speaks into chunk by chunk (``Capture``'s interface)."""

    def __init__(self, device=None, *, loop, on_audio, **_: object) -> None:
        self.loop = loop
        self.on_audio = on_audio
        self.next_seq = 0
        self.running = False
        self.overflows = self.xruns = 0
        self.block_time = 0.0  # no recording clock: chunks carry only their numbers

    def start(self) -> None:
        self.running = True

    def stop(self) -> None:
        self.running = False

    def configure(self, **_: object) -> None:
        pass

    wanted = True

    def want(self, wanted: bool, since: float | None = None) -> None:
        self.wanted = wanted

    #: The chunks are spoken into the loop at once: none is ever in flight (a release ends
    #: the turn at once).
    in_flight_s = 0.0

    def speak(self, chunks: int) -> range:
        """Deliver ``chunks`` numbered chunks now (in the loop thread); returns their numbers."""
        first = self.next_seq
        for seq in range(first, first + chunks):
            self.on_audio(chunk_for(seq))
        self.next_seq += chunks
        return range(first, first + chunks)

    @property
    def last_callback(self) -> float:
        """A live microphone calls back all the time, spoken into or not."""
        return time.monotonic()


@dataclass(order=True)
class _Due:
    at: float
    order: int
    callback: Callable[[], None] = field(compare=False)
    cancelled: bool = field(default=False, compare=False)

    def cancel(self) -> None:
        self.cancelled = True


class VirtualClock:
    """``call_later`` for the app's timers, on a clock that moves only when the test says so."""

    def __init__(self) -> None:
        self.now = 0.0
        self.requested: list[float] = []  # every delay asked for, in order
        self._queue: list[_Due] = []
        self._order = itertools.count()

    def call_later(self, delay: float, callback: Callable[[], None]) -> _Due:
        self.requested.append(delay)
        due = _Due(self.now + delay, next(self._order), callback)
        heapq.heappush(self._queue, due)
        return due

    def pending(self) -> list[float]:
        return sorted(d.at - self.now for d in self._queue if not d.cancelled)

    def fire_next(self, limit: float | None = None) -> float | None:
        """Move to the next pending timer (if due before ``limit`` seconds from now) and fire it."""
        while self._queue and self._queue[0].cancelled:
            heapq.heappop(self._queue)
        if not self._queue or (limit is not None and self._queue[0].at - self.now > limit):
            return None
        due = heapq.heappop(self._queue)
        self.now = max(self.now, due.at)
        due.callback()
        return self.now

    def advance(self, seconds: float) -> None:
        """Let ``seconds`` pass, firing every timer that falls due on the way."""
        end = self.now + seconds
        while self.fire_next(limit=end - self.now) is not None:
            pass
        self.now = end


async def until(predicate: Callable[[], bool], timeout: float = 20.0, what: str = "") -> None:
    """Wait (bounded) for a condition that other tasks make true."""
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.005)


# ---- reading the uplink back: what the double received, turn by turn (soak and bench)


@dataclass
class Segment:
    """One user turn as one connection carried it: activity_start, audio..., activity_end.

    ``complete`` is False when the connection ended (or the record ends) before the activity_end:
    the turn was cut there (a drop, a handover) and is the server's to discard.
    """

    conn: int
    seqs: list[int]
    complete: bool = False
    end_seq: int = 0  # message seq of its activity_end (0 while incomplete)


def segments(messages) -> list[Segment]:
    """Every user turn the double received, per connection, in order of their activity_start.

    ``messages`` are the double's recorded messages (``double.messages``, or anything with their
    ``conn``, ``seq``, ``kind`` and ``blob``); audio outside a turn (none is expected with
    push-to-talk) is ignored.
    """
    found: list[Segment] = []
    open_: dict[int, Segment] = {}
    for m in messages:
        if m.kind == "activity_start":
            open_[m.conn] = Segment(m.conn, [])
            found.append(open_[m.conn])
        elif m.kind == "audio" and m.conn in open_:
            open_[m.conn].seqs += seqs_of(m.blob or b"")
        elif m.kind == "activity_end" and m.conn in open_:
            segment = open_.pop(m.conn)
            segment.complete, segment.end_seq = True, m.seq
    return found


def prune_cancelled(clock: VirtualClock) -> None:
    """Drop cancelled timers from ``clock``'s queue (the loop's own heap does so too, lazily), so a
    long run's bookkeeping does not pass for the app's memory."""
    clock._queue = [due for due in clock._queue if not due.cancelled]
    heapq.heapify(clock._queue)
