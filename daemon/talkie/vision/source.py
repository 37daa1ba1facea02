"""Frame sources: the interface the streamer reads from, and a synthetic camera.

``FrameSource`` is what the streamer needs of a camera: ``open(size)``, ``latest()`` and
``close()``. ``Picamera2Source`` (vision/picamera.py) is the real one; ``SyntheticSource`` here
produces real RGB frames (moving colour bars with the frame number drawn in big digits) for tests
and for machines without a camera. ``read_number(rgb)`` reads that number back, also from a
decoded JPEG, so a test can tell exactly which frame reached the other end.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np


class CameraError(Exception):
    """A camera problem in words a user can act on (no camera, busy, capture failed, ...)."""


@dataclass(frozen=True, eq=False)
class Frame:
    """One picture: its number (increasing while the source is open), (H, W, 3) uint8 RGB, time."""

    number: int
    rgb: np.ndarray
    t: float


@runtime_checkable
class FrameSource(Protocol):
    """A camera as the streamer sees it. All calls come from one thread (the streamer's camera
    thread), never concurrently."""

    def open(self, size: tuple[int, int]) -> None:
        """Start capturing at about ``size`` (width, height); raise CameraError with advice."""

    def latest(self) -> Frame | None:
        """The newest frame (None if none yet); never waits longer than about a frame period."""

    def close(self) -> None:
        """Stop capturing and release the camera; idempotent."""


# A 5x7 bitmap font for the ten digits, one string of 35 pixels per glyph (row by row).
_GLYPH_ROWS = {
    "0": ("01110", "10001", "10011", "10101", "11001", "10001", "01110"),
    "1": ("00100", "01100", "00100", "00100", "00100", "00100", "01110"),
    "2": ("01110", "10001", "00001", "00010", "00100", "01000", "11111"),
    "3": ("11111", "00010", "00100", "00010", "00001", "10001", "01110"),
    "4": ("00010", "00110", "01010", "10010", "11111", "00010", "00010"),
    "5": ("11111", "10000", "11110", "00001", "00001", "10001", "01110"),
    "6": ("00110", "01000", "10000", "11110", "10001", "10001", "01110"),
    "7": ("11111", "00001", "00010", "00100", "01000", "01000", "01000"),
    "8": ("01110", "10001", "10001", "01110", "10001", "10001", "01110"),
    "9": ("01110", "10001", "10001", "01111", "00001", "00010", "01100"),
}
GLYPHS = np.array([[[c == "1" for c in row] for row in _GLYPH_ROWS[str(d)]] for d in range(10)])
DIGITS = 7  # numbers are drawn zero-padded, modulo 10**DIGITS
_PANEL_COLS = DIGITS * 6 + 1  # font pixels across the panel: 5 per glyph + 1 gap, + 1 margin
_PANEL_ROWS = 9  # 7 + a margin above and below
_BARS = np.array(
    [
        [235, 235, 235],
        [235, 235, 16],
        [16, 235, 235],
        [16, 235, 16],
        [235, 16, 235],
        [235, 16, 16],
        [16, 16, 235],
        [40, 40, 40],
    ],
    dtype=np.uint8,
)


def _panel_geometry(height: int, width: int) -> tuple[float, float, float]:
    """(x0, y0, unit) in pixels of the number panel: a function of the image size only, and
    proportional to it, so the same frame scaled down reads back the same."""
    unit = min(0.9 * width / _PANEL_COLS, 0.4 * height / _PANEL_ROWS)
    return 0.05 * width, 0.05 * height, unit


def _panel_mask(number: int) -> np.ndarray:
    """The panel in font pixels (rows x cols), True where a digit is lit."""
    mask = np.zeros((_PANEL_ROWS, _PANEL_COLS), dtype=bool)
    for i, ch in enumerate(f"{number % 10**DIGITS:0{DIGITS}d}"):
        mask[1:8, 1 + 6 * i : 6 + 6 * i] = GLYPHS[int(ch)]
    return mask


def render(number: int, size: tuple[int, int]) -> np.ndarray:
    """Frame ``number`` at ``size`` (width, height): colour bars moving 8 px per frame, a vertical
    ramp in blue, and the number in white on a black panel at the top left."""
    width, height = size
    xs = (np.arange(width) + 8 * number) // max(1, width // 8)
    rgb = np.empty((height, width, 3), dtype=np.uint8)
    rgb[:] = _BARS[xs % len(_BARS)][None, :, :]
    rgb[..., 2] //= 2
    rgb[..., 2] += (np.arange(height, dtype=np.uint16) * 100 // max(1, height)).astype(np.uint8)[
        :, None
    ]
    x0, y0, unit = _panel_geometry(height, width)
    left, top = int(round(x0)), int(round(y0))
    right, bottom = int(round(x0 + unit * _PANEL_COLS)), int(round(y0 + unit * _PANEL_ROWS))
    cols = np.minimum(((np.arange(left, right) + 0.5 - x0) / unit).astype(int), _PANEL_COLS - 1)
    rows = np.minimum(((np.arange(top, bottom) + 0.5 - y0) / unit).astype(int), _PANEL_ROWS - 1)
    lit = _panel_mask(number)[rows[:, None], cols[None, :]]
    rgb[top:bottom, left:right] = np.where(lit[..., None], np.uint8(255), np.uint8(0))
    return rgb


def read_number(rgb: np.ndarray) -> int:
    """Read back the number drawn by ``render`` (modulo 10**DIGITS), from the centre of each font
    pixel; each digit is the glyph nearest in Hamming distance, so JPEG noise does not matter."""
    height, width = rgb.shape[:2]
    x0, y0, unit = _panel_geometry(height, width)
    grey = rgb.astype(np.float32).mean(axis=2)
    half = max(0, int(unit / 4))
    value = 0
    for i in range(DIGITS):
        bits = np.zeros((7, 5), dtype=bool)
        for r in range(7):
            for c in range(5):
                cy = int(y0 + (1 + r + 0.5) * unit)
                cx = int(x0 + (1 + 6 * i + c + 0.5) * unit)
                bits[r, c] = grey[cy - half : cy + half + 1, cx - half : cx + half + 1].mean() > 128
        value = value * 10 + int(np.argmin((bits != GLYPHS).sum(axis=(1, 2))))
    return value


class SyntheticSource:
    """A camera that films a test card: frame ``n`` is ``render(n)`` at the open size.

    Frames are numbered ``int((clock() - t0) * fps)`` from the first ``open`` (the count goes on
    across a close and reopen, like a scene that keeps moving); each is rendered on first demand
    and cached. Fault injection: ``fail_after=N`` makes ``latest()`` raise
    ``CameraError("capture failed: ...")`` once frame N is due, until the source is closed (once
    per source: after a reopen it works); ``fail_open=K`` makes the first K ``open`` calls raise
    ``CameraError(open_error)``. ``opens``/``closes`` count the calls that took effect.
    """

    def __init__(
        self,
        fps: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        *,
        fail_after: int | None = None,
        fail_open: int = 0,
        open_error: str = "camera busy: another program uses it",
    ) -> None:
        if fps <= 0:
            raise ValueError("fps must be positive")
        self.fps = fps
        self.clock = clock
        self.fail_after = fail_after
        self.fail_open = fail_open
        self.open_error = open_error
        self.opens = 0
        self.closes = 0
        self.size: tuple[int, int] | None = None
        self._t0: float | None = None
        self._cached: Frame | None = None
        self._failing = False

    @property
    def is_open(self) -> bool:
        """True between a successful ``open`` and ``close``."""
        return self.size is not None

    def open(self, size: tuple[int, int]) -> None:
        """Start 'capturing' at ``size`` (width, height)."""
        if self.fail_open > 0:
            self.fail_open -= 1
            raise CameraError(self.open_error)
        if self._t0 is None:
            self._t0 = self.clock()
        self.size = (int(size[0]), int(size[1]))
        self._cached = None
        self.opens += 1

    def latest(self) -> Frame | None:
        """The frame due now (rendered once per number); None when closed."""
        if self.size is None or self._t0 is None:
            return None
        number = int((self.clock() - self._t0) * self.fps)
        if self.fail_after is not None and number >= self.fail_after:
            self._failing = True
            raise CameraError(f"capture failed: synthetic fault at frame {number}")
        if self._cached is None or self._cached.number != number:
            self._cached = Frame(number, render(number, self.size), self._t0 + number / self.fps)
        return self._cached

    def close(self) -> None:
        """Stop; a pending injected capture fault is spent. Idempotent."""
        if self.size is not None:
            self.closes += 1
        self.size = None
        self._cached = None
        if self._failing:
            self.fail_after, self._failing = None, False
