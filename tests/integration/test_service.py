"""talkie as systemd runs it: `talkie run` in its own process with a real NOTIFY_SOCKET and watchdog,
driven only through `talkie ctl` (as Home Assistant or an SSH session would), reloaded with SIGHUP and
stopped with SIGTERM in the middle of a turn.

Real parts: the daemon process, the google-genai SDK against the Live double over TLS, PortAudio audio
through the PulseAudio null sinks, the notify datagram socket, the control socket.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import talkie

from support.pulse import align, read_wav
from tests.support.daemon import write_config
from tests.support.live_double import AutoReply, LiveDouble, tone

pytestmark = pytest.mark.audio
KEY = "AIzaSy-service-test-0123456789"


class NotifySocket:
    """systemd's side of sd_notify: a datagram socket read by a thread, every message kept in order."""

    def __init__(self, path):
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.1)
        self.messages: list[str] = []
        self.arrived = threading.Condition()
        self._open = True
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        while self._open:
            try:
                data = self.sock.recv(4096)
            except (TimeoutError, OSError):
                continue
            with self.arrived:
                self.messages.append(data.decode())
                self.arrived.notify_all()

    def wait_for(self, predicate, timeout=20.0, what="a message"):
        with self.arrived:
            if not self.arrived.wait_for(lambda: predicate(self.messages), timeout):
                raise AssertionError(f"{what} not received; got {self.messages}")

    def has(self, text, after=0):
        return lambda msgs: any(text in m for m in msgs[after:])

    def close(self):
        self._open = False
        self._reader.join(timeout=2)
        self.sock.close()


def wait_for_line(path, text, timeout=20.0):
    """Wait (bounded) until the daemon's log has a line with ``text``."""
    deadline = time.monotonic() + timeout
    while text not in path.read_text():
        if time.monotonic() > deadline:
            raise AssertionError(f"{text!r} not logged: {path.read_text()}")
        time.sleep(0.02)


def unit_python_environment() -> dict[str, str]:
    """The interpreter's settings the unit gives the daemon (its Environment=PYTHON* lines)."""
    unit = Path(__file__).resolve().parents[2] / "systemd" / "talkie.service"
    pairs = (line.removeprefix("Environment=").split("=", 1) for line in unit.read_text().splitlines()
             if line.startswith("Environment=PYTHON"))
    return dict(pairs)


def test_the_unit_runs_the_daemon_without_docstrings():
    assert unit_python_environment().get("PYTHONOPTIMIZE") == "2"


def ctl(control, *words, env):
    result = subprocess.run([sys.executable, "-m", "talkie", "ctl", "--socket", str(control),
                             *words], capture_output=True, text=True, timeout=30, env=env)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_the_service_lifecycle_through_notify_and_ctl(tmp_path, pulse, speech_wav):
    _, speech = read_wav(speech_wav)
    config = None
    notify = NotifySocket(tmp_path / "notify")
    control = tmp_path / "control"
    answer = AutoReply(pcm=tone(1.0), delay_s=0.2)
    with LiveDouble(api_keys=(KEY,), auto_reply=answer) as double:
        config = write_config(tmp_path, double, pulse, KEY)
        env = {**pulse.env, "NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "400000",
               "RUNTIME_DIRECTORY": str(tmp_path), "GPIOZERO_PIN_FACTORY": "none",
               "PYTHONUNBUFFERED": "1"}
        env = {k: v for k, v in env.items() if not k.startswith(("GEMINI_", "GOOGLE_"))}
        env.update(unit_python_environment())  # e.g. PYTHONOPTIMIZE=2: no docstrings, no asserts
        log_path = tmp_path / "daemon.log"
        with open(log_path, "w") as log_file:
            proc = subprocess.Popen([sys.executable, "-m", "talkie", "run", "--config", str(config)],
                                    stdin=subprocess.DEVNULL, stdout=log_file, stderr=log_file,
                                    env=env)
        try:
            notify.wait_for(notify.has("READY=1"), what="READY=1")
            notify.wait_for(notify.has("WATCHDOG=1"), what="a watchdog ping")
            status = ctl(control, "status", env=env)
            assert "state: idle" in status and f"version: {talkie.version()}" in status

            # a whole turn through the control socket
            ctl(control, "press", env=env)
            pulse.play_into_mic(speech_wav)
            ctl(control, "release", env=env)
            mark = len(notify.messages)
            notify.wait_for(notify.has("STATUS=speaking", mark), what="speaking")
            notify.wait_for(notify.has("STATUS=ready", mark), what="ready again")
            sent = np.frombuffer(double.audio_received(), dtype=np.int16)
            lag, corr = align(speech, sent)
            assert corr >= 0.9 and 0 <= lag and lag + len(speech) <= len(sent)

            # reload: a broken file is refused (the running config stays), a good one applied
            good = config.read_text()
            config.write_text(good.replace("chunk_ms = 20", "chunk_ms = 5000"))
            proc.send_signal(signal.SIGHUP)
            wait_for_line(log_path, "reload refused")
            config.write_text(good.replace("[audio]", "[audio]\nvolume = 0.5"))
            mark = len(notify.messages)
            proc.send_signal(signal.SIGHUP)
            notify.wait_for(lambda m: any("RELOADING=1" in x for x in m[mark:])
                            and any("READY=1" in x for x in m[mark:]), what="a reload")

            # SIGTERM in the middle of a turn: the session is closed and the process gone in 2 s
            ctl(control, "press", env=env)
            double.wait_for_message_sync("activity_start", nth=2, timeout=10)
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=2)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            notify.close()
        conn = double.connections[0]
        conn_closed = conn.closed
    log = log_path.read_text()
    assert code == 0, log
    assert conn_closed and len(double.connections) == 1
    assert KEY not in log and "Traceback" not in log
    assert f"{config}:" in log and "reload refused, the running config stays" in log
    assert "[audio] chunk_ms: out of range" in log
    assert "reloaded" in log and "audio.volume" in log

    # what systemd saw, in order
    kinds = []
    for message in notify.messages:
        for line in message.splitlines():
            kind = line.split("=", 1)[0]
            if kind in ("READY", "RELOADING", "STOPPING", "WATCHDOG", "STATUS") and \
                    (not kinds or kinds[-1] != kind):
                kinds.append(kind)
    first = {k: kinds.index(k) for k in ("READY", "STATUS", "WATCHDOG", "RELOADING", "STOPPING")}
    assert first["READY"] < first["RELOADING"] < first["STOPPING"]
    assert first["WATCHDOG"] < first["STOPPING"] and kinds[-1] == "STOPPING"
    assert kinds[kinds.index("RELOADING") + 1] == "READY"
    statuses = [line[7:] for msg in notify.messages for line in msg.splitlines()
                if line.startswith("STATUS=")]
    for word in ("ready", "listening", "thinking", "speaking"):
        assert word in statuses
