"""The state machine's vocabulary: the phases the user sees, the events adapters report and the
effects the shell carries out. Plain frozen values; no behaviour (that is
:mod:`talkie.core.machine`)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from talkie.core.policy import Policy

__all__ = [
    "Phase",
    "Event",
    "ButtonDown",
    "ButtonUp",
    "SessionOpened",
    "LinkLost",
    "GoAway",
    "Started",
    "ModelAudio",
    "Interrupted",
    "TurnComplete",
    "PlaybackDrained",
    "Heard",
    "Said",
    "Timer",
    "Say",
    "Hush",
    "Reset",
    "AudioFailed",
    "AudioRestored",
    "Reconfigured",
    "SpeechStarted",
    "SpeechEnded",
    "Effect",
    "Connect",
    "Disconnect",
    "SendText",
    "StartTurn",
    "EndTurn",
    "ReplayTurn",
    "DropTurn",
    "Play",
    "FlushPlayback",
    "FinishPlayback",
    "StartTimer",
    "CancelTimer",
    "Camera",
    "ForgetSession",
    "Show",
    "Log",
    "EVENT_TYPES",
]


class Phase(enum.Enum):
    """What the device is doing, as the user sees it (and the LED shows it)."""

    IDLE = "idle"
    CONNECTING = "connecting"
    LISTENING = "listening"
    THINKING = "thinking"
    SPEAKING = "speaking"
    RECONNECTING = "reconnecting"
    ERROR = "error"

    @property
    def meaning(self) -> str:
        """What the phase means to the user, in words (the README's states table)."""
        return _MEANINGS[self]


_MEANINGS = {
    Phase.IDLE: "ready; a session may be open (warm) or not",
    Phase.CONNECTING: "pressed with no session: audio is kept until it opens",
    Phase.LISTENING: "the user's turn is streaming",
    Phase.THINKING: "turn ended, waiting for the answer",
    Phase.SPEAKING: "the answer is playing; a press or the user's voice barges in",
    Phase.RECONNECTING: "the link dropped mid-turn or could not be opened; retrying with back-off",
    Phase.ERROR: "needs a person: rejected key, unknown model, no microphone",
}


# ------------------------------------------------------------------------------------- events


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
    """Start a fresh conversation (`talkie ctl reset`): close the session, forget the turn."""


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


# ------------------------------------------------------------------------------------ effects


class Effect:
    """Something the shell must do."""


@dataclass(frozen=True)
class Connect(Effect):
    """Open a Live session; report SessionOpened or LinkLost."""


@dataclass(frozen=True)
class Disconnect(Effect):
    """Close the Live session (it reports nothing more)."""


@dataclass(frozen=True)
class SendText(Effect):
    """Queue a text turn for the session."""

    text: str


@dataclass(frozen=True)
class StartTurn(Effect):
    """Queue activity_start and capture the microphone into the outbox from now on.

    ``preroll``: the user's voice started this turn; first queue the audio from just before the
    detection (``[audio] preroll_ms``), so the first syllable is not lost."""

    preroll: bool = False


@dataclass(frozen=True)
class EndTurn(Effect):
    """Stop capturing into the outbox and queue activity_end."""


@dataclass(frozen=True)
class ReplayTurn(Effect):
    """The link dropped mid-turn: queue the current turn again, from its start, for the next
    session."""


@dataclass(frozen=True)
class DropTurn(Effect):
    """Forget the current turn: stop capturing and empty the outbox."""


@dataclass(frozen=True)
class Play(Effect):
    """Append the model's audio to the playback buffer."""

    pcm: bytes = field(repr=False)


@dataclass(frozen=True)
class FlushPlayback(Effect):
    """Silence the speaker now: drop everything buffered."""


@dataclass(frozen=True)
class FinishPlayback(Effect):
    """No more audio is coming this turn: report PlaybackDrained once it has all been heard."""


@dataclass(frozen=True)
class StartTimer(Effect):
    """Report ``Timer(name, gen)`` after ``delay_s`` seconds (replacing a pending timer of that
    name). ``gen`` is given by :func:`talkie.core.machine.step`, which keeps the pending timers."""

    name: str
    delay_s: float
    gen: int = 0


@dataclass(frozen=True)
class CancelTimer(Effect):
    """Forget the pending timer ``name``, if any."""

    name: str


@dataclass(frozen=True)
class Camera(Effect):
    """Start (``on``) or stop sampling the camera for the session."""

    on: bool


@dataclass(frozen=True)
class ForgetSession(Effect):
    """Forget the resumption handle: the next session starts a fresh conversation."""


@dataclass(frozen=True)
class Show(Effect):
    """The state changed: show it on the LED and in the service status."""

    phase: Phase
    status: str


@dataclass(frozen=True)
class Log(Effect):
    """A line for the journal.

    ``key`` names a fault channel: the shell writes a keyed line only when its text differs from the
    last one written for that key, so a retry loop logs one line per fault, not one per retry.
    ``transcript`` lines are what was heard and said; the shell may be configured to leave them out.
    """

    level: str
    message: str
    key: str | None = None
    transcript: bool = False


EVENT_TYPES: tuple[type[Event], ...] = (
    ButtonDown,
    ButtonUp,
    SessionOpened,
    LinkLost,
    ModelAudio,
    Interrupted,
    TurnComplete,
    PlaybackDrained,
    Heard,
    Said,
    Timer,
    Say,
    Hush,
    Reset,
    AudioFailed,
    AudioRestored,
    GoAway,
    Started,
    SpeechStarted,
    SpeechEnded,
    Reconfigured,
)
