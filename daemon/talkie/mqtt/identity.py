"""Who talkie is to the broker and to Home Assistant: its device id (stable across starts), and the
broker password, read from its file as a :class:`~talkie.config.credentials.Secret`."""

from __future__ import annotations

import hashlib
import os
import re
import socket
from collections.abc import Callable

from talkie.config.credentials import Secret, SecretProblem, read_secret
from talkie.config.files import read_file
from talkie.config.settings import MqttSettings

MACHINE_ID = "/etc/machine-id"
#: The systemd credential that, when the unit loads one, holds the password.
CREDENTIAL_NAME = "mqtt-password"


def device_id(
    settings: MqttSettings,
    *,
    machine_id_file: str = MACHINE_ID,
    hostname: Callable[[], str] = socket.gethostname,
) -> str:
    """``settings.device_id``, or one derived from the machine: ``talkie-`` and 12 hex digits of
    a hash of /etc/machine-id (the id itself is not to be published), else ``talkie-`` and the
    host name; lower-case ``[a-z0-9_-]`` either way."""
    if settings.device_id:
        return settings.device_id
    try:
        machine = read_file(machine_id_file, 4096).decode("ascii").strip()
    except (OSError, UnicodeDecodeError):
        machine = ""
    if machine:
        digest = hashlib.sha256(b"talkie mqtt device\0" + machine.encode()).hexdigest()
        return f"talkie-{digest[:12]}"
    host = re.sub(r"[^a-z0-9_-]+", "-", hostname().split(".")[0].lower()).strip("-")
    return f"talkie-{host[:48]}" if host else "talkie"


class PasswordProblem(Exception):
    """Why the password could not be read, in words fit to show (never the password)."""


def read_password(password_file: str, credentials_dir: str | None = None) -> Secret:
    """The broker password: the systemd credential ``mqtt-password`` if the unit loads one that
    is not empty (``/etc/talkie/mqtt-password``, root's alone), else the content of
    ``password_file`` (surrounding blanks dropped). :class:`PasswordProblem` if it cannot be read
    or is empty."""
    credential = os.path.join(credentials_dir, CREDENTIAL_NAME) if credentials_dir else None
    try:
        return read_secret(password_file, "the MQTT password file", credential)
    except SecretProblem as exc:
        raise PasswordProblem(str(exc)) from None
