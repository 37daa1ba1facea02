"""The imperative shell: adapters in, events to the state machine, effects out.

:class:`App` is the only module that knows every room. It builds the adapters from the settings
(through :class:`Factories`, so tests can inject their own), runs them under one
``asyncio.TaskGroup``, turns every adapter callback into a :mod:`talkie.core.machine` event, feeds it to
``step`` and carries out the effects. Adapter callbacks from other threads have already been moved to
the loop by the adapters (``call_soon_threadsafe``); everything here runs in the loop's thread.

Around that core: systemd's notifications (READY once config, panel and audio are up, a STATUS in
words at every change, a watchdog that pings only while the loop and the audio path are alive), the
control socket (:mod:`talkie.shell.control`), and reload (SIGHUP).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
import random
from typing import Any

from talkie.core import machine as m
from talkie.shell.audio import AudioDevices
from talkie.shell.link import LinkEvents
from talkie.shell.factories import Factories, pending_bytes
from talkie.config.credentials import KeyProblem, Secret
from talkie.core.outbox import Outbox

log = logging.getLogger("talkie")

#: At shutdown, how long closing the output stream may take.
STOP_DRAIN_S = 1.0
EVENT_QUEUE = 4096
#: Where talkie-firstboot.service leaves what it could not install from the boot partition.
FIRSTBOOT_ERROR = "/run/talkie-firstboot-error"


def policy_from(settings: Any) -> m.Policy:
    """The supervisor's rules from the ``[session]`` settings."""
    session = settings.session
    return m.Policy(
        idle_disconnect_s=session.idle_disconnect_s,
        connect_at_start=session.connect_at_start,
        reset_hold_s=session.reset_hold_s,
        error_retry_s=session.error_retry_s,
        vision_mode=settings.vision.mode,
        barge_in=settings.audio.barge_in,
    )


class App:
    """talkie running: one instance per daemon."""

    def __init__(
        self,
        settings: Any,
        key: Secret | KeyProblem,
        *,
        factories: Factories | None = None,
        on_show: Callable[[m.Phase, str], None] = lambda phase, status: None,
        control_path: str | None = None,
        call_later: Callable[[float, Callable[[], None]], Any] | None = None,
        jitter: Callable[[], float] = random.random,
        firstboot_error: str = FIRSTBOOT_ERROR,
    ) -> None:
        self.settings = settings
        self.key = key
        self.factories = factories or Factories()
        self.on_show = on_show
        self.control_path = control_path
        #: How timers are kept: the loop's call_later, or a test's virtual clock.
        self.call_later = call_later
        self.jitter = jitter
        self.firstboot_error = firstboot_error
        #: What first boot could not install, shown (error LED while idle) until the next press.
        self.notice = ""
        self.state = m.State(policy=policy_from(settings))
        self.ready = asyncio.Event()
        #: Set once the Live SDK is loaded (after ready): a press from then on pays only the connect.
        self.prepared = asyncio.Event()
        self.dropped_events = 0
        self.sessions = 0
        self.last_error = ""
        self._stopping = asyncio.Event()
        self._events: asyncio.Queue[m.Event] = asyncio.Queue(EVENT_QUEUE)
        self._logged: dict[str, str] = {}
        self._timers: dict[str, Any] = {}
        self._link_task: asyncio.Task[None] | None = None
        self._closing: asyncio.Task[None] | None = None
        self._link_events: LinkEvents | None = None
        self._tg: asyncio.TaskGroup | None = None
        self._event_name = ""
        self._released_at: float | None = None
        self.outbox = Outbox(
            pending_bytes(settings), on_ready=self._wake_link, on_overflow=self._outbox_overflow
        )
        self.notifier: Any = self.factories.notifier()
        self.resume: Any = self.factories.resume(settings)
        self.link: Any = None
        self.panel: Any = None
        self.audio: AudioDevices | None = None
        self.vision: Any = None
        self.chain: Any = None
        self._perform: dict[type[m.Effect], Callable[[Any], None]] = {
            m.Connect: self._connect,
            m.Disconnect: self._disconnect,
            m.StartTurn: self._start_turn,
            m.EndTurn: self._end_turn,
            m.ReplayTurn: lambda e: self.outbox.replay(),
            m.DropTurn: lambda e: self.outbox.drop(),
            m.SendText: lambda e: self.outbox.add_text(e.text),
            m.ForgetSession: lambda e: self.resume.clear(),
            m.Camera: lambda e: self.vision.want(e.on),
            m.Play: self._play,
            m.FlushPlayback: lambda e: self.playback.flush(),
            m.FinishPlayback: lambda e: self.playback.finish(),
            m.StartTimer: self._start_timer,
            m.CancelTimer: self._cancel_timer,
            m.Show: self._show,
            m.Log: self._log,
        }

    @property
    def timers(self) -> frozenset[str]:
        """The names of the timers now pending (for status and tests)."""
        return frozenset(self._timers)

    @property
    def playback(self) -> Any:
        return self.audio.playback if self.audio else None

    @property
    def capture(self) -> Any:
        return self.audio.capture if self.audio else None

    # ---- public

    def emit(self, event: m.Event) -> None:
        """Queue an event for the state machine (loop thread only)."""
        try:
            self._events.put_nowait(event)
        except asyncio.QueueFull:
            self.dropped_events += 1
            if self.dropped_events == 1 or self.dropped_events % 1000 == 0:
                log.error("event queue full: %d events dropped so far", self.dropped_events)

    def stop(self) -> None:
        """Ask the daemon to shut down (SIGTERM/SIGINT)."""
        self._stopping.set()

    def reload(self) -> None:
        """Read the config again (SIGHUP); a broken one is refused and the running one kept."""
        from talkie.shell import reload as shell_reload

        shell_reload.reload(self)

    async def run(self) -> None:
        """Bring the adapters up, serve until :meth:`stop`, bring them down."""
        loop = asyncio.get_running_loop()
        f = self.factories
        self.panel = self._open_panel()
        control = None
        try:
            self.panel.show("starting")
            self.link = f.link(
                self.settings,
                self.key,
                self.outbox,
                LinkEvents(self.emit, self.jitter),
                self.resume,
            )
            playback = f.playback(
                self.settings, loop=loop, on_drained=lambda: self.emit(m.PlaybackDrained())
            )
            self.chain = f.mic_chain(
                self.settings, playback, on_chunk=self.outbox.push_audio, on_speech=self._speech
            )
            capture = f.capture(self.settings, loop=loop, on_audio=self._mic)
            self.audio = AudioDevices(capture, playback, self.emit)
            self.vision = f.vision(
                self.settings,
                self.link.send_video,
                lambda text: self._log(m.Log("warning", text, key="vision")),
            )
            self.audio.open()
            self._read_notice()
            self._show(m.Show(self.state.phase, self.state.status))
            if isinstance(self.key, KeyProblem):
                log.warning("%s", self.key.message)
            control = await self._start_control()
            async with asyncio.TaskGroup() as tg:
                self._tg = tg
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
                tasks.append(tg.create_task(self._prepare_link(), name="prepare-link"))
                await self._stopping.wait()
                self.notifier.stopping()
                for task in (*tasks, self._link_task):
                    if task is not None:
                        task.cancel()
        finally:
            self._tg = None
            for name in list(self._timers):
                self._cancel_timer(m.CancelTimer(name))
            if control is not None:
                await control.close()
            if self.vision is not None:
                await self.vision.close()
            if self.audio is not None:
                await self.audio.stop(STOP_DRAIN_S)
            self.panel.close()

    # ---- the loop

    async def _dispatch_loop(self) -> None:
        while True:
            self.handle(await self._events.get())

    def handle(self, event: m.Event) -> None:
        """Step the machine with ``event`` and carry out its effects."""
        before = self.state
        self.state, effects = m.step(before, event)
        self._event_name = type(event).__name__
        if self.notice and isinstance(event, m.ButtonDown):
            self.notice = ""  # seen: from now on the LED shows the state again
            if not any(isinstance(e, m.Show) for e in effects):
                self._show(m.Show(self.state.phase, self.state.status))
        if isinstance(event, m.ButtonUp) and before.phase is m.Phase.LISTENING:
            self._released_at = asyncio.get_running_loop().time()
        if isinstance(event, m.SessionOpened):
            self.sessions += 1
        if isinstance(event, m.LinkLost):
            self.last_error = event.reason
        for effect in effects:
            self._perform[type(effect)](effect)

    def _fields(self, **more: Any) -> dict[str, Any]:
        """Structured fields for the journal."""
        return {
            "talkie_state": self.state.phase.value,
            "talkie_event": self._event_name,
            "talkie_session": self.sessions,
            **more,
        }

    # ---- effects

    def _connect(self, effect: m.Effect) -> None:
        if self._link_task is not None and not self._link_task.done():
            log.debug("connect asked while a session is running")
            return
        if self._tg is None:
            return
        closing, self._closing = self._closing, None
        self._link_events = LinkEvents(self.emit, self.jitter)
        self._link_task = self._tg.create_task(
            self._session(closing, self._link_events), name="live-session"
        )

    async def _session(self, closing: asyncio.Task[None] | None, events: LinkEvents) -> None:
        if closing is not None:
            await asyncio.wait([closing])  # the old socket is closed before the new one resumes
            del closing  # keep no reference: it holds the old connection and its buffers
        self.link.listener = events  # each session reports through its own listener
        await self.link.run()

    def _disconnect(self, effect: m.Effect) -> None:
        if self._link_events is not None:
            self._link_events.stale = True
        stop = getattr(self.link, "stop", None)
        if stop is not None:
            stop()
        if self._link_task is not None:
            self._link_task.cancel()
            self._closing, self._link_task = self._link_task, None

    def _start_turn(self, effect: m.StartTurn) -> None:
        self.outbox.start_turn()
        if effect.preroll:  # the audio from just before the voice was detected goes first
            for chunk in self.chain.preroll():
                self.outbox.push_audio(chunk)

    def _end_turn(self, effect: m.EndTurn) -> None:
        self.chain.flush()  # the last few ms gathered for a chunk belong to this turn
        self.outbox.end_turn()

    def _mic(self, pcm: bytes) -> None:
        self.chain.push(
            pcm, getattr(self.audio.capture, "block_time", None) if self.audio else None
        )

    def _speech(self, started: bool) -> None:
        self.emit(m.SpeechStarted() if started else m.SpeechEnded())

    def _play(self, effect: m.Play) -> None:
        if self._released_at is not None:
            waited = (asyncio.get_running_loop().time() - self._released_at) * 1000
            self._released_at = None
            log.info(
                "answer started %.0f ms after the release",
                waited,
                extra=self._fields(talkie_latency_ms=round(waited)),
            )
        self.playback.play(effect.pcm)

    def _start_timer(self, effect: m.StartTimer) -> None:
        self._cancel_timer(m.CancelTimer(effect.name))
        call_later = self.call_later or asyncio.get_running_loop().call_later
        name = effect.name

        def fire() -> None:
            self._timers.pop(name, None)
            self.emit(m.Timer(name))

        self._timers[name] = call_later(effect.delay_s, fire)

    def _cancel_timer(self, effect: m.CancelTimer) -> None:
        handle = self._timers.pop(effect.name, None)
        if handle is not None:
            handle.cancel()

    def _show(self, effect: m.Show) -> None:
        status = effect.status
        if self.notice and effect.phase is m.Phase.IDLE:
            status = f"ready; first boot: {self.notice}"
            self.panel.show("error")
        else:
            self.panel.show(effect.phase.value)
        log.info("state: %s", status, extra=self._fields())
        self.notifier.status(status)
        self.on_show(effect.phase, status)

    def _read_notice(self) -> None:
        """First boot left a problem (a rejected talkie.toml or key): say it once in the journal,
        and on the LED (the error pattern while idle) and in the status until the next press."""
        try:
            with open(self.firstboot_error, encoding="utf-8", errors="replace") as fh:
                lines = [line.strip() for line in fh if line.strip()]
        except OSError:
            return
        if lines:
            self.notice = "; ".join(lines)
            log.error(
                "first boot could not install everything from the boot partition: %s "
                "(talkie runs with the settings it had; fix the file there and reboot)",
                self.notice,
                extra=self._fields(),
            )

    def _log(self, effect: m.Log) -> None:
        if effect.transcript and not self.settings.log.transcripts:
            return
        if effect.key is not None:
            if self._logged.get(effect.key) == effect.message:
                return
            self._logged[effect.key] = effect.message
        extra = self._fields()
        if effect.transcript:
            extra["talkie_transcript"] = effect.message.split(":", 1)[0]
        log.log(logging.getLevelName(effect.level.upper()), "%s", effect.message, extra=extra)

    def _outbox_overflow(self, dropped: int) -> None:
        log.warning(
            "uplink buffer full (%g s): microphone audio dropped (%d bytes so far)",
            self.settings.audio.pending_s,
            dropped,
        )

    # ---- helpers

    def _open_panel(self) -> Any:
        loop = asyncio.get_running_loop()
        return self.factories.panel(
            self.settings,
            loop=loop,
            on_press=lambda: self.emit(m.ButtonDown()),
            on_release=lambda: self.emit(m.ButtonUp()),
            on_hold=lambda: self.emit(m.ButtonHeld()),
        )

    def _wake_link(self) -> None:
        if self.link is not None:
            self.link.wake()

    async def _prepare_link(self) -> None:
        prepare = getattr(self.link, "prepare", None)
        if prepare is not None:
            try:
                await asyncio.to_thread(prepare)
            except Exception:  # noqa: BLE001 - the first connect will report the same problem
                log.debug("preparing the Live SDK failed", exc_info=True)
        self.prepared.set()

    def _heartbeat(self) -> Any:
        interval = self.notifier.watchdog_interval()
        if interval is None:
            return None
        from talkie.system.notify import Heartbeat

        return Heartbeat(self.notifier, self.audio.alive, interval)

    async def _start_control(self) -> Any:
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
