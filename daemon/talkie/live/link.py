"""One Live session: open it, send the outbox in order, report what the server says.

:class:`LiveLink` is the network adapter. ``run()`` opens a session with the real ``google-genai``
SDK, calls ``listener.opened()``, then sends the uplink outbox and receives server messages
concurrently, until the connection ends. It never raises (but for cancellation, which is how the
shell closes a session): every failure ends in one ``listener.lost(reason, fatal)`` call.

Session lifetime. Every setup asks for session resumption; the newest resumable handle the server
sends goes to the :class:`~talkie.live.resume.ResumeStore`, and the next ``run()`` sets up with it,
so the conversation survives a dropped connection, a ``goAway`` hand-over and a daemon restart. A
``goAway`` is reported as ``listener.go_away(seconds)``: the shell chooses when to hand over (cancel
this run, let it close the socket, then ``run()`` again). If the server refuses the handle, the
conversation starts afresh: the store is cleared and, when the refusal came during setup, the same
``run()`` tries once more without a handle.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from talkie.config.credentials import KEY_PATH_HINT, KeyProblem, Secret, guard_secret
from talkie.core.outbox import Item, Kind, Outbox
from talkie.core.words import one_line
from talkie.live import errors, options
from talkie.live.wire import duration_s

#: An image (or other medium) that goes with a tool's answer: (mime type, bytes).
Media = tuple[str, bytes]
#: One call's answer: (call id, name, response, scheduling, media).
ToolAnswer = tuple[str, str, Mapping[str, Any], str, Sequence[Media]]

log = logging.getLogger("talkie.live")

INPUT_MIME = "audio/pcm;rate=16000"
#: The most of an exception's text the debug log keeps (a bad frame can be 900 kB).
DETAIL_MAX = 2000


class Listener(Protocol):
    """What a link reports, in the event loop's thread."""

    def opened(self) -> None: ...
    def lost(self, reason: str, fatal: bool) -> None: ...
    def audio(self, pcm: bytes) -> None: ...
    def interrupted(self) -> None: ...
    def turn_complete(self) -> None: ...
    def heard(self, text: str) -> None: ...
    def said(self, text: str) -> None: ...
    def go_away(self, seconds: float) -> None: ...
    def tool_call(self, call_id: str, name: str, args: str) -> None: ...
    def tools_cancelled(self, call_ids: tuple[str, ...]) -> None: ...


class HandleStore(Protocol):
    """Where the newest resumption handle is kept (:class:`~talkie.live.resume.ResumeStore`)."""

    @property
    def handle(self) -> str | None: ...
    def update(self, handle: str | None, resumable: bool) -> None: ...
    def clear(self) -> None: ...
    def flush(self, timeout: float | None = None) -> bool: ...


class LiveLink:
    """A reusable connector: each ``run()`` is one session."""

    def __init__(
        self,
        live: Any,
        key: Secret | KeyProblem,
        outbox: Outbox,
        listener: Listener,
        resume: HandleStore | None = None,
    ):
        self.live = live
        self.key = key
        self.outbox = outbox
        self.listener = listener
        #: Where the conversation's resumption handle is kept; None: every session starts afresh.
        self.resume = resume
        self._opened = False  # the current attempt got past setup
        self._ready = asyncio.Event()
        self._generation = 0
        self._session: Any = None
        self._closing: asyncio.Future[None] | None = None
        self._client: Any = None
        self._heard: list[str] = []
        #: This conversation was already resumed once (said in the journal then, not again).
        self._resumed = False
        self._said: list[str] = []
        #: The function declarations for each new session (the shell's registry of tools).
        self.declarations: Callable[[], Sequence[Mapping[str, Any]]] = list
        #: The calls the current session made and that have not been answered yet.
        self._calls: set[str] = set()

    def configure(self, live: Any, key: Secret | KeyProblem) -> None:
        """New settings and key (a reload): they apply from the next session on."""
        if (live.endpoint, live.api_version, live.ca_file) != (
            self.live.endpoint,
            self.live.api_version,
            self.live.ca_file,
        ) or key != self.key:
            self._client = None
        self.live, self.key = live, key

    def prepare(self) -> None:
        """Import the SDK ahead of the first press (blocking: run it in a worker thread).

        ``google.genai`` takes most of a second to import; the shell calls this once the daemon is
        ready, so the first press pays only for the connection.
        """
        if isinstance(self.key, Secret):
            self._make_client()

    def wake(self) -> None:
        """The outbox has something to send (called from the outbox's ``on_ready``)."""
        self._ready.set()

    async def run(self) -> None:
        """Open a session and serve it until it ends; report how it ended."""
        if isinstance(self.key, KeyProblem):
            self.listener.lost(self.key.message, True)
            return
        handle = self.resume.handle if self.resume is not None else None
        ended = await self._attempt(handle)
        if ended is not None and handle is not None:
            if not self._opened and (why := errors.setup_refusal(ended)):
                self._start_afresh(why)
                ended = await self._attempt(None)
            elif self._opened and (why := errors.resumption_refusal(ended)):
                self._start_afresh(why)
                self.listener.lost("the previous conversation could not be resumed", False)
                return
        self._report(ended)

    async def _attempt(self, handle: str | None) -> Exception | None:
        """One session: what ended it, or None if the server closed it normally."""
        try:
            await self._serve(handle)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - every failure becomes one report
            log.debug("session ended: %s", self._redact(repr(exc))[:DETAIL_MAX])
            return exc
        return None

    def _start_afresh(self, why: str) -> None:
        self._resumed = False
        log.warning(
            "the previous conversation could not be resumed (%s); starting a fresh one",
            one_line(self._redact(why)),
        )
        if self.resume is not None:
            self.resume.clear()

    def _report(self, ended: Exception | None) -> None:
        if ended is None:
            self.listener.lost("closed by the server", False)
            return
        home = self.key.home if isinstance(self.key, Secret) else KEY_PATH_HINT
        failure = errors.classify(
            ended, model=self.live.model, timeout_s=self.live.connect_timeout_s, key_home=home
        )
        self.listener.lost(self._redact(failure.reason), failure.fatal)

    def _redact(self, text: str) -> str:
        return self.key.redact(text) if isinstance(self.key, Secret) else text

    def _make_client(self) -> Any:
        if self._client is None:
            from google import genai

            key = self.key
            assert isinstance(key, Secret)  # run() and prepare() check that first
            guard_secret(key.reveal())
            self._client = genai.Client(
                api_key=key.reveal(), http_options=options.http_options(self.live)
            )
        return self._client

    async def _serve(self, handle: str | None) -> None:
        self._opened = False
        client = self._make_client()
        config = options.connect_config(self.live, handle, self.declarations())
        if handle is None:
            self._resumed = False  # a fresh conversation: its first resume is news again
        elif not self._resumed:
            self._resumed = True
            log.info("resuming the previous conversation")  # once per conversation
        else:
            log.debug("resuming the conversation on a new connection")
        async with contextlib.AsyncExitStack() as stack:
            async with asyncio.timeout(self.live.connect_timeout_s):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", DeprecationWarning)
                    session = await stack.enter_async_context(
                        client.aio.live.connect(model=self.live.model, config=config)
                    )
            self._opened = True
            self._session = session
            stack.callback(setattr, self, "_session", None)
            self._heard.clear()
            self._said.clear()
            self._calls.clear()
            self.outbox.connected()  # nothing is open on this connection yet
            self.listener.opened()
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._send_loop(session))
                tg.create_task(self._receive_loop(session))

    # ---- uplink

    async def _send_loop(self, session: Any) -> None:
        from google.genai import types

        automatic = self.live.automatic_activity_detection
        generation = self._generation
        while generation == self._generation:  # stop() ends it before its next send
            item = self.outbox.peek()
            if item is None:
                self._ready.clear()
                await self._ready.wait()
                continue
            await self._send(session, types, item, automatic)
            self.outbox.sent(item)

    async def send_video(self, jpeg: bytes) -> bool:
        """Send one camera frame if a session is up; False (the frame is dropped) if not.

        Frames are never queued: a stale frame is worth nothing, the next one comes soon.
        """
        session = self._session
        if session is None:
            return False
        from google.genai import types

        await session.send_realtime_input(video=types.Blob(data=jpeg, mime_type="image/jpeg"))
        return True

    async def send_tool_responses(self, answers: Sequence[ToolAnswer]) -> int:
        """Answer calls this session made, in one ``toolResponse``: each answer is ``(call id,
        name, response, scheduling, media)``, its media (images) sent as parts of it. An answer
        to a call of a session that is gone (void) or answered already is left out; how many
        went."""
        session = self._session
        due = [a for a in answers if session is not None and a[0] in self._calls]
        for call_id, *_ in answers:
            if session is None or call_id not in self._calls:
                log.debug("tool call %s: its session is gone; the answer is dropped", call_id)
        if session is None or not due:
            return 0
        from google.genai import types

        responses = []
        for call_id, name, response, scheduling, media in due:
            self._calls.discard(call_id)
            parts = [
                types.FunctionResponsePart(
                    inline_data=types.FunctionResponseBlob(mime_type=mime, data=data)
                )
                for mime, data in media
            ]
            responses.append(
                types.FunctionResponse(
                    id=call_id,
                    name=name or None,
                    response=dict(response),
                    scheduling=types.FunctionResponseScheduling(scheduling.upper()),
                    parts=parts or None,
                )
            )
        await session.send_tool_response(function_responses=responses)
        return len(responses)

    def stop(self) -> None:
        """The shell is closing this session (a handover, a reset): send nothing more on it.

        Synchronous, so that an outbox rewound right after cannot be drained onto the old socket
        by a sender that has not seen its cancellation yet.
        """
        self._generation += 1
        self._ready.set()
        if self._session is not None:
            # Close with 1000 before the shell cancels the task (a cancelled context would close
            # with 1011): the server sees a clean goodbye.
            self._closing = asyncio.ensure_future(self._session.close())
            # A socket that is already dead fails to close: nothing to report, and nothing left
            # for asyncio to complain about ("exception was never retrieved").
            self._closing.add_done_callback(lambda f: f.cancelled() or f.exception())

    @staticmethod
    async def _send(session: Any, types: Any, item: Item, automatic: bool) -> None:
        if item.kind is Kind.AUDIO:
            await session.send_realtime_input(audio=types.Blob(data=item.pcm, mime_type=INPUT_MIME))
        elif item.kind is Kind.TEXT:
            turn = types.Content(role="user", parts=[types.Part(text=item.text)])
            await session.send_client_content(turns=turn, turn_complete=True)
        elif automatic:
            # With the server's own activity detection, a release only says the stream paused.
            if item.kind is Kind.ACTIVITY_END:
                await session.send_realtime_input(audio_stream_end=True)
        elif item.kind is Kind.ACTIVITY_START:
            await session.send_realtime_input(activity_start=types.ActivityStart())
        else:
            await session.send_realtime_input(activity_end=types.ActivityEnd())

    # ---- downlink

    async def _receive_loop(self, session: Any) -> None:
        while True:  # receive() ends at every turnComplete: enter it again
            async for message in session.receive():
                self._dispatch(message)

    def _dispatch(self, message: Any) -> None:
        content = message.server_content
        if content is not None:
            self._content(content)
        update = message.session_resumption_update
        if update is not None and self.resume is not None:
            self.resume.update(update.new_handle, bool(update.resumable))
        if message.go_away is not None:
            self._go_away(message.go_away.time_left)
        if message.tool_call is not None:
            self._tool_call(message.tool_call)
        if message.tool_call_cancellation is not None:
            ids = tuple(str(i) for i in message.tool_call_cancellation.ids or ())
            self._calls.difference_update(ids)
            if ids:
                self.listener.tools_cancelled(ids)
        # usage_metadata (token counts): nothing to do.

    def _tool_call(self, call: Any) -> None:
        """Each function call of a ``toolCall``, to the listener (with a made-up id if the
        server sent none: the answer must still match it)."""
        for n, function in enumerate(call.function_calls or ()):
            call_id = str(function.id or f"talkie-{self._generation}-{len(self._calls)}-{n}")
            try:
                args = json.dumps(function.args or {}, ensure_ascii=False)
            except (TypeError, ValueError):
                args = "null"  # the runner answers: the arguments are not an object
            self._calls.add(call_id)
            self.listener.tool_call(call_id, str(function.name or ""), args)

    def _go_away(self, time_left: Any) -> None:
        seconds = duration_s(time_left)
        if seconds is None:
            log.info("the server will close this session soon (time left: %r)", time_left)
            seconds = 0.0
        else:
            log.info("the server will close this session in %g s", seconds)
        self.listener.go_away(seconds)

    def _content(self, content: Any) -> None:
        if content.input_transcription is not None and content.input_transcription.text:
            self._heard.append(content.input_transcription.text)
        if content.output_transcription is not None and content.output_transcription.text:
            self._said.append(content.output_transcription.text)
        if content.model_turn is not None:
            for part in content.model_turn.parts or ():
                blob = part.inline_data
                if (
                    blob is not None
                    and blob.data
                    and (blob.mime_type or "").startswith("audio/pcm")
                ):
                    self.listener.audio(blob.data)
        if content.interrupted:
            self.listener.interrupted()
            self._flush_transcripts()
        if content.turn_complete:
            self._flush_transcripts()
            self.listener.turn_complete()

    def _flush_transcripts(self) -> None:
        for parts, report in ((self._heard, self.listener.heard), (self._said, self.listener.said)):
            text = "".join(parts).strip()
            parts.clear()
            if text:
                report(text)
