"""The appliance's behaviour: a pure state machine.

``step(state, event) -> (state, effects)`` is the whole of talkie's conversation logic. It does no
I/O, imports no adapter and knows nothing of asyncio: the shell (:mod:`talkie.shell.app`) turns what
the hardware and the network report into events (:mod:`talkie.core.vocabulary`), feeds them to
:func:`step`, and carries out the effects it returns. Randomness (the back-off's jitter), time
(timers) and new settings (a reload) come in as events.

The state (:mod:`.state`) has two orthogonal parts, the **phase** the user sees on the LED (idle,
connecting, listening, thinking, speaking, reconnecting, error, ringing) and the **link** (down,
opening, up), plus the :class:`~talkie.core.policy.Policy` it was configured with. A user turn is
captured into the uplink's outbox (:mod:`talkie.core.outbox`) from the press on, whatever the link
is doing; the outbox is sent in order once a session is up, so connecting on the first press, a
reconnect or a goAway handover in the middle of a turn loses no word.

Transitions are declared per (phase, event) by small handlers, one module per state group, each
with its part of the table in its docstring: :mod:`.turns` (the button, the answer, text turns,
audio devices), :mod:`.voice` (barge-in by the user's voice), :mod:`.supervisor` (the session:
back-off, handover, idle close, reset, new settings), :mod:`.tools` (the model's tool calls),
:mod:`.alarms` (timers and alarms ringing) and :mod:`.privacy` (the microphone off, the camera
forbidden). After the handler, the derived rules
(:mod:`.derived`) add what follows from the change itself. A pair with no handler leaves the state
as it is and does nothing. ``talkie machine`` prints the whole table (:mod:`.table`).
"""

from __future__ import annotations

from dataclasses import replace

from talkie.core import vocabulary
from talkie.core.machine import alarms, derived, privacy, supervisor, tools, turns, voice
from talkie.core.machine.state import (
    ANSWER,
    ANY,
    HOLD,
    IDLE_TIMER,
    RETRY,
    RING,
    Fault,
    Handler,
    Handlers,
    Link,
    State,
    backoff,
    camera_wanted,
    wants_link,
)
from talkie.core.policy import Policy
from talkie.core.vocabulary import *  # noqa: F403 - re-exported: the machine's whole vocabulary
from talkie.core.vocabulary import CancelTimer, Effect, Event, Phase, Show, StartTimer, Timer

__all__ = [
    "ANSWER",
    "ANY",
    "GROUPS",
    "HOLD",
    "IDLE_TIMER",
    "RETRY",
    "RING",
    "Fault",
    "Handler",
    "Handlers",
    "Link",
    "Policy",
    "State",
    "backoff",
    "camera_wanted",
    "wants_link",
    "handler_for",
    "step",
]
__all__ += vocabulary.__all__

#: The state groups, each with its part of the transition table.
GROUPS: tuple[Handlers, ...] = (
    turns.HANDLERS,
    voice.HANDLERS,
    supervisor.HANDLERS,
    tools.HANDLERS,
    alarms.HANDLERS,
    privacy.HANDLERS,
)


def _merged(groups: tuple[Handlers, ...]) -> dict[tuple[Phase | None, type[Event]], Handler]:
    table: dict[tuple[Phase | None, type[Event]], Handler] = {}
    for group in groups:
        for key, handler in group.items():
            assert key not in table, key  # one handler per pair, across all groups
            table[key] = handler
    return table


_TABLE = _merged(GROUPS)


def handler_for(phase: Phase, event: type[Event], *, mic_off: bool = False) -> Handler | None:
    """The handler that ``step`` uses for ``event`` in ``phase``, or None if the pair is ignored.

    While the microphone is off, :data:`.privacy.MUTED`'s handlers come first; then a handler
    declared for the phase itself comes before one declared for ``ANY`` phase."""
    if mic_off:
        muted = privacy.MUTED.get((ANY, event))
        if muted is not None:
            return muted
    return _TABLE.get((phase, event)) or _TABLE.get((ANY, event))


def step(state: State, event: Event) -> tuple[State, list[Effect]]:
    """Apply ``event`` to ``state``: the new state and the effects to carry out, in order.

    A timer's report counts only while that very timer is pending (else it changes nothing); the
    timers each effect starts or cancels are kept in the state. A change of what the user sees
    (phase or status) appends one :class:`Show` effect, last.
    """
    before = state
    if isinstance(event, Timer):
        if state.timer(event.name) != event.gen:
            return state, []  # cancelled or started again since: a stale report
        before = replace(state, timers=tuple(t for t in state.timers if t[0] != event.name))
    handler = handler_for(state.phase, type(event), mic_off=state.mic_off)
    if handler is None:
        return state, []
    new, effects = _kept(*handler(before, event))
    for rule in derived.RULES:
        new, more = _kept(*rule(before, new, event))
        effects = [*effects, *more]
    if (new.phase, new.status) != (state.phase, state.status):
        effects.append(Show(new.phase, new.status))
    return new, effects


def _kept(state: State, effects: list[Effect]) -> tuple[State, list[Effect]]:
    """The timers ``effects`` start and cancel, kept in the state; each start gets its
    generation."""
    if not any(isinstance(e, StartTimer | CancelTimer) for e in effects):
        return state, effects
    timers, seq, out = dict(state.timers), state.timer_seq, []
    for effect in effects:
        if isinstance(effect, StartTimer):
            seq += 1
            timers[effect.name] = seq
            effect = replace(effect, gen=seq)
        elif isinstance(effect, CancelTimer):
            timers.pop(effect.name, None)
        out.append(effect)
    return replace(state, timers=tuple(sorted(timers.items())), timer_seq=seq), out
