"""The microphone off and the camera forbidden, in the machine (:mod:`talkie.core.machine.privacy`)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from talkie.core import machine as m
from talkie.core.machine import Link, Phase
from tests.unit.test_machine import BASE, IDLE, LISTENING, SPEAKING, THINKING, State, kinds

OFF = m.MicMute(True)


def muted(state: m.State) -> m.State:
    return replace(state, mic_off=True)


def test_switching_the_microphone_off_drops_the_turn_being_captured():
    state, effects = m.step(LISTENING, OFF)
    assert state.phase is Phase.IDLE and state.mic_off and not state.held
    assert kinds(effects)[:2] == [m.DropTurn, m.PrivacyChanged]
    assert effects[1] == m.PrivacyChanged(mic_off=True, camera_off=False)
    assert state.status == "ready (microphone off)"


def test_a_voice_turn_waiting_for_the_link_is_dropped_too():
    connecting = State(Phase.CONNECTING, Link.OPENING, held=True, voice=True)
    state, effects = m.step(connecting, OFF)
    assert state.mic_off and not state.held and not state.voice
    assert m.DropTurn in kinds(effects)


def test_switching_it_off_while_the_answer_plays_lets_the_answer_play():
    state, effects = m.step(SPEAKING, OFF)
    assert state.phase is Phase.SPEAKING and state.mic_off
    assert m.FlushPlayback not in kinds(effects)


@pytest.mark.parametrize("phase_state", [IDLE, State(link=Link.UP)])
def test_a_press_opens_no_turn_while_the_microphone_is_off(phase_state):
    state, effects = m.step(muted(phase_state), m.ButtonDown())
    assert state == muted(phase_state)
    assert m.StartTurn not in kinds(effects) and m.Connect not in kinds(effects)
    assert [e.message for e in effects if isinstance(e, m.Log)] == [
        "the microphone is off: switch it on to talk"]


@pytest.mark.parametrize("answer", [SPEAKING, THINKING])
def test_a_press_while_muted_still_stops_the_answer(answer):
    state, effects = m.step(muted(answer), m.ButtonDown())
    assert state.phase is Phase.IDLE and not state.held
    assert m.StartTurn not in kinds(effects)
    assert m.FlushPlayback in kinds(effects)


def test_a_press_while_muted_silences_a_ring():
    ringing = State(Phase.RINGING, ringing=('the timer "tea"',), mic_off=True)
    state, effects = m.step(ringing, m.ButtonDown())
    assert state.phase is not Phase.RINGING and m.StartTurn not in kinds(effects)
    assert m.Ring(False) in effects


@pytest.mark.parametrize("event", [m.SpeechStarted(), m.SpeechEnded(), m.ButtonUp()])
def test_the_voice_and_a_release_change_nothing_while_muted(event):
    assert m.step(muted(SPEAKING), event) == (muted(SPEAKING), [])


def test_a_typed_turn_still_works_while_muted():
    state, effects = m.step(muted(IDLE), m.Say("what time is it?"))
    assert m.SendText in kinds(effects) or m.Connect in kinds(effects)
    assert state.mic_off


def test_switching_it_on_again_and_twice_the_same():
    state, effects = m.step(muted(IDLE), m.MicMute(False))
    assert not state.mic_off and effects[0] == m.PrivacyChanged(False, False)
    assert state.status == "ready"
    assert m.step(IDLE, m.MicMute(False)) == (IDLE, [])
    assert m.step(muted(IDLE), OFF) == (muted(IDLE), [])
    state, effects = m.step(state, m.ButtonDown())
    assert m.StartTurn in kinds(effects)


def test_a_forbidden_camera_is_switched_off_whatever_the_mode():
    always = State(Phase.IDLE, Link.UP, policy=replace(BASE, vision_mode="always"))
    assert m.camera_wanted(always)
    state, effects = m.step(always, m.CameraAllow(False))
    assert state.camera_off and m.Camera(False) in effects
    assert m.PrivacyChanged(mic_off=False, camera_off=True) in effects
    assert not m.camera_wanted(state)
    state, effects = m.step(state, m.CameraAllow(True))
    assert m.Camera(True) in effects and not state.camera_off


def test_a_press_of_the_mute_button_switches_it_the_other_way_each_time():
    state, _ = m.step(IDLE, m.MicMute(None))
    assert state.mic_off
    state, effects = m.step(state, m.MicMute(None))
    assert not state.mic_off and m.PrivacyChanged(False, False) in effects
