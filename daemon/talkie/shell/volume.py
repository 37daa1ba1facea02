"""The speaker's volume and mute, as the user last set them (by voice, or `talkie ctl`), kept in
the state directory (``volume.json``) so a restart keeps them.

``[audio] volume`` is where it starts: a volume set by voice holds until the config file's own
value changes (the file, edited, wins again). Muting silences the answers, never the ring of a
timer (that has its own volume, ``[tools] alarm_volume``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from talkie.shell import ports
from talkie.storage import StateFile

#: One step of "louder" or "quieter".
STEP = 0.1


class Volume:
    """The volume for one app: ``level`` and ``muted``, applied to the speaker as they change."""

    def __init__(self, configured: float, file: StateFile) -> None:
        self.file = file
        self.configured = configured
        self.level, self.muted = configured, False
        saved = file.read()
        if (
            isinstance(saved, dict)
            and saved.get("configured") == configured
            and isinstance(saved.get("level"), int | float)
            and not isinstance(saved.get("level"), bool)
        ):
            self.level = min(1.0, max(0.0, float(saved["level"])))
            self.muted = saved.get("muted") is True
        self.playback: ports.Playback | None = None
        #: Called after every change (by voice, ``talkie ctl``, a button, Home Assistant).
        self.on_change: Callable[[], None] = lambda: None

    def attach(self, playback: ports.Playback | None) -> None:
        """The speaker to apply it to (a new one after the devices are rebuilt)."""
        self.playback = playback
        self._apply()

    def reconfigure(self, configured: float) -> None:
        """A reload: a new ``[audio] volume`` in the file wins over the one set by voice."""
        if configured != self.configured:
            self.configured = configured
            self.set(configured, muted=False)

    def set(self, level: float | None = None, *, muted: bool | None = None) -> None:
        if level is not None:
            self.level = round(min(1.0, max(0.0, float(level))), 3)
        if muted is not None:
            self.muted = muted
        self._apply()
        self.file.write({"level": self.level, "muted": self.muted, "configured": self.configured})
        self.on_change()

    def step(self, up: bool) -> None:
        """One step louder or quieter (and heard: a muted speaker is unmuted)."""
        self.set(self.level + (STEP if up else -STEP), muted=False)

    @property
    def percent(self) -> int:
        """The level as the user reads it, 0 to 100."""
        return round(self.level * 100)

    def words(self) -> dict[str, Any]:
        return {"volume": round(self.level, 2), "muted": self.muted}

    def _apply(self) -> None:
        if self.playback is not None:
            self.playback.volume = 0.0 if self.muted else self.level
