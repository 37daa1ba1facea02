"""The ``timers`` tool: the model sets, lists and cancels kitchen timers and clock alarms
(:class:`~talkie.tools.alarms.Alarms` keeps and rings them), and the words its answers use for
when one rings and how long is left, in local 24-hour time.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from typing import Any

from talkie.tools import Result, Tool, error, ok
from talkie.tools.alarm_store import LABEL_MAX, Alarm
from talkie.tools.alarms import MAX_AHEAD_S, AlarmError, Alarms, AlreadyDone

_AT = (
    r"^(?:[01]?[0-9]|2[0-3]):[0-5][0-9]$"
    r"|^[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}(?::[0-9]{2})?$"
)
_HHMM = re.compile(r"([01]?[0-9]|2[0-3]):([0-5][0-9])")

DESCRIPTION = (
    "Set, list or cancel kitchen timers and alarms on this device; it rings when one is due, "
    "even when no conversation is going on. action 'set' with duration_s for a timer (seconds "
    "from now: 600 for ten minutes) or with at for an alarm at a local time ('07:30': the next "
    "time the clock shows it, today or tomorrow; or a date and time, '2025-06-01T07:30'), up to "
    "7 days ahead, and an optional short label ('pasta'). action 'list': what is set and how "
    "long is left. action 'cancel': by id, by label, or all: true. Each answer says when a timer "
    "rings (rings_at, local 24-hour time) and how long is left (in)."
)

PARAMETERS = {
    "type": "object",
    "properties": {
        "action": {"type": "string", "enum": ["set", "list", "cancel"]},
        "duration_s": {
            "type": "number",
            "minimum": 1,
            "maximum": MAX_AHEAD_S,
            "description": "set a timer: seconds from now",
        },
        "at": {
            "type": "string",
            "pattern": _AT,
            "description": "set an alarm: local time 'HH:MM' (24-hour) or 'YYYY-MM-DDTHH:MM'",
        },
        "label": {"type": "string", "maxLength": LABEL_MAX, "description": "what it is for"},
        "id": {"type": "string", "maxLength": 16, "description": "cancel: the timer's id"},
        "all": {"type": "boolean", "description": "cancel: every timer and alarm"},
    },
    "required": ["action"],
    "additionalProperties": False,
}


def timer_tool(alarms: Alarms, *, tz: dt.tzinfo | None = None) -> Tool:
    """The ``timers`` tool acting on ``alarms``; local time in ``tz`` (None: the system's)."""

    def run(args: Mapping[str, Any], call_id: str) -> Result:
        action = args["action"]
        if action == "set":
            return _set(alarms, args, call_id, tz)
        if action == "list":
            now = alarms.clock()
            found = [describe(a, now, tz) for a in alarms.list()]
            if not found:
                return ok(count=0, timers=[], note="no timers or alarms are set")
            return ok(count=len(found), timers=found)
        return _cancel(alarms, args, tz)

    return Tool(
        "timers",
        DESCRIPTION,
        run,
        parameters=PARAMETERS,
        acts=True,
        scheduling="interrupt",
        quick=True,
    )


def _set(alarms: Alarms, args: Mapping[str, Any], call_id: str, tz: dt.tzinfo | None) -> Result:
    if ("duration_s" in args) == ("at" in args):
        return error("set needs one of duration_s (a timer) or at (an alarm)")
    label = str(args.get("label", ""))
    try:
        if "duration_s" in args:
            alarm = alarms.set(in_s=float(args["duration_s"]), label=label, call_id=call_id)
        else:
            at, clock = due_at(str(args["at"]), alarms.clock(), tz)
            alarm = alarms.set(at=at, clock=clock, label=label, call_id=call_id)
    except AlreadyDone as done:
        return ok(note=str(done))
    except AlarmError as exc:
        return error(str(exc))
    return ok(**{alarm.kind: describe(alarm, alarms.clock(), tz)})


def _cancel(alarms: Alarms, args: Mapping[str, Any], tz: dt.tzinfo | None) -> Result:
    if args.get("all"):
        gone = alarms.cancel_all()
        what = "no timers or alarms are set"
    elif args.get("id") or args.get("label"):
        key = str(args.get("id") or args.get("label"))
        gone = alarms.cancel(key)
        what = f"no timer or alarm {key!r} is set"
    else:
        return error("cancel needs an id, a label or all: true")
    if not gone:
        pending = [{"id": a.id, "label": a.label} for a in alarms.list()]
        return error(what, set=pending) if pending else error(what)
    now = alarms.clock()
    return ok(cancelled=[describe(a, now, tz) for a in gone])


def describe(alarm: Alarm, now: float, tz: dt.tzinfo | None = None) -> dict[str, Any]:
    """An alarm in words: its id, label, when it rings (local) and how long is left."""
    words: dict[str, Any] = {"id": alarm.id, "kind": alarm.kind}
    if alarm.label:
        words["label"] = alarm.label
    words["rings_at"] = when_words(alarm.due, now, tz)
    words["in"] = span_words(alarm.due - now)
    return words


def _local(epoch: float, tz: dt.tzinfo | None) -> dt.datetime:
    return dt.datetime.fromtimestamp(epoch, tz).astimezone(tz)


def when_words(epoch: float, now: float, tz: dt.tzinfo | None = None) -> str:
    """A local time as said: "18:42", "tomorrow 07:00", "Saturday 07:00", "2025-06-01 07:00"."""
    then, today = _local(epoch, tz), _local(now, tz).date()
    days = (then.date() - today).days
    hhmm = then.strftime("%H:%M")
    if days == 0:
        return hhmm
    if days == 1:
        return f"tomorrow {hhmm}"
    if 1 < days < 7:
        return f"{then.strftime('%A')} {hhmm}"
    return then.strftime("%Y-%m-%d %H:%M")


def span_words(seconds: float) -> str:
    """A time left as said: "45 seconds", "4 minutes 30 seconds", "2 hours 5 minutes"."""
    s = max(0, round(seconds))
    if s < 600:  # to the second
        parts = [(s // 60, "minute"), (s % 60, "second")]
    elif (m := round(seconds / 60)) < 24 * 60:  # to the minute
        parts = [(m // 60, "hour"), (m % 60, "minute")]
    else:
        h = round(seconds / 3600)
        parts = [(h // 24, "day"), (h % 24, "hour")]
    return " ".join(f"{n} {unit}" + "s" * (n != 1) for n, unit in parts if n) or "now"


def due_at(at: str, now: float, tz: dt.tzinfo | None = None) -> tuple[float, str]:
    """When ``at`` ("HH:MM": its next time, today or tomorrow; or a local ISO date and time)
    is, as epoch seconds, and its local "HH:MM"; AlarmError if it is no time."""
    match = _HHMM.fullmatch(at.strip())
    if match:
        hour, minute = int(match[1]), int(match[2])
        today = _local(now, tz).date()
        for day in (today, today + dt.timedelta(days=1)):
            when = dt.datetime.combine(day, dt.time(hour, minute), tzinfo=tz).timestamp()
            if when > now:
                return when, f"{hour:02d}:{minute:02d}"
    try:
        parsed = dt.datetime.fromisoformat(at.strip())
    except ValueError:
        raise AlarmError(f"{at!r} is not a time (HH:MM) or a date and time") from None
    if parsed.tzinfo is None and tz is not None:
        parsed = parsed.replace(tzinfo=tz)
    return parsed.timestamp(), parsed.strftime("%H:%M")
