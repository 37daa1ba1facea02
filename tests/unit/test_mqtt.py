"""talkie.mqtt without a broker: the discovery payloads against Home Assistant's MQTT discovery
schema, entities switched off by the features, command payloads, the warnings' rate, the device
id, the topics, the state payloads and the password file."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import subprocess
import sys

import pytest

from talkie.config.settings import MqttSettings
from talkie.mqtt import HomeAssistant, PasswordProblem, device_id, read_password
from talkie.mqtt.commands import SAY_MAX, Refused, Warnings, parse
from talkie.mqtt.discovery import (
    COMMAND_KEYS,
    ENTITIES,
    STATE_KEYS,
    Device,
    Features,
    Topics,
    config_payload,
    discovery,
    state_payload,
)

DEVICE = Device("talkie-0123abcd", "Kitchen talkie", "1.2.3")
ALL = Features(transcripts=True, camera=True, timers=True)
NONE = Features(transcripts=False, camera=False, timers=False)
TOPICS = Topics.of("homeassistant", "talkie", DEVICE.id)

# ---- Home Assistant's MQTT discovery schema, as a table of keys ---------------------------------
# Taken from home-assistant/core homeassistant/components/mqtt/: schemas.py (MQTT_ENTITY_COMMON_SCHEMA,
# MQTT_AVAILABILITY_SCHEMA, MQTT_ENTITY_DEVICE_INFO_SCHEMA, MQTT_ORIGIN_INFO_SCHEMA), config.py
# (MQTT_BASE_SCHEMA, MQTT_RO_SCHEMA, MQTT_RW_SCHEMA) and each platform's PLATFORM_SCHEMA_MODERN in
# button.py, sensor.py, text.py, number.py, switch.py; and the configuration variables of
# home-assistant.io source/_integrations/{button,sensor,text,number,switch}.mqtt.markdown
# (default_entity_id, which replaced object_id in Home Assistant 2025.10). Entities are announced
# one per config topic, so "platform" (device discovery only) is not allowed here.
COMMON = {
    # MQTT_BASE_SCHEMA
    "qos",
    "encoding",
    # MQTT_AVAILABILITY_SCHEMA
    "availability",
    "availability_mode",
    "availability_template",
    "availability_topic",
    "payload_available",
    "payload_not_available",
    # MQTT_ENTITY_COMMON_SCHEMA
    "device",
    "origin",
    "enabled_by_default",
    "entity_category",
    "entity_picture",
    "icon",
    "json_attributes_topic",
    "json_attributes_template",
    "object_id",
    "default_entity_id",
    "unique_id",
    "name",
}
RW = {"command_topic", "command_template", "optimistic", "retain", "state_topic"}  # MQTT_RW_SCHEMA
SCHEMA = {  # component: (allowed keys on top of COMMON, required keys)
    "button": (
        {"command_topic", "command_template", "device_class", "payload_press", "retain"},
        {"command_topic"},
    ),
    "sensor": (
        {
            "state_topic",
            "value_template",
            "device_class",
            "expire_after",
            "force_update",
            "last_reset_value_template",
            "state_class",
            "unit_of_measurement",
            "suggested_display_precision",
            "options",
        },
        {"state_topic"},
    ),
    "text": (RW | {"max", "min", "mode", "pattern", "value_template"}, {"command_topic"}),
    "number": (
        RW
        | {
            "device_class",
            "min",
            "max",
            "mode",
            "payload_reset",
            "step",
            "unit_of_measurement",
            "value_template",
        },
        {"command_topic"},
    ),
    "switch": (
        RW
        | {"device_class", "payload_on", "payload_off", "state_on", "state_off", "value_template"},
        {"command_topic"},
    ),
}
DEVICE_KEYS = {
    "identifiers",
    "connections",
    "manufacturer",
    "model",
    "model_id",
    "name",
    "hw_version",
    "serial_number",
    "sw_version",
    "via_device",
    "suggested_area",
    "configuration_url",
}
ORIGIN_KEYS, ORIGIN_REQUIRED = {"name", "sw_version", "support_url"}, {"name"}
MODES = {"text": {"text", "password"}, "number": {"auto", "box", "slider"}}
TOPIC_KEYS = {"state_topic", "command_topic", "availability_topic", "json_attributes_topic"}


def schema_problems(component: str, payload: dict) -> list[str]:
    """What Home Assistant's discovery schema of ``component`` finds wrong with ``payload``."""
    allowed, required = SCHEMA[component]
    problems = [f"unknown key {k}" for k in payload if k not in COMMON | allowed]
    problems += [f"missing {k}" for k in required if k not in payload]
    if "availability" in payload and "availability_topic" in payload:
        problems.append("availability and availability_topic are exclusive")
    for key in TOPIC_KEYS & payload.keys():
        topic = payload[key]
        if not isinstance(topic, str) or not topic or "+" in topic or "#" in topic:
            problems.append(f"{key}: not a valid topic: {topic!r}")
    device = payload.get("device", {})
    problems += [f"device: unknown key {k}" for k in device if k not in DEVICE_KEYS]
    if device and not (device.get("identifiers") or device.get("connections")):
        problems.append("device: needs identifiers or connections")
    if device and "unique_id" not in payload:
        problems.append("a device needs a unique_id")
    origin = payload.get("origin", {})
    problems += [f"origin: unknown key {k}" for k in origin if k not in ORIGIN_KEYS]
    problems += [f"origin: missing {k}" for k in ORIGIN_REQUIRED - origin.keys() if origin]
    if "default_entity_id" in payload and not payload["default_entity_id"].startswith(
        component + "."
    ):
        problems.append("default_entity_id must be in the component's domain")
    if "mode" in payload and payload["mode"] not in MODES[component]:
        problems.append(f"mode: {payload['mode']!r} not in {sorted(MODES[component])}")
    if component == "text" and not payload.get("min", 0) <= payload.get("max", 255) <= 255:
        problems.append("text: min <= max <= 255")
    if component == "number" and payload.get("step", 1) < 0.001:
        problems.append("number: step >= 0.001")
    if payload.get("qos", 0) not in (0, 1, 2):
        problems.append("qos: 0, 1 or 2")
    return problems


@pytest.mark.parametrize("entity", ENTITIES, ids=[e.key for e in ENTITIES])
def test_each_discovery_payload_fits_home_assistants_schema(entity):
    payload = json.loads(json.dumps(config_payload(entity, DEVICE, TOPICS)))
    assert schema_problems(entity.component, payload) == []


def test_the_schema_table_catches_an_unknown_key_and_a_missing_one():
    payload = config_payload(ENTITIES[3], DEVICE, TOPICS)  # the press button
    assert schema_problems("button", {**payload, "payload_pres": "PRESS"}) == [
        "unknown key payload_pres"
    ]
    without = {k: v for k, v in payload.items() if k != "command_topic"}
    assert schema_problems("button", without) == ["missing command_topic"]
    assert schema_problems(
        "number", {**config_payload(ENTITIES[6], DEVICE, TOPICS), "mode": "dial"}
    ) == ["mode: 'dial' not in ['auto', 'box', 'slider']"]


def test_the_payloads_say_what_each_entity_is():
    by_key = {e.key: config_payload(e, DEVICE, TOPICS) for e in ENTITIES}
    for key, payload in by_key.items():
        assert payload["unique_id"] == f"talkie-0123abcd_{key}"
        assert payload["availability_topic"] == "talkie/talkie-0123abcd/availability"
        assert (payload["payload_available"], payload["payload_not_available"]) == (
            "online",
            "offline",
        )
        assert payload["device"] == {
            "identifiers": ["talkie-0123abcd"],
            "name": "Kitchen talkie",
            "model": "talkie",
            "sw_version": "1.2.3",
            "manufacturer": "talkie",
        }
        assert payload["icon"].startswith("mdi:")
    assert by_key["state"]["default_entity_id"] == "sensor.kitchen_talkie_state"
    assert by_key["press"]["command_topic"] == "talkie/talkie-0123abcd/press/set"
    assert by_key["stop"]["command_topic"] == "talkie/talkie-0123abcd/stop/set"
    volume = by_key["volume"]
    assert (volume["min"], volume["max"], volume["step"], volume["mode"]) == (0, 100, 1, "slider")
    assert volume["unit_of_measurement"] == "%"
    assert volume["state_topic"] == "talkie/talkie-0123abcd/volume"
    say = by_key["say"]
    assert (say["max"], say["mode"], say["command_topic"]) == (
        255,
        "text",
        "talkie/talkie-0123abcd/say/set",
    )
    for switch in ("speaker_mute", "mic_mute", "camera"):
        payload = by_key[switch]
        assert (payload["payload_on"], payload["payload_off"]) == ("ON", "OFF")
        assert (payload["state_on"], payload["state_off"]) == ("ON", "OFF")
    timers = by_key["timers"]
    assert timers["value_template"] == "{{ value_json.count }}"
    assert (
        timers["json_attributes_topic"] == timers["state_topic"] == "talkie/talkie-0123abcd/timers"
    )


def test_features_off_remove_their_entities_with_an_empty_retained_config():
    every = {topic: (payload, on) for topic, payload, on in discovery(DEVICE, ALL, TOPICS)}
    assert all(on and payload for payload, on in every.values())
    assert len(every) == len(ENTITIES) == 11
    fewer = {topic: (payload, on) for topic, payload, on in discovery(DEVICE, NONE, TOPICS)}
    removed = sorted(topic for topic, (payload, on) in fewer.items() if not on)
    assert removed == [
        "homeassistant/sensor/talkie-0123abcd/last_heard/config",
        "homeassistant/sensor/talkie-0123abcd/last_said/config",
        "homeassistant/sensor/talkie-0123abcd/timers/config",
        "homeassistant/switch/talkie-0123abcd/camera/config",
    ]
    assert all(fewer[t][0] == b"" for t in removed)
    assert all(json.loads(p) for t, (p, on) in fewer.items() if on)


def test_transcripts_are_never_kept_when_the_device_has_none():
    quiet = HomeAssistant(MqttSettings(), None, DEVICE, NONE, lambda k, v: None)
    quiet.update(last_heard="my secret plans", last_said="noted", camera=True, state="ready")
    assert quiet._latest == {"state": b"ready"}
    told = HomeAssistant(MqttSettings(), None, DEVICE, ALL, lambda k, v: None)
    told.update(last_heard="hello", camera=False)
    assert told._latest == {"last_heard": b"hello", "camera": b"OFF"}


def test_update_keeps_only_the_latest_value_of_each_key_and_refuses_an_unknown_one():
    link = HomeAssistant(MqttSettings(), None, DEVICE, ALL, lambda k, v: None)
    for n in range(1000):
        link.update(volume=n % 101, state=f"state {n}")
    assert link._latest == {"volume": str(999 % 101).encode(), "state": b"state 999"}
    assert link._dirty == {"volume", "state"} and link._wake.is_set()
    with pytest.raises(ValueError, match="not a state key: 'colour'"):
        link.update(colour="red")
    assert not link.connected


# ---- commands --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "payload", "value"),
    [
        ("press", b"PRESS", None),
        ("stop", b"PRESS", None),
        ("press", b"", None),
        ("say", b"  what time is it?\n", "what time is it?"),
        ("say", "Grüße aus Köln".encode(), "Grüße aus Köln"),
        ("say", b"x" * SAY_MAX, "x" * SAY_MAX),
        ("volume", b"0", 0),
        ("volume", b"100", 100),
        ("volume", b" 42 ", 42),
        ("volume", b"42.0", 42),
        ("volume", b"41.6", 42),
        ("speaker_mute", b"ON", True),
        ("speaker_mute", b"OFF", False),
        ("mic_mute", b"on", True),
        ("camera", b"OFF", False),
        ("camera", b"ON\n", True),
    ],
)
def test_valid_commands_are_parsed(key, payload, value):
    assert parse(key, payload) == value


@pytest.mark.parametrize(
    ("key", "payload", "reason"),
    [
        ("say", b"", "empty"),
        ("say", b"   \n", "empty"),
        ("say", b"x" * (SAY_MAX + 1), f"too long ({SAY_MAX + 1} characters)"),
        ("say", b"\xff\xfehello", "not UTF-8 text"),
        ("volume", b"101", "out of range"),
        ("volume", b"-1", "out of range"),
        ("volume", b"loud", "not a number"),
        ("volume", b"nan", "out of range"),
        ("volume", b"inf", "out of range"),
        ("volume", b"", "not a number"),
        ("mic_mute", b"1", "allowed ON or OFF"),
        ("camera", b"true", "allowed ON or OFF"),
        ("speaker_mute", b"", "allowed ON or OFF"),
        ("press", b"x" * 100_000, "too large"),
        ("volume", b"5" * 100_000, "too large"),
        ("reboot", b"now", "unknown command"),
    ],
)
def test_invalid_commands_are_refused_with_a_reason(key, payload, reason):
    refused = parse(key, payload)
    assert isinstance(refused, Refused) and reason in refused.reason
    assert len(refused.reason) < 120  # a huge payload is never repeated in the warning


def test_command_keys_are_the_documented_ones():
    assert COMMAND_KEYS == ("press", "say", "stop", "volume", "speaker_mute", "mic_mute", "camera")
    assert STATE_KEYS == (
        "state",
        "last_heard",
        "last_said",
        "volume",
        "speaker_mute",
        "mic_mute",
        "camera",
        "timers",
    )


def test_at_most_one_warning_per_command_kind_per_minute():
    now = [1000.0]
    warnings = Warnings(lambda: now[0])
    assert warnings.allow("volume") == 0
    assert [warnings.allow("volume") for _ in range(50)] == [None] * 50
    assert warnings.allow("say") == 0  # another kind has its own minute
    now[0] += 59.9
    assert warnings.allow("volume") is None
    now[0] += 0.2
    assert warnings.allow("volume") == 51  # the next one counts those left unsaid
    assert warnings.allow("volume") is None


def test_a_bad_command_is_dropped_and_the_handler_still_gets_the_good_ones(caplog):
    got = []
    link = HomeAssistant(MqttSettings(), None, DEVICE, ALL, lambda k, v: got.append((k, v)))
    for payload in (b"55", b"555", b"556", b"12"):
        link._command("volume", payload)
    assert got == [("volume", 55), ("volume", 12)]
    warned = [r for r in caplog.records if r.name == "talkie.mqtt"]
    assert [r.getMessage() for r in warned] == [
        "MQTT command volume dropped: out of range; found '555'; allowed 0 to 100"
    ]


def test_a_failing_handler_is_logged_and_does_not_stop_the_commands(caplog):
    def handler(key, value):
        raise RuntimeError("shell bug")

    link = HomeAssistant(MqttSettings(), None, DEVICE, ALL, handler)
    link._command("press", b"PRESS")
    assert "MQTT command press: its handler failed" in caplog.text


# ---- device id, topics, state payloads, the password -------------------------------------------


def test_device_id_is_the_setting_or_derived_from_the_machine(tmp_path):
    assert device_id(MqttSettings(device_id="kitchen")) == "kitchen"
    machine = tmp_path / "machine-id"
    machine.write_text("0f2b9c1d6e5a4b3c2d1e0f9a8b7c6d5e\n")
    derived = device_id(MqttSettings(), machine_id_file=str(machine))
    digest = hashlib.sha256(b"talkie mqtt device\0" + b"0f2b9c1d6e5a4b3c2d1e0f9a8b7c6d5e")
    assert derived == "talkie-" + digest.hexdigest()[:12]
    assert "0f2b9c1d" not in derived  # the machine id itself is not published
    assert device_id(MqttSettings(), machine_id_file=str(machine)) == derived  # stable
    other = tmp_path / "other-id"
    other.write_text("11112222333344445555666677778888\n")
    assert device_id(MqttSettings(), machine_id_file=str(other)) != derived
    missing = str(tmp_path / "none")
    assert (
        device_id(MqttSettings(), machine_id_file=missing, hostname=lambda: "Kitchen Pi.local")
        == "talkie-kitchen-pi"
    )
    assert device_id(MqttSettings(), machine_id_file=missing, hostname=lambda: "...") == "talkie"


def test_derived_ids_fit_home_assistants_node_id():
    import re

    for host in ("RASPBERRYPI", "ünïcode-host", "a" * 300, "x_y-z.lan"):
        found = device_id(MqttSettings(), machine_id_file="/nonexistent", hostname=lambda h=host: h)
        assert re.fullmatch(r"[a-z0-9_-]{1,64}", found), found


def test_topics():
    topics = Topics.of("ha", "devices", "kitchen")
    assert topics.availability == "devices/kitchen/availability"
    assert topics.ha_status == "ha/status"
    assert topics.state("volume") == "devices/kitchen/volume"
    assert topics.command("press") == "devices/kitchen/press/set"
    assert topics.config(ENTITIES[6]) == "ha/number/kitchen/volume/config"
    assert topics.command_key("devices/kitchen/volume/set") == "volume"
    assert topics.command_key("devices/kitchen/state/set") is None  # not a command
    assert topics.command_key("devices/other/volume/set") is None
    assert topics.command_key("devices/kitchen/volume") is None


def test_state_payloads():
    assert state_payload("state", "listening") == b"listening"
    long = state_payload("last_said", "word " * 200).decode()
    assert len(long) == 255 and long.endswith("…")
    assert state_payload("last_heard", "é" * 255).decode() == "é" * 255
    assert state_payload("volume", 42) == b"42"
    assert state_payload("volume", 250) == b"100" and state_payload("volume", -3) == b"0"
    assert (state_payload("mic_mute", True), state_payload("camera", False)) == (b"ON", b"OFF")
    timers = json.loads(
        state_payload("timers", {"count": 2, "next": "tea", "next_at": "2026-01-05T16:30:00+01:00"})
    )
    assert timers == {"count": 2, "next": "tea", "next_at": "2026-01-05T16:30:00+01:00"}
    assert json.loads(state_payload("timers", {"count": 0, "next": None, "next_at": None})) == {
        "count": 0,
        "next": None,
        "next_at": None,
    }


def test_the_password_is_read_from_its_file_or_the_credential(tmp_path):
    path = tmp_path / "mqtt-password"
    path.write_text("  s3cret-pw \n")
    secret = read_password(str(path))
    assert secret.reveal() == "s3cret-pw" and "s3cret" not in repr(secret) + str(secret)
    creds = tmp_path / "creds"
    creds.mkdir()
    assert read_password(str(path), str(creds)).reveal() == "s3cret-pw"  # no credential: the file
    (creds / "mqtt-password").write_text("from-systemd\n")
    assert read_password(str(path), str(creds)).reveal() == "from-systemd"
    path.write_text("\n")
    with pytest.raises(PasswordProblem, match="is empty"):
        read_password(str(path))
    with pytest.raises(
        PasswordProblem, match="cannot read the MQTT password file .*: no such file"
    ):
        read_password(str(tmp_path / "missing"))


def test_talkie_mqtt_does_not_import_aiomqtt_until_it_runs():
    code = (
        "import sys, talkie.mqtt; from talkie.mqtt import HomeAssistant; "
        "print('aiomqtt' in sys.modules, 'paho' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.split() == ["False", "False"]


def test_devices_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        DEVICE.name = "x"  # type: ignore[misc]
