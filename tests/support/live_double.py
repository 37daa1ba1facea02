"""A local test double of the Gemini Live API (BidiGenerateContent over TLS websockets).

The real ``google-genai`` SDK connects to it with ``base_url=double.endpoint`` and
``async_client_args={"ssl": ssl.create_default_context(cafile=double.ca_file)}``.
It records every client message (normalized to snake_case, raw JSON kept) and lets a
test script the server side: audio, transcriptions, interruptions, goAway, resumption
updates, tool calls, unknown messages, close codes and dropped connections.

Run it in the test's own event loop (``async with LiveDouble() as double``) or in a
background thread (``double = LiveDouble().start_in_thread()`` ... ``double.stop()``).
Every coroutine method may be awaited from any event loop (it is bridged to the
double's loop); from plain threads use ``double.run(coro)`` or the ``*_sync`` helpers.
"""

from __future__ import annotations

import array
import asyncio
import base64
import functools
import json
import logging
import math
import re
import threading
import time
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Awaitable, Callable, Collection
from urllib.parse import parse_qs

from .tls import LocalTLS

log = logging.getLogger("tests.live_double")

PATH_RE = re.compile(
    r"^/+ws/google\.ai\.generativelanguage\.(?P<version>[A-Za-z0-9]+)"
    r"\.GenerativeService\.(?P<method>BidiGenerateContent(?:Constrained)?)$"
)
BAD_KEY_REASON = "API key not valid. Please pass a valid API key."
KINDS = ("setup", "activity_start", "activity_end", "audio_stream_end", "audio", "video", "text",
         "client_content", "tool_response", "other")
# Values under these keys are user data (function args, schemas, labels): keys kept as sent.
_OPAQUE = frozenset({"args", "response", "labels", "properties", "partial_args",
                     "parameters_json_schema", "response_json_schema"})
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")

Hook = Callable[..., Awaitable[None]]


def snake(name: str) -> str:
    """``realtimeInput`` -> ``realtime_input`` (snake_case input is returned unchanged)."""
    return _CAMEL.sub("_", name).lower()


def normalize(obj: Any) -> Any:
    """Recursively convert dict keys to snake_case, leaving user-data subtrees alone."""
    if isinstance(obj, dict):
        return {snake(k): (v if snake(k) in _OPAQUE else normalize(v)) for k, v in obj.items()}
    if isinstance(obj, list):
        return [normalize(v) for v in obj]
    return obj


def b64decode_any(text: str) -> bytes:
    """Decode URL-safe or standard base64, with or without padding."""
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def tone(seconds: float, rate: int = 24000, freq: float = 440.0, level: float = 0.25) -> bytes:
    """A sine tone as s16le mono PCM (a recognisable, non-silent reply)."""
    amp = int(32767 * level)
    n = int(seconds * rate)
    return array.array("h", (int(amp * math.sin(2 * math.pi * freq * i / rate)) for i in range(n))).tobytes()


def classify(data: dict) -> tuple[str, bytes | None, str | None]:
    """Kind of a normalized client message, plus decoded media bytes and mime type."""
    for kind in ("setup", "client_content", "tool_response"):
        if kind in data:
            return kind, None, None
    rt = data.get("realtime_input")
    if not isinstance(rt, dict):
        return "other", None, None
    for kind in ("activity_start", "activity_end", "audio_stream_end", "text"):
        if kind in rt:
            return kind, None, None
    for kind in ("audio", "video"):
        if isinstance(rt.get(kind), dict):
            return kind, b64decode_any(rt[kind].get("data", "")), rt[kind].get("mime_type")
    chunks = rt.get("media_chunks")
    if isinstance(chunks, list) and chunks:
        mime = chunks[0].get("mime_type") or ""
        blob = b"".join(b64decode_any(c.get("data", "")) for c in chunks)
        return ("video" if mime.startswith("image/") else "audio"), blob, mime
    return "other", None, None


@dataclass(frozen=True)
class Message:
    """One recorded client -> server message."""

    conn: int  # connection number, 1-based, in accept order
    seq: int  # global order across connections, 1-based
    t: float  # time.monotonic() at receipt
    kind: str  # one of KINDS
    data: dict  # parsed JSON with snake_case keys
    raw: str  # the frame as received
    raw_json: Any  # parsed JSON, keys as sent
    blob: bytes | None = None  # decoded audio / video bytes
    mime_type: str | None = None


@dataclass
class AutoReply:
    """Default responder: answers every activity_end with a scripted model turn.

    Sends inputTranscription(input_text), then ``pcm`` (or ``seconds`` of a tone) in
    chunk_ms chunks with an outputTranscription after the first chunk, then
    generationComplete and turnComplete, then a sessionResumptionUpdate if the setup
    asked for resumption. With ``interruptible``, an activity_start during the reply
    cancels it and sends interrupted + turnComplete (barge-in).
    """

    pcm: bytes | None = None
    seconds: float = 1.0
    rate: int = 24000
    chunk_ms: int = 40
    realtime: bool = False
    delay_s: float = 0.0
    input_text: str | None = "hello"
    output_text: str | None = "hi there"
    interruptible: bool = True
    resumption_updates: bool = True

    def audio(self) -> bytes:
        return self.pcm if self.pcm is not None else tone(self.seconds, self.rate)


def _bridged(fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    """Run a coroutine method on the double's loop, whichever loop awaits it."""

    @functools.wraps(fn)
    async def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        loop = self._owner._loop
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if loop is None or running is loop:
            return await fn(self, *args, **kwargs)
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(fn(self, *args, **kwargs), loop))

    return wrapper


class LiveConnection:
    """One client websocket: what it sent (recorded) and scripted server actions."""

    def __init__(self, owner: "LiveDouble", ws: Any, number: int) -> None:
        self._owner = owner
        self._ws = ws
        self._tasks: set[asyncio.Task] = set()
        self._reply: asyncio.Task | None = None
        self.number = number
        self.path: str = ws.request.path
        m = PATH_RE.match(self.path.split("?", 1)[0])
        self.api_version = m["version"] if m else None
        self.method = m["method"] if m else None
        self.headers = {k.lower(): v for k, v in ws.request.headers.raw_items()}
        self.api_key: str | None = self.headers.get("x-goog-api-key", _query_key(self.path))
        self.opened_at = time.monotonic()
        self.setup: dict | None = None  # normalized content of the setup message
        self.model: str | None = None  # as sent, e.g. "models/gemini-3.8-live"
        self.resume_handle: str | None = None  # setup.session_resumption.handle
        self.setup_completed = False
        self.closed = False
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self.sent: list[Any] = []  # server -> client messages (dicts or raw strings)
        self.audio_sent = bytearray()
        self.turns = 0  # completed auto-reply turns
        self.handles: list[str] = []  # resumption handles sent

    def __repr__(self) -> str:
        return f"<LiveConnection #{self.number} model={self.model} closed={self.closed}>"

    @property
    def messages(self) -> list[Message]:
        return [m for m in self._owner.messages if m.conn == self.number]

    def audio_received(self) -> bytes:
        return self._owner.audio_received(self)

    @_bridged
    async def send_raw(self, msg: dict | str | bytes, *, binary: bool | None = None) -> None:
        """Send any message; dicts are JSON-encoded. Binary frame unless binary=False."""
        text = msg if isinstance(msg, (str, bytes)) else json.dumps(msg, separators=(",", ":"))
        binary = self._owner.binary_frames if binary is None else binary
        if binary and isinstance(text, str):
            text = text.encode()
        elif not binary and isinstance(text, bytes):
            text = text.decode()
        self.sent.append(msg)
        await self._ws.send(text)

    async def send_server_content(self, **content: Any) -> None:
        """serverContent with the given camelCase fields."""
        await self.send_raw({"serverContent": content})

    @_bridged
    async def send_audio(self, pcm: bytes, rate: int = 24000, chunk_ms: int = 40, realtime: bool = False,
                         transcript: str | None = None) -> None:
        """Model audio as serverContent.modelTurn inlineData chunks (standard base64)."""
        step = max(2, int(rate * chunk_ms / 1000) * 2)
        loop, start = asyncio.get_running_loop(), asyncio.get_running_loop().time()
        for i, off in enumerate(range(0, len(pcm), step)):
            if realtime and (wait := start + i * chunk_ms / 1000 - loop.time()) > 0:
                await asyncio.sleep(wait)
            chunk = pcm[off:off + step]
            part = {"inlineData": {"mimeType": f"audio/pcm;rate={rate}", "data": base64.b64encode(chunk).decode()}}
            await self.send_server_content(modelTurn={"role": "model", "parts": [part]})
            self.audio_sent += chunk
            if i == 0 and transcript:
                await self.send_output_transcription(transcript)

    async def send_input_transcription(self, text: str, finished: bool | None = None) -> None:
        await self.send_server_content(inputTranscription=_transcription(text, finished))

    async def send_output_transcription(self, text: str, finished: bool | None = None) -> None:
        await self.send_server_content(outputTranscription=_transcription(text, finished))

    async def send_interrupted(self) -> None:
        await self.send_server_content(interrupted=True)

    async def send_generation_complete(self) -> None:
        await self.send_server_content(generationComplete=True)

    async def send_turn_complete(self) -> None:
        await self.send_server_content(turnComplete=True)

    async def send_go_away(self, time_left_s: float = 60) -> None:
        await self.send_raw({"goAway": {"timeLeft": f"{time_left_s:g}s"}})

    async def send_resumption_update(self, handle: str | None, resumable: bool = True) -> None:
        update: dict[str, Any] = {"resumable": resumable}
        if handle is not None:
            update["newHandle"] = handle
            self.handles.append(handle)
        await self.send_raw({"sessionResumptionUpdate": update})

    async def send_tool_call(self, name: str, args: dict | None = None, call_id: str = "call-1") -> None:
        await self.send_raw({"toolCall": {"functionCalls": [{"id": call_id, "name": name, "args": args or {}}]}})

    async def send_tool_call_cancellation(self, ids: list[str]) -> None:
        await self.send_raw({"toolCallCancellation": {"ids": ids}})

    @_bridged
    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close with a close frame (the SDK raises APIError(code) from receive())."""
        await self._ws.close(code, reason)

    @_bridged
    async def abort(self) -> None:
        """Drop the TCP connection without a close frame (the SDK sees 1006)."""
        self._ws.transport.abort()

    @_bridged
    async def wait_closed(self, timeout: float = 5.0) -> None:
        await self._owner.wait_for(lambda: self.closed, timeout, what=f"connection #{self.number} closed")

    def spawn(self, coro: Awaitable[Any]) -> asyncio.Task:
        """Run a coroutine tied to this connection (cancelled when it closes; errors recorded)."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            if not self.closed or not _is_closed_error(exc):
                self._owner._add_error(exc)

    async def _auto_reply(self, script: AutoReply) -> None:
        if script.delay_s:
            await asyncio.sleep(script.delay_s)
        if script.input_text:
            await self.send_input_transcription(script.input_text, finished=True)
        await self.send_audio(script.audio(), script.rate, script.chunk_ms, script.realtime, script.output_text)
        await self.send_generation_complete()
        await self.send_turn_complete()
        self.turns += 1
        if script.resumption_updates and self.setup and "session_resumption" in self.setup:
            await self.send_resumption_update(f"handle-{self.number}-{self.turns}")

    async def _interrupt_reply(self) -> None:
        reply, self._reply = self._reply, None
        if reply is None or reply.done():
            return
        reply.cancel()
        await asyncio.gather(reply, return_exceptions=True)
        await self.send_interrupted()
        await self.send_turn_complete()


def _transcription(text: str, finished: bool | None) -> dict:
    return {"text": text} if finished is None else {"text": text, "finished": finished}


def _query_key(path: str) -> str | None:
    return parse_qs(path.partition("?")[2]).get("key", [None])[0]


def _is_closed_error(exc: BaseException) -> bool:
    from websockets.exceptions import ConnectionClosed

    return isinstance(exc, ConnectionClosed)


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
    Hooks (async callables, run as tasks tied to the connection):
      on_setup(conn), on_message(conn, msg), on_activity_end(conn, msg) (replaces auto_reply).
    """

    def __init__(self, *, api_keys: Collection[str] | None = ("test-key",), models: Collection[str] | None = None,
                 api_versions: Collection[str] = ("v1alpha", "v1beta"),
                 bad_key_close: tuple[int, str] = (1008, BAD_KEY_REASON), bad_key_http_status: int | None = None,
                 setup_mode: str = "complete", setup_delay_s: float = 0.0,
                 setup_close: tuple[int, str] = (1011, "Internal error encountered."),
                 auto_reply: AutoReply | None = None, binary_frames: bool = True, session_id: str | None = None) -> None:
        self.api_keys, self.models, self.api_versions = api_keys, models, api_versions
        self.bad_key_close, self.bad_key_http_status = bad_key_close, bad_key_http_status
        self.setup_mode, self.setup_delay_s, self.setup_close = setup_mode, setup_delay_s, setup_close
        self.auto_reply, self.binary_frames, self.session_id = auto_reply, binary_frames, session_id
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
        self._server: Any = None
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
        from websockets.asyncio.server import serve

        self._loop = asyncio.get_running_loop()
        self._changed = asyncio.Event()
        self._tls = LocalTLS()
        self._server = await serve(self._handle, "127.0.0.1", 0, ssl=self._tls.server_context(),
                                   process_request=self._process_request, ping_interval=None,
                                   max_size=16 * 2**20, logger=log)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def aclose(self) -> None:
        """Close all connections (1001), stop the server, remove the TLS files."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
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
            msg = Message(conn.number, len(self._messages) + 1, time.monotonic(), kind, data, text, parsed, blob, mime)
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
