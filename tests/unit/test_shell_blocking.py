"""The event loop never waits for what can block: PortAudio closing a stream (it plays out what is
queued), PortAudio opening a device that is not there, the LED's thread on a panel's close, the
disk on a resumption update. Each is a fake that blocks until the test releases it, while the test
shows the loop going on meanwhile. And the loop's queue never drops an event that matters."""

from __future__ import annotations

import asyncio
import threading


from talkie.audio.devices import AudioError
from talkie.config.credentials import Secret
from talkie.core import machine as m
from talkie.live.resume import ResumeStore
from talkie.shell import app as app_module
from talkie.shell.app import App
from talkie.shell.audio import AudioDevices
from tests.support import fakes


class Gate:
    """A door a worker thread waits at until the test opens it."""

    def __init__(self) -> None:
        self.reached = threading.Event()
        self.opened = threading.Event()

    def wait(self) -> None:
        self.reached.set()
        assert self.opened.wait(10), "the test never opened the gate"


async def loop_ticks_while(gate: Gate) -> int:
    """How often the loop ran a callback while a worker thread waited at ``gate``."""
    async with asyncio.timeout(10):
        while not gate.reached.is_set():
            await asyncio.sleep(0.001)
    ticks = 0
    for _ in range(20):
        await asyncio.sleep(0)  # each is one turn of the loop: none if the loop were blocked
        ticks += 1
    gate.opened.set()
    return ticks


class StuckPlayback(fakes.FakePlayback):
    def __init__(self, log, gate: Gate, *, fail_start: bool = False) -> None:
        super().__init__(log)
        self.gate, self.fail_start = gate, fail_start

    def stop(self, timeout: float = 2.0) -> None:
        self.gate.wait()  # as Playback.stop waits for what is queued to play out
        super().stop(timeout)

    def start(self) -> None:
        if self.fail_start:
            self.gate.wait()  # as PortAudio takes its time to find no device
            raise AudioError("no speaker: output device 'USB' not found")
        super().start()


def test_closing_a_stalled_stream_does_not_block_the_loop():
    events: list[m.Event] = []

    async def main():
        gate, log = Gate(), fakes.Log()
        devices = AudioDevices(fakes.FakeCapture(log), StuckPlayback(log, gate), events.append,
                               clock=lambda: 100.0, retry_s=0.001, stall_s=0.001)
        assert devices.open()
        devices.capture.last_callback = 50.0  # the microphone stopped calling back long ago
        watching = asyncio.create_task(devices.watch())
        ticks = await loop_ticks_while(gate)
        async with asyncio.timeout(10):
            while "playback" not in log.of("close"):
                await asyncio.sleep(0.001)
        watching.cancel()
        return ticks

    assert asyncio.run(main()) == 20
    assert events[0] == m.AudioFailed("the microphone stream stopped (50 s without audio)")


def test_trying_a_missing_device_again_does_not_block_the_loop():
    events: list[m.Event] = []

    async def main():
        gate, log = Gate(), fakes.Log()
        devices = AudioDevices(fakes.FakeCapture(log), StuckPlayback(log, gate, fail_start=True),
                               events.append, retry_s=0.001, stall_s=0.001)
        watching = asyncio.create_task(devices.watch())  # not open: it is tried again
        ticks = await loop_ticks_while(gate)
        async with asyncio.timeout(10):
            while not events:
                await asyncio.sleep(0.001)
        watching.cancel()
        return ticks

    assert asyncio.run(main()) == 20
    assert events[0] == m.AudioFailed("no speaker: output device 'USB' not found")


def test_reopening_the_devices_on_a_reload_does_not_block_the_loop():
    events: list[m.Event] = []

    async def main():
        gate, log = Gate(), fakes.Log()
        devices = AudioDevices(fakes.FakeCapture(log), StuckPlayback(log, gate), events.append)
        assert devices.open()
        reopening = asyncio.create_task(devices.reopen())  # new devices in [audio]
        ticks = await loop_ticks_while(gate)  # the speaker plays out what it holds meanwhile
        assert await asyncio.wait_for(reopening, 10)
        return ticks, log.entries

    ticks, entries = asyncio.run(main())
    assert ticks == 20
    assert entries[-4:] == [("close", "capture"), ("close", "playback"), ("open", "playback"),
                            ("open", "capture")]
    assert events == [m.AudioRestored()]


def test_a_stream_that_never_calls_back_is_a_stall_too():
    log, now = fakes.Log(), [0.0]
    capture, playback = fakes.FakeCapture(log), fakes.FakePlayback(log)
    capture.last_callback = playback.last_callback = 0.0  # neither has ever called back
    devices = AudioDevices(capture, playback, lambda e: None, clock=lambda: now[0], stall_s=3.0)
    assert devices.open() and devices.stalled() == ""
    now[0] = 3.5  # no callback at all since the open
    assert devices.stalled() == "the microphone stream never started (4 s without audio)"
    assert devices.alive() == (False, "the microphone stream never started (4 s without audio)")


class StuckPanel(fakes.FakePanel):
    gate: Gate | None = None

    def close(self) -> None:
        if self.gate is not None:
            self.gate.wait()  # as GpioLed.close joins the LED's thread
        super().close()


def test_reopening_the_panel_does_not_block_the_loop():
    log, gate = fakes.Log(), Gate()

    async def main():
        factories = fakes.factories(log)
        factories.panel = lambda settings, **kw: StuckPanel(log, settings.panel)
        app = App(fakes.settings(), Secret("AIzaSy-blocking-0123456789", "test"),
                  factories=factories, firstboot_error="")
        task = asyncio.create_task(app.run())
        async with asyncio.timeout(10):
            await app.ready.wait()
        app.panel.gate = gate
        reopening = asyncio.create_task(app.reopen_panel())
        ticks = await loop_ticks_while(gate)
        await asyncio.wait_for(reopening, 10)
        app.emit(m.ButtonDown())  # the machine goes on as before
        async with asyncio.timeout(10):
            while app.state.phase is not m.Phase.CONNECTING:
                await asyncio.sleep(0.001)
        shown = app.panel.shown
        app.stop()
        await asyncio.wait_for(task, 10)
        return ticks, shown

    ticks, shown = asyncio.run(main())
    assert ticks == 20
    assert log.of("open").count("panel") == 2 and shown[0] == "idle"


def test_a_resumption_update_does_not_wait_for_the_disk(tmp_path, monkeypatch):
    gate = Gate()
    store = ResumeStore(tmp_path / "resume.json", background=True)
    real_save = store._save

    def slow_save(handle, saved_at):
        gate.wait()  # as a write and a rename on a slow SD card
        return real_save(handle, saved_at)

    monkeypatch.setattr(store, "_save", slow_save)

    async def main():
        store.update("handle-1", True)  # returns at once: the writer thread waits, not the loop
        return await loop_ticks_while(gate)

    assert asyncio.run(main()) == 20
    assert store.flush(10)
    assert ResumeStore(tmp_path / "resume.json").handle == "handle-1"
    store.update("handle-2", True)
    store.clear()  # in order: the last word is the clear
    assert store.flush(10) and not (tmp_path / "resume.json").exists()


# ---- the queue between the adapters and the machine


def test_a_full_queue_drops_transcript_lines_never_an_event_that_changes_the_state(monkeypatch):
    monkeypatch.setattr(app_module, "EVENT_QUEUE", 10)
    app = App(fakes.settings(), Secret("AIzaSy-queue-0123456789", "test"),
              factories=fakes.factories(fakes.Log()), firstboot_error="")
    for _ in range(10):
        app.emit(m.Heard("filler"))
    critical = [m.ButtonDown(), m.ButtonUp(), m.LinkLost("drop"), m.PlaybackDrained(),
                m.ModelAudio(b"\x00\x00")]
    for event in critical:
        app.emit(m.Said("lost in the noise"))
        app.emit(event)
    kept = [event for event, _ in app._events]  # (each with when it was queued)
    assert kept[10:] == critical  # every one, in order, past the bound
    assert app.dropped_events == len(critical)  # the transcript lines past it, counted


# ---- the camera: a reload leaves no thread behind


def test_reconfiguring_the_camera_leaves_no_thread_behind():
    from talkie.config import Settings, VisionSettings
    from talkie.shell.vision import Vision
    from talkie.vision import SyntheticSource

    def cameras() -> list[threading.Thread]:
        return [t for t in threading.enumerate() if t.name.startswith("talkie-camera")]

    async def main():
        settings = Settings(vision=VisionSettings(mode="always", camera="synthetic", fps=5.0))

        async def send(jpeg: bytes) -> bool:
            return True

        vision = Vision(settings, send, lambda text: None,
                        make_source=lambda v: SyntheticSource())
        for fps in (4.0, 3.0, 2.0, 1.0):
            vision.want(True)
            await asyncio.sleep(0.05)  # its camera thread opens the source
            vision.reconfigure(Settings(vision=VisionSettings(mode="always", camera="synthetic",
                                                                fps=fps)))
        await vision.close()
        for thread in cameras():
            thread.join(5)

    before = len(cameras())
    asyncio.run(main())
    assert len(cameras()) == before


# ---- the speaker: a flush's restart never meets a stream half started


class FakeStream:
    """A PortAudio output stream whose start takes a while: an abort meanwhile is a race."""

    latency = 0.05

    def __init__(self, record: list[str], fail_restart: bool = False) -> None:
        self.record, self.fail_restart, self.starting, self.started = record, fail_restart, False, 0
        self.active = True
        self.during_start = lambda: None

    def start(self) -> None:
        self.starting = True
        self.during_start()  # PortAudio taking its time to start the device
        self.starting = False
        self.started += 1
        if self.fail_restart and self.started > 1:
            raise RuntimeError("Error starting stream: Device unavailable [PaErrorCode -9985]")

    def abort(self, ignore_errors: bool = True) -> None:
        if self.starting:
            self.record.append("aborted while starting")

    def close(self, ignore_errors: bool = True) -> None:
        pass


def fake_portaudio(monkeypatch, streams: list[FakeStream], record: list[str], **kw) -> None:
    from talkie.audio import devices, playback

    class FakeSd:
        @staticmethod
        def check_output_settings(*args, **kwargs) -> None:
            pass

        @staticmethod
        def OutputStream(**kwargs) -> FakeStream:  # noqa: N802 - sounddevice's name
            streams.append(FakeStream(record, **kw))
            return streams[-1]

    monkeypatch.setattr(playback, "import_sounddevice", lambda: FakeSd)
    monkeypatch.setattr(playback, "find_device",
                        lambda spec, kind: devices.DeviceInfo(0, "fake", 24000.0))


def test_a_flush_never_aborts_a_stream_half_started(monkeypatch):
    """A barge-in's cut (abort and restart, in a worker) at the moment the devices are being
    reopened (a reload, a stalled stream): the cut waits for the start."""
    from talkie.audio.playback import Playback

    streams: list[FakeStream] = []
    record: list[str] = []
    fake_portaudio(monkeypatch, streams, record)

    async def main():
        speaker = Playback("", loop=asyncio.get_running_loop(), on_drained=lambda: None)
        speaker.start()
        speaker.stop()
        original = FakeStream.__init__

        def with_a_cut_meanwhile(self, *args, **kwargs):
            original(self, *args, **kwargs)

            def cut_now() -> None:  # a flush's worker tries while this stream starts
                self.during_start = lambda: None  # (once: the cut's own restart is no race)
                worker = threading.Thread(target=speaker._cut)
                worker.start()
                worker.join(0.05)

            self.during_start = cut_now

        monkeypatch.setattr(FakeStream, "__init__", with_a_cut_meanwhile)
        await asyncio.to_thread(speaker.start)
        await asyncio.sleep(0.1)  # the cut, once it got the stream, restarted it
        return speaker

    speaker = asyncio.run(main())
    assert record == [] and speaker.cuts == 1


def test_a_restart_that_fails_after_a_flush_is_said_once(monkeypatch, caplog):
    from talkie.audio.playback import Playback

    streams: list[FakeStream] = []
    fake_portaudio(monkeypatch, streams, [], fail_restart=True)

    async def main():
        speaker = Playback("", loop=asyncio.get_running_loop(), on_drained=lambda: None)
        speaker.start()
        for _ in range(3):
            speaker.play(b"\x01\x00" * 2400)  # an answer plays...
            speaker.flush()  # ...and is cut: the restart fails every time
            await asyncio.wait_for(asyncio.wrap_future(speaker._cutting)
                                   if not isinstance(speaker._cutting, asyncio.Future)
                                   else speaker._cutting, 5)
        return speaker

    with caplog.at_level("DEBUG", logger="talkie"):
        speaker = asyncio.run(main())
    said = [r for r in caplog.records if r.levelname == "WARNING"
            and "did not restart after a flush" in r.getMessage()]
    assert speaker.cut_failures == 3 and len(said) == 1
    assert "Device unavailable" in said[0].getMessage()
