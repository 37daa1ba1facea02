"""The uplink outbox: a user turn, in order, waiting for (or being sent to) the Live session.

The microphone runs all the time; what it hears enters the outbox only between
:meth:`Outbox.start_turn` and :meth:`Outbox.end_turn`. A sender (:mod:`talkie.live.link`) takes
items from the head while a session is up and acknowledges each one once it went out. Until the link
is up, items simply wait, so a turn spoken while connecting is sent whole and in order once the
session opens.

The items of the current turn that were already sent are kept, so that when the link drops mid-turn
:meth:`Outbox.replay` can queue the turn again from its start for the next session.

Bounded: at most ``max_audio_bytes`` of audio wait or are kept for replay. What does not fit is
dropped and counted (``dropped_bytes``) and ``on_overflow`` is told once per turn, never silently.

No I/O and no asyncio here: ``on_ready`` is called whenever an item becomes available, so the sender
can wake up.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field


class Kind(enum.Enum):
    ACTIVITY_START = "activity_start"
    AUDIO = "audio"
    ACTIVITY_END = "activity_end"
    TEXT = "text"


@dataclass(frozen=True)
class Item:
    """One message for the Live session."""

    kind: Kind
    pcm: bytes = field(default=b"", repr=False)
    text: str = ""


START = Item(Kind.ACTIVITY_START)
END = Item(Kind.ACTIVITY_END)
#: The end of an activity a dropped turn left open on the connection (the server must see one);
#: it belongs to that connection alone.
CLOSE = Item(Kind.ACTIVITY_END, text="closes a dropped turn")


class Outbox:
    """Ordered, bounded, replayable queue of a user's turns."""

    def __init__(
        self,
        max_audio_bytes: int,
        *,
        on_ready: Callable[[], None] = lambda: None,
        on_overflow: Callable[[int], None] = lambda dropped: None,
    ) -> None:
        self.max_audio_bytes = max_audio_bytes
        self.on_ready = on_ready
        self.on_overflow = on_overflow
        self.capturing = False
        #: An activity went out on this connection and its end has not (the sender's view).
        self.open_on_the_wire = False
        self.dropped_bytes = 0
        self._queue: deque[Item] = deque()
        #: The items already sent of the turn that went out last (from its start), kept for a
        #: replay until the next turn starts going out.
        self._sent: list[Item] = []
        self._bytes = 0  # audio bytes in _queue + _sent
        self._overflowed = False

    # ---- the turn (driven by the state machine's effects)

    def start_turn(self) -> None:
        """Queue activity_start; microphone audio is queued from now on. An activity still open
        is closed first (activities never nest)."""
        self.end_turn()
        self._turn_starts()
        self.capturing = True
        self._overflowed = False
        self._put(START)

    def end_turn(self) -> None:
        """Stop queuing audio and queue activity_end."""
        if not self.capturing:
            return
        self.capturing = False
        self._put(END)

    def add_text(self, text: str) -> None:
        """Queue a whole text turn (it is a turn of its own: a replay resends it)."""
        self.end_turn()
        self._turn_starts()
        self._put(Item(Kind.TEXT, text=text))

    def replay(self) -> None:
        """Queue the already-sent part of the current turn again, ahead of what waits."""
        if self._sent:
            self._queue.extendleft(reversed(self._sent))
            self._sent = []
            self.on_ready()

    def drop(self) -> None:
        """Forget the current turn and anything waiting. An activity it left open on the
        connection is closed there (the server must see its end; nothing of it is kept)."""
        self.capturing = False
        self._queue.clear()
        self._sent = []
        self._bytes = 0
        if self.open_on_the_wire:
            self._put(CLOSE)

    def push_audio(self, pcm: bytes) -> None:
        """Microphone audio (one chunk): queued if a turn is being captured, else ignored."""
        if not self.capturing:
            return
        if self._bytes + len(pcm) > self.max_audio_bytes:
            # replay is best-effort, never at the expense of new audio; but a replay still opens
            # its activity: the outbox never sends audio outside one
            self._forget_sent(keep_start=True)
        if self._bytes + len(pcm) > self.max_audio_bytes:
            self.dropped_bytes += len(pcm)
            if not self._overflowed:
                self._overflowed = True
                self.on_overflow(self.dropped_bytes)
            return
        self._bytes += len(pcm)
        self._put(Item(Kind.AUDIO, pcm))

    # ---- the sender's side

    def peek(self) -> Item | None:
        """The next item to send, or None."""
        return self._queue[0] if self._queue else None

    def sent(self, item: Item) -> None:
        """``item`` (the head) went out: keep it for a replay of this turn."""
        if self._queue and self._queue[0] is item:
            self._queue.popleft()
            if item is CLOSE:
                self.open_on_the_wire = False
                return  # nothing to replay: it belongs to the connection that had the turn
            if item.kind in (Kind.ACTIVITY_START, Kind.TEXT):
                self._forget_sent()  # a turn starts: the replay log holds this turn only
            self.open_on_the_wire = item.kind is Kind.ACTIVITY_START or (
                self.open_on_the_wire and item.kind is Kind.AUDIO
            )
            self._sent.append(item)

    def connected(self) -> None:
        """A new connection is about to take items: nothing is open on it, and the end meant for
        a dropped turn's activity on the last one is not for it."""
        self.open_on_the_wire = False
        if CLOSE in self._queue:
            self._queue = deque(item for item in self._queue if item is not CLOSE)

    def __len__(self) -> int:
        return len(self._queue)

    # ---- internals

    def _put(self, item: Item) -> None:
        self._queue.append(item)
        self.on_ready()

    def _turn_starts(self) -> None:
        """A new turn is queued: the last one is replayed no more once it has gone out whole;
        while some of it still waits, what of it was sent stays, so that a replay sends it
        from its start (its sending forgets it, when the new turn's first item goes out)."""
        if not self._queue:
            self._forget_sent()

    def _forget_sent(self, keep_start: bool = False) -> None:
        self._bytes -= sum(len(i.pcm) for i in self._sent)
        opens = keep_start and bool(self._sent) and self._sent[0].kind is Kind.ACTIVITY_START
        self._sent = [START] if opens else []
