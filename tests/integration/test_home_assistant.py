"""talkie in Home Assistant, through the whole daemon: a real broker (mosquitto), the real stack
(SDK + Live double, PulseAudio audio, MockFactory panel), and a real MQTT client as Home
Assistant. The device is announced; volume, the microphone's switch, press and say from Home
Assistant drive the machine; the broker dies and comes back mid-session while talkie carries on
talking, and is announced to again; a stopped daemon is "offline"."""

from __future__ import annotations

import asyncio
import json
import logging

import aiomqtt
import pytest

from support.broker import started
from talkie import config
from talkie.config.credentials import load_api_key
from talkie.core.machine import Phase
from talkie.shell.app import App, Factories
from talkie.shell.factories import _default_home
from tests.support.daemon import BUTTON, Shows, write_config
from tests.support.live_double import AutoReply, LiveDouble, tone

pytestmark = pytest.mark.audio


@pytest.fixture
def broker(tmp_path):
    """A mosquitto anyone may use (support.broker)."""
    folder = tmp_path / "broker"
    folder.mkdir()
    with started(folder) as server:
        yield server

KEY = "AIzaSy-key-home-assistant-0"
DEVICE = "talkie-kitchen"
BASE = f"talkie/{DEVICE}"


def settings_for(tmp_path, double, pulse, server):
    mqtt = (f'[mqtt]\nenabled = true\nhost = "{server.host}"\nport = {server.port}\n'
            f'device_id = "{DEVICE}"\ndevice_name = "Kitchen talkie"\n')
    return config.load(write_config(tmp_path, double, pulse, KEY, tail=mqtt))


async def start(settings, factory, shows, control_path):
    from talkie.panel import open_panel

    app = App(settings, load_api_key(settings.live.api_key_file, env={}), on_show=shows,
              control_path=str(control_path),
              factories=Factories(
                  panel=lambda s, **kw: open_panel(s.panel, pin_factory=factory, **kw),
                  home=lambda s, **kw: _default_home(s, backoff_s=(0.1, 0.5), **kw)))
    task = asyncio.create_task(app.run())
    await asyncio.wait_for(app.ready.wait(), 20)
    await asyncio.wait_for(app.prepared.wait(), 20)
    return app, task


class HomeAssistant:
    """What a Home Assistant sees of the broker: the latest message of every topic."""

    def __init__(self, server) -> None:
        self.server = server
        self.latest: dict[str, bytes] = {}
        self.changed = asyncio.Event()
        self._task: asyncio.Task | None = None

    async def __aenter__(self):
        self._task = asyncio.create_task(self._follow())
        return self

    async def __aexit__(self, *exc):
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)

    async def _follow(self):
        while True:
            try:
                async with aiomqtt.Client(self.server.host, self.server.port) as client:
                    await client.subscribe("homeassistant/#")
                    await client.subscribe(f"{BASE}/#")
                    async for message in client.messages:
                        self.latest[str(message.topic)] = bytes(message.payload)
                        self.changed.set()
            except aiomqtt.MqttError:
                await asyncio.sleep(0.1)  # the broker is down: as Home Assistant does, again

    async def until(self, predicate, timeout=15.0):
        async with asyncio.timeout(timeout):
            while not predicate(self.latest):
                self.changed.clear()
                await self.changed.wait()

    def state(self, key):
        return self.latest.get(f"{BASE}/{key}")

    async def send(self, key, payload):
        async with aiomqtt.Client(self.server.host, self.server.port) as client:
            await client.publish(f"{BASE}/{key}/set", payload)


def configs(latest) -> dict[str, dict]:
    return {topic.split("/")[-2]: json.loads(payload) for topic, payload in latest.items()
            if topic.startswith("homeassistant/") and topic.endswith("/config") and payload}


def test_talkie_in_home_assistant_survives_its_broker_and_goes_offline(
        tmp_path, pulse, speech_wav, broker, caplog):
    from gpiozero.pins.mock import MockFactory, MockPWMPin

    factory = MockFactory(pin_class=MockPWMPin)

    async def main(double):
        settings = settings_for(tmp_path, double, pulse, broker)
        shows = Shows()
        async with HomeAssistant(broker) as ha:
            app, task = await start(settings, factory, shows, tmp_path / "control")
            await ha.until(lambda t: t.get(f"{BASE}/availability") == b"online"
                           and len(configs(t)) >= 10)
            announced = configs(ha.latest)
            first_state = ha.state("state")
            # the volume from Home Assistant reaches the speaker, and comes back as its state
            await ha.send("volume", "35")
            await ha.until(lambda t: t.get(f"{BASE}/volume") == b"35")
            volume = app.playback.volume
            # the microphone off from Home Assistant: a press from there opens nothing
            await ha.send("mic_mute", "ON")
            await ha.until(lambda t: t.get(f"{BASE}/mic_mute") == b"ON")
            await ha.send("press", "PRESS")
            await asyncio.sleep(0.5)
            muted = (app.state.mic_off, app.state.phase, len(double.connections))
            await ha.send("mic_mute", "OFF")
            await ha.until(lambda t: t.get(f"{BASE}/mic_mute") == b"OFF")
            # say from Home Assistant: a text turn; stop from there drops the wait for its answer
            await ha.send("say", "what time is it?")
            await double.wait_for_message("client_content", timeout=15)
            await shows.until(lambda p: p[-1] is Phase.THINKING)
            await ha.send("stop", "PRESS")
            await shows.until(lambda p: p[-1] is Phase.IDLE)
            texts = [m.data for m in double.messages_of("client_content")]
            # the broker dies mid-session: talking carries on (the button)
            broker.kill()
            factory.pin(BUTTON).drive_low()
            await pulse.aplay_into_mic(speech_wav)
            factory.pin(BUTTON).drive_high()
            await shows.until(lambda p: Phase.SPEAKING in p and p[-1] is Phase.IDLE)
            talked = len(double.messages_of("activity_end"))
            # it comes back (empty: no persistence): talkie announces itself again
            ha.latest.clear()
            broker.start()
            await ha.until(lambda t: t.get(f"{BASE}/availability") == b"online"
                           and len(configs(t)) == len(announced)
                           and t.get(f"{BASE}/volume") == b"35", timeout=20)
            app.stop()
            await asyncio.wait_for(task, 10)
            await ha.until(lambda t: t.get(f"{BASE}/availability") == b"offline")
        return announced, first_state, volume, muted, texts, talked

    answer = AutoReply(pcm=tone(0.3), delay_s=0.1)
    with caplog.at_level(logging.INFO, logger="talkie"), \
            LiveDouble(api_keys=(KEY,), auto_reply=answer) as double:
        announced, first_state, volume, muted, texts, talked = asyncio.run(
            asyncio.wait_for(main(double), 120))
    down = [r for r in caplog.records if r.name.startswith("talkie.mqtt")
            and r.levelno >= logging.WARNING]
    assert len(down) == 1, [r.getMessage() for r in down]  # one line for the outage, not a retry each
    assert {"state", "press", "say", "stop", "volume", "speaker_mute", "mic_mute", "timers",
            "last_heard", "last_said"} <= set(announced)
    assert announced["volume"]["device"]["name"] == "Kitchen talkie"
    assert first_state == b"ready"
    assert volume == pytest.approx(0.35)
    assert muted == (True, Phase.IDLE, 0), "a press from Home Assistant with the mic off: nothing"
    assert "what time is it?" in json.dumps(texts), "say from Home Assistant is a text turn"
    assert talked >= 1


def test_a_killed_daemon_is_unavailable_in_home_assistant(tmp_path, pulse, broker):
    """`talkie run` as systemd runs it, killed outright (SIGKILL: no goodbye): the broker's last
    will tells Home Assistant it is gone."""
    import signal
    import subprocess
    import sys

    async def main(proc):
        async with HomeAssistant(broker) as ha:
            await ha.until(lambda t: t.get(f"{BASE}/availability") == b"online", 30)
            proc.send_signal(signal.SIGKILL)
            await asyncio.to_thread(proc.wait, 10)
            await ha.until(lambda t: t.get(f"{BASE}/availability") == b"offline", 10)
            return ha.latest.get(f"{BASE}/state")

    with LiveDouble(api_keys=(KEY,)) as double:
        config_path = settings_for(tmp_path, double, pulse, broker).source
        env = {**pulse.env, "RUNTIME_DIRECTORY": str(tmp_path), "GPIOZERO_PIN_FACTORY": "none",
               "PYTHONUNBUFFERED": "1"}
        env = {k: v for k, v in env.items() if not k.startswith(("GEMINI_", "GOOGLE_"))}
        with open(tmp_path / "daemon.log", "w") as log_file:
            proc = subprocess.Popen([sys.executable, "-m", "talkie", "run", "--config",
                                     config_path], stdin=subprocess.DEVNULL, stdout=log_file,
                                    stderr=log_file, env=env)
        try:
            last_state = asyncio.run(asyncio.wait_for(main(proc), 60))
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert last_state == b"ready"
