"""What the machine remembers (:class:`State`), with the rules it is configured with
(:class:`~talkie.core.policy.Policy`), and :class:`Handlers`: one state group's part of the
transition table, which the group modules of this package fill in."""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from talkie.core.policy import Policy
from talkie.core.vocabulary import Effect, Event, Phase

#: Timer names.
RETRY, IDLE_TIMER, STABLE, HANDOVER, HOLD = "retry", "idle", "stable", "handover", "hold"
ANSWER, RING = "answer", "ring"
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
    #: The rules, from the settings (no default: the settings hold the defaults).
    policy: Policy = field(kw_only=True)
    #: The user's voice opened this turn (a barge-in): it ends when the voice detector hears the
    #: end of speech, not on a button release. Only with ``held``.
    voice: bool = False
    #: The timers started and neither cancelled nor fired: (name, generation), by name. Kept by
    #: ``step`` from the effects, so a rule can ask whether one is pending, and a report from a
    #: timer cancelled (or started again) since is known to be stale.
    timers: tuple[tuple[str, int], ...] = ()
    #: The last generation given to a timer.
    timer_seq: int = 0
    #: The model's tool calls under way, (id, tool name): each is answered once, or cancelled.
    calls: tuple[tuple[str, str], ...] = ()
    #: Timers and alarms due and not rung yet, each in words (``the timer "pasta"``).
    due: tuple[str, ...] = ()
    #: Ringing: what rings (in words).
    ringing: tuple[str, ...] = ()
    #: Ringing: the text turn that has the model say what rings is on its way.
    announcing: bool = False
    #: The model asked for a fresh conversation: it starts once its answer has been heard.
    reset_due: bool = False
    #: The microphone is switched off: no turn opens and no audio leaves the device.
    mic_off: bool = False
    #: The camera is forbidden: no frame is taken, whatever ``[vision] mode`` says.
    camera_off: bool = False

    def call(self, call_id: str) -> str | None:
        """The tool name of the call ``call_id`` under way, or None."""
        return next((name for c, name in self.calls if c == call_id), None)

    def timer(self, name: str) -> int | None:
        """The generation of the pending timer ``name``, or None."""
        return next((gen for n, gen in self.timers if n == name), None)

    @property
    def status(self) -> str:
        """The state in words, for the status line and the journal."""
        if self.phase is Phase.IDLE:
            return "ready (microphone off)" if self.mic_off else "ready"
        if self.phase is Phase.RECONNECTING and self.link is Link.DOWN and self.retry_s >= 1:
            return f"reconnecting in {round(self.retry_s):d} s"
        if self.phase is Phase.ERROR:
            return f"error: {self.reason}"
        return str(self.phase.value)


def wants_link(s: State) -> bool:
    """A link is wanted and none is up or opening: reconnecting, an error of the link (the slow
    retry), or idle with a session kept open from start."""
    return s.link is Link.DOWN and (
        s.phase is Phase.RECONNECTING
        or (s.phase is Phase.ERROR and s.fault is Fault.LINK)
        or (s.phase is Phase.IDLE and s.policy.connect_at_start)
    )


def camera_wanted(s: State) -> bool:
    """Whether the camera should be sampled now, by ``[vision] mode``.

    Never while the camera is forbidden (``camera_off``). while_talking: while a user turn is
    being captured; conversation: from the first press until
    the session is closed idle; always: whenever a session is open (or opening).
    """
    mode = s.policy.vision_mode
    if s.camera_off:
        return False
    if mode == "while_talking":
        return s.held and s.phase in (Phase.LISTENING, Phase.CONNECTING, Phase.RECONNECTING)
    if mode == "conversation":
        return s.phase not in (Phase.IDLE, Phase.ERROR, Phase.RINGING) or (
            s.phase in (Phase.IDLE, Phase.RINGING) and s.link is not Link.DOWN
        )
    if mode == "always":
        return s.link is not Link.DOWN
    return False


def backoff(attempt: int, jitter: float, policy: Policy) -> float:
    """Full-jitter exponential back-off: a random share of ``first * 2**(attempt-1)``, capped."""
    ceiling = min(policy.backoff_cap_s, policy.backoff_first_s * 2 ** max(0, attempt - 1))
    return float(max(MIN_RETRY_S, min(1.0, max(0.0, jitter)) * ceiling))


#: What a handler returns: the new state and the effects to carry out, in order.
Step = tuple[State, list[Effect]]
Handler = Callable[[State, Event], Step]
#: A handler for every phase (a phase's own handler for the same event comes first).
ANY = None
Key = tuple[Phase | None, type[Event]]


class Handlers:
    """One state group's part of the transition table: ``(phase or ANY, event type) -> handler``.

    Filled once, when its module is imported, by the :meth:`on` decorator; read by
    :func:`talkie.core.machine.handler_for` and by the generated table (:mod:`.table`).
    """

    def __init__(self, group: str) -> None:
        self.group = group
        self._table: dict[Key, Handler] = {}

    def on(
        self, phases: tuple[Phase | None, ...] | Phase | None, event: type[Event]
    ) -> Callable[[Handler], Handler]:
        """Declare a handler for ``event`` in each of ``phases`` (``ANY``: whatever the phase)."""
        every = phases if isinstance(phases, tuple) else (phases,)

        def register(handler: Handler) -> Handler:
            for phase in every:
                assert (phase, event) not in self._table, (phase, event)
                self._table[(phase, event)] = handler
            return handler

        return register

    def get(self, key: Key) -> Handler | None:
        return self._table.get(key)

    def items(self) -> Iterator[tuple[Key, Handler]]:
        """Every declared pair, in the order of declaration."""
        return iter(self._table.items())
