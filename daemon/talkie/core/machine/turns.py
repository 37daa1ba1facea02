"""Turns: the button, the model's answer, what was heard and said, text turns and stopping the
answer from the control socket, and the audio devices."""

from __future__ import annotations

from dataclasses import replace

from talkie.core.machine.state import ANY, Fault, Link, State, on
from talkie.core.vocabulary import (
    AudioFailed,
    AudioRestored,
    ButtonDown,
    ButtonUp,
    Connect,
    DropTurn,
    Effect,
    EndTurn,
    Event,
    FinishPlayback,
    FlushPlayback,
    Heard,
    Hush,
    Interrupted,
    Log,
    ModelAudio,
    Phase,
    Play,
    PlaybackDrained,
    Said,
    Say,
    SendText,
    StartTurn,
    TurnComplete,
)


def connect_unless_open(state: State) -> list[Effect]:
    """Connect unless a session is already up or opening."""
    return [Connect()] if state.link is Link.DOWN else []


# ---- the button


@on(Phase.IDLE, ButtonDown)
def _press_when_idle(s: State, e: Event):
    s = replace(s, muted=False)  # a new turn: what is left of a stopped answer is stale anyway
    if s.link is Link.UP:
        return replace(s, phase=Phase.LISTENING, held=True), [StartTurn()]
    return (
        replace(s, phase=Phase.CONNECTING, held=True, link=Link.OPENING),
        [*connect_unless_open(s), StartTurn()],
    )


@on(Phase.ERROR, ButtonDown)
def _press_after_error(s: State, e: Event):
    cleared = replace(s, fault=Fault.NONE, reason="", attempt=0)
    if s.fault is Fault.AUDIO:
        # The microphone is gone: a turn cannot be captured, so say so again and stay.
        return s, [Log("warning", f"cannot listen: {s.reason}")]
    return _press_when_idle(replace(cleared, phase=Phase.IDLE), e)


@on((Phase.CONNECTING, Phase.RECONNECTING), ButtonDown)
def _press_while_connecting(s: State, e: Event):
    if s.held:
        return replace(s, voice=False), []  # a turn the voice opened: the button now ends it
    # A second question while the first still waits for the link: both are sent, in order.
    return replace(s, held=True), [StartTurn()]


@on(Phase.THINKING, ButtonDown)
def _press_while_thinking(s: State, e: Event):
    return replace(s, phase=Phase.LISTENING, held=True), [StartTurn()]


def barge_in(s: State, *, voice: bool) -> tuple[State, list[Effect]]:
    """The user cuts the answer short (the button, or their voice): silence the speaker first, then
    open the new turn (activity_start makes the server interrupt the model)."""
    effects: list[Effect] = [FlushPlayback()]
    turn = StartTurn(preroll=voice)
    s = replace(s, held=True, voice=voice, turn_done=False)
    if s.link is Link.UP:
        return replace(s, phase=Phase.LISTENING), [*effects, turn]
    return (
        replace(s, phase=Phase.CONNECTING, link=Link.OPENING),
        [*effects, *connect_unless_open(s), turn],
    )


@on(Phase.SPEAKING, ButtonDown)
def _press_while_speaking(s: State, e: Event):
    return barge_in(s, voice=False)


@on(Phase.LISTENING, ButtonDown)
def _press_while_voice_turn(s: State, e: Event):
    return replace(s, voice=False), []  # the button takes over the turn the voice opened


@on(Phase.LISTENING, ButtonUp)
def _release_while_listening(s: State, e: Event):
    if s.voice:
        return s, []  # the button was not what opened this turn
    return replace(s, phase=Phase.THINKING, held=False), [EndTurn()]


@on((Phase.CONNECTING, Phase.RECONNECTING), ButtonUp)
def _release_while_connecting(s: State, e: Event):
    if not s.held or s.voice:
        return s, []
    return replace(s, held=False), [EndTurn()]


@on(Phase.ERROR, ButtonUp)
def _release_after_error(s: State, e: Event):
    return replace(s, held=False), []


# ---- the model's answer


@on((Phase.THINKING, Phase.IDLE), ModelAudio)
def _first_audio(s: State, e: Event):
    assert isinstance(e, ModelAudio)
    if s.muted:
        return s, []
    # In idle this is an answer to a turn whose completion we already saw (after a quick barge-in).
    return replace(s, phase=Phase.SPEAKING, turn_done=False), [Play(e.pcm)]


@on(Phase.SPEAKING, ModelAudio)
def _more_audio(s: State, e: Event):
    assert isinstance(e, ModelAudio)
    if s.turn_done:
        return s, []
    return s, [Play(e.pcm)]


@on(Phase.SPEAKING, Interrupted)
def _interrupted_while_speaking(s: State, e: Event):
    return replace(s, phase=Phase.IDLE, turn_done=False), [FlushPlayback()]


@on((Phase.LISTENING, Phase.THINKING), Interrupted)
def _interrupted_after_barge_in(s: State, e: Event):
    return s, [FlushPlayback()]  # idempotent with the local flush


@on(Phase.THINKING, TurnComplete)
def _complete_without_audio(s: State, e: Event):
    return replace(s, phase=Phase.IDLE), []


@on(Phase.IDLE, TurnComplete)
def _stopped_answer_complete(s: State, e: Event):
    return replace(s, muted=False), []


@on(Phase.SPEAKING, TurnComplete)
def _complete_while_speaking(s: State, e: Event):
    if s.turn_done:
        return s, []
    return replace(s, turn_done=True), [FinishPlayback()]


@on(Phase.SPEAKING, PlaybackDrained)
def _drained(s: State, e: Event):
    if not s.turn_done:
        return s, []
    return replace(s, phase=Phase.IDLE, turn_done=False), []


@on(ANY, Heard)
def _heard(s: State, e: Event):
    assert isinstance(e, Heard)
    return s, [Log("info", f"heard: {e.text}", transcript=True)]


@on(ANY, Said)
def _said(s: State, e: Event):
    assert isinstance(e, Said)
    return s, [Log("info", f"said: {e.text}", transcript=True)]


# ---- the control socket


@on((Phase.IDLE, Phase.ERROR), Say)
def _say(s: State, e: Event):
    assert isinstance(e, Say)
    if s.fault is Fault.AUDIO:
        return s, [Log("warning", f"cannot ask: {s.reason}")]
    s = replace(s, phase=Phase.IDLE, fault=Fault.NONE, reason="", muted=False, held=False)
    effects: list[Effect] = [SendText(e.text), Log("info", f"asked: {e.text}", transcript=True)]
    if s.link is Link.UP:
        return replace(s, phase=Phase.THINKING), effects
    return replace(s, phase=Phase.CONNECTING, link=Link.OPENING, attempt=0), [
        *connect_unless_open(s),
        *effects,
    ]


@on((Phase.SPEAKING, Phase.THINKING), Hush)
def _hush(s: State, e: Event):
    done = s.phase is Phase.SPEAKING and s.turn_done
    return replace(s, phase=Phase.IDLE, turn_done=False, muted=not done), [FlushPlayback()]


# ---- audio devices


@on(ANY, AudioFailed)
def _audio_failed(s: State, e: Event):
    assert isinstance(e, AudioFailed)
    return (
        replace(
            s,
            phase=Phase.ERROR,
            fault=Fault.AUDIO,
            reason=e.reason,
            turn_done=False,
            muted=False,
            held=s.held and not s.voice,
        ),  # a turn the voice held is dropped
        [DropTurn(), FlushPlayback(), Log("error", e.reason, key="audio")],
    )


@on(Phase.ERROR, AudioRestored)
def _audio_restored(s: State, e: Event):
    if s.fault is not Fault.AUDIO:
        return s, []
    return (
        replace(s, phase=Phase.IDLE, fault=Fault.NONE, reason="", held=False),
        [Log("info", "audio devices are back", key="audio")],
    )
