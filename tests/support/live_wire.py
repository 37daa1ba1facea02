"""The wire side of the Live test double: frames, recorded messages, one connection's script.

:mod:`tests.support.live_double` holds the server (:class:`~tests.support.live_double.LiveDouble`);
this module holds what it is made of: path and message classification, snake_case normalisation,
:class:`Message` (one recorded client frame), :class:`AutoReply` (the default responder) and
:class:`LiveConnection` (one client websocket with the server actions a test can script).
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
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Awaitable, Callable
from urllib.parse import parse_qs

if TYPE_CHECKING:  # pragma: no cover
    from .live_double import LiveDouble

log = logging.getLogger("tests.live_double")

PATH_RE = re.compile(
    r"^/+ws/google\.ai\.generativelanguage\.(?P<version>[A-Za-z0-9]+)"
    r"\.GenerativeService\.(?P<method>BidiGenerateContent(?:Constrained)?)$"
)
BAD_KEY_REASON = "API key not valid. Please pass a valid API key."
BAD_HANDLE_REASON = "invalid session resumption handle"
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
        self.resumed = False  # resume_handle was accepted: this connection continues a conversation
        self.setup_completed = False
        self.closed = False
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self.sent: list[Any] = []  # server -> client messages (dicts or raw strings)
        self.audio_sent = bytearray()
        self.turns = 0  # completed auto-reply turns
        self.handles: list[str] = []  # resumption handles sent on this connection
        self.tool_calls_sent: dict[str, float] = {}  # call id -> time.monotonic() of its toolCall

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
            self._owner._issued(handle)
        await self.send_raw({"sessionResumptionUpdate": update})

    async def send_tool_call(self, name: str, args: dict | None = None, call_id: str = "call-1") -> None:
        await self.send_tool_calls([(name, args or {}, call_id)])

    async def send_tool_calls(self, calls: list[tuple[str, Any, str]]) -> None:
        """One toolCall with several function calls: (name, args, id) each; the monotonic time
        of the send is kept by id (``tool_calls_sent``), for latency at the double."""
        functions = [{"id": call_id, "name": name, "args": args} for name, args, call_id in calls]
        now = time.monotonic()
        for _, _, call_id in calls:
            self.tool_calls_sent[call_id] = now
        await self.send_raw({"toolCall": {"functionCalls": functions}})

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
