"""``talkie check``'s MQTT line against a real broker (mosquitto): connected with the right
password, a wrong one named (never shown), a broker that is not there, [mqtt] off."""

from __future__ import annotations

import asyncio
import dataclasses
import io

from support.broker import PASSWORD, USER, USERS, free_port, started
from talkie.config import Settings
from talkie.config.settings import MqttSettings
from talkie.provision.checks.home import check_mqtt
from talkie.provision.checks.report import Report


def run(settings) -> str:
    out = io.StringIO()
    asyncio.run(asyncio.wait_for(check_mqtt(Report(out), settings), 30))
    return out.getvalue()


def with_mqtt(**mqtt) -> Settings:
    return dataclasses.replace(Settings(), mqtt=MqttSettings(enabled=True, device_id="talkie-t",
                                                             **mqtt))


def test_the_check_connects_and_names_a_wrong_password_without_showing_it(tmp_path):
    good, bad = tmp_path / "good", tmp_path / "bad"
    good.write_text(PASSWORD + "\n")
    bad.write_text("not-the-password-4711\n")
    folder = tmp_path / "broker"
    folder.mkdir()
    with started(folder, USERS) as broker:
        where = dict(host=broker.host, port=broker.port, username=USER)
        ok = run(with_mqtt(password_file=str(good), **where))
        wrong = run(with_mqtt(password_file=str(bad), **where))
    assert ok.startswith(f"OK   MQTT broker {broker.host}:{broker.port}: connected as {USER}; ")
    assert "talkie-t under homeassistant/" in ok
    assert wrong.startswith("FAIL MQTT broker ") and "password" in wrong
    assert "not-the-password-4711" not in wrong and PASSWORD not in ok + wrong


def test_no_broker_and_no_mqtt(tmp_path):
    nobody = run(with_mqtt(host="127.0.0.1", port=free_port()))
    off = run(Settings())
    missing = run(with_mqtt(username=USER, password_file=str(tmp_path / "none")))
    assert nobody.startswith("FAIL MQTT broker 127.0.0.1:") and "check [mqtt] host" in nobody
    assert off.startswith("SKIP Home Assistant: [mqtt] is off")
    assert missing.startswith("FAIL MQTT broker: cannot read the MQTT password file ")
