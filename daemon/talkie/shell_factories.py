"""How the shell makes each adapter (:class:`Factories`): the defaults build the real ones, lazily
importing their modules; tests replace what cannot exist on their machine."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from talkie.system.credentials import KeyProblem, Secret
from talkie.uplink import Outbox

INPUT_RATE = 16000
OUTPUT_RATE = 24000


def pending_bytes(settings: Any) -> int:
    """The uplink outbox's budget: ``[audio] pending_s`` of 16 kHz s16 mono audio."""
    return int(settings.audio.pending_s * INPUT_RATE * 2)


def _default_panel(settings: Any, **kw: Any) -> Any:
    from talkie.panel import open_panel

    return open_panel(settings.panel, **kw)


def _default_capture(settings: Any, **kw: Any) -> Any:
    from talkie.audio.capture import Capture

    return Capture(settings.audio.input_device, rate=INPUT_RATE, block_ms=settings.audio.chunk_ms,
                   gain_db=settings.audio.input_gain_db, **kw)


def _default_playback(settings: Any, **kw: Any) -> Any:
    from talkie.audio.playback import Playback

    return Playback(settings.audio.output_device, rate=OUTPUT_RATE, volume=settings.audio.volume,
                    **kw)


def _default_link(settings: Any, key: Secret | KeyProblem, outbox: Outbox, listener: Any,
                  resume: Any) -> Any:
    from talkie.live.link import LiveLink

    return LiveLink(settings.live, key, outbox, listener, resume)


def _default_resume(settings: Any) -> Any:
    from talkie.live.resume import ResumeStore, default_state_dir

    folder = settings.session.state_dir or default_state_dir()
    return ResumeStore(f"{folder}/resume.json")


def _default_vision(settings: Any, send: Any, log_fault: Any) -> Any:
    from talkie.shell_vision import Vision

    return Vision(settings, send, log_fault)


def _default_notifier() -> Any:
    from talkie.system.notify import Notifier

    return Notifier()


def _default_control(path: str | None, commands: Any) -> Any:
    from talkie.system.control import ControlServer, default_socket_path

    return ControlServer(path or default_socket_path(), commands)


@dataclass
class Factories:
    """How the shell makes each adapter. Tests replace what cannot exist on their machine."""

    panel: Callable[..., Any] = _default_panel
    capture: Callable[..., Any] = _default_capture
    playback: Callable[..., Any] = _default_playback
    link: Callable[..., Any] = _default_link
    resume: Callable[[Any], Any] = _default_resume
    vision: Callable[..., Any] = _default_vision
    notifier: Callable[[], Any] = _default_notifier
    control: Callable[[str | None, Any], Any] | None = _default_control
