"""The Live link's reports as state-machine events, one listener per session: once the shell has let
a session go (a handover, a reset), whatever that session still says is stale and dropped."""

from __future__ import annotations

from collections.abc import Callable

from talkie.core import machine as m
from talkie.core.words import one_line


class LinkEvents:
    """The link's reports, as state-machine events."""

    def __init__(self, emit: Callable[[m.Event], None], jitter: Callable[[], float]) -> None:
        self._emit = emit
        self.jitter = jitter
        #: The shell let this session go (a handover, a reset): whatever it still says is stale.
        self.stale = False

    def emit(self, event: m.Event) -> None:
        if not self.stale:
            self._emit(event)

    def opened(self) -> None:
        self.emit(m.SessionOpened())

    def lost(self, reason: str, fatal: bool) -> None:
        self.emit(m.LinkLost(one_line(reason), fatal, jitter=self.jitter()))

    def go_away(self, seconds: float) -> None:
        self.emit(m.GoAway(seconds))

    def audio(self, pcm: bytes) -> None:
        self.emit(m.ModelAudio(pcm))

    def interrupted(self) -> None:
        self.emit(m.Interrupted())

    def turn_complete(self) -> None:
        self.emit(m.TurnComplete())

    def heard(self, text: str) -> None:
        self.emit(m.Heard(text))

    def said(self, text: str) -> None:
        self.emit(m.Said(text))

    def tool_call(self, call_id: str, name: str, args: str) -> None:
        self.emit(m.ToolCalled(call_id, name, args))

    def tools_cancelled(self, call_ids: tuple[str, ...]) -> None:
        self.emit(m.ToolsCancelled(call_ids))
