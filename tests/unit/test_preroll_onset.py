"""The pre-roll reaches a voice's onset only while that voice lasts."""

from __future__ import annotations

import numpy as np
import pytest

from talkie.audio.uplink_chain import MicChain
from talkie.audio.vad import SpeechGate
from tests.support import corpus as c

pytestmark = pytest.mark.skipif(not c.available(), reason="needs espeak-ng")
RATE = 16000


def feed(ch, x, at=0):
    for i in range(0, len(x) - 159, 160):
        ch.push(x[i:i + 160].tobytes(), (at + i) / RATE)


def test_a_voice_that_ended_unsent_does_not_stretch_a_later_press_s_pre_roll():
    voice = c.to_s16(c.scale_to(c.speech(c.USER_LINES[4], c.USER_VOICES[4]), -24))
    ch = MicChain(on_chunk=lambda pcm: None, on_speech=lambda started: None, barge_in=True,
                  gate=SpeechGate(), preroll_ms=300)
    x = np.concatenate([np.zeros(RATE // 2, np.int16), voice])
    feed(ch, x)
    assert ch.preroll_span > 300 * 16  # while the voice lasts: back to where it began
    feed(ch, np.zeros(2 * RATE, np.int16), len(x))  # it ends (and nobody sent it)
    assert ch.preroll_span == 300 * 16  # a press now: the last 300 ms


def test_a_gap_forgets_the_voice_s_onset():
    voice = c.to_s16(c.scale_to(c.speech(c.USER_LINES[4], c.USER_VOICES[4]), -24))
    ch = MicChain(on_chunk=lambda pcm: None, on_speech=lambda started: None, barge_in=True,
                  gate=SpeechGate(), preroll_ms=300)
    feed(ch, np.concatenate([np.zeros(RATE // 2, np.int16), voice[: RATE]]))
    assert ch.preroll_span > 300 * 16
    ch.gap(RATE)
    assert ch.preroll_span == 300 * 16
