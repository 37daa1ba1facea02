"""A local test double of the Gemini Live API (BidiGenerateContent over TLS websockets).

The real ``google-genai`` SDK connects to it with ``base_url=double.endpoint`` and
``async_client_args={"ssl": ssl.create_default_context(cafile=double.ca_file)}``.
It records every client message (normalized to snake_case, raw JSON kept) and lets a
test script the server side: audio, transcriptions, interruptions, goAway, resumption
updates and handles, tool calls, unknown messages, close codes, dropped connections and a
refused port (``stop_listening()`` / ``start_listening()``).

Run it in the test's own event loop (``async with LiveDouble() as double``) or in a
background thread (``double = LiveDouble().start_in_thread()`` ... ``double.stop()``).
Every coroutine method may be awaited from any event loop (it is bridged to the
double's loop); from plain threads use ``double.run(coro)`` or the ``*_sync`` helpers.

The wire-level pieces (message classification, :class:`Message`, :class:`AutoReply`,
:class:`LiveConnection`) live in :mod:`tests.support.live_wire` and are re-exported here.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from http import HTTPStatus
from typing import Any, Awaitable, Callable, Collection

from .live_wire import (  # re-exported (__all__): tests import them from here
    BAD_HANDLE_REASON, BAD_KEY_REASON, KINDS, PATH_RE, AutoReply, Hook, LiveConnection, Message,
    _bridged, _is_closed_error, _query_key, b64decode_any, classify, log, normalize, snake, tone)
from .tls import LocalTLS

__all__ = ["AutoReply", "BAD_HANDLE_REASON", "BAD_KEY_REASON", "KINDS", "LiveConnection", "LiveDouble",
           "Message", "RESUME_MODES", "b64decode_any", "classify", "normalize", "snake", "tone"]

RESUME_MODES = ("accept", "reject_all", "ignore")


class LiveDouble:
    """Gemini Live API test server on https://127.0.0.1:<ephemeral port>.

    Configuration (plain attributes, may be changed between connections):
      api_keys: accepted keys (None = any). A wrong key is answered, after setup, with a
        close ``bad_key_close`` (default 1008 "API key not valid..."), or at the HTTP
        handshake with ``bad_key_http_status`` if set (the SDK then raises InvalidStatus).
      models: accepted model ids without "models/" (None = any); others get close 1008.
      api_versions: versions served; other paths get HTTP 404.
      setup_mode: "complete" (answer setupComplete after setup_delay_s), "never", or
        "close" (close with setup_close instead).
      auto_reply: an AutoReply answering each activity_end (None = silent).
      binary_frames: server frames are binary (like the real service) unless False.
      resume_mode: what a setup with a session resumption handle gets: "accept" (a handle this
        double issued resumes, ``conn.resumed``; an unknown one is answered, after setup, with
        a close 1008 "invalid session resumption handle"), "reject_all" (every handle is
        refused that way) or "ignore" (a handle is recorded, and the session opens as if new).
    Handles: ``issued_handles`` lists, in order, every handle any connection sent in a
    sessionResumptionUpdate (the auto-reply sends "handle-<conn>-<turn>" after each turn);
    ``conn.resume_handle`` is the handle a connection's setup carried.
    Listening: ``await stop_listening()`` closes the listening socket, so new connections are
    refused (ECONNREFUSED) while open ones go on; ``await start_listening()`` listens again on
    the same port (``*_sync`` variants for thread mode).
    Hooks (async callables, run as tasks tied to the connection):
      on_setup(conn), on_message(conn, msg), on_activity_end(conn, msg) (replaces auto_reply).
    """

    def __init__(self, *, api_keys: Collection[str] | None = ("test-key",), models: Collection[str] | None = None,
                 api_versions: Collection[str] = ("v1alpha", "v1beta"),
                 bad_key_close: tuple[int, str] = (1008, BAD_KEY_REASON), bad_key_http_status: int | None = None,
                 setup_mode: str = "complete", setup_delay_s: float = 0.0,
                 setup_close: tuple[int, str] = (1011, "Internal error encountered."),
                 auto_reply: AutoReply | None = None, binary_frames: bool = True, session_id: str | None = None,
                 resume_mode: str = "accept") -> None:
        assert resume_mode in RESUME_MODES, resume_mode
        self.api_keys, self.models, self.api_versions = api_keys, models, api_versions
        self.bad_key_close, self.bad_key_http_status = bad_key_close, bad_key_http_status
        self.setup_mode, self.setup_delay_s, self.setup_close = setup_mode, setup_delay_s, setup_close
        self.auto_reply, self.binary_frames, self.session_id = auto_reply, binary_frames, session_id
        self.resume_mode = resume_mode
        self.issued_handles: list[str] = []
        self.on_setup: Hook | None = None
        self.on_message: Hook | None = None
        self.on_activity_end: Hook | None = None
        self.rejected: list[tuple[float, str, int]] = []  # (monotonic, path, HTTP status) of refused handshakes
        self._lock = threading.Lock()
        self._messages: list[Message] = []
        self._connections: list[LiveConnection] = []
        self._errors: list[BaseException] = []
        self._owner = self  # for @_bridged
        self._loop: asyncio.AbstractEventLoop | None = None
        self._changed: asyncio.Event | None = None
        self._server: Any = None  # the websockets server listening now (None while refused)
        self._servers: list[Any] = []  # every server started: stopped ones still hold connections
        self._tls: LocalTLS | None = None
        self._thread: threading.Thread | None = None
        self._thread_stop: asyncio.Event | None = None
        self.port = 0

    # ----- lifecycle
    @property
    def endpoint(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def ca_file(self) -> str:
        assert self._tls is not None, "double not started"
        return self._tls.ca_file

    async def astart(self) -> "LiveDouble":
        """Start serving in the running event loop."""
        self._loop = asyncio.get_running_loop()
        self._changed = asyncio.Event()
        self._tls = LocalTLS()
        await self._listen()
        return self

    async def _listen(self) -> None:
        from websockets.asyncio.server import serve

        assert self._tls is not None
        self._server = await serve(self._handle, "127.0.0.1", self.port, ssl=self._tls.server_context(),
                                   process_request=self._process_request, ping_interval=None,
                                   max_size=16 * 2**20, logger=log)
        self._servers.append(self._server)
        self.port = self._server.sockets[0].getsockname()[1]

    @_bridged
    async def stop_listening(self) -> None:
        """Refuse new connections (the port is closed); connections already open go on."""
        if self._server is not None:
            self._server.server.close()  # the asyncio listener only, not the websockets it accepted
            self._server = None

    @_bridged
    async def start_listening(self) -> None:
        """Listen again, on the same port, after stop_listening()."""
        if self._server is None:
            await self._listen()

    def stop_listening_sync(self) -> None:
        self.run(self.stop_listening())

    def start_listening_sync(self) -> None:
        self.run(self.start_listening())

    async def aclose(self) -> None:
        """Close all connections (1001), stop the server, remove the TLS files."""
        servers, self._servers, self._server = self._servers, [], None
        for server in servers:
            server.close()
        for server in servers:
            await server.wait_closed()
        for conn in self.connections:
            for task in list(conn._tasks):
                task.cancel()
            await asyncio.gather(*conn._tasks, return_exceptions=True)
        if self._tls is not None:
            self._tls.cleanup()

    async def __aenter__(self) -> "LiveDouble":
        return await self.astart()

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def start_in_thread(self, timeout: float = 10.0) -> "LiveDouble":
        """Serve from a background thread with its own event loop; returns self once listening."""
        ready, failure = threading.Event(), []

        async def body() -> None:
            try:
                self._thread_stop = asyncio.Event()
                await self.astart()
            except BaseException as exc:  # reported to the caller
                failure.append(exc)
                return
            finally:
                ready.set()
            await self._thread_stop.wait()
            await self.aclose()

        self._thread = threading.Thread(target=lambda: asyncio.run(body()), name="live-double", daemon=True)
        self._thread.start()
        if not ready.wait(timeout) or failure:
            raise RuntimeError("live double failed to start") from (failure[0] if failure else None)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop a double started with start_in_thread()."""
        if self._thread is None:
            raise RuntimeError("stop() is for start_in_thread(); use `await aclose()` in async code")
        if self._loop is not None and self._thread_stop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._thread_stop.set)
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise RuntimeError("live double thread did not stop")
        self._thread = None

    def __enter__(self) -> "LiveDouble":
        return self.start_in_thread()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def run(self, coro: Awaitable[Any], timeout: float | None = 30.0) -> Any:
        """From a thread without the double's loop: run a coroutine on it and return its result."""
        assert self._loop is not None, "double not started"
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    # ----- recorded state (thread-safe copies)
    @property
    def connections(self) -> list[LiveConnection]:
        with self._lock:
            return list(self._connections)

    @property
    def messages(self) -> list[Message]:
        with self._lock:
            return list(self._messages)

    @property
    def errors(self) -> list[BaseException]:
        """Exceptions raised by hooks, the auto-reply or the handler (should stay empty)."""
        with self._lock:
            return list(self._errors)

    def messages_of(self, kind: str, conn: LiveConnection | int | None = None, since: int = 0) -> list[Message]:
        number = conn.number if isinstance(conn, LiveConnection) else conn
        return [m for m in self.messages
                if m.kind == kind and m.seq > since and (number is None or m.conn == number)]

    def kinds(self, conn: LiveConnection | int | None = None) -> list[str]:
        number = conn.number if isinstance(conn, LiveConnection) else conn
        return [m.kind for m in self.messages if number is None or m.conn == number]

    def audio_received(self, conn: LiveConnection | int | None = None) -> bytes:
        """All uplink audio bytes, concatenated in arrival order (optionally of one connection)."""
        return b"".join(m.blob or b"" for m in self.messages_of("audio", conn))

    # ----- waiting (never sleep to synchronise)
    @_bridged
    async def wait_for(self, predicate: Callable[[], Any], timeout: float = 5.0, what: str | None = None) -> Any:
        """Wait until predicate() (evaluated on the double's loop) is truthy; return its value."""
        deadline = time.monotonic() + timeout
        while not (value := predicate()):
            changed = self._changed
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"live double: timed out after {timeout}s waiting for {what or predicate}")
            try:
                await asyncio.wait_for(changed.wait(), remaining)
            except asyncio.TimeoutError:
                pass
        return value

    async def wait_for_message(self, kind: str, timeout: float = 5.0, *, conn: LiveConnection | int | None = None,
                               nth: int = 1, since: int = 0) -> Message:
        """The nth message of ``kind`` (optionally on one connection, with seq > since)."""
        assert kind in KINDS, kind

        def found() -> Message | None:
            hits = self.messages_of(kind, conn, since)
            return hits[nth - 1] if len(hits) >= nth else None

        return await self.wait_for(found, timeout, what=f"{kind} #{nth}")

    async def wait_for_connection(self, nth: int = 1, timeout: float = 5.0) -> LiveConnection:
        """The nth connection, once its setup arrived (or it closed)."""

        def found() -> LiveConnection | None:
            conns = self.connections
            return conns[nth - 1] if len(conns) >= nth and (conns[nth - 1].setup or conns[nth - 1].closed) else None

        return await self.wait_for(found, timeout, what=f"connection #{nth}")

    def wait_for_sync(self, predicate: Callable[[], Any], timeout: float = 5.0) -> Any:
        return self.run(self.wait_for(predicate, timeout), timeout + 5)

    def wait_for_message_sync(self, kind: str, timeout: float = 5.0, **kw: Any) -> Message:
        return self.run(self.wait_for_message(kind, timeout, **kw), timeout + 5)

    def wait_for_connection_sync(self, nth: int = 1, timeout: float = 5.0) -> LiveConnection:
        return self.run(self.wait_for_connection(nth, timeout), timeout + 5)

    # ----- server internals
    def _notify(self) -> None:
        if self._changed is not None:
            self._changed.set()
            self._changed = asyncio.Event()

    def _add_error(self, exc: BaseException) -> None:
        log.error("live double error: %r", exc, exc_info=exc)
        with self._lock:
            self._errors.append(exc)
        self._notify()

    def _issued(self, handle: str) -> None:
        with self._lock:
            self.issued_handles.append(handle)
        try:
            mine = asyncio.get_running_loop() is self._loop
        except RuntimeError:
            mine = False
        if mine:
            self._notify()
        elif self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._notify)

    def _handle_refused(self, handle: str | None) -> bool:
        if handle is None or self.resume_mode == "ignore":
            return False
        return self.resume_mode == "reject_all" or handle not in self.issued_handles

    def _key_ok(self, key: str | None) -> bool:
        return self.api_keys is None or key in self.api_keys

    def _process_request(self, connection: Any, request: Any) -> Any:
        m = PATH_RE.match(request.path.split("?", 1)[0])  # not urlsplit: "//ws/..." is no netloc
        status = None
        if not m or m["version"] not in self.api_versions:
            status, body = HTTPStatus.NOT_FOUND, "Not Found\n"
        elif self.bad_key_http_status:
            key = request.headers.get("x-goog-api-key") or _query_key(request.path)
            if not self._key_ok(key):
                status, body = HTTPStatus(self.bad_key_http_status), BAD_KEY_REASON + "\n"
        if status is None:
            return None
        with self._lock:
            self.rejected.append((time.monotonic(), request.path, int(status)))
        return connection.respond(status, body)

    def _record(self, conn: LiveConnection, raw: str | bytes) -> Message:
        arrived = time.monotonic()  # the frame's arrival, before the double's own parsing
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = None
        data = normalize(parsed) if isinstance(parsed, dict) else {}
        try:
            kind, blob, mime = classify(data)
        except (ValueError, TypeError, AttributeError):  # undecodable base64 etc.
            kind, blob, mime = "other", None, None
        with self._lock:
            msg = Message(conn.number, len(self._messages) + 1, arrived, kind, data, text, parsed, blob, mime)
            self._messages.append(msg)
        self._notify()
        return msg

    async def _handle(self, ws: Any) -> None:
        with self._lock:
            conn = LiveConnection(self, ws, len(self._connections) + 1)
            self._connections.append(conn)
        self._notify()
        try:
            await self._serve(conn, ws)
        except Exception as exc:
            if not _is_closed_error(exc):
                self._add_error(exc)
                await ws.close(1011, "live double error")
        finally:
            conn.closed = True
            for task in list(conn._tasks):
                task.cancel()
            await asyncio.gather(*conn._tasks, return_exceptions=True)
            conn.close_code, conn.close_reason = ws.close_code, ws.close_reason
            self._notify()

    async def _serve(self, conn: LiveConnection, ws: Any) -> None:
        first = self._record(conn, await ws.recv())
        if first.kind != "setup":
            await ws.close(1007, "Invalid JSON payload: the first message must be setup.")
            return
        conn.setup = first.data["setup"] if isinstance(first.data["setup"], dict) else {}
        conn.model = conn.setup.get("model")
        conn.resume_handle = (conn.setup.get("session_resumption") or {}).get("handle")
        self._notify()
        model_id = (conn.model or "").removeprefix("models/")
        if not self._key_ok(conn.api_key):
            await ws.close(*self.bad_key_close)
            return
        if self.models is not None and model_id not in self.models:
            await ws.close(1008, f"models/{model_id} is not found for API version {conn.api_version}, "
                                 "or is not supported for bidiGenerateContent.")
            return
        if self._handle_refused(conn.resume_handle):
            await ws.close(1008, BAD_HANDLE_REASON)
            return
        conn.resumed = conn.resume_handle is not None and self.resume_mode != "ignore"
        if self.setup_mode == "close":
            await ws.close(*self.setup_close)
            return
        if self.setup_mode == "complete":
            if self.setup_delay_s:
                await asyncio.sleep(self.setup_delay_s)
            await conn.send_raw({"setupComplete": {"sessionId": self.session_id} if self.session_id else {}})
            conn.setup_completed = True
            self._notify()
            if self.on_setup:
                conn.spawn(self.on_setup(conn))
        async for raw in ws:
            msg = self._record(conn, raw)
            if self.on_message:
                conn.spawn(self.on_message(conn, msg))
            if msg.kind == "activity_start" and self.auto_reply and self.auto_reply.interruptible:
                await conn._interrupt_reply()
            elif msg.kind == "activity_end":
                if self.on_activity_end:
                    conn.spawn(self.on_activity_end(conn, msg))
                elif self.auto_reply:
                    conn._reply = conn.spawn(conn._auto_reply(self.auto_reply))
