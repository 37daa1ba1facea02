"""The tools of MCP servers ([[tools.mcp]]), for the model to call: :class:`McpServers`.

::

    servers = McpServers(settings.tools.mcp, credentials_dir=..., redact=..., on_change=...)
    await servers.start()            # one supervising task per server; returns at once
    await servers.ready(5.0)         # every server listed its tools once, or failed once
    servers.tools()                  # -> list[Tool]: NAME_TOOL, filtered by `allow`
    servers.status()                 # -> {"home": "up" | "starting" | "restarting in 4 s: ..."}
    servers.relist()                 # a reload: the servers that are up list their tools again
    await servers.aclose()           # child processes gone; idempotent

A server is a command speaking MCP on its standard input and output (its standard error goes to the
daemon's: the journal), or a streamable-HTTP URL with a bearer token from ``token_file``
(:func:`~talkie.tools.mcp_result.read_token`) that never shows in a log line, status or result.

Each server has one task: it connects, lists the tools (again on ``tools/list_changed``), keeps the
session until it ends, and after a failure starts again after a full-jitter exponential back-off
(reset once it stayed up 60 s), logging each distinct reason once and the recovery once. Its last
listing stays declared meanwhile, and a call answers at once that it is not available.
``on_change()`` (in the loop) says the declarations changed: the shell declares them anew at the
next Live connection. ``mcp`` is imported only once a server starts (about 1 s and 30 MB).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import random
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TextIO

from talkie.core.words import one_line
from talkie.tools import Result, Run, Tool, error, mcp_result

if TYPE_CHECKING:
    import anyio
    from mcp import ClientSession
    from mcp.types import Tool as McpTool

    from talkie.config.credentials import Secret
    from talkie.config.settings import McpServerSettings

log = logging.getLogger("talkie.tools.mcp")

#: The most the handshake and a listing may take.
HANDSHAKE_S = 20.0
#: A session that stayed up this long resets the back-off.
STABLE_S = 60.0
#: How long stopping may take (a stdio server gets 2 s after its input closes, then a SIGTERM).
CLOSE_S = 8.0


def _errlog() -> TextIO:
    """Where a stdio server's standard error goes: the daemon's own (the journal)."""
    try:
        sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):
        return sys.__stderr__ if sys.__stderr__ is not None else open(os.devnull, "w")
    return sys.stderr


class _Watched:
    """A session's read stream that says when it ended (the server process exited, the HTTP
    transport gave up): the session's dispatcher closes it then, and tells nobody."""

    def __init__(self, inner: Any, on_end: Callable[[], None]) -> None:
        self.inner, self.ended, self._on_end = inner, False, on_end

    def end(self) -> None:
        if not self.ended:
            self.ended = True
            self._on_end()

    @property
    def last_context(self) -> Any:  # the HTTP transport's sender context, for the dispatcher
        return getattr(self.inner, "last_context", None)

    async def receive(self) -> Any:
        return await self.inner.receive()

    def __aiter__(self) -> _Watched:
        return self

    async def __anext__(self) -> Any:
        return await self.inner.__anext__()

    async def aclose(self) -> None:
        self.end()
        await self.inner.aclose()

    async def __aenter__(self) -> _Watched:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class _Server:
    """One server: its supervising task, its session while up, its last listing."""

    def __init__(self, owner: McpServers, settings: McpServerSettings) -> None:
        self.owner = owner
        self.settings = settings
        self.name = settings.name
        self.state, self.reason, self.retry_at = "starting", "", 0.0
        self.session: ClientSession | None = None
        self.link: _Watched | None = None
        self.tools: list[Tool] = []
        self.settled, self.wake = asyncio.Event(), asyncio.Event()
        self.relist = self.stopping = False
        self.scope: anyio.CancelScope | None = None
        self.task: asyncio.Task[None] | None = None
        self.logged = ""  # the failure last logged, until it is back
        self.warned: set[str] = set()
        self.secret: Secret | None = None
        self.http_status = self.lost = ""  # lost: why the session ended, if the server said
        self.up_at: float | None = None

    def redact(self, text: str) -> str:
        text = self.owner.redact(text)
        return self.secret.redact(text) if self.secret is not None else text

    def words(self) -> str:
        if self.state != "restarting":
            return self.state
        left = max(0.0, self.retry_at - asyncio.get_running_loop().time())
        seconds = math.ceil(left) if left >= 1 else round(left, 1)
        return f"restarting in {seconds:g} s: {self.reason}"

    # ---- the supervising task ------------------------------------------------------------

    async def supervise(self) -> None:
        import anyio

        loop = asyncio.get_running_loop()
        attempt = 0
        while not self.stopping:
            self.state, self.up_at = "starting", None
            try:
                with anyio.CancelScope() as scope:
                    self.scope = scope
                    await self._serve()
                reason = self._ended_words()
            except Exception as exc:  # a failing server is a state, not a crash
                reason = self._words(exc)
                log.debug("MCP server %s failed", self.name, exc_info=True)
            except BaseExceptionGroup as group:  # a failure beside a cancellation
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise
                reason = self._words(group)
            finally:
                self.scope = self.session = self.link = None
            if self.stopping:
                break
            if self.up_at is not None and loop.time() - self.up_at >= STABLE_S:
                attempt = 0
            wait = random.uniform(
                0.0, min(self.owner.retry_cap_s, self.owner.retry_first_s * 2**attempt)
            )
            attempt = min(attempt + 1, 30)
            self._failed(reason, loop.time() + wait)
            self.wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self.wake.wait()
        self.state = "stopped"

    async def _serve(self) -> None:
        """Connect, list, and keep the session until it ends."""
        import anyio
        from mcp import ClientSession
        from mcp.types import Implementation

        async with contextlib.AsyncExitStack() as stack:
            read, write = await self._open(stack)
            self.link = link = _Watched(read, self._link_ended)
            session = await stack.enter_async_context(
                ClientSession(
                    link,
                    write,
                    message_handler=self._on_message,
                    client_info=Implementation(name="talkie", version="1"),
                )
            )
            with anyio.fail_after(HANDSHAKE_S):
                await session.initialize()
                listing = await mcp_result.list_tools(session)
            self.session, self.state = session, "up"
            self.up_at = asyncio.get_running_loop().time()
            self._adopt(listing)
            again = "back" if self.logged else "up"
            log.info("MCP server %s is %s: %d tools", self.name, again, len(self.tools))
            self.logged = ""
            self.settled.set()
            while True:
                self.wake.clear()
                if link.ended or self.stopping:
                    return
                if self.relist:
                    self.relist = False
                    with anyio.fail_after(HANDSHAKE_S):
                        self._adopt(await mcp_result.list_tools(session))
                    continue
                await self.wake.wait()

    async def _open(self, stack: contextlib.AsyncExitStack) -> Any:
        """Enter the transport; its (read, write) streams."""
        self.http_status = self.lost = ""
        if self.settings.command:
            from mcp import StdioServerParameters, stdio_client

            from talkie.config.text import why

            command = self.settings.command
            params = StdioServerParameters(command=command[0], args=list(command[1:]))
            try:
                return await stack.enter_async_context(stdio_client(params, errlog=_errlog()))
            except OSError as exc:
                raise mcp_result.Failure(f"cannot start {command[0]}: {why(exc)}") from None
        import httpx2
        from mcp.client.streamable_http import streamable_http_client

        headers = {}
        if self.settings.token_file:
            self.secret = mcp_result.read_token(
                self.settings.token_file, self.owner.credentials_dir
            )
            headers["Authorization"] = f"Bearer {self.secret.reveal()}"

        async def seen(response: httpx2.Response) -> None:
            if response.status_code < 400:
                return
            self.http_status = f"{response.status_code} {response.reason_phrase}".strip()
            if response.status_code == 404 and "mcp-session-id" in response.request.headers:
                # the server forgot the session (it restarted): the spec's answer is a new one
                self.lost = "the server lost the session (did it restart?)"
                if self.link is not None:
                    self.link.end()

        client = httpx2.AsyncClient(
            headers=headers,
            timeout=httpx2.Timeout(30.0, connect=10.0, read=300.0),
            event_hooks={"response": [seen]},
        )
        await stack.enter_async_context(client)
        return await stack.enter_async_context(
            streamable_http_client(self.settings.url, http_client=client)
        )

    async def _on_message(self, message: Any) -> None:
        from mcp.types import ToolListChangedNotification

        if isinstance(message, ToolListChangedNotification):
            self.relist = True
            self.wake.set()
        elif isinstance(message, Exception):
            log.debug("MCP server %s: %s", self.name, self.redact(one_line(str(message))))

    def _link_ended(self) -> None:
        """The session's stream ended: not up from now on (the supervisor starts it again)."""
        if self.state == "up":
            self.state, self.reason = "restarting", self._ended_words()
            self.retry_at = asyncio.get_running_loop().time()
        self.wake.set()

    def _adopt(self, listing: Sequence[McpTool]) -> None:
        self.tools = mcp_result.declare(self.settings, listing, self._runner, self.warned)
        self.owner.changed()

    def _failed(self, reason: str, retry_at: float) -> None:
        self.state, self.reason, self.retry_at = "restarting", reason, retry_at
        self.settled.set()
        if reason != self.logged:
            self.logged = reason
            log.warning("MCP server %s is not available: %s", self.name, reason)

    def _ended_words(self) -> str:
        if self.lost:
            return self.lost
        if self.settings.command:
            return "the server process exited"
        return "the connection to the server ended"

    def _words(self, exc: BaseException) -> str:
        """Why the server failed, in words, with no secret in them."""
        if self.lost:  # whatever the teardown raised
            return self.lost
        ended, url = self._ended_words(), self.settings.url
        return mcp_result.failure_words(exc, ended, url, self.http_status, HANDSHAKE_S, self.redact)

    # ---- calls (from the tasks of the calls) ---------------------------------------------

    def _runner(self, real: str) -> Run:
        async def run(args: Mapping[str, Any], call_id: str) -> Result:
            return await self.call(real, args)

        return run

    async def call(self, name: str, args: Mapping[str, Any]) -> Result:
        """Call the server's tool ``name``; an error object if it is not up or goes away."""
        import anyio
        from mcp import MCPError
        from mcp.types import CONNECTION_CLOSED

        session, link = self.session, self.link
        if session is None or link is None or self.state != "up":
            return error(
                f"the MCP server {self.name} is not available now ({self.words()})", retryable=True
            )
        try:
            result = await session.call_tool(name, dict(args))
        except (MCPError, anyio.ClosedResourceError, anyio.BrokenResourceError) as exc:
            message = exc.message if isinstance(exc, MCPError) else ""
            closed = not isinstance(exc, MCPError) or exc.code == CONNECTION_CLOSED
            if closed or link.ended:
                link.end()  # the supervisor starts it again
                return error(
                    f"the MCP server {self.name} went away during the call; it is restarting",
                    retryable=True,
                )
            return error(f"the MCP server {self.name} refused the call: {self.redact(message)}")
        except Exception as exc:  # a bad answer is an answer
            log.debug("MCP tool %s of %s failed", name, self.name, exc_info=True)
            return error(self._words(exc))
        return mcp_result.tool_result(result, self.redact)

    def stop(self) -> None:
        self.stopping = True
        if self.scope is not None:
            self.scope.cancel()
        self.wake.set()


class McpServers:
    """The configured MCP servers and the tools they offer (see the module docstring)."""

    def __init__(
        self,
        servers: Sequence[McpServerSettings],
        *,
        credentials_dir: str | None = None,
        redact: Callable[[str], str] = lambda text: text,
        on_change: Callable[[], None] | None = None,
        retry_first_s: float = 1.0,
        retry_cap_s: float = 60.0,
    ) -> None:
        self.credentials_dir = credentials_dir
        self.redact = redact
        self.on_change = on_change
        self.retry_first_s = retry_first_s
        self.retry_cap_s = retry_cap_s
        self._servers = [_Server(self, settings) for settings in servers]
        self._declared: list[dict[str, Any]] = []

    async def start(self) -> None:
        """Start one supervising task per server (once); returns at once."""
        loop = asyncio.get_running_loop()
        for server in self._servers:
            if server.task is None and not server.stopping:
                server.task = loop.create_task(server.supervise(), name=f"mcp-{server.name}")

    async def ready(self, timeout_s: float) -> None:
        """Wait until every server has listed its tools or failed, once; at most ``timeout_s``."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                for server in self._servers:
                    await server.settled.wait()

    def tools(self) -> list[Tool]:
        """The tools to declare now: every server's last listing, even while it restarts."""
        return [tool for server in self._servers for tool in server.tools]

    def relist(self) -> None:
        """Every server that is up lists its tools again (a reload)."""
        for server in self._servers:
            if server.state == "up":
                server.relist = True
                server.wake.set()

    def status(self) -> dict[str, str]:
        """Each server's state in words: "up", "starting", "restarting in N s: <reason>"."""
        return {server.name: server.words() for server in self._servers}

    def changed(self) -> None:
        """A server's listing came: tell ``on_change`` if the declarations are not the same."""
        declared = [tool.declaration() for tool in self.tools()]
        if declared == self._declared:
            return
        self._declared = declared
        if self.on_change is not None:
            try:
                self.on_change()
            except Exception:  # a broken listener must not stop a server
                log.exception("telling of new MCP tools failed")

    async def aclose(self) -> None:
        """Stop every server and wait for it (its child process is gone then); idempotent."""
        for server in self._servers:
            server.stop()
        tasks = [server.task for server in self._servers if server.task is not None]
        if not tasks:
            return
        _, late = await asyncio.wait(tasks, timeout=CLOSE_S)
        for task in late:
            task.cancel()
        if late:
            await asyncio.wait(late, timeout=CLOSE_S)
        for task in (t for t in tasks if t.done() and not t.cancelled() and t.exception()):
            log.error("MCP server task %s failed: %s", task.get_name(), task.exception())
