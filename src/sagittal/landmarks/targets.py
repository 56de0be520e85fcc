"""Training targets of the two networks (pure numpy), and the channel layouts said once.

Coarse maps (stride ``COARSE_STRIDE`` on the model input; output cell ``(i, j)`` is centred on
input pixel ``[x, y] = [2 j + 0.5, 2 i + 0.5]``):

- ``C_CENTRE`` body-centre heatmap (centre = mean of the four corners);
- ``C_OFFSETS`` the six points' offsets from the cell, ``(dx, dy)`` each, in ``OFFSET_UNIT``
  input pixels, supervised on the 3 × 3 cells about each centre;
- ``C_S1`` the anterior and posterior S1 corners; ``C_HEAD`` femoral-head centres;
  ``C_RADIUS`` the head radius in ``RADIUS_UNIT`` input pixels about each head centre.

Refine maps (full crop resolution, one spatial-softmax distribution per channel):
``R_VERTEBRA`` the six points of the centred body in ``POINT_NAMES`` order, ``R_S1``
anterior and posterior S1 corners, ``R_HEADS`` the two femoral-head centres, ordered by
``head_order``.
"""

from __future__ import annotations

import numpy as np

COARSE_STRIDE = 2
OFFSET_UNIT = 16.0
RADIUS_UNIT = 32.0
C_CENTRE = 0
C_OFFSETS = slice(1, 13)
C_S1 = slice(13, 15)
C_HEAD = 15
C_RADIUS = 16
COARSE_CHANNELS = 17
COARSE_HEAT = (C_CENTRE, 13, 14, C_HEAD)

R_VERTEBRA = slice(0, 6)
R_S1 = slice(6, 8)
R_HEADS = slice(8, 10)
REFINE_CHANNELS = 10
KINDS = {"vertebra": R_VERTEBRA, "s1": R_S1, "hips": R_HEADS}


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


def to_cells(xy_input: np.ndarray) -> np.ndarray:
    """Model-input pixels → coarse cell coordinates (same pixel-centre convention)."""
    return (np.asarray(xy_input, float) + 0.5) / COARSE_STRIDE - 0.5


def to_input(xy_cells: np.ndarray) -> np.ndarray:
    return (np.asarray(xy_cells, float) + 0.5) * COARSE_STRIDE - 0.5


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
    for c, r in zip(heads, radii):
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
