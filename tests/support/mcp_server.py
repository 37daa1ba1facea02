"""A small MCP server for the adapter's tests, built with the mcp package's own MCPServer.

    python tests/support/mcp_server.py --stdio
    python tests/support/mcp_server.py --http PORT [--token-file F]

Over HTTP it listens on 127.0.0.1:PORT at /mcp and, with --token-file, answers 401 to a request
without ``Authorization: Bearer <the file's text>``. Its tools: echo, add (a structured result),
slow, busy (how many slow calls run), fail (isError), crash (the process exits mid-call), pid,
picture (an image), big (a long text), lights_on (counts its calls), secret (the bearer token's
text: what the client must redact), grow (adds a tool and tells the client its list changed) and
a read-only peek.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import sys

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ImageContent, TextContent, ToolAnnotations

server = MCPServer("talkie-test", log_level="WARNING")
TOKEN = ""
LIGHTS = {"calls": 0}
SLOW = {"running": 0}


@server.tool()
def echo(text: str) -> str:
    """Say the text back."""
    return text


@server.tool()
def add(a: float, b: float) -> dict[str, float]:
    """Add two numbers."""
    return {"sum": a + b}


@server.tool()
async def slow(seconds: float) -> str:
    """Wait, then answer."""
    SLOW["running"] += 1
    try:
        await asyncio.sleep(seconds)
    finally:
        SLOW["running"] -= 1
    return f"waited {seconds:g} s"


@server.tool()
def busy() -> int:
    """How many calls of slow are running (a cancelled one stops)."""
    return SLOW["running"]


@server.tool()
def fail() -> str:
    """Always fails."""
    raise ToolError("the lights are on fire")


@server.tool()
def crash() -> str:
    """The server process exits at once, without an answer."""
    os._exit(3)


@server.tool()
def pid() -> int:
    """The server's process id."""
    return os.getpid()


@server.tool()
def picture() -> list[TextContent | ImageContent]:
    """A caption and a small image."""
    data = base64.b64encode(b"\x89PNG" + b"\0" * 2044).decode()
    return [
        TextContent(type="text", text="a red square"),
        ImageContent(type="image", data=data, mimeType="image/png"),
    ]


@server.tool()
def big(size: int) -> str:
    """A text of ``size`` characters."""
    return "x" * size


@server.tool()
def lights_on(room: str) -> str:
    """Turn the lights on in a room."""
    LIGHTS["calls"] += 1
    return f"lights on in {room} (call {LIGHTS['calls']})"


@server.tool()
def secret() -> str:
    """The bearer token this server was started with."""
    return f"the token is {TOKEN}"


@server.tool(annotations=ToolAnnotations(readOnlyHint=True))
def peek() -> str:
    """Looks without touching."""
    return "all quiet"


@server.tool()
async def grow(ctx: Context) -> str:
    """Adds the tool ``extra`` and says the tool list changed."""

    def extra() -> str:
        """A tool that came later."""
        return "extra"

    server.add_tool(extra)
    await ctx.session.send_tool_list_changed()
    return "grown"


def _guarded(app, token: str):
    """``app`` answering 401 to any HTTP request without the bearer token."""
    expected = f"Bearer {token}".encode()

    async def guarded(scope, receive, send):
        if scope["type"] == "http" and dict(scope["headers"]).get(b"authorization") != expected:
            await send({"type": "http.response.start", "status": 401,
                        "headers": [(b"content-type", b"text/plain")]})
            await send({"type": "http.response.body", "body": b"unauthorized"})
            return
        await app(scope, receive, send)

    return guarded


def main() -> None:
    global TOKEN
    parser = argparse.ArgumentParser()
    parser.add_argument("--stdio", action="store_true")
    parser.add_argument("--http", type=int, metavar="PORT")
    parser.add_argument("--token-file")
    opts = parser.parse_args()
    if opts.token_file:
        with open(opts.token_file) as fh:
            TOKEN = fh.read().strip()
    if opts.http is None:
        print("mcp test server on stdio", file=sys.stderr, flush=True)
        server.run("stdio")
        return
    import uvicorn

    app = server.streamable_http_app()
    if TOKEN:
        app = _guarded(app, TOKEN)
    uvicorn.run(app, host="127.0.0.1", port=opts.http, log_level="warning")


if __name__ == "__main__":
    main()
