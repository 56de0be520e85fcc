"""Crops for the refinement stage: a square window of the full-resolution image about one
structure, scaled to its size and mirrored so that anterior is always to the right (pure
numpy/OpenCV, no torch).

A crop pixel ``q`` and a source pixel ``p`` (both ``[x, y]``, ``(0, 0)`` the centre of the
top-left pixel) are related by ``q = s R F (p - centre) + (CROP - 1) / 2`` with
``s = CROP / side_px``, ``F = diag(-1, 1)`` when mirrored and ``R`` a rotation (training only).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

CROP = 64
#: crop side / structure size: a body and the endplates of its neighbours; the S1 endplate and
#: the sacral promontory; both femoral heads with their rims
SPAN = {"vertebra": 2.4, "s1": 1.9, "hips": 2.2}


@dataclass(frozen=True)
class CropFrame:
    centre: tuple[float, float]  # source pixels
    side_px: float  # source pixels spanned by the crop's side
    mirror: bool  # True when the patient faces the image's left
    angle_rad: float = 0.0

    def _linear(self) -> np.ndarray:
        s = CROP / self.side_px
        c, n = math.cos(self.angle_rad), math.sin(self.angle_rad)
        f = np.diag([-1.0 if self.mirror else 1.0, 1.0])
        return s * np.array([[c, -n], [n, c]]) @ f

    def matrix(self) -> np.ndarray:
        """``(2, 3)`` affine, source pixels → crop pixels."""
        a = self._linear()
        t = (CROP - 1) / 2 - a @ np.asarray(self.centre, float)
        return np.concatenate([a, t[:, None]], axis=1)

    def to_crop(self, xy: np.ndarray) -> np.ndarray:
        m = self.matrix()
        return np.asarray(xy, float) @ m[:, :2].T + m[:, 2]

    def to_source(self, xy: np.ndarray) -> np.ndarray:
        m = self.matrix()
        return (np.asarray(xy, float) - m[:, 2]) @ np.linalg.inv(m[:, :2]).T


def vertebra_size(points: np.ndarray) -> np.ndarray:
    """Mean length of the four edges of a body, ``points (..., 6, 2)`` → ``(...)``."""
    p = np.asarray(points, float)
    edges = [(0, 1), (3, 2), (0, 3), (1, 2)]
    return np.mean([np.linalg.norm(p[..., a, :] - p[..., b, :], axis=-1) for a, b in edges], axis=0)


def vertebra_frame(points: np.ndarray, mirror: bool) -> CropFrame:
    return CropFrame(tuple(np.asarray(points)[:4].mean(axis=0)), SPAN["vertebra"] * float(vertebra_size(points)), mirror)


def s1_frame(s1: np.ndarray, mirror: bool) -> CropFrame:
    s1 = np.asarray(s1, float)
    return CropFrame(tuple(s1.mean(axis=0)), SPAN["s1"] * float(np.linalg.norm(s1[0] - s1[1])), mirror)


def hips_frame(centres: np.ndarray, radii: np.ndarray, mirror: bool) -> CropFrame:
    centres = np.asarray(centres, float).reshape(-1, 2)
    return CropFrame(tuple(centres.mean(axis=0)), SPAN["hips"] * 2 * float(np.mean(radii)), mirror)


def _window(image: np.ndarray, frame: CropFrame, extent: float = 1.0) -> tuple[np.ndarray, tuple[int, int]] | None:
    """The part of ``image`` a crop of ``frame`` (or of a frame ``extent`` times larger about the
    same centre, at any angle) samples, low-passed for ``frame``'s scale when the crop shrinks it
    (no aliasing), and its top-left pixel; ``None`` when the frame lies outside the image."""
    h, w = image.shape
    factor = frame.side_px / CROP
    half = 0.75 * frame.side_px * extent + 3 * factor + 2
    cx, cy = frame.centre
    x0, x1 = max(0, int(cx - half)), min(w, int(cx + half) + 1)
    y0, y1 = max(0, int(cy - half)), min(h, int(cy + half) + 1)
    if x1 <= x0 or y1 <= y0:
        return None
    win = np.asarray(image[y0:y1, x0:x1], np.float32)
    if factor > 1.3:
        win = np.asarray(cv2.GaussianBlur(win, (0, 0), 0.45 * factor), np.float32)
    return win, (x0, y0)


def _warp(window: tuple[np.ndarray, tuple[int, int]] | None, frame: CropFrame) -> np.ndarray:
    if window is None:
        return np.zeros((CROP, CROP), np.float32)
    win, origin = window
    m = frame.matrix()
    m[:, 2] += m[:, :2] @ np.asarray(origin, float)  # window pixel → source pixel first
    crop = cv2.warpAffine(win, m, (CROP, CROP), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    lo, hi = np.percentile(crop, (1.0, 99.0))
    if hi <= lo:
        return np.zeros((CROP, CROP), np.float32)
    return np.clip((crop - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)


def extract(image: np.ndarray, frame: CropFrame) -> np.ndarray:
    """The ``(CROP, CROP)`` float32 crop in [0, 1] (its own 1st–99th percentiles); outside the
    image is 0. The source is low-passed first when the crop shrinks it (no aliasing)."""
    return _warp(_window(image, frame), frame)


def extract_pair(image: np.ndarray, frame: CropFrame, other: CropFrame) -> tuple[np.ndarray, np.ndarray]:
    """``extract`` for ``frame`` and for ``other`` (the same centre, a little larger and turned:
    the consistency check's second look) from one low-passed window, so that the check does not
    filter the image twice; ``other`` shares ``frame``'s low-pass."""
    window = _window(image, frame, extent=max(1.0, other.side_px / frame.side_px))
    return _warp(window, frame), _warp(window, other)
