"""The imperative shell: adapters in, events to the state machine, effects out.

:class:`App` is the only module that knows every room. It builds the adapters from the settings
(through :class:`Factories`, so tests can inject their own), runs them under one
``asyncio.TaskGroup``, turns every adapter callback into a :mod:`talkie.machine` event, feeds it to
``step`` and carries out the effects. Adapter callbacks from other threads have already been moved to
the loop by the adapters (``call_soon_threadsafe``); everything here runs in the loop's thread.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from talkie import machine as m
from talkie.system.credentials import KeyProblem, Secret
from talkie.uplink import Outbox

log = logging.getLogger("talkie")

INPUT_RATE = 16000
OUTPUT_RATE = 24000
#: How often a failed audio device is tried again, and how long a silent capture stream may stay
#: silent before it counts as dead.
AUDIO_RETRY_S = 5.0
AUDIO_STALL_S = 3.0
#: At shutdown, how long closing the output stream may take.
STOP_DRAIN_S = 1.0
EVENT_QUEUE = 4096


def _default_panel(settings: Any, **kw: Any) -> Any:
    from talkie.panel import open_panel

    return open_panel(settings.panel, **kw)


def _default_capture(settings: Any, **kw: Any) -> Any:
    from talkie.audio.capture import Capture

    return Capture(settings.audio.input_device, rate=INPUT_RATE, block_ms=settings.audio.chunk_ms,
                   gain_db=settings.audio.input_gain_db, **kw)


def _default_playback(settings: Any, **kw: Any) -> Any:
    from talkie.audio.playback import Playback

    return Playback(settings.audio.output_device, rate=OUTPUT_RATE, volume=settings.audio.volume,
                    **kw)


def _default_link(settings: Any, key: Secret | KeyProblem, outbox: Outbox, listener: Any) -> Any:
    from talkie.live.link import LiveLink

    return LiveLink(settings.live, key, outbox, listener)


@dataclass
class Factories:
    """How the shell makes each adapter. Tests replace what cannot exist on their machine."""

    panel: Callable[..., Any] = _default_panel
    capture: Callable[..., Any] = _default_capture
    playback: Callable[..., Any] = _default_playback
    link: Callable[..., Any] = _default_link


class _LinkEvents:
    """The link's reports, as state-machine events."""

    def __init__(self, emit: Callable[[m.Event], None]) -> None:
        self.emit = emit

    def opened(self) -> None:
        self.emit(m.SessionOpened())

    def lost(self, reason: str, fatal: bool) -> None:
        self.emit(m.LinkLost(reason, fatal))

    def audio(self, pcm: bytes) -> None:
        self.emit(m.ModelAudio(pcm))

    def interrupted(self) -> None:
        self.emit(m.Interrupted())

    def turn_complete(self) -> None:
        self.emit(m.TurnComplete())

    def heard(self, text: str) -> None:
        self.emit(m.Heard(text))

    def said(self, text: str) -> None:
        self.emit(m.Said(text))


class App:
    """talkie running: one instance per daemon."""

    def __init__(self, settings: Any, key: Secret | KeyProblem, *,
                 factories: Factories | None = None,
                 on_show: Callable[[m.Phase, str], None] = lambda phase, status: None) -> None:
        self.settings = settings
        self.key = key
        self.factories = factories or Factories()
        self.on_show = on_show
        self.state = m.State()
        self.ready = asyncio.Event()
        #: Set once the Live SDK is loaded (after ready): a press from then on pays only the connect.
        self.prepared = asyncio.Event()
        self.dropped_events = 0
        self._stopping = asyncio.Event()
        self._events: asyncio.Queue[m.Event] = asyncio.Queue(EVENT_QUEUE)
        self._logged: dict[str, str] = {}
        self._counters: dict[tuple[str, str], int] = {}
        self._retry: asyncio.TimerHandle | None = None
        self._link_task: asyncio.Task[None] | None = None
        self._tg: asyncio.TaskGroup | None = None
        self.outbox = Outbox(int(settings.audio.pending_s * INPUT_RATE * 2),
                             on_ready=self._wake_link, on_overflow=self._outbox_overflow)
        self.link: Any = None
        self.panel: Any = None
        self.capture: Any = None
        self.playback: Any = None
        self._audio_ok = False
        self._perform: dict[type[m.Effect], Callable[[Any], None]] = {
            m.Connect: self._connect,
            m.StartTurn: lambda e: self.outbox.start_turn(),
            m.EndTurn: lambda e: self.outbox.end_turn(),
            m.ReplayTurn: lambda e: self.outbox.replay(),
            m.DropTurn: lambda e: self.outbox.drop(),
            m.Play: lambda e: self.playback.play(e.pcm),
            m.FlushPlayback: lambda e: self.playback.flush(),
            m.FinishPlayback: lambda e: self.playback.finish(),
            m.StartRetryTimer: self._start_retry, m.CancelRetryTimer: self._cancel_retry,
            m.Show: self._show, m.Log: self._log,
        }

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
        """Ask the daemon to shut down (signal handlers call this)."""
        self._stopping.set()

    async def run(self) -> None:
        """Bring the adapters up, serve until :meth:`stop`, bring them down."""
        loop = asyncio.get_running_loop()
        f = self.factories
        self.panel = f.panel(self.settings, loop=loop, on_press=lambda: self.emit(m.ButtonDown()),
                             on_release=lambda: self.emit(m.ButtonUp()),
                             on_hold=lambda: self.emit(m.ButtonHeld()))
        try:
            self.panel.show("starting")
            self.link = f.link(self.settings, self.key, self.outbox, _LinkEvents(self.emit))
            self.playback = f.playback(self.settings, loop=loop,
                                       on_drained=lambda: self.emit(m.PlaybackDrained()))
            self.capture = f.capture(self.settings, loop=loop, on_audio=self.outbox.push_audio)
            self._open_audio()
            self._show(m.Show(self.state.phase, self.state.status))
            if isinstance(self.key, KeyProblem):
                log.warning("%s", self.key.message)
            async with asyncio.TaskGroup() as tg:
                self._tg = tg
                dispatcher = tg.create_task(self._dispatch_loop(), name="dispatch")
                watcher = tg.create_task(self._watch_audio(), name="audio-watch")
                self.ready.set()
                tg.create_task(self._prepare_link(), name="prepare-link")
                await self._stopping.wait()
                for task in (dispatcher, watcher, self._link_task):
                    if task is not None:
                        task.cancel()
        finally:
            self._tg = None
            self._cancel_retry(None)
            await self._close_adapters()

    # ---- the loop

    async def _dispatch_loop(self) -> None:
        while True:
            self.handle(await self._events.get())

    def handle(self, event: m.Event) -> None:
        """Step the machine with ``event`` and carry out its effects."""
        before = self.state
        self.state, effects = m.step(before, event)
        if log.isEnabledFor(logging.DEBUG) and not isinstance(event, m.ModelAudio):
            log.debug("%s: %s -> %s", type(event).__name__, before.phase.value,
                      self.state.phase.value)
        for effect in effects:
            self._perform[type(effect)](effect)

    # ---- effects

    def _connect(self, effect: m.Effect) -> None:
        if self._link_task is not None and not self._link_task.done():
            log.debug("connect asked while a session is running")
            return
        if self._tg is None:
            return
        self._link_task = self._tg.create_task(self.link.run(), name="live-session")

    async def _prepare_link(self) -> None:
        prepare = getattr(self.link, "prepare", None)
        if prepare is not None:
            try:
                await asyncio.to_thread(prepare)
            except Exception:  # noqa: BLE001 - the first connect will report the same problem
                log.debug("preparing the Live SDK failed", exc_info=True)
        self.prepared.set()

    def _wake_link(self) -> None:
        if self.link is not None:
            self.link.wake()

    def _start_retry(self, effect: m.StartRetryTimer) -> None:
        self._cancel_retry(None)
        loop = asyncio.get_running_loop()
        self._retry = loop.call_later(effect.delay_s, self.emit, m.RetryDue())

    def _cancel_retry(self, effect: m.Effect | None) -> None:
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None

    def _show(self, effect: m.Show) -> None:
        self.panel.show(effect.phase.value)
        log.info("state: %s", effect.status)
        self.on_show(effect.phase, effect.status)

    def _log(self, effect: m.Log) -> None:
        if effect.transcript and not self.settings.log.transcripts:
            return
        if effect.key is not None:
            if self._logged.get(effect.key) == effect.message:
                return
            self._logged[effect.key] = effect.message
        log.log(logging.getLevelName(effect.level.upper()), "%s", effect.message)

    def _outbox_overflow(self, dropped: int) -> None:
        log.warning("uplink buffer full (%g s): microphone audio dropped (%d bytes so far)",
                    self.settings.audio.pending_s, dropped)

    # ---- audio devices

    def _open_audio(self) -> bool:
        """Start both audio streams; on failure report it (once) and leave them closed."""
        from talkie.audio.devices import AudioError

        try:
            self.playback.start()
            self.capture.start()
        except AudioError as exc:
            self._close_streams()
            self._audio_ok = False
            self.emit(m.AudioFailed(str(exc)))
            return False
        self._audio_ok = True
        return True

    def _close_streams(self) -> None:
        for stream in (self.capture, self.playback):
            try:
                stream.stop()
            except Exception:  # noqa: BLE001 - closing a broken stream must not stop the daemon
                log.debug("closing an audio stream failed", exc_info=True)

    async def _watch_audio(self) -> None:
        """Reopen failed audio devices; notice a capture stream that stopped delivering."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(AUDIO_RETRY_S if not self._audio_ok else AUDIO_STALL_S)
            if not self._audio_ok:
                if self._open_audio():
                    self.emit(m.AudioRestored())
                continue
            self._report_counters()
            last = getattr(self.capture, "last_callback", None)
            if last is not None and last > 0 and loop.time() - last > AUDIO_STALL_S:
                self._close_streams()
                self._audio_ok = False
                self.emit(m.AudioFailed("the microphone stopped delivering audio"))

    #: Counters that mean audio was lost; each increase is logged (once per watch period).
    COUNTERS = (("capture", "overflows", "microphone blocks dropped (event loop too slow)"),
                ("capture", "xruns", "microphone overruns reported by the device"),
                ("playback", "overflows", "speaker samples dropped (playback buffer full)"),
                ("playback", "underruns", "speaker underruns (audio arrived too slowly)"))

    def _report_counters(self) -> None:
        for adapter, counter, words in self.COUNTERS:
            value = getattr(getattr(self, adapter), counter, 0)
            seen = self._counters.get((adapter, counter), 0)
            if isinstance(value, int) and value > seen:
                self._counters[(adapter, counter)] = value
                log.warning("%s: %d so far", words, value)

    async def _close_adapters(self) -> None:
        if self.playback is not None and self._audio_ok:
            self.playback.flush()  # a stop request cuts the answer short, as a person expects
            try:
                await asyncio.wait_for(asyncio.to_thread(self.playback.stop), STOP_DRAIN_S)
            except Exception:  # noqa: BLE001
                log.debug("playback did not stop cleanly", exc_info=True)
        if self.capture is not None:
            try:
                self.capture.stop()
            except Exception:  # noqa: BLE001
                log.debug("capture did not stop cleanly", exc_info=True)
        if self.panel is not None:
            self.panel.close()
