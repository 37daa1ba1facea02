"""The effects: what the shell must do."""

from __future__ import annotations

from dataclasses import dataclass, field

from talkie.core.vocabulary.phase import Phase


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


@dataclass(frozen=True)
class RunTool(Effect):
    """Run the tool call; report ``ToolAnswered`` with its answer (whatever happens)."""

    call_id: str
    name: str
    args: str = "{}"


@dataclass(frozen=True)
class CancelTools(Effect):
    """Stop these calls if they still run; what they would answer is void."""

    call_ids: tuple[str, ...]


@dataclass(frozen=True)
class SendToolResponse(Effect):
    """Queue the answer to a tool call for the session (a ``toolResponse``)."""

    call_id: str
    name: str
    response: str
    scheduling: str = "when_idle"


@dataclass(frozen=True)
class Ring(Effect):
    """Start (``on``) or stop ringing: the alarm's chime through the speaker."""

    on: bool


@dataclass(frozen=True)
class PrivacyChanged(Effect):
    """The microphone was switched off or on, or the camera forbidden or allowed: the shell keeps
    both across restarts, stops every microphone byte before the uplink while it is off, and tells
    whoever watches (Home Assistant)."""

    mic_off: bool
    camera_off: bool
