"""The timers and alarms kept across restarts: ``alarms.json`` in the state directory.

The file is JSON::

    {"version": 1, "next": 4,
     "alarms": [{"id": "t3", "kind": "timer", "label": "pasta", "due": 1800000600.0,
                 "set_at": 1800000000.0, "call_id": "fc-1", "clock": ""}],
     "spent": [{"call_id": "fc-0", "id": "a2", "ended": "rang"}]}

``due`` and ``set_at`` are UTC epoch seconds; ``clock`` is a clock alarm's local "HH:MM" as asked;
``next`` numbers the next id; ``spent`` remembers the calls whose alarm has rung or was cancelled
(the newest few), so a call the service sends again after a restart sets nothing.

The file is a :class:`~talkie.storage.StateFile`: written atomically, mode 0600, by a writer
thread of its own (the loop never waits for the disk; the newest state wins). Nothing here raises:
a file that is missing, unreadable, too large or not what it should be means no alarms, said once
in the log; a file that cannot be written leaves the alarms in memory only, said once per run of
failures.
"""

from __future__ import annotations

import logging
import math
import os
import re
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from talkie.storage import StateFile

log = logging.getLogger("talkie.tools.alarms")

FILE_NAME = "alarms.json"
VERSION = 1
#: The most of the file that is read: a few hundred alarms fit in a fraction of it.
READ_MAX = 64 * 1024
KINDS = ("timer", "alarm")
LABEL_MAX = 60
#: How many finished calls are remembered for duplicates.
SPENT_MAX = 32
_CLOCK = re.compile(r"(?:[01]?[0-9]|2[0-3]):[0-5][0-9]")


@dataclass(frozen=True)
class Alarm:
    """One timer ("t3": rings a duration after it was set) or clock alarm ("a4": at a time)."""

    id: str
    kind: str
    label: str
    #: When it rings, UTC epoch seconds.
    due: float
    set_at: float
    #: The tool call that set it (a duplicate of that call sets nothing).
    call_id: str = ""
    #: A clock alarm's local "HH:MM"; "" for a timer.
    clock: str = ""

    @property
    def words(self) -> str:
        """What rings, as said: 'the timer "pasta"', 'the 07:30 alarm', 'a timer'."""
        if self.label:
            return f'the {self.kind} "{self.label}"'
        if self.clock:
            return f"the {self.clock} alarm"
        return f"a {self.kind}" if self.kind == "timer" else f"an {self.kind}"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Any) -> Alarm:
        """The alarm a file's entry describes; ValueError if it describes none."""
        if not isinstance(data, dict):
            raise ValueError("not an object")
        ident, kind, label = data.get("id"), data.get("kind"), data.get("label", "")
        call_id, clock = data.get("call_id", ""), data.get("clock", "")
        if not isinstance(ident, str) or not 0 < len(ident) <= 16 or kind not in KINDS:
            raise ValueError("no id or kind")
        if not isinstance(label, str) or not isinstance(call_id, str) or len(call_id) > 256:
            raise ValueError("bad label or call id")
        if not isinstance(clock, str) or (clock and not _CLOCK.fullmatch(clock)):
            raise ValueError("bad clock time")
        return cls(
            ident,
            str(kind),
            label[:LABEL_MAX],
            _epoch(data.get("due")),
            _epoch(data.get("set_at")),
            call_id,
            clock,
        )


@dataclass(frozen=True)
class Spent:
    """A call whose alarm is gone: it ``ended`` "rang" or "cancelled"."""

    call_id: str
    id: str
    ended: str


@dataclass(frozen=True)
class Saved:
    """Everything the file holds."""

    alarms: tuple[Alarm, ...] = ()
    #: The number of the next id.
    next: int = 1
    spent: tuple[Spent, ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        return {
            "version": VERSION,
            "next": self.next,
            "alarms": [a.to_json() for a in self.alarms],
            "spent": [asdict(s) for s in self.spent[-SPENT_MAX:]],
        }


def _epoch(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError("not a time")
    return float(value)


def _number(ident: str) -> int:
    digits = ident[1:]
    return int(digits) if digits.isdigit() else 0


def parse(data: Any) -> tuple[Saved, int]:
    """The state a file's JSON describes and how many entries were dropped; ValueError if its
    shape is wrong."""
    if not isinstance(data, dict) or not isinstance(data.get("alarms"), list):
        raise ValueError("not an object with a list of alarms")
    alarms: dict[str, Alarm] = {}
    dropped = 0
    for entry in data["alarms"]:
        try:
            alarm = Alarm.from_json(entry)
        except ValueError:
            dropped += 1
            continue
        if alarm.id in alarms:
            dropped += 1
        else:
            alarms[alarm.id] = alarm
    spent: list[Spent] = []
    raw_spent = data.get("spent")
    for entry in raw_spent if isinstance(raw_spent, list) else ():
        if isinstance(entry, dict) and all(
            isinstance(entry.get(k), str) for k in ("call_id", "id", "ended")
        ):
            spent.append(Spent(entry["call_id"], entry["id"], entry["ended"]))
    nxt = data.get("next")
    highest = max((_number(i) for i in alarms), default=0)
    if isinstance(nxt, bool) or not isinstance(nxt, int) or not 1 <= nxt <= 99999:
        nxt = 1
    saved = Saved(tuple(alarms.values()), max(nxt, highest + 1), tuple(spent[-SPENT_MAX:]))
    return saved, dropped


class AlarmStore:
    """The saved state (:class:`Saved`), in memory and in ``path`` (None: memory only).

    Read at construction. :meth:`save` is called in the loop's thread; with ``background`` the
    file is written by the store's thread, else at once in the caller's.
    """

    def __init__(self, path: str | os.PathLike[str] | None, *, background: bool = True) -> None:
        self.background = background
        self._state = Saved()
        self._lock = threading.Lock()  # the state kept and the state written, in one order
        self._file = StateFile(
            path,
            what="the timers and alarms",
            unread="starting with none",
            unsaved="a restart will forget them",
            limit=READ_MAX,
            background=background,
            log=log,
        )
        self._load()

    @property
    def path(self) -> Path | None:
        return self._file.path

    @property
    def state(self) -> Saved:
        return self._state

    def save(self, state: Saved) -> None:
        """Keep ``state`` and write it to the file (in the background; at once once closed)."""
        with self._lock:
            self._state = state
            if self.path is not None:
                self._file.write(state.to_json())

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until what is kept is on disk (at most ``timeout`` s); whether it is."""
        return self._file.flush(timeout)

    def close(self, timeout: float | None = 2.0) -> bool:
        """Write what is pending (at most ``timeout`` s) and end the writer thread."""
        return self._file.close(timeout)

    def _load(self) -> None:
        data = self._file.read()
        if data is None:
            return
        try:
            state, dropped = parse(data)
        except ValueError:
            self._file.unusable("not a list of alarms")
            return
        if dropped:
            log.warning(
                "%d of the timers and alarms in %s could not be read: they are forgotten",
                dropped,
                self.path,
            )
        self._state = state
