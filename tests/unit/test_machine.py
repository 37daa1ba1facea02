"""The state machine, exhaustively: every state x event pair, a table of the transitions that matter,
and random event sequences checked against the machine's invariants."""

from __future__ import annotations

import itertools
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from talkie import machine as m
from talkie.machine import Fault, Link, Phase, State

EVENTS: list[m.Event] = [
    m.ButtonDown(), m.ButtonUp(), m.ButtonHeld(), m.SessionOpened(), m.LinkLost("drop"),
    m.LinkLost("API key rejected", fatal=True), m.ModelAudio(b"\x01\x00" * 240), m.Interrupted(),
    m.TurnComplete(), m.PlaybackDrained(), m.Heard("hello"), m.Said("hi there"), m.RetryDue(),
    m.AudioFailed("no microphone"), m.AudioRestored(), m.Say("what time is it?"), m.Hush(),
    m.Reset(),
]


def test_every_event_type_is_exercised():
    assert {type(e) for e in EVENTS} == set(m.EVENT_TYPES)


def all_states():
    """Every combination of the state's fields (many unreachable: the step must still be total)."""
    for phase, link, held, done, attempt, fault, muted in itertools.product(
            Phase, Link, (False, True), (False, True), (0, 1, m.GIVE_UP_AFTER),
            Fault, (False, True)):
        reason = "" if fault is Fault.NONE else "something is wrong"
        yield State(phase, link, held, done, attempt, fault, reason, muted)


STATES = list(all_states())


def kinds(effects):
    return [type(e) for e in effects]


@pytest.mark.parametrize("event", EVENTS, ids=lambda e: type(e).__name__)
def test_step_is_total_and_pure(event):
    """Every state x event gives a state and a list of effects, and the same answer twice."""
    for state in STATES:
        new, effects = m.step(state, event)
        assert isinstance(new, State)
        assert all(isinstance(e, m.Effect) for e in effects)
        assert m.step(state, event) == (new, effects)
        shows = [e for e in effects if isinstance(e, m.Show)]
        changed = (new.phase, new.status) != (state.phase, state.status)
        assert len(shows) == (1 if changed else 0)
        if shows:
            assert shows[0] == m.Show(new.phase, new.status)
            assert effects[-1] is shows[0]


@pytest.mark.parametrize("event", EVENTS, ids=lambda e: type(e).__name__)
def test_no_double_connect(event):
    for state in STATES:
        _, effects = m.step(state, event)
        if m.Connect in kinds(effects):
            assert state.link is Link.DOWN or isinstance(event, m.LinkLost), (state, event)


def test_unhandled_pairs_change_nothing():
    ignored = [(p, t) for p in Phase for t in m.EVENT_TYPES if m.handler_for(p, t) is None]
    assert (Phase.IDLE, m.ButtonUp) in ignored and (Phase.LISTENING, m.ButtonDown) in ignored
    for phase, event_type in ignored:
        event = next(e for e in EVENTS if type(e) is event_type)
        for state in STATES:
            if state.phase is phase:
                assert m.step(state, event) == (state, [])


IDLE = State()
WARM = State(link=Link.UP)
LISTENING = State(Phase.LISTENING, Link.UP, held=True)
THINKING = State(Phase.THINKING, Link.UP)
SPEAKING = State(Phase.SPEAKING, Link.UP)
CONNECTING = State(Phase.CONNECTING, Link.OPENING, held=True)
AUDIO = m.ModelAudio(b"\x00\x01" * 100)

# (state, event, expected state, expected effect kinds (Show/Log left out))
TABLE = [
    (IDLE, m.ButtonDown(), CONNECTING, [m.Connect, m.StartTurn]),
    (WARM, m.ButtonDown(), LISTENING, [m.StartTurn]),
    (CONNECTING, m.ButtonUp(), replace(CONNECTING, held=False), [m.EndTurn]),
    (CONNECTING, m.SessionOpened(), LISTENING, []),
    (replace(CONNECTING, held=False), m.SessionOpened(), THINKING, []),
    (replace(CONNECTING, held=False), m.ButtonDown(), CONNECTING, [m.StartTurn]),
    (CONNECTING, m.LinkLost("refused"),
     State(Phase.RECONNECTING, Link.DOWN, held=True, attempt=1), [m.StartRetryTimer]),
    (State(Phase.RECONNECTING, Link.DOWN, held=True, attempt=1), m.RetryDue(),
     State(Phase.RECONNECTING, Link.OPENING, held=True, attempt=1), [m.Connect]),
    (State(Phase.RECONNECTING, Link.OPENING, held=False, attempt=m.GIVE_UP_AFTER),
     m.LinkLost("refused"), IDLE, [m.DropTurn]),
    (State(Phase.RECONNECTING, Link.OPENING, held=True, attempt=m.GIVE_UP_AFTER),
     m.LinkLost("refused"),
     State(Phase.RECONNECTING, Link.DOWN, held=True, attempt=m.GIVE_UP_AFTER + 1),
     [m.StartRetryTimer]),
    (LISTENING, m.ButtonUp(), THINKING, [m.EndTurn]),
    (LISTENING, m.LinkLost("1011"), State(Phase.RECONNECTING, Link.OPENING, held=True),
     [m.ReplayTurn, m.Connect]),
    (THINKING, m.LinkLost("1011"), State(Phase.RECONNECTING, Link.OPENING),
     [m.ReplayTurn, m.Connect]),
    (THINKING, AUDIO, SPEAKING, [m.Play]),
    (THINKING, m.TurnComplete(), WARM, []),
    (THINKING, m.ButtonDown(), LISTENING, [m.StartTurn]),
    (SPEAKING, AUDIO, SPEAKING, [m.Play]),
    (SPEAKING, m.TurnComplete(), replace(SPEAKING, turn_done=True), [m.FinishPlayback]),
    (replace(SPEAKING, turn_done=True), m.PlaybackDrained(), WARM, []),
    (SPEAKING, m.PlaybackDrained(), SPEAKING, []),  # more audio is coming: the tail is never cut
    (replace(SPEAKING, turn_done=True), AUDIO, replace(SPEAKING, turn_done=True), []),
    (SPEAKING, m.ButtonDown(), LISTENING, [m.FlushPlayback, m.StartTurn]),
    (SPEAKING, m.Interrupted(), WARM, [m.FlushPlayback]),
    (LISTENING, m.Interrupted(), LISTENING, [m.FlushPlayback]),
    (LISTENING, AUDIO, LISTENING, []),  # the rest of an answer the user talked over
    (LISTENING, m.TurnComplete(), LISTENING, []),
    (WARM, AUDIO, SPEAKING, [m.Play]),
    (SPEAKING, m.LinkLost("drop"), State(Phase.SPEAKING, Link.DOWN, turn_done=True),
     [m.FinishPlayback]),
    (WARM, m.LinkLost("goAway"), IDLE, []),
    (LISTENING, m.LinkLost("bad key", fatal=True),
     State(Phase.ERROR, Link.DOWN, held=True, fault=Fault.LINK, reason="bad key"),
     [m.DropTurn, m.FlushPlayback, m.CancelRetryTimer]),
    (State(Phase.ERROR, fault=Fault.LINK, reason="bad key"), m.ButtonDown(), CONNECTING,
     [m.Connect, m.StartTurn]),
    (SPEAKING, m.AudioFailed("no speaker"),
     State(Phase.ERROR, Link.UP, fault=Fault.AUDIO, reason="no speaker"),
     [m.DropTurn, m.FlushPlayback]),
    (State(Phase.ERROR, Link.UP, fault=Fault.AUDIO, reason="x"), m.ButtonDown(),
     State(Phase.ERROR, Link.UP, fault=Fault.AUDIO, reason="x"), []),
    (State(Phase.ERROR, Link.UP, fault=Fault.AUDIO, reason="x"), m.AudioRestored(), WARM, []),
    (State(Phase.ERROR, fault=Fault.LINK, reason="x"), m.AudioRestored(),
     State(Phase.ERROR, fault=Fault.LINK, reason="x"), []),
    (IDLE, m.ButtonHeld(), IDLE, []),
    # the control socket
    (WARM, m.Say("hi"), THINKING, [m.SendText]),
    (IDLE, m.Say("hi"), replace(CONNECTING, held=False), [m.Connect, m.SendText]),
    (State(Phase.ERROR, fault=Fault.LINK, reason="x"), m.Say("hi"),
     replace(CONNECTING, held=False), [m.Connect, m.SendText]),
    (State(Phase.ERROR, Link.UP, fault=Fault.AUDIO, reason="x"), m.Say("hi"),
     State(Phase.ERROR, Link.UP, fault=Fault.AUDIO, reason="x"), []),
    (LISTENING, m.Say("hi"), LISTENING, []),  # busy: the shell tells the caller
    (SPEAKING, m.Hush(), replace(WARM, muted=True), [m.FlushPlayback]),
    (replace(SPEAKING, turn_done=True), m.Hush(), WARM, [m.FlushPlayback]),
    (THINKING, m.Hush(), replace(WARM, muted=True), [m.FlushPlayback]),
    (replace(WARM, muted=True), AUDIO, replace(WARM, muted=True), []),  # the stopped answer
    (replace(WARM, muted=True), m.TurnComplete(), WARM, []),
    (replace(WARM, muted=True), m.ButtonDown(), LISTENING, [m.StartTurn]),
    (LISTENING, m.Reset(), IDLE, [m.DropTurn, m.FlushPlayback, m.CancelRetryTimer, m.Disconnect]),
    (IDLE, m.Reset(), IDLE, [m.DropTurn, m.FlushPlayback, m.CancelRetryTimer]),
    (State(Phase.ERROR, Link.UP, fault=Fault.AUDIO, reason="x"), m.Reset(),
     State(Phase.ERROR, fault=Fault.AUDIO, reason="x"),
     [m.DropTurn, m.FlushPlayback, m.CancelRetryTimer, m.Disconnect]),
]


@pytest.mark.parametrize("state,event,expected,effect_kinds", TABLE,
                         ids=[f"{s.phase.value}-{type(e).__name__}" for s, e, *_ in TABLE])
def test_transition_table(state, event, expected, effect_kinds):
    new, effects = m.step(state, event)
    assert new == expected
    assert [k for k in kinds(effects) if k not in (m.Show, m.Log)] == effect_kinds


def test_status_words():
    assert IDLE.status == "ready"
    assert State(Phase.RECONNECTING, Link.DOWN, attempt=3).status == "reconnecting in 2 s"
    assert State(Phase.RECONNECTING, Link.OPENING, attempt=3).status == "reconnecting"
    assert State(Phase.ERROR, fault=Fault.LINK, reason="API key rejected").status == \
        "error: API key rejected"


def test_backoff_doubles_up_to_the_cap():
    delays = [m.backoff(n) for n in range(1, 10)]
    assert delays[:4] == [0.5, 1, 2, 4]
    assert max(delays) == m.BACKOFF_CAP_S and delays == sorted(delays)


def test_transcripts_are_logged_as_transcripts():
    for event, text in ((m.Heard("what time is it"), "heard: what time is it"),
                        (m.Said("It is noon."), "said: It is noon.")):
        _, effects = m.step(SPEAKING, event)
        assert effects == [m.Log("info", text, transcript=True)]


def test_faults_are_keyed_so_retries_log_once():
    _, first = m.step(CONNECTING, m.LinkLost("connection refused"))
    state = State(Phase.RECONNECTING, Link.OPENING, held=True, attempt=1)
    _, second = m.step(state, m.LinkLost("connection refused"))
    logs = [e for e in first + second if isinstance(e, m.Log)]
    assert len(logs) == 2 and logs[0] == logs[1] and logs[0].key == "link"


def run(events, state=IDLE):
    trace = []
    for event in events:
        state, effects = m.step(state, event)
        trace.extend(effects)
    return state, trace


def test_a_whole_conversation():
    state, trace = run([m.ButtonDown(), m.SessionOpened(), m.ButtonUp(), m.Heard("hi"), AUDIO,
                        AUDIO, m.Said("hello"), m.TurnComplete(), m.PlaybackDrained()])
    assert state == WARM
    shown = [e.phase for e in trace if isinstance(e, m.Show)]
    assert shown == [Phase.CONNECTING, Phase.LISTENING, Phase.THINKING, Phase.SPEAKING,
                     Phase.IDLE]
    assert kinds(trace).count(m.Play) == 2 and kinds(trace).count(m.Connect) == 1


def test_released_before_the_session_opened_still_sends_the_turn():
    state, trace = run([m.ButtonDown(), m.ButtonUp(), m.SessionOpened()])
    assert state == THINKING
    assert [k for k in kinds(trace) if k in (m.StartTurn, m.EndTurn, m.DropTurn)] == \
        [m.StartTurn, m.EndTurn]


# ---- random sequences against the invariants


def check_invariants(s: State) -> None:
    if s.phase is Phase.LISTENING:
        assert s.held and s.link is Link.UP
    if s.phase is Phase.THINKING:
        assert not s.held and s.link is Link.UP
    if s.phase is Phase.CONNECTING:
        assert s.link is Link.OPENING
    if s.phase is Phase.RECONNECTING:
        assert s.link is not Link.UP
    if s.phase is Phase.ERROR:
        assert s.fault is not Fault.NONE and s.reason
    else:
        assert s.fault is Fault.NONE and not s.reason
    if s.turn_done:
        assert s.phase is Phase.SPEAKING
    if s.phase is Phase.IDLE:
        assert not s.held
    if s.muted:
        assert s.phase is Phase.IDLE


class TurnTracker:
    """The outbox's view: StartTurn and EndTurn alternate; DropTurn closes an open turn."""

    def __init__(self):
        self.open = False

    def apply(self, effects):
        for kind in kinds(effects):
            if kind is m.StartTurn:
                self.open = True
            elif kind is m.EndTurn:
                assert self.open, "activity_end without activity_start"
                self.open = False
            elif kind is m.DropTurn:
                self.open = False


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(EVENTS), max_size=60))
def test_random_sequences_keep_the_invariants(events):
    state, link_running, turns = IDLE, False, TurnTracker()
    for event in events:
        # The shell only reports link events that can happen: opened/lost while a connect runs.
        if isinstance(event, (m.SessionOpened, m.LinkLost)) and not link_running:
            continue
        new, effects = m.step(state, event)
        check_invariants(new)
        turns.apply(effects)
        if m.Connect in kinds(effects):
            assert not link_running or isinstance(event, m.LinkLost)
            link_running = True
        if isinstance(event, m.LinkLost):
            link_running = m.Connect in kinds(effects)
        if m.Disconnect in kinds(effects):
            assert link_running
            link_running = False
        if m.Play in kinds(effects):
            assert new.phase is Phase.SPEAKING
        if new.phase is Phase.LISTENING:
            assert turns.open
        if turns.open and new.phase is Phase.ERROR:
            pytest.fail("an error state must drop the open turn")
        state = new
