"""The everyday controls, whichever way they come: the speaker's volume and mute, the microphone's
switch and the camera's, from ``talkie ctl``, Home Assistant, the panel's buttons and the model's
tools alike.

The volume is :class:`~talkie.shell.volume.Volume`'s (the tools' too). The microphone and the
camera are the machine's (:mod:`talkie.core.machine.privacy`): a switch here is an event there,
and its :class:`~talkie.core.machine.PrivacyChanged` effect comes back here to be kept on disk
(``privacy.json`` in the state directory), so a restart keeps the microphone off. Whoever
watches (Home Assistant) is told after every change through :attr:`Controls.watchers`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any, Protocol

from talkie.config import Settings
from talkie.core import machine as m
from talkie.shell.volume import Volume
from talkie.storage import StateFile

log = logging.getLogger("talkie")


class Host(Protocol):
    """What the controls reach through their app."""

    settings: Settings
    state: m.State

    def emit(self, event: m.Event) -> None: ...


class Controls:
    """One app's everyday controls."""

    def __init__(self, app: Host, volume: Volume, folder: str) -> None:
        self.app = app
        self.volume = volume
        self.file = StateFile(f"{folder}/privacy.json", what="the microphone and camera switches")
        saved = self.file.read()
        saved = saved if isinstance(saved, dict) else {}
        #: As last kept: what the machine is told once it runs (:meth:`restore`).
        self.kept_mic_off = saved.get("mic_off") is True
        self.kept_camera_off = saved.get("camera_off") is True
        #: Called after every change of any control (loop thread).
        self.watchers: list[Callable[[], None]] = []
        self.buttons: Any = None
        self._make: Callable[..., Any] | None = None
        volume.on_change = self.changed

    # ---- lifecycle

    def open_buttons(
        self,
        stack: contextlib.ExitStack | contextlib.AsyncExitStack,
        make: Callable[..., Any] | None,
    ) -> None:
        """The panel's control buttons, if ``[panel]`` names their pins."""
        self._make = make
        stack.callback(self._close_buttons)
        self._open_buttons()

    def reopen_buttons(self) -> None:
        """A reload changed ``[panel]``: the buttons from the new pins (a latching switch's
        position is taken again)."""
        self._close_buttons()
        self._open_buttons()
        switch = self.buttons.switched_off() if self.buttons is not None else None
        if switch is not None and switch != self.app.state.mic_off:
            self.mute_mic(switch)

    def _open_buttons(self) -> None:
        panel = self.app.settings.panel
        if self._make is None or all(
            pin is None for pin in (panel.volume_up_pin, panel.volume_down_pin, panel.mute_pin)
        ):
            return
        self.buttons = self._make(
            self.app.settings,
            loop=asyncio.get_running_loop(),
            on_volume=self.step_volume,
            on_mute=self._mute_pressed,
        )

    def restore(self) -> None:
        """Once the machine runs: the switches as they were kept (a latching mute switch's
        position wins over what was kept)."""
        switch = self.buttons.switched_off() if self.buttons is not None else None
        mic_off = self.kept_mic_off if switch is None else switch
        if mic_off:
            self.app.emit(m.MicMute(True))
        if self.kept_camera_off:
            self.app.emit(m.CameraAllow(False))

    def _close_buttons(self) -> None:
        buttons, self.buttons = self.buttons, None
        if buttons is not None:
            buttons.close()

    # ---- the machine's effect

    def privacy_changed(self, effect: m.PrivacyChanged) -> None:
        self.kept_mic_off, self.kept_camera_off = effect.mic_off, effect.camera_off
        self.file.write({"mic_off": effect.mic_off, "camera_off": effect.camera_off})
        self.changed()

    def changed(self) -> None:
        for watcher in list(self.watchers):
            try:
                watcher()
            except Exception:  # a watcher's fault must not stop the control
                log.exception("a watcher of the controls failed")

    # ---- the ways in (loop thread)

    def set_volume(self, percent: int) -> None:
        """The speaker's volume, 0 to 100 (setting it unmutes the speaker)."""
        self.volume.set(max(0, min(100, percent)) / 100, muted=False)

    def step_volume(self, up: bool) -> None:
        self.volume.step(up)

    def mute_speaker(self, on: bool) -> None:
        self.volume.set(muted=on)

    def mute_mic(self, on: bool | None) -> None:
        self.app.emit(m.MicMute(on))

    def allow_camera(self, on: bool) -> None:
        self.app.emit(m.CameraAllow(on))

    def key(self, key: str) -> None:
        """A control key of the keyboard fallback: + (or =) and - for the volume, m for the
        microphone."""
        if key in "+=-":
            self.step_volume(key != "-")
        elif key in "mM":
            self._mute_pressed(None)

    def _mute_pressed(self, off: bool | None) -> None:
        self.app.emit(m.MicMute(off))  # None: the other way round, decided by the machine

    # ---- in words

    def words(self) -> dict[str, Any]:
        """For ``talkie ctl status`` and Home Assistant."""
        state = self.app.state
        return {
            "volume": self.volume.percent,
            "speaker": "muted" if self.volume.muted else "on",
            "microphone": "off" if state.mic_off else "on",
            "camera": "forbidden" if state.camera_off else "allowed",
        }
