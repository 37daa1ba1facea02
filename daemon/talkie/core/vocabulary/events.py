"""The events: what happened, as the adapters report it."""

from __future__ import annotations

from dataclasses import dataclass, field

from talkie.core.policy import Policy


class Event:
    """Something that happened, reported by an adapter."""


@dataclass(frozen=True)
class ButtonDown(Event):
    """The talk button went down (or `talkie ctl press`, or the keyboard)."""


@dataclass(frozen=True)
class ButtonUp(Event):
    """The talk button went up."""


@dataclass(frozen=True)
class SessionOpened(Event):
    """A Live session finished its setup and can take input."""


@dataclass(frozen=True)
class LinkLost(Event):
    """The Live session could not be opened, or ended without being asked to.

    ``fatal`` means retrying cannot help until a person fixes something (a rejected API key, an
    unknown model); ``reason`` then says what to fix.
    """

    reason: str
    fatal: bool = False
    #: A random fraction in [0, 1] drawn by the shell: the back-off's full jitter (keeps step pure).
    jitter: float = 1.0


@dataclass(frozen=True)
class GoAway(Event):
    """The server will close this connection in ``time_left_s`` seconds."""

    time_left_s: float


@dataclass(frozen=True)
class Started(Event):
    """The daemon is up (READY): the moment to open a session when one is kept warm from boot."""


@dataclass(frozen=True)
class ModelAudio(Event):
    """A chunk of the model's spoken answer (s16le mono 24 kHz)."""

    pcm: bytes = field(repr=False)


@dataclass(frozen=True)
class Interrupted(Event):
    """The server cut the model's answer short (the user started a new turn)."""


@dataclass(frozen=True)
class TurnComplete(Event):
    """The server finished the model's turn."""


@dataclass(frozen=True)
class PlaybackDrained(Event):
    """Everything handed to playback has reached the speaker."""


@dataclass(frozen=True)
class Heard(Event):
    """Transcription of what the user said in a turn."""

    text: str


@dataclass(frozen=True)
class Said(Event):
    """Transcription of what the model said in a turn."""

    text: str


@dataclass(frozen=True)
class Timer(Event):
    """A timer started with :class:`StartTimer` fired; ``gen`` is that start's (a timer that was
    cancelled or started again since is stale, and changes nothing)."""

    name: str
    gen: int = 0


@dataclass(frozen=True)
class Say(Event):
    """A text turn from the user (`talkie ctl say TEXT`)."""

    text: str


@dataclass(frozen=True)
class Hush(Event):
    """Stop the answer now (`talkie ctl stop`): silence the speaker, drop the rest of the turn."""


@dataclass(frozen=True)
class Reset(Event):
    """Start a fresh conversation (`talkie ctl reset`): close the session, forget the turn.

    ``when_idle`` (the model was asked to start afresh): once the answer has been heard and no
    tool call is under way."""

    when_idle: bool = False


@dataclass(frozen=True)
class AudioFailed(Event):
    """The microphone or the speaker stopped working (or could not be opened)."""

    reason: str


@dataclass(frozen=True)
class AudioRestored(Event):
    """The audio devices work again."""


@dataclass(frozen=True)
class Reconfigured(Event):
    """The settings were read again (a reload): the machine's rules from now on."""

    policy: Policy


@dataclass(frozen=True)
class SpeechStarted(Event):
    """The local voice detector heard the user start speaking (after echo control)."""


@dataclass(frozen=True)
class SpeechEnded(Event):
    """The local voice detector heard the user stop speaking (``[audio] vad_end_ms`` of silence)."""


@dataclass(frozen=True)
class ToolCalled(Event):
    """The model called a tool: one function call of a ``toolCall``, with its arguments as JSON
    text (events stay plain values)."""

    call_id: str
    name: str
    args: str = "{}"


@dataclass(frozen=True)
class ToolAnswered(Event):
    """A call the shell ran has its answer: a result or an error object, as JSON text, and how
    the model is to be told of it (``interrupt``, ``when_idle`` or ``silent``)."""

    call_id: str
    name: str
    response: str
    scheduling: str = "when_idle"


@dataclass(frozen=True)
class ToolsCancelled(Event):
    """The server no longer wants these calls' results (``toolCallCancellation``)."""

    call_ids: tuple[str, ...]


@dataclass(frozen=True)
class AlarmDue(Event):
    """A timer or alarm the user set is due; ``what`` names it in words (``the timer "pasta"``)."""

    what: str


@dataclass(frozen=True)
class MicMute(Event):
    """The microphone switched off (``on``) or on again, or the other way round (``None``: a
    press of the mute button): by `talkie ctl mute mic`, the panel, or Home Assistant. While it
    is off, no audio leaves the device."""

    on: bool | None


@dataclass(frozen=True)
class CameraAllow(Event):
    """The camera allowed again, or forbidden (Home Assistant's switch): while it is forbidden no
    frame is taken, whatever ``[vision] mode`` says."""

    allowed: bool
