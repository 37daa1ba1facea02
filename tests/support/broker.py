"""A real MQTT broker for the tests: Debian's mosquitto on 127.0.0.1, on a free port, with a config
of its own (no persistence), that can be stopped, killed and started again on the same port.

The fixtures skip when mosquitto is not installed, unless TALKIE_REQUIRE_AUDIO=1 (the test command
sets it, and installs mosquitto): there a missing broker is a failure.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

MOSQUITTO = "/usr/sbin/mosquitto"
PASSWD = "/usr/bin/mosquitto_passwd"


class BrokerUnavailable(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Broker:
    """One mosquitto. ``users`` ({name: password}): only they may connect (else anyone may)."""

    def __init__(self, folder: Path, users: dict[str, str] | None = None) -> None:
        self.folder, self.users = folder, users or {}
        self.host, self.port = "127.0.0.1", free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.log = folder / "mosquitto.log"
        self.config = folder / "mosquitto.conf"

    def _write_config(self) -> None:
        lines = [f"listener {self.port} 127.0.0.1", "persistence false", "user root",
                 f"log_dest file {self.log}", "log_type error", "log_type warning",
                 "log_type notice", "log_type information"]
        if self.users:
            passwords = self.folder / "passwords"
            passwords.unlink(missing_ok=True)
            for n, (user, password) in enumerate(self.users.items()):
                flags = ["-c"] if n == 0 else []
                subprocess.run([PASSWD, "-b", *flags, str(passwords), user, password], check=True,
                               capture_output=True, timeout=30)
            passwords.chmod(0o600)
            lines += ["allow_anonymous false", f"password_file {passwords}"]
        else:
            lines += ["allow_anonymous true"]
        self.config.write_text("\n".join(lines) + "\n")

    def start(self, timeout: float = 10.0) -> None:
        if not os.path.exists(MOSQUITTO):
            raise BrokerUnavailable(f"{MOSQUITTO} is missing (Debian package mosquitto)")
        if not self.config.exists():
            self._write_config()
        self.process = subprocess.Popen([MOSQUITTO, "-c", str(self.config)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                err = self.process.stderr.read().decode(errors="replace") if self.process.stderr else ""
                raise BrokerUnavailable(f"mosquitto exited {self.process.returncode}: {err[-500:]}"
                                        f"{self.log.read_text()[-500:] if self.log.exists() else ''}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise BrokerUnavailable(f"mosquitto did not listen on {self.host}:{self.port} in {timeout} s")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop it (SIGKILL: as if it crashed); the port stays this broker's for start()."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        if self.process.stderr:
            self.process.stderr.close()
        self.process = None

    def kill(self) -> None:
        self.stop(signal.SIGKILL)


@contextlib.contextmanager
def started(folder: Path, users: dict[str, str] | None = None):
    """A running mosquitto in ``folder`` for the length of the block (stopped after it).

    Skips when mosquitto is missing, unless TALKIE_REQUIRE_AUDIO=1: then it fails."""
    missing = [tool for tool in (MOSQUITTO, PASSWD) if not os.path.exists(tool)]
    if missing:
        if os.environ.get("TALKIE_REQUIRE_AUDIO") == "1":
            pytest.fail(f"TALKIE_REQUIRE_AUDIO=1 but {', '.join(missing)} missing (apt mosquitto)")
        pytest.skip(f"the MQTT tests need mosquitto ({', '.join(missing)} missing)")
    broker = Broker(folder, users)
    try:
        broker.start()
    except BrokerUnavailable as exc:
        if os.environ.get("TALKIE_REQUIRE_AUDIO") == "1":
            pytest.fail(f"TALKIE_REQUIRE_AUDIO=1 but {exc}")
        pytest.skip(str(exc))
    try:
        yield broker
    finally:
        broker.stop()


#: The one user of a broker started with ``users=USERS``, and its password.
USER, PASSWORD = "talkie", "pw-Zx81-S3CR3T-mqtt"
USERS = {USER: PASSWORD}
