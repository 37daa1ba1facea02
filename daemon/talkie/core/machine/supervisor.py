"""The session supervisor: opening, losing and reopening the Live session; back-off with full jitter
that resets once a session has stayed up; a slow retry for faults only a person can fix; goAway
handovers at a safe point (or at once when time is short); closing an idle session; reset."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from talkie.core.machine.state import (
    ANY,
    HANDOVER,
    HOLD,
    IDLE_TIMER,
    RETRY,
    STABLE,
    Fault,
    Link,
    State,
    backoff,
    on,
)
from talkie.core.vocabulary import (
    CancelTimer,
    Connect,
    Disconnect,
    DropTurn,
    Effect,
    Event,
    FinishPlayback,
    FlushPlayback,
    ForgetSession,
    GoAway,
    LinkLost,
    Log,
    Phase,
    ReplayTurn,
    Reset,
    SessionOpened,
    Started,
    StartTimer,
    Timer,
)


@on(ANY, SessionOpened)
def _opened(s: State, e: Event):
    up = replace(s, link=Link.UP, retry_s=0.0, handover=False)  # a new connection: no goAway yet
    effects: list[Effect] = [
        StartTimer(STABLE, s.policy.stable_s),
        Log("info", "connected to Gemini Live", key="link"),
    ]
    if s.phase in (Phase.CONNECTING, Phase.RECONNECTING):
        return replace(up, phase=Phase.LISTENING if s.held else Phase.THINKING), effects
    if s.phase is Phase.ERROR and s.fault is Fault.LINK:
        return replace(up, phase=Phase.IDLE, fault=Fault.NONE, reason="", held=False), effects
    return up, effects


@on(ANY, LinkLost)
def _lost(s: State, e: Event):
    assert isinstance(e, LinkLost)
    down = replace(s, link=Link.DOWN, muted=False, handover=False)
    stop = [CancelTimer(STABLE), CancelTimer(HANDOVER)]
    if e.fatal:
        if s.phase is Phase.ERROR and s.fault is Fault.AUDIO:
            return down, [*stop, Log("error", e.reason, key="link")]
        return (
            replace(
                down,
                phase=Phase.ERROR,
                fault=Fault.LINK,
                reason=e.reason,
                attempt=0,
                turn_done=False,
                retry_s=0.0,
            ),
            [
                *stop,
                DropTurn(),
                FlushPlayback(),
                StartTimer(RETRY, s.policy.error_retry_s),
                Log("error", e.reason, key="link"),
            ],
        )
    new, effects = _LOST_BY_PHASE.get(s.phase, _lost_quietly)(down, e)
    return new, [*stop, *effects]


def _retry_later(s: State, e: LinkLost, phase: Phase) -> tuple[State, list[Effect]]:
    attempt = s.attempt + 1
    delay = backoff(attempt, e.jitter, s.policy)
    return (replace(s, phase=phase, attempt=attempt, retry_s=delay), [StartTimer(RETRY, delay)])


def _lost_quietly(s: State, e: LinkLost):
    if s.phase is Phase.IDLE and s.policy.connect_at_start:
        new, effects = _retry_later(s, e, Phase.IDLE)  # keep a warm session: reopen it quietly
        return new, [
            *effects,
            Log("warning", f"connection lost ({e.reason}); reopening it", key="link"),
        ]
    return s, [Log("info", f"session closed ({e.reason})", key="link")]


def _lost_while_connecting(s: State, e: LinkLost):
    if not s.held and s.attempt + 1 > s.policy.give_up_after:
        return (
            replace(s, phase=Phase.IDLE, attempt=0, retry_s=0.0),
            [
                DropTurn(),
                Log(
                    "warning",
                    f"could not reach Gemini ({e.reason}); the last question was not sent",
                    key="link",
                ),
            ],
        )
    new, effects = _retry_later(s, e, Phase.RECONNECTING)
    return new, [
        *effects,
        Log("warning", f"cannot reach Gemini ({e.reason}); retrying", key="link"),
    ]


def _lost_mid_turn(s: State, e: LinkLost):
    # The turn is replayed from its start on the next session. After a stable session the first
    # retry is at once; a link that keeps dropping backs off like any other.
    log = Log("warning", f"connection lost ({e.reason}); reconnecting", key="link")
    if s.attempt == 0:
        return (
            replace(s, phase=Phase.RECONNECTING, link=Link.OPENING, attempt=1, retry_s=0.0),
            [ReplayTurn(), Connect(), log],
        )
    new, effects = _retry_later(s, e, Phase.RECONNECTING)
    return new, [ReplayTurn(), *effects, log]


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


# ---- timers


def _retry_due(s: State) -> tuple[State, list[Effect]]:
    wanted = (
        s.phase is Phase.RECONNECTING
        or (s.phase is Phase.ERROR and s.fault is Fault.LINK)
        or (s.phase is Phase.IDLE and s.policy.connect_at_start)
    )
    if s.link is not Link.DOWN or not wanted:
        return s, []
    return replace(s, link=Link.OPENING, retry_s=0.0), [Connect()]


def _stable(s: State) -> tuple[State, list[Effect]]:
    return (replace(s, attempt=0), []) if s.link is Link.UP else (s, [])


def _idle_due(s: State) -> tuple[State, list[Effect]]:
    if s.phase is not Phase.IDLE or s.link is not Link.UP or s.policy.connect_at_start:
        return s, []
    return (
        replace(s, link=Link.DOWN, handover=False),
        [
            CancelTimer(STABLE),
            Disconnect(),
            Log("info", "no conversation for a while: closed the Live session"),
        ],
    )


def _handover_due(s: State) -> tuple[State, list[Effect]]:
    return force_handover(s) if s.handover and s.link is Link.UP else (s, [])


def _hold_due(s: State) -> tuple[State, list[Effect]]:
    if not s.held:
        return s, []
    new, effects = fresh_conversation(s)
    return new, [*effects, Log("info", "long hold: starting a fresh conversation")]


_TIMERS: dict[str, Callable[[State], tuple[State, list[Effect]]]] = {
    RETRY: _retry_due,
    STABLE: _stable,
    IDLE_TIMER: _idle_due,
    HANDOVER: _handover_due,
    HOLD: _hold_due,
}


@on(ANY, Timer)
def _timer(s: State, e: Event):
    assert isinstance(e, Timer)
    return _TIMERS.get(e.name, lambda state: (state, []))(s)


# ---- goAway


def safe_for_handover(s: State) -> bool:
    """Nobody is talking and the answer has been heard.

    Not as early as turnComplete: the server sends the resumption handle that covers the last
    exchange just after it, and a new connection resumed from the previous handle would forget it.
    """
    return s.link is Link.UP and s.phase is Phase.IDLE


def handover(s: State, *, rewind: bool = False) -> tuple[State, list[Effect]]:
    """Close this connection, then open a new one (it resumes the conversation).

    ``rewind``: a turn was in flight; it is queued again from its start once the old connection
    has stopped sending (so nothing of it can still go out on the old one).
    """
    return (
        replace(s, link=Link.OPENING, handover=False),
        [
            CancelTimer(HANDOVER),
            CancelTimer(STABLE),
            Disconnect(),
            *([ReplayTurn()] if rewind else []),
            Connect(),
        ],
    )


def force_handover(s: State) -> tuple[State, list[Effect]]:
    """Hand over now, whatever is going on: a turn in flight is sent again on the new connection."""
    if s.phase in (Phase.LISTENING, Phase.THINKING):
        return handover(replace(s, phase=Phase.RECONNECTING), rewind=True)
    if s.phase is Phase.SPEAKING and not s.turn_done:
        new, effects = handover(replace(s, turn_done=True))
        return new, [FinishPlayback(), *effects]  # what arrived plays to its end
    return handover(s)


@on(ANY, GoAway)
def _go_away(s: State, e: Event):
    assert isinstance(e, GoAway)
    if s.link is not Link.UP:
        return s, []
    log = Log(
        "info",
        f"the server closes this connection in {e.time_left_s:g} s: "
        "moving the conversation to a new one",
    )
    if safe_for_handover(s):
        new, effects = handover(s)
    elif e.time_left_s <= s.policy.handover_now_s:
        new, effects = force_handover(s)
    else:
        new, effects = (
            replace(s, handover=True),
            [StartTimer(HANDOVER, e.time_left_s - s.policy.handover_now_s)],
        )
    return new, [*effects, log]


# ---- start and reset


@on(ANY, Started)
def _started(s: State, e: Event):
    if not s.policy.connect_at_start or s.link is not Link.DOWN or s.phase is not Phase.IDLE:
        return s, []
    return replace(s, link=Link.OPENING, retry_s=0.0), [Connect()]


def fresh_conversation(s: State) -> tuple[State, list[Effect]]:
    """Close the session, forget its handle and the turn: the next one starts afresh."""
    effects: list[Effect] = [
        DropTurn(),
        FlushPlayback(),
        *(CancelTimer(n) for n in (RETRY, HANDOVER, STABLE, HOLD)),
    ]
    if s.link is not Link.DOWN:
        effects.append(Disconnect())
    effects.append(ForgetSession())  # after the session is cancelled: no update can follow
    fresh = State(policy=s.policy)
    if s.fault is Fault.AUDIO:  # a fresh conversation does not bring the microphone back
        fresh = replace(fresh, phase=Phase.ERROR, fault=Fault.AUDIO, reason=s.reason)
    elif s.policy.connect_at_start:
        fresh, effects = replace(fresh, link=Link.OPENING), [*effects, Connect()]
    return fresh, effects


@on(ANY, Reset)
def _reset(s: State, e: Event):
    new, effects = fresh_conversation(s)
    return new, [*effects, Log("info", "conversation reset: the next press starts afresh")]
