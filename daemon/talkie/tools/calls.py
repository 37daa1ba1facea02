"""Running the model's tool calls: each with its deadline, off nothing but the loop, and each
answered once (``on_answer``), whatever happens: an unknown tool, arguments that do not fit its
schema, a deadline passed or a failure are error objects in words. A cancelled call is never
answered (the machine decides: the server cancelled it, or the user moved on).

A tool that acts on the world runs once per call id: a duplicate call (the service may send one
after an interruption) gets the first one's result, or, while the first still runs, nothing more.
Results are JSON objects of bounded size, with the API key never in them.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from talkie.core.words import one_line
from talkie.tools import MEDIA, RESULT_MAX, Media, Registry, Result, Tool, error

log = logging.getLogger("talkie.tools")

#: How many answered calls of acting tools are remembered (their ids) for duplicates.
REMEMBERED = 256
#: How many answers' media wait to be sent (an answer that was void leaves its media behind).
MEDIA_KEPT = 4

Answer = Callable[[str, str, Result, str], None]


def _checked_args(tool: Tool, args: Any) -> Mapping[str, Any] | str:
    """The arguments if they fit the tool's schema, else what is wrong with them in words."""
    if not isinstance(args, Mapping):
        return "the arguments are not an object"
    import jsonschema  # lazily: only once a tool is called

    problems = sorted(
        jsonschema.Draft202012Validator(tool.parameters).iter_errors(dict(args)),
        key=lambda e: list(e.absolute_path),
    )
    if not problems:
        return args
    first = problems[0]
    where = ".".join(str(p) for p in first.absolute_path) or "arguments"
    return one_line(f"{where}: {first.message}", 160)


def _failed(tool: Tool, exc: Exception) -> Result:
    return error(f"{tool.name} failed: {type(exc).__name__}: {exc}")


class Calls:
    """The calls under way and the answers of the acting ones already given."""

    def __init__(
        self,
        registry: Registry,
        on_answer: Answer,
        *,
        redact: Callable[[str], str] = lambda text: text,
    ) -> None:
        self.registry = registry
        self.on_answer = on_answer
        self.redact = redact
        self._running: dict[str, asyncio.Task[None]] = {}
        self._answered: OrderedDict[str, tuple[Result, str]] = OrderedDict()
        self._media: OrderedDict[str, list[Media]] = OrderedDict()
        self.started = self.cancelled = 0

    @property
    def running(self) -> frozenset[str]:
        return frozenset(self._running)

    def start(self, call_id: str, name: str, args: Any) -> None:
        """Run one call (loop thread); its answer comes through ``on_answer``."""
        if call_id in self._running:
            log.debug("tool call %s is already running: the duplicate is ignored", call_id)
            return
        if call_id in self._answered:
            log.info("tool call %s came again: it gets its first answer", call_id)
            result, scheduling = self._answered[call_id]
            self._answer(call_id, name, result, scheduling)
            return
        tool = self.registry.get(name)
        if tool is None:
            known = ", ".join(self.registry.names) or "none"
            self._answer(call_id, name, error(f"no tool named {name!r}; tools: {known}"), "")
            return
        checked = _checked_args(tool, args)
        if isinstance(checked, str):
            self._answer(call_id, name, error(f"bad arguments: {checked}"), tool.scheduling)
            return
        self.started += 1
        if tool.quick:
            self._finish(call_id, tool, self._quick(tool, checked, call_id))
            return
        task = asyncio.get_running_loop().create_task(
            self._run(call_id, tool, checked), name=f"tool-{name}"
        )
        self._running[call_id] = task

    def cancel(self, call_ids: Iterable[str]) -> None:
        """Stop these calls; what they would have answered is void."""
        for call_id in call_ids:
            task = self._running.pop(call_id, None)
            if task is not None:
                task.cancel()
                self.cancelled += 1

    def cancel_all(self) -> None:
        self.cancel(list(self._running))

    def take_media(self, call_id: str) -> list[Media]:
        """The images that go with the answer to ``call_id`` (once)."""
        return self._media.pop(call_id, [])

    def _quick(self, tool: Tool, args: Mapping[str, Any], call_id: str) -> Any:
        try:
            return tool.run(args, call_id)
        except Exception as exc:  # a failing tool is an answer
            log.debug("tool %s failed", tool.name, exc_info=True)
            return _failed(tool, exc)

    async def _run(self, call_id: str, tool: Tool, args: Mapping[str, Any]) -> None:
        try:
            async with asyncio.timeout(tool.deadline_s):
                result = await tool.run(args, call_id)  # type: ignore[misc]
        except TimeoutError:
            result = error(
                f"{tool.name} did not finish within {tool.deadline_s:g} s", retryable=True
            )
        except asyncio.CancelledError:
            raise  # cancelled: never answered
        except Exception as exc:  # a failing tool is an answer
            log.debug("tool %s failed", tool.name, exc_info=True)
            result = _failed(tool, exc)
        finally:
            self._running.pop(call_id, None)
        self._finish(call_id, tool, result)

    def _finish(self, call_id: str, tool: Tool, result: Any) -> None:
        """Answer ``call_id`` with ``result``: its media kept aside, fit to be sent."""
        media = result.pop(MEDIA, None) if isinstance(result, dict) else None
        result = self._fit(tool.name, result)
        if media and result.get("status") == "ok":
            self._media[call_id] = list(media)
            while len(self._media) > MEDIA_KEPT:
                self._media.popitem(last=False)
        if tool.acts:
            self._answered[call_id] = (result, tool.scheduling)
            while len(self._answered) > REMEMBERED:
                self._answered.popitem(last=False)
        self._answer(call_id, tool.name, result, tool.scheduling)

    def _fit(self, name: str, result: Any) -> Result:
        """A JSON object with a status, of bounded size, with no secret in it."""
        if not isinstance(result, dict):
            result = error(f"{name} gave no answer object")
        result.setdefault("status", "ok")
        try:
            text = self.redact(json.dumps(result, ensure_ascii=False, default=str))
        except (TypeError, ValueError) as exc:
            return error(f"{name} gave an answer that is no JSON ({exc})")
        if len(text) > RESULT_MAX:
            return error(f"{name} gave an answer too long to pass on ({len(text)} characters)")
        answer: Result = json.loads(text)
        if "error" in answer and isinstance(answer["error"], str):
            answer["error"] = one_line(answer["error"])
        return answer

    def _answer(self, call_id: str, name: str, result: Result, scheduling: str) -> None:
        try:
            self.on_answer(call_id, name, result, scheduling or "when_idle")
        except Exception:
            log.exception("answering tool call %s failed", call_id)
