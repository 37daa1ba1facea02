"""The everyday controls through the real stack (SDK + Live double, PulseAudio audio, MockFactory
panel with volume and mute buttons, the control socket): with the microphone off a press opens no
turn and not one audio byte reaches the server; the switch and the volume survive a restart."""

from __future__ import annotations

import asyncio

import pytest

from talkie import config
from talkie.config.credentials import load_api_key
from talkie.core.machine import Phase
from talkie.shell.app import App, Factories
from talkie.system import control_client
from tests.support.daemon import BUTTON, Shows, led_states, write_config
from tests.support.live_double import AutoReply, LiveDouble, tone

pytestmark = pytest.mark.audio

KEY = "AIzaSy-key-controls-000000"
UP, DOWN, MUTE = 5, 6, 16
CONTROLS = f"volume_up_pin = {UP}\nvolume_down_pin = {DOWN}\nmute_pin = {MUTE}\n"


def settings_for(tmp_path, double, pulse):
    path = write_config(tmp_path, double, pulse, KEY)
    # the control pins go into [panel] (write_config's [panel] is followed by the patterns)
    text = path.read_text().replace("[panel]\n", "[panel]\n" + CONTROLS, 1)
    path.write_text(text)
    return config.load(path)


async def start(settings, factory, shows, control_path):
    from talkie.panel import open_panel
    from talkie.panel.controls import ControlButtons

    app = App(
        settings, load_api_key(settings.live.api_key_file, env={}), on_show=shows,
        control_path=str(control_path),
        factories=Factories(
            panel=lambda s, **kw: open_panel(s.panel, pin_factory=factory, **kw),
            buttons=lambda s, **kw: ControlButtons(s.panel, pin_factory=factory, **kw)))
    task = asyncio.create_task(app.run())
    await asyncio.wait_for(app.ready.wait(), 20)
    await asyncio.wait_for(app.prepared.wait(), 20)
    return app, task


async def ctl(path, line):
    return await asyncio.to_thread(control_client.request, line, str(path))


async def click(factory, pin):
    factory.pin(pin).drive_low()
    await asyncio.sleep(0.05)
    factory.pin(pin).drive_high()


async def turn(factory, pulse, speech_wav):
    button = factory.pin(BUTTON)
    button.drive_low()
    await pulse.aplay_into_mic(speech_wav)
    button.drive_high()


def test_with_the_microphone_off_a_press_sends_nothing_and_the_switch_survives_a_restart(
        tmp_path, pulse, speech_wav):
    from gpiozero.pins.mock import MockFactory, MockPWMPin

    factory = MockFactory(pin_class=MockPWMPin)
    control = tmp_path / "control"

    async def main(double):
        settings = settings_for(tmp_path, double, pulse)
        shows = Shows()
        app, task = await start(settings, factory, shows, control)
        # a turn with the microphone on: the session opens, audio flows, the answer plays
        await turn(factory, pulse, speech_wav)
        await shows.until(lambda p: Phase.SPEAKING in p and p[-1] is Phase.IDLE)
        heard_before = len(double.audio_received())
        starts_before = len(double.messages_of("activity_start"))
        # the mute button switches the microphone off: the LED says so, and so does status
        await click(factory, MUTE)
        await shows.until(lambda p: app.state.mic_off)
        status = await ctl(control, "status")
        # a press and a whole sentence into the microphone: nothing leaves the device
        await turn(factory, pulse, speech_wav)
        await asyncio.sleep(0.5)
        muted_phases = list(shows.phases[-3:])
        silent = (len(double.audio_received()) - heard_before,
                  len(double.messages_of("activity_start")) - starts_before)
        app.stop()
        await asyncio.wait_for(task, 10)
        # a restart keeps the microphone off
        shows2 = Shows()
        app2, task2 = await start(settings, factory, shows2, control)
        await shows2.until(lambda p: app2.state.mic_off)
        restarted = await ctl(control, "status")
        # `talkie ctl mute mic off` switches it on again: a press talks again
        on = await ctl(control, "mute mic off")
        await shows2.until(lambda p: not app2.state.mic_off)
        await turn(factory, pulse, speech_wav)
        await shows2.until(lambda p: Phase.SPEAKING in p and p[-1] is Phase.IDLE)
        again = len(double.messages_of("activity_start")) - starts_before
        app2.stop()
        await asyncio.wait_for(task2, 10)
        return status, silent, muted_phases, restarted, on, again

    answer = AutoReply(pcm=tone(0.3), delay_s=0.1)
    with LiveDouble(api_keys=(KEY,), auto_reply=answer) as double:
        status, silent, muted_phases, restarted, on, again = asyncio.run(
            asyncio.wait_for(main(double), 90))
    assert status["microphone"] == "off" and status["status"] == "ready (microphone off)"
    assert silent == (0, 0), "not one byte and no turn while the microphone is off"
    assert Phase.LISTENING not in muted_phases
    assert restarted["microphone"] == "off"
    assert on == {"ok": True, "microphone": "on"}
    assert again == 1
    assert "muted" in led_states(factory)


def test_volume_from_ctl_and_the_buttons_reaches_the_speaker_and_survives_a_restart(
        tmp_path, pulse):
    from gpiozero.pins.mock import MockFactory, MockPWMPin

    factory = MockFactory(pin_class=MockPWMPin)
    control = tmp_path / "control"

    async def main(double):
        settings = settings_for(tmp_path, double, pulse)
        app, task = await start(settings, factory, Shows(), control)
        replies = [await ctl(control, "volume 40")]
        replies.append(await ctl(control, "volume +15"))
        replies.append(await ctl(control, "volume -5"))
        levels = [app.playback.volume]
        await click(factory, UP)
        await asyncio.sleep(0.1)
        levels.append(app.playback.volume)
        replies.append(await ctl(control, "mute speaker on"))
        levels.append(app.playback.volume)
        refused = [await ctl(control, line)
                   for line in ("volume 140", "volume loud", "mute mic maybe", "mute tv on")]
        app.stop()
        await asyncio.wait_for(task, 10)
        app2, task2 = await start(settings, factory, Shows(), control)
        after = await ctl(control, "volume")
        await click(factory, DOWN)  # a step unmutes: the speaker is heard again
        await asyncio.sleep(0.1)
        level2 = app2.playback.volume
        app2.stop()
        await asyncio.wait_for(task2, 10)
        return replies, levels, refused, after, level2

    with LiveDouble(api_keys=(KEY,)) as double:
        replies, levels, refused, after, level2 = asyncio.run(asyncio.wait_for(main(double), 60))
    assert [r["volume"] for r in replies[:3]] == [40, 55, 50]
    assert levels == pytest.approx([0.5, 0.6, 0.0])
    assert replies[3] == {"ok": True, "speaker": "muted"}
    assert [r["ok"] for r in refused] == [False] * 4
    assert "allowed 0 to 100" in refused[0]["error"]
    assert after == {"ok": True, "volume": 60, "speaker": "muted"}
    assert level2 == pytest.approx(0.5)
