"""``talkie check``: the MQTT broker Home Assistant listens to, with the daemon's own adapter."""

from __future__ import annotations

import os
from typing import Any

from talkie.provision.checks.report import Report


async def check_mqtt(report: Report, settings: Any, *, credentials_dir: str | None = None) -> None:
    """Connect to the broker of ``[mqtt]`` as the daemon would (its user and password, its TLS),
    and leave again; nothing is announced."""
    mqtt = settings.mqtt
    if not mqtt.enabled:
        report.skip("Home Assistant: [mqtt] is off (enabled = false)")
        return
    from talkie import mqtt as adapter

    password = None
    if mqtt.password_file:
        try:
            password = adapter.read_password(
                mqtt.password_file, credentials_dir or os.environ.get("CREDENTIALS_DIRECTORY")
            )
        except adapter.PasswordProblem as exc:
            report.fail(f"MQTT broker: {exc}: put the password there (root's alone, 0600)")
            return
        report.hide(password.redact)
    device = adapter.Device(adapter.device_id(mqtt), mqtt.device_name, "check")
    features = adapter.Features(transcripts=False, camera=False, timers=False)
    link = adapter.HomeAssistant(mqtt, password, device, features, lambda name, value: None)
    where = f"{mqtt.host}:{mqtt.port}" + (" (TLS)" if mqtt.tls else "")
    why = await link.probe()
    if not why:
        user = f" as {mqtt.username}" if mqtt.username else ""
        report.ok(
            f"MQTT broker {where}: connected{user}; Home Assistant finds talkie as "
            f"{device.id} under {mqtt.discovery_prefix}/"
        )
    elif "password" in why or "authorised" in why:
        report.fail(f"MQTT broker {where}: {why}: check [mqtt] username and the password file")
    else:
        report.fail(f"MQTT broker {where}: {why}: check [mqtt] host and port, and the broker")
