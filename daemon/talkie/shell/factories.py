"""How the shell makes each adapter (:class:`Factories`): the defaults build the real ones, lazily
importing their modules; tests replace what cannot exist on their machine."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from talkie.config.credentials import KeyProblem, Secret
from talkie.core.outbox import Outbox

INPUT_RATE = 16000
OUTPUT_RATE = 24000


def pending_bytes(settings: Any) -> int:
    """The uplink outbox's budget: ``[audio] pending_s`` of 16 kHz s16 mono audio."""
    return int(settings.audio.pending_s * INPUT_RATE * 2)


def _default_panel(settings: Any, **kw: Any) -> Any:
    from talkie.panel import open_panel

    return open_panel(settings.panel, **kw)


def listens(audio: Any) -> bool:
    """Whether the microphone chain looks at the audio (else blocks pass straight through)."""
    return audio.barge_in or audio.echo == "aec"


def capture_block_ms(audio: Any) -> int:
    """Capture in 10 ms blocks when the chain listens (a barge-in is decided 10 ms sooner);
    the chain gathers them into ``chunk_ms`` chunks for the uplink."""
    return 10 if listens(audio) else audio.chunk_ms


def _default_capture(settings: Any, **kw: Any) -> Any:
    from talkie.audio.capture import Capture

    return Capture(
        settings.audio.input_device,
        rate=INPUT_RATE,
        block_ms=capture_block_ms(settings.audio),
        gain_db=settings.audio.input_gain_db,
        **kw,
    )


def _default_mic_chain(settings: Any, playback: Any, **kw: Any) -> Any:
    """The microphone chain for ``[audio]``; ``kw``: on_chunk, on_speech. Without libspeexdsp,
    echo cancellation falls back to half-duplex (said once in the journal)."""
    import logging

    from talkie.audio.uplink_chain import MicChain

    audio = settings.audio
    echo, canceller, reference, gate = audio.echo, None, None, None
    if echo == "aec":
        from talkie.audio.devices import AudioError
        from talkie.audio.echo import SpeexEcho

        try:
            canceller = SpeexEcho(INPUT_RATE, filter_ms=audio.echo_tail_ms)
        except AudioError as exc:
            logging.getLogger("talkie").warning("%s; using half_duplex", exc)
            echo = "half_duplex"
    if echo == "aec":
        from talkie.audio.reference import EchoReference

        reference = EchoReference(playback, INPUT_RATE)
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
        chunk_ms=audio.chunk_ms,
        preroll_ms=audio.preroll_ms,
        rate=INPUT_RATE,
        speaker_busy=lambda: playback.busy,
        **kw,
    )


def _default_playback(settings: Any, **kw: Any) -> Any:
    from talkie.audio.playback import Playback

    return Playback(
        settings.audio.output_device, rate=OUTPUT_RATE, volume=settings.audio.volume, **kw
    )


def _default_link(
    settings: Any, key: Secret | KeyProblem, outbox: Outbox, listener: Any, resume: Any
) -> Any:
    from talkie.live.link import LiveLink

    return LiveLink(settings.live, key, outbox, listener, resume)


def _default_resume(settings: Any) -> Any:
    from talkie.live.resume import ResumeStore, default_state_dir

    folder = settings.session.state_dir or default_state_dir()
    return ResumeStore(f"{folder}/resume.json")


def _default_vision(settings: Any, send: Any, log_fault: Any) -> Any:
    from talkie.shell.vision import Vision

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
    mic_chain: Callable[..., Any] = _default_mic_chain
    playback: Callable[..., Any] = _default_playback
    link: Callable[..., Any] = _default_link
    resume: Callable[[Any], Any] = _default_resume
    vision: Callable[..., Any] = _default_vision
    notifier: Callable[[], Any] = _default_notifier
    control: Callable[[str | None, Any], Any] | None = _default_control
