"""`systemctl reload talkie` (SIGHUP): read the config again and apply what can change live.

A broken new config is refused with the same file:line:key message `talkie config check` gives, and
the running settings stay: nothing is lost. What can change live does (LED patterns and pins, audio
devices, volume, gain, barge-in and echo control, logging); Live settings and the key apply from the next session on.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

log = logging.getLogger("talkie")


def _changed(old: Any, new: Any) -> list[str]:
    """``section.key`` names whose values differ."""
    names = []
    for section in (f.name for f in dataclasses.fields(new) if f.name != "source"):
        a, b = getattr(old, section), getattr(new, section)
        for f in dataclasses.fields(a):
            if getattr(a, f.name) != getattr(b, f.name):
                names.append(f"{section}.{f.name}")
    return names


def reload(app: Any) -> None:
    """Apply the config file at ``app.settings.source`` to the running ``app``."""
    from talkie import config
    from talkie.core import machine as m
    from talkie.shell.app import policy_from
    from talkie.shell.factories import pending_bytes
    from talkie.system import logs
    from talkie.config.credentials import load_api_key

    source = app.settings.source
    try:
        new = config.load(source)
    except config.ConfigError as exc:
        log.error("reload refused, the running config stays: %s", exc)
        return
    app.notifier.reloading()
    old, changed = app.settings, _changed(app.settings, new)
    app.settings = new
    app.state = dataclasses.replace(app.state, policy=policy_from(new))  # timers set from now on
    logging.getLogger("talkie").setLevel(logs.LEVELS.get(new.log.level, logging.INFO))
    app.outbox.max_audio_bytes = pending_bytes(new)
    key = load_api_key(new.live.api_key_file)
    if app.link is not None:
        app.link.configure(new.live, key)  # used from the next session on
    app.key = key
    _apply_panel(app, old.panel, new.panel)
    if app.vision is not None:  # a new mode takes effect at once, new frame settings next frame
        app.vision.reconfigure(new)
        app.vision.want(m.camera_wanted(app.state))
    _apply_audio(app, old.audio, new.audio)
    app.notifier.ready(app.state.status)
    log.info("reloaded %s: %s", source, ", ".join(changed) if changed else "nothing changed")


def _apply_panel(app: Any, old: Any, new: Any) -> None:
    if dataclasses.replace(old, patterns=new.patterns) == new:
        app.panel.settings = new  # only the patterns changed: show the current state anew
    else:
        app.panel.close()  # pins or kinds changed: open the panel again
        app.panel = app._open_panel()
    app.panel.show(app.state.phase.value)


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


def _apply_audio(app: Any, old: Any, new: Any) -> None:
    from talkie.shell.factories import capture_block_ms

    if app.audio is None:
        return
    app.audio.playback.volume = new.volume
    app.audio.capture.configure(gain_db=new.input_gain_db)
    if any(getattr(old, k) != getattr(new, k) for k in CHAIN_KEYS):
        app.chain = app.factories.mic_chain(
            app.settings, app.audio.playback, on_chunk=app.outbox.push_audio, on_speech=app._speech
        )
    if (old.input_device, old.output_device, capture_block_ms(old)) != (
        new.input_device,
        new.output_device,
        capture_block_ms(new),
    ):
        log.info("audio devices changed: reopening them")
        app.audio.close()
        app.audio.capture.configure(device=new.input_device, block_ms=capture_block_ms(new))
        app.audio.playback.device = new.output_device
        app.audio.open()
