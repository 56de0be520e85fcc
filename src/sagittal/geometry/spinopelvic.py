"""Sagittal parameters from landmarks (definitions: docs/contract.md; norms: docs/clinical.md).

All functions broadcast over leading batch dimensions; inputs in mm in the patient frame
(+x anterior, +y superior). "Horizontal" and "vertical" are the frame's axes, i.e. the image
axes of a standing radiograph.
"""

from __future__ import annotations

import numpy as np

from ..levels import AI, AS, LEVEL_INDEX, PI, PS
from .angles import endplate_angle_deg, wrap_deg

_L1, _T4, _T12, _C7, _T1 = (LEVEL_INDEX[k] for k in ("L1", "T4", "T12", "C7", "T1"))


def _s1_phi(s1_mm: np.ndarray) -> np.ndarray:
    s1 = np.asarray(s1_mm, dtype=float)
    return endplate_angle_deg(s1[..., 1, :], s1[..., 0, :])


def superior_phi_deg(points_mm: np.ndarray) -> np.ndarray:
    """Superior endplate directions ``(..., L)`` of ``points_mm : (..., L, 6, 2)``."""
    p = np.asarray(points_mm, dtype=float)
    return endplate_angle_deg(p[..., PS, :], p[..., AS, :])


def inferior_phi_deg(points_mm: np.ndarray) -> np.ndarray:
    """Inferior endplate directions ``(..., L)``."""
    p = np.asarray(points_mm, dtype=float)
    return endplate_angle_deg(p[..., PI, :], p[..., AI, :])


def sacral_slope_deg(s1_mm: np.ndarray) -> np.ndarray:
    """Angle of the S1 superior endplate to the horizontal, positive when its anterior end is lower.

    ``s1_mm : (..., 2, 2)`` anterior, posterior corner → ``(...)``.
    """
    return -wrap_deg(_s1_phi(s1_mm))


def pelvic_tilt_deg(s1_mm: np.ndarray, hip_mm: np.ndarray) -> np.ndarray:
    """Vertical through the hip axis vs the line hip axis → S1 midpoint; positive when the hip
    axis lies anterior to that midpoint. ``hip_mm : (..., 2)`` → ``(...)``."""
    s1 = np.asarray(s1_mm, dtype=float)
    d = s1.mean(axis=-2) - np.asarray(hip_mm, dtype=float)
    pt: np.ndarray = np.degrees(np.arctan2(-d[..., 0], d[..., 1]))
    return pt


def pelvic_incidence_deg(s1_mm: np.ndarray, hip_mm: np.ndarray) -> np.ndarray:
    """Perpendicular to the S1 endplate at its midpoint vs the line midpoint → hip axis.

    Signed so that ``PI = PT + SS`` holds identically (a hip axis anterior to the
    perpendicular gives a positive PI, as in every standing spine).
    """
    s1 = np.asarray(s1_mm, dtype=float)
    d = np.asarray(hip_mm, dtype=float) - s1.mean(axis=-2)
    to_hip = np.degrees(np.arctan2(d[..., 1], d[..., 0]))
    return wrap_deg(to_hip - (_s1_phi(s1) - 90.0))


def lumbar_lordosis_deg(points_mm: np.ndarray, s1_mm: np.ndarray) -> np.ndarray:
    """Cobb angle from the L1 superior endplate to the S1 superior endplate, lordosis positive."""
    p = np.asarray(points_mm, dtype=float)
    return wrap_deg(endplate_angle_deg(p[..., _L1, PS, :], p[..., _L1, AS, :]) - _s1_phi(s1_mm))


def thoracic_kyphosis_deg(points_mm: np.ndarray) -> np.ndarray:
    """Cobb angle from the T4 superior to the T12 inferior endplate, kyphosis positive."""
    p = np.asarray(points_mm, dtype=float)
    return wrap_deg(endplate_angle_deg(p[..., _T12, PI, :], p[..., _T12, AI, :])
                    - endplate_angle_deg(p[..., _T4, PS, :], p[..., _T4, AS, :]))


def sagittal_vertical_axis_mm(points_mm: np.ndarray, s1_mm: np.ndarray) -> np.ndarray:
    """Horizontal distance from the C7 centroid plumb line to the posterosuperior S1 corner,
    positive when the plumb line is anterior."""
    p = np.asarray(points_mm, dtype=float)
    c7 = p[..., _C7, :4, 0].mean(axis=-1)
    sva: np.ndarray = c7 - np.asarray(s1_mm, dtype=float)[..., 1, 0]
    return sva


def t1_pelvic_angle_deg(points_mm: np.ndarray, s1_mm: np.ndarray, hip_mm: np.ndarray) -> np.ndarray:
    """Angle at the hip axis from the line to the S1 midpoint to the line to the T1 centroid,
    positive when T1 lies anterior of the hip–S1 line (T1PA = T1 spinopelvic inclination + PT)."""
    p = np.asarray(points_mm, dtype=float)
    hip = np.asarray(hip_mm, dtype=float)
    t1 = p[..., _T1, :4, :].mean(axis=-2) - hip
    m = np.asarray(s1_mm, dtype=float).mean(axis=-2) - hip
    return wrap_deg(np.degrees(np.arctan2(t1[..., 0], t1[..., 1]) - np.arctan2(m[..., 0], m[..., 1])))


def vertebral_kyphosis_deg(points_mm: np.ndarray, *, phi: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """Each vertebra's own superior-to-inferior endplate angle, kyphosis positive: ``(..., L)``.

    ``phi`` may pass precomputed ``(superior_phi_deg, inferior_phi_deg)``.
    """
    sup, inf = phi if phi is not None else (superior_phi_deg(points_mm), inferior_phi_deg(points_mm))
    return wrap_deg(inf - sup)


def regional_kyphosis_deg(points_mm: np.ndarray, s1_mm: np.ndarray, *,
                          phi: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """Per level ``(..., L)``: superior endplate of the vertebra above to the inferior endplate
    of the vertebra below (for L5: the S1 endplate), kyphosis positive. NaN for C7."""
    sup, inf = phi if phi is not None else (superior_phi_deg(points_mm), inferior_phi_deg(points_mm))
    above = np.concatenate([np.full(sup.shape[:-1] + (1,), np.nan), sup[..., :-1]], axis=-1)
    below = np.concatenate([inf[..., 1:], _s1_phi(s1_mm)[..., None]], axis=-1)
    return wrap_deg(below - above)
