"""The vision loop: sample the camera at a fixed rate and hand each new frame, as JPEG, to ``send``.

``VisionStreamer`` runs while a conversation is active (the shell calls ``start()`` and
``stop()``). On each pacer tick it takes the source's newest frame, skips it if it is the one it
already took, encodes it and calls ``send(jpeg)``; ``send`` returns False when no session is up,
and the frame is then dropped, never queued.

Threads: every call into the source (open, latest, close) and the JPEG encode run on one private
worker thread, one at a time, so the event loop never waits on the camera and the source is never
used from two threads at once. ``stop()`` therefore never blocks: it cancels the loop's task and
queues the close on that thread, behind whatever is running there (even an ``open`` in progress),
so the camera is always released; ``await wait_stopped()`` waits for it. The privacy indicator
``on_active(True)`` follows a successful open and ``on_active(False)`` the completed close.

Faults: a CameraError (or any other failure of the source or the encoder) is reported with
``on_fault(message)`` once per distinct message between a ``start()`` and the next, the source is
closed, and it is opened again after ``retry_s``; nothing is raised out, so audio carries on.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import aclosing

from talkie.vision.jpeg import encode
from talkie.vision.pacer import Pacer
from talkie.vision.source import CameraError, Frame, FrameSource

log = logging.getLogger(__name__)

ENCODE_MS_KEPT = 1000
#: How often a snapshot looks for the camera's first frame.
SNAPSHOT_POLL_S = 0.05


class VisionStreamer:
    """Streams ``source`` to ``send`` at ``fps`` while running. See the module docstring.

    Counters: ``sent``, ``skipped_same`` (the source had no newer frame), ``skipped_late`` (ticks
    missed because encode + send took longer than a period), ``dropped_no_session`` (``send``
    returned False), ``no_frame`` (the source had no frame yet), ``send_errors`` (``send`` raised),
    ``faults`` (camera faults, reported or not), ``opens``; ``encode_ms`` keeps the last 1000
    encode times.
    """

    def __init__(
        self,
        source: FrameSource,
        send: Callable[[bytes], Awaitable[bool] | bool],
        *,
        fps: float = 2.0,
        size: tuple[int, int] = (768, 768),
        max_side: int = 768,
        quality: int = 75,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        on_fault: Callable[[str], None],
        on_active: Callable[[bool], None] = lambda on: None,
        retry_s: float = 30.0,
    ) -> None:
        if not (len(size) == 2 and all(int(v) >= 16 for v in size)):
            raise ValueError(f"size must be (width, height) of at least 16 px, got {size}")
        if not 1 <= quality <= 100 or max_side < 16 or retry_s <= 0:
            raise ValueError("quality 1 to 100, max_side >= 16 and retry_s > 0 are required")
        self.source = source
        self.size = (int(size[0]), int(size[1]))
        self.max_side = max_side
        self.quality = quality
        self.retry_s = retry_s
        self._send = send
        self._sleep = sleep
        self._on_fault = on_fault
        self._on_active = on_active
        self._pacer = Pacer(fps, clock, sleep)
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="talkie-camera")
        self._task: asyncio.Task | None = None
        self._closing: asyncio.Future | None = None
        self._active = False
        self._reported: set[str] = set()
        self._last_number: int | None = None
        self.sent = self.skipped_same = self.dropped_no_session = self.no_frame = 0
        self.send_errors = self.faults = self.opens = 0
        self.encode_ms: deque[float] = deque(maxlen=ENCODE_MS_KEPT)

    # -- control (loop thread) ---------------------------------------------------------------

    @property
    def running(self) -> bool:
        """True from ``start()`` to ``stop()``, faults included."""
        return self._task is not None

    @property
    def active(self) -> bool:
        """True while the camera is open (what the indicator shows)."""
        return self._active

    @property
    def skipped_late(self) -> int:
        """Ticks skipped because the previous frame's encode + send overran its period."""
        return self._pacer.skipped

    def start(self) -> None:
        """Start streaming (from the loop thread); no-op when running."""
        if self._task is not None:
            return
        self._reported.clear()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="talkie-vision")

    def stop(self) -> None:
        """Stop streaming and release the camera, without blocking; no-op when stopped."""
        if self._task is None:
            return
        self._task.cancel()
        self._task = None
        self._closing = asyncio.wrap_future(self._worker.submit(self._close_source))
        self._closing.add_done_callback(lambda _: self._set_active(False))

    def shutdown(self) -> None:
        """Stop, and let the camera thread end once the camera is closed (the streamer is done
        with: a new one takes over, or the daemon stops)."""
        self.stop()
        self._worker.shutdown(wait=False)

    async def wait_stopped(self) -> None:
        """Wait until the close queued by ``stop()`` has run (returns at once if never started)."""
        if self._closing is not None:
            await asyncio.shield(self._closing)

    async def snapshot(self, timeout_s: float = 5.0) -> bytes:
        """One frame, taken now, as JPEG (``look``): from the camera the stream has open, or
        opening it for this frame alone (the privacy light shows meanwhile). Raises CameraError
        (or TimeoutError) when there is none."""
        opened = not self._active
        if opened:
            await self._in_worker(self.source.open, self.size)
            self._set_active(True)
        try:
            async with asyncio.timeout(timeout_s):
                while True:
                    frame, jpeg, _ = await self._in_worker(self._grab, None)
                    if jpeg is not None:
                        return jpeg
                    await self._sleep(SNAPSHOT_POLL_S)
        finally:
            if opened and self._task is None:  # nobody started streaming meanwhile
                await asyncio.shield(asyncio.wrap_future(self._worker.submit(self._close_source)))
                self._set_active(False)

    def stats(self) -> dict[str, float]:
        """The counters, for status and benches."""
        ms = sorted(self.encode_ms)
        return {
            "sent": self.sent,
            "skipped_same": self.skipped_same,
            "skipped_late": self.skipped_late,
            "dropped_no_session": self.dropped_no_session,
            "no_frame": self.no_frame,
            "faults": self.faults,
            "opens": self.opens,
            "encode_ms_p95": ms[min(len(ms) - 1, round(0.95 * (len(ms) - 1)))] if ms else 0.0,
        }

    # -- the loop's task ---------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            try:
                await self._in_worker(self.source.open, self.size)
            except Exception as exc:  # noqa: BLE001 - any failure of the camera is a fault
                await self._fault(exc)
                continue
            self.opens += 1
            self._last_number = None
            self._set_active(True)
            try:
                await self._stream()
            except Exception as exc:  # noqa: BLE001
                await self._fault(exc)

    async def _stream(self) -> None:
        async with aclosing(self._pacer.ticks()) as ticks:
            async for _tick in ticks:
                frame, jpeg, ms = await self._in_worker(self._grab, self._last_number)
                if frame is None:
                    self.no_frame += 1
                    continue
                if jpeg is None:
                    self.skipped_same += 1
                    continue
                self._last_number = frame.number
                self.encode_ms.append(ms)
                await self._deliver(jpeg)

    def _grab(self, last: int | None) -> tuple[Frame | None, bytes | None, float]:
        """Worker thread: the newest frame and, if it is new, its JPEG and the encode time."""
        frame = self.source.latest()
        if frame is None or frame.number == last:
            return frame, None, 0.0
        start = time.perf_counter()
        jpeg = encode(frame.rgb, max_side=self.max_side, quality=self.quality)
        return frame, jpeg, (time.perf_counter() - start) * 1000.0

    async def _deliver(self, jpeg: bytes) -> None:
        try:
            result = self._send(jpeg)
            if inspect.isawaitable(result):
                result = await result
        except Exception as exc:  # noqa: BLE001 - the link's problem, not the camera's
            self.send_errors += 1
            if self.send_errors == 1:
                log.warning("vision: sending a frame failed: %s", exc)
            return
        if result is False:
            self.dropped_no_session += 1
        else:
            self.sent += 1

    async def _fault(self, exc: Exception) -> None:
        """Report (once per message), close the source, wait ``retry_s`` before the next open."""
        message = (
            str(exc)
            if isinstance(exc, CameraError)
            else (f"capture failed: {type(exc).__name__}: {exc}")
        )
        self.faults += 1
        if message not in self._reported:
            self._reported.add(message)
            try:
                self._on_fault(message)
            except Exception:
                log.exception("vision: on_fault failed")
        await self._in_worker(self._close_source)
        self._set_active(False)
        await self._sleep(self.retry_s)

    # -- helpers -----------------------------------------------------------------------------

    async def _in_worker(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self._worker, fn, *args)

    def _close_source(self) -> None:
        """Worker thread: close the source; a failure to close is logged, never raised."""
        try:
            self.source.close()
        except Exception:
            log.exception("vision: closing the camera failed")

    def _set_active(self, on: bool) -> None:
        if on == self._active:
            return
        self._active = on
        try:
            self._on_active(on)
        except Exception:
            log.exception("vision: on_active failed")
