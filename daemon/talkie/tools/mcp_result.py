"""What an MCP server says, as the model and a person hear it: its tools as
:class:`~talkie.tools.Tool` declarations, a call's ``CallToolResult`` as a result object, why it
failed in words; and its bearer token, read as a :class:`~talkie.config.credentials.Secret`.

Names become ``NAME_TOOL`` (Gemini's function names: ``^[A-Za-z_][A-Za-z0-9_.:-]{0,63}$``), a
schema that is no JSON-schema object becomes an empty object, a tool marked ``readOnlyHint`` does
not act. A result is its structured content if there is one, else its text; images, sounds and
resources are named in words, never passed on; every string goes through ``redact``; the whole
fits :data:`~talkie.tools.RESULT_MAX`, cut with a note where it would not.

No import of ``mcp`` at module level (only its types, for the checker).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import importlib
import json
import logging
import os
import re
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from talkie.config.credentials import Secret, SecretProblem, guard_secret, read_secret
from talkie.config.text import why
from talkie.core.words import one_line
from talkie.tools import RESULT_MAX, Result, Run, Tool, error, ok

if TYPE_CHECKING:
    from mcp import ClientSession
    from mcp.types import CallToolResult, ContentBlock
    from mcp.types import Tool as McpTool

    from talkie.config.settings import McpServerSettings

log = logging.getLogger("talkie.tools.mcp")

#: Gemini's function names.
NAME_MAX = 64
_NOT_IN_NAME = re.compile(r"[^A-Za-z0-9_.:-]")
#: The longest description declared (a tool's manual belongs to its server, not the prompt).
DESCRIPTION_MAX = 1000
#: The longest error text passed on from a tool.
ERROR_MAX = 300
EMPTY_SCHEMA: Mapping[str, Any] = {"type": "object", "properties": {}}
#: The most pages of a tool listing read.
PAGES_MAX = 50
#: Room kept in a result for the status and the note of a cut.
_ENVELOPE = 200
#: Where the systemd credentials of the tokens are named from.
CREDENTIAL_PREFIX = "mcp-token_"
#: Loggers of the SDK and its HTTP client that may log what a server sends (debug level).
SDK_LOGGERS = (
    "mcp.client.streamable_http",
    "mcp.client.stdio",
    "mcp.shared.jsonrpc_dispatcher",
    "client",
    "httpx2",
    "httpcore2.http11",
    "httpcore2.connection",
)


def declared_name(prefix: str, name: str) -> str:
    """``prefix + name`` as a Gemini function name: other characters become ``_``, cut to 64."""
    full = _NOT_IN_NAME.sub("_", prefix + name)[:NAME_MAX] or "_"
    return full if full[0].isalpha() or full[0] == "_" else "_" + full[1:]


def _parameters(schema: Any) -> Mapping[str, Any] | None:
    """The tool's input schema if it is a JSON-schema object, an empty object's if it is none,
    ``None`` if it claims to be one but is broken (the tool is not declared)."""
    if not isinstance(schema, dict) or schema.get("type") != "object":
        return dict(EMPTY_SCHEMA)
    # lazily (only once a server lists its tools), and untyped
    jsonschema = importlib.import_module("jsonschema")
    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError:
        return None
    return schema


def _description(tool: McpTool) -> str:
    text = (tool.description or "").strip() or tool.title or tool.name
    if len(text) > DESCRIPTION_MAX:
        text = text[: DESCRIPTION_MAX - 3].rstrip() + "..."
    return text


def declare(
    settings: McpServerSettings,
    listing: Iterable[McpTool],
    run: Callable[[str], Run],
    warned: set[str],
) -> list[Tool]:
    """The tools of one server's listing the settings allow, as declarations; ``run(name)`` is
    the call of the server's tool ``name``. Each problem is logged once (``warned`` remembers)."""

    def warn(key: str, message: str, *args: Any) -> None:
        if key not in warned:
            warned.add(key)
            log.warning(message, *args)

    listing = list(listing)
    allow = set(settings.allow)
    for missing in sorted(allow - {tool.name for tool in listing}):
        warn(
            f"missing:{missing}",
            "MCP server %s has no tool %r (named in its allow list)",
            settings.name,
            missing,
        )
    tools: list[Tool] = []
    taken: set[str] = set()
    for tool in listing:
        if allow and tool.name not in allow:
            continue
        name = declared_name(settings.prefix, tool.name)
        if name in taken:
            warn(
                f"twice:{name}",
                "MCP server %s: tool %r is left out: its name %s is taken by another",
                settings.name,
                tool.name,
                name,
            )
            continue
        parameters = _parameters(tool.input_schema)
        if parameters is None:
            warn(
                f"schema:{tool.name}",
                "MCP server %s: tool %r is left out: its input schema is not valid JSON schema",
                settings.name,
                tool.name,
            )
            continue
        taken.add(name)
        hints = tool.annotations
        tools.append(
            Tool(
                name=name,
                description=_description(tool),
                run=run(tool.name),
                parameters=parameters,
                deadline_s=settings.deadline_s,
                acts=not (hints is not None and hints.read_only_hint is True),
                behavior=settings.behavior,
                scheduling=settings.scheduling,
            )
        )
    return tools


async def list_tools(session: ClientSession) -> list[McpTool]:
    """All of a server's tools, page after page."""
    from mcp.types import PaginatedRequestParams

    page = await session.list_tools()
    tools = list(page.tools)
    for _ in range(PAGES_MAX):
        if not page.next_cursor:
            break
        page = await session.list_tools(params=PaginatedRequestParams(cursor=page.next_cursor))
        tools.extend(page.tools)
    return tools


def _size_words(n: int) -> str:
    if n >= 1 << 20:
        return f"{n / (1 << 20):.1f} MB"
    return f"{round(n / 1024)} kB" if n >= 1024 else f"{n} bytes"


def _decoded_size(data: str) -> int:
    try:
        return len(base64.b64decode(data, validate=False))
    except (binascii.Error, ValueError):
        return len(data) * 3 // 4


def _block_words(block: ContentBlock) -> str:
    """A content block as text: its text, or what it is in words."""
    kind = getattr(block, "type", "")
    if kind == "text":
        return str(getattr(block, "text", ""))
    if kind in ("image", "audio"):
        what = "an image" if kind == "image" else "a sound"
        size = _size_words(_decoded_size(str(getattr(block, "data", ""))))
        return f"({what}, {size}, {getattr(block, 'mime_type', '') or 'of unknown type'})"
    if kind == "resource_link":
        return f"(a link to {getattr(block, 'uri', '')})"
    if kind == "resource":
        resource = getattr(block, "resource", None)
        body = getattr(resource, "text", None) or getattr(resource, "blob", "") or ""
        mime = getattr(resource, "mime_type", None) or "of unknown type"
        return f"(a resource, {getattr(resource, 'uri', '')}, {mime}, {_size_words(len(body))})"
    return f"(something of the kind {kind!r})"


def scrubbed(value: Any, redact: Callable[[str], str]) -> Any:
    """``value`` (JSON) with ``redact`` applied to every string in it, keys too."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Mapping):
        return {redact(str(k)): scrubbed(v, redact) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [scrubbed(v, redact) for v in value]
    return value


def _size(result: Result) -> int:
    return len(json.dumps(result, ensure_ascii=False, default=str))


def _text_result(text: str) -> Result:
    """``ok(result=text)``, the text cut (with a note) so that the whole fits."""
    answer = ok(result=text)
    limit = RESULT_MAX - _ENVELOPE
    keep = len(text)
    while _size(answer) > limit and keep > 0:
        keep = min(keep - 1, keep * limit // _size(answer))
        answer = ok(result=f"{text[:keep]} ... (cut: {len(text)} characters in all)")
    return answer


def tool_result(result: CallToolResult, redact: Callable[[str], str]) -> Result:
    """A call's answer as the model gets it."""
    text = redact("\n".join(filter(None, (_block_words(b) for b in result.content))))
    if result.is_error:
        return error(one_line(text, ERROR_MAX) or "the tool failed and said nothing of why")
    structured = result.structured_content
    if structured is not None:
        if isinstance(structured, Mapping) and list(structured) == ["result"]:
            structured = structured["result"]  # a bare value, wrapped by the server's SDK
        answer = ok(result=scrubbed(structured, redact))
        if _size(answer) <= RESULT_MAX - _ENVELOPE:
            return answer
        if not text:
            return error(f"the answer is too long to pass on ({_size(answer)} characters)")
    return _text_result(text)


# ---- the token, and failures in words ------------------------------------------------------------


class Failure(Exception):
    """A reason in words, already fit to show."""


def read_token(token_file: str, credentials_dir: str | None) -> Secret:
    """The bearer token: ``$CREDENTIALS_DIRECTORY/mcp-token_<file name>`` if there is one, else
    ``token_file``; a :class:`Failure` if it cannot be read or is empty. It is kept out of the
    SDK's log lines from then on."""
    credential = None
    if credentials_dir:
        credential = os.path.join(credentials_dir, CREDENTIAL_PREFIX + os.path.basename(token_file))
    try:
        secret = read_secret(token_file, "the token file", credential, skip_empty=False)
    except SecretProblem as exc:
        raise Failure(str(exc)) from None
    guard_secret(secret.reveal(), SDK_LOGGERS)
    return secret


def _leaf(exc: BaseException) -> BaseException:
    """The first real exception in ``exc`` (anyio wraps them in task-group exception groups)."""
    while isinstance(exc, BaseExceptionGroup):
        inner = [e for e in exc.exceptions if not isinstance(e, asyncio.CancelledError)]
        if not inner:
            break
        exc = inner[0]
    return exc


def failure_words(
    exc: BaseException,
    ended: str,
    url: str,
    http_status: str,
    handshake_s: float,
    redact: Callable[[str], str],
) -> str:
    """Why a server failed with ``exc``, in one line of words with no secret in them. ``ended``
    says how its session ended ("the server process exited"), ``http_status`` is the last HTTP
    error status it answered."""
    import anyio
    import httpx2
    from mcp import MCPError
    from mcp.types import CONNECTION_CLOSED

    leaf = _leaf(exc)
    gone = (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError)
    if isinstance(leaf, gone):  # the end of the session, seen in its teardown
        text = ended
    elif isinstance(leaf, Failure):
        text = str(leaf)
    elif isinstance(leaf, TimeoutError):
        text = f"it did not answer within {handshake_s:g} s"
    elif http_status and isinstance(leaf, MCPError):
        text = f"{url} answered HTTP {http_status}"
        if http_status.startswith(("401", "403")):
            text += " (is the token right?)"
    elif isinstance(leaf, MCPError) and leaf.code == CONNECTION_CLOSED:
        text = f"{ended} before it answered"
    elif isinstance(leaf, MCPError):
        text = f"the server answered an error: {leaf.message}"
    elif isinstance(leaf, httpx2.HTTPError):
        text = f"cannot reach {url}: {leaf or type(leaf).__name__}"
    elif isinstance(leaf, OSError):
        text = why(leaf)
    else:
        text = f"{type(leaf).__name__}: {leaf}"
    return one_line(redact(text))
