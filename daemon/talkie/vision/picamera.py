"""The Raspberry Pi camera (and USB webcams, which libcamera also drives) through picamera2.

``picamera2`` exists only in Raspberry Pi OS (``python3-picamera2``: it needs libcamera's Python
bindings), so it is imported when a camera is opened, never at module import.

The camera runs a *video* configuration (a continuous stream; the still configuration is tuned
for one-off full-resolution captures: one buffer, high-quality noise reduction, exposure up to a
second) with the main stream at the requested size, scaled by the ISP in hardware, so no frame
is ever resized on the CPU. Its format is "BGR888", which picamera2 names by libcamera's
convention and hands over as numpy pixels ordered [R, G, B], so frames need no channel swap
("RGB888" would arrive as [B, G, R]). A USB webcam has no ISP and offers only its own formats,
so it is asked for "MJPEG", which picamera2 decodes to an RGB array. The sensor runs at
``frame_rate`` (10 fps: ten times the 2 fps sampled is fresh enough and spares memory bandwidth).

picamera2 keeps the most recent completed frame (``queue=True`` with more than one buffer), so
``latest()`` copies that frame out at once, or waits for the next one: at most ``timeout_s``, so
a stalled camera is a fault, not a hang.
"""

from __future__ import annotations

import logging
import time

import numpy as np

from talkie.vision.source import CameraError, Frame

log = logging.getLogger(__name__)

NO_SUPPORT = "no camera support (python3-picamera2 is not installed)"
NO_CAMERA = "no camera found (is it enabled? `rpicam-hello --list-cameras`)"
BUSY = (
    "camera busy: another program uses it (stop it, e.g. an rpicam-* command "
    "or another camera service)"
)


def _import_picamera2():
    """The Picamera2 class, or a CameraError saying what to install."""
    try:
        from picamera2 import Picamera2
    except ImportError as exc:  # no picamera2, or no libcamera bindings under it
        raise CameraError(NO_SUPPORT) from exc
    return Picamera2


def _reason(exc: BaseException) -> str:
    """The messages of an exception and of what caused it (picamera2 wraps libcamera's error in
    a generic "Camera __init__ sequence did not complete.")."""
    parts: list[str] = []
    cause: BaseException | None = exc
    while cause is not None and len(parts) < 4:
        parts.append(str(cause))
        cause = cause.__cause__ or cause.__context__
    return ": ".join(p for p in parts if p)


class Picamera2Source:
    """A FrameSource on picamera2: camera ``camera_num`` streaming at the size given to ``open``.

    Frames are numbered from 0 over the life of the object (across reopens).
    """

    def __init__(
        self, camera_num: int = 0, *, frame_rate: float = 10.0, timeout_s: float = 2.0
    ) -> None:
        self.camera_num = camera_num
        self.frame_rate = frame_rate
        self.timeout_s = timeout_s
        self._cam = None
        self._number = 0

    @property
    def is_open(self) -> bool:
        """True between a successful ``open`` and ``close``."""
        return self._cam is not None

    def open(self, size: tuple[int, int]) -> None:
        """Acquire, configure and start the camera; CameraError says what is wrong."""
        if self._cam is not None:
            return
        picamera2 = _import_picamera2()
        try:
            cameras = picamera2.global_camera_info()
        except Exception as exc:  # libcamera itself failed to start
            raise CameraError(f"camera system failed: {_reason(exc)}") from exc
        if len(cameras) <= self.camera_num:
            raise CameraError(NO_CAMERA)
        try:
            cam = picamera2(self.camera_num)
        except Exception as exc:
            reason = _reason(exc)
            if "busy" in reason.lower() or "acquire" in reason.lower():
                raise CameraError(BUSY) from exc
            raise CameraError(f"camera could not be opened: {reason}") from exc
        try:
            rpi = "ColorFilterArrangement" in cam.camera_properties  # a sensor behind the ISP
            controls = {}
            if rpi and "FrameDurationLimits" in cam.camera_controls:
                period_us = int(1_000_000 / self.frame_rate)
                controls["FrameDurationLimits"] = (period_us, period_us)
            config = cam.create_video_configuration(
                main={"size": tuple(size), "format": "BGR888" if rpi else "MJPEG"},
                buffer_count=3,
                controls=controls,
            )
            cam.configure(config)
            cam.start()
        except Exception as exc:
            _close_quietly(cam)
            raise CameraError(f"camera could not be started: {_reason(exc)}") from exc
        self._cam = cam

    def latest(self) -> Frame | None:
        """The most recent frame as RGB (waits at most ``timeout_s`` for one)."""
        if self._cam is None:
            return None
        try:
            job = self._cam.capture_array("main", wait=False)
            rgb = job.get_result(timeout=self.timeout_s)
        except TimeoutError as exc:  # concurrent.futures.TimeoutError is TimeoutError (3.11)
            raise CameraError(
                f"capture failed: no frame from the camera in {self.timeout_s:g} s"
            ) from exc
        except Exception as exc:
            raise CameraError(f"capture failed: {_reason(exc)}") from exc
        rgb = np.asarray(rgb)
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise CameraError(f"capture failed: unexpected frame {rgb.shape} {rgb.dtype}")
        frame = Frame(self._number, rgb, time.monotonic())
        self._number += 1
        return frame

    def close(self) -> None:
        """Stop the camera and release it to other programs; idempotent."""
        cam, self._cam = self._cam, None
        if cam is not None:
            _close_quietly(cam)


def _close_quietly(cam) -> None:
    """Stop and close a Picamera2, whatever state it is in (close() stops it too, but stop
    first so that a failing close still leaves the sensor off)."""
    for step in (cam.stop, cam.close):
        try:
            step()
        except Exception as exc:  # noqa: BLE001 - releasing must go on
            log.warning("camera: %s failed while releasing it: %s", step.__name__, exc)
