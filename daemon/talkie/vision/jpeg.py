"""RGB frame -> JPEG for the Live session, with simplejpeg (libjpeg-turbo; what picamera2 uses).

Frames larger than ``max_side`` are scaled down first, never up, keeping the aspect ratio
(1024x768 -> 768x576). Scaling is done in numpy in two steps: an exact area average over whole
blocks of ``f x f`` pixels, where ``f`` is the integer part of the ratio (so no pixel is skipped
and nothing aliases), then separable linear interpolation for the rest of the ratio (always less
than 2 there, where a 2-tap filter still sees every pixel). In practice the camera is asked for
the final size and the ISP scales in hardware, so this path mostly serves odd webcams.
"""

from __future__ import annotations

import numpy as np

MIME_TYPE = "image/jpeg"


def _import_simplejpeg():
    import simplejpeg  # imported lazily: only the vision path needs it

    return simplejpeg


def fit(height: int, width: int, max_side: int) -> tuple[int, int]:
    """The (height, width) a frame is sent at: scaled so its longer side is ``max_side`` at most."""
    longest = max(height, width)
    if longest <= max_side:
        return height, width
    scale = max_side / longest
    return max(1, round(height * scale)), max(1, round(width * scale))


def _box(rgb: np.ndarray, f: int) -> np.ndarray:
    """Average over f x f blocks (rows/columns beyond a whole block are dropped: < f pixels).
    Sums strided views (f + f additions of whole planes), much faster than a 4-D reshape sum."""
    h, w = rgb.shape[0] // f * f, rgb.shape[1] // f * f
    wide = np.uint16 if f * f * 255 < 65536 else np.uint32
    rows = np.zeros((h // f, w, 3), dtype=wide)
    for i in range(f):
        rows += rgb[i:h:f, :w]
    blocks = np.zeros((h // f, w // f, 3), dtype=wide)
    for j in range(f):
        blocks += rows[:, j::f]
    return ((blocks + f * f // 2) // (f * f)).astype(np.uint8)


def _linear(rgb: np.ndarray, axis: int, size: int) -> np.ndarray:
    """Resample uint8 ``rgb`` along ``axis`` to ``size`` samples by linear interpolation (pixel
    centres aligned), in 8-bit fixed point on uint16."""
    n = rgb.shape[axis]
    if n == size:
        return rgb
    pos = np.clip((np.arange(size) + 0.5) * (n / size) - 0.5, 0, n - 1)
    i0 = pos.astype(np.intp)
    i1 = np.minimum(i0 + 1, n - 1)
    shape = [1, 1, 1]
    shape[axis] = size
    w = np.round((pos - i0) * 256).astype(np.uint16).reshape(shape)
    out = np.take(rgb, i0, axis=axis).astype(np.uint16) * (256 - w)
    out += np.take(rgb, i1, axis=axis).astype(np.uint16) * w
    out += 128
    out >>= 8
    return out.astype(np.uint8)


def downscale(rgb: np.ndarray, max_side: int) -> np.ndarray:
    """``rgb`` scaled down to fit ``max_side`` (the same array if it already fits)."""
    height, width = rgb.shape[:2]
    out_h, out_w = fit(height, width, max_side)
    if (out_h, out_w) == (height, width):
        return rgb
    f = int(max(height, width) // max(out_h, out_w))
    small = _box(rgb, f) if f >= 2 else rgb
    return _linear(_linear(small, 0, out_h), 1, out_w)


def encode(rgb: np.ndarray, *, max_side: int = 768, quality: int = 75) -> bytes:
    """JPEG (baseline, 4:2:0) of an (H, W, 3) uint8 RGB frame, scaled down to ``max_side``."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB array, got {rgb.shape} {rgb.dtype}")
    if not 1 <= quality <= 100:
        raise ValueError(f"JPEG quality must be 1 to 100, got {quality}")
    if max_side < 16:
        raise ValueError(f"max_side must be at least 16, got {max_side}")
    small = np.ascontiguousarray(downscale(rgb, max_side))
    return _import_simplejpeg().encode_jpeg(
        small, quality=quality, colorspace="RGB", colorsubsampling="420"
    )
