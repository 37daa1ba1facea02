"""Vision: synthetic frames, the pacer, JPEG encoding, the streamer and picamera2's error paths.

Real simplejpeg encodes and decodes and real asyncio throughout. Time is virtual where minutes
must pass (a clock that moves only when the code under test sleeps on it); picamera2, which
cannot exist off a Pi, is the one module replaced by a fake (in sys.modules).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import math
import random
import sys
import threading
import types

import numpy as np
import pytest
import simplejpeg

from talkie.vision import (CameraError, Frame, FrameSource, Pacer, Picamera2Source,
                           SyntheticSource, VisionStreamer, encode, read_number)
from talkie.vision.source import DIGITS, render


def in_loop(test):
    """Run an async test in a fresh event loop (asyncio.run), as the rest of the suite does."""
    @functools.wraps(test)
    def wrapper(*args, **kwargs):
        return asyncio.run(asyncio.wait_for(test(*args, **kwargs), 20))
    return wrapper


class VirtualTime:
    """A clock that moves only when someone sleeps on it. A sleep that would reach ``limit``
    parks the sleeper for good (until cancelled) and sets ``parked``."""

    def __init__(self, limit: float = math.inf) -> None:
        self.now = 0.0
        self.limit = limit
        self.parked = asyncio.Event()

    def clock(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        if self.now + delay >= self.limit:
            self.parked.set()
            await asyncio.Event().wait()
        self.now += max(0.0, delay)
        await asyncio.sleep(0)


def decode(jpeg: bytes) -> np.ndarray:
    return simplejpeg.decode_jpeg(jpeg, colorspace="RGB")


# -- synthetic frames ------------------------------------------------------------------------

@pytest.mark.parametrize("number", [0, 7, 15, 1234, 4_567_890, 10 ** DIGITS - 1])
def test_the_number_drawn_in_a_frame_reads_back_after_a_jpeg_round_trip(number):
    rgb = render(number, (768, 768))
    assert rgb.shape == (768, 768, 3) and rgb.dtype == np.uint8
    assert read_number(decode(encode(rgb, max_side=768, quality=75))) == number


def test_the_number_reads_back_from_a_scaled_down_frame():
    rgb = render(31337, (1024, 768))
    small = decode(encode(rgb))
    assert small.shape == (576, 768, 3)
    assert read_number(small) == 31337


def test_the_pattern_moves_from_frame_to_frame():
    a, b = render(10, (768, 768)), render(11, (768, 768))
    below_panel = slice(300, None)
    assert not np.array_equal(a[below_panel], b[below_panel])
    assert np.array_equal(a, render(10, (768, 768)))


def test_synthetic_source_numbers_frames_by_its_clock_and_renders_each_once():
    vt = VirtualTime()
    source = SyntheticSource(fps=30.0, clock=vt.clock)
    assert isinstance(source, FrameSource)
    assert source.latest() is None
    vt.now = 100.0
    source.open((640, 480))
    first = source.latest()
    assert isinstance(first, Frame) and first.number == 0 and first.t == 100.0
    assert first.rgb.shape == (480, 640, 3)
    assert source.latest() is first
    vt.now = 101.0
    second = source.latest()
    assert second.number == 30 and read_number(second.rgb) == 30
    with pytest.raises(AttributeError):
        second.number = 3  # frozen
    source.close()
    source.close()
    assert source.latest() is None and source.closes == 1


def test_synthetic_source_injects_a_capture_fault_that_clears_on_reopen():
    vt = VirtualTime()
    source = SyntheticSource(fps=10.0, clock=vt.clock, fail_after=5)
    source.open((64, 48))
    vt.now = 0.4
    assert source.latest().number == 4
    vt.now = 0.5
    with pytest.raises(CameraError, match=r"^capture failed: "):
        source.latest()
    with pytest.raises(CameraError):
        source.latest()
    source.close()
    source.open((64, 48))
    assert source.latest().number == 5


def test_synthetic_source_injects_open_faults():
    source = SyntheticSource(fail_open=1, open_error="no camera found (test)")
    with pytest.raises(CameraError, match=r"no camera found \(test\)"):
        source.open((64, 48))
    assert not source.is_open
    source.open((64, 48))
    assert source.is_open and source.opens == 1


# -- pacer -----------------------------------------------------------------------------------

@in_loop
async def test_pacer_ticks_1200_times_in_ten_virtual_minutes_without_drift():
    vt = VirtualTime()
    pacer = Pacer(2.0, clock=vt.clock, sleep=vt.sleep)
    ticks, lateness = [], []
    async for tick in pacer.ticks():
        if tick >= 600.0:
            break
        ticks.append(tick)
        lateness.append(vt.now - tick)
    assert len(ticks) == 1200
    assert ticks == [k * 0.5 for k in range(1200)]
    assert max(abs(x) for x in lateness) < 1e-9
    assert pacer.skipped == 0


@in_loop
async def test_pacer_does_not_drift_when_every_sleep_oversleeps():
    vt = VirtualTime()
    rng = random.Random(7)

    async def sloppy_sleep(delay):  # like an OS timer: always a little late, never early
        await vt.sleep(delay + rng.uniform(0.0, 0.02))

    pacer = Pacer(2.0, clock=vt.clock, sleep=sloppy_sleep)
    count = 0
    async for tick in pacer.ticks():
        assert 0.0 <= vt.now - tick <= 0.02 + 1e-9  # each tick late by one sleep's error at most
        count += 1
        if count == 1200:
            break
    assert tick == 599.5 and vt.now < 599.5 + 0.021
    assert pacer.skipped == 0


@in_loop
async def test_a_consumer_that_stalls_gets_the_next_tick_on_schedule_and_no_burst():
    vt = VirtualTime()
    pacer = Pacer(2.0, clock=vt.clock, sleep=vt.sleep)
    got = []
    async for tick in pacer.ticks():
        got.append((tick, vt.now))
        if tick == 1.0:
            vt.now += 3.0  # the consumer stalls 3 s (a slow encode or a slow link)
        if len(got) == 6:
            break
    assert got == [(0.0, 0.0), (0.5, 0.5), (1.0, 1.0), (4.0, 4.0), (4.5, 4.5), (5.0, 5.0)]
    assert pacer.skipped == 5


@in_loop
async def test_a_consumer_back_between_ticks_gets_the_newest_due_tick_at_once():
    vt = VirtualTime()
    pacer = Pacer(2.0, clock=vt.clock, sleep=vt.sleep)
    got = []
    async for tick in pacer.ticks():
        got.append((tick, vt.now))
        if tick == 0.0:
            vt.now += 1.2
        if len(got) == 3:
            break
    assert got == [(0.0, 0.0), (1.0, 1.2), (1.5, 1.5)]
    assert pacer.skipped == 1


@pytest.mark.parametrize("fps", [0.0, 0.1, 5.5, -2.0])
def test_pacer_refuses_rates_out_of_range(fps):
    with pytest.raises(ValueError, match="allowed 0.2 to 5.0"):
        Pacer(fps)


# -- jpeg ------------------------------------------------------------------------------------

@pytest.mark.parametrize("size,sent", [((1024, 768), (768, 576)), ((640, 480), (640, 480)),
                                       ((768, 1024), (576, 768)), ((1920, 1080), (768, 432)),
                                       ((4056, 3040), (768, 576)), ((320, 240), (320, 240))])
def test_encode_scales_down_to_max_side_and_never_up(size, sent):
    out = decode(encode(render(5, size)))
    assert (out.shape[1], out.shape[0]) == sent


def test_encode_quality_changes_the_size_and_the_result_is_a_valid_baseline_jpeg():
    rgb = render(77, (768, 768))
    sizes = [len(encode(rgb, quality=q)) for q in (30, 75, 95)]
    assert sizes[0] < sizes[1] < sizes[2]
    jpeg = encode(rgb, quality=75)
    assert jpeg[:2] == b"\xff\xd8" and jpeg[-2:] == b"\xff\xd9"
    header = simplejpeg.decode_jpeg_header(jpeg)
    assert header[:2] == (768, 768) and header[3] == "420"


def test_downscaling_averages_areas():
    flat = np.full((1000, 1500, 3), 77, dtype=np.uint8)
    out = decode(encode(flat, max_side=750, quality=95))
    assert out.shape == (500, 750, 3) and np.abs(out.astype(int) - 77).max() <= 1
    # one-pixel stripes average to grey instead of aliasing to black or white
    stripes = np.zeros((768, 1536, 3), dtype=np.uint8)
    stripes[:, ::2] = 255
    out = decode(encode(stripes, max_side=768, quality=95)).astype(int)
    assert out.shape == (384, 768, 3)
    assert np.abs(out - 128).max() <= 3


def test_encode_rejects_what_is_not_an_rgb_frame():
    with pytest.raises(ValueError):
        encode(np.zeros((10, 10), dtype=np.uint8))
    with pytest.raises(ValueError):
        encode(np.zeros((10, 10, 3), dtype=np.float32))
    with pytest.raises(ValueError):
        encode(np.zeros((10, 10, 3), dtype=np.uint8), quality=0)


# -- streamer --------------------------------------------------------------------------------

class Recorder:
    """A send() for the streamer: records (virtual time, number read from the JPEG)."""

    def __init__(self, vt: VirtualTime, up_from: float = 0.0, delay: float = 0.0,
                 is_async: bool = True) -> None:
        self.vt, self.up_from, self.delay = vt, up_from, delay
        self.calls: list[tuple[float, int]] = []
        self.sent: list[tuple[float, int]] = []
        self.is_async = is_async

    def _record(self, jpeg: bytes) -> bool:
        assert jpeg[:2] == b"\xff\xd8"
        entry = (self.vt.now, read_number(decode(jpeg)))
        self.calls.append(entry)
        if self.vt.now < self.up_from:
            return False  # no session: the link drops the frame
        self.sent.append(entry)
        return True

    def __call__(self, jpeg: bytes):
        if not self.is_async:
            return self._record(jpeg)

        async def send():
            ok = self._record(jpeg)
            if self.delay:
                await self.vt.sleep(self.delay)
            return ok
        return send()


def make_streamer(vt, source, send, **kw):
    events = {"faults": [], "active": []}
    streamer = VisionStreamer(source, send, fps=2.0, size=(320, 240), max_side=768, quality=75,
                              clock=vt.clock, sleep=vt.sleep,
                              on_fault=events["faults"].append,
                              on_active=events["active"].append, **kw)
    return streamer, events


async def run_until_parked(vt, streamer):
    streamer.start()
    await asyncio.wait_for(vt.parked.wait(), 10)


@pytest.mark.parametrize("is_async", [True, False])
@in_loop
async def test_streamer_sends_2n_fresh_frames_in_n_seconds(is_async):
    vt = VirtualTime(limit=30.0)
    source = SyntheticSource(fps=30.0, clock=vt.clock)
    send = Recorder(vt, is_async=is_async)
    streamer, events = make_streamer(vt, source, send)
    await run_until_parked(vt, streamer)
    assert streamer.running and source.is_open
    assert send.sent == [(k * 0.5, 15 * k) for k in range(60)]
    assert streamer.sent == 60 and streamer.skipped_late == 0 and streamer.skipped_same == 0
    assert len(streamer.encode_ms) == 60 and all(ms > 0 for ms in streamer.encode_ms)
    assert events == {"faults": [], "active": [True]}
    streamer.stop()
    await streamer.wait_stopped()
    assert not streamer.running and not source.is_open and source.closes == 1
    assert events["active"] == [True, False]
    streamer.stop()  # idempotent
    await streamer.wait_stopped()
    assert source.closes == 1 and events["active"] == [True, False]


@in_loop
async def test_frames_without_a_session_are_dropped_not_queued():
    vt = VirtualTime(limit=30.0)
    source = SyntheticSource(fps=30.0, clock=vt.clock)
    send = Recorder(vt, up_from=10.0)
    streamer, _ = make_streamer(vt, source, send)
    await run_until_parked(vt, streamer)
    assert streamer.dropped_no_session == 20 and streamer.sent == 40
    assert send.sent[0] == (10.0, 300)  # the first frame after the session is up is today's
    assert [n for _, n in send.calls] == [15 * k for k in range(60)]
    streamer.stop()
    await streamer.wait_stopped()


@in_loop
async def test_a_slow_link_costs_frames_never_a_backlog():
    vt = VirtualTime(limit=30.0)
    source = SyntheticSource(fps=30.0, clock=vt.clock)
    send = Recorder(vt, delay=1.2)  # each send takes 1.2 s: longer than two periods
    streamer, _ = make_streamer(vt, source, send)
    await run_until_parked(vt, streamer)
    times = [t for t, _ in send.sent]
    assert all(abs(b - a - 1.2) < 1e-9 for a, b in zip(times, times[1:]))  # no burst
    assert all(n == int(t * 30) for t, n in send.sent)  # every frame fresh when taken
    assert streamer.skipped_late > 0
    assert streamer.sent + streamer.skipped_late == 60
    streamer.stop()
    await streamer.wait_stopped()


@in_loop
async def test_skips_a_frame_the_source_has_not_replaced():
    vt = VirtualTime(limit=10.0)
    source = SyntheticSource(fps=1.0, clock=vt.clock)  # a new frame every other tick
    send = Recorder(vt)
    streamer, _ = make_streamer(vt, source, send)
    await run_until_parked(vt, streamer)
    assert [n for _, n in send.sent] == list(range(10))
    assert streamer.skipped_same == 10
    streamer.stop()
    await streamer.wait_stopped()


@in_loop
async def test_a_capture_fault_is_reported_once_the_camera_closed_and_reopened_later():
    vt = VirtualTime(limit=40.0)
    source = SyntheticSource(fps=30.0, clock=vt.clock, fail_after=45)
    send = Recorder(vt)
    streamer, events = make_streamer(vt, source, send, retry_s=30.0)
    audio_ticks = 0

    async def audio():  # another task on the same loop: it must keep running throughout
        nonlocal audio_ticks
        while True:
            audio_ticks += 1
            await asyncio.sleep(0)

    audio_task = asyncio.get_running_loop().create_task(audio())
    await run_until_parked(vt, streamer)
    assert events["faults"] == ["capture failed: synthetic fault at frame 45"]
    assert events["active"] == [True, False, True]
    assert source.opens == 2 and source.closes == 1 and streamer.faults == 1
    numbers = [n for _, n in send.sent]
    assert numbers[:3] == [0, 15, 30]
    assert send.sent[3] == (31.5, 945)  # reopened retry_s after the fault, and resumed
    assert len(numbers) == 3 + 17 and numbers == sorted(set(numbers))
    assert streamer.running and audio_ticks > 0 and not audio_task.done()
    audio_task.cancel()
    streamer.stop()
    await streamer.wait_stopped()
    assert not source.is_open and events["active"][-1] is False


@in_loop
async def test_a_camera_that_cannot_be_opened_is_retried_slowly_and_reported_once():
    vt = VirtualTime(limit=65.0)
    source = SyntheticSource(fps=30.0, clock=vt.clock, fail_open=2,
                             open_error="camera busy: another program uses it")
    send = Recorder(vt)
    streamer, events = make_streamer(vt, source, send, retry_s=30.0)
    await run_until_parked(vt, streamer)
    assert events["faults"] == ["camera busy: another program uses it"]
    assert streamer.faults == 2 and source.opens == 1  # tried at 0, 30 and 60 s: no hot loop
    assert [t for t, _ in send.sent] == [60.0 + k * 0.5 for k in range(10)]
    streamer.stop()
    await streamer.wait_stopped()


@in_loop
async def test_stop_during_a_slow_open_still_releases_the_camera():
    entered, release = threading.Event(), threading.Event()

    class SlowOpen(SyntheticSource):
        def open(self, size):
            entered.set()
            release.wait(5)
            super().open(size)

    vt = VirtualTime(limit=10.0)
    source = SlowOpen(clock=vt.clock)
    streamer, events = make_streamer(vt, source, Recorder(vt))
    streamer.start()
    await asyncio.to_thread(entered.wait, 5)
    streamer.stop()
    release.set()
    await asyncio.wait_for(streamer.wait_stopped(), 5)
    assert source.opens == 1 and source.closes == 1 and not source.is_open
    assert events["active"] == [] and streamer.sent == 0


@in_loop
async def test_streamer_restarts_after_stop():
    vt = VirtualTime(limit=5.0)
    source = SyntheticSource(fps=30.0, clock=vt.clock)
    send = Recorder(vt)
    streamer, events = make_streamer(vt, source, send)
    await run_until_parked(vt, streamer)
    streamer.stop()
    vt.limit, vt.parked = 10.0, asyncio.Event()
    await run_until_parked(vt, streamer)
    await asyncio.sleep(0)
    assert source.opens == 2 and source.closes == 1 and source.is_open
    assert events["active"] == [True, False, True]
    assert streamer.sent == 10 + 11  # 0 to 4.5 s, then 4.5 (the clock did not move) to 9.5 s
    streamer.stop()
    await streamer.wait_stopped()
    assert events["active"] == [True, False, True, False]


def test_streamer_validates_its_settings():
    source = SyntheticSource()
    with pytest.raises(ValueError):
        VisionStreamer(source, lambda j: True, fps=10.0, on_fault=print)
    with pytest.raises(ValueError):
        VisionStreamer(source, lambda j: True, quality=0, on_fault=print)


# -- picamera2 (a fake module: picamera2 cannot exist off a Pi) ------------------------------

class FakeJob:
    def __init__(self, result=None, error=None):
        self.result, self.error = result, error

    def get_result(self, timeout=None):
        if self.error is not None:
            raise self.error
        return self.result


class FakePicamera2:
    cameras = [{"Model": "imx708", "Id": "/base/soc/i2c0mux/i2c@1/imx708@1a"}]
    init_errors: list[BaseException] = []  # raised by the next constructions, one each
    usb = False
    capture_error: BaseException | None = None
    configure_error: BaseException | None = None
    instances: list["FakePicamera2"] = []

    @classmethod
    def global_camera_info(cls):
        return cls.cameras

    def __init__(self, camera_num=0):
        if self.init_errors:
            raise self.init_errors.pop(0)
        self.calls = []
        self.camera_properties = {"Model": "uvc"} if self.usb else {
            "Model": "imx708", "ColorFilterArrangement": 0}
        self.camera_controls = {} if self.usb else {"FrameDurationLimits": (33333, 120000000, 33333)}
        type(self).instances.append(self)

    def create_video_configuration(self, main=None, buffer_count=6, controls=None, **kw):
        config = {"main": dict(main or {}), "buffer_count": buffer_count, "controls": controls}
        self.calls.append(("create_video_configuration", config))
        return config

    def configure(self, config):
        if self.configure_error is not None:
            raise self.configure_error
        self.calls.append(("configure",))

    def start(self):
        self.calls.append(("start",))

    def capture_array(self, name="main", wait=None):
        self.calls.append(("capture_array", name, wait))
        if self.capture_error is not None:
            return FakeJob(error=self.capture_error)
        w, h = (320, 240)
        return FakeJob(result=render(len(self.calls), (w, h)))

    def stop(self):
        self.calls.append(("stop",))

    def close(self):
        self.calls.append(("close",))


@pytest.fixture
def fake_picamera2(monkeypatch):
    module = types.ModuleType("picamera2")

    class Cam(FakePicamera2):
        instances = []
        init_errors = []
    module.Picamera2 = Cam
    monkeypatch.setitem(sys.modules, "picamera2", module)
    return Cam


def chained(outer: str, inner: str) -> RuntimeError:
    """An error built the way picamera2 builds it: libcamera's error, re-raised generically."""
    try:
        try:
            raise RuntimeError(inner)
        except RuntimeError:
            raise RuntimeError(outer)  # noqa: B904 - chained as picamera2 chains it (__context__)
    except RuntimeError as exc:
        return exc


def test_picamera2_missing_means_no_camera_support(monkeypatch):
    monkeypatch.setitem(sys.modules, "picamera2", None)  # import picamera2 -> ImportError
    with pytest.raises(CameraError) as err:
        Picamera2Source().open((768, 768))
    assert str(err.value) == "no camera support (python3-picamera2 is not installed)"


def test_picamera2_with_no_camera_says_how_to_check(fake_picamera2):
    fake_picamera2.cameras = []
    with pytest.raises(CameraError) as err:
        Picamera2Source().open((768, 768))
    assert str(err.value) == "no camera found (is it enabled? `rpicam-hello --list-cameras`)"
    assert fake_picamera2.instances == []


def test_picamera2_busy_camera(fake_picamera2):
    fake_picamera2.init_errors = [chained("Camera __init__ sequence did not complete.",
                                          "Failed to acquire camera: Device or resource busy")]
    with pytest.raises(CameraError) as err:
        Picamera2Source().open((768, 768))
    assert str(err.value).startswith("camera busy: another program uses it")


def test_picamera2_other_open_failure_names_the_cause(fake_picamera2):
    fake_picamera2.init_errors = [chained("Camera __init__ sequence did not complete.",
                                          "Initialization failed.")]
    with pytest.raises(CameraError, match="camera could not be opened: .*Initialization failed"):
        Picamera2Source().open((768, 768))


def test_picamera2_configure_failure_releases_the_camera(fake_picamera2):
    fake_picamera2.configure_error = RuntimeError("Failed to allocate buffers.")
    with pytest.raises(CameraError, match="camera could not be started: Failed to allocate"):
        Picamera2Source().open((768, 768))
    (cam,) = fake_picamera2.instances
    assert cam.calls[-2:] == [("stop",), ("close",)]


def test_picamera2_streams_rgb_frames_and_releases_the_camera(fake_picamera2):
    source = Picamera2Source(frame_rate=10.0)
    assert isinstance(source, FrameSource)
    source.open((768, 768))
    (cam,) = fake_picamera2.instances
    name, config = cam.calls[0]
    assert config["main"] == {"size": (768, 768), "format": "BGR888"}  # numpy order [R, G, B]
    assert config["controls"] == {"FrameDurationLimits": (100000, 100000)}
    assert cam.calls[1:3] == [("configure",), ("start",)]
    first, second = source.latest(), source.latest()
    assert (first.number, second.number) == (0, 1)
    assert first.rgb.shape == (240, 320, 3) and read_number(first.rgb) == 4
    assert cam.calls[3] == ("capture_array", "main", False)
    source.close()
    source.close()
    assert cam.calls[-2:] == [("stop",), ("close",)] and not source.is_open
    assert source.latest() is None


def test_picamera2_usb_webcam_is_asked_for_mjpeg(fake_picamera2):
    fake_picamera2.usb = True
    source = Picamera2Source()
    source.open((1024, 768))
    config = fake_picamera2.instances[0].calls[0][1]
    assert config["main"] == {"size": (1024, 768), "format": "MJPEG"} and config["controls"] == {}
    source.close()


@pytest.mark.parametrize("error,message", [
    (RuntimeError("dma buffer gone"), "capture failed: dma buffer gone"),
    (concurrent.futures.TimeoutError(), "capture failed: no frame from the camera in 2 s"),
])
def test_picamera2_capture_errors(fake_picamera2, error, message):
    source = Picamera2Source(timeout_s=2.0)
    source.open((768, 768))
    fake_picamera2.instances[0].capture_error = error
    with pytest.raises(CameraError) as err:
        source.latest()
    assert str(err.value) == message
    source.close()


@in_loop
async def test_streamer_on_picamera2_reports_a_busy_camera_and_streams_once_free(fake_picamera2):
    busy = chained("Camera __init__ sequence did not complete.",
                   "Failed to acquire camera: Device or resource busy")
    fake_picamera2.init_errors = [busy, busy]  # busy at 0 s and 30 s, free at 60 s
    vt = VirtualTime(limit=61.0)
    send = Recorder(vt)
    streamer, events = make_streamer(vt, Picamera2Source(), send, retry_s=30.0)
    streamer.start()
    await asyncio.wait_for(vt.parked.wait(), 10)
    assert len(events["faults"]) == 1 and events["faults"][0].startswith("camera busy")
    assert streamer.faults == 2 and len(fake_picamera2.instances) == 1
    assert events["active"] == [True] and streamer.sent == 2
    assert [t for t, _ in send.sent] == [60.0, 60.5]
    streamer.stop()
    await streamer.wait_stopped()
    assert fake_picamera2.instances[0].calls[-2:] == [("stop",), ("close",)]
    assert events["active"] == [True, False]
