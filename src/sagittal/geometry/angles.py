"""Endplate directions and signed angle differences.

An endplate's direction is the angle, counter-clockwise from +x (anterior), of the vector
from its posterior to its anterior end. Walking cranially, a counter-clockwise turn is
lordotic and a clockwise turn kyphotic; so the kyphosis between an upper endplate ``u`` and
a lower endplate ``l`` is ``wrap(phi_l - phi_u)`` (docs/contract.md: kyphosis positive).
"""

from __future__ import annotations

import numpy as np


def wrap_deg(a: np.ndarray) -> np.ndarray:
    """Wrap angles to (-180, 180] degrees."""
    a = np.asarray(a, dtype=float)
    if not np.any((a <= -540.0) | (a > 540.0)):  # the usual case (NaN included): a difference of two angles
        a = np.where(a > 180.0, a - 360.0, a)
        return np.where(a <= -180.0, a + 360.0, a)
    return 180.0 - np.mod(180.0 - a, 360.0)


def endplate_angle_deg(posterior_mm: np.ndarray, anterior_mm: np.ndarray) -> np.ndarray:
    """Direction of the endplate ``posterior → anterior``; ``(..., 2)`` points → ``(...)`` degrees."""
    d = np.asarray(anterior_mm, dtype=float) - np.asarray(posterior_mm, dtype=float)
    deg: np.ndarray = np.degrees(np.arctan2(d[..., 1], d[..., 0]))
    return deg
