"""What the echo canceller left: still the speaker's echo (coherent with the reference), or a voice."""

from __future__ import annotations

import numpy as np
import pytest

from talkie.audio.coherence import EchoCoherence
from talkie.audio.echo import SpeexEcho
from talkie.audio.uplink_chain import MicChain
from talkie.audio.vad import COHERENT, START, SpeechGate
from tests.support import bargein_sim as sim
from tests.support import corpus as c

pytestmark = pytest.mark.skipif(not c.available(), reason="needs espeak-ng")
RATE = 16000
LEAD = RATE * sim.LEAD_MS // 1000


def blocks(x: np.ndarray, n: int = 160):
    for i in range(0, len(x) - n + 1, n):
        yield x[i:i + n]


def coherence_of(ref: np.ndarray, left: np.ndarray, lead: int = LEAD) -> np.ndarray:
    coh = EchoCoherence(RATE, lead=lead)
    values = []
    for r, e in zip(blocks(ref), blocks(left)):
        coh.push(r, e)
        values.append(coh.measure())
    return np.array(values)


def speaker_and_echo(seconds: float = 6.0, gain_db: float = -6.0):
    """The reference leading by LEAD (as EchoReference puts it) and the room's echo of it."""
    speaker = c.assistant_talk(seconds, seed=3)
    echo = sim.room_mic(speaker, delay_ms=2, gain_db=gain_db, seed=3, noise_db=-70)
    ref = np.concatenate([c.to_s16(speaker)[LEAD:], np.zeros(LEAD, np.int16)])
    return ref, c.to_s16(echo)


def test_echo_left_behind_is_coherent_with_the_reference_and_a_voice_is_not():
    ref, echo = speaker_and_echo()
    sounding = np.array([np.abs(b).max() > 300 for b in blocks(echo)])
    # A canceller that took nothing out yet: what is left is all echo.
    left_echo = coherence_of(ref, echo)
    assert np.median(left_echo[sounding]) > 0.8
    # The user's voice over a reference it has nothing to do with.
    user = c.to_s16(c.scale_to(c.speech(c.USER_LINES[2], c.USER_VOICES[2]), -24))
    voice = np.zeros_like(echo)
    voice[:len(user)] = user[:len(voice)]
    voiced = np.array([np.abs(b).max() > 300 for b in blocks(voice)])
    left_voice = coherence_of(ref, voice)
    assert np.median(left_voice[voiced]) < 0.3
    assert np.mean(left_voice[voiced] > COHERENT) < 0.1


def test_the_reference_is_read_lead_samples_later():
    ref, echo = speaker_and_echo()
    sounding = np.array([np.abs(b).max() > 300 for b in blocks(echo)])
    # Read where it is written, the reference is 20 ms off its echo: far less coherent.
    assert np.median(coherence_of(ref, echo, lead=0)[sounding]) < np.median(
        coherence_of(ref, echo)[sounding]) - 0.3


def test_a_reset_forgets_the_history():
    ref, echo = speaker_and_echo(2.0)
    coh = EchoCoherence(RATE, lead=LEAD)
    for r, e in zip(blocks(ref), blocks(echo)):
        coh.push(r, e)
    assert coh.measure() > 0.5
    coh.reset()
    assert coh.value == 0.0
    # until its windows (and the lead) have been seen again, nothing is measured
    coh.push(ref[:160], echo[:160])
    assert coh.measure() == 0.0


def test_the_gate_does_not_take_echo_left_behind_for_a_voice():
    clip = c.to_s16(c.scale_to(c.speech(c.USER_LINES[4], c.USER_VOICES[4]), -20))

    def starts(coherence: float, ref_db: float) -> list[int]:
        gate = SpeechGate(residual_floor_db=-30.0, start_residual_db=-30.0)
        return [i for i, f in enumerate(blocks(clip))
                if gate.feed(f, ref_db, -20.0, True, ref_db, lambda: coherence) == START]

    # loud over a quiet reference: a voice, unless what is left is still the echo
    assert starts(0.0, -45.0) and starts(COHERENT - 0.1, -45.0)
    assert starts(COHERENT + 0.2, -45.0) == []
    # with the speaker silent there is no echo to be coherent with
    assert starts(COHERENT + 0.2, -120.0)


def test_the_chain_measures_what_the_canceller_left_while_it_runs():
    ref, echo = speaker_and_echo(3.0)
    speaker = np.concatenate([np.zeros(LEAD, np.int16), ref[:-LEAD]])
    mic = np.concatenate([echo, np.zeros(RATE, np.int16)])
    coh = EchoCoherence(RATE, lead=LEAD)
    ch = MicChain(on_chunk=lambda pcm: None, echo="aec", barge_in=True, gate=SpeechGate(),
                  canceller=SpeexEcho(), reference=sim.ArrayReference(speaker), coherence=coh)
    seen, fed = [], []
    for i, b in enumerate(blocks(mic)):
        ch.push(b.tobytes(), i * 160 / RATE)
        fed.append(coh.pushed)
        seen.append(coh.measure() if coh.pushed else 0.0)
    # the first half second, before the canceller has learnt the room, is its echo; after the
    # speaker's last sound (and its tail) the measure is off and forgotten
    assert max(seen[10:60]) > COHERENT
    assert max(fed) > 0 and fed[-1] == 0 and seen[-1] == 0.0


def test_the_gate_asks_for_the_coherence_only_for_a_frame_it_would_take_for_a_voice():
    clip = c.to_s16(c.scale_to(c.speech(c.USER_LINES[4], c.USER_VOICES[4]), -20))
    quiet = np.zeros(len(clip), np.int16)
    asked = []

    def coherence() -> float:
        asked.append(1)
        return 0.0

    gate = SpeechGate(residual_floor_db=-30.0, start_residual_db=-30.0)
    for f in blocks(quiet):
        gate.feed(f, -45.0, -60.0, True, -45.0, coherence)
    assert asked == []  # silence over the speaker: nothing to measure
    for f in blocks(clip):
        gate.feed(f, -45.0, -20.0, True, -45.0, coherence)
    assert 0 < len(asked) < len(clip) // 160
