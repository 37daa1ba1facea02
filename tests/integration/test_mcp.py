"""The MCP adapter (talkie.tools.mcp) against a real MCP server (tests/support/mcp_server.py, built
with the mcp package's own server), over stdio and streamable HTTP: listing, prefixes and the allow
filter, results, a bearer token that never shows, a server that crashes mid-call and comes back, a
command that does not exist, deadlines and cancelled calls, and no child left after aclose().
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from talkie.config.settings import McpServerSettings
from talkie.tools import RESULT_MAX, Registry
from talkie.tools.calls import Calls
from talkie.tools.mcp import McpServers

SERVER = str(Path(__file__).resolve().parents[1] / "support" / "mcp_server.py")
STDIO = (sys.executable, SERVER, "--stdio")
TOKEN = "tok-7f3a9c1e-never-shown"
#: What the daemon's redaction removes (an API key would, but the suite's key watch forbids one).
MARK = "sk-redact-me-42"


def run(coro, timeout=30.0):
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def until(predicate, timeout=10.0, what=""):
    try:
        async with asyncio.timeout(timeout):
            while not predicate():
                await asyncio.sleep(0.01)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what or predicate}") from None


async def until_answer(tool, result, timeout=5.0):
    """Call ``tool`` until it answers ``result`` (bounded)."""
    try:
        async with asyncio.timeout(timeout):
            while (await tool.run({}, "poll")).get("result") != result:
                await asyncio.sleep(0.01)
    except TimeoutError:
        raise AssertionError(f"{tool.name} never answered {result!r}") from None


def by_name(servers):
    return {tool.name: tool for tool in servers.tools()}


def gone(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def warnings_of(caplog, name):
    return [r.getMessage() for r in caplog.records
            if r.name == "talkie.tools.mcp" and r.levelno == logging.WARNING and f"server {name} " in r.getMessage()]


def attempts_of(caplog, name):
    return sum(1 for r in caplog.records if r.name == "talkie.tools.mcp" and r.getMessage() == f"MCP server {name} failed")


# ---- stdio ------------------------------------------------------------------------------------


def test_stdio_tools_are_listed_prefixed_filtered_and_called(caplog):
    caplog.set_level(logging.DEBUG)
    changes = []
    servers = McpServers(
        [McpServerSettings(name="home", command=STDIO, deadline_s=0.5, scheduling="silent"),
         McpServerSettings(name="lab", command=STDIO, allow=("echo", "add", "pid", "no_such_tool"))],
        redact=lambda text: text.replace(MARK, "***"),
        on_change=lambda: changes.append(sorted(t.name for t in servers.tools())),
    )

    async def main():
        await servers.start()
        await servers.ready(15)
        assert servers.status() == {"home": "up", "lab": "up"}
        tools = by_name(servers)
        assert {"home_echo", "home_add", "home_slow", "home_crash", "home_peek"} <= set(tools)
        assert sorted(n for n in tools if n.startswith("lab_")) == ["lab_add", "lab_echo", "lab_pid"]
        assert changes and changes[-1] == sorted(tools)
        assert [m for m in warnings_of(caplog, "lab") if "no_such_tool" in m]
        echo = tools["home_echo"]
        assert echo.description == "Say the text back."
        assert echo.parameters["properties"]["text"]["type"] == "string"
        assert (echo.deadline_s, echo.scheduling, echo.acts) == (0.5, "silent", True)
        assert tools["home_peek"].acts is False  # readOnlyHint

        assert await echo.run({"text": "hello"}, "c1") == {"status": "ok", "result": "hello"}
        assert await tools["lab_add"].run({"a": 2, "b": 3}, "c2") == {"status": "ok", "result": {"sum": 5.0}}
        failed = await tools["home_fail"].run({}, "c3")
        assert failed["status"] == "error" and "on fire" in failed["error"]
        picture = await tools["home_picture"].run({}, "c4")
        assert picture["result"] == "a red square\n(an image, 2 kB, image/png)"
        big = await tools["home_big"].run({"size": 50_000}, "c5")
        assert len(big["result"]) < RESULT_MAX and "cut: 50000 characters" in big["result"]
        said = await echo.run({"text": f"the key is {MARK}"}, "c6")
        assert MARK not in str(said) and "***" in said["result"]

        # the deadline is the caller's: the runner's timeout; the session survives it
        answers = {}
        calls = Calls(Registry(servers.tools()), lambda cid, name, result, sched: answers.update({cid: result}))
        calls.start("d1", "home_slow", {"seconds": 5})
        await until(lambda: "d1" in answers, 5, "the deadline")
        assert answers["d1"]["status"] == "error" and "0.5 s" in answers["d1"]["error"]
        await until_answer(tools["home_busy"], 0)  # the server cancelled the call past its deadline
        calls.start("d2", "home_slow", {"seconds": 5})
        await until_answer(tools["home_busy"], 1)
        calls.cancel(["d2"])
        await until_answer(tools["home_busy"], 0)  # the cancel reached the server
        calls.start("d3", "home_echo", {"text": "still here"})
        await until(lambda: "d3" in answers, 5, "the call after a cancelled one")
        assert answers["d3"] == {"status": "ok", "result": "still here"} and "d2" not in answers

        # a new tool and notifications/tools/list_changed: declared again
        before = len(changes)
        assert (await tools["home_grow"].run({}, "g1"))["result"] == "grown"
        await until(lambda: "home_extra" in by_name(servers), 5, "the new listing")
        assert len(changes) == before + 1

        pids = [(await by_name(servers)[f"{n}_pid"].run({}, "p"))["result"] for n in ("home", "lab")]
        assert all(isinstance(pid, int) and not gone(pid) for pid in pids)
        await servers.aclose()
        await servers.aclose()  # idempotent
        assert all(gone(pid) for pid in pids)
        assert servers.status() == {"home": "stopped", "lab": "stopped"}

    run(main())


def test_a_crash_mid_call_is_an_error_and_the_server_comes_back(caplog):
    caplog.set_level(logging.INFO, logger="talkie.tools.mcp")
    servers = McpServers([McpServerSettings(name="home", command=STDIO)], retry_first_s=0.05)

    async def main():
        await servers.start()
        await servers.ready(15)
        first = (await by_name(servers)["home_pid"].run({}, "p1"))["result"]
        count = len(servers.tools())
        answer = await by_name(servers)["home_crash"].run({}, "c1")
        assert answer["status"] == "error" and answer["retryable"] is True, answer
        assert "went away" in answer["error"]
        await until(lambda: servers.status()["home"] != "up", 5, "the server seen down")
        assert len(servers.tools()) == count  # the last listing stays declared meanwhile
        meanwhile = await by_name(servers)["home_echo"].run({"text": "x"}, "c2")
        assert meanwhile["status"] == "error" and meanwhile["retryable"] is True
        assert meanwhile["error"].startswith("the MCP server home is not available now (")
        await until(lambda: servers.status()["home"] == "up", 15, "the server back")
        second = (await by_name(servers)["home_pid"].run({}, "p2"))["result"]
        assert second != first and gone(first)
        assert await by_name(servers)["home_echo"].run({"text": "back"}, "c3") == {"status": "ok", "result": "back"}
        assert [r.getMessage() for r in caplog.records if "is back" in r.getMessage()] == [
            f"MCP server home is back: {count} tools"]
        await servers.aclose()
        assert gone(second)

    run(main())


def test_a_command_that_does_not_exist_fails_in_one_line_and_is_retried(caplog):
    caplog.set_level(logging.DEBUG, logger="talkie.tools.mcp")
    servers = McpServers([McpServerSettings(name="ghost", command=("/nonexistent/mcp",))],
                         retry_first_s=0.01, retry_cap_s=0.02)

    async def main():
        await servers.start()
        await servers.ready(5)
        await until(lambda: attempts_of(caplog, "ghost") >= 3, 5, "retries")
        assert warnings_of(caplog, "ghost") == [
            "MCP server ghost is not available: cannot start /nonexistent/mcp: no such file"]
        await until(lambda: servers.status()["ghost"].startswith("restarting in "), 5)
        assert servers.status()["ghost"].endswith(" s: cannot start /nonexistent/mcp: no such file")
        assert servers.tools() == []
        await servers.aclose()

    run(main())


# ---- streamable HTTP --------------------------------------------------------------------------


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class HttpServer:
    """The test server over HTTP on 127.0.0.1, requiring the bearer token in ``token_file``."""

    def __init__(self, token_file):
        self.token_file, self.port = str(token_file), free_port()
        self.url = f"http://127.0.0.1:{self.port}/mcp"
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen([sys.executable, SERVER, "--http", str(self.port), "--token-file", self.token_file])
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the MCP test server did not start") from None
                time.sleep(0.02)

    def stop(self):
        self.proc.kill()
        self.proc.wait(10)


@pytest.fixture(scope="module")
def http_server(tmp_path_factory):
    token_file = tmp_path_factory.mktemp("server") / "token"
    token_file.write_text(TOKEN + "\n")
    server = HttpServer(token_file).start()
    try:
        yield server
    finally:
        server.stop()


def test_http_calls_with_the_token_from_the_credentials_directory(http_server, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    creds = tmp_path / "credentials"
    creds.mkdir()
    (creds / "mcp-token_ha.token").write_text(f"  {TOKEN}\n")
    servers = McpServers(
        [McpServerSettings(name="ha", url=http_server.url, token_file="/etc/talkie/tokens/ha.token")],
        credentials_dir=str(creds), retry_first_s=0.05,
    )

    async def main():
        await servers.start()
        await servers.ready(10)
        assert servers.status() == {"ha": "up"}, servers.status()
        tools = by_name(servers)
        assert await tools["ha_add"].run({"a": 1, "b": 2}, "c1") == {"status": "ok", "result": {"sum": 3.0}}
        assert await tools["ha_echo"].run({"text": "over http"}, "c2") == {"status": "ok", "result": "over http"}
        secret = await tools["ha_secret"].run({}, "c3")
        assert secret == {"status": "ok", "result": "the token is ***"}

        # the server restarts and forgets the session (a 404 to the next request): a new session
        first_up = servers._servers[0].up_at
        await asyncio.to_thread(http_server.stop)
        await asyncio.to_thread(http_server.start)
        meanwhile = await tools["ha_echo"].run({"text": "x"}, "c4")  # the call may meet the 404
        assert meanwhile["status"] == "ok" or meanwhile["retryable"] is True, meanwhile
        await until(lambda: servers.status()["ha"] == "up" and servers._servers[0].up_at != first_up, 10, "a new session")
        assert await tools["ha_echo"].run({"text": "again"}, "c5") == {"status": "ok", "result": "again"}
        assert [m for m in warnings_of(caplog, "ha") if "lost the session" in m]
        await servers.aclose()

    run(main())
    assert TOKEN not in caplog.text


def test_http_with_a_wrong_missing_or_unreadable_token_fails_in_words(http_server, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    (tmp_path / "wrong.token").write_text("not-the-token")
    (tmp_path / "empty.token").write_text("\n")
    settings = [
        McpServerSettings(name="wrong", url=http_server.url, token_file=str(tmp_path / "wrong.token")),
        McpServerSettings(name="none", url=http_server.url),
        McpServerSettings(name="lost", url=http_server.url, token_file="tokens/ha.token"),
        McpServerSettings(name="empty", url=http_server.url, token_file=str(tmp_path / "empty.token")),
    ]
    servers = McpServers(settings, retry_first_s=0.01, retry_cap_s=0.05)

    async def main():
        await servers.start()
        await servers.ready(10)
        status = {}
        for name in ("wrong", "none", "lost", "empty"):
            await until(lambda name=name: attempts_of(caplog, name) >= 3 and servers.status()[name].startswith("restarting"),
                        10, f"retries of {name}")
            status[name] = servers.status()[name]  # it may be starting again a moment later
        assert status["wrong"].endswith(f"s: {http_server.url} answered HTTP 401 Unauthorized (is the token right?)")
        assert status["none"].endswith(f"s: {http_server.url} answered HTTP 401 Unauthorized (is the token right?)")
        assert status["lost"].endswith("s: cannot read the token file tokens/ha.token: no such file")
        assert status["empty"].endswith(f"s: the token file {tmp_path / 'empty.token'} is empty")
        for name in status:
            assert len(warnings_of(caplog, name)) == 1, warnings_of(caplog, name)
        assert servers.tools() == []  # nothing listed, nothing declared
        await servers.aclose()

    run(main())
    assert TOKEN not in caplog.text and "not-the-token" not in caplog.text


# ---- latency (not a test): .venv/bin/python tests/integration/test_mcp.py [N] -----------------


async def latency(settings, n):
    """Per-call seconds of ``n`` echo calls through the adapter, after one warm-up call."""
    servers = McpServers([settings])
    await servers.start()
    await servers.ready(15)
    echo = by_name(servers)[f"{settings.name}_echo"]
    assert (await echo.run({"text": "warm"}, "w"))["status"] == "ok"
    took = []
    for i in range(n):
        t = time.perf_counter()
        await echo.run({"text": "x"}, str(i))
        took.append(time.perf_counter() - t)
    await servers.aclose()
    return took


def bench(n=200):
    import statistics
    import tempfile

    def line(name, took):
        took = sorted(took)
        p95 = took[min(len(took) - 1, round(0.95 * len(took)) - 1)]
        print(f"{name}: {len(took)} calls, median {statistics.median(took) * 1e3:.2f} ms, p95 {p95 * 1e3:.2f} ms")

    line("stdio", run(latency(McpServerSettings(name="s", command=STDIO), n), 120))
    with tempfile.TemporaryDirectory() as tmp:
        token = Path(tmp) / "token"
        token.write_text(TOKEN)
        server = HttpServer(token).start()
        try:
            settings = McpServerSettings(name="h", url=server.url, token_file=str(token))
            line("http", run(latency(settings, n), 120))
        finally:
            server.stop()

if __name__ == "__main__":
    bench(int(sys.argv[1]) if len(sys.argv) > 1 else 200)
