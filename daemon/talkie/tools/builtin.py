"""The device's own tools: the time and date, the device's status, the volume, a fresh
conversation, one look through the camera. They act through a :class:`Host` (the shell), never
by reaching into an adapter.

Each is a :class:`~talkie.tools.Tool`; :func:`tools` gives the ones the settings enable.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from talkie.tools import Result, Tool, error, ok, with_media


class Host(Protocol):
    """What the built-in tools ask of the device (the shell answers)."""

    def volume_words(self) -> Mapping[str, Any]: ...
    def set_volume(self, level: float | None = None, *, muted: bool | None = None) -> None: ...
    def step_volume(self, up: bool) -> None: ...
    def status(self) -> Mapping[str, Any]: ...
    def reset_conversation(self) -> None: ...
    async def snapshot(self) -> bytes: ...


def _now(args: Mapping[str, Any], call: str) -> Result:
    now = dt.datetime.now().astimezone()
    return ok(
        date=now.strftime("%Y-%m-%d"),
        weekday=now.strftime("%A"),
        time=now.strftime("%H:%M"),
        timezone=now.tzname() or "",
        utc_offset=now.strftime("%z"),
    )


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="ascii", errors="replace") as fh:
            return fh.read(4096)
    except OSError:
        return None


def _readings() -> dict[str, Any]:
    """What the system says of itself, where it can be read (a Pi, or not)."""
    found: dict[str, Any] = {}
    temp = _read("/sys/class/thermal/thermal_zone0/temp")
    if temp and temp.strip().lstrip("-").isdigit():
        found["temperature_c"] = round(int(temp) / 1000, 1)
    wireless = _read("/proc/net/wireless")
    for line in (wireless or "").splitlines()[2:]:
        parts = line.split()
        if len(parts) >= 4:
            found["wifi"] = {"interface": parts[0].rstrip(":"), "signal_dbm": float(parts[3])}
            break
    uptime = _read("/proc/uptime")
    if uptime:
        found["system_uptime_s"] = round(float(uptime.split()[0]))
    return found


def _status_tool(host: Host) -> Tool:
    def status(args: Mapping[str, Any], call: str) -> Result:
        words = dict(host.status())
        # the host's "status" is what the LED says ("ready"): the answer's own is "ok"
        if "status" in words:
            words["status_line"] = words.pop("status")
        # (a few bytes of /proc and /sys: the kernel answers at once, no disk or device waits)
        return ok(**words, **_readings())

    return Tool(
        "device_status",
        "How the device is: its state, how long talkie has run, the Wi-Fi signal and its "
        "temperature (where they can be read).",
        status,
        scheduling="interrupt",
        quick=True,
    )


def _volume_tool(host: Host) -> Tool:
    def volume(args: Mapping[str, Any], call: str) -> Result:
        action = args["action"]
        if action == "set":
            if "level" not in args:
                return error("set needs a level from 0.0 to 1.0")
            host.set_volume(args["level"], muted=False)  # a change of volume is meant to be heard
        elif action in ("up", "down"):
            host.step_volume(action == "up")
        elif action in ("mute", "unmute"):
            host.set_volume(muted=action == "mute")
        return ok(**host.volume_words())

    return Tool(
        "speaker_volume",
        "Get or change the speaker's volume (0.0 silent to 1.0 loudest; up and down are steps of "
        "0.1), or mute or unmute the speaker. Timers ring whatever the volume.",
        volume,
        parameters={
            "type": "object",
            "properties": {
                "action": {
                    "type": "string",
                    "enum": ["get", "set", "up", "down", "mute", "unmute"],
                },
                "level": {"type": "number", "minimum": 0.0, "maximum": 1.0},
            },
            "required": ["action"],
            "additionalProperties": False,
        },
        acts=True,
        scheduling="interrupt",
        quick=True,
    )


def _look_tool(host: Host) -> Tool:
    async def look(args: Mapping[str, Any], call: str) -> Result:
        jpeg = await host.snapshot()
        return with_media(
            ok(image="attached: one camera frame, taken just now", bytes=len(jpeg)),
            ("image/jpeg", jpeg),
        )

    return Tool(
        "look",
        "Take one picture with the device's camera, now, and see it (when the user asks what "
        "you see, or to look at something). The camera's light shows while it is used.",
        look,
        deadline_s=8.0,
        scheduling="interrupt",
    )


def _reset_tool(host: Host) -> Tool:
    def reset(args: Mapping[str, Any], call: str) -> Result:
        host.reset_conversation()
        return ok(note="the conversation starts afresh once this answer has been heard")

    return Tool(
        "start_fresh_conversation",
        "Forget this conversation and start a fresh one, once you have finished speaking (when "
        "the user asks you to forget, or to start over).",
        reset,
        acts=True,
        scheduling="silent",
        quick=True,
    )


def _time_tool() -> Tool:
    return Tool(
        "local_time",
        "The date, weekday and time where the device is (its time zone): the model does not "
        "know them otherwise.",
        _now,
        scheduling="interrupt",
        quick=True,
    )


#: The built-in tools by the [tools] key that enables them.
MAKERS: dict[str, Callable[[Host], Tool]] = {
    "time": lambda host: _time_tool(),
    "device": _status_tool,
    "volume": _volume_tool,
    "reset": _reset_tool,
    "look": _look_tool,
}


def tools(enabled: Mapping[str, bool], host: Host) -> list[Tool]:
    """The built-in tools ``enabled`` says (by their [tools] key), acting through ``host``."""
    return [make(host) for key, make in MAKERS.items() if enabled.get(key, False)]
