"""The imperative shell: adapters in, events to the state machine, effects out.

:class:`App` is the one object that knows every room. It builds the adapters from the settings
(through :class:`~talkie.shell.factories.Factories`, so tests can inject their own), owns their
lifetimes (one ``AsyncExitStack``: whatever was opened is closed, in reverse order, on every way
out), runs the daemon's tasks under one ``asyncio.TaskGroup``, turns every adapter callback into a
:mod:`talkie.core.machine` event, feeds it to ``step`` and carries out the effects
(:mod:`talkie.shell.effects`). Callbacks from other threads have already been moved to the loop by
the adapters (``call_soon_threadsafe``); everything here runs in the loop's thread.

Around that core: systemd's notifications (READY once config, panel and audio are up, a STATUS in
words at every change, a watchdog that pings only while the loop and the audio path are alive),
the control socket (:mod:`talkie.shell.control`), and reload (SIGHUP, :mod:`talkie.shell.reload`).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import random
import time
from collections.abc import Callable, Coroutine
from typing import Any

from talkie import version
from talkie.config import Settings
from talkie.config.credentials import KeyProblem, Secret
from talkie.core import machine as m
from talkie.core.outbox import Outbox
from talkie.shell import memory, ports, reload
from talkie.shell.audio import AudioDevices, mic_stream
from talkie.shell.controls import Controls
from talkie.shell.effects import Effects
from talkie.shell.factories import Factories
from talkie.shell.home import Home
from talkie.shell.link import LinkEvents
from talkie.shell.policy import policy_from
from talkie.shell.timers import Timers
from talkie.shell.tools import ToolBox, state_dir
from talkie.system import logs, slots

log = logging.getLogger("talkie")

#: At shutdown, how long closing the output stream may take.
STOP_DRAIN_S = 1.0
#: Events waiting for the machine beyond which what is safe to drop is dropped (and counted):
#: a transcript line. Nothing that changes the state is ever dropped.
EVENT_QUEUE = 4096
#: The events that only make a journal line.
DROPPABLE = (m.Heard, m.Said)
#: Where talkie-firstboot.service leaves what it could not install from the boot partition.
FIRSTBOOT_ERROR = "/run/talkie-firstboot-error"


class App:
    """talkie running: one instance per daemon."""

    def __init__(
        self,
        settings: Settings,
        key: Secret | KeyProblem,
        *,
        factories: Factories | None = None,
        on_show: Callable[[m.Phase, str], None] = lambda phase, status: None,
        control_path: str | None = None,
        call_later: ports.CallLater | None = None,
        jitter: Callable[[], float] = random.random,
        firstboot_error: str = FIRSTBOOT_ERROR,
    ) -> None:
        self.settings = settings
        self.key = key
        self.factories = factories or Factories()
        self.on_show = on_show
        self.control_path = control_path
        self.jitter = jitter
        self.firstboot_error = firstboot_error
        self.state = m.State(policy=policy_from(settings))
        self.ready = asyncio.Event()
        #: Set once the Live SDK is loaded (after ready): from then on a press pays only the
        #: connection.
        self.prepared = asyncio.Event()
        self.dropped_events = 0
        self._stopping = asyncio.Event()
        # each event with when it happened (time.monotonic(): what it wakes may reach back)
        self._events: collections.deque[tuple[m.Event, float]] = collections.deque()
        self._events_waiting = asyncio.Event()
        self._backlog_said = False
        self._timers = Timers(self.emit, call_later)
        self._tg: asyncio.TaskGroup | None = None
        #: New microphone settings wait for the end of a turn the voice opened.
        self._chain_stale = False
        self.outbox = Outbox(
            settings.audio.pending_bytes,
            on_ready=self._wake_link,
            on_overflow=self._outbox_overflow,
        )
        self.notifier: ports.Notifier = self.factories.notifier()
        self.resume: ports.ResumeStore = self.factories.resume(settings)
        self.link: ports.Link | None = None
        self.panel: ports.Panel | None = None
        self.audio: AudioDevices | None = None
        self.vision: ports.Camera | None = None
        self.chain: ports.MicChain | None = None
        self.started_at = time.monotonic()
        self.tools = ToolBox(self, settings)
        self.controls = Controls(self, self.tools.volume, state_dir(settings))
        self.home = Home(self, self.factories.home)
        self.effects = Effects(self, self._timers)

    @property
    def timers(self) -> frozenset[str]:
        """The names of the timers now pending (for status and tests)."""
        return self._timers.names

    @property
    def sessions(self) -> int:
        """Sessions opened so far."""
        return self.effects.sessions

    @property
    def last_error(self) -> str:
        """Why the link was last lost ("" if it never was)."""
        return self.effects.last_error

    @property
    def playback(self) -> ports.Playback | None:
        return self.audio.playback if self.audio else None

    @property
    def capture(self) -> ports.Capture | None:
        return self.audio.capture if self.audio else None

    def status_words(self) -> dict[str, Any]:
        """How the daemon is, in a few fields (``talkie ctl status``, the device_status tool)."""
        return {
            "state": self.state.phase.value,
            "status": self.state.status,
            "link": self.state.link.value,
            "session": self.sessions,
            "last_error": self.last_error,
            "uptime_s": round(time.monotonic() - self.started_at, 1),
            "version": version(),
            **slots.words(),  # the A/B slot and image release (Debian image)
            "microphone_stream": mic_stream(self.capture),
            **self.controls.words(),
            **self.tools.words(),
        }

    # ---- public

    def emit(self, event: m.Event, at: float | None = None) -> None:
        """Queue an event for the state machine (loop thread only); ``at``: when it happened
        (``time.monotonic()``; a button's edge, stamped in the thread that saw it), else now.
        Past ``EVENT_QUEUE`` waiting (the loop far behind), a transcript line is dropped and
        counted; an event that changes the state never is."""
        if len(self._events) >= EVENT_QUEUE:
            if isinstance(event, DROPPABLE):
                self.dropped_events += 1
                if self.dropped_events == 1 or self.dropped_events % 1000 == 0:
                    log.error(
                        "event queue full: %d transcript lines dropped so far", self.dropped_events
                    )
                return
            if not self._backlog_said:
                self._backlog_said = True
                log.warning("event queue: %d events waiting (the loop is far behind)", EVENT_QUEUE)
        self._events.append((event, time.monotonic() if at is None else at))
        self._events_waiting.set()

    def stop(self) -> None:
        """Ask the daemon to shut down (SIGTERM/SIGINT)."""
        self._stopping.set()

    def reload(self) -> None:
        """Read the config again (SIGHUP); a broken one is refused and the running one kept."""
        reload.reload(self)

    def handle(self, event: m.Event, at: float | None = None) -> None:
        """Step the machine with ``event`` (which happened at ``at``) and carry out its effects
        (the state changes here only)."""
        before = self.state
        self.state, effects = m.step(before, event)
        self.effects.stepped(before, event, effects)
        for effect in effects:
            self.effects.perform(effect)
        self.home.stepped(event)
        if self._chain_stale and not self.state.voice:
            self.rebuild_mic_chain()  # the turn the voice opened is over: the new settings now
        self._want_audio(at)

    async def run(self) -> None:
        """Bring the adapters up, serve until :meth:`stop`, bring them down."""
        async with contextlib.AsyncExitStack() as stack:
            await self._open(stack)
            async with asyncio.TaskGroup() as tg:
                self._tg = tg
                stack.callback(setattr, self, "_tg", None)
                await self._serve(tg)

    # ---- what the shell rebuilds itself (a reload)

    def configure(self, settings: Settings, key: Secret | KeyProblem) -> None:
        """New settings and key: the log level and the uplink's budget at once, the Live
        settings and the key from the next session on."""
        self.settings = settings
        self.key = key
        logs.set_level(settings.log.level)
        self.tools.reconfigure(settings)
        self.outbox.max_audio_bytes = settings.audio.pending_bytes
        if self.link is not None:
            self.link.configure(settings.live, key)

    async def reopen_panel(self) -> None:
        """Close the panel and open it again from the settings (pins or kinds changed). Closing
        waits for the LED's thread (up to seconds): it happens in a worker thread, and the new
        panel opens once the old one has let its pins go."""
        old, self.panel = self.panel, None
        if old is not None:
            await asyncio.to_thread(old.close)
        self.panel = self._open_panel()
        self.panel.show(self.effects.pattern(self.state.phase))

    def rebuild_mic_chain(self) -> None:
        """A new microphone chain from ``[audio]`` (echo control, barge-in, the voice detector).

        Not in the middle of a turn the voice opened: only the chain that heard it begin can hear
        it end, so the new one takes over once that turn is over."""
        if self.state.voice:
            self._chain_stale = True
            return
        self._chain_stale = False
        assert self.playback is not None
        self.chain = self.factories.mic_chain(
            self.settings, self.playback, on_chunk=self.outbox.push_audio, on_speech=self._speech
        )

    # ---- the lifecycle

    async def _open(self, stack: contextlib.AsyncExitStack) -> None:
        """Open every adapter, each one's closing pushed on ``stack`` as soon as it is open."""
        loop = asyncio.get_running_loop()
        f = self.factories
        self.panel = self._open_panel()
        stack.callback(lambda: self.panel.close() if self.panel is not None else None)
        self.panel.show("starting")
        self.controls.open_buttons(stack, f.buttons)
        link_events = LinkEvents(self.emit, self.jitter)
        self.link = f.link(self.settings, self.key, self.outbox, link_events, self.resume)
        self.link.declarations = self.tools.declarations
        playback = f.playback(
            self.settings, loop=loop, on_drained=lambda: self.emit(m.PlaybackDrained())
        )
        self.tools.volume.attach(playback)
        self.chain = f.mic_chain(
            self.settings, playback, on_chunk=self.outbox.push_audio, on_speech=self._speech
        )
        capture = f.capture(self.settings, loop=loop, on_audio=self._mic, on_gap=self._mic_gap)
        self.audio = AudioDevices(capture, playback, self.emit)
        stack.push_async_callback(self.audio.stop, STOP_DRAIN_S)
        self.vision = f.vision(self.settings, self.link.send_video, self.effects.camera_fault)
        stack.push_async_callback(self.vision.close)
        self.audio.open()
        await self.tools.open(stack)
        self.effects.read_notice(self.firstboot_error)
        self.effects.show(m.Show(self.state.phase, self.state.status))
        if isinstance(self.key, KeyProblem):
            log.warning("%s", self.key.message)
        control = await self._start_control()
        if control is not None:
            stack.push_async_callback(control.close)
        # the newest resumption handle on disk before the process goes (a restart resumes)
        stack.push_async_callback(asyncio.to_thread, self.resume.flush, STOP_DRAIN_S)
        stack.callback(self._timers.cancel_all)

    async def _serve(self, tg: asyncio.TaskGroup) -> None:
        assert self.audio is not None
        tasks = [
            tg.create_task(self._dispatch_loop(), name="dispatch"),
            tg.create_task(self.audio.watch(), name="audio-watch"),
        ]
        heartbeat = self._heartbeat()
        if heartbeat is not None:
            tasks.append(tg.create_task(heartbeat.run(), name="watchdog"))
        self.notifier.ready(self.state.status)
        self.ready.set()
        self.emit(m.Started())
        self.controls.restore()
        self.tools.start()
        self.home.start()
        tasks.append(tg.create_task(self._prepare_link(), name="prepare-link"))
        await self._stopping.wait()
        self.notifier.stopping()
        for task in tasks:
            task.cancel()
        await self.home.stop()  # "offline" to Home Assistant, before the session goes
        await self.effects.close_session(STOP_DRAIN_S)

    async def _dispatch_loop(self) -> None:
        while True:
            if not self._events:
                self._backlog_said = False
                self._events_waiting.clear()
                await self._events_waiting.wait()
                continue
            self.handle(*self._events.popleft())

    def start_task(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any] | None:
        """Run ``coro`` in the daemon's TaskGroup (None once it is shutting down)."""
        if self._tg is None:
            coro.close()
            return None
        return self._tg.create_task(coro, name=name)

    # ---- adapters' callbacks

    def _mic(self, pcm: bytes) -> None:
        if self.chain is not None and self.audio is not None and not self.state.mic_off:
            self.chain.push(pcm, self.audio.capture.block_time)
            self.effects.samples_heard(len(pcm) // 2)
            if not self.effects.hearing:
                self._want_audio()  # the tail of a turn may just have arrived

    def _mic_gap(self, samples: int) -> None:
        if self.chain is not None:
            self.chain.gap(samples)

    def _want_audio(self, since: float | None = None) -> None:
        """The microphone's blocks reach the loop only while something will use them: a turn
        being captured (or its tail), the answer playing (barge-in, echo control). Idle, the
        capture only keeps its ring. ``since``: when the event that may wake it happened."""
        if self.audio is None:
            return
        s = self.state
        playback = self.playback
        wanted = not s.mic_off and (
            self.outbox.capturing
            or self.effects.hearing
            or s.held
            or s.voice
            or s.phase in (m.Phase.LISTENING, m.Phase.SPEAKING)
            or (playback is not None and bool(playback.busy))
        )
        if wanted != self.audio.capture.wanted:
            self.audio.capture.want(wanted, since)

    def _speech(self, started: bool) -> None:
        self.emit(m.SpeechStarted() if started else m.SpeechEnded())

    def _wake_link(self) -> None:
        if self.link is not None:
            self.link.wake()

    def _outbox_overflow(self, dropped: int) -> None:
        log.warning(
            "uplink buffer full (%g s): microphone audio dropped (%d bytes so far)",
            self.settings.audio.pending_s,
            dropped,
        )

    # ---- helpers

    def _open_panel(self) -> ports.Panel:
        return self.factories.panel(
            self.settings,
            loop=asyncio.get_running_loop(),
            on_press=lambda at: self.emit(m.ButtonDown(), at),
            on_release=lambda at: self.emit(m.ButtonUp(), at),
            on_key=self.controls.key,
        )

    async def _prepare_link(self) -> None:
        if self.link is not None:
            try:
                await asyncio.to_thread(self.link.prepare)
            except Exception:
                log.debug("preparing the Live SDK failed", exc_info=True)
        memory.settle()
        self.prepared.set()

    def _heartbeat(self) -> Any:
        interval = self.notifier.watchdog_interval()
        if interval is None or self.audio is None:
            return None
        from talkie.system.notify import Heartbeat

        return Heartbeat(self.notifier, self.audio.alive, interval)

    async def _start_control(self) -> ports.ControlServer | None:
        if self.factories.control is None:
            return None
        from talkie.shell.control import Commands

        server = self.factories.control(self.control_path, Commands(self))
        try:
            await server.start()
        except Exception as exc:  # noqa: BLE001 - no socket is no reason not to talk
            log.warning(
                "control socket unavailable (%s): `talkie ctl` will not reach this daemon", exc
            )
            return None
        return server
