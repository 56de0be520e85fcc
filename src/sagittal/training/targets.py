"""Training targets of the two landmark networks (pure numpy), in the channel layouts of
``sagittal.landmarks.layout``."""

from __future__ import annotations

import numpy as np

from ..landmarks.layout import (
    C_CENTRE,
    C_HEAD,
    C_OFFSETS,
    C_RADIUS,
    C_S1,
    COARSE_CHANNELS,
    COARSE_STRIDE,
    OFFSET_UNIT,
    RADIUS_UNIT,
    to_cells,
    to_input,
)


def splat(heat: np.ndarray, xy: np.ndarray, sigma: float) -> None:
    """Max-combine a Gaussian of ``sigma`` cells centred at ``xy`` (cell units) into ``heat``."""
    h, w = heat.shape
    r = int(np.ceil(3 * sigma))
    cx, cy = float(xy[0]), float(xy[1])
    x0, x1 = max(0, int(np.floor(cx)) - r), min(w, int(np.floor(cx)) + r + 2)
    y0, y1 = max(0, int(np.floor(cy)) - r), min(h, int(np.floor(cy)) + r + 2)
    if x0 >= x1 or y0 >= y1:
        return
    xs = np.arange(x0, x1, dtype=np.float32) - cx
    ys = np.arange(y0, y1, dtype=np.float32) - cy
    g = np.exp(-(ys[:, None] ** 2 + xs[None, :] ** 2) / (2 * sigma * sigma))
    np.maximum(heat[y0:y1, x0:x1], g, out=heat[y0:y1, x0:x1])


def coarse_targets(shape: tuple[int, int], vertebrae: np.ndarray, s1: np.ndarray | None, heads: np.ndarray,
                   radii: np.ndarray, sigma: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Targets ``(COARSE_CHANNELS, rows / 2, cols / 2)`` and a regression mask of the same grid.

    ``shape`` is the model input (rows, cols); ``vertebrae (V, 6, 2)``, ``s1 (2, 2)`` or
    ``None``, ``heads (H, 2)`` and ``radii (H,)`` are in model-input pixels.
    """
    h, w = shape[0] // COARSE_STRIDE, shape[1] // COARSE_STRIDE
    t = np.zeros((COARSE_CHANNELS, h, w), np.float32)
    mask = np.zeros((h, w), np.float32)
    for pts in vertebrae:
        c = to_cells(pts[:4].mean(axis=0))
        splat(t[C_CENTRE], c, sigma)
        ix, iy = int(round(c[0])), int(round(c[1]))
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                x, y = ix + dx, iy + dy
                if 0 <= x < w and 0 <= y < h:
                    t[C_OFFSETS, y, x] = ((pts - to_input(np.array([x, y]))) / OFFSET_UNIT).ravel()
                    mask[y, x] = 1.0
    if s1 is not None:
        splat(t[C_S1.start], to_cells(s1[0]), sigma)
        splat(t[C_S1.start + 1], to_cells(s1[1]), sigma)
    for c, r in zip(heads, radii, strict=False):
        cc = to_cells(c)
        splat(t[C_HEAD], cc, 1.5 * sigma)
        ix, iy = int(round(cc[0])), int(round(cc[1]))
        t[C_RADIUS, max(0, iy - 1):iy + 2, max(0, ix - 1):ix + 2] = r / RADIUS_UNIT
    return t, mask


def head_order(heads: np.ndarray) -> np.ndarray:
    """Indices ordering two head centres (crop pixels, anterior to the right): the more
    anterior-inferior first, by ``x + y``. When they nearly coincide either order is right."""
    heads = np.asarray(heads, float)
    return np.argsort(-(heads[:, 0] + heads[:, 1]), kind="stable")


def refine_targets(size: int, points: np.ndarray, sigma: float = 1.5) -> np.ndarray:
    """Normalised Gaussian targets ``(K, size, size)`` (each sums to 1) for ``points (K, 2)``
    in crop pixels; a point outside the crop gets an all-zero map (and no loss)."""
    t = np.zeros((len(points), size, size), np.float32)
    for k, p in enumerate(points):
        if np.all(np.isfinite(p)) and -0.5 <= p[0] <= size - 0.5 and -0.5 <= p[1] <= size - 0.5:
            splat(t[k], p, sigma)
            t[k] /= max(float(t[k].sum()), 1e-12)
    return t
