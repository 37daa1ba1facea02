"""What the machine remembers (:class:`State`), the rules it is configured with (:class:`Policy`),
and the table of handlers that the other modules of this package fill in."""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field

from talkie.core.vocabulary import Effect, Event, Phase

#: Timer names.
RETRY, IDLE_TIMER, STABLE, HANDOVER, HOLD = "retry", "idle", "stable", "handover", "hold"
#: The shortest wait before a reconnect, in seconds (full jitter may draw close to zero).
MIN_RETRY_S = 0.1


class Link(enum.Enum):
    """The Live session's lifecycle."""

    DOWN = "down"
    OPENING = "opening"
    UP = "up"


class Fault(enum.Enum):
    """Which part of the device an error state is about."""

    NONE = "none"
    LINK = "link"  # the service refused us: bad key, unknown model, bad setting
    AUDIO = "audio"  # no microphone or speaker


@dataclass(frozen=True)
class Policy:
    """The supervisor's rules, from the ``[session]`` settings (and a few fixed ones)."""

    #: Close a warm session after this long without a conversation (0: keep it open).
    idle_disconnect_s: float = 300.0
    #: Open a session at start and keep one open (reconnecting in the background).
    connect_at_start: bool = False
    #: Holding the button this long starts a fresh conversation (0: off).
    reset_hold_s: float = 0.0
    #: After an error only a person can fix, try again this often (a press tries at once).
    error_retry_s: float = 300.0
    backoff_first_s: float = 0.5
    backoff_cap_s: float = 30.0
    #: Consecutive failed connects after which a turn the user already released is given up
    #: (about 30 s of back-off: as long as the uplink buffer keeps audio by default).
    give_up_after: int = 6
    #: A session that stayed up this long resets the back-off.
    stable_s: float = 60.0
    #: goAway with this little time left: hand over at once, not at the next safe point.
    handover_now_s: float = 10.0
    #: When the camera is sampled: "off", "while_talking", "conversation" or "always".
    vision_mode: str = "off"
    #: The user's voice (local VAD) stops the answer and opens a turn (the button always does).
    barge_in: bool = True


@dataclass(frozen=True)
class State:
    """Everything the machine remembers. Frozen: every step makes a new one."""

    phase: Phase = Phase.IDLE
    link: Link = Link.DOWN
    #: The button (or whatever started the turn) is down: a user turn is being captured.
    held: bool = False
    #: Speaking: the server has finished the turn; only local playback is left.
    turn_done: bool = False
    #: Consecutive connects that failed (reset once a session has stayed up a while).
    attempt: int = 0
    fault: Fault = Fault.NONE
    #: Error: what is wrong and what the user should do about it.
    reason: str = ""
    #: The user stopped the answer: the rest of this model turn is dropped until it completes.
    muted: bool = False
    #: The server announced the end of this connection: move to a new one at the next safe point.
    handover: bool = False
    #: The wait before the next connect, for the status line.
    retry_s: float = 0.0
    policy: Policy = field(default_factory=Policy)
    #: The user's voice opened this turn (a barge-in): it ends when the voice detector hears the
    #: end of speech, not on a button release. Only with ``held``.
    voice: bool = False

    @property
    def status(self) -> str:
        """The state in words, for the status line and the journal."""
        if self.phase is Phase.IDLE:
            return "ready"
        if self.phase is Phase.RECONNECTING and self.link is Link.DOWN and self.retry_s >= 1:
            return f"reconnecting in {round(self.retry_s):d} s"
        if self.phase is Phase.ERROR:
            return f"error: {self.reason}"
        return self.phase.value


def camera_wanted(s: State) -> bool:
    """Whether the camera should be sampled now, by ``[vision] mode``.

    while_talking: while a user turn is being captured; conversation: from the first press until
    the session is closed idle; always: whenever a session is open (or opening).
    """
    mode = s.policy.vision_mode
    if mode == "while_talking":
        return s.held and s.phase in (Phase.LISTENING, Phase.CONNECTING, Phase.RECONNECTING)
    if mode == "conversation":
        return s.phase not in (Phase.IDLE, Phase.ERROR) or (
            s.phase is Phase.IDLE and s.link is not Link.DOWN
        )
    if mode == "always":
        return s.link is not Link.DOWN
    return False


def backoff(attempt: int, jitter: float, policy: Policy) -> float:
    """Full-jitter exponential back-off: a random share of ``first * 2**(attempt-1)``, capped."""
    ceiling = min(policy.backoff_cap_s, policy.backoff_first_s * 2 ** max(0, attempt - 1))
    return max(MIN_RETRY_S, min(1.0, max(0.0, jitter)) * ceiling)


Handler = Callable[[State, Event], tuple[State, list[Effect]]]
ANY = None
HANDLERS: dict[tuple[Phase | None, type[Event]], Handler] = {}


def on(phases: tuple[Phase | None, ...] | Phase | None, event: type[Event]):
    """Declare a handler for ``event`` in each of ``phases`` (``ANY``: whatever the phase)."""
    if not isinstance(phases, tuple):
        phases = (phases,)

    def register(handler: Handler) -> Handler:
        for phase in phases:
            assert (phase, event) not in HANDLERS, (phase, event)
            HANDLERS[(phase, event)] = handler
        return handler

    return register


def handler_for(phase: Phase, event: type[Event]) -> Handler | None:
    """The handler that ``step`` uses for ``event`` in ``phase``, or None if the pair is ignored."""
    return HANDLERS.get((phase, event)) or HANDLERS.get((ANY, event))
