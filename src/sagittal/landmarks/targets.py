"""Training targets (pure numpy): heatmaps and offsets on the model's input grid.

Channels (``CHANNELS``): a vertebral-body centre heatmap; for each of the six contract points
its offset from the body centre (x, y, in units of ``OFFSET_UNIT`` input pixels) and its own
heatmap; the two S1 endplate corners; femoral-head centres and their radius.
"""

from __future__ import annotations

import numpy as np

from ..levels import POINT_NAMES

OFFSET_UNIT = 16.0
RADIUS_UNIT = 32.0
C_CENTRE = 0
C_OFFSETS = slice(1, 13)  # 6 points × (dx, dy)
C_POINTS = slice(13, 19)  # one heatmap per point type
C_S1 = slice(19, 21)  # anterior, posterior
C_HEAD = 21
C_RADIUS = 22
N_CHANNELS = 23
CHANNELS = (["centre"] + [f"{p}_{a}" for p in POINT_NAMES for a in ("dx", "dy")] + [f"{p}_heat" for p in POINT_NAMES]
            + ["s1_anterior", "s1_posterior", "femoral_head", "femoral_radius"])


def splat(heat: np.ndarray, xy: np.ndarray, sigma: float) -> None:
    """Max-combine a Gaussian of ``sigma`` pixels at ``xy`` into ``heat`` (in place)."""
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


def make_targets(shape: tuple[int, int], vertebrae: np.ndarray, s1: np.ndarray | None, heads: np.ndarray,
                 radii: np.ndarray, sigma: float = 1.5) -> tuple[np.ndarray, np.ndarray]:
    """Targets ``(N_CHANNELS, rows, cols)`` and a regression mask ``(rows, cols)``.

    ``vertebrae (V, 6, 2)`` in input pixels (only vertebrae wholly in view), ``s1 (2, 2)`` or
    ``None``, ``heads (H, 2)`` and ``radii (H,)`` in input pixels.
    """
    t = np.zeros((N_CHANNELS, *shape), np.float32)
    mask = np.zeros(shape, np.float32)
    h, w = shape
    for pts in vertebrae:
        c = pts[:4].mean(axis=0)
        splat(t[C_CENTRE], c, sigma)
        ix, iy = int(round(c[0])), int(round(c[1]))
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                x, y = ix + dx, iy + dy
                if 0 <= x < w and 0 <= y < h:
                    off = (pts - np.array([x, y])) / OFFSET_UNIT
                    t[C_OFFSETS, y, x] = off.ravel()
                    mask[y, x] = 1.0
        for k in range(6):
            splat(t[C_POINTS.start + k], pts[k], sigma)
    if s1 is not None:
        splat(t[C_S1.start], s1[0], sigma)
        splat(t[C_S1.start + 1], s1[1], sigma)
    for c, r in zip(heads, radii):
        splat(t[C_HEAD], c, 2 * sigma)
        ix, iy = int(round(c[0])), int(round(c[1]))
        t[C_RADIUS, max(0, iy - 1):iy + 2, max(0, ix - 1):ix + 2] = r / RADIUS_UNIT
    return t, mask
