"""Kitchen timers and clock alarms: the scheduler the loop runs (the ``timers`` tool the model
calls is :mod:`talkie.tools.timer_tool`).

:class:`Alarms` keeps them in an :class:`~talkie.tools.alarm_store.AlarmStore` (``alarms.json``:
they outlive a restart) and calls ``on_due(alarm)`` when one is due, once: it is gone from the
store before ``on_due`` hears of it, so a restart does not ring it again. One that came due while
the device was off rings at :meth:`Alarms.start`.

A Raspberry Pi has no real-time clock: NTP may step the wall clock by hours after boot. So no
alarm rests on one long ``call_later``: while any is pending the clock is looked at again at
least every :data:`CHECK_S` seconds, and not at all while none is. A clock alarm ("07:30") rings
when the wall clock says so, however it got there; a timer set in this run ("ten minutes") rings
after that much time has passed (the loop's monotonic clock), whatever the wall clock does, and
its saved due time follows a step of the clock. A timer read from the file (set before a restart)
can only go by the wall clock.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable
from typing import Protocol

from talkie.tools.alarm_store import LABEL_MAX, SPENT_MAX, Alarm, AlarmStore, Spent

log = logging.getLogger("talkie.tools.alarms")

#: The longest wait between two looks at the clock while an alarm is pending.
CHECK_S = 60.0
#: The furthest ahead a timer or an alarm may be set.
MAX_AHEAD_S = 7 * 24 * 3600.0
#: A timer's saved due time is moved when the wall clock moved by more than this.
STEP_S = 2.0


AlarmList = list[Alarm]


class AlarmError(ValueError):
    """What cannot be set, in words the model can pass on."""


class AlreadyDone(AlarmError):
    """This call set an alarm that has since rung or was cancelled: it sets nothing again."""

    def __init__(self, spent: Spent) -> None:
        since = "rung" if spent.ended == "rang" else "been cancelled"
        super().__init__(f"this call already set {spent.id}, which has since {since}")
        self.spent = spent


class Handle(Protocol):
    def cancel(self) -> None: ...


class CallLater(Protocol):
    """The loop's ``call_later``, or a test's."""

    def __call__(self, delay: float, callback: Callable[[], None], /) -> Handle: ...


class Alarms:
    """The pending timers and alarms (used in the loop's thread)."""

    def __init__(
        self,
        store: AlarmStore,
        *,
        on_due: Callable[[Alarm], None],
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        max_alarms: int = 20,
        call_later: CallLater | None = None,
    ) -> None:
        self.store = store
        self.on_due = on_due
        self.clock = clock
        self.monotonic = monotonic
        self.max_alarms = max_alarms
        self._call_later = call_later
        #: The timers set in this run: when they ring on the monotonic clock.
        self._elapsed: dict[str, float] = {}
        self._handle: Handle | None = None
        self._next_check: float | None = None
        self._started = self._closed = False

    @property
    def next_check_s(self) -> float | None:
        """The delay of the pending look at the clock; None when none is pending."""
        return self._next_check

    def start(self) -> None:
        """Begin scheduling (in the loop): what came due meanwhile rings at once."""
        self._started, self._closed = True, False
        if self._call_later is None:
            self._call_later = asyncio.get_running_loop().call_later
        self._schedule()

    def close(self) -> None:
        """Stop scheduling (the alarms stay in the store for the next start)."""
        self._closed = True
        self._cancel_check()

    def list(self) -> AlarmList:
        """The pending ones, the soonest first."""
        return sorted(self._on_the_clock()[0], key=lambda a: a.due)

    def find(self, call_id: str) -> Alarm | None:
        """The pending alarm that call ``call_id`` set."""
        if not call_id:
            return None
        return next((a for a in self.store.state.alarms if a.call_id == call_id), None)

    def set(
        self,
        *,
        in_s: float | None = None,
        at: float | None = None,
        label: str = "",
        call_id: str = "",
        clock: str = "",
    ) -> Alarm:
        """A timer ringing ``in_s`` seconds from now, or an alarm at epoch ``at`` (``clock``: its
        local "HH:MM"). The call's own alarm if ``call_id`` set one already; AlarmError (words)
        when it cannot be set."""
        if (in_s is None) == (at is None):
            raise AlarmError("give either a duration or a time")
        existing = self.find(call_id)
        if existing is not None:
            return existing
        state = self.store.state
        spent = next((s for s in state.spent if call_id and s.call_id == call_id), None)
        if spent is not None:
            raise AlreadyDone(spent)
        now = self.clock()
        ahead = in_s if in_s is not None else (at or 0.0) - now
        if not 0 < ahead <= MAX_AHEAD_S:
            raise AlarmError(
                "that time has passed" if ahead <= 0 else "that is more than 7 days ahead"
            )
        if len(state.alarms) >= self.max_alarms:
            raise AlarmError(
                f"{len(state.alarms)} timers and alarms are set, the most there may be: "
                "cancel one first"
            )
        number = state.next if state.alarms else 1
        kind = "timer" if in_s is not None else "alarm"
        alarm = Alarm(
            f"{kind[0]}{number}",
            kind,
            " ".join(label.split())[:LABEL_MAX],
            now + ahead,
            now,
            call_id,
            clock if at is not None else "",
        )
        if in_s is not None:
            self._elapsed[alarm.id] = self.monotonic() + in_s
        self.store.save(dataclasses.replace(state, alarms=(*state.alarms, alarm), next=number + 1))
        log.info("%s %s set: rings in %.0f s", kind, alarm.id, ahead)
        self._schedule()
        return alarm

    def cancel(self, key: str) -> AlarmList:
        """Cancel the alarm with id ``key``, else those labelled ``key``; the ones cancelled."""
        key = " ".join(key.split()).casefold()
        pending = self.store.state.alarms
        gone = [a for a in pending if a.id.casefold() == key]
        if not gone:
            gone = [a for a in pending if key and a.label.casefold() == key]
        return self._drop(gone, "cancelled")

    def cancel_all(self) -> AlarmList:
        return self._drop(list(self.store.state.alarms), "cancelled")

    def check(self) -> AlarmList:
        """Look at the clock: ring what is due (``on_due`` for each, the soonest first), move the
        timers' due times after a step of the wall clock, and look again later; the ones rung."""
        now = self.clock()
        kept, due, step = self._on_the_clock()
        if step:
            log.info("the clock moved by %+.0f s: the timers keep their durations", step)
            self.store.save(dataclasses.replace(self.store.state, alarms=tuple(kept)))
        rung = self._drop(due, "rang", schedule=False)
        for alarm in sorted(rung, key=lambda a: a.due):
            log.info("%s %s is due (%.0f s after its time)", alarm.kind, alarm.id, now - alarm.due)
            try:
                self.on_due(alarm)
            except Exception:  # one broken listener must not stop the others
                log.exception("ringing %s failed", alarm.id)
        self._schedule()
        return rung

    # ---- inside

    def _on_the_clock(self) -> tuple[AlarmList, AlarmList, float]:
        """All the alarms, the timers of this run with their due times on the wall clock as it
        is now; those due; how far the wall clock moved under a timer (0: it did not)."""
        now, mono = self.clock(), self.monotonic()
        kept, due, step = [], [], 0.0
        for alarm in self.store.state.alarms:
            ends = self._elapsed.get(alarm.id)
            if ends is not None and abs(ends - mono + now - alarm.due) > STEP_S:
                step = ends - mono + now - alarm.due
                alarm = dataclasses.replace(alarm, due=ends - mono + now)
            kept.append(alarm)
            if (ends <= mono) if ends is not None else (alarm.due <= now):
                due.append(alarm)
        return kept, due, step

    def _drop(self, gone: AlarmList, ended: str, *, schedule: bool = True) -> AlarmList:
        if not gone:
            return []
        ids = {a.id for a in gone}
        state = self.store.state
        spent = state.spent + tuple(Spent(a.call_id, a.id, ended) for a in gone if a.call_id)
        self.store.save(
            dataclasses.replace(
                state,
                alarms=tuple(a for a in state.alarms if a.id not in ids),
                spent=spent[-SPENT_MAX:],
            )
        )
        for ident in ids:
            self._elapsed.pop(ident, None)
        if schedule:
            self._schedule()
        return gone

    def _schedule(self) -> None:
        """One look at the clock pending while any alarm is, at most CHECK_S away; none else."""
        self._cancel_check()
        alarms = self.store.state.alarms
        if not self._started or self._closed or not alarms or self._call_later is None:
            return
        now, mono = self.clock(), self.monotonic()
        left = min(
            self._elapsed[a.id] - mono if a.id in self._elapsed else a.due - now for a in alarms
        )
        self._next_check = delay = min(CHECK_S, max(0.0, left))
        self._handle = self._call_later(delay, self._on_check)

    def _on_check(self) -> None:
        self._handle = self._next_check = None
        self.check()

    def _cancel_check(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._handle = self._next_check = None
