"""The assistant's tool calls, measured: how long the daemon takes to answer a toolCall, for the
built-in tools and for an MCP server's over stdio and over streamable HTTP; and that every call is
answered once and acts once.

    .venv/bin/python tests/bench/tools.py [--calls N] [--per-frame 1,2,1,4,1] [--deadline S]

The daemon runs in-process (real SDK, real playback into the PulseAudio test rig's speaker, mock
panel; tests/integration/test_supervisor.py's rig) against the Live double
(tests/support/live_double.py, its own thread and loop, TLS on 127.0.0.1). Two MCP servers are
configured ([[tools.mcp]]), both tests/support/mcp_server.py: ``stdio`` (the daemon runs it, its
standard input and output the MCP stream) and ``http`` (run here, streamable HTTP on 127.0.0.1 with
a bearer token from a token_file). The bench waits until both servers' tools are in the daemon's
registry (``stdio_echo``, ``http_echo``), opens the session with one turn, and then the double
sends toolCall frames, one after the other's answers, of as many calls as ``--per-frame`` says in
turn: the service mostly asks for one function at a time, and for several at once when one request
needs them ("the kitchen and the hall lights"); the default pattern 1,2,1,4,1 is 1.8 calls a frame.
``builtin_ms_p95_by_frame`` gives the built-in figure by the size of the frame.

What is measured (all times are time.monotonic(): the double stamps a toolCall just before it
writes the frame, ``LiveConnection.tool_calls_sent``, and every message it receives on arrival,
``Message.t``; the frames are sent from the double's own loop): for each call, from its toolCall
frame sent to the toolResponse carrying its id (the function response's id) received.

* ``builtin_ms_p50`` / ``builtin_ms_p95``: ``--calls`` calls of the built-in tools, a mix of
  local_time, speaker_volume get and set, device_status, timers list and timers set (each set with
  its own id); now and then a timers set is sent again with an id already answered (as the service
  may after an interruption): it must get the first answer and set nothing.
  ``builtin_ms_p95_by_tool``: the same, tool by tool (for information).
* ``mcp_stdio_ms_p50`` / ``_p95``, ``mcp_http_ms_p50`` / ``_p95``: ``--calls`` calls of each server's
  echo (the answer must be the text sent); then a few calls of its acting tool lights_on, one of
  them sent twice (the server counts its calls: the count must be the number of ids).
* ``unanswered``: sendings of a call with no toolResponse for it within ``--deadline`` seconds;
  ``duplicated_effects``: toolResponses beyond one per sending of an id, timers beyond one per
  timers set id (``rig.app.tools.alarms.list()``), lights switched beyond one per lights_on id;
  ``errors``: answers that were errors ({"status": "error", ...}) or not what was asked (for
  information). All three are 0 in a good run.

One warm-up frame per scenario is not counted (the first call of a tool imports its schema
checker, the first MCP call opens the HTTP client's connection).

The last line printed is one JSON object:
    {"calls": N, "builtin_ms_p50": a, "builtin_ms_p95": b, "mcp_stdio_ms_p95": c,
     "mcp_http_ms_p95": d, "unanswered": 0, "duplicated_effects": 0, "goal_builtin_ms_p95": 5,
     "goal_mcp_ms_p95": 50, "goal_met": true, ...}
Goal on loopback: built-in p95 <= 5 ms, MCP p95 <= 50 ms (each transport), nothing unanswered or
duplicated.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import re
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from support.pulse import PulseHarness  # noqa: E402
from tests.integration.test_mcp import HttpServer  # noqa: E402
from tests.integration.test_supervisor import KEY, answer, start_rig, stop_rig  # noqa: E402
from tests.support.live_double import LiveDouble  # noqa: E402

SERVER = REPO / "tests" / "support" / "mcp_server.py"
TOKEN = "tok-bench-tools-5c1d"
GOAL_BUILTIN_MS_P95 = 5
GOAL_MCP_MS_P95 = 50
#: The most timers the bench sets (the daemon's [tools] max_timers is raised to 100 for it).
MAX_SETS = 90
#: How long the MCP servers may take to list their tools.
MCP_READY_S = 30.0
LIGHTS = 3  # lights_on ids per MCP server (the first one sent twice)


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


def tail(token_file: Path, url: str) -> str:
    """The [tools] section: timers room for the bench, the two MCP servers."""
    command = json.dumps([sys.executable, str(SERVER), "--stdio"])
    return ("[tools]\nmax_timers = 100\n"
            f"[[tools.mcp]]\nname = \"stdio\"\ncommand = {command}\n"
            "allow = [\"echo\", \"lights_on\"]\n"
            f"[[tools.mcp]]\nname = \"http\"\nurl = {json.dumps(url)}\n"
            f"token_file = {json.dumps(str(token_file))}\n"
            "allow = [\"echo\", \"lights_on\"]\n")


@dataclass
class Call:
    name: str
    args: dict
    id: str
    check: object = None  # what the answer must hold (a callable on the response), or None


@dataclass
class Ledger:
    """Every sending of every call id, and what came back."""

    sent: dict[str, list[float]] = field(default_factory=dict)  # id -> send stamps
    calls: dict[str, Call] = field(default_factory=dict)
    seen: int = 0  # the double's messages read so far
    got: dict[str, list[tuple[float, dict]]] = field(default_factory=dict)  # id -> (t, response)

    @staticmethod
    def answers(messages) -> list[tuple[str, float, dict]]:
        """(id, arrival, response) of every function response in ``messages``."""
        return [(fr.get("id"), m.t, fr.get("response") or {}) for m in messages
                if m.kind == "tool_response"
                for fr in m.data["tool_response"].get("function_responses", [])]

    def read(self, double: LiveDouble) -> None:
        messages = double.messages
        for call_id, t, response in self.answers(messages[self.seen:]):
            self.got.setdefault(call_id, []).append((t, response))
        self.seen = len(messages)

    def latencies(self, ids: list[str], deadline: float) -> list[float]:
        """Seconds from each sending of ``ids`` to its answer (the k-th answer to an id answers
        its k-th sending), those answered within ``deadline``."""
        out = []
        for call_id in ids:
            for stamp, (t, _) in zip(self.sent[call_id], self.got.get(call_id, [])):
                if t - stamp <= deadline:
                    out.append(t - stamp)
        return out

    def unanswered(self, deadline: float) -> int:
        return sum(1 for call_id, stamps in self.sent.items() for k, stamp in enumerate(stamps)
                   if k >= len(self.got.get(call_id, []))
                   or self.got[call_id][k][0] - stamp > deadline)

    def extra_answers(self) -> int:
        return sum(max(0, len(self.got.get(call_id, [])) - len(stamps))
                   for call_id, stamps in self.sent.items())

    def errors(self) -> int:
        bad = 0
        for call_id, answers in self.got.items():
            call = self.calls.get(call_id)
            for _, response in answers:
                if response.get("status") == "error" or (call and call.check
                                                         and not call.check(response)):
                    bad += 1
        return bad


class Bench:
    def __init__(self, rig, double: LiveDouble, conn, deadline: float):
        self.rig, self.double, self.conn, self.deadline = rig, double, conn, deadline
        self.ledger = Ledger()

    async def frame(self, calls: list[Call]) -> None:
        """One toolCall with ``calls``, sent from the double's loop (its stamp is taken there,
        right before the frame is written); then its answers, or the deadline."""
        ledger = self.ledger
        # the answers each id is owed once this frame is answered: one per sending
        owed = {c.id: len(ledger.sent.get(c.id, [])) + 1 for c in calls}
        frame = [(c.name, c.args, c.id) for c in calls]
        await asyncio.to_thread(self.double.run, self.conn.send_tool_calls(frame))
        for c in calls:
            ledger.calls.setdefault(c.id, c)
            ledger.sent.setdefault(c.id, []).append(self.conn.tool_calls_sent[c.id])

        def answered() -> bool:  # on the double's loop, at each message: only the new ones
            counts: dict[str, int] = {}
            for call_id, _, _ in ledger.answers(self.double.messages[ledger.seen:]):
                counts[call_id] = counts.get(call_id, 0) + 1
            return all(len(ledger.got.get(i, [])) + counts.get(i, 0) >= n
                       for i, n in owed.items())

        try:
            await self.double.wait_for(answered, self.deadline, what="the frame's answers")
        except TimeoutError:
            pass
        ledger.read(self.double)

    async def frames(self, calls: list[Call], sizes: list[int]) -> dict[int, list[str]]:
        """``calls`` in frames of ``sizes`` calls (the pattern repeated); the ids by frame size."""
        by_size: dict[int, list[str]] = {}
        at = n = 0
        while at < len(calls):
            size = sizes[n % len(sizes)]
            chunk = calls[at:at + size]
            await self.frame(chunk)
            by_size.setdefault(len(chunk), []).extend(c.id for c in chunk)
            at, n = at + size, n + 1
        return by_size


def builtin_calls(count: int, per_frame: int) -> tuple[list[Call], set[str]]:
    """``count`` calls of the built-in tools, and the ids of the timers set among them. Every
    tenth call sends again a timers set of an earlier frame (answered by then: at least two
    frames of at most ``per_frame`` calls back): the same id and arguments."""
    kinds = ["time", "volume_get", "volume_set", "status", "timers_list", "timers_set"]
    calls: list[Call] = []
    sets: list[tuple[int, Call]] = []  # (position, call) of every first timers set
    for i in range(count):
        kind = kinds[i % len(kinds)]
        earlier = [c for at, c in sets if at < i - 2 * per_frame]  # in a frame before this one
        if i % 10 == 9 and earlier:
            calls.append(earlier[i % len(earlier)])
            continue
        call_id = f"b-{i}"
        if kind == "time":
            calls.append(Call("local_time", {}, call_id, lambda r: "time" in r))
        elif kind == "volume_get":
            calls.append(Call("speaker_volume", {"action": "get"}, call_id, lambda r: "volume" in r))
        elif kind == "volume_set":
            level = round(0.2 + 0.6 * ((i * 37) % 100) / 100, 2)
            calls.append(Call("speaker_volume", {"action": "set", "level": level}, call_id,
                              lambda r, level=level: abs(r.get("volume", -1) - level) < 1e-6))
        elif kind == "status":
            calls.append(Call("device_status", {}, call_id, lambda r: "state" in r))
        elif kind == "timers_set" and len(sets) < MAX_SETS:
            calls.append(Call("timers", {"action": "set", "duration_s": 3600 + len(sets),
                                         "label": call_id}, call_id,
                              lambda r, label=call_id: r.get("timer", {}).get("label") == label))
            sets.append((i, calls[-1]))
        else:
            calls.append(Call("timers", {"action": "list"}, call_id, lambda r: "count" in r))
    return calls, {c.id for _, c in sets}


def echo_calls(server: str, count: int) -> list[Call]:
    return [Call(f"{server}_echo", {"text": f"echo {i}"}, f"{server}-e-{i}",
                 lambda r, text=f"echo {i}": r.get("result") == text) for i in range(count)]


LIGHTS_RE = re.compile(r"\(call (\d+)\)")


async def lights(bench: Bench, server: str) -> int:
    """lights_on with LIGHTS ids, the first sent again once answered; how many times the lights
    were switched beyond once per id (the server numbers its calls)."""
    ids = [f"{server}-l-{i}" for i in range(LIGHTS)]
    for call_id in ids:
        await bench.frame([Call(f"{server}_lights_on", {"room": call_id}, call_id,
                                lambda r, room=call_id: room in str(r.get("result")))])
    await bench.frame([Call(f"{server}_lights_on", {"room": ids[0]}, ids[0])])
    counts = [int(m[1]) for call_id in ids for _, r in bench.ledger.got.get(call_id, [])
              if (m := LIGHTS_RE.search(str(r.get("result"))))]
    first = bench.ledger.got.get(ids[0], [])
    repeat_same = len(first) < 2 or first[0][1] == first[1][1]
    return max(0, max(counts, default=0) - len(ids)) + (0 if repeat_same else 1)


async def run(args, pulse, workdir: Path, double: LiveDouble, http: HttpServer) -> dict:
    started = time.monotonic()
    rig = await start_rig(workdir, pulse, double, tail=tail(Path(http.token_file), http.url))
    try:
        names = ("stdio_echo", "stdio_lights_on", "http_echo", "http_lights_on")
        try:
            async with asyncio.timeout(MCP_READY_S):
                while not set(names) <= set(rig.app.tools.registry.names):
                    await asyncio.sleep(0.02)
        except TimeoutError:
            raise RuntimeError(f"the MCP servers' tools were not listed: "
                               f"{rig.app.tools.words().get('mcp')}") from None
        mcp_ready_s = time.monotonic() - started
        await rig.turn()  # the session opens, declaring every tool
        conn = double.connections[-1]
        declared = {f["name"] for t in conn.setup.get("tools", [])
                    for f in t.get("function_declarations", [])}
        bench = Bench(rig, double, conn, args.deadline)

        # the built-in tools
        await bench.frame([Call("local_time", {}, "w-time"),
                           Call("speaker_volume", {"action": "get"}, "w-volume"),
                           Call("device_status", {}, "w-status"),
                           Call("timers", {"action": "list"}, "w-timers")])
        sizes = [int(n) for n in args.per_frame.split(",")]
        calls, set_ids = builtin_calls(args.calls, max(sizes))
        frame_ids = await bench.frames(calls, sizes)
        builtin = bench.ledger.latencies([c.id for c in calls], args.deadline)
        by_tool = {}
        for name in sorted({c.name for c in calls}):
            values = bench.ledger.latencies(sorted({c.id for c in calls if c.name == name}),
                                            args.deadline)
            if values:
                by_tool[name] = ms(p95(values))
        timers = len(rig.app.tools.alarms.list())

        # the MCP servers' echo, then their acting tool
        mcp: dict[str, list[float]] = {}
        extra_lights = 0
        for server in ("stdio", "http"):
            await bench.frame([Call(f"{server}_echo", {"text": "warm"}, f"{server}-w")])
            echoes = echo_calls(server, args.calls)
            await bench.frames(echoes, sizes)
            mcp[server] = bench.ledger.latencies([c.id for c in echoes], args.deadline)
            extra_lights += await lights(bench, server)

        await rig.turn()  # the session goes on
        ledger = bench.ledger
        result: dict[str, object] = {
            "calls": args.calls, "per_frame": args.per_frame,
            "builtin_ms_p95_by_frame": {
                str(size): ms(p95(v)) for size, ids in sorted(frame_ids.items())
                if (v := bench.ledger.latencies(sorted(set(ids)), args.deadline))},
            "builtin_ms_p50": ms(statistics.median(builtin)) if builtin else 0.0,
            "builtin_ms_p95": ms(p95(builtin)) if builtin else 0.0,
            "builtin_ms_max": ms(max(builtin)) if builtin else 0.0,
            "builtin_ms_p95_by_tool": by_tool,
        }
        for server, values in mcp.items():
            result[f"mcp_{server}_ms_p50"] = ms(statistics.median(values)) if values else 0.0
            result[f"mcp_{server}_ms_p95"] = ms(p95(values)) if values else 0.0
        result.update(
            unanswered=ledger.unanswered(args.deadline),
            duplicated_effects=(ledger.extra_answers() + max(0, timers - len(set_ids))
                                + extra_lights),
            errors=ledger.errors(),
            timers_set=len(set_ids), timers_kept=timers,
            resent=sum(len(s) - 1 for s in ledger.sent.values()),
            mcp_declared=set(names) <= declared,
            mcp_ready_s=round(mcp_ready_s, 2),
            goal_builtin_ms_p95=GOAL_BUILTIN_MS_P95, goal_mcp_ms_p95=GOAL_MCP_MS_P95,
        )
        result["goal_met"] = (result["builtin_ms_p95"] <= GOAL_BUILTIN_MS_P95
                              and result["mcp_stdio_ms_p95"] <= GOAL_MCP_MS_P95
                              and result["mcp_http_ms_p95"] <= GOAL_MCP_MS_P95
                              and result["unanswered"] == 0 and result["duplicated_effects"] == 0)
    finally:
        await stop_rig(rig)
    errors = double.errors
    if errors:
        raise RuntimeError(f"the double failed: {errors!r}")
    result["run_s"] = round(time.monotonic() - started, 1)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200,
                        help="calls of the built-in tools, and of each MCP server's echo")
    parser.add_argument("--per-frame", default="1,2,1,4,1",
                        help="calls per toolCall frame, frame after frame (the pattern repeats)")
    parser.add_argument("--deadline", type=float, default=10.0,
                        help="seconds a call may go without its answer before it is unanswered")
    parser.add_argument("--verbose", action="store_true", help="the daemon's log on stderr")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO if args.verbose else logging.ERROR, stream=sys.stderr,
                        format="%(relativeCreated)8.0f %(name)s: %(message)s")
    with tempfile.TemporaryDirectory() as tmp, PulseHarness() as pulse:
        workdir = Path(tmp)
        token_file = workdir / "http.token"
        token_file.write_text(TOKEN + "\n")
        http = HttpServer(token_file).start()
        try:
            with LiveDouble(api_keys=(KEY,), auto_reply=answer()) as double:
                result = asyncio.run(asyncio.wait_for(run(args, pulse, workdir, double, http),
                                                      600))
        finally:
            http.stop()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
