"""The control socket: ``talkie ctl status`` / ``press`` / ``say hello`` from a shell on the device.

Server (in the daemon, on the event loop): a unix stream socket, by default
``$RUNTIME_DIRECTORY/control`` (systemd's ``RuntimeDirectory=talkie``) or ``/run/talkie/control``,
mode 0660, group ``talkie-ctl`` when that group exists (a group of its own: using ``talkie ctl``
gives no access to talkie's config or key). Protocol: the client sends ONE request line
(UTF-8, at most 4096 bytes): a command word and, for ``say``, its text; the server answers ONE line
of JSON, ``{"ok": true, ...}`` or ``{"ok": false, "error": "..."}``, and closes the connection.

The server calls a ``Commands`` object given by the shell (duck-typed, every method sync and fast,
called in the loop thread): ``status() -> dict``, ``press()``, ``release()``, ``talk()``,
``stop()``, ``say(text)``, ``reset()``, and ``volume(arg)``, ``mute(arg)``, ``camera(arg)``
(their words after the command, as typed, which they check). A method may raise
:class:`Refused` to say no in words; any other exception becomes ``"<type>: <message>"``, is
logged, and the server carries on.

The client (``talkie ctl``) is :mod:`talkie.system.control_client`.
"""

from __future__ import annotations

import asyncio
import contextlib
import grp
import inspect
import json
import logging
import os
import socket
import stat
import unicodedata
from collections.abc import Mapping
from typing import Any, Protocol

from talkie.system.control_client import (  # noqa: F401 - re-exported: one protocol, two sides
    DEFAULT_PATH,
    EX_OK,
    EX_REFUSED,
    EX_UNAVAILABLE,
    default_socket_path,
)

log = logging.getLogger("talkie.control")

#: The group that may use the control socket (systemd/talkie.sysusers makes it).
CONTROL_GROUP = "talkie-ctl"
#: Longest request line, in bytes, without its newline.
MAX_LINE = 4096
#: Longest ``say`` text, in characters.
MAX_SAY = 2000
#: A client that has not sent its line after this many seconds is dropped.
IDLE_TIMEOUT_S = 5.0

#: Every command, as it is typed, with what it does (the ``help`` reply, in this order).
COMMANDS: dict[str, str] = {
    "status": "what talkie is doing: state, session, last error, uptime",
    "press": "press the button: start talking",
    "release": "release the button: end the turn",
    "talk": "press, or release if pressed (like ENTER in keyboard mode)",
    "stop": "stop: cut the answer short, or drop the turn in progress",
    "say <text>": f"send <text> as a typed turn (at most {MAX_SAY} characters)",
    "reset": "close the Live session and clear the error; the next press starts afresh",
    "volume [N|+N|-N]": "the speaker's volume, 0 to 100: show it, set it, turn it up or down",
    "mute speaker|mic [on|off]": "mute the speaker or switch the microphone off (or on); "
    "no on/off: show both",
    "camera [on|off]": "allow the camera or forbid it (no frame is taken); no on/off: show it",
    "help": "this list",
}
#: The command words that take no text.
_PLAIN = ("status", "press", "release", "talk", "stop", "reset", "help")
#: The command words that take a few words of arguments (checked by the command itself).
_ARGUED = ("volume", "mute", "camera")
_COMMAND_LIST = ", ".join(COMMANDS)


class Commands(Protocol):
    """What the shell gives the server (duck-typed; sync; called in the loop thread)."""

    def status(self) -> Mapping[str, Any]: ...
    def press(self) -> None: ...
    def release(self) -> None: ...
    def talk(self) -> None: ...
    def stop(self) -> Mapping[str, Any] | None: ...
    def say(self, text: str) -> None: ...
    def reset(self) -> None: ...
    def volume(self, arg: str) -> Mapping[str, Any]: ...
    def mute(self, arg: str) -> Mapping[str, Any]: ...
    def camera(self, arg: str) -> Mapping[str, Any]: ...


class Refused(Exception):
    """Raised by a command to say no in words: the reply is ``{"ok": false, "error": str(exc)}``."""


class ControlError(RuntimeError):
    """The control socket cannot be set up (another talkie serves it, no permission, ...)."""


# ---------------------------------------------------------------------------------------- server


def _refuse(error: str, **extra: Any) -> dict[str, Any]:
    return {"ok": False, "error": error, **extra}


def _unknown(word: str) -> dict[str, Any]:
    return _refuse(f"unknown command {word!r}; commands: {_COMMAND_LIST}", commands=list(COMMANDS))


def _bad_character(text: str) -> str | None:
    """The first character of ``text`` that is not printable (controls, line separators, ...)."""
    for ch in text:
        if unicodedata.category(ch)[0] == "C" or unicodedata.category(ch) in ("Zl", "Zp"):
            return ch
    return None


class ControlServer:
    """The daemon's end of the control socket. ``async with ControlServer(path, commands): ...``"""

    def __init__(
        self,
        path: str | os.PathLike[str],
        commands: Commands,
        *,
        group: str | None = CONTROL_GROUP,
        mode: int = 0o660,
        idle_timeout: float = IDLE_TIMEOUT_S,
    ) -> None:
        self.path = os.fspath(path)
        self.commands = commands
        self.group = group
        self.mode = mode
        self.idle_timeout = idle_timeout
        self._server: asyncio.AbstractServer | None = None
        self._inode: int | None = None
        self._clients: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> ControlServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # ---- life cycle

    async def start(self) -> None:
        """Create the socket and serve. Raises :class:`ControlError` when it cannot."""
        if self._server is not None:
            return
        self._make_directory()
        await self._remove_stale()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            try:
                sock.bind(self.path)
            except OSError as exc:
                raise ControlError(
                    f"cannot create the control socket {self.path}: {exc.strerror or exc}"
                ) from exc
            self._inode = os.stat(self.path).st_ino
            os.chmod(self.path, self.mode)  # before listen(): nobody can connect in between
            self._chown(self.path)
            sock.setblocking(False)
            self._server = await asyncio.start_unix_server(self._client, sock=sock, limit=MAX_LINE)
        except BaseException:
            sock.close()
            self._unlink()
            raise
        log.info("control socket at %s", self.path)

    async def close(self) -> None:
        """Stop serving, drop the clients, remove the socket. Safe to call twice."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        clients = list(self._clients)
        for task in clients:
            task.cancel()
        await asyncio.gather(*clients, return_exceptions=True)
        with contextlib.suppress(Exception):
            await server.wait_closed()
        self._unlink()
        log.debug("control socket %s closed", self.path)

    def _make_directory(self) -> None:
        parent = os.path.dirname(os.path.abspath(self.path))
        if os.path.isdir(parent):
            return
        try:
            os.makedirs(parent, mode=0o750)
            os.chmod(parent, 0o750)  # whatever the umask
        except FileExistsError:
            return
        except OSError as exc:
            raise ControlError(
                f"cannot create {parent} for the control socket: {exc.strerror or exc}"
            ) from exc
        self._chown(parent)

    async def _remove_stale(self) -> None:
        try:
            info = os.lstat(self.path)
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(info.st_mode):
            raise ControlError(f"{self.path} exists and is not a socket; not replacing it")
        try:
            _, writer = await asyncio.wait_for(asyncio.open_unix_connection(self.path), 2.0)
        except (OSError, TimeoutError):
            pass  # nobody there: a leftover of a talkie that did not stop cleanly
        else:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
            raise ControlError(
                f"another talkie is already serving {self.path}; "
                "stop it first (systemctl stop talkie)"
            )
        log.debug("removing stale control socket %s", self.path)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)

    def _chown(self, path: str) -> None:
        if not self.group:
            return
        try:
            gid = grp.getgrnam(self.group).gr_gid
            os.chown(path, -1, gid)
        except (KeyError, OSError) as exc:
            log.debug(
                "control: %s left in its own group (group %s: %s)",
                path,
                self.group,
                exc if isinstance(exc, OSError) else "no such group",
            )

    def _unlink(self) -> None:
        """Remove our socket, but not one that another daemon has put there since."""
        if self._inode is None:
            return  # never bound: whatever is there is not ours
        try:
            if os.lstat(self.path).st_ino == self._inode:
                os.unlink(self.path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.warning("control: cannot remove %s: %s", self.path, exc.strerror or exc)
        self._inode = None

    # ---- one client

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._clients.add(task)
        try:
            reply = await self._read(reader)
            if reply is not None:
                writer.write(json.dumps(reply, ensure_ascii=False, default=str).encode() + b"\n")
                await asyncio.wait_for(writer.drain(), self.idle_timeout)
        except (ConnectionError, TimeoutError) as exc:
            log.debug("control: client went away: %r", exc)
        except asyncio.CancelledError:
            pass  # the server is closing
        except Exception:  # one client must never take the server down
            log.exception("control: failed to serve a client")
        finally:
            writer.close()
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await writer.wait_closed()
            self._clients.discard(task)

    async def _read(self, reader: asyncio.StreamReader) -> dict[str, Any] | None:
        try:
            line = await asyncio.wait_for(reader.readuntil(b"\n"), self.idle_timeout)
        except asyncio.IncompleteReadError as exc:
            line = exc.partial  # EOF without a newline: take what came
            if not line.strip():
                return None  # connected and hung up (a start-up probe): nothing to answer
        except asyncio.LimitOverrunError:
            return _refuse(f"request too long (more than {MAX_LINE} bytes)")
        except TimeoutError:
            log.debug("control: dropped a client that sent nothing for %g s", self.idle_timeout)
            return _refuse(f"no request within {self.idle_timeout:g} s")
        return await self.handle(line)

    async def handle(self, line: bytes) -> dict[str, Any]:
        """The reply to one request line (bytes, with or without its newline)."""
        if len(line.rstrip(b"\r\n")) > MAX_LINE:
            return _refuse(f"request too long (more than {MAX_LINE} bytes)")
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            return _refuse("request is not UTF-8")
        parts = text.strip().split(None, 1)
        if not parts:
            return _refuse(f"empty request; commands: {_COMMAND_LIST}", commands=list(COMMANDS))
        word = parts[0].lower()
        arg = parts[1].strip() if len(parts) > 1 else ""
        if word == "say":
            return await self._say(arg)
        if word in _ARGUED:
            if len(arg) > 64 or _bad_character(arg) is not None:
                return _refuse(f"{word}: unexpected arguments; see help")
            log.debug("control: %s %s", word, arg)
            return await self._call(word, arg)
        if word not in _PLAIN:
            return _unknown(parts[0])
        if arg:
            return _refuse(f"{word} takes no text (only say does)")
        if word == "help":
            return {"ok": True, "commands": dict(COMMANDS)}
        log.debug("control: %s", word)  # status is polled: not worth the journal
        return await self._call(word)

    async def _say(self, text: str) -> dict[str, Any]:
        if not text:
            return _refuse("say needs text: say <text>")
        if len(text) > MAX_SAY:
            return _refuse(f"say: text too long ({len(text)} characters; at most {MAX_SAY})")
        bad = _bad_character(text)
        if bad is not None:
            return _refuse(f"say: text must be printable (found U+{ord(bad):04X})")
        log.debug("control: say (%d characters)", len(text))
        return await self._call("say", text)

    async def _call(self, word: str, *args: str) -> dict[str, Any]:
        try:
            result = getattr(self.commands, word)(*args)
            if inspect.isawaitable(result):
                result = await result
        except Refused as exc:
            log.debug("control: %s refused: %s", word, exc)
            return _refuse(str(exc) or f"{word} refused")
        except Exception as exc:  # a failing command answers, the server stays
            log.error("control: %s failed: %s: %s", word, type(exc).__name__, exc, exc_info=True)
            return _refuse(f"{type(exc).__name__}: {exc}")
        reply: dict[str, Any] = {"ok": True}
        if isinstance(result, Mapping):
            reply.update((k, v) for k, v in result.items() if k != "ok")
        elif word == "status":
            log.error("control: status() returned %s, not a dict", type(result).__name__)
            return _refuse(f"TypeError: status() returned {type(result).__name__}, not a dict")
        return reply
