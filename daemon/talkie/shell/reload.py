"""`systemctl reload talkie` (SIGHUP): read the config again and apply what can change live.

A broken new config is refused with the same file:line:key message `talkie config check` gives, and
the running settings stay: nothing is lost. What can change live does (LED patterns and pins, audio
devices, volume, gain, barge-in and echo control, logging, the camera); Live settings and the key
apply from the next session on. The machine learns its new rules from a ``Reconfigured`` event, like
anything else it learns; what the shell must rebuild it does through the app's public methods.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Coroutine
from typing import Any, Protocol

from talkie import config
from talkie.config import AudioSettings, PanelSettings
from talkie.config.credentials import load_api_key
from talkie.core import machine as m
from talkie.shell import ports
from talkie.shell.audio import AudioDevices
from talkie.shell.controls import Controls
from talkie.shell.effects import Effects
from talkie.shell.home import Home
from talkie.shell.policy import policy_from
from talkie.shell.tools import ToolBox

log = logging.getLogger("talkie")

#: [audio] keys the microphone chain is built from.
CHAIN_KEYS = (
    "barge_in",
    "echo",
    "echo_tail_ms",
    "vad_aggressiveness",
    "vad_start_frames",
    "vad_window_frames",
    "vad_end_ms",
    "preroll_ms",
    "chunk_ms",
)


class App(Protocol):
    """What a reload needs of the running app (:class:`~talkie.shell.app.App`): its settings and
    adapters, and the public methods for what the shell rebuilds itself."""

    settings: config.Settings
    state: m.State
    notifier: ports.Notifier
    panel: ports.Panel | None
    vision: ports.Camera | None
    audio: AudioDevices | None
    tools: ToolBox
    controls: Controls
    effects: Effects
    home: Home

    def configure(self, settings: config.Settings, key: Any) -> None: ...
    async def reopen_panel(self) -> None: ...
    def start_task(self, coro: Coroutine[Any, Any, Any], name: str) -> Any: ...
    def rebuild_mic_chain(self) -> None: ...
    def handle(self, event: m.Event) -> None: ...


def _changed(old: Any, new: Any) -> list[str]:
    """``section.key`` names whose values differ."""
    names = []
    for section in (f.name for f in dataclasses.fields(new)):
        a, b = getattr(old, section), getattr(new, section)
        if not dataclasses.is_dataclass(b):
            continue  # the file's name and its notes: not settings
        for f in dataclasses.fields(a):
            if getattr(a, f.name) != getattr(b, f.name):
                names.append(f"{section}.{f.name}")
    return names


def reload(app: App) -> None:
    """Apply the config file at ``app.settings.source`` to the running ``app``."""
    source = app.settings.source
    try:
        new = config.load(source)
    except config.ConfigError as exc:
        log.error("reload refused, the running config stays: %s", exc)
        return
    app.notifier.reloading()
    for note in new.notes:
        log.warning("config: %s", note)
    old, changed = app.settings, _changed(app.settings, new)
    app.configure(new, load_api_key(new.live.api_key_file))
    _apply_panel(app, old.panel, new.panel)
    if (
        app.vision is not None
    ):  # new frame settings from the next frame; the mode through the machine
        app.vision.reconfigure(new)
    if _home_changed(old, new):
        app.start_task(app.home.restart(), name="mqtt-restart")
    app.handle(m.Reconfigured(policy_from(new)))
    _apply_audio(app, old.audio, new.audio)
    app.notifier.ready(app.state.status)
    log.info("reloaded %s: %s", source, ", ".join(changed) if changed else "nothing changed")


def _home_changed(old: config.Settings, new: config.Settings) -> bool:
    """Whether Home Assistant's link must start again: its broker, its device, or which of its
    entities exist."""

    def what(s: config.Settings) -> tuple[Any, ...]:
        look = s.vision.mode != "off" or s.tools.look_enabled(s.vision.mode)
        return (s.mqtt, s.log.transcripts, s.tools.timers, look)

    return what(old) != what(new)


def _apply_panel(app: App, old: PanelSettings, new: PanelSettings) -> None:
    controls = ("volume_up_pin", "volume_down_pin", "mute_pin", "mute_switch", "bounce_s")
    if any(getattr(old, key) != getattr(new, key) for key in controls):
        app.controls.reopen_buttons()
    kept = {key: getattr(new, key) for key in controls}
    if app.panel is not None and dataclasses.replace(old, patterns=new.patterns, **kept) == new:
        app.panel.settings = new  # only the patterns changed: show the current state anew
        app.panel.show(app.effects.pattern(app.state.phase))
    else:
        app.start_task(app.reopen_panel(), name="reopen-panel")  # pins or kinds changed


def _apply_audio(app: App, old: AudioSettings, new: AudioSettings) -> None:
    audio = app.audio
    if audio is None:
        return
    app.tools.volume.reconfigure(
        new.volume
    )  # (a volume set by voice holds until the file's changes)
    audio.capture.configure(gain_db=new.input_gain_db)
    if any(getattr(old, k) != getattr(new, k) for k in CHAIN_KEYS):
        app.rebuild_mic_chain()
    devices = (old.input_device, old.output_device, old.capture_block_ms)
    if devices != (new.input_device, new.output_device, new.capture_block_ms):
        log.info("audio devices changed: reopening them")
        audio.capture.configure(device=new.input_device, block_ms=new.capture_block_ms)
        audio.playback.device = new.output_device
        app.start_task(audio.reopen(), name="reopen-audio")  # from the next start on
