"""Image → model input: robust intensity normalisation and an aspect-preserving letterbox
into the model's fixed ``INPUT_SHAPE`` (rows, cols). Pure numpy/OpenCV, no torch.

The same function prepares training images (phantom renders) and clinical images, so the
model sees one distribution of inputs.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

INPUT_SHAPE = (256, 128)  # rows, cols: a standing spine is tall; sized for CPU training


@dataclass(frozen=True)
class Letterbox:
    """``input = (image - 0) * scale + offset`` in pixel ``[x, y]``; ``shape`` of the source."""

    scale: float
    offset: tuple[float, float]  # (x, y) in input pixels
    shape: tuple[int, int]  # source (rows, cols)

    def to_input(self, xy: np.ndarray) -> np.ndarray:
        return np.asarray(xy, float) * self.scale + np.asarray(self.offset)

    def to_source(self, xy: np.ndarray) -> np.ndarray:
        return (np.asarray(xy, float) - np.asarray(self.offset)) / self.scale


def normalise(image: np.ndarray) -> np.ndarray:
    """Bone-bright image → float32 in about [0, 1] by its 1st and 99.5th percentiles."""
    img = np.asarray(image, np.float32)
    step = max(1, int(np.sqrt(img.size / 250_000)))
    sample = img[::step, ::step]
    lo, hi = np.percentile(sample, (1.0, 99.5))
    if not np.isfinite(lo) or hi <= lo:
        return np.zeros_like(img)
    return np.clip((img - lo) / (hi - lo), 0.0, 1.0)


def letterbox(image: np.ndarray, shape: tuple[int, int] = INPUT_SHAPE, zoom_out: float = 1.0,
              window: tuple[int, int, int, int] | None = None) -> tuple[np.ndarray, Letterbox]:
    """Resize ``image`` to fit ``shape`` keeping its aspect ratio, centred, zero padded; with
    ``zoom_out`` > 1 it fills only 1 / ``zoom_out`` of the fit (a wider zero margin all round);
    with ``window`` ``(x0, y0, x1, y1)`` (pixels, end exclusive) only that part of the image is
    fitted (a magnified look), and the ``Letterbox`` still maps the whole image's pixels.

    Pixel centres map exactly: a source point ``p`` lands at ``p * scale + offset`` with
    ``(0, 0)`` the centre of the top-left pixel (docs/contract.md) on both sides.
    """
    if not zoom_out >= 1.0:  # NaN too
        raise ValueError(f"zoom_out must be at least 1 (the image shrunk inside the fit), not {zoom_out}")
    if window is not None:
        x0, y0, x1, y1 = window
        if not (0 <= x0 < x1 <= image.shape[1] and 0 <= y0 < y1 <= image.shape[0]):
            raise ValueError(f"window {window} is not inside the image ({image.shape[1]} x {image.shape[0]} px)")
        out, lb = letterbox(image[y0:y1, x0:x1], shape, zoom_out)
        ox, oy = lb.offset
        return out, Letterbox(scale=lb.scale, offset=(ox - x0 * lb.scale, oy - y0 * lb.scale), shape=image.shape[:2])
    rows, cols = image.shape[:2]
    scale = min(shape[0] / rows, shape[1] / cols) / zoom_out
    new_r, new_c = max(1, int(round(rows * scale))), max(1, int(round(cols * scale)))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(image.astype(np.float32), (new_c, new_r), interpolation=interp)
    out = np.zeros(shape, np.float32)
    top, left = (shape[0] - new_r) // 2, (shape[1] - new_c) // 2
    out[top:top + new_r, left:left + new_c] = resized
    # exact scale per axis after rounding; use the mean (differences are < 1/rows)
    sx, sy = new_c / cols, new_r / rows
    s = (sx + sy) / 2
    # pixel-centre convention: x_in + 0.5 = (x_src + 0.5) * s + left
    return out, Letterbox(scale=s, offset=(left + 0.5 * s - 0.5, top + 0.5 * s - 0.5), shape=(rows, cols))


def exposed_box(image: np.ndarray, flat_fraction: float = 0.01) -> tuple[float, float, float, float]:
    """``(x0, y0, x1, y1)`` pixels of the exposed field: borders whose rows (or columns) are flat
    — their 15th–85th percentile range under ``flat_fraction`` of the image's, so that burned-in
    text, ruler ticks and the other bands at the corners do not count — are collimation or padding, not anatomy. A vertebra
    with a point outside this box is not wholly in view."""
    img = np.asarray(image, np.float32)
    step = max(1, int(np.sqrt(img.size / 1_000_000)))
    small = img[::step, ::step]
    span = float(small.max() - small.min())
    if span <= 0:
        return 0.0, 0.0, float(img.shape[1] - 1), float(img.shape[0] - 1)
    lo_r, hi_r = np.percentile(small, (15, 85), axis=1)
    lo_c, hi_c = np.percentile(small, (15, 85), axis=0)
    flat_rows = (hi_r - lo_r) < flat_fraction * span
    flat_cols = (hi_c - lo_c) < flat_fraction * span

    def lead(flags: np.ndarray) -> int:
        return int(np.argmin(flags)) if not flags.all() else len(flags)

    r0, r1 = lead(flat_rows), lead(flat_rows[::-1])
    c0, c1 = lead(flat_cols), lead(flat_cols[::-1])
    return (float(c0 * step), float(r0 * step), float(img.shape[1] - 1 - c1 * step), float(img.shape[0] - 1 - r1 * step))
