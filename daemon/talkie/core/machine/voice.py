"""The user's voice, as the local voice detector hears it: barge-in while the answer plays, and the
end of a turn the voice opened.

The detector runs on the echo-cancelled microphone (:mod:`talkie.audio.uplink_chain`), so the
device's own speaker does not count; with ``[audio] echo = "half_duplex"`` it is not consulted while
the speaker plays, and only the button barges in. A turn the voice opened ends when the detector
hears the end of speech; the button, pressed meanwhile, takes the turn over (its release ends it).
"""

from __future__ import annotations

from dataclasses import replace

from talkie.core.machine.state import Phase, State, on
from talkie.core.machine.turns import barge_in
from talkie.core.vocabulary import EndTurn, Event, Log, SpeechEnded, SpeechStarted


@on(Phase.SPEAKING, SpeechStarted)
def _speech_over_the_answer(s: State, e: Event):
    if not s.policy.barge_in:
        return s, []
    s, effects = barge_in(s, voice=True)
    return s, [*effects, Log("info", "barge-in: speech over the answer stopped it")]


@on(Phase.LISTENING, SpeechEnded)
def _voice_turn_ends(s: State, e: Event):
    if not s.voice:
        return s, []
    return replace(s, phase=Phase.THINKING, held=False, voice=False), [EndTurn()]


@on((Phase.CONNECTING, Phase.RECONNECTING), SpeechEnded)
def _voice_turn_ends_while_connecting(s: State, e: Event):
    if not s.voice:
        return s, []
    return replace(s, held=False, voice=False), [EndTurn()]
