"""The shell's side of the assistant's tools: which the model may call (the built-in ones that
``[tools]`` enables, each MCP server's), running the calls the machine asks for, and answering
them on the session they came from; the device's part in them (the volume, timers and alarms,
the ring, one look through the camera).

:class:`ToolBox` belongs to one :class:`~talkie.shell.app.App` (its :class:`Host`). The machine
decides what is run, answered or cancelled (``RunTool``, ``SendToolResponse``, ``CancelTools``);
the runner (:class:`talkie.tools.calls.Calls`) runs each call with its deadline and reports its
answer as a ``ToolAnswered`` event. A due timer is an ``AlarmDue`` event; the machine's ``Ring``
effect starts and stops the chime (:class:`~talkie.shell.ringer.Ringer`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import json
import logging
import os
from collections.abc import Coroutine, Mapping
from typing import Any, Protocol

from talkie.config import Settings
from talkie.config.credentials import KeyProblem, Secret
from talkie.core import machine as m
from talkie.shell import ports
from talkie.shell.ringer import Ringer
from talkie.shell.volume import Volume
from talkie.storage import StateFile
from talkie.tools import Registry, Result, Tool, builtin
from talkie.tools.calls import Calls

log = logging.getLogger("talkie")

#: How long the first Live connection waits for MCP servers still listing their tools.
MCP_READY_S = 3.0


class Host(Protocol):
    """What the tools reach through their app (:class:`~talkie.shell.app.App`)."""

    settings: Settings
    state: m.State
    key: Secret | KeyProblem
    link: ports.Link | None
    vision: ports.Camera | None

    @property
    def playback(self) -> ports.Playback | None: ...
    def emit(self, event: m.Event) -> None: ...
    def start_task(self, coro: Coroutine[Any, Any, None], name: str) -> Any: ...
    def status_words(self) -> Mapping[str, Any]: ...


def state_dir(settings: Settings) -> str:
    """The folder the daemon keeps its state in (timers, volume, the switches)."""
    from talkie.live.resume import default_state_dir

    return settings.session.state_dir or default_state_dir()


class ToolBox:
    """The tools of one app, and the device's part in them."""

    def __init__(self, app: Host, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        folder = state_dir(settings)
        self.volume = Volume(
            settings.audio.volume, StateFile(f"{folder}/volume.json", what="the volume")
        )
        self.ringer = Ringer(lambda: app.playback, settings.tools.alarm_volume)
        self.calls = Calls(Registry(), self._answered, redact=self._redact)
        self.alarms: Any = None
        self.mcp: Any = None
        self._unknown_options: set[str] = set()
        self._mcp_task: asyncio.Task[Any] | None = None
        #: Answers waiting to be sent, and the task sending them.
        self._outgoing: list[Any] = []
        self._sender: asyncio.Task[Any] | None = None
        self.registry = Registry()

    # ---- lifecycle

    async def open(self, stack: contextlib.AsyncExitStack) -> None:
        """Start what the settings ask for (timers kept on disk, MCP servers); each one's close
        on ``stack``."""
        tools = self.settings.tools
        if tools.timers:
            from talkie.tools.alarm_store import AlarmStore
            from talkie.tools.alarms import Alarms

            store = AlarmStore(f"{state_dir(self.settings)}/alarms.json")
            self.alarms = Alarms(store, on_due=self._due, max_alarms=tools.max_timers)
            stack.callback(store.close)
            stack.callback(self.alarms.close)
            self.alarms.start()
        stack.push_async_callback(self._close_mcp)
        stack.callback(self.calls.cancel_all)
        stack.callback(lambda: self.ringer.ring(False))
        stack.callback(lambda: self.volume.file.close())
        self.rebuild()

    def start(self) -> None:
        """Once the daemon is READY: the MCP servers start (in the daemon's task group)."""
        if self.settings.tools.mcp and self.mcp is None and self._mcp_task is None:
            self._mcp_task = self.app.start_task(
                self._start_mcp(self.settings.tools.mcp), name="mcp-start"
            )

    async def _start_mcp(self, servers: Any) -> None:
        """MCP servers start after READY (importing the client takes a while): their tools are
        declared from the first session that finds them listed."""
        from talkie.tools.mcp import McpServers

        self.mcp = McpServers(
            servers,
            credentials_dir=os.environ.get("CREDENTIALS_DIRECTORY"),
            redact=self._redact,
            on_change=self.rebuild,
        )
        await self.mcp.start()
        gc.freeze()  # the MCP client's modules, as the app does for the SDK's (memory.settle)

    async def _close_mcp(self) -> None:
        servers, self.mcp = self.mcp, None
        if servers is not None:
            await servers.aclose()

    async def _restart_mcp(self, servers: Any) -> None:
        """A reload changed [[tools.mcp]]: the old servers stop, the new ones start."""
        await self._close_mcp()
        self.rebuild()
        if servers:
            await self._start_mcp(servers)

    def reconfigure(self, settings: Settings) -> None:
        """A reload: new [tools] settings from now on. Changed MCP servers start again; the same
        ones list their tools again. Timers stay as they were started (on or off) until the
        next restart."""
        before = self.settings.tools.mcp
        self.settings = settings
        self.ringer.volume = settings.tools.alarm_volume
        self.volume.reconfigure(settings.audio.volume)
        if settings.tools.mcp != before:
            self._mcp_task = self.app.start_task(
                self._restart_mcp(settings.tools.mcp), name="mcp-restart"
            )
        elif self.mcp is not None:
            self.mcp.relist()
        if settings.tools.timers and self.alarms is None:
            log.warning("[tools] timers = true takes effect at the next restart")
        self.rebuild()

    def rebuild(self) -> None:
        """The tools the model may call from the next session on."""
        found = builtin.tools(self._enabled(), self)
        if self.alarms is not None and self.settings.tools.timers:
            from talkie.tools.timer_tool import timer_tool

            found.append(timer_tool(self.alarms))
        served = self.mcp.tools() if self.mcp is not None else []
        self.registry = Registry(
            [
                *(self._with_options(t) for t in found),
                *(self._with_options(t, mcp=True) for t in served),
            ]
        )
        self.calls.registry = self.registry
        for name in set(self.settings.tools.options) - set(self.registry.names):
            if name not in self._unknown_options and not any(
                name.startswith(s.prefix) for s in self.settings.tools.mcp
            ):  # (an MCP server's tool may not be listed yet)
                self._unknown_options.add(name)
                log.warning("[tools.options.%s]: no tool of that name is enabled", name)

    def declarations(self) -> list[dict[str, Any]]:
        """The function declarations for a new session."""
        return self.registry.declarations()

    async def ready(self) -> None:
        """Before a session opens: MCP servers still listing their tools get a moment."""
        loop = asyncio.get_running_loop()
        until = loop.time() + MCP_READY_S
        if self._mcp_task is not None and not self._mcp_task.done():
            await asyncio.wait({self._mcp_task}, timeout=MCP_READY_S)
        if self.mcp is not None:
            await self.mcp.ready(max(0.0, until - loop.time()))

    def words(self) -> dict[str, Any]:
        """For ``talkie ctl status``: the timers set, each MCP server's state."""
        out: dict[str, Any] = {}
        if self.alarms is not None:
            out["timers"] = len(self.alarms.list())
        if self.mcp is not None:
            out["mcp"] = self.mcp.status()
        return out

    # ---- the machine's effects

    def run(self, effect: m.RunTool) -> None:
        try:
            args: Any = json.loads(effect.args)
        except ValueError:
            args = None  # the runner answers: the arguments are not an object
        self.calls.start(effect.call_id, effect.name, args)

    def cancel(self, effect: m.CancelTools) -> None:
        self.calls.cancel(effect.call_ids)
        for call_id in effect.call_ids:
            self.calls.take_media(call_id)

    def respond(self, effect: m.SendToolResponse) -> None:
        """Send an answer. The answers given in one turn of the loop (a toolCall of several
        calls, answered at once) go out together in one toolResponse."""
        if self.app.link is None:
            return
        media = self.calls.take_media(effect.call_id)
        response = json.loads(effect.response)
        self._outgoing.append((effect.call_id, effect.name, response, effect.scheduling, media))
        if self._sender is None or self._sender.done():
            self._sender = self.app.start_task(self._send_all(), name="tool-answers")

    async def _send_all(self) -> None:
        while self._outgoing:
            answers, self._outgoing = self._outgoing, []
            link = self.app.link
            if link is None:
                return
            try:
                await link.send_tool_responses(answers)
            except Exception as exc:  # noqa: BLE001 - a dead socket: the link reports it itself
                ids = ", ".join(a[0] for a in answers)
                log.debug("answering tool calls %s failed: %s", ids, exc)

    def ring(self, effect: m.Ring) -> None:
        self.ringer.ring(effect.on)

    # ---- the built-in tools' host (talkie.tools.builtin.Host)

    def volume_words(self) -> Mapping[str, Any]:
        return self.volume.words()

    def set_volume(self, level: float | None = None, *, muted: bool | None = None) -> None:
        self.volume.set(level, muted=muted)

    def step_volume(self, up: bool) -> None:
        self.volume.step(up)

    def status(self) -> Mapping[str, Any]:
        return self.app.status_words()

    def reset_conversation(self) -> None:
        self.app.emit(m.Reset(when_idle=True))

    async def snapshot(self) -> bytes:
        camera = self.app.vision
        if camera is None:
            raise RuntimeError("this device has no camera")
        return await camera.snapshot()

    # ---- helpers

    def _enabled(self) -> dict[str, bool]:
        t = self.settings.tools
        return {
            "time": t.time,
            "device": t.device,
            "volume": t.volume,
            "reset": t.reset,
            "look": t.look_enabled(self.settings.vision.mode),
        }

    def _with_options(self, tool: Tool, *, mcp: bool = False) -> Tool:
        """``tool`` as configured: ``[tools] behavior`` for a built-in one (an MCP server's has
        its own), then its ``[tools.options.NAME]``."""
        t = self.settings.tools
        behavior = tool.behavior if mcp else t.behavior
        options = t.options.get(tool.name)
        if options is None:
            return dataclasses.replace(tool, behavior=behavior)
        return dataclasses.replace(
            tool,
            behavior=options.behavior or behavior,
            scheduling=options.scheduling or tool.scheduling,
            deadline_s=options.deadline_s or tool.deadline_s,
        )

    def _due(self, alarm: Any) -> None:
        self.app.emit(m.AlarmDue(alarm.words))

    def _answered(self, call_id: str, name: str, result: Result, scheduling: str) -> None:
        self.app.emit(
            m.ToolAnswered(call_id, name, json.dumps(result, ensure_ascii=False), scheduling)
        )

    def _redact(self, text: str) -> str:
        key = self.app.key
        return key.redact(text) if isinstance(key, Secret) else text
