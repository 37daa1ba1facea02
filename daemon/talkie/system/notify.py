"""Telling systemd how talkie is doing: sd_notify(3) messages and the watchdog heartbeat.

:class:`Notifier` sends ``READY=1``, ``STATUS=...``, ``WATCHDOG=1``, ``RELOADING=1`` and
``STOPPING=1`` to ``$NOTIFY_SOCKET`` through ``systemd.daemon.notify`` (or, when systemd-python is
not installed, a few lines of datagram code that do the same). Without ``NOTIFY_SOCKET`` (run by
hand, or by a unit that is not ``Type=notify``) every call is a no-op. It never raises: a daemon
must not fall over because its supervisor is not listening.

:class:`Heartbeat` is the watchdog task: it pings every half ``WatchdogSec=`` while the shell's
``alive()`` check passes. Being an asyncio task, it also stops pinging when the event loop stalls,
which is exactly when systemd should restart us.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Protocol

log = logging.getLogger("talkie.notify")

#: What ``alive()`` may return: a bare bool, or (bool, reason in words).
AliveResult = bool | tuple[bool, str]


def _one_line(text: str) -> str:
    """sd_notify is newline-separated ``KEY=value`` pairs: a value must be a single line."""
    return " ".join(text.splitlines()).strip()


def _address(notify_socket: str) -> str:
    """``$NOTIFY_SOCKET`` as a socket address: ``@name`` is Linux's abstract namespace."""
    return "\0" + notify_socket[1:] if notify_socket.startswith("@") else notify_socket


def send_datagram(notify_socket: str, message: str) -> None:
    """The fallback sender: one datagram to the notify socket (raises OSError on failure)."""
    if not notify_socket.startswith(("/", "@")):
        raise OSError(f"unsupported NOTIFY_SOCKET {notify_socket!r}")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        sock.setblocking(False)  # a full queue drops one message rather than stall the loop
        sock.sendto(message.encode("utf-8"), _address(notify_socket))


class Notifier:
    """sd_notify for talkie: readiness, status text, watchdog pings, reload and stop notices.

    A no-op when ``NOTIFY_SOCKET`` is unset; never raises (the first failure is logged at debug).
    """

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        # libsystemd's sd_notify (systemd.daemon.notify) sends on a *blocking* socket: when the
        # manager is slow to read, its queue (net.unix.max_dgram_qlen, 10 by default) fills and
        # the call blocks the event loop, so talkie sends its own non-blocking datagrams instead.
        self._environ = os.environ if environ is None else environ
        self._failed = False
        self.dropped = 0

    def ready(self, status: str | None = None) -> None:
        """Start-up is done (``READY=1``), optionally with a status text in the same message."""
        self._send("READY=1" if status is None else f"READY=1\nSTATUS={_one_line(status)}")

    def status(self, text: str) -> None:
        """What ``systemctl status talkie`` shows, e.g. "listening" or "reconnecting in 4 s"."""
        self._send(f"STATUS={_one_line(text)}")

    def watchdog(self) -> None:
        """One watchdog keep-alive ping (``WATCHDOG=1``)."""
        self._send("WATCHDOG=1")

    def reloading(self) -> None:
        """A reload has begun: ``RELOADING=1`` with the monotonic timestamp that
        ``Type=notify-reload`` wants.

        Send :meth:`ready` when the reload is complete.
        """
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self._send(f"RELOADING=1\nMONOTONIC_USEC={usec}")

    def stopping(self) -> None:
        """Shutdown has begun (``STOPPING=1``)."""
        self._send("STOPPING=1")

    def watchdog_interval(self) -> float | None:
        """Seconds between pings (half of ``WATCHDOG_USEC``); None when no watchdog is asked for."""
        try:
            usec = int(self._environ.get("WATCHDOG_USEC", ""))
        except ValueError:
            return None
        pid = self._environ.get("WATCHDOG_PID", "")
        if usec <= 0 or (pid and pid.strip() != str(os.getpid())):
            return None
        return usec / 2 / 1_000_000

    def _send(self, message: str) -> None:
        target = self._environ.get("NOTIFY_SOCKET", "")
        if not target:
            return
        try:
            send_datagram(target, message)
        except Exception as exc:  # noqa: BLE001  (never let the supervisor's absence hurt us)
            self.dropped += 1
            if not self._failed:
                self._failed = True
                log.debug(
                    "notify: could not tell systemd %r via %s: %s",
                    message.split("\n", 1)[0],
                    target,
                    exc,
                )


class Pinger(Protocol):
    """What the heartbeat needs of a notifier."""

    def watchdog(self) -> None: ...
    def watchdog_interval(self) -> float | None: ...


class Heartbeat:
    """The watchdog task: ``await Heartbeat(notifier, alive).run()`` inside the shell's TaskGroup.

    Pings every ``interval`` seconds of loop time (default: ``notifier.watchdog_interval()``; when
    that is None no watchdog is configured and :meth:`run` returns at once) while ``alive()``
    passes. ``alive()`` returns a bool or ``(bool, reason)``; when it fails the heartbeat logs one
    warning with the reason and withholds pings (systemd then restarts talkie after
    ``WatchdogSec=``); when it passes again it says so once and pings again.
    """

    def __init__(
        self,
        notifier: Pinger,
        alive: Callable[[], AliveResult] | None = None,
        interval: float | None = None,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        self.notifier = notifier
        self.alive = alive or (lambda: True)
        self.interval = notifier.watchdog_interval() if interval is None else interval
        self._sleep = sleep
        self.pings = 0
        self.withheld: str | None = None  # the reason while pings are withheld, else None

    def _check(self) -> tuple[bool, str]:
        try:
            result = self.alive()
        except Exception as exc:  # noqa: BLE001  (a broken check is a failed check)
            return False, f"the liveness check failed: {exc!r}"
        if isinstance(result, tuple):
            ok, reason = bool(result[0]), str(result[1]) if len(result) > 1 else ""
        else:
            ok, reason = bool(result), ""
        return ok, reason or "the liveness check said no"

    def beat(self) -> bool:
        """One tick: ping if alive (logging the transitions); return whether a ping was sent."""
        ok, reason = self._check()
        if not ok:
            if self.withheld is None:
                log.warning("watchdog: not pinging systemd: %s", reason)
            self.withheld = reason
            return False
        if self.withheld is not None:
            log.info("watchdog: alive again, pinging systemd (was: %s)", self.withheld)
            self.withheld = None
        self.notifier.watchdog()
        self.pings += 1
        return True

    async def run(self) -> None:
        """Beat until cancelled; returns at once when no watchdog interval is configured."""
        if self.interval is None or self.interval <= 0:
            return
        while True:
            self.beat()
            await self._sleep(self.interval)
