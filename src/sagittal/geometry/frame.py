"""Pixel landmarks to the sagittal patient frame — the one place this conversion happens.

Image points are ``[x, y] = [column, row]`` (docs/contract.md), spacing is ``[row, column]`` mm as
DICOM stores it, and ``anterior`` is the image side the patient faces. The patient frame is
mm with +x anterior and +y superior; its origin is the image's top-left pixel centre (every
quantity sagittal reports is translation invariant).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike


def facing_sign(anterior: ArrayLike) -> np.ndarray:
    """+1 where the patient faces the image's right, -1 for left, NaN otherwise."""
    a = np.asarray(anterior)
    return np.where(a == "right", 1.0, np.where(a == "left", -1.0, np.nan))


def pixels_to_patient(points_px: ArrayLike, spacing_mm: ArrayLike, anterior: ArrayLike) -> np.ndarray:
    """Map ``points_px : (..., 2)`` ``[col, row]`` to ``(..., 2)`` mm ``[x anterior, y superior]``.

    ``spacing_mm : (..., 2)`` is ``[row, col]``; its leading shape, and that of ``anterior``
    (``"left"``/``"right"``), broadcast against ``points_px[..., 0]`` — for a batch of
    spines ``(N, L, 6, 2)`` pass ``(N, 1, 1, 2)`` spacings. Exact for non-square pixels.
    """
    p = np.asarray(points_px, dtype=float)
    sp = np.asarray(spacing_mm, dtype=float)
    x = facing_sign(anterior) * p[..., 0] * sp[..., 1]
    y = -p[..., 1] * sp[..., 0]
    return np.stack(np.broadcast_arrays(x, y), axis=-1)
