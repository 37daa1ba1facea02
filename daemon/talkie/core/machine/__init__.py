"""The appliance's behaviour: a pure state machine.

``step(state, event) -> (state, effects)`` is the whole of talkie's conversation logic. It does no I/O,
imports no adapter and knows nothing of asyncio: the shell (:mod:`talkie.shell.app`) turns what the hardware
and the network report into events (:mod:`talkie.core.vocabulary`), feeds them to :func:`step`, and carries
out the effects it returns. Randomness (the back-off's jitter) and time (timers) come in as events.

The state (:mod:`talkie.core.machine.state`) has two orthogonal parts, the **phase** the user sees on the
LED (idle, connecting, listening, thinking, speaking, reconnecting, error) and the **link** (down,
opening, up), plus the :class:`Policy` it was configured with. A user turn is captured into the uplink's
outbox (:mod:`talkie.core.outbox`) from the press on, whatever the link is doing; the outbox is sent in
order once a session is up, so connecting on the first press, a reconnect or a goAway handover in the
middle of a turn loses no word.

Transitions are declared per (phase, event) in a table of small handlers: :mod:`.turns` (the button,
the answer, text turns, audio devices), :mod:`.voice` (barge-in by the user's voice) and
:mod:`.supervisor` (the session: back-off, handover, idle close, reset). A pair with no handler leaves the state as it is and does nothing.
"""

from __future__ import annotations

from dataclasses import replace

from talkie.core.machine import supervisor, turns, voice  # noqa: F401 - they fill the handler table
from talkie.core.machine.state import (  # noqa: F401 - the machine's public names
    HOLD,
    IDLE_TIMER,
    RETRY,
    Fault,
    Link,
    Policy,
    State,
    backoff,
    camera_wanted,
    handler_for,
)
from talkie.core.machine.supervisor import handover, safe_for_handover
from talkie.core.vocabulary import *  # noqa: F401,F403 - re-exported: the machine's whole vocabulary
from talkie.core.vocabulary import (
    ButtonDown,
    Camera,
    CancelTimer,
    Effect,
    Event,
    Phase,
    Show,
    StartTimer,
)


def _warm_idle(s: State) -> bool:
    """A session is open and nobody is talking: the idle-close clock runs."""
    return (
        s.phase is Phase.IDLE
        and s.link is Link.UP
        and s.policy.idle_disconnect_s > 0
        and not s.policy.connect_at_start
    )


def _derived(before: State, new: State, event: Event) -> tuple[State, list[Effect]]:
    """What follows from the change itself, whichever handler made it."""
    effects: list[Effect] = []
    if new.voice and not new.held:
        new = replace(new, voice=False)  # the turn the voice opened is over, whoever ended it
    if new.retry_s and new.link is not Link.DOWN:
        new = replace(new, retry_s=0.0)  # connecting (by a press, say): no wait to show
    if new.handover and safe_for_handover(new):
        new, more = handover(new)
        effects += more
    if _warm_idle(new) and not _warm_idle(before):
        effects.append(StartTimer(IDLE_TIMER, new.policy.idle_disconnect_s))
    elif _warm_idle(before) and not _warm_idle(new):
        effects.append(CancelTimer(IDLE_TIMER))
    if (
        isinstance(event, ButtonDown)
        and new.held
        and not before.held
        and new.policy.reset_hold_s > 0
    ):
        effects.append(StartTimer(HOLD, new.policy.reset_hold_s))
    elif before.held and not new.held:
        effects.append(CancelTimer(HOLD))
    if camera_wanted(new) != camera_wanted(before):
        effects.append(Camera(camera_wanted(new)))
    return new, effects


def step(state: State, event: Event) -> tuple[State, list[Effect]]:
    """Apply ``event`` to ``state``: the new state and the effects to carry out, in order.

    A change of what the user sees (phase or status) appends one :class:`Show` effect, last.
    """
    handler = handler_for(state.phase, type(event))
    if handler is None:
        return state, []
    new, effects = handler(state, event)
    new, more = _derived(state, new, event)
    effects = [*effects, *more]
    if (new.phase, new.status) != (state.phase, state.status):
        effects.append(Show(new.phase, new.status))
    return new, effects
