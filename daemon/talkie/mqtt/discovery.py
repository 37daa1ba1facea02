"""What talkie tells Home Assistant: its topics, the discovery message of each entity, and the
state payloads. Pure functions of the settings, the device and its features: nothing here talks
to a broker.

Home Assistant's MQTT discovery (https://www.home-assistant.io/integrations/mqtt/#mqtt-discovery):
one retained config message per entity at ``<discovery_prefix>/<component>/<device_id>/<object_id>
/config``; an empty retained message there removes the entity.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

#: Home Assistant's longest state (``MAX_LENGTH_STATE_STATE``): longer text is cut to it.
STATE_MAX = 255
MANUFACTURER = "talkie"
ONLINE, OFFLINE = b"online", b"offline"
ON, OFF = "ON", "OFF"
PRESS = "PRESS"


@dataclass(frozen=True)
class Device:
    """What Home Assistant shows for the device."""

    id: str
    name: str
    version: str
    model: str = "talkie"


@dataclass(frozen=True)
class Features:
    """Which entities exist: the transcripts' sensors, the camera's switch, the timers' sensor."""

    transcripts: bool
    camera: bool
    timers: bool


@dataclass(frozen=True)
class Entity:
    """One entity: its Home Assistant component, its key (the object id, and the state and
    command topics' last level), its name, icon, the feature it needs, and its own keys."""

    component: str
    key: str
    name: str
    icon: str
    state: bool = False  # publishes a state
    command: bool = False  # takes commands
    needs: str = ""  # "", or the Features field that must be on
    extra: tuple[tuple[str, Any], ...] = ()


SWITCH = (("payload_on", ON), ("payload_off", OFF), ("state_on", ON), ("state_off", OFF))

ENTITIES = (
    Entity("sensor", "state", "State", "mdi:account-voice", state=True),
    Entity(
        "sensor", "last_heard", "Last heard", "mdi:ear-hearing", state=True, needs="transcripts"
    ),
    Entity(
        "sensor",
        "last_said",
        "Last said",
        "mdi:message-reply-text",
        state=True,
        needs="transcripts",
    ),
    Entity(
        "button",
        "press",
        "Press to talk",
        "mdi:gesture-tap-button",
        command=True,
        extra=(("payload_press", PRESS),),
    ),
    Entity(
        "text",
        "say",
        "Say",
        "mdi:message-text",
        command=True,
        extra=(("min", 0), ("max", STATE_MAX), ("mode", "text")),
    ),
    Entity("button", "stop", "Stop", "mdi:stop", command=True, extra=(("payload_press", PRESS),)),
    Entity(
        "number",
        "volume",
        "Volume",
        "mdi:volume-high",
        state=True,
        command=True,
        extra=(
            ("min", 0),
            ("max", 100),
            ("step", 1),
            ("mode", "slider"),
            ("unit_of_measurement", "%"),
        ),
    ),
    Entity("switch", "speaker_mute", "Speaker mute", "mdi:volume-off", True, True, extra=SWITCH),
    Entity("switch", "mic_mute", "Microphone mute", "mdi:microphone-off", True, True, extra=SWITCH),
    Entity("switch", "camera", "Camera allowed", "mdi:camera", True, True, "camera", SWITCH),
    Entity(
        "sensor",
        "timers",
        "Timers",
        "mdi:timer-outline",
        state=True,
        needs="timers",
        extra=(("value_template", "{{ value_json.count }}"), ("state_class", "measurement")),
    ),
)
BY_KEY = {entity.key: entity for entity in ENTITIES}
#: The keys ``update()`` takes, and the commands ``on_command`` is given.
STATE_KEYS = tuple(e.key for e in ENTITIES if e.state)
COMMAND_KEYS = tuple(e.key for e in ENTITIES if e.command)


def enabled(entity: Entity, features: Features) -> bool:
    return not entity.needs or bool(getattr(features, entity.needs))


def slug(text: str) -> str:
    """``text`` as Home Assistant makes an entity id of it: lower case, runs of anything but
    letters and digits as one ``_``."""
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_") or "talkie"


@dataclass(frozen=True)
class Topics:
    """Every topic of one device, from the settings' prefixes and its id."""

    discovery_prefix: str
    base: str  # <base_topic>/<device_id>
    device_id: str

    @classmethod
    def of(cls, discovery_prefix: str, base_topic: str, device_id: str) -> Topics:
        return cls(discovery_prefix, f"{base_topic}/{device_id}", device_id)

    @property
    def availability(self) -> str:
        return f"{self.base}/availability"

    @property
    def ha_status(self) -> str:
        """Where Home Assistant says it has (re)started: its birth message, "online"."""
        return f"{self.discovery_prefix}/status"

    def state(self, key: str) -> str:
        return f"{self.base}/{key}"

    def command(self, key: str) -> str:
        return f"{self.base}/{key}/set"

    def config(self, entity: Entity) -> str:
        return f"{self.discovery_prefix}/{entity.component}/{self.device_id}/{entity.key}/config"

    def command_key(self, topic: str) -> str | None:
        """The command a topic is for, or None."""
        prefix, suffix = f"{self.base}/", "/set"
        if topic.startswith(prefix) and topic.endswith(suffix):
            key = topic[len(prefix) : -len(suffix)]
            return key if key in COMMAND_KEYS else None
        return None


def config_payload(entity: Entity, device: Device, topics: Topics) -> dict[str, Any]:
    """The discovery config of one entity (Home Assistant's full key names, no abbreviations)."""
    payload: dict[str, Any] = {
        "name": entity.name,
        "unique_id": f"{device.id}_{entity.key}",
        "default_entity_id": f"{entity.component}.{slug(device.name)}_{entity.key}",
        "icon": entity.icon,
        "device": {
            "identifiers": [device.id],
            "name": device.name,
            "model": device.model,
            "sw_version": device.version,
            "manufacturer": MANUFACTURER,
        },
        "origin": {"name": "talkie", "sw_version": device.version},
        "availability_topic": topics.availability,
        "payload_available": ONLINE.decode(),
        "payload_not_available": OFFLINE.decode(),
        "qos": 1,
    }
    if entity.state:
        payload["state_topic"] = topics.state(entity.key)
    if entity.command:
        payload["command_topic"] = topics.command(entity.key)
    if entity.key == "timers":
        payload["json_attributes_topic"] = topics.state(entity.key)
    payload.update(entity.extra)
    return payload


def discovery(
    device: Device, features: Features, topics: Topics
) -> Iterator[tuple[str, bytes, bool]]:
    """(config topic, retained payload, whether the entity exists) for every entity talkie knows:
    the config of each enabled one, and an empty payload (Home Assistant's way to remove an entity)
    for each that is not, in case it was announced before."""
    for entity in ENTITIES:
        on = enabled(entity, features)
        body = json.dumps(config_payload(entity, device, topics), separators=(",", ":"))
        yield topics.config(entity), body.encode() if on else b"", on


def cut(text: str, limit: int = STATE_MAX) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def state_payload(key: str, value: object) -> bytes:
    """The retained payload of one state key; ValueError for a key talkie does not publish."""
    if key not in STATE_KEYS:
        raise ValueError(f"not a state key: {key!r}; allowed: {', '.join(STATE_KEYS)}")
    if key in ("speaker_mute", "mic_mute", "camera"):
        return (ON if value else OFF).encode()
    if key == "volume":
        number = int(value) if isinstance(value, (int, float)) else 0
        return str(max(0, min(100, number))).encode()
    if key == "timers":
        timers: Mapping[str, Any] = value if isinstance(value, Mapping) else {}
        body = {
            "count": int(timers.get("count") or 0),
            "next": timers.get("next"),
            "next_at": timers.get("next_at"),
        }
        return json.dumps(body, default=str, ensure_ascii=False).encode()
    return cut("" if value is None else str(value)).encode()
