"""Home Assistant through an MQTT broker: talkie as one device, announced by MQTT discovery, its
state published and its commands (press, say, stop, volume, mute, camera) passed to a callback.

This is an adapter: it knows nothing of the machine. The shell makes a :class:`HomeAssistant`
when ``[mqtt] enabled``, runs it as a task, feeds it state with ``update(...)`` and turns its
commands into the machine's events. aiomqtt is imported only when it runs.
"""

from __future__ import annotations

from talkie.mqtt.discovery import COMMAND_KEYS, STATE_KEYS, Device, Features
from talkie.mqtt.homeassistant import HomeAssistant
from talkie.mqtt.identity import PasswordProblem, device_id, read_password

__all__ = [
    "COMMAND_KEYS",
    "STATE_KEYS",
    "Device",
    "Features",
    "HomeAssistant",
    "PasswordProblem",
    "device_id",
    "read_password",
]
