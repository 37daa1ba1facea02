"""The appliance's behaviour: a pure state machine.

``step(state, event) -> (state, effects)`` is the whole of talkie's conversation logic. It does no I/O,
imports no adapter and knows nothing of asyncio: the shell (:mod:`talkie.app`) turns what the hardware
and the network report into :class:`Event` values, feeds them to :func:`step`, and carries out the
:class:`Effect` values it returns.

The state has two orthogonal parts:

* the **phase** the user sees on the LED (idle, connecting, listening, thinking, speaking,
  reconnecting, error), and
* the **link**: whether a Live session is down, opening or up.

A user turn is captured into the uplink's outbox (:mod:`talkie.uplink`) from the press on, whatever the
link is doing; the outbox is sent in order once a session is up. So connecting on the first press,
or reconnecting in the middle of a turn, loses no word.

Transitions are declared per (phase, event) in a table of small handler functions (see ``_on``);
a pair with no handler leaves the state as it is and does nothing.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, replace

from talkie.vocabulary import (  # noqa: F401 - re-exported: the machine's whole vocabulary
    EVENT_TYPES, AudioFailed, AudioRestored, ButtonDown, ButtonHeld, ButtonUp, CancelRetryTimer,
    Connect, Disconnect, DropTurn, Effect, EndTurn, Event, FinishPlayback, FlushPlayback, Heard,
    Hush, Interrupted, LinkLost, Log, ModelAudio, Phase, Play, PlaybackDrained, ReplayTurn, Reset,
    RetryDue, Said, Say, SendText, SessionOpened, Show, StartRetryTimer, StartTurn, TurnComplete,
)

#: Consecutive failed connects after which a turn the user already released is given up.
GIVE_UP_AFTER = 4
#: Longest wait between two reconnect attempts, in seconds.
BACKOFF_CAP_S = 30.0


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
    #: Consecutive connects that failed.
    attempt: int = 0
    fault: Fault = Fault.NONE
    #: Error: what is wrong and what the user should do about it.
    reason: str = ""
    #: The user stopped the answer: the rest of this model turn is dropped until it completes.
    muted: bool = False

    @property
    def status(self) -> str:
        """The state in words, for the status line and the journal."""
        if self.phase is Phase.IDLE:
            return "ready"
        if self.phase is Phase.RECONNECTING and self.link is Link.DOWN and self.attempt:
            return f"reconnecting in {backoff(self.attempt):g} s"
        if self.phase is Phase.ERROR:
            return f"error: {self.reason}"
        return self.phase.value


# ------------------------------------------------------------------------------------------ the table

Handler = Callable[[State, Event], tuple[State, list[Effect]]]
_ANY = None
_HANDLERS: dict[tuple[Phase | None, type[Event]], Handler] = {}


def _on(phases: tuple[Phase | None, ...] | Phase | None, event: type[Event]):
    """Declare a handler for ``event`` in each of ``phases`` (``_ANY``: whatever the phase)."""
    if not isinstance(phases, tuple):
        phases = (phases,)

    def register(handler: Handler) -> Handler:
        for phase in phases:
            assert (phase, event) not in _HANDLERS, (phase, event)
            _HANDLERS[(phase, event)] = handler
        return handler

    return register


def backoff(attempt: int) -> float:
    """Seconds to wait before reconnect attempt ``attempt + 1``: 0.5, 1, 2, ... up to 30."""
    return min(BACKOFF_CAP_S, 0.5 * 2 ** max(0, attempt - 1))


def _connect(state: State) -> list[Effect]:
    """Connect unless a session is already up or opening."""
    return [Connect()] if state.link is Link.DOWN else []


# ---- the button


@_on(Phase.IDLE, ButtonDown)
def _press_when_idle(s: State, e: Event):
    s = replace(s, muted=False)  # a new turn: what is left of a stopped answer is stale anyway
    if s.link is Link.UP:
        return replace(s, phase=Phase.LISTENING, held=True), [StartTurn()]
    return (
        replace(s, phase=Phase.CONNECTING, held=True, link=Link.OPENING),
        [*_connect(s), StartTurn()],
    )


@_on(Phase.ERROR, ButtonDown)
def _press_after_error(s: State, e: Event):
    cleared = replace(s, fault=Fault.NONE, reason="", attempt=0)
    if s.fault is Fault.AUDIO:
        # The microphone is gone: a turn cannot be captured, so say so again and stay.
        return s, [Log("warning", f"cannot listen: {s.reason}")]
    return _press_when_idle(replace(cleared, phase=Phase.IDLE), e)


@_on((Phase.CONNECTING, Phase.RECONNECTING), ButtonDown)
def _press_while_connecting(s: State, e: Event):
    if s.held:
        return s, []
    # A second question while the first still waits for the link: both are sent, in order.
    return replace(s, held=True), [StartTurn()]


@_on(Phase.THINKING, ButtonDown)
def _press_while_thinking(s: State, e: Event):
    return replace(s, phase=Phase.LISTENING, held=True), [StartTurn()]


@_on(Phase.SPEAKING, ButtonDown)
def _press_while_speaking(s: State, e: Event):
    # Barge-in: silence the speaker first, then open the new turn (the server interrupts the model).
    effects: list[Effect] = [FlushPlayback()]
    if s.link is Link.UP:
        return replace(s, phase=Phase.LISTENING, held=True, turn_done=False), [*effects, StartTurn()]
    return (
        replace(s, phase=Phase.CONNECTING, held=True, turn_done=False, link=Link.OPENING),
        [*effects, *_connect(s), StartTurn()],
    )


@_on(Phase.LISTENING, ButtonUp)
def _release_while_listening(s: State, e: Event):
    return replace(s, phase=Phase.THINKING, held=False), [EndTurn()]


@_on((Phase.CONNECTING, Phase.RECONNECTING), ButtonUp)
def _release_while_connecting(s: State, e: Event):
    if not s.held:
        return s, []
    return replace(s, held=False), [EndTurn()]


@_on(Phase.ERROR, ButtonUp)
def _release_after_error(s: State, e: Event):
    return replace(s, held=False), []


# ---- the link


@_on(_ANY, SessionOpened)
def _opened(s: State, e: Event):
    up = replace(s, link=Link.UP, attempt=0)
    log = Log("info", "connected to Gemini Live", key="link")
    if s.phase in (Phase.CONNECTING, Phase.RECONNECTING):
        return replace(up, phase=Phase.LISTENING if s.held else Phase.THINKING), [log]
    if s.phase is Phase.ERROR and s.fault is Fault.LINK:
        return replace(up, phase=Phase.IDLE, fault=Fault.NONE, reason=""), [log]
    return up, [log]


@_on(_ANY, LinkLost)
def _lost(s: State, e: Event):
    assert isinstance(e, LinkLost)
    down = replace(s, link=Link.DOWN, muted=False)
    if e.fatal:
        if s.phase is Phase.ERROR and s.fault is Fault.AUDIO:
            return down, [Log("error", e.reason, key="link")]
        return (
            replace(down, phase=Phase.ERROR, fault=Fault.LINK, reason=e.reason, attempt=0,
                    turn_done=False),
            [DropTurn(), FlushPlayback(), CancelRetryTimer(), Log("error", e.reason, key="link")],
        )
    return _LOST_BY_PHASE.get(s.phase, _lost_quietly)(down, e)


def _lost_quietly(s: State, e: LinkLost):
    return s, [Log("info", f"session closed ({e.reason})", key="link")]


def _lost_while_connecting(s: State, e: LinkLost):
    attempt = s.attempt + 1
    if not s.held and attempt > GIVE_UP_AFTER:
        return (
            replace(s, phase=Phase.IDLE, attempt=0),
            [DropTurn(), Log("warning", f"could not reach Gemini ({e.reason}); "
                                        "the last question was not sent", key="link")],
        )
    return (
        replace(s, phase=Phase.RECONNECTING, attempt=attempt),
        [StartRetryTimer(backoff(attempt)),
         Log("warning", f"cannot reach Gemini ({e.reason}); retrying", key="link")],
    )


def _lost_mid_turn(s: State, e: LinkLost):
    # First retry at once; the turn is replayed from its start on the new session.
    return (
        replace(s, phase=Phase.RECONNECTING, link=Link.OPENING, attempt=0),
        [ReplayTurn(), Connect(), Log("warning", f"connection lost ({e.reason}); reconnecting",
                                      key="link")],
    )


def _lost_while_speaking(s: State, e: LinkLost):
    effects: list[Effect] = [Log("warning", f"connection lost ({e.reason})", key="link")]
    if not s.turn_done:
        effects.append(FinishPlayback())  # play what did arrive, to its end
    return replace(s, turn_done=True), effects


_LOST_BY_PHASE: dict[Phase, Callable[[State, LinkLost], tuple[State, list[Effect]]]] = {
    Phase.CONNECTING: _lost_while_connecting,
    Phase.RECONNECTING: _lost_while_connecting,
    Phase.LISTENING: _lost_mid_turn,
    Phase.THINKING: _lost_mid_turn,
    Phase.SPEAKING: _lost_while_speaking,
}


@_on(Phase.RECONNECTING, RetryDue)
def _retry(s: State, e: Event):
    if s.link is not Link.DOWN:
        return s, []
    return replace(s, link=Link.OPENING), [Connect()]


# ---- the model's answer


@_on((Phase.THINKING, Phase.IDLE), ModelAudio)
def _first_audio(s: State, e: Event):
    assert isinstance(e, ModelAudio)
    if s.muted:
        return s, []
    # In idle this is an answer to a turn whose completion we already saw (after a quick barge-in).
    return replace(s, phase=Phase.SPEAKING, turn_done=False), [Play(e.pcm)]


@_on(Phase.SPEAKING, ModelAudio)
def _more_audio(s: State, e: Event):
    assert isinstance(e, ModelAudio)
    if s.turn_done:
        return s, []
    return s, [Play(e.pcm)]


@_on(Phase.SPEAKING, Interrupted)
def _interrupted_while_speaking(s: State, e: Event):
    return replace(s, phase=Phase.IDLE, turn_done=False), [FlushPlayback()]


@_on((Phase.LISTENING, Phase.THINKING), Interrupted)
def _interrupted_after_barge_in(s: State, e: Event):
    return s, [FlushPlayback()]  # idempotent with the local flush


@_on(Phase.THINKING, TurnComplete)
def _complete_without_audio(s: State, e: Event):
    return replace(s, phase=Phase.IDLE), []


@_on(Phase.IDLE, TurnComplete)
def _stopped_answer_complete(s: State, e: Event):
    return replace(s, muted=False), []


@_on(Phase.SPEAKING, TurnComplete)
def _complete_while_speaking(s: State, e: Event):
    if s.turn_done:
        return s, []
    return replace(s, turn_done=True), [FinishPlayback()]


@_on(Phase.SPEAKING, PlaybackDrained)
def _drained(s: State, e: Event):
    if not s.turn_done:
        return s, []
    return replace(s, phase=Phase.IDLE, turn_done=False), []


@_on(_ANY, Heard)
def _heard(s: State, e: Event):
    assert isinstance(e, Heard)
    return s, [Log("info", f"heard: {e.text}", transcript=True)]


@_on(_ANY, Said)
def _said(s: State, e: Event):
    assert isinstance(e, Said)
    return s, [Log("info", f"said: {e.text}", transcript=True)]


# ---- the control socket


@_on((Phase.IDLE, Phase.ERROR), Say)
def _say(s: State, e: Event):
    assert isinstance(e, Say)
    if s.fault is Fault.AUDIO:
        return s, [Log("warning", f"cannot ask: {s.reason}")]
    s = replace(s, phase=Phase.IDLE, fault=Fault.NONE, reason="", muted=False, held=False)
    effects: list[Effect] = [SendText(e.text), Log("info", f"asked: {e.text}", transcript=True)]
    if s.link is Link.UP:
        return replace(s, phase=Phase.THINKING), effects
    return replace(s, phase=Phase.CONNECTING, link=Link.OPENING, attempt=0), \
        [*_connect(s), *effects]


@_on((Phase.SPEAKING, Phase.THINKING), Hush)
def _hush(s: State, e: Event):
    done = s.phase is Phase.SPEAKING and s.turn_done
    return replace(s, phase=Phase.IDLE, turn_done=False, muted=not done), [FlushPlayback()]


@_on(_ANY, Reset)
def _reset(s: State, e: Event):
    effects: list[Effect] = [DropTurn(), FlushPlayback(), CancelRetryTimer()]
    if s.link is not Link.DOWN:
        effects.append(Disconnect())
    fresh = State()
    if s.fault is Fault.AUDIO:  # a fresh conversation does not bring the microphone back
        fresh = replace(fresh, phase=Phase.ERROR, fault=Fault.AUDIO, reason=s.reason)
    return fresh, [*effects, Log("info", "conversation reset: the next press starts afresh")]


# ---- audio devices


@_on(_ANY, AudioFailed)
def _audio_failed(s: State, e: Event):
    assert isinstance(e, AudioFailed)
    return (
        replace(s, phase=Phase.ERROR, fault=Fault.AUDIO, reason=e.reason, turn_done=False,
                muted=False),
        [DropTurn(), FlushPlayback(), Log("error", e.reason, key="audio")],
    )


@_on(Phase.ERROR, AudioRestored)
def _audio_restored(s: State, e: Event):
    if s.fault is not Fault.AUDIO:
        return s, []
    return (
        replace(s, phase=Phase.IDLE, fault=Fault.NONE, reason="", held=False),
        [Log("info", "audio devices are back", key="audio")],
    )


# ------------------------------------------------------------------------------------------- stepping


def handler_for(phase: Phase, event: type[Event]) -> Handler | None:
    """The handler that ``step`` uses for ``event`` in ``phase``, or None if the pair is ignored."""
    return _HANDLERS.get((phase, event)) or _HANDLERS.get((_ANY, event))


def step(state: State, event: Event) -> tuple[State, list[Effect]]:
    """Apply ``event`` to ``state``: the new state and the effects to carry out, in order.

    A change of what the user sees (phase or status) appends one :class:`Show` effect.
    """
    handler = handler_for(state.phase, type(event))
    if handler is None:
        return state, []
    new, effects = handler(state, event)
    if (new.phase, new.status) != (state.phase, state.status):
        effects = [*effects, Show(new.phase, new.status)]
    return new, effects
