"""The control socket: a real server on a unix socket, driven by the client and `talkie ctl`."""

from __future__ import annotations

import asyncio
import errno
import io
import json
import logging
import re
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from talkie.system import control
from talkie.system.control import ControlError, ControlServer, Refused
from talkie.system import control_client
from talkie.system.control_client import ctl, default_socket_path

ROOT = Path(__file__).resolve().parents[2]
HANG_GUARD_S = 10  # only so that a broken server fails the test instead of hanging it


class Recorder:
    """A fake Commands: records every call; `fail` maps a command to the exception it raises."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []
        self.fail: dict[str, BaseException] = {}
        self.status_value: object = {"state": "listening", "status": "listening (hold to talk)",
                                     "session": "open", "last_error": None, "uptime_s": 12.345}

    def _record(self, name: str, *args: str) -> None:
        self.calls.append((name, *args))
        if name in self.fail:
            raise self.fail[name]

    def status(self):
        self._record("status")
        return self.status_value

    def press(self) -> None:
        self._record("press")

    def release(self) -> None:
        self._record("release")

    def talk(self) -> None:
        self._record("talk")

    def stop(self) -> None:
        self._record("stop")

    def say(self, text: str) -> None:
        self._record("say", text)

    def reset(self) -> None:
        self._record("reset")


class Running:
    """A ControlServer on its own event loop in a thread, so that tests can use blocking clients."""

    def __init__(self, path: Path, commands: object, **kwargs) -> None:
        self.path = str(path)
        self.commands = commands
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server = ControlServer(path, commands, **kwargs)
        try:
            self.call(self.server.start())
        except BaseException:
            self.shutdown()
            raise

    def call(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(HANG_GUARD_S)

    def close(self) -> None:
        self.call(self.server.close())

    def shutdown(self) -> None:
        if not self.loop.is_closed():
            self.call(self.server.close())
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(HANG_GUARD_S)
            self.loop.close()


@pytest.fixture
def sock_dir(tmp_path):
    """A directory for the socket (AF_UNIX paths stop at 107 bytes; pytest's can be longer)."""
    if len(str(tmp_path)) < 80:
        yield tmp_path
        return
    short = Path(tempfile.mkdtemp(prefix="talkie-ctl-"))
    try:
        yield short
    finally:
        shutil.rmtree(short, ignore_errors=True)


@pytest.fixture
def recorder():
    return Recorder()


@pytest.fixture
def running(sock_dir, recorder):
    servers: list[Running] = []

    def start(*, commands: object = recorder, path: Path | None = None, **kwargs) -> Running:
        kwargs.setdefault("group", None)
        server = Running(path or sock_dir / "control", commands, **kwargs)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown()


def run_ctl(path, *argv: str, json_out: bool = False) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    command, *text = argv
    code = ctl(command, text, path=path, as_json=json_out, timeout=HANG_GUARD_S, out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def raw(path, data: bytes, *, shut: bool = False) -> bytes:
    """Send raw bytes, read the reply up to EOF."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(HANG_GUARD_S)
        sock.connect(str(path))
        if data:
            sock.sendall(data)
        if shut:
            sock.shutdown(socket.SHUT_WR)
        return read_all(sock)


def read_all(sock: socket.socket) -> bytes:
    """Everything up to EOF (a reset after the reply, when the server left input unread, is EOF)."""
    reply = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            if reply.endswith(b"\n"):
                return reply
            raise
        if not chunk:
            return reply
        reply += chunk


def talkie_ctl(*argv: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "daemon"))
    env.pop("RUNTIME_DIRECTORY", None)
    return subprocess.run([sys.executable, "-m", "talkie", "ctl", *argv], capture_output=True,
                          text=True, env=env, cwd=ROOT, timeout=60)


# ---------------------------------------------------------------- every command reaches the shell


@pytest.mark.parametrize("argv, call", [
    (("press",), ("press",)),
    (("release",), ("release",)),
    (("talk",), ("talk",)),
    (("stop",), ("stop",)),
    (("reset",), ("reset",)),
    (("say", "hello"), ("say", "hello")),
    (("say", "what's", "the", "weather?"), ("say", "what's the weather?")),
    (("say", "Grüße, 東京 ☂"), ("say", "Grüße, 東京 ☂")),
    (("say", "two\nlines"), ("say", "two lines")),
    (("PRESS",), ("press",)),
])
def test_every_command_reaches_the_commands_object(running, recorder, argv, call):
    server = running()
    assert run_ctl(server.path, *argv) == (0, "ok\n", "")
    assert recorder.calls == [call]


def test_status_prints_readable_lines(running, recorder):
    server = running()
    code, out, err = run_ctl(server.path, "status")
    assert (code, err) == (0, "")
    assert out == ("state: listening\n"
                   "status: listening (hold to talk)\n"
                   "session: open\n"
                   "last_error: -\n"
                   "uptime_s: 12.3\n")
    assert recorder.calls == [("status",)]


def test_status_json_is_the_raw_reply(running):
    server = running()
    code, out, _ = run_ctl(server.path, "status", json_out=True)
    assert code == 0
    assert json.loads(out) == {"ok": True, "state": "listening",
                               "status": "listening (hold to talk)", "session": "open",
                               "last_error": None, "uptime_s": 12.345}
    assert list(json.loads(out))[0] == "ok"


def test_status_values_are_formatted():
    assert control_client.format_reply({"ok": True, "held": True, "warm": False, "pins": [17, 27],
                                 "extra": {"a": 1}, "none": None}) == [
        "held: yes", "warm: no", "pins: 17, 27", 'extra: {"a": 1}', "none: -"]
    assert control_client.format_reply({"ok": True}) == ["ok"]


def test_status_that_is_not_a_dict_is_an_error(running, recorder):
    recorder.status_value = "idle"
    server = running()
    code, out, err = run_ctl(server.path, "status")
    assert (code, out) == (1, "")
    assert err == "talkie ctl: TypeError: status() returned str, not a dict\n"


def test_help_lists_every_command(running, recorder):
    server = running()
    code, out, _ = run_ctl(server.path, "help")
    assert code == 0
    assert [line.split("  ")[0].strip() for line in out.splitlines()] == list(control.COMMANDS)
    assert re.search(r"^say <text> +send <text> as a typed turn \(at most 2000 characters\)$", out,
                     re.M)
    assert recorder.calls == []


# ---------------------------------------------------------------- what the server refuses

COMMAND_LIST = ("status, press, release, talk, stop, say <text>, reset, volume [N|+N|-N], "
                "mute speaker|mic [on|off], camera [on|off], help")


def test_unknown_command_is_refused_with_the_list(running, recorder):
    server = running()
    assert run_ctl(server.path, "dance") == (
        1, "", f"talkie ctl: unknown command 'dance'; commands: {COMMAND_LIST}\n")
    reply = json.loads(raw(server.path, b"dance\n"))
    assert reply["ok"] is False and reply["commands"] == list(control.COMMANDS)
    assert recorder.calls == []


@pytest.mark.parametrize("line, error", [
    (b"say\n", "say needs text: say <text>"),
    (b"say    \n", "say needs text: say <text>"),
    (b"\n", f"empty request; commands: {COMMAND_LIST}"),
    (b"press now\n", "press takes no text (only say does)"),
    (b"say " + b"x" * 2001 + b"\n", "say: text too long (2001 characters; at most 2000)"),
    (b"say a\tb\n", "say: text must be printable (found U+0009)"),
    (b"say a\x1b[2Jb\n", "say: text must be printable (found U+001B)"),
    (b"say a\xe2\x80\xa8b\n", "say: text must be printable (found U+2028)"),
    (b"say \xff\xfe\n", "request is not UTF-8"),
    (b"status" + b" " * 4091 + b"\n", "request too long (more than 4096 bytes)"),
    (b"say " + b"x" * 5000 + b"\n", "request too long (more than 4096 bytes)"),
    (b"x" * 20_000, "request too long (more than 4096 bytes)"),
])
def test_bad_requests_are_refused(running, recorder, line, error):
    server = running()
    assert json.loads(raw(server.path, line, shut=True)) == {"ok": False, "error": error,
                                                            **({"commands": list(control.COMMANDS)}
                                                               if "commands:" in error else {})}
    assert recorder.calls == []


def test_the_line_limit_is_4096_bytes(running, recorder):
    server = running()
    line = b"status" + b" " * (control.MAX_LINE - len(b"status"))
    assert len(line) == 4096
    assert json.loads(raw(server.path, line + b"\n"))["ok"] is True
    say = "say " + "é" * 2000  # 2000 characters, 4004 bytes
    assert json.loads(raw(server.path, say.encode() + b"\n"))["ok"] is True
    assert recorder.calls == [("status",), ("say", "é" * 2000)]


def test_a_request_without_newline_is_taken_at_eof(running, recorder):
    server = running()
    assert json.loads(raw(server.path, b"press", shut=True)) == {"ok": True}
    assert raw(server.path, b"", shut=True) == b""  # connect and hang up: no answer, no call
    assert recorder.calls == [("press",)]


def test_a_silent_client_is_dropped(running, recorder):
    server = running(idle_timeout=0.05)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(HANG_GUARD_S)
        sock.connect(server.path)
        reply = read_all(sock)  # returns only because the server closes the connection
    assert json.loads(reply) == {"ok": False, "error": "no request within 0.05 s"}
    assert run_ctl(server.path, "press") == (0, "ok\n", "")
    assert recorder.calls == [("press",)]


def test_clients_are_served_concurrently(running, recorder):
    server = running(idle_timeout=HANG_GUARD_S * 3)
    # A client that connects and says nothing does not hold up the others.
    slow = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    slow.settimeout(HANG_GUARD_S)
    slow.connect(server.path)
    try:
        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(lambda i: run_ctl(server.path, "say", f"n{i}"), range(40)))
        assert results == [(0, "ok\n", "")] * 40
        held = [socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) for _ in range(10)]
        for sock in held:
            sock.settimeout(HANG_GUARD_S)
            sock.connect(server.path)
        for i, sock in reversed(list(enumerate(held))):
            sock.sendall(f"say h{i}\n".encode())
        replies = [json.loads(read_all(sock)) for sock in held]
        for sock in held:
            sock.close()
        assert replies == [{"ok": True}] * 10
        slow.sendall(b"release\n")
        assert json.loads(read_all(slow)) == {"ok": True}
    finally:
        slow.close()
    said = sorted(call[1] for call in recorder.calls if call[0] == "say")
    assert said == sorted([f"n{i}" for i in range(40)] + [f"h{i}" for i in range(10)])
    assert recorder.calls[-1] == ("release",)


# ---------------------------------------------------------------- failing commands


class ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def control_log():
    handler = ListHandler()
    logger = logging.getLogger("talkie.control")
    logger.addHandler(handler)
    old = logger.level
    logger.setLevel(logging.DEBUG)
    yield handler.records
    logger.removeHandler(handler)
    logger.setLevel(old)


def test_a_command_that_raises_answers_an_error_and_the_server_carries_on(running, recorder,
                                                                         control_log):
    recorder.fail["press"] = RuntimeError("the panel is gone")
    recorder.fail["say"] = ValueError("no session")
    server = running()
    assert run_ctl(server.path, "press") == (1, "", "talkie ctl: RuntimeError: the panel is gone\n")
    assert run_ctl(server.path, "say", "hi") == (1, "", "talkie ctl: ValueError: no session\n")
    assert run_ctl(server.path, "release") == (0, "ok\n", "")
    assert recorder.calls == [("press",), ("say", "hi"), ("release",)]
    errors = [r for r in control_log if r.levelno == logging.ERROR]
    assert [r.getMessage() for r in errors] == [
        "control: press failed: RuntimeError: the panel is gone",
        "control: say failed: ValueError: no session"]
    assert all(r.exc_info for r in errors)


def test_a_command_may_refuse_in_words(running, recorder):
    recorder.fail["reset"] = Refused("nothing to reset")
    server = running()
    assert run_ctl(server.path, "reset") == (1, "", "talkie ctl: nothing to reset\n")
    code, out, _ = run_ctl(server.path, "reset", json_out=True)
    assert (code, json.loads(out)) == (1, {"ok": False, "error": "nothing to reset"})


def test_a_missing_method_is_an_error_not_a_crash(running):
    class OnlyStatus:
        def status(self):
            return {"state": "idle"}

    server = running(commands=OnlyStatus())
    code, _, err = run_ctl(server.path, "talk")
    assert code == 1 and err.startswith("talkie ctl: AttributeError: ")
    assert run_ctl(server.path, "status") == (0, "state: idle\n", "")


# ---------------------------------------------------------------- the socket file


def test_socket_mode_and_directory(running, sock_dir):
    path = sock_dir / "run" / "talkie" / "control"
    running(path=path)
    info = os.lstat(path)
    assert stat.S_ISSOCK(info.st_mode)
    assert stat.S_IMODE(info.st_mode) == 0o660
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o750


def test_group_is_best_effort(running, sock_dir, control_log):
    running(path=sock_dir / "control", group="no-such-group-talkie-test")
    assert stat.S_IMODE(os.lstat(sock_dir / "control").st_mode) == 0o660
    assert any("no such group" in r.getMessage() for r in control_log if r.levelno == logging.DEBUG)


def test_a_stale_socket_is_replaced(running, sock_dir, recorder):
    path = sock_dir / "control"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()  # a dead daemon's socket file: connecting to it is refused
    assert stat.S_ISSOCK(os.lstat(path).st_mode)
    assert run_ctl(path, "status") == (
        69, "", f"talkie ctl: cannot reach talkie at {path} (connection refused): "
                "is the service running? (systemctl status talkie)\n")
    running(path=path)
    assert run_ctl(path, "press") == (0, "ok\n", "")
    assert recorder.calls == [("press",)]


def test_a_live_daemon_is_not_displaced(running, sock_dir, recorder):
    path = sock_dir / "control"
    running(path=path)
    with pytest.raises(ControlError) as caught:
        running(path=path, commands=Recorder())
    assert str(caught.value) == (f"another talkie is already serving {path}; "
                                 "stop it first (systemctl stop talkie)")
    assert run_ctl(path, "press") == (0, "ok\n", "")
    assert recorder.calls == [("press",)]


def test_a_file_that_is_not_a_socket_is_left_alone(running, sock_dir):
    path = sock_dir / "control"
    path.write_text("precious")
    with pytest.raises(ControlError, match="exists and is not a socket; not replacing it"):
        running(path=path)
    assert path.read_text() == "precious"


def test_close_removes_the_socket_and_drops_clients(running, sock_dir):
    server = running(idle_timeout=HANG_GUARD_S * 3)
    path = Path(server.path)
    idle = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    idle.settimeout(HANG_GUARD_S)
    idle.connect(server.path)
    try:
        assert run_ctl(path, "press")[0] == 0  # the idle client is being served by now
        server.close()
        assert read_all(idle) == b""  # dropped without an answer
    finally:
        idle.close()
    assert not path.exists()
    server.close()  # twice is fine
    assert run_ctl(path, "status") == (
        69, "", f"talkie ctl: cannot reach talkie at {path} (no such file): "
                "is the service running? (systemctl status talkie)\n")


def test_close_leaves_a_newer_daemons_socket(running, sock_dir):
    path = sock_dir / "control"
    first = running(path=path)
    os.unlink(path)
    second = running(path=path)
    first.close()
    assert stat.S_ISSOCK(os.lstat(path).st_mode)
    assert run_ctl(path, "press") == (0, "ok\n", "")
    second.close()
    assert not path.exists()


def test_context_manager(sock_dir, recorder):
    path = sock_dir / "control"

    async def main():
        async with ControlServer(path, recorder, group=None):
            assert path.exists()
            return await asyncio.to_thread(run_ctl, path, "talk")

    assert asyncio.run(main()) == (0, "ok\n", "")
    assert not path.exists()
    assert recorder.calls == [("talk",)]


# ---------------------------------------------------------------- the client's failures


def test_missing_socket_exits_69_with_a_hint(sock_dir):
    path = sock_dir / "nope" / "control"
    assert run_ctl(path, "status") == (
        69, "", f"talkie ctl: cannot reach talkie at {path} (no such file): "
                "is the service running? (systemctl status talkie)\n")


def test_permission_denied_says_to_join_the_group(sock_dir, monkeypatch):
    def denied(self, address):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(socket.socket, "connect", denied)  # root would get through a real 0660
    path = sock_dir / "control"
    assert run_ctl(path, "press") == (
        69, "", f"talkie ctl: cannot reach talkie at {path} (permission denied): add yourself "
                "to the talkie-ctl group (sudo usermod -aG talkie-ctl $USER, then log in again)\n")


def test_a_silent_daemon_times_out(sock_dir):
    path = sock_dir / "control"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(str(path))
        listener.listen()  # accepts into the backlog, never answers
        out, err = io.StringIO(), io.StringIO()
        code = ctl("status", path=path, timeout=0.05, out=out, err=err)
    assert (code, out.getvalue()) == (69, "")
    assert err.getvalue() == (f"talkie ctl: no answer from talkie at {path} within 0.05 s: "
                              "is it stuck? (systemctl status talkie; journalctl -u talkie)\n")


def test_default_socket_path():
    assert default_socket_path({}) == "/run/talkie/control"
    assert default_socket_path({"RUNTIME_DIRECTORY": ""}) == "/run/talkie/control"
    assert default_socket_path({"RUNTIME_DIRECTORY": "/run/talkie"}) == "/run/talkie/control"
    assert default_socket_path({"RUNTIME_DIRECTORY": "/run/a:/run/b"}) == "/run/a/control"


# ---------------------------------------------------------------- `talkie ctl` as a process


def test_talkie_ctl_process(running, recorder, sock_dir):
    server = running()
    said = talkie_ctl("say", "hello", "there", "--socket", server.path)
    assert (said.returncode, said.stdout, said.stderr) == (0, "ok\n", "")
    status = talkie_ctl("status", "--socket", server.path)
    assert (status.returncode, status.stderr) == (0, "")
    assert status.stdout.splitlines()[0] == "state: listening"
    as_json = talkie_ctl("press", "--json", "--socket", server.path)
    assert (as_json.returncode, json.loads(as_json.stdout)) == (0, {"ok": True})
    unknown = talkie_ctl("dance", "--socket", server.path)
    assert (unknown.returncode, unknown.stdout) == (1, "")
    assert unknown.stderr == f"talkie ctl: unknown command 'dance'; commands: {COMMAND_LIST}\n"
    assert recorder.calls == [("say", "hello there"), ("status",), ("press",)]
    missing = talkie_ctl("status", "--socket", str(sock_dir / "gone"))
    assert (missing.returncode, missing.stdout) == (69, "")
    assert missing.stderr == (f"talkie ctl: cannot reach talkie at {sock_dir / 'gone'} (no such "
                              "file): is the service running? (systemctl status talkie)\n")


def test_talkie_ctl_default_path_message():
    """Without --socket (and no RUNTIME_DIRECTORY) it tries /run/talkie/control."""
    if os.path.exists("/run/talkie/control"):
        pytest.skip("a talkie is running here")
    done = talkie_ctl("status")
    assert done.returncode == 69
    assert done.stderr == ("talkie ctl: cannot reach talkie at /run/talkie/control (no such file): "
                           "is the service running? (systemctl status talkie)\n")


def test_talkie_ctl_imports_nothing_heavy(running):
    server = running()
    code = ("import sys; from talkie.cli import main; rc = main(['ctl', 'press', '--socket', %r]); "
            "heavy = sorted({m.split('.')[0] for m in sys.modules} & "
            "{'google', 'sounddevice', 'gpiozero', 'numpy', 'soxr', 'websockets'}); "
            "print(rc, heavy)" % server.path)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=str(ROOT / "daemon")), timeout=60)
    assert done.stdout.splitlines()[-1] == "0 []", done.stderr


def test_commands_are_debug_lines_so_a_polling_integration_leaves_the_journal_alone(running,
                                                                                    control_log):
    server = running()
    for _ in range(5):
        assert run_ctl(server.path, "status")[0] == 0
    assert run_ctl(server.path, "say", "hello")[0] == 0
    said = [r for r in control_log if r.getMessage().startswith("control: ")]
    assert len(said) == 6 and all(r.levelno == logging.DEBUG for r in said)
