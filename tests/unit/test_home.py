"""Home Assistant's side of the shell (:mod:`talkie.shell.home`), with the adapter faked: its
commands are the button's, ``talkie ctl``'s and the controls'; the state it is handed follows
every step and every control."""

from __future__ import annotations

import asyncio
import dataclasses
import logging

from talkie.config import Settings
from talkie.config.credentials import Secret
from talkie.config.settings import LogSettings, MqttSettings, SessionSettings
from talkie.core import machine as m
from talkie.shell.app import App
from tests.support import fakes


class FakeHome:
    """The adapter: what it was handed (the latest of each key), and its commands' callback."""

    def __init__(self, settings, on_command) -> None:
        self.settings, self.on_command = settings, on_command
        self.latest: dict[str, object] = {}
        self.running = asyncio.Event()
        self.stopped = False

    async def run(self) -> None:
        self.running.set()
        try:
            await asyncio.Event().wait()
        finally:
            self.stopped = True

    def update(self, **values: object) -> None:
        self.latest.update(values)


async def started(tmp_path, *, transcripts=True):
    homes: list[FakeHome] = []
    factories = fakes.factories(fakes.Log())
    factories.home = lambda settings, *, on_command: homes.append(
        FakeHome(settings, on_command)) or homes[-1]
    settings = dataclasses.replace(
        Settings(), mqtt=MqttSettings(enabled=True), log=LogSettings(transcripts=transcripts),
        session=SessionSettings(state_dir=str(tmp_path)))
    app = App(settings, Secret("AIzaSy-home-0123456789", "test"), factories=factories,
              firstboot_error="")
    task = asyncio.create_task(app.run())
    async with asyncio.timeout(10):
        await app.ready.wait()
        while not homes:
            await asyncio.sleep(0)
        await homes[0].running.wait()
    return app, task, homes[0]


async def settle(app: App) -> None:
    async with asyncio.timeout(5):
        while app._events:
            await asyncio.sleep(0)
    await asyncio.sleep(0)


async def stop(app, task):
    app.stop()
    await asyncio.wait_for(task, 5)


def test_commands_from_home_assistant_are_the_buttons_and_the_controls(tmp_path, caplog):
    async def main():
        app, task, home = await started(tmp_path)
        first = dict(home.latest)
        home.on_command("volume", 30)
        home.on_command("speaker_mute", True)
        await settle(app)
        volume = (app.playback.volume, home.latest["volume"], home.latest["speaker_mute"])
        home.on_command("press", None)
        await settle(app)
        pressed = (app.state.held, home.latest["state"])
        home.on_command("press", None)  # the next press ends the turn
        await settle(app)
        released = app.state.held
        with caplog.at_level(logging.INFO, logger="talkie"):
            for _ in range(3):
                home.on_command("say", "hello")  # busy (the turn waits for its answer)
            await settle(app)
        home.on_command("stop", None)
        home.on_command("mic_mute", True)
        home.on_command("camera", False)
        await settle(app)
        private = (app.state.mic_off, home.latest["mic_mute"], app.state.camera_off,
                   home.latest["camera"], home.latest["state"])
        app.emit(m.Heard("what is the time"))
        app.emit(m.Said("five past ten"))
        await settle(app)
        transcripts = (home.latest["last_heard"], home.latest["last_said"])
        await stop(app, task)
        return first, volume, pressed, released, private, transcripts, home.stopped

    first, volume, pressed, released, private, transcripts, stopped = asyncio.run(main())
    assert first["state"] == "ready" and first["mic_mute"] is False
    assert first["timers"] == {"count": 0, "next": None, "next_at": None}
    assert volume == (0.0, 30, True)  # muted: the speaker at 0, the volume kept
    assert pressed[0] is True and pressed[1] in ("connecting", "listening")
    assert released is False
    refused = [r for r in caplog.records if "Home Assistant's say refused" in r.getMessage()]
    assert len(refused) == 1, "refused once per kind, not once per message"
    assert private == (True, True, True, False, "ready (microphone off)")
    assert transcripts == ("what is the time", "five past ten")
    assert stopped, "the adapter's task ends with the daemon"


def test_without_transcripts_no_transcript_is_handed_over(tmp_path):
    async def main():
        app, task, home = await started(tmp_path, transcripts=False)
        app.emit(m.Heard("private words"))
        await settle(app)
        await stop(app, task)
        return home.latest

    latest = asyncio.run(main())
    assert "last_heard" not in latest and "last_said" not in latest
    assert "private words" not in repr(latest)


def test_a_reload_that_changes_mqtt_starts_the_link_again_and_one_that_does_not_keeps_it(
        tmp_path):
    from talkie import config

    path = tmp_path / "talkie.toml"
    base = f'[session]\nstate_dir = "{tmp_path}"\n[mqtt]\nenabled = true\n'
    path.write_text(base)

    async def main():
        homes: list[FakeHome] = []
        factories = fakes.factories(fakes.Log())
        factories.home = lambda settings, *, on_command: homes.append(
            FakeHome(settings, on_command)) or homes[-1]
        app = App(config.load(path), Secret("AIzaSy-home-0123456789", "test"),
                  factories=factories, firstboot_error="")
        task = asyncio.create_task(app.run())
        async with asyncio.timeout(10):
            await app.ready.wait()
            while not homes:
                await asyncio.sleep(0)
            path.write_text(base + "[audio]\nvolume = 0.4\n")  # nothing of Home Assistant's
            app.reload()
            await asyncio.sleep(0.1)
            kept = len(homes)
            path.write_text(base + 'device_name = "Hall"\n')
            app.reload()
            while len(homes) < 2:
                await asyncio.sleep(0.01)
            await homes[1].running.wait()
            await asyncio.sleep(0)
        await stop(app, task)
        return kept, homes

    kept, homes = asyncio.run(main())
    assert kept == 1
    assert homes[0].stopped and homes[1].settings.mqtt.device_name == "Hall"
    assert homes[1].latest["state"] == "ready", "the new link is handed the state at once"
