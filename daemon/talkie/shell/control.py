"""What `talkie ctl` can ask of the running daemon: the control socket's commands, as events.

Each command runs in the loop thread (the control server calls it there) and turns into the same
state-machine events as the button, so a remote press and a GPIO press are one and the same.
"""

from __future__ import annotations

from typing import Any

from talkie.core import machine as m
from talkie.system.control import MAX_SAY, Refused


class Commands:
    """The control socket's view of an :class:`talkie.shell.app.App`."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self._talking = False  # `talk` toggles, like ENTER on the keyboard

    def status(self) -> dict[str, Any]:
        return self.app.status_words()  # its uptime among them: one clock, the app's

    def press(self) -> None:
        self._talking = True
        self.app.emit(m.ButtonDown())

    def release(self) -> None:
        self._talking = False
        self.app.emit(m.ButtonUp())

    def talk(self) -> None:
        (self.release if self._talking else self.press)()

    def stop(self) -> dict[str, Any]:
        """Stop what is going on, and say what that was."""
        phase = self.app.state.phase
        if phase in (m.Phase.SPEAKING, m.Phase.THINKING):
            stopped = "the answer"
        elif phase in (m.Phase.LISTENING, m.Phase.CONNECTING, m.Phase.RECONNECTING):
            stopped = "the turn in progress"
        elif phase is m.Phase.RINGING:
            stopped = "the ring"
        else:
            return {"stopped": f"nothing (talkie is {phase.value})"}
        self.app.emit(m.Hush())
        return {"stopped": stopped}

    def say(self, text: str) -> None:
        text = " ".join(text.split())
        if not text:
            raise Refused("say needs some text")
        if len(text) > MAX_SAY:
            raise Refused(f"say takes at most {MAX_SAY} characters")
        phase = self.app.state.phase
        if phase not in (m.Phase.IDLE, m.Phase.ERROR):
            raise Refused(f"busy ({phase.value}); try again when talkie is ready")
        self.app.emit(m.Say(text))

    def reset(self) -> None:
        self._talking = False
        self.app.emit(m.Reset())
