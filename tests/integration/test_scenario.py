"""End to end: hold the button, speak, let go, hear the answer — with every real part that can exist
on a build machine.

The daemon (talkie.shell.app.App, built from a real config file) runs in this process with the real
google-genai SDK talking TLS to the Live test double, real PortAudio/ALSA audio through PulseAudio null
sinks (espeak-ng speech played into the microphone, the speaker recorded), and the button and a PWM
LED on gpiozero's MockFactory. Two turns: the first opens the session (cold), the second reuses it.
"""

from __future__ import annotations

import asyncio
import json
import time

import numpy as np
import pytest

from conftest import make_speech_wav
from support.pulse import align, correlation_at, read_wav
from talkie import config
from talkie.shell.app import App, Factories
from talkie.core.machine import Phase
from talkie.config.credentials import load_api_key
from tests.support.daemon import BUTTON, Shows, led_states, write_config
from tests.support.live_double import AutoReply, LiveDouble

pytestmark = pytest.mark.audio

KEY = "AIzaSy-scenario-0123456789abcdef"


def test_push_to_talk_conversation(tmp_path, pulse, speech_wav, record_property):
    from gpiozero.pins.mock import MockFactory, MockPWMPin

    from talkie.panel import open_panel

    rate, speech = read_wav(speech_wav)
    assert rate == 16000
    reply_rate, reply = read_wav(make_speech_wav(tmp_path / "reply.wav",
                                                 "Tomorrow will be sunny with a light breeze.",
                                                 rate=24000))
    assert reply_rate == 24000 and len(reply) > 24000  # about two seconds of the model's voice
    factory = MockFactory(pin_class=MockPWMPin)
    figures = {}

    async def conversation(double):
        settings = config.load(write_config(tmp_path, double, pulse, KEY))
        key = load_api_key(settings.live.api_key_file, env={})
        shows = Shows()
        panels = []

        def panel(s, **kw):
            panels.append(open_panel(s.panel, pin_factory=factory, **kw))
            return panels[-1]

        app = App(settings, key, factories=Factories(panel=panel), on_show=shows,
                  control_path=str(tmp_path / "control"))
        task = asyncio.create_task(app.run())
        await asyncio.wait_for(app.ready.wait(), 10)
        assert panels[0].kind == "gpio"
        button = factory.pin(BUTTON)
        recording = await asyncio.to_thread(pulse.record_speaker().start)
        # A device idles a while before its first press: by then the SDK is loaded (cold = no
        # session yet, the first press opens it).
        await asyncio.wait_for(app.prepared.wait(), 10)
        presses, heard_at_idle = [], []
        for _turn in (1, 2):
            since = len(shows.phases)
            presses.append(time.monotonic())
            button.drive_low()
            await pulse.aplay_into_mic(speech_wav)
            button.drive_high()
            await shows.until(lambda p: Phase.SPEAKING in p[since:] and p[-1] is Phase.IDLE)  # noqa: B023
            heard_at_idle.append(recording.count())  # samples recorded when the LED said idle
        samples = await asyncio.to_thread(recording.stop)
        app.stop()
        await asyncio.wait_for(task, 5)
        return presses, heard_at_idle, samples, app

    # A real service takes a while to set up and to answer; so does the double, so that the LED
    # (which shows the latest state, not every state) has connecting and thinking to show.
    answer = AutoReply(pcm=reply.tobytes(), chunk_ms=40, delay_s=0.3)
    with LiveDouble(api_keys=(KEY,), auto_reply=answer, setup_delay_s=0.2) as double:
        presses, heard_at_idle, recorded, app = asyncio.run(
            asyncio.wait_for(conversation(double), 120))
        messages = double.messages
        assert double.errors == []

    # The uplink: one session; per turn activityStart, the speech, activityEnd; no audio outside.
    assert len({m.conn for m in messages}) == 1
    kinds = [m.kind for m in messages]
    assert kinds[0] == "setup" and set(kinds[1:]) == {"activity_start", "audio", "activity_end"}
    turns, current = [], None
    for m in messages[1:]:
        if m.kind == "activity_start":
            assert current is None, "activity_start inside a turn"
            current = []
        elif m.kind == "audio":
            assert current is not None, "audio before the press or after the release"
            current.append(m)
        elif m.kind == "activity_end":
            turns.append(current)
            current = None
    assert current is None and len(turns) == 2
    for n, chunks in enumerate(turns):
        sent = np.frombuffer(b"".join(c.blob for c in chunks), dtype=np.int16)
        assert all(c.mime_type == "audio/pcm;rate=16000" for c in chunks)
        assert {len(c.blob) for c in chunks[:-1]} == {640}  # 20 ms chunks
        lag, corr = align(speech, sent)
        figures[f"turn{n + 1}_uplink_correlation"] = round(corr, 4)
        assert corr >= 0.9
        assert 0 <= lag and lag + len(speech) <= len(sent)  # the whole phrase went out
        figures[f"turn{n + 1}_press_to_first_chunk_ms"] = round(
            (chunks[0].t - presses[n]) * 1000, 1)

    # The downlink: each answer heard whole, to its last 20 ms, before the LED went back to idle.
    tail = reply_rate // 50
    lag1, corr1 = align(reply, recorded[: heard_at_idle[0]])
    lag2, corr2 = align(reply, recorded[heard_at_idle[0]:])
    lag2 += heard_at_idle[0]
    for n, (lag, corr) in enumerate(((lag1, corr1), (lag2, corr2))):
        figures[f"turn{n + 1}_speaker_correlation"] = round(corr, 4)
        assert corr >= 0.9
        end = lag + len(reply)
        # parecord runs with a 10 ms latency: what it has written trails the sink by up to that.
        recorder_latency = reply_rate // 100
        assert end <= heard_at_idle[n] + recorder_latency, \
            "the LED said idle before the answer had been heard"
        tail_corr = correlation_at(reply[-tail:], recorded, end - tail)
        figures[f"turn{n + 1}_tail_correlation"] = round(tail_corr, 4)
        assert tail_corr >= 0.9
        figures[f"turn{n + 1}_idle_after_last_sample_ms"] = round(
            (heard_at_idle[n] - end) * 1000 / reply_rate, 1)

    # The LED, from its pins' history.
    assert led_states(factory) == [
        "starting", "idle", "connecting", "listening", "thinking", "speaking", "idle",
        "listening", "thinking", "speaking", "idle"]
    assert app.dropped_events == 0 and app.outbox.dropped_bytes == 0
    for name, value in figures.items():
        record_property(name, value)
    print("scenario figures: " + json.dumps(figures))
