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

    # ---- the everyday controls: ``volume [N|+N|-N]``, ``mute speaker|mic [on|off]``,
    # ``camera [on|off]``; each answers with the controls as they are (or will be, once the
    # machine has taken the switch)

    def volume(self, arg: str) -> dict[str, Any]:
        controls = self.app.controls
        if arg:
            number = _number(
                arg, "volume takes a number 0 to 100, or +N / -N to turn it up or down"
            )
            if arg[0] in "+-":
                controls.set_volume(controls.volume.percent + number)
            else:
                if not 0 <= number <= 100:
                    raise Refused(f"volume: {number} is out of range; allowed 0 to 100")
                controls.set_volume(number)
        return {"volume": controls.volume.percent, "speaker": controls.words()["speaker"]}

    def mute(self, arg: str) -> dict[str, Any]:
        controls = self.app.controls
        words = arg.lower().split()
        if not words:
            return {k: v for k, v in controls.words().items() if k in ("speaker", "microphone")}
        what = {"speaker": "speaker", "mic": "microphone", "microphone": "microphone"}
        if words[0] not in what or len(words) > 2:
            raise Refused("mute takes speaker or mic, then on or off: mute mic on")
        if len(words) == 1:
            return {what[words[0]]: controls.words()[what[words[0]]]}
        on = _on_off(words[1], "mute")
        if words[0] == "speaker":
            controls.mute_speaker(on)
            return {"speaker": "muted" if on else "on"}
        controls.mute_mic(on)
        return {"microphone": "off" if on else "on"}

    def camera(self, arg: str) -> dict[str, Any]:
        controls = self.app.controls
        if arg:
            allowed = _on_off(arg.lower(), "camera")
            controls.allow_camera(allowed)
            return {"camera": "allowed" if allowed else "forbidden"}
        return {"camera": controls.words()["camera"]}


def _number(text: str, usage: str) -> int:
    try:
        value = float(text)
    except ValueError:
        raise Refused(f"{usage}; found {text!r}") from None
    if value != value or abs(value) > 1000:  # NaN, or nonsense
        raise Refused(f"{usage}; found {text!r}")
    return round(value)


def _on_off(word: str, command: str) -> bool:
    if word in ("on", "true", "yes", "1"):
        return True
    if word in ("off", "false", "no", "0"):
        return False
    raise Refused(f"{command}: {word!r} is neither on nor off")
