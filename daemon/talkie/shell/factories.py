"""How the shell makes each adapter (:class:`Factories`): the defaults build the real ones, lazily
importing their modules (hardware and the Live SDK are imported only when they are used); tests
replace what cannot exist on their machine, with fakes of the same :mod:`~talkie.shell.ports`."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from talkie.config import Settings
from talkie.config.credentials import KeyProblem, Secret
from talkie.config.settings import INPUT_RATE, OUTPUT_RATE
from talkie.core.outbox import Outbox
from talkie.shell import ports

log = logging.getLogger("talkie")


def _default_panel(settings: Settings, **kw: Any) -> ports.Panel:
    from talkie.panel import open_panel
    from talkie.system import logs

    panel = open_panel(settings.panel, **kw)
    logs.keep_status_line(panel.status_line)  # log lines on its terminal keep it beneath them
    return panel


def _default_capture(settings: Settings, **kw: Any) -> ports.Capture:
    from talkie.audio.capture import Capture

    audio = settings.audio
    return Capture(
        audio.input_device,
        rate=INPUT_RATE,
        block_ms=audio.capture_block_ms,
        gain_db=audio.input_gain_db,
        **kw,
    )


def _default_mic_chain(settings: Settings, playback: Any, **kw: Any) -> ports.MicChain:
    """The microphone chain for ``[audio]``; ``kw``: on_chunk, on_speech. Without libspeexdsp,
    echo cancellation falls back to half-duplex (said once in the journal)."""
    from talkie.audio.uplink_chain import MicChain

    audio = settings.audio
    echo, canceller, reference, gate, coherence = audio.echo, None, None, None, None
    if echo == "aec":
        from talkie.audio.devices import AudioError
        from talkie.audio.echo import SpeexEcho

        try:
            canceller = SpeexEcho(INPUT_RATE, filter_ms=audio.echo_tail_ms)
        except AudioError as exc:
            log.warning("%s; using half_duplex", exc)
            echo = "half_duplex"
    if echo == "aec":
        from talkie.audio.coherence import EchoCoherence
        from talkie.audio.reference import EchoReference

        reference = EchoReference(playback, INPUT_RATE)
        coherence = EchoCoherence(INPUT_RATE, lead=round(reference.lead_ms * INPUT_RATE / 1000))
    if audio.barge_in:
        from talkie.audio.vad import SpeechGate

        gate = SpeechGate(
            INPUT_RATE,
            aggressiveness=audio.vad_aggressiveness,
            start_frames=audio.vad_start_frames,
            window_frames=audio.vad_window_frames,
            end_ms=audio.vad_end_ms,
        )
    return MicChain(
        echo=echo,
        barge_in=audio.barge_in,
        gate=gate,
        canceller=canceller,
        reference=reference,
        coherence=coherence,
        chunk_ms=audio.chunk_ms,
        preroll_ms=audio.preroll_ms,
        rate=INPUT_RATE,
        speaker_busy=lambda: playback.busy,
        **kw,
    )


def _default_playback(settings: Settings, **kw: Any) -> ports.Playback:
    from talkie.audio.playback import Playback

    audio = settings.audio
    return Playback(audio.output_device, rate=OUTPUT_RATE, volume=audio.volume, **kw)


def _default_link(
    settings: Settings,
    key: Secret | KeyProblem,
    outbox: Outbox,
    listener: ports.LinkListener,
    resume: ports.ResumeStore,
) -> ports.Link:
    from talkie.live.link import LiveLink

    return LiveLink(settings.live, key, outbox, listener, resume)


def _default_resume(settings: Settings) -> ports.ResumeStore:
    from talkie.live.resume import ResumeStore, default_state_dir

    folder = settings.session.state_dir or default_state_dir()
    return ResumeStore(f"{folder}/resume.json", background=True)  # the loop never waits on disk


def _default_vision(
    settings: Settings, send: Callable[[bytes], Any], log_fault: Callable[[str], None]
) -> ports.Camera:
    from talkie.shell.vision import Vision

    return Vision(settings, send, log_fault)


def _default_notifier() -> ports.Notifier:
    from talkie.system.notify import Notifier

    return Notifier()


def _default_buttons(settings: Settings, **kw: Any) -> ports.ControlButtons:
    from talkie.panel.controls import ControlButtons

    return ControlButtons(settings.panel, **kw)


def _default_home(settings: Settings, **kw: Any) -> ports.Home:
    """Home Assistant through the broker of ``[mqtt]``: talkie's device and the entities it has."""
    import os

    from talkie import mqtt, version

    password = None
    if settings.mqtt.password_file:
        password = mqtt.read_password(
            settings.mqtt.password_file, os.environ.get("CREDENTIALS_DIRECTORY")
        )
    device = mqtt.Device(mqtt.device_id(settings.mqtt), settings.mqtt.device_name, version())
    features = mqtt.Features(
        transcripts=settings.log.transcripts,
        camera=settings.vision.mode != "off" or settings.tools.look_enabled(settings.vision.mode),
        timers=settings.tools.timers,
    )
    return mqtt.HomeAssistant(settings.mqtt, password, device, features, **kw)


def _default_control(path: str | None, commands: Any) -> ports.ControlServer:
    from talkie.system.control import ControlServer, default_socket_path

    return ControlServer(path or default_socket_path(), commands)


@dataclass
class Factories:
    """How the shell makes each adapter. Tests replace what cannot exist on their machine."""

    panel: Callable[..., ports.Panel] = _default_panel
    capture: Callable[..., ports.Capture] = _default_capture
    mic_chain: Callable[..., ports.MicChain] = _default_mic_chain
    playback: Callable[..., ports.Playback] = _default_playback
    link: Callable[..., ports.Link] = _default_link
    resume: Callable[[Settings], ports.ResumeStore] = _default_resume
    vision: Callable[..., ports.Camera] = _default_vision
    notifier: Callable[[], ports.Notifier] = _default_notifier
    control: Callable[[str | None, Any], ports.ControlServer] | None = _default_control
    #: The panel's volume and mute buttons (only built when ``[panel]`` names their pins).
    buttons: Callable[..., ports.ControlButtons] | None = _default_buttons
    #: Home Assistant over MQTT (only built when ``[mqtt] enabled``).
    home: Callable[..., ports.Home] | None = _default_home
