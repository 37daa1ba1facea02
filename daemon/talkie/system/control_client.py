"""The control socket's client: ``talkie ctl`` (see :mod:`talkie.system.control` for the protocol).

:func:`request` sends one line on a plain blocking socket and reads the JSON answer; :func:`ctl`
prints it and picks the exit status. Nothing heavy is imported here (not even asyncio), so
``talkie ctl`` answers fast.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import socket
import sys
from collections.abc import Mapping
from typing import Any, TextIO

log = logging.getLogger("talkie.control")

DEFAULT_PATH = "/run/talkie/control"
#: sysexits.h
EX_OK, EX_REFUSED, EX_UNAVAILABLE = 0, 1, 69


def default_socket_path(env: Mapping[str, str] = os.environ) -> str:
    """``$RUNTIME_DIRECTORY/control`` (its first entry if several), else /run/talkie/control."""
    runtime = env.get("RUNTIME_DIRECTORY", "").split(":")[0]
    return os.path.join(runtime, "control") if runtime else DEFAULT_PATH


class Unreachable(Exception):
    """No answer from the daemon; ``str(exc)`` says why, which socket, and what to do."""


def request(
    line: str, path: str | os.PathLike[str] | None = None, *, timeout: float = 5.0
) -> dict[str, Any]:
    """Send one request line to the daemon and return its JSON reply (a plain blocking socket).

    Raises :class:`Unreachable` when the socket is missing, refused, not ours to use, or silent.
    """
    where = os.fspath(path) if path is not None else default_socket_path()
    data = " ".join(line.splitlines()).encode("utf-8", "surrogateescape") + b"\n"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(where)
        except OSError as exc:
            raise Unreachable(_cannot_reach(where, exc)) from exc
        try:
            sock.sendall(data)
            reply = b""
            while not reply.endswith(b"\n") and len(reply) < 1 << 20:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                reply += chunk
        except TimeoutError as exc:
            raise Unreachable(
                f"no answer from talkie at {where} within {timeout:g} s: is it "
                "stuck? (systemctl status talkie; journalctl -u talkie)"
            ) from exc
        except OSError as exc:
            raise Unreachable(
                f"lost the connection to talkie at {where}: {exc.strerror or exc}"
            ) from exc
    if not reply.strip():
        raise Unreachable(f"talkie at {where} closed the connection without answering")
    try:
        answer = json.loads(reply.decode("utf-8"))
    except ValueError as exc:
        raise Unreachable(f"unreadable answer from talkie at {where}: {exc}") from exc
    if not isinstance(answer, dict) or "ok" not in answer:
        raise Unreachable(f"unreadable answer from talkie at {where}: {reply[:200]!r}")
    return answer


def _cannot_reach(where: str, exc: OSError) -> str:
    if exc.errno == errno.ENOENT:
        why, hint = "no such file", "is the service running? (systemctl status talkie)"
    elif exc.errno in (errno.ECONNREFUSED, errno.ENOTSOCK):
        why, hint = "connection refused", "is the service running? (systemctl status talkie)"
    elif exc.errno in (errno.EACCES, errno.EPERM):
        why, hint = (
            "permission denied",
            (
                "add yourself to the talkie-ctl group (sudo usermod -aG talkie-ctl $USER, then "
                "log in again)"
            ),
        )
    elif isinstance(exc, TimeoutError):
        why, hint = "timed out", "is it stuck? (systemctl status talkie)"
    else:
        why, hint = (
            (exc.strerror or str(exc)).lower(),
            "is the service running? (systemctl status talkie)",
        )
    return f"cannot reach talkie at {where} ({why}): {hint}"


def _value(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.1f}"
    if isinstance(value, (list, tuple)):
        return ", ".join(_value(v) for v in value) or "-"
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def format_reply(reply: Mapping[str, Any]) -> list[str]:
    """What ``talkie ctl`` prints for a reply that is ok: ``key: value`` lines, or ``ok``."""
    fields = {k: v for k, v in reply.items() if k != "ok"}
    commands = fields.pop("commands", None)
    if isinstance(commands, Mapping):  # help
        width = max(map(len, commands), default=0)
        return [f"{usage:<{width}}  {what}" for usage, what in commands.items()]
    lines = [f"{key}: {_value(value)}" for key, value in fields.items()]
    return lines or ["ok"]


def ctl(
    command: str,
    text: list[str] | tuple[str, ...] = (),
    *,
    path: str | os.PathLike[str] | None = None,
    as_json: bool = False,
    timeout: float = 5.0,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """``talkie ctl COMMAND [TEXT...]``: ask, print, and return the exit status (0, 1 or 69)."""
    out = out or sys.stdout
    err = err or sys.stderr
    line = " ".join([command, *text])
    try:
        reply = request(line, path, timeout=timeout)
    except Unreachable as exc:
        print(f"talkie ctl: {exc}", file=err)
        return EX_UNAVAILABLE
    if as_json:
        print(json.dumps(reply, ensure_ascii=False), file=out)
    elif reply.get("ok") is True:
        for row in format_reply(reply):
            print(row, file=out)
    else:
        print(f"talkie ctl: {reply.get('error') or 'refused'}", file=err)
    return EX_OK if reply.get("ok") is True else EX_REFUSED
