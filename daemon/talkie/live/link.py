"""One Live session: open it, send the outbox in order, report what the server says.

:class:`LiveLink` is the network adapter. ``run()`` opens a session with the real ``google-genai`` SDK,
calls ``listener.opened()``, then sends the uplink outbox and receives server messages concurrently,
until the connection ends. It never raises (but for cancellation, which is how the shell closes a
session): every failure ends in one ``listener.lost(reason, fatal)`` call.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import warnings
from typing import Any, Protocol

from talkie.live import errors, options
from talkie.system import logs
from talkie.system.credentials import KeyProblem, Secret
from talkie.uplink import Item, Kind, Outbox

log = logging.getLogger("talkie.live")

INPUT_MIME = "audio/pcm;rate=16000"


class Listener(Protocol):
    """What a link reports, in the event loop's thread."""

    def opened(self) -> None: ...
    def lost(self, reason: str, fatal: bool) -> None: ...
    def audio(self, pcm: bytes) -> None: ...
    def interrupted(self) -> None: ...
    def turn_complete(self) -> None: ...
    def heard(self, text: str) -> None: ...
    def said(self, text: str) -> None: ...


class LiveLink:
    """A reusable connector: each ``run()`` is one session."""

    def __init__(self, live: Any, key: Secret | KeyProblem, outbox: Outbox, listener: Listener):
        self.live = live
        self.key = key
        self.outbox = outbox
        self.listener = listener
        self._ready = asyncio.Event()
        self._client: Any = None
        self._heard: list[str] = []
        self._said: list[str] = []

    def configure(self, live: Any, key: Secret | KeyProblem) -> None:
        """New settings and key (a reload): they apply from the next session on."""
        if (live.endpoint, live.api_version, live.ca_file) != \
                (self.live.endpoint, self.live.api_version, self.live.ca_file) or key != self.key:
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
        try:
            await self._serve()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - every failure becomes one report
            failure = errors.classify(exc, model=self.live.model,
                                      timeout_s=self.live.connect_timeout_s)
            log.debug("session ended: %s", self.key.redact(repr(exc)))
            self.listener.lost(self.key.redact(failure.reason), failure.fatal)
        else:
            self.listener.lost("closed by the server", False)

    def _make_client(self) -> Any:
        if self._client is None:
            from google import genai

            logs.guard_secret(self.key.reveal())
            self._client = genai.Client(api_key=self.key.reveal(),
                                        http_options=options.http_options(self.live))
        return self._client

    async def _serve(self) -> None:
        client = self._make_client()
        config = options.connect_config(self.live)
        async with contextlib.AsyncExitStack() as stack:
            async with asyncio.timeout(self.live.connect_timeout_s):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", DeprecationWarning)
                    session = await stack.enter_async_context(
                        client.aio.live.connect(model=self.live.model, config=config))
            self._heard.clear()
            self._said.clear()
            self.listener.opened()
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._send_loop(session))
                tg.create_task(self._receive_loop(session))

    # ---- uplink

    async def _send_loop(self, session: Any) -> None:
        from google.genai import types

        automatic = self.live.automatic_activity_detection
        while True:
            item = self.outbox.peek()
            if item is None:
                self._ready.clear()
                await self._ready.wait()
                continue
            await self._send(session, types, item, automatic)
            self.outbox.sent(item)

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
        if message.go_away is not None:
            log.info("the server will close this session in %s", message.go_away.time_left)
        if message.tool_call is not None:
            log.warning("the model asked for a tool; talkie offers none yet")

    def _content(self, content: Any) -> None:
        if content.input_transcription is not None and content.input_transcription.text:
            self._heard.append(content.input_transcription.text)
        if content.output_transcription is not None and content.output_transcription.text:
            self._said.append(content.output_transcription.text)
        if content.model_turn is not None:
            for part in content.model_turn.parts or ():
                blob = part.inline_data
                if blob is not None and blob.data and (blob.mime_type or "").startswith("audio/pcm"):
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
