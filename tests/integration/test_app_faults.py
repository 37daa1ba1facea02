"""What the user sees when things go wrong, through the real stack (SDK + Live double, PulseAudio
audio, MockFactory panel): a rejected key is an error in words, logged once, retried only on a press;
a link that drops mid-turn is reopened and the whole turn is sent again, so no word is lost."""

from __future__ import annotations

import asyncio
import logging

import numpy as np
import pytest

from support.pulse import align, read_wav
from talkie import config
from talkie.shell.app import App, Factories
from talkie.core.machine import Phase
from talkie.config.credentials import load_api_key
from tests.support.daemon import BUTTON, Shows, led_states, write_config
from tests.support.live_double import AutoReply, LiveDouble, tone

pytestmark = pytest.mark.audio


async def start(settings, factory, shows, control_path, **kw):
    from talkie.panel import open_panel

    key = load_api_key(settings.live.api_key_file, env={})
    app = App(settings, key, on_show=shows, control_path=str(control_path), **kw,
              factories=Factories(panel=lambda s, **kw: open_panel(s.panel, pin_factory=factory,
                                                                   **kw)))
    task = asyncio.create_task(app.run())
    await asyncio.wait_for(app.ready.wait(), 10)
    await asyncio.wait_for(app.prepared.wait(), 10)
    return app, task


async def stop(app, task):
    app.stop()
    await asyncio.wait_for(task, 5)


def test_a_rejected_key_is_an_error_in_words_logged_once(tmp_path, pulse, caplog):
    from gpiozero.pins.mock import MockFactory, MockPWMPin

    factory = MockFactory(pin_class=MockPWMPin)

    async def main(double):
        settings = config.load(write_config(tmp_path, double, pulse, "AIzaSy-not-the-right-key"))
        shows = Shows()
        app, task = await start(settings, factory, shows, tmp_path / "control")
        button = factory.pin(BUTTON)
        for attempt in (1, 2):
            button.drive_low()
            await shows.until(lambda p: p.count(Phase.ERROR) == attempt)  # noqa: B023 - awaited here
            button.drive_high()
        status = shows.shown[-1][1]
        await stop(app, task)
        return status

    with caplog.at_level(logging.INFO, logger="talkie"):
        with LiveDouble(api_keys=("AIzaSy-the-right-key-000000",)) as double:
            status = asyncio.run(asyncio.wait_for(main(double), 60))
            attempts = len(double.connections)
    # the key came from [live] api_key_file: that file is where a good one goes
    assert status == f"error: API key rejected: put a valid key in {tmp_path / 'api-key'}"
    assert attempts == 2  # one connect per press: no retry loop on a fault only a person can fix
    lines = [r for r in caplog.records if "API key rejected" in r.getMessage()
             and not r.getMessage().startswith("state:")]
    assert len(lines) == 1 and lines[0].levelno == logging.ERROR
    assert "AIzaSy-not-the-right-key" not in caplog.text
    # The LED shows the latest state (a connect refused within milliseconds may not be drawn);
    # what it ends on is what the user sees.
    assert led_states(factory)[-1] == "error"


def test_a_link_dropped_mid_turn_is_reopened_and_the_whole_turn_sent_again(
        tmp_path, pulse, speech_wav):
    from gpiozero.pins.mock import MockFactory, MockPWMPin

    factory = MockFactory(pin_class=MockPWMPin)
    _, speech = read_wav(speech_wav)

    async def main(double):
        settings = config.load(write_config(tmp_path, double, pulse, "AIzaSy-key-1234567890"))
        shows = Shows()
        app, task = await start(settings, factory, shows, tmp_path / "control")
        button = factory.pin(BUTTON)
        button.drive_low()
        playing = asyncio.create_task(pulse.aplay_into_mic(speech_wav))
        await double.wait_for_message("audio", nth=25, timeout=20)  # half a second in
        await double.connections[0].close(1011, "Internal error encountered.")
        await playing
        button.drive_high()
        await shows.until(lambda p: Phase.SPEAKING in p and p[-1] is Phase.IDLE)
        await stop(app, task)
        return shows.phases

    answer = AutoReply(pcm=tone(0.5), delay_s=0.2)
    with LiveDouble(api_keys=("AIzaSy-key-1234567890",), auto_reply=answer) as double:
        phases = asyncio.run(asyncio.wait_for(main(double), 60))
        first, second = double.connections[0], double.connections[1]
        kinds2 = [m.kind for m in double.messages if m.conn == second.number]
        sent = np.frombuffer(double.audio_received(second.number), dtype=np.int16)
        first_audio = len(double.audio_received(first.number))
    assert first_audio > 0 and first.close_code == 1011
    assert kinds2[:2] == ["setup", "activity_start"] and kinds2[-1] == "activity_end"
    assert set(kinds2[2:-1]) == {"audio"}
    lag, corr = align(speech, sent)
    assert corr >= 0.9 and 0 <= lag and lag + len(speech) <= len(sent)  # every word, once more
    assert Phase.RECONNECTING in phases
    assert phases[phases.index(Phase.RECONNECTING):] == [
        Phase.RECONNECTING, Phase.LISTENING, Phase.THINKING, Phase.SPEAKING, Phase.IDLE]


def test_what_first_boot_rejected_is_on_the_led_and_in_the_status_until_a_press(
        tmp_path, pulse, caplog):
    from gpiozero.pins.mock import MockFactory, MockPWMPin

    factory = MockFactory(pin_class=MockPWMPin)
    problem = tmp_path / "talkie-firstboot-error"
    problem.write_text("talkie.toml rejected: /boot/firmware/talkie.toml:3: [audio] volume: "
                       "out of range; found 2.0; allowed 0 to 1\n")

    async def main(double):
        settings = config.load(write_config(tmp_path, double, pulse, "AIzaSy-key-1234567890"))
        shows = Shows()
        app, task = await start(settings, factory, shows, tmp_path / "control",
                                firstboot_error=str(problem))
        before_press = led_states(factory)
        status = shows.shown[-1][1]
        button = factory.pin(BUTTON)
        button.drive_low()
        await shows.until(lambda p: Phase.LISTENING in p)
        button.drive_high()
        await shows.until(lambda p: p[-1] is Phase.IDLE and Phase.THINKING in p)
        await stop(app, task)
        return before_press, status, shows.shown[-1][1], led_states(factory)

    with caplog.at_level(logging.ERROR, logger="talkie"):
        with LiveDouble(api_keys=("AIzaSy-key-1234567890",), auto_reply=AutoReply(seconds=0.2)) as double:
            before_press, status, status_after, leds = asyncio.run(asyncio.wait_for(main(double), 30))
    assert before_press[-1] == "error"
    assert status.startswith("ready; first boot: talkie.toml rejected:") and "[audio] volume" in status
    assert status_after == "ready" and leds[-1] == "idle"
    said = [r.getMessage() for r in caplog.records if "first boot" in r.getMessage()]
    assert len(said) == 1 and "fix the file there and reboot" in said[0]



def test_a_reload_rebuilds_the_microphone_chain_and_the_barge_in_policy(tmp_path, pulse):
    from gpiozero.pins.mock import MockFactory, MockPWMPin

    factory = MockFactory(pin_class=MockPWMPin)

    async def main(double):
        path = write_config(tmp_path, double, pulse, "AIzaSy-key-1234567890")
        app, task = await start(config.load(path), factory, Shows(), tmp_path / "control")
        seen = [(app.chain.echo, app.chain.barge_in, app.state.policy.barge_in,
                 app.audio.capture.block_ms)]
        first = app.chain
        text = path.read_text()
        path.write_text(text.replace("chunk_ms = 20", 'chunk_ms = 20\necho = "half_duplex"\n'
                                                      "barge_in = false"))
        app.reload()
        seen.append((app.chain.echo, app.chain.barge_in, app.state.policy.barge_in,
                     app.audio.capture.block_ms))
        replaced = app.chain is not first
        await stop(app, task)
        return seen, replaced

    with LiveDouble(api_keys=("AIzaSy-key-1234567890",)) as double:
        seen, replaced = asyncio.run(asyncio.wait_for(main(double), 30))
    # Shipped defaults: echo cancellation and barge-in, 10 ms capture blocks for a quick decision.
    assert seen[0] == ("aec", True, True, 10)
    # Neither after the reload: a new chain that passes blocks through, 20 ms blocks again.
    assert replaced and seen[1] == ("half_duplex", False, False, 20)
