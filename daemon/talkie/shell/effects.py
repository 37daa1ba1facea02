"""The machine's effects, carried out: the Live session's task, the outbox, playback, the camera,
the timers, and what the user sees (the LED, the service status, the journal).

Part of the imperative shell: :class:`Effects` belongs to one :class:`~talkie.shell.app.App` (its
:class:`Host`) and reaches the adapters through it (they are rebuilt on a reload); it never changes
the state.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

from talkie.config import Settings
from talkie.config.settings import INPUT_RATE
from talkie.core import machine as m
from talkie.core.outbox import Outbox
from talkie.shell import memory, ports
from talkie.shell.controls import Controls
from talkie.shell.link import LinkEvents
from talkie.shell.timers import Timers
from talkie.shell.tools import ToolBox


class Host(Protocol):
    """What the effects reach through their app (:class:`~talkie.shell.app.App`): its adapters,
    as they are now (a reload rebuilds some), and its state, read only."""

    settings: Settings
    state: m.State
    outbox: Outbox
    notifier: ports.Notifier
    resume: ports.ResumeStore
    link: ports.Link | None
    panel: ports.Panel | None
    vision: ports.Camera | None
    chain: ports.MicChain | None
    tools: ToolBox
    controls: Controls
    on_show: Callable[[m.Phase, str], None]
    jitter: Callable[[], float]

    @property
    def playback(self) -> ports.Playback | None: ...
    @property
    def capture(self) -> ports.Capture | None: ...
    def emit(self, event: m.Event) -> None: ...
    def start_task(
        self, coro: Coroutine[Any, Any, None], name: str
    ) -> asyncio.Task[None] | None: ...


log = logging.getLogger("talkie")

#: How much longer than its audio in flight a released turn waits, should the stream stall.
TAIL_GRACE_S = 0.05


class Effects:
    """Carries out one app's effects (``perform``), and keeps the bookkeeping around a step."""

    def __init__(self, app: Host, timers: Timers) -> None:
        self.app = app
        #: What first boot could not install, shown (error LED while idle) until the next press.
        self.notice = ""
        self.sessions = 0
        self.last_error = ""
        self._last_error_of: type[m.Event] | None = None
        self._logged: dict[str, str] = {}
        self._event_name = ""
        self._released_at: float | None = None
        self._link_task: asyncio.Task[None] | None = None
        self._closing: asyncio.Task[None] | None = None
        self._link_events: LinkEvents | None = None
        #: A released turn waiting for its last audio: (samples still to come, the time limit).
        self._tail: tuple[int, asyncio.TimerHandle] | None = None
        self._trimmer = memory.Trimmer()
        self._perform: dict[type[m.Effect], Callable[[Any], None]] = {
            m.Connect: self._connect,
            m.Disconnect: self._disconnect,
            m.StartTurn: self._start_turn,
            m.EndTurn: self._end_turn,
            m.ReplayTurn: lambda e: app.outbox.replay(),
            m.DropTurn: self._drop_turn,
            m.SendText: lambda e: app.outbox.add_text(e.text),
            m.ForgetSession: lambda e: app.resume.clear(),
            m.Camera: lambda e: app.vision.want(e.on) if app.vision else None,
            m.Play: self._play,
            m.FlushPlayback: lambda e: app.playback.flush() if app.playback else None,
            m.FinishPlayback: lambda e: app.playback.finish() if app.playback else None,
            m.StartTimer: lambda e: timers.start(e.name, e.delay_s, e.gen),
            m.CancelTimer: lambda e: timers.cancel(e.name),
            m.Show: self.show,
            m.Log: self.log,
            m.RunTool: lambda e: app.tools.run(e),
            m.CancelTools: lambda e: app.tools.cancel(e),
            m.SendToolResponse: lambda e: app.tools.respond(e),
            m.Ring: lambda e: app.tools.ring(e),
            m.PrivacyChanged: lambda e: app.controls.privacy_changed(e),
        }

    def perform(self, effect: m.Effect) -> None:
        self._perform[type(effect)](effect)

    def stepped(self, before: m.State, event: m.Event, effects: list[m.Effect]) -> None:
        """Before the effects of a step are carried out: what the shell notes of it."""
        self._event_name = type(event).__name__
        if self.notice and isinstance(event, m.ButtonDown):
            self.notice = ""  # seen: from now on the LED shows the state again
            if not any(isinstance(e, m.Show) for e in effects):
                self.show(m.Show(self.app.state.phase, self.app.state.status))
        if isinstance(event, m.ButtonUp) and before.phase is m.Phase.LISTENING:
            self._released_at = asyncio.get_running_loop().time()
        if isinstance(event, m.SessionOpened):
            self.sessions += 1
        # the last fault, until what it was about works again
        if isinstance(event, m.LinkLost | m.AudioFailed):
            self.last_error, self._last_error_of = event.reason, type(event)
        elif (isinstance(event, m.SessionOpened) and self._last_error_of is m.LinkLost) or (
            isinstance(event, m.AudioRestored) and self._last_error_of is m.AudioFailed
        ):
            self.last_error, self._last_error_of = "", None

    def fields(self, **more: Any) -> dict[str, Any]:
        """Structured fields for the journal."""
        return {
            "talkie_state": self.app.state.phase.value,
            "talkie_event": self._event_name,
            "talkie_session": self.sessions,
            **more,
        }

    # ---- the Live session

    def _connect(self, effect: m.Effect) -> None:
        if self._link_task is not None and not self._link_task.done():
            log.debug("connect asked while a session is running")
            return
        closing, self._closing = self._closing, None
        events = LinkEvents(self.app.emit, self.app.jitter)
        task = self.app.start_task(self._session(closing, events), name="live-session")
        if task is not None:
            self._link_events, self._link_task = events, task

    async def _session(self, closing: asyncio.Task[None] | None, events: LinkEvents) -> None:
        if closing is not None:
            await asyncio.wait([closing])  # the old socket is closed before the new one resumes
            del closing  # keep no reference: it holds the old connection and its buffers
        link = self.app.link
        assert link is not None
        link.listener = events  # each session reports through its own listener
        await self.app.tools.ready()  # MCP servers still starting get a moment to list tools
        await link.run()

    def _disconnect(self, effect: m.Effect) -> None:
        if self._link_events is not None:
            self._link_events.stale = True
        if self.app.link is not None:
            self.app.link.stop()
        if self._link_task is not None:
            self._link_task.cancel()
            self._closing, self._link_task = self._link_task, None

    async def close_session(self, within_s: float) -> None:
        """At shutdown: close the session as the server expects (a close frame with 1000, as a
        handover does), waiting at most ``within_s``; then cancel what is left of it."""
        task = self._link_task
        if task is None or task.done():
            return
        if self._link_events is not None:
            self._link_events.stale = True  # what it still reports is for nobody
        if self.app.link is not None:
            self.app.link.stop()
        await asyncio.wait([task], timeout=within_s)
        task.cancel()

    # ---- the turn and the answer

    def _start_turn(self, effect: m.StartTurn) -> None:
        if self._tail is not None:
            self._finish_turn()  # the turn before this one ends first, in order
        outbox, chain = self.app.outbox, self.app.chain
        outbox.start_turn()
        if effect.preroll and chain is not None:  # the audio from just before the voice goes first
            for chunk in chain.preroll():
                outbox.push_audio(chunk)

    def _end_turn(self, effect: m.EndTurn) -> None:
        """The user let go: the turn ends once the audio recorded before that moment is in (it
        is still in the sound card's and PortAudio's buffers: ``in_flight_s`` of it, counted in
        samples as it arrives), or a little later if the stream stops delivering."""
        capture = self.app.capture
        in_flight = capture.in_flight_s if capture is not None else 0.0
        self._cancel_tail()
        if in_flight <= 0:
            self._finish_turn()
            return
        late = asyncio.get_running_loop().call_later(in_flight + TAIL_GRACE_S, self._finish_turn)
        self._tail = (round(in_flight * INPUT_RATE), late)

    @property
    def hearing(self) -> bool:
        """Whether the audio still in flight at a release is being waited for."""
        return self._tail is not None

    def samples_heard(self, n: int) -> None:
        """``n`` microphone samples reached the chain (and, in a turn, the outbox)."""
        if self._tail is not None:
            left, late = self._tail
            self._tail = (left - n, late)
            if left - n <= 0:
                self._finish_turn()

    def _finish_turn(self) -> None:
        self._cancel_tail()
        if self.app.chain is not None:
            self.app.chain.flush()  # the last few ms gathered for a chunk belong to this turn
        self.app.outbox.end_turn()

    def _drop_turn(self, effect: m.DropTurn) -> None:
        self._cancel_tail()
        self.app.outbox.drop()

    def _cancel_tail(self) -> None:
        if self._tail is not None:
            self._tail[1].cancel()
            self._tail = None

    def _play(self, effect: m.Play) -> None:
        if self._released_at is not None:
            waited = (asyncio.get_running_loop().time() - self._released_at) * 1000
            self._released_at = None
            log.info(
                "answer started %.0f ms after the release",
                waited,
                extra=self.fields(talkie_latency_ms=round(waited)),
            )
        if self.app.playback is not None:
            self.app.playback.play(effect.pcm)

    # ---- what the user sees

    def show(self, effect: m.Show) -> None:
        app, status = self.app, effect.status
        if app.panel is not None:
            if self.notice and effect.phase is m.Phase.IDLE:
                status = f"ready; first boot: {self.notice}"
                app.panel.show("error")
            else:
                app.panel.show(self.pattern(effect.phase))
        # a fault is one journal line (the machine's own, which says what to do), not two
        level = logging.DEBUG if effect.phase is m.Phase.ERROR else logging.INFO
        log.log(level, "state: %s", status, extra=self.fields())
        app.notifier.status(status)
        app.on_show(effect.phase, status)
        if effect.phase is m.Phase.IDLE:
            self._trimmer.soon()

    def pattern(self, phase: m.Phase) -> str:
        """The LED pattern for ``phase``: its own, or ``muted`` while ready with the microphone
        off."""
        return "muted" if phase is m.Phase.IDLE and self.app.state.mic_off else phase.value

    def read_notice(self, path: str) -> None:
        """First boot left a problem (a rejected talkie.toml or key): say it once in the journal,
        and on the LED (the error pattern while idle) and in the status until the next press."""
        try:
            with open(path, encoding="utf-8", errors="replace") as fh:
                lines = [line.strip() for line in fh if line.strip()]
        except OSError:
            return
        if lines:
            self.notice = "; ".join(lines)
            log.error(
                "first boot could not install everything from the boot partition: %s "
                "(talkie runs with the settings it had; fix the file there and reboot)",
                self.notice,
                extra=self.fields(),
            )

    def log(self, effect: m.Log) -> None:
        if effect.transcript and not self.app.settings.log.transcripts:
            return
        if effect.key is not None:
            if self._logged.get(effect.key) == effect.message:
                return
            self._logged[effect.key] = effect.message
        extra = self.fields()
        if effect.transcript:
            extra["talkie_transcript"] = effect.message.split(":", 1)[0]
        log.log(logging.getLevelName(effect.level.upper()), "%s", effect.message, extra=extra)

    def camera_fault(self, text: str) -> None:
        """A camera fault, once per distinct text (the vision adapter retries on its own)."""
        self.log(m.Log("warning", text, key="vision"))
