"""Values off the Live wire, read as the daemon uses them.

Pure functions, no SDK import: the SDK passes some fields through as it got them, and a later
version may parse them, so each reader takes both forms.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

_DURATION = re.compile(r"^\s*([+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)\s*s?\s*$")


def duration_s(value: Any) -> float | None:
    """A goAway's ``time_left`` in seconds (never negative), or None if it cannot be read.

    The SDK (3.4) types it ``Optional[str]`` and passes the wire value through: a protobuf Duration
    in its JSON form, ``"50s"`` or ``"1.500s"``. A timedelta, a number or ``{"seconds", "nanos"}``
    are taken too, should a later SDK parse it.
    """
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str):
        m = _DURATION.match(value)
        if m is None:
            return None
        seconds = float(m[1])
    elif isinstance(value, dict):
        try:
            seconds = float(value.get("seconds", 0) or 0) + float(value.get("nanos", 0) or 0) / 1e9
        except (TypeError, ValueError):
            return None
    else:
        return None
    if seconds != seconds or seconds in (float("inf"), float("-inf")):
        return None
    return max(0.0, seconds)
