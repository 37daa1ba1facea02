"""Home Assistant over MQTT (``[mqtt]``): talkie as one device, its state out, its controls in.

The adapter (:mod:`talkie.mqtt`) announces the entities, keeps the broker's connection and
reports commands; here they become what the button and ``talkie ctl`` do (the same
:class:`~talkie.shell.control.Commands` and :class:`~talkie.shell.controls.Controls`): *press*
is ``talkie ctl talk`` (a press, and the next one ends the turn), *stop* and *say* are theirs,
and the switches and the volume are the controls'. After every step and every change of a
control the state is handed to the adapter, which publishes what changed. Nothing of this is
imported unless ``[mqtt] enabled`` is true.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

from talkie.config import Settings
from talkie.core import machine as m
from talkie.shell import ports
from talkie.system.control import Refused

log = logging.getLogger("talkie")


class Host(Protocol):
    settings: Settings
    state: m.State
    tools: Any
    controls: Any

    def emit(self, event: m.Event) -> None: ...
    def start_task(self, coro: Any, name: str) -> asyncio.Task[Any] | None: ...


class Home:
    """One app's Home Assistant link (inert while ``[mqtt] enabled`` is false)."""

    def __init__(self, app: Host, make: Callable[..., ports.Home] | None) -> None:
        from talkie.shell.control import Commands

        self.app = app
        self.make = make
        self.client: ports.Home | None = None
        self.commands = Commands(app)
        self.last_heard = ""
        self.last_said = ""
        self._task: asyncio.Task[Any] | None = None
        self._refused: set[str] = set()

    # ---- lifecycle

    def start(self) -> None:
        """Once the daemon is READY: connect in the background (a broker that is down never
        holds talkie up)."""
        settings = self.app.settings
        if not settings.mqtt.enabled or self.make is None or self.client is not None:
            return
        try:
            self.client = self.make(settings, on_command=self.command)
        except Exception as exc:  # noqa: BLE001 - no Home Assistant is no reason not to talk
            log.error("Home Assistant (MQTT) unavailable: %s", exc)
            return
        self.app.controls.watchers.append(self.publish)
        self._task = self.app.start_task(self.client.run(), name="mqtt")
        self.publish()

    async def stop(self) -> None:
        task, self._task = self._task, None
        if self.publish in self.app.controls.watchers:
            self.app.controls.watchers.remove(self.publish)
        self.client = None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def restart(self) -> None:
        """A reload changed ``[mqtt]`` (or what decides the entities)."""
        await self.stop()
        self.start()

    # ---- out

    def stepped(self, event: m.Event) -> None:
        """After every step of the machine."""
        if self.client is None:
            return
        if isinstance(event, m.Heard):
            self.last_heard = event.text
        elif isinstance(event, m.Said):
            self.last_said = event.text
        self.publish()

    def publish(self) -> None:
        if self.client is None:
            return
        app = self.app
        controls = app.controls
        values: dict[str, Any] = {
            "state": app.state.status,
            "volume": controls.volume.percent,
            "speaker_mute": bool(controls.volume.muted),
            "mic_mute": app.state.mic_off,
            "camera": not app.state.camera_off,
            "timers": self._timers(),
        }
        if app.settings.log.transcripts:
            values["last_heard"] = self.last_heard
            values["last_said"] = self.last_said
        self.client.update(**values)

    def _timers(self) -> dict[str, Any]:
        alarms = self.app.tools.alarms
        pending = alarms.list() if alarms is not None else []
        if not pending:
            return {"count": 0, "next": None, "next_at": None}
        first = pending[0]
        at = dt.datetime.fromtimestamp(first.due, dt.UTC).astimezone()
        return {
            "count": len(pending),
            "next": first.label or first.kind,
            "next_at": at.isoformat(timespec="seconds"),
            "next_in_s": max(0, round(first.due - time.time())),
        }

    # ---- in (the loop thread)

    def command(self, name: str, value: object) -> None:
        """A command from Home Assistant: the same as the button's, ``talkie ctl``'s."""
        controls = self.app.controls
        try:
            if name == "press":
                self.commands.talk()
            elif name == "stop":
                self.commands.stop()
            elif name == "say":
                self.commands.say(str(value))
            elif name == "volume" and isinstance(value, int):
                controls.set_volume(value)
            elif name == "speaker_mute" and isinstance(value, bool):
                controls.mute_speaker(value)
            elif name == "mic_mute" and isinstance(value, bool):
                controls.mute_mic(value)
            elif name == "camera" and isinstance(value, bool):
                controls.allow_camera(value)
            else:
                log.debug("mqtt: ignored command %s=%r", name, value)
                return
        except Refused as exc:
            if name not in self._refused:  # once per kind until one is taken
                log.info("Home Assistant's %s refused: %s", name, exc)
                self._refused.add(name)
            return
        self._refused.discard(name)
        self.publish()
