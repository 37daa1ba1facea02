"""The state machine, exhaustively: every state x event pair, a table of the transitions that matter,
and random event sequences checked against the machine's invariants."""

from __future__ import annotations

import functools
import itertools
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from talkie.config import Settings
from talkie.core import machine as m
from talkie.core.machine import Fault, Link, Phase
from talkie.core.machine.alarms import free_to_ring
from talkie.shell.policy import policy_from

#: The rules these tests start from: the shipped settings' rules, with the camera off.
BASE = replace(policy_from(Settings()), vision_mode="off")


def Policy(**changes) -> m.Policy:  # noqa: N802 - reads like the dataclass it builds
    """The base rules with ``changes``."""
    return replace(BASE, **changes)


def State(*fields, policy: m.Policy = BASE, **named) -> m.State:  # noqa: N802
    """A machine state under the base rules unless ``policy`` says otherwise."""
    return m.State(*fields, policy=policy, **named)


WARM_POLICY = Policy(connect_at_start=True, reset_hold_s=10.0, vision_mode="always")

EVENTS: list[m.Event] = [
    m.ButtonDown(), m.ButtonUp(), m.SessionOpened(), m.LinkLost("drop"),
    m.LinkLost("API key rejected", fatal=True), m.ModelAudio(b"\x01\x00" * 240), m.Interrupted(),
    m.TurnComplete(), m.PlaybackDrained(), m.Heard("hello"), m.Said("hi there"),
    m.AudioFailed("no microphone"), m.AudioRestored(), m.Say("what time is it?"), m.Hush(),
    m.Reset(), m.GoAway(5.0), m.GoAway(50.0), m.Started(), m.LinkLost("drop", jitter=0.3),
    m.SpeechStarted(), m.SpeechEnded(),
    m.Reconfigured(Policy(vision_mode="always", idle_disconnect_s=0.0)), m.Reconfigured(BASE),
    *(m.Timer(name) for name in ("retry", "idle", "stable", "handover", "hold", "answer", "ring",
                                 "unknown")),
    m.ToolCalled("c1", "local_time"), m.ToolCalled("c2", "timers", '{"action": "list"}'),
    m.ToolAnswered("c1", "local_time", '{"status": "ok"}', "interrupt"),
    m.ToolAnswered("c2", "timers", '{"status": "ok"}'), m.ToolsCancelled(("c1", "c9")),
    m.AlarmDue('the timer "pasta"'),
    m.MicMute(True), m.MicMute(False), m.MicMute(None), m.CameraAllow(False), m.CameraAllow(True),
]
TIMER_NAMES = ("answer", "handover", "hold", "idle", "retry", "ring", "stable")
#: Every timer pending, at the generation the events above carry (0).
ALL_ARMED = tuple((name, 0) for name in TIMER_NAMES)


def armed(state: m.State, *names: str) -> m.State:
    """``state`` with the timers ``names`` pending, at generation 0 (what ``m.Timer(name)`` says)."""
    return replace(state, timers=tuple(sorted({*state.timers, *((n, 0) for n in names)})))


def untimed(state: m.State) -> m.State:
    """``state`` without its timers' bookkeeping (the table compares the rest)."""
    return replace(state, timers=(), timer_seq=0)


def fire(state: m.State, name: str):
    """The pending timer ``name`` fires (its report carries its generation)."""
    return m.step(state, m.Timer(name, state.timer(name) or 0))


def test_every_event_type_is_exercised():
    assert {type(e) for e in EVENTS} == set(m.EVENT_TYPES)


def all_states():
    """Every combination of the state's fields (many unreachable: the step must still be total)."""
    for phase, link, held, done, attempt, fault, muted, handover, policy, voice, timers in \
            itertools.product(
            Phase, Link, (False, True), (False, True), (0, 1, Policy().give_up_after),
            Fault, (False, True), (False, True), (Policy(), WARM_POLICY), (False, True),
            ((),)):
        reason = "" if fault is Fault.NONE else "something is wrong"
        yield State(phase, link, held, done, attempt, fault, reason, muted, handover,
                    policy=policy, voice=voice and held, timers=timers)


def tool_and_alarm_states():
    """The fields of tool calls and alarms, in every phase and link (the rest at its start)."""
    for phase, link, held, muted, fault, calls, due, ringing in itertools.product(
            Phase, Link, (False, True), (False, True), Fault, ((), (("c1", "local_time"),)),
            ((), ('the timer "tea"',)), ((), ('the alarm "wake up"',), "announcing")):
        reason = "" if fault is Fault.NONE else "something is wrong"
        announcing = ringing == "announcing"
        yield State(phase, link, held, fault=fault, reason=reason, muted=muted, calls=calls,
                    due=due, ringing=('the alarm "wake up"',) if announcing else ringing,
                    announcing=announcing)


STATES = list(all_states()) + list(tool_and_alarm_states())
#: The same states with every timer pending: what a timer's report meets.
ARMED = [replace(state, timers=ALL_ARMED) for state in STATES]


def states_for(event: m.Event) -> list[m.State]:
    """The states to step ``event`` in: every one, and with every timer pending for a Timer."""
    return STATES + ARMED if isinstance(event, m.Timer) else STATES


def kinds(effects):
    return [type(e) for e in effects]


@functools.cache
def stepped(index: int) -> list[tuple[m.State, m.State, list[m.Effect]]]:
    """``EVENTS[index]`` stepped in each of its states: (state, new state, effects), once for
    all the exhaustive tests."""
    event = EVENTS[index]
    return [(state, *m.step(state, event)) for state in states_for(event)]


EVENT_INDEX = list(range(len(EVENTS)))
EVENT_IDS = [type(e).__name__ for e in EVENTS]


@pytest.mark.parametrize("index", EVENT_INDEX, ids=EVENT_IDS)
def test_step_is_total_and_pure(index):
    """Every state x event gives a state and a list of effects, and the same answer twice."""
    event = EVENTS[index]
    for n, (state, new, effects) in enumerate(stepped(index)):
        assert isinstance(new, m.State)
        assert all(isinstance(e, m.Effect) for e in effects)
        if n % 4 == 0:  # pure: the same answer again (a sample is enough: no state is kept)
            assert m.step(state, event) == (new, effects)
        shows = [e for e in effects if isinstance(e, m.Show)]
        changed = (new.phase, new.status) != (state.phase, state.status)
        assert len(shows) == (1 if changed else 0)
        if shows:
            assert shows[0] == m.Show(new.phase, new.status)
            assert effects[-1] is shows[0]


@pytest.mark.parametrize("index", EVENT_INDEX, ids=EVENT_IDS)
def test_no_double_connect(index):
    """A Connect comes only when no session is up or opening, or right after a Disconnect."""
    event = EVENTS[index]
    for state, _, effects in stepped(index):
        running = state.link is not Link.DOWN and not isinstance(event, m.LinkLost)
        for effect in effects:
            if isinstance(effect, m.Disconnect):
                running = False
            elif isinstance(effect, m.Connect):
                assert not running, (state, event)
                running = True


def test_unhandled_pairs_change_nothing():
    ignored = [(p, t) for p in Phase for t in m.EVENT_TYPES if m.handler_for(p, t) is None]
    assert (Phase.IDLE, m.ButtonUp) in ignored and (Phase.THINKING, m.ButtonUp) in ignored
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
VOICE = State(Phase.LISTENING, Link.UP, held=True, voice=True)
NO_BARGE = Policy(barge_in=False)

# (state, event, expected state, expected effect kinds: Show, Log, CancelTimer, Camera left out)
R1 = State(Phase.RECONNECTING, Link.DOWN, held=True, attempt=1, retry_s=0.5)
GIVE_UP = Policy().give_up_after
ERROR_LINK = State(Phase.ERROR, fault=Fault.LINK, reason="bad key")
ERROR_AUDIO = State(Phase.ERROR, Link.UP, fault=Fault.AUDIO, reason="x")
TABLE = [
    (IDLE, m.ButtonDown(), CONNECTING, [m.Connect, m.StartTurn]),
    (WARM, m.ButtonDown(), LISTENING, [m.StartTurn]),
    (CONNECTING, m.ButtonUp(), replace(CONNECTING, held=False), [m.EndTurn]),
    (CONNECTING, m.SessionOpened(), LISTENING, [m.StartTimer]),
    (replace(CONNECTING, held=False), m.SessionOpened(), THINKING, [m.StartTimer, m.StartTimer]),
    (replace(CONNECTING, held=False), m.ButtonDown(), CONNECTING, [m.StartTurn]),
    (CONNECTING, m.LinkLost("refused"), R1, [m.StartTimer]),
    (R1, m.Timer("retry"), replace(R1, link=Link.OPENING, retry_s=0.0), [m.Connect]),
    (State(Phase.RECONNECTING, Link.OPENING, held=False, attempt=GIVE_UP),
     m.LinkLost("refused"), IDLE, [m.DropTurn]),
    (State(Phase.RECONNECTING, Link.OPENING, held=True, attempt=GIVE_UP),
     m.LinkLost("refused"),
     State(Phase.RECONNECTING, Link.DOWN, held=True, attempt=GIVE_UP + 1,
           retry_s=min(30.0, 0.5 * 2 ** GIVE_UP)),
     [m.StartTimer]),
    (LISTENING, m.ButtonUp(), THINKING, [m.EndTurn, m.StartTimer]),  # the answer deadline
    (LISTENING, m.LinkLost("1011"), State(Phase.RECONNECTING, Link.OPENING, held=True, attempt=1),
     [m.ReplayTurn, m.Connect]),
    (THINKING, m.LinkLost("1011"), State(Phase.RECONNECTING, Link.OPENING, attempt=1),
     [m.ReplayTurn, m.Connect]),
    # a link that keeps dropping mid-turn backs off instead of reconnecting at once
    (replace(LISTENING, attempt=2), m.LinkLost("1011", jitter=0.5),
     State(Phase.RECONNECTING, Link.DOWN, held=True, attempt=3, retry_s=1.0),
     [m.ReplayTurn, m.StartTimer]),
    (replace(LISTENING, attempt=3), m.Timer("stable"), LISTENING, []),
    (THINKING, AUDIO, SPEAKING, [m.Play]),
    (THINKING, m.TurnComplete(), WARM, [m.StartTimer]),
    (THINKING, m.ButtonDown(), LISTENING, [m.StartTurn]),
    (SPEAKING, AUDIO, SPEAKING, [m.Play]),
    (SPEAKING, m.TurnComplete(), replace(SPEAKING, turn_done=True), [m.FinishPlayback]),
    (replace(SPEAKING, turn_done=True), m.PlaybackDrained(), WARM, [m.StartTimer]),
    (SPEAKING, m.PlaybackDrained(), SPEAKING, []),  # more audio is coming: the tail is never cut
    (replace(SPEAKING, turn_done=True), AUDIO, replace(SPEAKING, turn_done=True), []),
    (SPEAKING, m.ButtonDown(), LISTENING, [m.FlushPlayback, m.StartTurn]),
    (SPEAKING, m.Interrupted(), WARM, [m.FlushPlayback, m.StartTimer]),
    (LISTENING, m.Interrupted(), LISTENING, [m.FlushPlayback]),
    (LISTENING, AUDIO, LISTENING, []),  # the rest of an answer the user talked over
    (LISTENING, m.TurnComplete(), LISTENING, []),
    (WARM, AUDIO, SPEAKING, [m.Play]),
    (SPEAKING, m.LinkLost("drop"), State(Phase.SPEAKING, Link.DOWN, turn_done=True),
     [m.FinishPlayback]),
    (WARM, m.LinkLost("goAway"), IDLE, []),
    (LISTENING, m.LinkLost("bad key", fatal=True),
     State(Phase.ERROR, Link.DOWN, held=True, fault=Fault.LINK, reason="bad key"),
     [m.DropTurn, m.FlushPlayback, m.StartTimer]),
    (ERROR_LINK, m.ButtonDown(), CONNECTING, [m.Connect, m.StartTurn]),
    (ERROR_LINK, m.Timer("retry"), replace(ERROR_LINK, link=Link.OPENING), [m.Connect]),
    (replace(ERROR_LINK, link=Link.OPENING), m.SessionOpened(), WARM, [m.StartTimer, m.StartTimer]),
    (SPEAKING, m.AudioFailed("no speaker"),
     State(Phase.ERROR, Link.UP, fault=Fault.AUDIO, reason="no speaker"),
     [m.DropTurn, m.FlushPlayback]),
    (ERROR_AUDIO, m.ButtonDown(), ERROR_AUDIO, []),
    (ERROR_AUDIO, m.AudioRestored(), WARM, [m.StartTimer]),
    (armed(ERROR_LINK, "retry"), m.AudioRestored(), ERROR_LINK, []),
    # the control socket
    (WARM, m.Say("hi"), THINKING, [m.SendText, m.StartTimer]),
    (IDLE, m.Say("hi"), replace(CONNECTING, held=False), [m.Connect, m.SendText]),
    (ERROR_LINK, m.Say("hi"), replace(CONNECTING, held=False), [m.Connect, m.SendText]),
    (ERROR_AUDIO, m.Say("hi"), ERROR_AUDIO, []),
    (LISTENING, m.Say("hi"), LISTENING, []),  # busy: the shell tells the caller
    (SPEAKING, m.Hush(), replace(WARM, muted=True), [m.FlushPlayback, m.StartTimer]),
    (replace(SPEAKING, turn_done=True), m.Hush(), WARM, [m.FlushPlayback, m.StartTimer]),
    (THINKING, m.Hush(), replace(WARM, muted=True), [m.FlushPlayback, m.StartTimer]),
    (replace(WARM, muted=True), AUDIO, replace(WARM, muted=True), []),  # the stopped answer
    (replace(WARM, muted=True), m.TurnComplete(), WARM, []),
    (replace(WARM, muted=True), m.ButtonDown(), LISTENING, [m.StartTurn]),
    (LISTENING, m.Reset(), IDLE, [m.DropTurn, m.FlushPlayback, m.Disconnect, m.ForgetSession]),
    (IDLE, m.Reset(), IDLE, [m.DropTurn, m.FlushPlayback, m.ForgetSession]),
    (ERROR_AUDIO, m.Reset(), State(Phase.ERROR, fault=Fault.AUDIO, reason="x"),
     [m.DropTurn, m.FlushPlayback, m.Disconnect, m.ForgetSession]),
    # the session's life
    (WARM, m.Timer("idle"), IDLE, [m.Disconnect]),
    (LISTENING, m.Timer("idle"), LISTENING, []),  # a stale idle timer
    (WARM, m.GoAway(50), replace(WARM, link=Link.OPENING), [m.Disconnect, m.Connect]),
    (LISTENING, m.GoAway(50), replace(LISTENING, handover=True), [m.StartTimer]),
    (LISTENING, m.GoAway(5), State(Phase.RECONNECTING, Link.OPENING, held=True),
     [m.Disconnect, m.ReplayTurn, m.Connect]),
    (replace(THINKING, handover=True), m.Timer("handover"),
     State(Phase.RECONNECTING, Link.OPENING), [m.Disconnect, m.ReplayTurn, m.Connect]),
    (replace(SPEAKING, handover=True), m.TurnComplete(),
     replace(SPEAKING, turn_done=True, handover=True),
     [m.FinishPlayback]),  # not yet: the resumption handle for this exchange comes just after
    (replace(SPEAKING, turn_done=True, handover=True), m.PlaybackDrained(),
     replace(IDLE, link=Link.OPENING), [m.Disconnect, m.Connect]),  # heard: a safe point
    (SPEAKING, m.GoAway(3), State(Phase.SPEAKING, Link.OPENING, turn_done=True),
     [m.FinishPlayback, m.Disconnect, m.Connect]),
    (IDLE, m.GoAway(5), IDLE, []),
    (IDLE, m.Started(), IDLE, []),
    (State(policy=WARM_POLICY), m.Started(), State(link=Link.OPENING, policy=WARM_POLICY),
     [m.Connect]),
    (State(link=Link.UP, policy=WARM_POLICY), m.LinkLost("1011", jitter=0.5),
     State(attempt=1, retry_s=0.25, policy=WARM_POLICY), [m.StartTimer]),
    (State(attempt=1, retry_s=0.25, policy=WARM_POLICY), m.Timer("retry"),
     State(link=Link.OPENING, attempt=1, policy=WARM_POLICY), [m.Connect]),
    (State(link=Link.UP, policy=WARM_POLICY), m.Timer("idle"),
     State(link=Link.UP, policy=WARM_POLICY), []),
    (State(link=Link.UP, policy=WARM_POLICY), m.ButtonDown(),
     State(Phase.LISTENING, Link.UP, held=True, policy=WARM_POLICY), [m.StartTurn, m.StartTimer]),
    (State(Phase.LISTENING, Link.UP, held=True, policy=WARM_POLICY), m.Timer("hold"),
     State(link=Link.OPENING, policy=WARM_POLICY),
     [m.DropTurn, m.FlushPlayback, m.Disconnect, m.ForgetSession, m.Connect]),
    # barge-in by voice
    (SPEAKING, m.SpeechStarted(), VOICE, [m.FlushPlayback, m.StartTurn]),
    (replace(SPEAKING, turn_done=True), m.SpeechStarted(), VOICE, [m.FlushPlayback, m.StartTurn]),
    (replace(SPEAKING, policy=NO_BARGE), m.SpeechStarted(), replace(SPEAKING, policy=NO_BARGE), []),
    (State(Phase.SPEAKING), m.SpeechStarted(),
     State(Phase.CONNECTING, Link.OPENING, held=True, voice=True), [m.FlushPlayback, m.Connect, m.StartTurn]),
    (IDLE, m.SpeechStarted(), IDLE, []),
    (THINKING, m.SpeechStarted(), THINKING, []),
    (LISTENING, m.SpeechStarted(), LISTENING, []),
    (VOICE, m.SpeechEnded(), THINKING, [m.EndTurn, m.StartTimer]),
    (LISTENING, m.SpeechEnded(), LISTENING, []),
    (VOICE, m.ButtonUp(), VOICE, []),
    (VOICE, m.ButtonDown(), LISTENING, []),
    (replace(CONNECTING, voice=True), m.SpeechEnded(), replace(CONNECTING, held=False), [m.EndTurn]),
    (replace(CONNECTING, voice=True), m.ButtonUp(), replace(CONNECTING, voice=True), []),
    (replace(CONNECTING, voice=True), m.ButtonDown(), CONNECTING, []),
    (CONNECTING, m.SpeechEnded(), CONNECTING, []),
    (VOICE, m.LinkLost("1011"),
     State(Phase.RECONNECTING, Link.OPENING, held=True, attempt=1, voice=True), [m.ReplayTurn, m.Connect]),
    (VOICE, m.AudioFailed("no microphone"),
     State(Phase.ERROR, Link.UP, fault=Fault.AUDIO, reason="no microphone"),
     [m.DropTurn, m.FlushPlayback]),
]


@pytest.mark.parametrize("state,event,expected,effect_kinds", TABLE,
                         ids=[f"{s.phase.value}-{type(e).__name__}" for s, e, *_ in TABLE])
def test_transition_table(state, event, expected, effect_kinds):
    if isinstance(event, m.Timer):
        state = armed(state, event.name)  # the timer that reports is the one pending
    new, effects = m.step(state, event)
    assert untimed(new) == untimed(expected)
    assert [k for k in kinds(effects)
            if k not in (m.Show, m.Log, m.CancelTimer, m.Camera)] == effect_kinds


def test_new_settings_reach_the_machine_as_an_event():
    """A reload: the new rules apply from that step on, and what follows from them at once
    (the camera, the idle clock) follows through the derived rules."""
    looking = Policy(vision_mode="always")
    new, effects = m.step(WARM, m.Reconfigured(looking))
    assert new == replace(WARM, policy=looking)
    assert effects == [m.Camera(True)]
    keep_open = Policy(idle_disconnect_s=0.0)
    new, effects = m.step(WARM, m.Reconfigured(keep_open))
    assert new.policy == keep_open and effects == [m.CancelTimer("idle")]
    _, effects = m.step(new, m.Reconfigured(BASE))
    assert [(e.name, e.delay_s) for e in effects] == [("idle", BASE.idle_disconnect_s)]
    assert m.step(LISTENING, m.Reconfigured(BASE)) == (LISTENING, [])


def test_a_barge_in_by_voice_asks_for_the_pre_roll_and_the_button_does_not():
    _, by_voice = m.step(SPEAKING, m.SpeechStarted())
    _, by_button = m.step(SPEAKING, m.ButtonDown())
    assert [e for e in by_voice if isinstance(e, m.StartTurn)] == [m.StartTurn(preroll=True)]
    assert [e for e in by_button if isinstance(e, m.StartTurn)] == [m.StartTurn(preroll=False)]
    # The speaker is silenced before the turn opens.
    assert kinds(by_voice).index(m.FlushPlayback) < kinds(by_voice).index(m.StartTurn)


def test_a_whole_barge_in_by_voice():
    state = SPEAKING
    for event, phase in ((m.SpeechStarted(), Phase.LISTENING), (m.Interrupted(), Phase.LISTENING),
                         (m.ModelAudio(b"\x00\x00"), Phase.LISTENING),
                         (m.SpeechEnded(), Phase.THINKING), (AUDIO, Phase.SPEAKING),
                         (m.SpeechStarted(), Phase.LISTENING), (m.SpeechEnded(), Phase.THINKING)):
        state, _ = m.step(state, event)
        assert state.phase is phase, event


def test_status_words():
    assert IDLE.status == "ready"
    assert State(Phase.RECONNECTING, Link.DOWN, attempt=3, retry_s=1.7).status == \
        "reconnecting in 2 s"
    assert State(Phase.RECONNECTING, Link.OPENING, attempt=3).status == "reconnecting"
    assert State(Phase.ERROR, fault=Fault.LINK, reason="API key rejected").status == \
        "error: API key rejected"


@given(st.integers(1, 40), st.floats(0, 1))
def test_backoff_is_full_jitter_under_a_doubling_ceiling(attempt, jitter):
    policy = Policy()
    ceiling = min(policy.backoff_cap_s, policy.backoff_first_s * 2 ** (attempt - 1))
    delay = m.backoff(attempt, jitter, policy)
    assert 0.1 <= delay <= max(0.1, ceiling)
    assert m.backoff(attempt, 1.0, policy) == max(0.1, ceiling)
    assert m.backoff(1, 1.0, policy) == 0.5  # the first retry is fast


def test_the_timers_that_are_started_and_cancelled():
    def timers(state, event):
        _, effects = m.step(state, event)
        return ([(e.name, e.delay_s) for e in effects if isinstance(e, m.StartTimer)],
                [e.name for e in effects if isinstance(e, m.CancelTimer)])

    assert timers(CONNECTING, m.SessionOpened()) == ([("stable", 60.0)], [])
    assert timers(LISTENING, m.LinkLost("x")) == ([], ["stable", "handover"])
    assert timers(THINKING, m.TurnComplete()) == ([("idle", 300.0)], [])
    assert timers(WARM, m.ButtonDown()) == ([], ["idle"])
    assert timers(LISTENING, m.GoAway(50)) == ([("handover", 40.0)], [])
    assert timers(IDLE, m.LinkLost("bad key", fatal=True))[0] == [("retry", 300.0)]
    held = State(Phase.LISTENING, Link.UP, held=True, policy=WARM_POLICY)
    assert timers(held, m.ButtonUp()) == ([("answer", 20.0)], ["hold"])  # the answer's deadline
    assert timers(State(link=Link.UP, policy=WARM_POLICY), m.ButtonDown())[0] == [("hold", 10.0)]
    assert timers(State(link=Link.UP, policy=Policy(idle_disconnect_s=0)), m.ButtonDown()) == \
        ([], [])


def test_a_flapping_link_backs_off_until_a_session_stays_up():
    state, delays = LISTENING, []
    for _ in range(5):  # opens, drops mid-turn before the stable timer fires, again and again
        state, effects = m.step(state, m.LinkLost("1011", jitter=1.0))
        delays += [e.delay_s for e in effects if isinstance(e, m.StartTimer)]
        if m.Connect not in kinds(effects):
            state, _ = fire(state, "retry")
        state, _ = m.step(state, m.SessionOpened())
    assert delays == [1.0, 2.0, 4.0, 8.0]  # the first retry at once, then doubling waits
    state, _ = fire(state, "stable")
    assert state.attempt == 0


@pytest.mark.parametrize("mode,on_at", [
    ("while_talking", {"listening"}),
    ("conversation", {"listening", "thinking", "speaking", "idle-warm"}),
    ("always", {"idle-warm", "listening", "thinking", "speaking"}),
    ("off", set()),
])
def test_the_camera_follows_the_vision_mode(mode, on_at):
    policy = Policy(vision_mode=mode)
    state, seen = State(policy=policy), set()
    for event in (m.ButtonDown(), m.SessionOpened(), m.ButtonUp(), AUDIO, m.TurnComplete(),
                  m.PlaybackDrained(), "idle"):
        state, _ = fire(state, event) if event == "idle" else m.step(state, event)
        if m.camera_wanted(state):
            seen.add("idle-warm" if state.phase is Phase.IDLE else state.phase.value)
    assert seen - {"connecting"} == on_at
    assert not m.camera_wanted(state)  # the session closed idle: the camera is off


def test_a_goaway_waits_for_a_safe_point_then_hands_over():
    state, trace = LISTENING, []
    for event in (m.GoAway(50), m.ButtonUp(), AUDIO, m.TurnComplete(), m.PlaybackDrained(),
                  m.SessionOpened()):
        state, effects = m.step(state, event)
        trace.append((type(event).__name__, [type(e).__name__ for e in effects
                                             if isinstance(e, (m.Connect, m.Disconnect))]))
    assert trace == [("GoAway", []), ("ButtonUp", []), ("ModelAudio", []),
                     ("TurnComplete", []), ("PlaybackDrained", ["Disconnect", "Connect"]),
                     ("SessionOpened", [])]
    assert untimed(state) == replace(WARM)


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
    assert untimed(state) == WARM
    shown = [e.phase for e in trace if isinstance(e, m.Show)]
    assert shown == [Phase.CONNECTING, Phase.LISTENING, Phase.THINKING, Phase.SPEAKING,
                     Phase.IDLE]
    assert kinds(trace).count(m.Play) == 2 and kinds(trace).count(m.Connect) == 1


def test_released_before_the_session_opened_still_sends_the_turn():
    state, trace = run([m.ButtonDown(), m.ButtonUp(), m.SessionOpened()])
    assert untimed(state) == THINKING
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
    elif s.phase is Phase.RINGING:  # a ring from an error of the link goes back to it
        assert s.fault in (Fault.NONE, Fault.LINK) and not s.held
    else:
        assert s.fault is Fault.NONE and not s.reason
    if s.turn_done:
        assert s.phase is Phase.SPEAKING
    if s.phase is Phase.IDLE:
        assert not s.held
    if s.muted:
        assert s.phase in (Phase.IDLE, Phase.RINGING)
    assert bool(s.ringing) == (s.phase is Phase.RINGING)
    if s.announcing:
        assert s.phase is Phase.RINGING
    if s.calls:
        assert s.link is Link.UP
        assert len({c for c, _ in s.calls}) == len(s.calls)
    if s.due:
        assert not free_to_ring(s), "a due alarm waits only while somebody talks"
    if s.handover:
        assert s.link is Link.UP
    if s.retry_s:
        assert s.link is Link.DOWN
    if s.voice:
        assert s.held
    if s.mic_off:
        assert not s.held, "no turn is captured while the microphone is off"


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


class Clock:
    """The shell's timers, modelled: started, cancelled, fired (each report with its start's
    generation, as the shell's Timers sends it)."""

    def __init__(self):
        self.pending: dict[str, int] = {}
        self.stale: list[m.Timer] = []  # reports of timers cancelled or replaced since

    def apply(self, effects):
        for effect in effects:
            if isinstance(effect, m.StartTimer):
                if effect.name in self.pending:
                    self.stale.append(m.Timer(effect.name, self.pending[effect.name]))
                assert effect.gen > 0, "every start gets its generation from step"
                self.pending[effect.name] = effect.gen
            elif isinstance(effect, m.CancelTimer) and effect.name in self.pending:
                self.stale.append(m.Timer(effect.name, self.pending.pop(effect.name)))

    def fire(self, pick: int) -> m.Timer | None:
        if not self.pending:
            return None
        name = sorted(self.pending)[pick % len(self.pending)]
        return m.Timer(name, self.pending.pop(name))


class ToolCalls:
    """The session's view of the tool calls: every call the machine takes is answered at most
    once, and one that is neither answered nor cancelled is still running."""

    def __init__(self):
        self.running: set[str] = set()
        self.answered: set[str] = set()

    def apply(self, effects, event, before):
        for effect in effects:
            if isinstance(effect, m.RunTool):
                assert effect.call_id not in self.running
                self.running.add(effect.call_id)
                self.answered.discard(effect.call_id)  # (the sequences reuse ids)
            elif isinstance(effect, m.SendToolResponse):
                assert before.link is Link.UP, "an answer goes to the session it came from"
                assert effect.call_id not in self.answered, "answered twice"
                self.answered.add(effect.call_id)
                self.running.discard(effect.call_id)
            elif isinstance(effect, m.CancelTools):
                assert set(effect.call_ids) <= self.running
                self.running -= set(effect.call_ids)


#: In a generated sequence: the next pending timer fires / a stale report arrives.
FIRE, STALE = "fire", "stale"


@settings(max_examples=500, deadline=None)
@given(st.lists(st.sampled_from(EVENTS) | st.sampled_from([FIRE, STALE]) | st.integers(0, 5),
                max_size=60),
       st.sampled_from([Policy(), WARM_POLICY, Policy(vision_mode="while_talking"),
                        Policy(vision_mode="conversation"), Policy(barge_in=False),
                        Policy(answer_timeout_s=0.0)]))
def test_random_sequences_keep_the_invariants(events, policy):
    state, link_running, turns = State(policy=policy), False, TurnTracker()
    camera, clock, tools, ringing = False, Clock(), ToolCalls(), False
    for event in [m.Started(), *events]:  # the shell's first event, once the daemon is up
        if isinstance(event, int) or event == FIRE:
            event = clock.fire(event if isinstance(event, int) else 0)
        elif event == STALE:
            if not clock.stale:
                continue
            event = clock.stale.pop(0)
            assert m.step(state, event) == (state, []), "a stale timer changes nothing"
            continue
        # The shell only reports link events that can happen: opened/lost while a connect runs.
        if event is None or (isinstance(event, (m.SessionOpened, m.LinkLost))
                             and not link_running):
            continue
        if isinstance(event, m.Timer) and event.gen == 0:
            continue  # the listed Timer events are for the exhaustive tests: here the clock fires
        new, effects = m.step(state, event)
        check_invariants(new)
        turns.apply(effects)
        clock.apply(effects)
        assert clock.pending == dict(new.timers), "the machine knows its pending timers"
        # Liveness: whenever a link is wanted and none is up or opening, a retry is pending;
        # the wait for an answer is bounded.
        assert (m.RETRY in clock.pending) == m.wants_link(new), (state, event, new)
        if new.phase is Phase.THINKING and policy.answer_timeout_s > 0 and not new.calls:
            assert m.ANSWER in clock.pending
        if isinstance(event, m.LinkLost):
            link_running = False  # the session task ended with that report
        for effect in effects:  # the shell carries them out in order
            if isinstance(effect, m.Disconnect):
                assert link_running, "disconnect without a session"
                link_running = False
            elif isinstance(effect, m.Connect):
                assert not link_running, "a second session while one runs"
                link_running = True
        assert link_running == (new.link is not Link.DOWN)
        if m.Play in kinds(effects):
            assert new.phase in (Phase.SPEAKING, Phase.RINGING)
        tools.apply(effects, event, state)
        assert tools.running == {c for c, _ in new.calls}
        for effect in effects:
            if isinstance(effect, m.Ring):
                assert effect.on != ringing, "the chime starts or stops, never twice"
                ringing = effect.on
        assert ringing == (new.phase is Phase.RINGING)
        if ringing:
            assert m.RING in clock.pending
        for effect in effects:
            if isinstance(effect, m.Camera):
                assert effect.on != camera, "the camera is switched on or off, never twice"
                camera = effect.on
        assert camera == m.camera_wanted(new)
        if new.mic_off:
            assert m.StartTurn not in kinds(effects) and not turns.open, "microphone off"
        if new.phase is Phase.LISTENING:
            assert turns.open
        if turns.open and new.phase is Phase.ERROR:
            pytest.fail("an error state must drop the open turn")
        state = new


# ---- liveness: whenever a link is wanted, a retry is pending


def test_a_timer_due_while_a_kept_session_waits_to_reconnect_shows_no_wait_once_it_connects():
    state, _ = run_timed([m.Started(), m.LinkLost("drop", jitter=1.0)], State(policy=WARM_POLICY))
    assert state.retry_s > 0 and state.link is Link.DOWN
    state, effects = m.step(state, m.AlarmDue('the timer "pasta"'))
    assert state.phase is Phase.RINGING and state.link is Link.OPENING
    assert state.retry_s == 0.0 and m.Connect in kinds(effects)


def test_a_ring_goes_on_through_an_error_of_the_link_and_the_error_shows_after_it():
    """Found by the random sequences: a key rejected while a timer rang ended the ring and left
    it due, in an error where the speaker still works (nobody talking: it must ring)."""
    state, _ = run_timed([m.AlarmDue('the timer "pasta"')], State())
    assert state.phase is Phase.RINGING
    state, effects = m.step(state, m.LinkLost("API key rejected", fatal=True, jitter=1.0))
    assert state.phase is Phase.RINGING and state.ringing == ('the timer "pasta"',)
    assert state.fault is Fault.LINK and not state.due and m.Ring not in kinds(effects)
    state, _ = m.step(state, m.ButtonDown())
    assert state.phase is Phase.ERROR and not state.ringing and not state.due


def run_timed(events, state):
    """Step through ``events``; a name (str) fires that pending timer."""
    trace = []
    for event in events:
        state, effects = fire(state, event) if isinstance(event, str) else m.step(state, event)
        trace.extend(effects)
    return state, trace


def test_a_transient_failure_during_the_slow_error_retry_schedules_the_next_one():
    state, _ = run_timed([m.ButtonDown(), m.LinkLost("API key rejected", fatal=True),
                          m.ButtonUp(), "retry", m.LinkLost("connection refused")], IDLE)
    assert state.phase is Phase.ERROR and state.link is Link.DOWN
    assert state.reason == "API key rejected"  # what still needs a person
    assert state.timer(m.RETRY) is not None
    state, trace = fire(state, "retry")
    assert m.Connect in kinds(trace)


def test_a_kept_session_lost_while_the_answer_plays_is_reopened_after_it():
    state, _ = run_timed([m.Started(), m.SessionOpened(), m.ButtonDown(), m.ButtonUp(), AUDIO,
                          m.LinkLost("1011 internal error"), m.TurnComplete()],
                         State(policy=WARM_POLICY))
    assert state.phase is Phase.SPEAKING and state.timer(m.RETRY) is None  # plays to its end
    state, trace = m.step(state, m.PlaybackDrained())
    assert state.phase is Phase.IDLE and state.timer(m.RETRY) is not None
    state, trace = fire(state, "retry")
    assert m.Connect in kinds(trace)


@pytest.mark.parametrize("last", [m.Hush(), m.Interrupted()])
def test_stopping_an_answer_of_a_lost_kept_session_reopens_it(last):
    state, _ = run_timed([m.Started(), m.SessionOpened(), m.ButtonDown(), m.ButtonUp(), AUDIO,
                          m.LinkLost("1011 internal error")], State(policy=WARM_POLICY))
    state, _ = m.step(state, last)
    assert state.phase is Phase.IDLE and state.link is Link.DOWN
    assert state.timer(m.RETRY) is not None


def test_audio_back_with_a_kept_session_lost_meanwhile_reopens_it():
    state, _ = run_timed([m.Started(), m.SessionOpened(), m.AudioFailed("no microphone"),
                          m.LinkLost("1011 internal error"), m.AudioRestored()],
                         State(policy=WARM_POLICY))
    assert state.phase is Phase.IDLE and state.timer(m.RETRY) is not None


def test_a_press_that_connects_cancels_the_pending_retry():
    state, _ = run_timed([m.Started(), m.SessionOpened(), m.LinkLost("drop", jitter=1.0)],
                         State(policy=WARM_POLICY))
    assert state.timer(m.RETRY) is not None
    state, trace = m.step(state, m.ButtonDown())
    assert state.link is Link.OPENING and m.CancelTimer(m.RETRY) in trace
    assert state.timer(m.RETRY) is None


# ---- timers carry their generation


def test_a_timer_that_fired_just_before_it_was_cancelled_does_nothing():
    state, trace = run_timed([m.ButtonDown(), m.SessionOpened(), m.ButtonUp(), m.TurnComplete()],
                             IDLE)
    idle = next(e for e in trace if isinstance(e, m.StartTimer) and e.name == "idle")
    report = m.Timer("idle", idle.gen)  # queued by the shell...
    state, _ = m.step(state, m.ButtonDown())  # ...while a press cancelled the timer
    assert state.timer("idle") is None
    assert m.step(state, report) == (state, [])  # the session stays open


def test_the_report_of_a_timer_started_again_is_stale():
    state, trace = run_timed([m.ButtonDown(), m.SessionOpened()], IDLE)
    first = next(e for e in trace if isinstance(e, m.StartTimer) and e.name == "stable")
    state, trace = run_timed([m.LinkLost("drop"), "retry", m.SessionOpened()], state)
    again = next(e for e in trace if isinstance(e, m.StartTimer) and e.name == "stable")
    assert again.gen > first.gen and state.timer("stable") == again.gen
    before = state
    assert m.step(state, m.Timer("stable", first.gen)) == (before, [])


# ---- nothing stuck waiting


def test_an_answer_that_never_begins_is_given_up_and_the_link_recycled():
    state, trace = run_timed([m.ButtonDown(), m.SessionOpened(), m.ButtonUp()], IDLE)
    deadline = next(e for e in trace if isinstance(e, m.StartTimer) and e.name == "answer")
    assert state.phase is Phase.THINKING and deadline.delay_s == BASE.answer_timeout_s
    state, trace = fire(state, "answer")
    assert state.phase is Phase.IDLE and state.link is Link.DOWN
    assert [k for k in kinds(trace) if k in (m.DropTurn, m.FlushPlayback, m.Disconnect)] == \
        [m.DropTurn, m.FlushPlayback, m.Disconnect]
    logs = [e for e in trace if isinstance(e, m.Log)]
    assert len(logs) == 1 and logs[0].message.startswith("no answer from Gemini within 20 s")
    # a warm session is opened again at once (connect_at_start)
    warm, _ = run_timed([m.Started(), m.SessionOpened(), m.ButtonDown(), m.ButtonUp(), "answer"],
                        State(policy=WARM_POLICY))
    assert warm.timer(m.RETRY) is not None


def test_the_answer_deadline_stops_when_the_answer_begins_and_can_be_off():
    state, _ = run_timed([m.ButtonDown(), m.SessionOpened(), m.ButtonUp()], IDLE)
    state, trace = m.step(state, AUDIO)
    assert m.CancelTimer("answer") in trace and state.timer("answer") is None
    off = State(policy=Policy(answer_timeout_s=0.0))
    state, _ = run_timed([m.ButtonDown(), m.SessionOpened(), m.ButtonUp()], off)
    assert state.phase is Phase.THINKING and state.timer("answer") is None


@pytest.mark.parametrize("state", [LISTENING, CONNECTING, replace(CONNECTING, held=False),
                                   State(Phase.RECONNECTING, Link.DOWN, held=True, retry_s=2.0)],
                         ids=["listening", "connecting", "released-connecting", "reconnecting"])
def test_stop_drops_the_turn_in_progress(state):
    new, effects = m.step(state, m.Hush())
    assert new.phase is Phase.IDLE and not new.held and m.DropTurn in kinds(effects)
    assert new.link is state.link  # the session (or its opening) stays
