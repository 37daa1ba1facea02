"""A late event loop loses no word: with the loop held up for 300 ms at a time while the user
speaks, every sample of the turn still goes out, in order (the microphone's ring hands the loop a
bigger batch, nothing is dropped).

The daemon runs in this process with the real SDK against the Live double and real PortAudio
through PulseAudio null sinks (speech played into the microphone), as in test_scenario.
"""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from support.pulse import align, read_wav
from talkie.core.machine import Phase
from tests.support.daemon import BUTTON, started_app
from tests.support.live_double import AutoReply, LiveDouble

pytestmark = pytest.mark.audio

KEY = "AIzaSy-lateloop-0123456789abcdef"


def test_a_loop_late_by_300_ms_loses_no_microphone_sample_of_a_turn(tmp_path, pulse, speech_wav):
    from gpiozero.pins.mock import MockFactory, MockPWMPin

    rate, speech = read_wav(speech_wav)
    factory = MockFactory(pin_class=MockPWMPin)

    async def turn(double):
        app, task, shows = await started_app(tmp_path, double, pulse, KEY, factory)
        button = factory.pin(BUTTON)
        button.drive_low()
        await shows.until(lambda p: Phase.LISTENING in p or Phase.CONNECTING in p)
        playing = asyncio.create_task(pulse.aplay_into_mic(speech_wav))
        for _ in range(3):  # a handler that blocks the loop: 300 ms, three times over the phrase
            await asyncio.sleep(0.2)
            time.sleep(0.3)
        await playing
        button.drive_high()
        await shows.until(lambda p: Phase.SPEAKING in p and p[-1] is Phase.IDLE)
        capture = app.audio.capture
        app.stop()
        await asyncio.wait_for(task, 5)
        return capture

    with LiveDouble(api_keys=(KEY,), auto_reply=AutoReply(seconds=0.5)) as double:
        capture = asyncio.run(asyncio.wait_for(turn(double), 60))
        audio = [m for m in double.messages if m.kind == "audio"]
        assert double.errors == []
    sent = np.frombuffer(b"".join(m.blob for m in audio), dtype=np.int16)
    lag, corr = align(speech, sent)
    assert corr >= 0.9, corr  # the phrase as spoken, no block missing or out of order ...
    assert 0 <= lag and lag + len(speech) <= len(sent)  # ... all of it
    assert capture.overflows == 0
    assert capture.batches < capture.blocks  # the late loop took blocks in batches
