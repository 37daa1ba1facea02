"""Tests for the assistant's tools: talkie.tools (declarations, the registry, results),
talkie.tools.calls.Calls (every call answered once), talkie.tools.builtin (the device's own
tools), talkie.shell.volume.Volume and its StateFile, talkie.shell.ringer.Ringer and
talkie.shell.tools.ToolBox (options over a tool's defaults)."""

from __future__ import annotations

import asyncio
import calendar
import datetime as dt
import json
import logging
import os
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from talkie import config
from talkie.audio.chime import chime
from talkie.config.credentials import KeyProblem, Secret
from talkie.config.settings import OUTPUT_RATE
from talkie.core import machine as m
from talkie.shell import ringer as ringer_mod
from talkie.shell.ringer import Ringer
from talkie.shell.tools import ToolBox
from talkie.shell.volume import STEP, Volume
from talkie.storage import StateFile
from talkie.tools import (
    MEDIA,
    RESULT_MAX,
    Registry,
    Tool,
    builtin,
    error,
    ok,
    with_media,
)
from talkie.tools.calls import Calls
from tests.support.fakes import FakePlayback, Log

#: A secret for redaction (not shaped like a Google key: a tool's failure is logged at debug with
#: its traceback, which only the daemon's log filter redacts, and tests/conftest.py watches every
#: log line for keys that start like Google's).
SECRET = "sk-test-S3CR3T-value-0123456789abcdefgh"
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00fake-frame\xff\xd9"


# ------------------------------------------------------------------ helpers
def run(coro: Any, timeout: float = 5.0) -> Any:
    """Run ``coro`` on a fresh loop, bounded (a hang fails the test instead of the suite)."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


class Answers:
    """The on_answer callable: every answer, in order."""

    def __init__(self) -> None:
        self.got: list[tuple[str, str, dict[str, Any], str]] = []

    def __call__(self, call_id: str, name: str, result: dict[str, Any], scheduling: str) -> None:
        self.got.append((call_id, name, result, scheduling))

    @property
    def results(self) -> list[dict[str, Any]]:
        return [result for _, _, result, _ in self.got]

    def of(self, call_id: str) -> list[dict[str, Any]]:
        return [result for cid, _, result, _ in self.got if cid == call_id]

    async def wait(self, n: int, timeout: float = 2.0) -> None:
        """Until ``n`` answers have come (a test fails after ``timeout`` seconds)."""

        async def until() -> None:
            while len(self.got) < n:
                await asyncio.sleep(0.001)

        await asyncio.wait_for(until(), timeout)


async def ticks(n: int = 20) -> None:
    """Let the loop run what is ready, ``n`` times over."""
    for _ in range(n):
        await asyncio.sleep(0)


def answering(result: Any) -> Any:
    """A tool's run that gives ``result`` (a fresh copy each call)."""

    async def run(args: Mapping[str, Any], call_id: str) -> Any:
        return json.loads(json.dumps(result)) if isinstance(result, dict) else result

    return run


class Counted:
    """A tool's run that counts its calls, optionally waiting for a gate first."""

    def __init__(self, result: dict[str, Any] | None = None, gate: asyncio.Event | None = None):
        self.result = result or ok(done=True)
        self.gate = gate
        self.calls: list[tuple[dict[str, Any], str]] = []
        self.cancelled = 0

    async def __call__(self, args: Mapping[str, Any], call_id: str) -> dict[str, Any]:
        self.calls.append((dict(args), call_id))
        try:
            if self.gate is not None:
                await self.gate.wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        return dict(self.result, n=len(self.calls))


def one_line(text: str) -> bool:
    return "\n" not in text and "\r" not in text and "\t" not in text


# ------------------------------------------------------- talkie.tools basics
def test_declaration_shape():
    params = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    tool = Tool("count", "Counts.", answering(ok()), parameters=params, behavior="blocking")
    assert tool.declaration() == {
        "name": "count",
        "description": "Counts.",
        "parameters_json_schema": params,
        "behavior": "BLOCKING",
    }
    assert isinstance(tool.declaration()["parameters_json_schema"], dict)


def test_tool_defaults():
    tool = Tool("t", "A tool.", answering(ok()))
    assert tool.declaration()["parameters_json_schema"] == {"type": "object", "properties": {}}
    assert tool.declaration()["behavior"] == "NON_BLOCKING"
    assert (tool.deadline_s, tool.acts, tool.scheduling) == (5.0, False, "when_idle")


def test_registry_later_tool_of_the_same_name_replaces_the_earlier():
    first = Tool("a", "first a", answering(ok()))
    b = Tool("b", "b", answering(ok()))
    second = Tool("a", "second a", answering(ok()))
    registry = Registry([first, b, second])
    assert len(registry) == 2
    assert registry.names == ["a", "b"]
    assert registry.get("a") is second and registry.get("b") is b
    assert registry.get("c") is None
    assert [d["description"] for d in registry.declarations()] == ["second a", "b"]


def test_empty_registry():
    registry = Registry()
    assert len(registry) == 0 and registry.names == [] and registry.declarations() == []


def test_ok_error_and_with_media():
    assert ok() == {"status": "ok"}
    assert ok(volume=0.5) == {"status": "ok", "volume": 0.5}
    assert error("no") == {"status": "error", "error": "no", "retryable": False}
    assert error("later", retryable=True, code=3) == {
        "status": "error",
        "error": "later",
        "retryable": True,
        "code": 3,
    }
    base = ok(a=1)
    one = with_media(base, ("image/jpeg", b"1"))
    two = with_media(one, ("image/png", b"2"))
    assert MEDIA not in base  # not changed in place
    assert one == {"status": "ok", "a": 1, MEDIA: [("image/jpeg", b"1")]}
    assert two[MEDIA] == [("image/jpeg", b"1"), ("image/png", b"2")]
    assert one[MEDIA] == [("image/jpeg", b"1")]


# ------------------------------------------------------------------- Calls
def calls_of(*tools: Tool, redact: Any = None) -> tuple[Calls, Answers]:
    answers = Answers()
    kw = {} if redact is None else {"redact": redact}
    return Calls(Registry(tools), answers, **kw), answers


def test_unknown_tool_is_an_error_naming_the_known_tools():
    async def main() -> None:
        calls, answers = calls_of(
            Tool("echo", "e", answering(ok())), Tool("slow", "s", answering(ok()))
        )
        calls.start("c1", "nope", {})
        await ticks()
        assert len(answers.got) == 1
        call_id, name, result, scheduling = answers.got[0]
        assert (call_id, name, scheduling) == ("c1", "nope", "when_idle")
        assert result["status"] == "error"
        assert "'nope'" in result["error"]
        assert "echo" in result["error"] and "slow" in result["error"]
        assert calls.started == 0

    run(main())


def test_unknown_tool_with_no_tools_says_none():
    async def main() -> None:
        calls, answers = calls_of()
        calls.start("c1", "x", {})
        assert answers.results[0]["error"].endswith("tools: none")

    run(main())


@pytest.mark.parametrize("args", [None, [1, 2], "text", 3])
def test_arguments_not_an_object(args):
    async def main() -> None:
        tool_run = Counted()
        calls, answers = calls_of(Tool("t", "t", tool_run, scheduling="silent"))
        calls.start("c1", "t", args)
        await ticks()
        assert len(answers.got) == 1
        result = answers.results[0]
        assert result["status"] == "error"
        assert result["error"] == "bad arguments: the arguments are not an object"
        assert answers.got[0][3] == "silent"  # the tool's own scheduling
        assert tool_run.calls == []

    run(main())


SCHEMA = {
    "type": "object",
    "properties": {"n": {"type": "integer", "minimum": 1}, "word": {"type": "string"}},
    "required": ["n"],
    "additionalProperties": False,
}


@pytest.mark.parametrize(
    "args, where",
    [
        ({"n": "three"}, "n"),
        ({"n": 0}, "n"),
        ({"n": 1, "word": 5}, "word"),
        ({}, "arguments"),  # a required key missing is the whole object's fault
        ({"n": 1, "more": True}, "arguments"),
    ],
)
def test_arguments_failing_the_schema(args, where):
    async def main() -> None:
        tool_run = Counted()
        calls, answers = calls_of(Tool("t", "t", tool_run, parameters=SCHEMA))
        calls.start("c1", "t", args)
        await ticks()
        assert len(answers.got) == 1
        result = answers.results[0]
        assert result["status"] == "error"
        assert result["error"].startswith(f"bad arguments: {where}: "), result["error"]
        assert one_line(result["error"])
        assert tool_run.calls == []
        assert calls.started == 0

    run(main())


def test_arguments_fitting_the_schema_reach_the_tool():
    async def main() -> None:
        tool_run = Counted()
        calls, answers = calls_of(Tool("t", "t", tool_run, parameters=SCHEMA))
        calls.start("c1", "t", {"n": 2, "word": "hi"})
        await answers.wait(1)
        assert tool_run.calls == [({"n": 2, "word": "hi"}, "c1")]
        assert answers.results == [{"status": "ok", "done": True, "n": 1}]
        assert calls.started == 1 and calls.running == frozenset()

    run(main())


def test_a_tool_that_raises_is_an_error_in_one_line():
    async def boom(args: Mapping[str, Any], call_id: str) -> dict[str, Any]:
        raise ValueError("it broke\nat line two\r\n\tand three")

    async def main() -> None:
        calls, answers = calls_of(Tool("bad", "b", boom, scheduling="interrupt"))
        calls.start("c1", "bad", {})
        await answers.wait(1)
        _, name, result, scheduling = answers.got[0]
        assert (name, scheduling) == ("bad", "interrupt")
        assert result["status"] == "error"
        assert result["error"] == "bad failed: ValueError: it broke at line two and three"
        assert calls.running == frozenset()

    run(main())


def test_a_tool_past_its_deadline_is_a_retryable_error():
    async def main() -> None:
        never = asyncio.Event()
        tool_run = Counted(gate=never)
        calls, answers = calls_of(Tool("slow", "s", tool_run, deadline_s=0.05))
        calls.start("c1", "slow", {})
        assert calls.running == {"c1"}
        await answers.wait(1)
        result = answers.results[0]
        assert result["status"] == "error"
        assert "slow did not finish within 0.05 s" in result["error"]
        assert result["retryable"] is True
        assert tool_run.cancelled == 1  # the timeout stopped the tool's run
        assert calls.running == frozenset()
        assert calls.cancelled == 0  # a deadline is not a cancellation
        await ticks()
        assert len(answers.got) == 1

    run(main())


@pytest.mark.parametrize("value", [["a list"], "words", None, 42])
def test_a_tool_returning_no_object_is_an_error(value):
    async def main() -> None:
        calls, answers = calls_of(Tool("odd", "o", answering(value)))
        calls.start("c1", "odd", {})
        await answers.wait(1)
        result = answers.results[0]
        assert result["status"] == "error"
        assert "odd gave no answer object" in result["error"]

    run(main())


def test_a_result_without_status_gets_ok():
    async def main() -> None:
        calls, answers = calls_of(Tool("t", "t", answering({"value": 1})))
        calls.start("c1", "t", {})
        await answers.wait(1)
        assert answers.results == [{"value": 1, "status": "ok"}]

    run(main())


def test_a_result_over_result_max_is_an_error():
    async def main() -> None:
        calls, answers = calls_of(
            Tool("big", "b", answering(ok(text="x" * RESULT_MAX))),
            Tool("fits", "f", answering(ok(text="x" * (RESULT_MAX - 100)))),
        )
        calls.start("c1", "big", {})
        calls.start("c2", "fits", {})
        await answers.wait(2)
        big, fits = answers.of("c1")[0], answers.of("c2")[0]
        assert big["status"] == "error" and "too long" in big["error"]
        assert "x" * 100 not in json.dumps(big)
        assert fits["status"] == "ok" and len(fits["text"]) == RESULT_MAX - 100

    run(main())


def test_results_are_redacted():
    async def leaky(args: Mapping[str, Any], call_id: str) -> dict[str, Any]:
        return ok(note=f"the key is {SECRET}", nested={"list": [SECRET]})

    async def failing(args: Mapping[str, Any], call_id: str) -> dict[str, Any]:
        raise RuntimeError(f"request with key={SECRET} refused")

    async def main() -> None:
        key = Secret(SECRET, "test")
        calls, answers = calls_of(
            Tool("leaky", "l", leaky), Tool("failing", "f", failing), redact=key.redact
        )
        calls.start("c1", "leaky", {})
        calls.start("c2", "failing", {})
        await answers.wait(2)
        text = json.dumps(answers.got)
        assert SECRET not in text
        leaked = answers.of("c1")[0]
        assert leaked["note"] == "the key is ***" and leaked["nested"] == {"list": ["***"]}
        assert "key=***" in answers.of("c2")[0]["error"]

    run(main())


def test_an_error_with_line_breaks_is_made_one_line():
    async def main() -> None:
        calls, answers = calls_of(Tool("t", "t", answering(error("first\nsecond\n\nthird"))))
        calls.start("c1", "t", {})
        await answers.wait(1)
        assert answers.results[0]["error"] == "first second third"

    run(main())


def test_an_acting_tool_runs_once_per_call_id():
    async def main() -> None:
        tool_run = Counted()
        calls, answers = calls_of(Tool("act", "a", tool_run, acts=True, scheduling="interrupt"))
        calls.start("c1", "act", {})
        await answers.wait(1)
        calls.start("c1", "act", {})  # the service sent it again
        await answers.wait(2)
        await ticks()
        assert len(tool_run.calls) == 1
        assert len(answers.got) == 2
        assert answers.results[0] == answers.results[1] == {"status": "ok", "done": True, "n": 1}
        assert calls.started == 1
        calls.start("c2", "act", {})  # another call id runs
        await answers.wait(3)
        assert len(tool_run.calls) == 2 and answers.of("c2")[0]["n"] == 2

    run(main())


def test_a_duplicate_of_a_running_acting_call_is_ignored():
    async def main() -> None:
        gate = asyncio.Event()
        tool_run = Counted(gate=gate)
        calls, answers = calls_of(Tool("act", "a", tool_run, acts=True))
        calls.start("c1", "act", {})
        await ticks()
        calls.start("c1", "act", {})
        await ticks()
        assert answers.got == [] and calls.running == {"c1"}
        gate.set()
        await answers.wait(1)
        await ticks()
        assert len(answers.got) == 1
        assert len(tool_run.calls) == 1

    run(main())


def test_a_non_acting_tool_runs_again_for_the_same_call_id():
    async def main() -> None:
        tool_run = Counted()
        calls, answers = calls_of(Tool("look", "l", tool_run))
        calls.start("c1", "look", {})
        await answers.wait(1)
        calls.start("c1", "look", {})
        await answers.wait(2)
        assert len(tool_run.calls) == 2
        assert [r["n"] for r in answers.results] == [1, 2]

    run(main())


def test_a_failed_acting_call_repeats_its_error_without_running_again():
    async def main() -> None:
        attempts = []

        async def boom(args: Mapping[str, Any], call_id: str) -> dict[str, Any]:
            attempts.append(call_id)
            raise OSError("no disk")

        calls, answers = calls_of(Tool("act", "a", boom, acts=True))
        calls.start("c1", "act", {})
        await answers.wait(1)
        calls.start("c1", "act", {})
        await answers.wait(2)
        assert attempts == ["c1"]
        assert answers.results[0] == answers.results[1]
        assert answers.results[0]["status"] == "error"

    run(main())


def test_cancel_a_running_call():
    async def main() -> None:
        gate = asyncio.Event()
        tool_run = Counted(gate=gate)
        calls, answers = calls_of(Tool("wait", "w", tool_run, acts=True))
        calls.start("c1", "wait", {})
        await ticks()
        assert calls.running == {"c1"} and len(tool_run.calls) == 1
        calls.cancel(["c1"])
        assert calls.cancelled == 1 and calls.running == frozenset()
        gate.set()
        await ticks()
        await asyncio.sleep(0.01)
        assert tool_run.cancelled == 1  # its task was cancelled
        assert answers.got == []  # and it is never answered
        calls.cancel(["c1", "unknown"])  # not running: nothing to count
        assert calls.cancelled == 1

    run(main())


def test_cancel_before_the_call_begins():
    async def main() -> None:
        tool_run = Counted()
        calls, answers = calls_of(Tool("t", "t", tool_run))
        calls.start("c1", "t", {})
        calls.cancel(["c1"])  # before the loop ran the task at all
        await ticks()
        assert answers.got == [] and calls.cancelled == 1

    run(main())


def test_cancel_all():
    async def main() -> None:
        gate = asyncio.Event()
        first, second = Counted(gate=gate), Counted(gate=gate)
        calls, answers = calls_of(Tool("a", "a", first), Tool("b", "b", second))
        calls.start("c1", "a", {})
        calls.start("c2", "b", {})
        await ticks()
        assert calls.running == {"c1", "c2"}
        calls.cancel_all()
        assert calls.running == frozenset() and calls.cancelled == 2
        gate.set()
        await ticks()
        assert (first.cancelled, second.cancelled) == (1, 1)
        assert answers.got == []
        calls.cancel_all()  # nothing left
        assert calls.cancelled == 2

    run(main())


def test_media_go_apart_from_the_answer_once():
    async def main() -> None:
        image = ("image/jpeg", JPEG)
        calls, answers = calls_of(Tool("look", "l", answering_media(ok(seen=True), image)))
        calls.start("c1", "look", {})
        await answers.wait(1)
        result = answers.results[0]
        assert MEDIA not in result and result == {"status": "ok", "seen": True}
        assert MEDIA not in json.dumps(result)
        assert calls.take_media("c1") == [image]
        assert calls.take_media("c1") == []
        assert calls.take_media("other") == []

    run(main())


def test_media_of_an_error_are_dropped():
    async def main() -> None:
        image = ("image/jpeg", JPEG)
        calls, answers = calls_of(Tool("look", "l", answering_media(error("dark"), image)))
        calls.start("c1", "look", {})
        await answers.wait(1)
        assert answers.results[0]["status"] == "error" and MEDIA not in answers.results[0]
        assert calls.take_media("c1") == []

    run(main())


def test_media_of_an_answer_too_long_are_dropped():
    async def main() -> None:
        image = ("image/jpeg", JPEG)
        big = ok(text="x" * (RESULT_MAX + 1))
        calls, answers = calls_of(Tool("look", "l", answering_media(big, image)))
        calls.start("c1", "look", {})
        await answers.wait(1)
        assert answers.results[0]["status"] == "error"
        assert calls.take_media("c1") == []

    run(main())


def test_a_failing_on_answer_does_not_stop_the_calls(caplog):
    async def main() -> None:
        seen = []

        def on_answer(call_id: str, name: str, result: dict[str, Any], scheduling: str) -> None:
            seen.append(call_id)
            raise RuntimeError("the machine is gone")

        calls = Calls(Registry([Tool("t", "t", answering(ok()))]), on_answer)
        calls.start("c1", "nope", {})
        calls.start("c2", "t", {})
        for _ in range(200):
            if len(seen) == 2:
                break
            await asyncio.sleep(0.001)
        assert seen == ["c1", "c2"]

    with caplog.at_level(logging.ERROR, logger="talkie.tools"):
        run(main())
    assert sum("answering tool call" in r.getMessage() for r in caplog.records) == 2


def answering_media(result: dict[str, Any], *media: tuple[str, bytes]) -> Any:
    async def run(args: Mapping[str, Any], call_id: str) -> dict[str, Any]:
        return with_media(dict(result), *media)

    return run


# ------------------------------------------------------------ builtin tools
class FakeHost:
    """The built-in tools' host: a volume and a status, recording what is asked of it."""

    def __init__(self, *, snapshot_fails: Exception | None = None) -> None:
        self.level, self.muted = 0.5, False
        self.asked: list[tuple[Any, ...]] = []
        self.snapshot_fails = snapshot_fails

    def volume_words(self) -> Mapping[str, Any]:
        return {"volume": self.level, "muted": self.muted}

    def set_volume(self, level: float | None = None, *, muted: bool | None = None) -> None:
        self.asked.append(("set", level, muted))
        if level is not None:
            self.level = level
        if muted is not None:
            self.muted = muted

    def step_volume(self, up: bool) -> None:
        self.asked.append(("step", up))
        self.level = round(self.level + (0.1 if up else -0.1), 2)
        self.muted = False

    def status(self) -> Mapping[str, Any]:
        self.asked.append(("status",))
        return {"state": "idle", "link": "open", "uptime_s": 12.5}

    def reset_conversation(self) -> None:
        self.asked.append(("reset",))

    async def snapshot(self) -> bytes:
        self.asked.append(("snapshot",))
        if self.snapshot_fails is not None:
            raise self.snapshot_fails
        return JPEG


ALL_ON = {"time": True, "device": True, "volume": True, "reset": True, "look": True}
NAMES = {
    "time": "local_time",
    "device": "device_status",
    "volume": "speaker_volume",
    "reset": "start_fresh_conversation",
    "look": "look",
}


def builtin_calls(host: FakeHost, **enabled: bool) -> tuple[Calls, Answers]:
    answers = Answers()
    return Calls(Registry(builtin.tools(enabled or ALL_ON, host)), answers), answers


def test_builtin_tools_follow_the_enabled_flags():
    host = FakeHost()
    assert builtin.tools({}, host) == []
    assert builtin.tools(dict.fromkeys(ALL_ON, False), host) == []
    assert [t.name for t in builtin.tools(ALL_ON, host)] == list(NAMES.values())
    assert host.asked == []  # making them asks the host nothing


@pytest.mark.parametrize("key", list(NAMES))
def test_each_builtin_tool_has_its_flag(key):
    only = [t.name for t in builtin.tools({key: True}, FakeHost())]
    assert only == [NAMES[key]]
    others = [t.name for t in builtin.tools({**ALL_ON, key: False}, FakeHost())]
    assert NAMES[key] not in others and len(others) == len(NAMES) - 1


def test_builtin_declarations_are_valid_json_schema():
    import jsonschema

    for tool in builtin.tools(ALL_ON, FakeHost()):
        declared = tool.declaration()
        jsonschema.Draft202012Validator.check_schema(declared["parameters_json_schema"])
        assert declared["parameters_json_schema"]["type"] == "object"
        assert declared["description"]


def test_builtin_tool_rules():
    tools = {t.name: t for t in builtin.tools(ALL_ON, FakeHost())}
    assert tools["speaker_volume"].acts and tools["start_fresh_conversation"].acts
    assert not tools["local_time"].acts and not tools["look"].acts
    assert not tools["device_status"].acts
    assert tools["start_fresh_conversation"].scheduling == "silent"
    assert tools["look"].deadline_s == 8.0


@pytest.mark.parametrize(
    "args, asked, words",
    [
        ({"action": "get"}, [], {"volume": 0.5, "muted": False}),
        ({"action": "set", "level": 0.3}, [("set", 0.3, False)], {"volume": 0.3, "muted": False}),
        ({"action": "set", "level": 0}, [("set", 0, False)], {"volume": 0, "muted": False}),
        ({"action": "up"}, [("step", True)], {"volume": 0.6, "muted": False}),
        ({"action": "down"}, [("step", False)], {"volume": 0.4, "muted": False}),
        ({"action": "mute"}, [("set", None, True)], {"volume": 0.5, "muted": True}),
        ({"action": "unmute"}, [("set", None, False)], {"volume": 0.5, "muted": False}),
    ],
)
def test_volume_tool_actions(args, asked, words):
    async def main() -> None:
        host = FakeHost()
        calls, answers = builtin_calls(host, volume=True)
        calls.start("v1", "speaker_volume", args)
        await answers.wait(1)
        assert host.asked == asked
        assert answers.results == [{"status": "ok", **words}]
        assert answers.got[0][3] == "interrupt"

    run(main())


def test_volume_set_without_level_is_an_error_and_changes_nothing():
    async def main() -> None:
        host = FakeHost()
        calls, answers = builtin_calls(host, volume=True)
        calls.start("v1", "speaker_volume", {"action": "set"})  # the schema lets it through
        await answers.wait(1)
        result = answers.results[0]
        assert result["status"] == "error" and "needs a level" in result["error"]
        assert host.asked == []

    run(main())


@pytest.mark.parametrize(
    "args, where",
    [
        ({"action": "set", "level": 1.5}, "level"),
        ({"action": "set", "level": -0.1}, "level"),
        ({"action": "set", "level": "loud"}, "level"),
        ({"action": "louder"}, "action"),
        ({}, "arguments"),
        ({"action": "up", "by": 2}, "arguments"),
    ],
)
def test_volume_tool_bad_arguments(args, where):
    async def main() -> None:
        host = FakeHost()
        calls, answers = builtin_calls(host, volume=True)
        calls.start("v1", "speaker_volume", args)
        await ticks()
        assert len(answers.got) == 1
        assert answers.results[0]["error"].startswith(f"bad arguments: {where}: ")
        assert host.asked == []

    run(main())


def test_volume_tool_is_not_stepped_twice_by_a_duplicate_call():
    async def main() -> None:
        host = FakeHost()
        calls, answers = builtin_calls(host, volume=True)
        calls.start("v1", "speaker_volume", {"action": "up"})
        await answers.wait(1)
        calls.start("v1", "speaker_volume", {"action": "up"})
        await answers.wait(2)
        assert host.asked == [("step", True)]
        assert answers.results[0] == answers.results[1]

    run(main())


@pytest.fixture
def zone():
    """Set the process's time zone for one test (a POSIX TZ string: no tz database needed)."""
    before = os.environ.get("TZ")

    def use(tz: str) -> None:
        os.environ["TZ"] = tz
        time.tzset()

    yield use
    if before is None:
        os.environ.pop("TZ", None)
    else:
        os.environ["TZ"] = before
    time.tzset()


@pytest.mark.parametrize(
    "tz, name, offset", [("UTC0", "UTC", "+0000"), ("XYZ-5:30", "XYZ", "+0530")]
)
def test_time_tool_answers_the_date_time_and_zone(zone, tz, name, offset):
    zone(tz)
    tool = builtin.tools({"time": True}, FakeHost())[0]
    assert tool.quick  # answered at once, in the step that asked
    result = tool.run({}, "t1")
    assert set(result) == {"status", "date", "weekday", "time", "timezone", "utc_offset"}
    assert result["status"] == "ok"
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", result["date"])
    assert re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", result["time"])
    assert result["weekday"] in calendar.day_name
    # the weekday is the date's (whatever the date is)
    assert dt.date.fromisoformat(result["date"]).strftime("%A") == result["weekday"]
    assert result["timezone"] == name and result["utc_offset"] == offset


def test_time_tool_through_calls():
    async def main() -> None:
        calls, answers = builtin_calls(FakeHost(), time=True)
        calls.start("t1", "local_time", {})
        await answers.wait(1)
        result = answers.results[0]
        assert result["status"] == "ok" and result["timezone"]
        assert answers.got[0][3] == "interrupt"

    run(main())


def test_device_status_has_the_hosts_fields(monkeypatch):
    monkeypatch.setattr(builtin, "_read", lambda path: None)  # nothing readable

    async def main() -> None:
        host = FakeHost()
        calls, answers = builtin_calls(host, device=True)
        calls.start("d1", "device_status", {})
        await answers.wait(1)
        assert answers.results == [
            {"status": "ok", "state": "idle", "link": "open", "uptime_s": 12.5}
        ]
        assert host.asked == [("status",)]

    run(main())


def test_device_status_adds_what_the_system_says(monkeypatch):
    files = {
        "/sys/class/thermal/thermal_zone0/temp": "48312\n",
        "/proc/net/wireless": (
            "Inter-| sta-|   Quality        |   Discarded packets\n"
            " face | tus | link level noise |  nwid  crypt   frag\n"
            " wlan0: 0000   54.  -56.  -256        0      0      0\n"
        ),
        "/proc/uptime": "3600.42 7000.00\n",
    }
    monkeypatch.setattr(builtin, "_read", files.get)

    async def main() -> None:
        calls, answers = builtin_calls(FakeHost(), device=True)
        calls.start("d1", "device_status", {})
        await answers.wait(1)
        result = answers.results[0]
        assert result["state"] == "idle"
        assert result["temperature_c"] == 48.3
        assert result["wifi"] == {"interface": "wlan0", "signal_dbm": -56.0}
        assert result["system_uptime_s"] == 3600

    run(main())


def test_device_status_is_ok_when_the_host_has_a_status_word(monkeypatch):
    monkeypatch.setattr(builtin, "_read", lambda path: None)

    class WordyHost(FakeHost):
        def status(self) -> Mapping[str, Any]:
            return {"state": "idle", "status": "ready"}  # as App.status_words has it

    async def main() -> None:
        calls, answers = builtin_calls(WordyHost(), device=True)
        calls.start("d1", "device_status", {})
        await answers.wait(1)
        assert answers.results[0]["status"] == "ok"
        assert "ready" in answers.results[0].values()  # the word is kept, under another key

    run(main())


def test_device_status_on_this_machine_is_an_ok_answer():
    async def main() -> None:
        calls, answers = builtin_calls(FakeHost(), device=True)
        calls.start("d1", "device_status", {})
        await answers.wait(1)
        assert answers.results[0]["status"] == "ok"
        assert answers.results[0]["uptime_s"] == 12.5

    run(main())


def test_reset_tool_resets_once():
    async def main() -> None:
        host = FakeHost()
        calls, answers = builtin_calls(host, reset=True)
        calls.start("r1", "start_fresh_conversation", {})
        await answers.wait(1)
        calls.start("r1", "start_fresh_conversation", {})  # a duplicate
        await answers.wait(2)
        assert host.asked == [("reset",)]
        assert answers.results[0]["status"] == "ok" and answers.results[0]["note"]
        assert answers.got[0][3] == "silent"

    run(main())


def test_look_tool_sends_the_frame_as_media():
    async def main() -> None:
        host = FakeHost()
        calls, answers = builtin_calls(host, look=True)
        calls.start("l1", "look", {})
        await answers.wait(1)
        result = answers.results[0]
        assert result["status"] == "ok" and result["bytes"] == len(JPEG)
        assert MEDIA not in result
        assert calls.take_media("l1") == [("image/jpeg", JPEG)]
        assert host.asked == [("snapshot",)]

    run(main())


def test_look_tool_without_a_camera_is_an_error():
    async def main() -> None:
        host = FakeHost(snapshot_fails=RuntimeError("this device has no camera"))
        calls, answers = builtin_calls(host, look=True)
        calls.start("l1", "look", {})
        await answers.wait(1)
        result = answers.results[0]
        assert result["status"] == "error"
        assert result["error"] == "look failed: RuntimeError: this device has no camera"
        assert calls.take_media("l1") == []

    run(main())


# ------------------------------------------------------ Volume and StateFile
def volume_file(path: Path, **kw: Any) -> StateFile:
    return StateFile(path, what="the volume", background=False, **kw)


def test_volume_starts_at_the_configured_level(tmp_path):
    volume = Volume(0.7, volume_file(tmp_path / "volume.json"))
    assert (volume.level, volume.muted) == (0.7, False)
    assert volume.words() == {"volume": 0.7, "muted": False}
    assert not (tmp_path / "volume.json").exists()  # nothing set, nothing written


def test_volume_set_is_kept_and_read_back(tmp_path):
    path = tmp_path / "volume.json"
    volume = Volume(0.7, volume_file(path))
    volume.set(0.3)
    assert json.loads(path.read_text()) == {"level": 0.3, "muted": False, "configured": 0.7}
    assert (path.stat().st_mode & 0o777) == 0o600
    again = Volume(0.7, volume_file(path))
    assert (again.level, again.muted) == (0.3, False)


def test_volume_set_clamps_and_rounds(tmp_path):
    volume = Volume(0.5, volume_file(tmp_path / "v.json"))
    volume.set(1.7)
    assert volume.level == 1.0
    volume.set(-2)
    assert volume.level == 0.0
    volume.set(0.123456)
    assert volume.level == 0.123


def test_volume_steps(tmp_path):
    path = tmp_path / "volume.json"
    volume = Volume(0.5, volume_file(path))
    volume.step(True)
    assert volume.level == pytest.approx(0.5 + STEP)
    volume.step(False)
    volume.step(False)
    assert volume.level == pytest.approx(0.5 - STEP)
    for _ in range(20):
        volume.step(True)
    assert volume.level == 1.0
    for _ in range(20):
        volume.step(False)
    assert volume.level == 0.0
    assert Volume(0.5, volume_file(path)).level == 0.0


def test_a_step_unmutes(tmp_path):
    volume = Volume(0.5, volume_file(tmp_path / "v.json"))
    volume.set(muted=True)
    volume.step(True)
    assert volume.muted is False and volume.level == pytest.approx(0.6)


def test_volume_mute_is_kept(tmp_path):
    path = tmp_path / "volume.json"
    volume = Volume(0.5, volume_file(path))
    volume.set(0.4)
    volume.set(muted=True)
    assert (volume.level, volume.muted) == (0.4, True)
    again = Volume(0.5, volume_file(path))
    assert (again.level, again.muted) == (0.4, True)
    again.set(muted=False)
    assert Volume(0.5, volume_file(path)).muted is False


def test_a_new_configured_volume_wins_over_the_saved_one(tmp_path):
    path = tmp_path / "volume.json"
    volume = Volume(0.5, volume_file(path))
    volume.set(0.2, muted=True)
    changed = Volume(0.9, volume_file(path))  # the file's [audio] volume was edited
    assert (changed.level, changed.muted) == (0.9, False)


def test_reconfigure_with_the_same_volume_keeps_the_one_set(tmp_path):
    path = tmp_path / "volume.json"
    volume = Volume(0.5, volume_file(path))
    volume.set(0.2, muted=True)
    volume.reconfigure(0.5)
    assert (volume.level, volume.muted) == (0.2, True)
    assert json.loads(path.read_text())["configured"] == 0.5


def test_reconfigure_with_a_new_volume_wins(tmp_path):
    path = tmp_path / "volume.json"
    playback = FakePlayback(Log())
    volume = Volume(0.5, volume_file(path))
    volume.attach(playback)
    volume.set(0.2, muted=True)
    assert playback.volume == 0.0
    volume.reconfigure(0.8)
    assert (volume.level, volume.muted, volume.configured) == (0.8, False, 0.8)
    assert playback.volume == 0.8
    assert json.loads(path.read_text()) == {"level": 0.8, "muted": False, "configured": 0.8}
    volume.set(0.6)
    again = Volume(0.8, volume_file(path))  # and what is set after it is kept under it
    assert again.level == 0.6


def test_volume_is_applied_to_the_speaker(tmp_path):
    playback = FakePlayback(Log())
    playback.volume = 1.0
    volume = Volume(0.5, volume_file(tmp_path / "v.json"))
    volume.attach(playback)
    assert playback.volume == 0.5
    volume.set(0.3)
    assert playback.volume == 0.3
    volume.set(muted=True)
    assert playback.volume == 0.0
    volume.set(0.7)  # still muted
    assert playback.volume == 0.0
    volume.set(muted=False)
    assert playback.volume == 0.7
    other = FakePlayback(Log())
    volume.attach(other)  # the devices were rebuilt
    assert other.volume == 0.7
    volume.attach(None)
    volume.set(0.1)  # no speaker: kept, applied to none
    assert other.volume == 0.7 and volume.level == 0.1


def test_a_muted_volume_read_back_is_applied_muted(tmp_path):
    path = tmp_path / "v.json"
    Volume(0.5, volume_file(path)).set(0.4, muted=True)
    playback = FakePlayback(Log())
    again = Volume(0.5, volume_file(path))
    again.attach(playback)
    assert playback.volume == 0.0


@pytest.mark.parametrize(
    "saved, level, muted",
    [
        ({"level": True, "muted": True, "configured": 0.5}, 0.5, False),  # a bool is no level
        ({"level": "0.2", "muted": False, "configured": 0.5}, 0.5, False),
        ({"level": 7, "muted": "yes", "configured": 0.5}, 1.0, False),  # clamped; only true mutes
        ({"level": -1, "muted": True, "configured": 0.5}, 0.0, True),
        ({"muted": True, "configured": 0.5}, 0.5, False),
        (["level", 0.2], 0.5, False),
        (None, 0.5, False),
    ],
)
def test_a_saved_volume_that_is_not_right_is_not_used_whole(tmp_path, saved, level, muted):
    path = tmp_path / "v.json"
    path.write_text(json.dumps(saved))
    volume = Volume(0.5, volume_file(path))
    assert (volume.level, volume.muted) == (level, muted)


def test_a_corrupt_volume_file_is_one_warning(tmp_path, caplog):
    path = tmp_path / "v.json"
    path.write_text("{ not json")
    with caplog.at_level(logging.WARNING, logger="talkie.storage"):
        volume = Volume(0.5, volume_file(path))
    assert (volume.level, volume.muted) == (0.5, False)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "not valid JSON" in warnings[0].getMessage()
    volume.set(0.25)  # and it is written over with good data
    assert Volume(0.5, volume_file(path)).level == 0.25


def test_volume_with_a_background_state_file(tmp_path):
    path = tmp_path / "state" / "volume.json"  # the folder is made when written
    file = StateFile(path, what="the volume")
    volume = Volume(0.5, file)
    volume.set(0.35)
    volume.set(muted=True)
    assert file.close(timeout=5.0)
    assert json.loads(path.read_text()) == {"level": 0.35, "muted": True, "configured": 0.5}


def test_state_file_basics(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="talkie.storage"):
        missing = volume_file(tmp_path / "none.json")
        assert missing.read() is None
        nowhere = StateFile(None, what="x")
        assert nowhere.read() is None
        nowhere.write({"a": 1})  # no file: nothing happens, and nothing waits
        assert nowhere.flush(timeout=1.0)
    assert caplog.records == []  # a missing file is no warning
    path = tmp_path / "doc.json"
    file = volume_file(path)
    file.write({"é": [1, 2]})
    assert volume_file(path).read() == {"é": [1, 2]}
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []
    file.write(None)
    assert not path.exists()


# ------------------------------------------------------------------ Ringer
class Handle:
    def __init__(self, delay: float, fn: Any) -> None:
        self.delay, self.fn, self.cancelled = delay, fn, False

    def cancel(self) -> None:
        self.cancelled = True


class Later:
    """A call_later that runs nothing until told to."""

    def __init__(self) -> None:
        self.handles: list[Handle] = []

    def __call__(self, delay: float, fn: Any) -> Handle:
        handle = Handle(delay, fn)
        self.handles.append(handle)
        return handle

    @property
    def waiting(self) -> list[Handle]:
        return [h for h in self.handles if not h.cancelled and h.fn is not None]

    def fire(self) -> None:
        """Run the callbacks waiting now (each once)."""
        for handle in self.waiting:
            fn, handle.fn = handle.fn, None
            fn()


class PcmPlayback(FakePlayback):
    """A FakePlayback that keeps the audio played."""

    def __init__(self) -> None:
        super().__init__(Log())
        self.pcm: list[bytes] = []
        self.fail = False

    def play(self, pcm: bytes, gain: float | None = None) -> None:
        if self.fail:
            raise OSError("the speaker is gone")
        super().play(pcm, gain)
        self.pcm.append(pcm)


def peak(pcm: bytes) -> int:
    import numpy as np

    return int(np.max(np.abs(np.frombuffer(pcm, dtype="<i2").astype(np.int32))))


def test_ring_plays_the_chime_at_the_ringers_volume():
    speaker = PcmPlayback()
    speaker.volume = 0.0  # muted: the ring is heard all the same
    later = Later()
    ringer = Ringer(lambda: speaker, 0.4, call_later=later)
    assert not ringer.ringing
    ringer.ring(True)
    assert ringer.ringing and ringer.chimes == 1
    assert speaker.pcm == [chime(0.4, OUTPUT_RATE)]
    assert speaker.played == [(len(chime(0.4, OUTPUT_RATE)), 1.0)]  # its own gain, not volume
    assert peak(speaker.pcm[0]) == pytest.approx(0.4 * 0.9 * 32767, rel=0.01)
    assert [h.delay for h in later.waiting] == [ringer_mod.LOOK_S]


def test_ring_waits_for_the_speaker_to_be_empty():
    speaker = PcmPlayback()
    later = Later()
    ringer = Ringer(lambda: speaker, 0.8, call_later=later)
    speaker.buffered_samples = 1000  # an announcement is playing
    ringer.ring(True)
    assert ringer.chimes == 0 and speaker.played == []
    for _ in range(3):
        later.fire()
    assert ringer.chimes == 0 and speaker.played == []
    assert len(later.waiting) == 1  # it keeps looking, once at a time
    speaker.buffered_samples = 0
    later.fire()
    assert ringer.chimes == 1
    speaker.buffered_samples = 48000  # the chime is queued
    later.fire()
    assert ringer.chimes == 1
    speaker.buffered_samples = 0
    later.fire()
    later.fire()
    assert ringer.chimes == 3 and len(speaker.played) == 3


def test_ring_again_while_ringing_changes_nothing():
    speaker = PcmPlayback()
    later = Later()
    ringer = Ringer(lambda: speaker, 0.8, call_later=later)
    ringer.ring(True)
    ringer.ring(True)
    assert ringer.chimes == 1 and len(later.waiting) == 1


def test_ring_false_stops_the_chimes():
    speaker = PcmPlayback()
    later = Later()
    ringer = Ringer(lambda: speaker, 0.8, call_later=later)
    ringer.ring(False)  # not ringing: nothing to stop
    assert not ringer.ringing and later.handles == []
    ringer.ring(True)
    later.fire()
    assert ringer.chimes == 2
    ringer.ring(False)
    assert not ringer.ringing
    assert later.waiting == [] and all(h.cancelled for h in later.handles if h.fn is not None)
    later.fire()
    assert ringer.chimes == 2 and len(speaker.played) == 2


def test_ring_again_uses_the_new_volume():
    speaker = PcmPlayback()
    later = Later()
    ringer = Ringer(lambda: speaker, 0.8, call_later=later)
    ringer.ring(True)
    ringer.ring(False)
    ringer.volume = 0.2  # a reload's [tools] alarm_volume
    ringer.ring(True)
    assert speaker.pcm == [chime(0.8, OUTPUT_RATE), chime(0.2, OUTPUT_RATE)]


def test_ring_without_a_speaker_keeps_ringing():
    speaker: list[PcmPlayback] = []
    later = Later()
    ringer = Ringer(lambda: speaker[0] if speaker else None, 0.8, call_later=later)
    ringer.ring(True)
    later.fire()
    assert ringer.ringing and ringer.chimes == 0
    speaker.append(PcmPlayback())  # the devices came back
    speaker[0].fail = True
    later.fire()
    assert ringer.ringing and ringer.chimes == 0  # a failing speaker: not counted
    speaker[0].fail = False
    later.fire()
    assert ringer.chimes == 1 and len(speaker[0].played) == 1


def test_ring_on_a_real_loop(monkeypatch):
    monkeypatch.setattr(ringer_mod, "LOOK_S", 0.005)

    async def main() -> None:
        speaker = PcmPlayback()
        ringer = Ringer(lambda: speaker, 0.5)
        ringer.ring(True)
        while ringer.chimes < 3:
            await asyncio.sleep(0.002)
        speaker.buffered_samples = 100
        before = ringer.chimes
        for _ in range(5):
            await asyncio.sleep(0.006)
        assert ringer.chimes == before  # nothing queued while the speaker has audio
        speaker.buffered_samples = 0
        while ringer.chimes == before:
            await asyncio.sleep(0.002)
        ringer.ring(False)
        stopped = ringer.chimes
        for _ in range(5):
            await asyncio.sleep(0.006)
        assert ringer.chimes == stopped and not ringer.ringing
        assert len(speaker.played) == stopped

    run(main())


# ----------------------------------------------------------------- ToolBox
class FakeApp:
    """The ToolBox's host: what it emits and the tasks it starts, recorded."""

    def __init__(self, settings: config.Settings) -> None:
        self.settings = settings
        self.state: Any = None
        self.key: Secret | KeyProblem = KeyProblem("no key in tests")
        self.link: Any = None
        self.vision: Any = None
        self.playback: Any = None
        self.events: list[Any] = []
        self.tasks: list[str] = []

    def emit(self, event: Any) -> None:
        self.events.append(event)

    def start_task(self, coro: Any, name: str) -> Any:
        self.tasks.append(name)
        coro.close()  # not run: the tests here do not start MCP servers

    def status_words(self) -> Mapping[str, Any]:
        return {"state": "idle"}


def settings_from(tmp_path: Path, text: str) -> config.Settings:
    path = tmp_path / "talkie.toml"
    path.write_text(f'[session]\nstate_dir = "{tmp_path}"\n\n{text}', encoding="utf-8")
    return config.load(path)


def toolbox(tmp_path: Path, text: str) -> tuple[ToolBox, FakeApp]:
    settings = settings_from(tmp_path, text)
    app = FakeApp(settings)
    box = ToolBox(app, settings)
    box.rebuild()
    return box, app


def declared(box: ToolBox) -> dict[str, dict[str, Any]]:
    return {d["name"]: d for d in box.declarations()}


def test_toolbox_defaults_declare_the_builtin_tools(tmp_path):
    box, _ = toolbox(tmp_path, '[vision]\nmode = "off"\n')
    assert box.registry.names == [
        "local_time",
        "device_status",
        "speaker_volume",
        "start_fresh_conversation",
    ]  # no look: the camera is off; no timers: not opened
    assert all(d["behavior"] == "NON_BLOCKING" for d in box.declarations())
    assert box.volume.file.path == tmp_path / "volume.json"


def test_toolbox_look_follows_tools_look_and_vision_mode(tmp_path):
    assert "look" in declared(toolbox(tmp_path, '[vision]\nmode = "always"\n')[0])
    on = '[vision]\nmode = "off"\n[tools]\nlook = "on"\n'
    assert "look" in declared(toolbox(tmp_path, on)[0])
    assert "look" not in declared(
        toolbox(tmp_path, '[vision]\nmode = "always"\n[tools]\nlook = "off"\n')[0]
    )


def test_toolbox_a_disabled_tool_is_not_declared(tmp_path):
    box, _ = toolbox(tmp_path, "[tools]\ntime = false\nvolume = false\n")
    names = box.registry.names
    assert "local_time" not in names and "speaker_volume" not in names
    assert "device_status" in names
    assert box.calls.registry is box.registry


def test_toolbox_tools_behavior_applies_to_builtins(tmp_path):
    box, _ = toolbox(tmp_path, '[tools]\nbehavior = "blocking"\n')
    assert {d["behavior"] for d in box.declarations()} == {"BLOCKING"}
    tool = box.registry.get("speaker_volume")
    assert tool.scheduling == "interrupt" and tool.deadline_s == 5.0  # their own otherwise


def test_toolbox_options_override_a_tools_defaults(tmp_path, caplog):
    text = """
[tools]
behavior = "blocking"

[tools.options.speaker_volume]
behavior = "non_blocking"
scheduling = "silent"
deadline_s = 2.5

[tools.options.device_status]
deadline_s = 9
"""
    with caplog.at_level(logging.WARNING, logger="talkie"):
        box, _ = toolbox(tmp_path, text)
    volume, status = box.registry.get("speaker_volume"), box.registry.get("device_status")
    assert (volume.behavior, volume.scheduling, volume.deadline_s) == (
        "non_blocking",
        "silent",
        2.5,
    )
    assert volume.acts  # what options do not name stays the tool's
    assert (status.behavior, status.scheduling, status.deadline_s) == ("blocking", "interrupt", 9.0)
    time_tool = box.registry.get("local_time")
    assert (time_tool.behavior, time_tool.deadline_s) == ("blocking", 5.0)
    assert declared(box)["speaker_volume"]["behavior"] == "NON_BLOCKING"
    assert declared(box)["device_status"]["behavior"] == "BLOCKING"
    assert caplog.records == []


def test_toolbox_options_deadline_is_what_a_call_gets(tmp_path):
    text = '[vision]\nmode = "off"\n[tools]\nlook = "on"\n[tools.options.look]\ndeadline_s = 0.1\n'

    async def main() -> None:
        box, app = toolbox(tmp_path, text)
        never = asyncio.Event()

        async def snapshot() -> bytes:
            await never.wait()
            return b""

        box.snapshot = snapshot  # type: ignore[method-assign]
        box.run(m.RunTool("l1", "look", "{}"))
        for _ in range(2000):
            if app.events:
                break
            await asyncio.sleep(0.001)
        (answered,) = app.events
        assert isinstance(answered, m.ToolAnswered)
        assert "did not finish within 0.1 s" in json.loads(answered.response)["error"]

    run(main())


def test_toolbox_unknown_option_is_one_warning(tmp_path, caplog):
    text = '[tools]\ntime = false\n[tools.options.no_such_tool]\nscheduling = "silent"\n'
    text += '[tools.options.local_time]\nscheduling = "silent"\n'
    with caplog.at_level(logging.WARNING, logger="talkie"):
        box, _ = toolbox(tmp_path, text)
        box.rebuild()
        box.rebuild()
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert sorted(warned) == [
        "[tools.options.local_time]: no tool of that name is enabled",
        "[tools.options.no_such_tool]: no tool of that name is enabled",
    ]


def test_toolbox_option_of_an_mcp_tool_not_listed_yet_is_no_warning(tmp_path, caplog):
    text = """
[tools.options.home_light]
scheduling = "silent"

[[tools.mcp]]
name = "home"
url = "http://127.0.0.1:9/mcp"
"""
    with caplog.at_level(logging.WARNING, logger="talkie"):
        toolbox(tmp_path, text)
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_toolbox_an_mcp_tool_keeps_its_own_behavior(tmp_path):
    text = """
[tools]
behavior = "blocking"

[tools.options.home_dim]
scheduling = "interrupt"

[[tools.mcp]]
name = "home"
url = "http://127.0.0.1:9/mcp"
behavior = "non_blocking"
"""
    box, _ = toolbox(tmp_path, text)
    server_tool = Tool("home_light", "a light", answering(ok()), behavior="non_blocking")
    assert box._with_options(server_tool, mcp=True).behavior == "non_blocking"
    dim = box._with_options(
        Tool("home_dim", "dim", answering(ok()), behavior="non_blocking", scheduling="when_idle"),
        mcp=True,
    )
    assert (dim.behavior, dim.scheduling) == ("non_blocking", "interrupt")
    other = box._with_options(Tool("x_light", "x", answering(ok())))
    assert other.behavior == "blocking"  # not the server's: [tools] behavior


def test_toolbox_a_server_name_does_not_capture_a_builtin_tool(tmp_path):
    text = """
[tools]
behavior = "blocking"

[[tools.mcp]]
name = "local"
command = ["my-mcp"]
"""
    box, _ = toolbox(tmp_path, text)
    assert declared(box)["local_time"]["behavior"] == "BLOCKING"


def test_toolbox_reconfigure_changes_options_volume_and_ring(tmp_path):
    box, app = toolbox(tmp_path, "[audio]\nvolume = 0.5\n")
    box.volume.set(0.2)
    again = settings_from(
        tmp_path,
        '[audio]\nvolume = 0.9\n[tools]\ntime = false\nalarm_volume = 0.3\n'
        '[tools.options.device_status]\nbehavior = "blocking"\n',
    )
    box.reconfigure(again)
    assert box.volume.level == 0.9
    assert box.ringer.volume == 0.3
    assert "local_time" not in box.registry.names
    assert box.registry.get("device_status").behavior == "blocking"
    assert app.tasks == []  # [[tools.mcp]] unchanged: nothing restarted
    assert box.volume.file.close(timeout=5.0)


def test_toolbox_runs_calls_and_answers_as_events(tmp_path):
    async def main() -> None:
        box, app = toolbox(tmp_path, "[audio]\nvolume = 0.5\n")
        app.key = Secret(SECRET, "test")
        box.run(m.RunTool("v1", "speaker_volume", '{"action": "up"}'))
        box.run(m.RunTool("v2", "speaker_volume", "not json"))
        box.run(m.RunTool("r1", "start_fresh_conversation", "{}"))
        for _ in range(2000):
            if sum(isinstance(e, m.ToolAnswered) for e in app.events) == 3:
                break
            await asyncio.sleep(0.001)
        answered = {e.call_id: e for e in app.events if isinstance(e, m.ToolAnswered)}
        assert json.loads(answered["v1"].response) == {
            "status": "ok",
            "volume": 0.6,
            "muted": False,
        }
        assert answered["v1"].scheduling == "interrupt"
        assert "not an object" in json.loads(answered["v2"].response)["error"]
        assert answered["r1"].scheduling == "silent"
        assert m.Reset(when_idle=True) in app.events
        assert box.volume.level == pytest.approx(0.6)
        assert box.volume.file.close(timeout=5.0)
        assert json.loads((tmp_path / "volume.json").read_text())["level"] == pytest.approx(0.6)

    run(main())


def test_toolbox_redacts_the_api_key(tmp_path):
    box, app = toolbox(tmp_path, "")
    app.key = Secret(SECRET, "test")
    assert box._redact(f"x {SECRET} y") == "x *** y"
    app.key = KeyProblem("none")
    assert box._redact(f"x {SECRET}") == f"x {SECRET}"


def test_a_quick_tool_is_answered_in_the_same_call_with_no_task():
    ran = []

    def quick(args, call_id):
        ran.append(call_id)
        return ok(n=len(ran))

    def broken(args, call_id):
        raise RuntimeError("no luck")

    async def main() -> None:
        calls, answers = calls_of(Tool("q", "q", quick, quick=True, acts=True),
                                  Tool("b", "b", broken, quick=True))
        calls.start("c1", "q", {})
        # answered before start() returned: no task, nothing running
        assert answers.results == [{"status": "ok", "n": 1}] and calls.running == frozenset()
        calls.start("c1", "q", {})  # a repeated call of an acting tool: the first answer again
        assert ran == ["c1"] and answers.results[-1] == {"status": "ok", "n": 1}
        calls.start("c2", "b", {})
        assert answers.results[-1]["status"] == "error"
        assert answers.results[-1]["error"] == "b failed: RuntimeError: no luck"

    run(main())
