"""The derived rules: what follows from a change itself, whichever handler made it.

:func:`talkie.core.machine.step` applies them, in this order, after every handler. A rule is a
function ``(before, new, event) -> (new, effects)`` with a one-line docstring, which the generated
table (``talkie machine``) shows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from talkie.core.machine.alarms import free_to_ring, ring
from talkie.core.machine.state import (
    ANSWER,
    HOLD,
    IDLE_TIMER,
    RETRY,
    RING,
    Link,
    State,
    Step,
    backoff,
    camera_wanted,
    wants_link,
)
from talkie.core.machine.supervisor import (
    fresh_conversation,
    handover,
    resets_now,
    safe_for_handover,
)
from talkie.core.vocabulary import (
    ButtonDown,
    Camera,
    CancelTimer,
    CancelTools,
    Event,
    Log,
    Phase,
    Ring,
    StartTimer,
    ToolAnswered,
)

Rule = Callable[[State, State, Event], Step]


def voice_turn_over(before: State, new: State, event: Event) -> Step:
    """A turn the voice opened is over once nothing holds it, whoever ended it."""
    return (replace(new, voice=False) if new.voice and not new.held else new), []


def no_wait_while_connecting(before: State, new: State, event: Event) -> Step:
    """Connecting (by a press, say): no back-off wait left to show."""
    return (replace(new, retry_s=0.0) if new.retry_s and new.link is not Link.DOWN else new), []


def handover_at_safe_point(before: State, new: State, event: Event) -> Step:
    """A goAway is pending and the moment is safe: move to a new connection now."""
    return handover(new) if new.handover and safe_for_handover(new) else (new, [])


def calls_end_unanswered(before: State, new: State, event: Event) -> Step:
    """A tool call is under way only while its session is up; one that leaves the state
    unanswered (the link went, a reset, the user moved on, the server cancelled it) is
    cancelled, and what it would answer is void."""
    if new.calls and new.link is not Link.UP:
        new = replace(new, calls=())
    answered = event.call_id if isinstance(event, ToolAnswered) else None
    gone = tuple(c for c, _ in before.calls if new.call(c) is None and c != answered)
    return new, ([CancelTools(gone)] if gone else [])


def ring_when_free(before: State, new: State, event: Event) -> Step:
    """A timer or alarm is due and nobody is talking: it rings."""
    return ring(new) if new.due and free_to_ring(new) else (new, [])


def ring_follows(before: State, new: State, event: Event) -> Step:
    """Entering ringing starts the chime and the ring's timer (``alarm_ring_s``); leaving it stops
    them, and what rang without being silenced (the speaker failed) rings again when it can."""
    was, now = before.phase is Phase.RINGING, new.phase is Phase.RINGING
    if now and not was:
        return new, [Ring(True), StartTimer(RING, new.policy.ring_s)]
    if was and not now:
        if new.ringing:
            new = replace(new, due=(*new.ringing, *new.due), ringing=(), announcing=False)
        return new, [Ring(False), CancelTimer(RING)]
    return new, []


def reset_when_heard(before: State, new: State, event: Event) -> Step:
    """A fresh conversation the model asked for starts once its answer has been heard."""
    if not (new.reset_due and resets_now(new)):
        return new, []
    new, effects = fresh_conversation(new)
    return new, [*effects, Log("info", "the conversation was reset, as asked")]


def retry_while_a_link_is_wanted(before: State, new: State, event: Event) -> Step:
    """Whenever a link is wanted and none is up or opening, one retry is pending (the slow
    ``error_retry_s`` after a refusal, else the back-off); when none is wanted, none is."""
    pending = new.timer(RETRY) is not None
    if wants_link(new) and not pending:
        if new.phase is Phase.ERROR:
            return new, [StartTimer(RETRY, new.policy.error_retry_s)]
        delay = new.retry_s or backoff(new.attempt + 1, 1.0, new.policy)
        return replace(new, retry_s=delay), [StartTimer(RETRY, delay)]
    if pending and not wants_link(new):
        return new, [CancelTimer(RETRY)]
    return new, []


def answer_deadline(before: State, new: State, event: Event) -> Step:
    """Waiting for an answer (thinking) is bounded: the answer timer (``answer_timeout_s``) runs
    while thinking with no tool call under way (a call has its own deadline), and stops once the
    answer begins or anything else ends the wait."""
    waiting = new.phase is Phase.THINKING and new.policy.answer_timeout_s > 0 and not new.calls
    pending = new.timer(ANSWER) is not None
    if waiting and not pending:
        return new, [StartTimer(ANSWER, new.policy.answer_timeout_s)]
    if pending and not waiting:
        return new, [CancelTimer(ANSWER)]
    return new, []


def warm_idle(s: State) -> bool:
    """A session is open, nobody is talking and no tool call is under way: the idle-close clock
    runs."""
    return (
        s.phase is Phase.IDLE
        and s.link is Link.UP
        and s.policy.idle_disconnect_s > 0
        and not s.policy.connect_at_start
        and not s.calls
    )


def idle_clock(before: State, new: State, event: Event) -> Step:
    """Entering warm idle starts the idle timer (``idle_disconnect_s``); leaving it cancels it."""
    if warm_idle(new) and not warm_idle(before):
        return new, [StartTimer(IDLE_TIMER, new.policy.idle_disconnect_s)]
    if warm_idle(before) and not warm_idle(new):
        return new, [CancelTimer(IDLE_TIMER)]
    return new, []


def hold_clock(before: State, new: State, event: Event) -> Step:
    """A press that opens a turn starts the long-hold timer (``reset_hold_s``); the end of the
    turn cancels it."""
    pressed = isinstance(event, ButtonDown) and new.held and not before.held
    if pressed and new.policy.reset_hold_s > 0:
        return new, [StartTimer(HOLD, new.policy.reset_hold_s)]
    if before.held and not new.held:
        return new, [CancelTimer(HOLD)]
    return new, []


def camera_follows(before: State, new: State, event: Event) -> Step:
    """The camera is switched on or off whenever ``[vision] mode`` wants it otherwise."""
    wanted = camera_wanted(new)
    return new, ([Camera(wanted)] if wanted != camera_wanted(before) else [])


#: The rules, in the order ``step`` applies them.
RULES: tuple[Rule, ...] = (
    voice_turn_over,
    handover_at_safe_point,
    calls_end_unanswered,
    reset_when_heard,
    ring_when_free,
    ring_follows,
    no_wait_while_connecting,  # after the rules that may connect (a ring's announcement)
    retry_while_a_link_is_wanted,
    answer_deadline,
    idle_clock,
    hold_clock,
    camera_follows,
)
