"""sd_notify and the watchdog heartbeat, against a real AF_UNIX datagram socket."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import sys
import time
import uuid

import pytest

from talkie.system.notify import Heartbeat, Notifier


def _drain(sock: socket.socket) -> list[str]:
    """Every datagram waiting on ``sock`` (non-blocking)."""
    out = []
    while True:
        try:
            out.append(sock.recv(4096).decode())
        except BlockingIOError:
            return out


@pytest.fixture
def notify_socket(tmp_path, monkeypatch):
    """A bound datagram socket; NOTIFY_SOCKET points at it."""
    path = tmp_path / "notify"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.setblocking(False)
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    yield sock
    sock.close()


@pytest.fixture
def abstract_socket(monkeypatch):
    name = f"talkie-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.setblocking(False)
    monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
    yield sock
    sock.close()


@pytest.fixture
def no_systemd_python(monkeypatch):
    """Make ``from systemd import daemon`` fail, as on a machine without systemd-python."""
    monkeypatch.setitem(sys.modules, "systemd", None)
    monkeypatch.setitem(sys.modules, "systemd.daemon", None)


def _exercise(notifier: Notifier) -> None:
    notifier.ready()
    notifier.status("error: API key rejected —\nput a valid key in /etc/talkie/api-key")
    notifier.watchdog()
    notifier.reloading()
    notifier.ready("ready")
    notifier.stopping()


def _check_sequence(messages: list[str]) -> None:
    assert len(messages) == 6, messages
    assert messages[0] == "READY=1"
    assert messages[1] == "STATUS=error: API key rejected — put a valid key in /etc/talkie/api-key"
    assert messages[2] == "WATCHDOG=1"
    reloading, stamp = messages[3].split("\n")
    assert reloading == "RELOADING=1"
    key, value = stamp.split("=")
    assert key == "MONOTONIC_USEC"
    now = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert 0 < int(value) <= now
    assert messages[4] == "READY=1\nSTATUS=ready"
    assert messages[5] == "STOPPING=1"


def test_sender_in_order(notify_socket):
    notifier = Notifier()
    _exercise(notifier)
    _check_sequence(_drain(notify_socket))


def test_a_manager_that_does_not_read_never_blocks_the_daemon(notify_socket):
    """The unix datagram queue holds a few messages; past that a ping is dropped and counted."""
    notifier = Notifier()
    for _ in range(200):  # far more than net.unix.max_dgram_qlen
        notifier.watchdog()
    assert notifier.dropped > 0
    assert 0 < len(_drain(notify_socket)) < 200


def test_abstract_socket(abstract_socket):
    notifier = Notifier()
    _exercise(notifier)
    _check_sequence(_drain(abstract_socket))


def test_sender_without_systemd_python(notify_socket, no_systemd_python):
    notifier = Notifier()
    _exercise(notifier)
    _check_sequence(_drain(notify_socket))


def test_fallback_sender_abstract_socket(abstract_socket, no_systemd_python):
    notifier = Notifier()
    _exercise(notifier)
    _check_sequence(_drain(abstract_socket))


def test_injected_environment_uses_fallback(tmp_path, monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    path = tmp_path / "n"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.setblocking(False)
        notifier = Notifier({"NOTIFY_SOCKET": str(path)})
        notifier.watchdog()
        assert _drain(sock) == ["WATCHDOG=1"]


@pytest.mark.parametrize("library", [True, False])
def test_noop_without_notify_socket(monkeypatch, library):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    if not library:
        monkeypatch.setitem(sys.modules, "systemd", None)
    notifier = Notifier()
    _exercise(notifier)  # nothing to assert but that nothing raises


@pytest.mark.parametrize("library", [True, False])
def test_never_raises_when_socket_is_gone(tmp_path, monkeypatch, caplog, library):
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "nobody-listens"))
    if not library:
        monkeypatch.setitem(sys.modules, "systemd", None)
    notifier = Notifier()
    with caplog.at_level(logging.DEBUG, logger="talkie.notify"):
        _exercise(notifier)
    failures = [r for r in caplog.records if "could not tell systemd" in r.getMessage()]
    assert len(failures) == 1
    assert failures[0].levelno == logging.DEBUG


def test_unsupported_socket_kind_is_quiet(monkeypatch, no_systemd_python):
    monkeypatch.setenv("NOTIFY_SOCKET", "vsock:2:1234")
    Notifier().ready()


@pytest.mark.parametrize(("env", "expected"), [
    ({}, None),
    ({"WATCHDOG_USEC": "30000000"}, 15.0),
    ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}, 15.0),
    ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid() + 1)}, None),
    ({"WATCHDOG_USEC": "0"}, None),
    ({"WATCHDOG_USEC": "soon"}, None),
    ({"WATCHDOG_USEC": "500000"}, 0.25),
])
def test_watchdog_interval(monkeypatch, env, expected):
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert Notifier().watchdog_interval() == expected
    assert Notifier(env).watchdog_interval() == expected


# --- Heartbeat ---------------------------------------------------------------------------------

class Ticks:
    """An injectable sleep: each ``await sleep()`` waits until the test lets one tick pass."""

    def __init__(self) -> None:
        self.gate = asyncio.Semaphore(0)
        self.intervals: list[float] = []

    async def sleep(self, interval: float) -> None:
        self.intervals.append(interval)
        await self.gate.acquire()

    async def tick(self, n: int = 1) -> None:
        for _ in range(n):
            self.gate.release()
            for _ in range(5):  # let the heartbeat run up to its next sleep
                await asyncio.sleep(0)


def test_heartbeat_pings_withholds_and_resumes(notify_socket, caplog):
    health = {"ok": True}

    def alive():
        return (True, "") if health["ok"] else (False, "no audio callback for 2.0 s")

    async def main():
        ticks = Ticks()
        beat = Heartbeat(Notifier(), alive, interval=7.5, sleep=ticks.sleep)
        task = asyncio.create_task(beat.run())
        for _ in range(5):
            await asyncio.sleep(0)
        assert _drain(notify_socket) == ["WATCHDOG=1"]  # first ping at once
        await ticks.tick(2)
        assert _drain(notify_socket) == ["WATCHDOG=1"] * 2

        health["ok"] = False
        await ticks.tick(3)
        assert _drain(notify_socket) == []
        assert beat.withheld == "no audio callback for 2.0 s"

        health["ok"] = True
        await ticks.tick(2)
        assert _drain(notify_socket) == ["WATCHDOG=1"] * 2
        assert beat.withheld is None
        assert beat.pings == 5
        assert set(ticks.intervals) == {7.5}
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    with caplog.at_level(logging.INFO, logger="talkie.notify"):
        asyncio.run(main())
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "no audio callback for 2.0 s" in warnings[0].getMessage()
    again = [r for r in caplog.records if "alive again" in r.getMessage()]
    assert len(again) == 1


@pytest.mark.parametrize(("result", "reason"), [
    (False, "the liveness check said no"),
    ((False, ""), "the liveness check said no"),
    ((False, "microphone gone"), "microphone gone"),
])
def test_heartbeat_alive_shapes(result, reason):
    beat = Heartbeat(Notifier({}), lambda: result, interval=1.0)
    assert beat.beat() is False
    assert beat.withheld == reason


def test_heartbeat_broken_alive_check_withholds():
    def alive():
        raise RuntimeError("boom")

    beat = Heartbeat(Notifier({}), alive, interval=1.0)
    assert beat.beat() is False
    assert "boom" in beat.withheld


def test_heartbeat_without_watchdog_returns_at_once(monkeypatch, notify_socket):
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    beat = Heartbeat(Notifier())
    assert beat.interval is None
    asyncio.run(asyncio.wait_for(beat.run(), 1.0))
    assert _drain(notify_socket) == []


def test_heartbeat_interval_from_watchdog_usec(monkeypatch):
    monkeypatch.setenv("WATCHDOG_USEC", "20000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    assert Heartbeat(Notifier()).interval == 10.0


def test_stalled_loop_stops_the_pings(notify_socket):
    """A task blocking the loop starves the heartbeat: no ping arrives while it blocks."""

    async def wait_for_pings(n: int) -> int:
        seen = 0
        while seen < n:
            seen += len(_drain(notify_socket))
            await asyncio.sleep(0.002)
        return seen

    async def main():
        beat = Heartbeat(Notifier(), interval=0.005)
        task = asyncio.create_task(beat.run())
        await asyncio.wait_for(wait_for_pings(3), 2.0)

        async def block() -> tuple[int, int]:
            before = beat.pings
            _drain(notify_socket)
            time.sleep(0.1)  # twenty intervals' worth of a stalled loop
            return len(_drain(notify_socket)), beat.pings - before

        during, counted = await asyncio.create_task(block())  # another task hogs the loop
        assert (during, counted) == (0, 0)
        await asyncio.wait_for(wait_for_pings(3), 2.0)  # the loop runs again: so do the pings
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
