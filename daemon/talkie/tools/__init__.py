"""The assistant's tools: what the model may call, and the calls it makes.

A :class:`Tool` is a declaration (name, description, the JSON schema of its arguments), an async
``run`` and the rules of its calls: a deadline, whether it acts on the world (then a call id is run
once, and a duplicate gets the first result), and how the model is told of the result (its
behaviour, ``blocking`` or ``non_blocking``, and its scheduling, ``interrupt``, ``when_idle`` or
``silent``). A :class:`Registry` holds the enabled tools; :class:`~talkie.tools.calls.Calls` runs
the calls the machine asks for and reports every one's answer: a result, or an error object (an
unknown tool, bad arguments, a timeout, a failure), never silence.

This is an adapter: it knows nothing of the machine. The built-in tools
(:mod:`talkie.tools.builtin`) act on the device through a small host the shell provides.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

#: A tool's answer: a JSON object, always with "status" ("ok" or "error"): a model that gets an
#: empty result tends to call again. Under :data:`MEDIA` it may carry images for the model
#: (``[(mime type, bytes)]``), which go with the answer but are not part of its JSON.
Result = dict[str, Any]
MEDIA = "_media"
#: One image (or other medium) for the model: (mime type, bytes).
Media = tuple[str, bytes]
#: ``run(arguments, call_id)``: a tool that acts may key what it does by the call's id.
Run = Callable[[Mapping[str, Any], str], Awaitable[Result]]
#: A tool whose answer is there at once (it reads or sets what is in memory): a plain function,
#: run in the step that asked for it, with no task and no deadline. It must never wait.
QuickRun = Callable[[Mapping[str, Any], str], Result]

BEHAVIORS = ("non_blocking", "blocking")
SCHEDULINGS = ("interrupt", "when_idle", "silent")
#: The most a tool's result may hold, as JSON (the model needs words, not dumps).
RESULT_MAX = 8192


def error(message: str, *, retryable: bool = False, **more: Any) -> Result:
    """An error object: what went wrong in words, and whether calling again may help."""
    return {"status": "error", "error": message, "retryable": retryable, **more}


def ok(**fields: Any) -> Result:
    return {"status": "ok", **fields}


def with_media(result: Result, *media: Media) -> Result:
    """``result`` with images for the model."""
    return {**result, MEDIA: [*result.get(MEDIA, ()), *media]}


@dataclass(frozen=True)
class Tool:
    """One tool the model may call."""

    name: str
    description: str
    run: Run | QuickRun
    #: JSON schema of the arguments: an object.
    parameters: Mapping[str, Any] = field(
        default_factory=lambda: {"type": "object", "properties": {}}
    )
    deadline_s: float = 5.0
    #: It changes something in the world (a timer set, the volume): a call id runs once.
    acts: bool = False
    behavior: str = "non_blocking"
    #: How the model is told of the result (non-blocking calls): "interrupt" it speaks of it now,
    #: "when_idle" once it is done speaking, "silent" only into its context.
    scheduling: str = "when_idle"
    #: ``run`` is a :data:`QuickRun`: answered at once, in the same step.
    quick: bool = False

    def declaration(self) -> dict[str, Any]:
        """The function declaration for the Live setup."""
        return {
            "name": self.name,
            "description": self.description,
            "parameters_json_schema": dict(self.parameters),
            "behavior": self.behavior.upper(),
        }


class Registry:
    """The enabled tools, by name (a later tool of the same name replaces an earlier one)."""

    def __init__(self, tools: Iterable[Tool] = ()) -> None:
        self._tools: dict[str, Tool] = {}
        for tool in tools:
            self._tools[tool.name] = tool

    def get(self, name: str) -> Tool | None:
        return self._tools.get(name)

    @property
    def names(self) -> list[str]:
        return list(self._tools)

    def declarations(self) -> list[dict[str, Any]]:
        return [tool.declaration() for tool in self._tools.values()]

    def __len__(self) -> int:
        return len(self._tools)
