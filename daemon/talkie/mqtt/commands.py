"""Commands from Home Assistant: each payload checked and turned into the value ``on_command`` is
given, or refused with a reason in words; and the rate limit on the warnings a refusal logs (a
broken automation must not fill the journal).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

#: The longest text ``say`` takes (Home Assistant's text entity sends at most 255; an automation
#: publishing to the topic may send more).
SAY_MAX = 2000
#: The largest payload looked at: anything bigger is refused unread.
PAYLOAD_MAX = 4 * SAY_MAX + 64
#: At most one warning per command per this many seconds.
WARN_EVERY_S = 60.0


@dataclass(frozen=True)
class Refused:
    """Why a payload was dropped, e.g. "out of range; found 150; allowed 0 to 100"."""

    reason: str


def _shown(text: str) -> str:
    return repr(text if len(text) <= 40 else text[:37] + "...")


def _text(payload: bytes) -> str | Refused:
    if len(payload) > PAYLOAD_MAX:
        return Refused(f"too large ({len(payload)} bytes)")
    try:
        return payload.decode("utf-8")
    except UnicodeDecodeError:
        return Refused("not UTF-8 text")


def parse(key: str, payload: bytes) -> object | Refused:
    """The value of command ``key`` in ``payload``: None for a button, the text to say, the
    volume 0 to 100, or True/False for a switch ("ON"/"OFF"); else a :class:`Refused`."""
    text = _text(payload)
    if isinstance(text, Refused):
        return text
    if key in ("press", "stop"):
        return None
    if key == "say":
        words = text.strip()
        if not words:
            return Refused("empty; allowed some text to say")
        if len(words) > SAY_MAX:
            return Refused(f"too long ({len(words)} characters); allowed at most {SAY_MAX}")
        return words
    if key == "volume":
        try:
            number = float(text.strip())
        except ValueError:
            return Refused(f"not a number; found {_shown(text)}; allowed 0 to 100")
        if not math.isfinite(number) or not 0 <= number <= 100:
            return Refused(f"out of range; found {_shown(text.strip())}; allowed 0 to 100")
        return round(number)
    if key in ("speaker_mute", "mic_mute", "camera"):
        word = text.strip().upper()
        if word in ("ON", "OFF"):
            return word == "ON"
        return Refused(f"found {_shown(text)}; allowed ON or OFF")
    return Refused(f"unknown command {key!r}")


class Warnings:
    """Says whether a refused command of one kind may log a warning now: the first does, then
    none for ``every_s`` (the ones dropped meanwhile are counted in the next)."""

    def __init__(self, clock: Callable[[], float], every_s: float = WARN_EVERY_S) -> None:
        self.clock, self.every_s = clock, every_s
        self.last: dict[str, float] = {}
        self.quiet: dict[str, int] = {}

    def allow(self, key: str) -> int | None:
        """None to stay quiet, else how many of this kind were dropped unsaid before this one."""
        now = self.clock()
        last = self.last.get(key)
        if last is not None and now - last < self.every_s:
            self.quiet[key] = self.quiet.get(key, 0) + 1
            return None
        self.last[key] = now
        return self.quiet.pop(key, 0)
