"""talkie.mqtt against a real broker (mosquitto, support.broker) with a real MQTT client playing
Home Assistant: discovery retained, commands to the callback, state retained, the broker killed
and brought back, Home Assistant's restart, the last will of a killed process, a clean stop, and
a wrong password that never reaches the log."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiomqtt
import pytest

from support.broker import PASSWORD, USER, USERS, started
from talkie.config.credentials import Secret
from talkie.config.settings import MqttSettings
from talkie.mqtt import Device, Features, HomeAssistant

TESTS = Path(__file__).resolve().parents[1]
DEVICE = Device("talkie-test1", "talkie", "9.9.9")
ALL = Features(transcripts=True, camera=True, timers=True)
BASE = f"talkie/{DEVICE.id}"
CONFIGS = f"homeassistant/+/{DEVICE.id}/+/config"


@pytest.fixture
def broker(tmp_path):
    """A mosquitto anyone may use (support.broker)."""
    with started(tmp_path) as server:
        yield server


@pytest.fixture
def auth_broker(tmp_path):
    """A mosquitto only USER with PASSWORD may use."""
    with started(tmp_path, USERS) as server:
        yield server


def settings_for(server, **more) -> MqttSettings:
    return MqttSettings(enabled=True, host=server.host, port=server.port, **more)


def make_link(server, got=None, features=ALL, password=None, **more) -> HomeAssistant:
    got = [] if got is None else got
    return HomeAssistant(
        settings_for(server, **more),
        password,
        DEVICE,
        features,
        lambda name, value: got.append((name, value)),
        backoff_s=(0.05, 0.2),
        auth_retry_s=0.3,
    )


async def read(client: aiomqtt.Client, done, timeout: float = 8.0) -> dict[str, aiomqtt.Message]:
    """The latest message of each topic, read until ``done(latest)`` holds."""
    latest: dict[str, aiomqtt.Message] = {}
    async with asyncio.timeout(timeout):
        if done(latest):
            return latest
        async for message in client.messages:
            latest[str(message.topic)] = message
            if done(latest):
                return latest
    return latest


def online(latest) -> bool:
    message = latest.get(f"{BASE}/availability")
    return message is not None and message.payload == b"online"


async def until(condition, timeout: float = 8.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


async def stopped(task: asyncio.Task) -> None:
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass


def test_discovery_state_and_commands_through_a_real_broker(broker):
    async def scenario():
        got: list = []
        # a retained command left on the broker from long ago must not fire
        async with aiomqtt.Client(broker.host, broker.port) as old:
            await old.publish(f"{BASE}/press/set", b"PRESS", qos=1, retain=True)
        link = make_link(broker, got)
        link.update(
            state="ready",
            volume=40,
            speaker_mute=False,
            mic_mute=True,
            camera=True,
            last_heard="what time is it",
            last_said="It is ten past four.",
            timers={"count": 1, "next": "tea", "next_at": "2026-01-05T16:30:00+00:00"},
        )
        task = asyncio.create_task(link.run())
        try:
            await until(lambda: link.connected)
            # Home Assistant comes later: all it needs is retained on the broker
            async with aiomqtt.Client(broker.host, broker.port) as ha:
                await ha.subscribe([(CONFIGS, 1), (f"{BASE}/#", 1)])
                latest = await read(
                    ha,
                    lambda m: (
                        online(m)
                        and sum(t.endswith("/config") for t in m) == 11
                        and f"{BASE}/timers" in m
                    ),
                )
                configs = {
                    t: json.loads(m.payload) for t, m in latest.items() if t.endswith("config")
                }
                assert all(latest[t].retain for t in configs)
                assert set(configs) == {
                    f"homeassistant/{c}/{DEVICE.id}/{k}/config"
                    for c, k in (
                        ("sensor", "state"),
                        ("sensor", "last_heard"),
                        ("sensor", "last_said"),
                        ("button", "press"),
                        ("text", "say"),
                        ("button", "stop"),
                        ("number", "volume"),
                        ("switch", "speaker_mute"),
                        ("switch", "mic_mute"),
                        ("switch", "camera"),
                        ("sensor", "timers"),
                    )
                }
                volume = configs[f"homeassistant/number/{DEVICE.id}/volume/config"]
                assert volume["command_topic"] == f"{BASE}/volume/set"
                assert volume["device"]["identifiers"] == [DEVICE.id]
                states = {
                    t[len(BASE) + 1 :]: m.payload
                    for t, m in latest.items()
                    if t.startswith(BASE) and m.retain
                }
                assert states == {
                    "availability": b"online",
                    "state": b"ready",
                    "volume": b"40",
                    "speaker_mute": b"OFF",
                    "mic_mute": b"ON",
                    "camera": b"ON",
                    "last_heard": b"what time is it",
                    "last_said": b"It is ten past four.",
                    "timers": states["timers"],
                    "press/set": b"PRESS",
                }
                assert json.loads(states["timers"])["count"] == 1
                assert got == []  # the stale retained press did nothing

                # commands, as Home Assistant sends them (not retained)
                for topic, payload in (
                    ("press/set", b"PRESS"),
                    ("say/set", b" hello there "),
                    ("volume/set", b"55"),
                    ("volume/set", b"555"),
                    ("speaker_mute/set", b"ON"),
                    ("mic_mute/set", b"OFF"),
                    ("camera/set", b"OFF"),
                    ("stop/set", b"PRESS"),
                    ("say/set", b"\xff\xfe"),
                ):
                    await ha.publish(f"{BASE}/{topic}", payload, qos=1)
                await until(lambda: len(got) == 7)
                assert got == [
                    ("press", None),
                    ("say", "hello there"),
                    ("volume", 55),
                    ("speaker_mute", True),
                    ("mic_mute", False),
                    ("camera", False),
                    ("stop", None),
                ]

                # state from the shell, published retained as it changes (latest wins)
                for n in range(20):
                    link.update(volume=n)
                link.update(state="listening", speaker_mute=True)
                latest = await read(
                    ha,
                    lambda m: (
                        f"{BASE}/state" in m
                        and f"{BASE}/volume" in m
                        and m[f"{BASE}/volume"].payload == b"19"
                        and f"{BASE}/speaker_mute" in m
                    ),
                )
                assert latest[f"{BASE}/state"].payload == b"listening"
                assert latest[f"{BASE}/speaker_mute"].payload == b"ON"
            async with aiomqtt.Client(broker.host, broker.port) as late:  # retained for the next
                await late.subscribe(f"{BASE}/+", 1)
                latest = await read(late, lambda m: len(m) >= 9)
                assert latest[f"{BASE}/volume"].payload == b"19" and latest[f"{BASE}/volume"].retain
        finally:
            await stopped(task)

    asyncio.run(scenario())


def test_features_off_remove_entities_and_transcripts(broker):
    async def scenario():
        link = make_link(broker)
        link.update(last_heard="hello", state="ready")
        task = asyncio.create_task(link.run())
        await until(lambda: link.connected)
        await stopped(task)
        quiet = make_link(broker, features=Features(transcripts=False, camera=False, timers=True))
        task = asyncio.create_task(quiet.run())
        try:
            await until(lambda: quiet.connected)
            async with aiomqtt.Client(broker.host, broker.port) as ha:
                await ha.subscribe([(CONFIGS, 1), (f"{BASE}/#", 1)])
                latest = await read(
                    ha,
                    lambda m: online(m) and sum(t.endswith("/config") for t in m) == 8,
                    timeout=3,
                )
                topics = {t.split("/")[3] for t in latest if t.endswith("/config")}
                assert topics == {
                    "state",
                    "press",
                    "say",
                    "stop",
                    "volume",
                    "speaker_mute",
                    "mic_mute",
                    "timers",
                }  # the others' retained configs are gone
                assert f"{BASE}/last_heard" not in latest  # and so is the transcript
                await ha.publish(f"{BASE}/camera/set", b"ON", qos=1)
        finally:
            await stopped(task)

    asyncio.run(scenario())


def test_the_broker_killed_and_back_is_one_line_then_a_fresh_announcement(broker, caplog):
    caplog.set_level(logging.DEBUG, logger="talkie.mqtt")

    async def scenario():
        link = make_link(broker)
        link.update(state="ready", volume=30)
        task = asyncio.create_task(link.run())
        try:
            await until(lambda: link.connected)
            caplog.clear()
            broker.kill()
            await until(lambda: not link.connected)
            await asyncio.sleep(1.5)  # many tries meanwhile (the waits are 0.05 to 0.2 s)
            link.update(state="speaking")  # while down: kept, sent once back
            broker.start()  # no persistence: the broker forgot every retained message
            await until(lambda: link.connected)
            async with aiomqtt.Client(broker.host, broker.port) as ha:
                await ha.subscribe([(CONFIGS, 1), (f"{BASE}/+", 1)])
                latest = await read(
                    ha,
                    lambda m: (
                        online(m)
                        and f"{BASE}/state" in m
                        and sum(t.endswith("/config") for t in m) == 11
                    ),
                )
                assert latest[f"{BASE}/state"].payload == b"speaking"
                assert latest[f"{BASE}/volume"].payload == b"30"
        finally:
            await stopped(task)
        lines = [
            (r.levelname, r.getMessage())
            for r in caplog.records
            if r.name == "talkie.mqtt" and r.levelno >= logging.INFO
        ]
        assert lines == [
            (
                "WARNING",
                f"MQTT connection to broker {broker.host}:{broker.port} lost (the "
                "connection was lost): retrying in the background; Home Assistant shows talkie "
                "unavailable",
            ),
            ("INFO", f"MQTT broker {broker.host}:{broker.port} connected again: talkie announced"),
        ]
        tries = [
            r for r in caplog.records if r.levelno == logging.DEBUG and "next try" in r.getMessage()
        ]
        assert len(tries) >= 3  # it did keep trying, quietly

    asyncio.run(scenario())


def test_a_broker_down_at_start_is_one_warning(tmp_path, caplog):
    from support.broker import free_port

    class Nowhere:
        host, port = "127.0.0.1", free_port()

    async def scenario():
        link = make_link(Nowhere)
        task = asyncio.create_task(link.run())
        await asyncio.sleep(1.0)
        assert not link.connected
        await stopped(task)

    asyncio.run(scenario())
    warned = [
        r.getMessage()
        for r in caplog.records
        if r.name == "talkie.mqtt" and r.levelno >= logging.WARNING
    ]
    assert warned == [
        f"MQTT broker 127.0.0.1:{Nowhere.port} unreachable (connection refused): "
        "retrying in the background; Home Assistant shows talkie unavailable"
    ]


def test_home_assistant_restarting_gets_the_device_announced_again(broker):
    async def scenario():
        link = make_link(broker)
        link.update(state="ready")
        task = asyncio.create_task(link.run())
        try:
            await until(lambda: link.connected)
            async with aiomqtt.Client(broker.host, broker.port) as ha:
                await ha.subscribe([(CONFIGS, 1), (f"{BASE}/state", 1)])
                await read(ha, lambda m: sum(t.endswith("/config") for t in m) == 11)
                await ha.publish("homeassistant/status", b"online", qos=1)  # HA's birth
                latest = await read(
                    ha,
                    lambda m: (
                        sum(t.endswith("/config") and not msg.retain for t, msg in m.items()) == 11
                        and f"{BASE}/state" in m
                        and not m[f"{BASE}/state"].retain
                    ),
                    timeout=5,
                )
                assert latest[f"{BASE}/state"].payload == b"ready"
        finally:
            await stopped(task)

    asyncio.run(scenario())


def test_a_clean_stop_says_offline_and_is_quick(broker):
    async def scenario():
        link = make_link(broker)
        task = asyncio.create_task(link.run())
        await until(lambda: link.connected)
        began = time.monotonic()
        await stopped(task)
        took = time.monotonic() - began
        async with aiomqtt.Client(broker.host, broker.port) as ha:
            await ha.subscribe(f"{BASE}/availability", 1)
            latest = await read(ha, lambda m: f"{BASE}/availability" in m)
        message = latest[f"{BASE}/availability"]
        assert (message.payload, message.retain) == (b"offline", True)
        assert took < 1.5, took

    asyncio.run(scenario())


def test_the_last_will_says_offline_when_talkie_is_killed(broker):
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "support.mqtt_device", broker.host, str(broker.port), DEVICE.id],
        env=env,
        cwd=TESTS,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )

    async def scenario():
        async with aiomqtt.Client(broker.host, broker.port) as ha:
            await ha.subscribe(f"{BASE}/availability", 1)
            await read(ha, online, timeout=15)
            await ha.publish(f"{BASE}/press/set", b"PRESS", qos=1)
            await asyncio.to_thread(lambda: process.stdout.readline())  # it got the command
            process.send_signal(signal.SIGKILL)
            await read(ha, lambda m: not online(m) and f"{BASE}/availability" in m)
            assert process.wait(timeout=5) == -signal.SIGKILL
        async with aiomqtt.Client(broker.host, broker.port) as later:
            await later.subscribe(f"{BASE}/availability", 1)
            latest = await read(later, lambda m: f"{BASE}/availability" in m)
            assert latest[f"{BASE}/availability"].payload == b"offline"
            assert latest[f"{BASE}/availability"].retain

    try:
        asyncio.run(scenario())
    finally:
        process.kill()
        _, err = process.communicate(timeout=10)
    assert b"Traceback" not in err, err.decode()[-2000:]


def test_a_wrong_password_is_one_clear_line_and_never_logged(auth_broker, caplog, tmp_path):
    caplog.set_level(logging.DEBUG)
    logging.getLogger("talkie.mqtt.client").setLevel(logging.DEBUG)  # paho's packet lines too
    wrong = "wrong-Qq42-S3CR3T-pw"
    source = str(tmp_path / "mqtt-password")

    async def scenario():
        link = make_link(auth_broker, username=USER, password=Secret(wrong, source))
        task = asyncio.create_task(link.run())
        await asyncio.sleep(1.2)  # a few tries, 0.15 to 0.3 s apart
        assert not link.connected
        await stopped(task)
        right = make_link(auth_broker, username=USER, password=Secret(PASSWORD, source))
        task = asyncio.create_task(right.run())
        try:
            await until(lambda: right.connected)
        finally:
            await stopped(task)

    try:
        asyncio.run(scenario())
    finally:
        logging.getLogger("talkie.mqtt.client").setLevel(logging.WARNING)
    records = caplog.records
    assert records
    for record in records:
        text = record.getMessage() + (caplog.text if record.exc_info else "")
        assert wrong not in text and PASSWORD not in text, record.getMessage()
    assert wrong not in caplog.text and PASSWORD not in caplog.text
    errors = [
        r.getMessage() for r in records if r.name == "talkie.mqtt" and r.levelno >= logging.WARNING
    ]
    assert errors == [
        f"MQTT broker {auth_broker.host}:{auth_broker.port} refused talkie (not "
        f'authorised, user "{USER}"): check [mqtt] username and the password in '
        f"{source}; trying again every few minutes; Home Assistant shows talkie "
        "unavailable"
    ]
