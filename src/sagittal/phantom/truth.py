"""Truth documents: the values a phantom was built from, in the contract's shapes.

Landmarks are given in pixels of the written image (``[column, row]``, docs/contract.md) and in
the sagittal patient frame (mm); parameters and per-vertebra findings are the constructive
values of ``anatomy.build_spine``, never measurements of the points.
"""

from __future__ import annotations

import numpy as np

from ..levels import LEVELS, POINT_NAMES
from .anatomy import Spine
from .radiograph import Radiograph

TRUTH_SCHEMA = "sagittal.phantom-truth/1"

SPACING_SOURCE = {
    "PixelSpacing": "PixelSpacing",
    "both": "PixelSpacing",
    "ImagerPixelSpacing/ERMF": "ImagerPixelSpacing/ERMF",
    "ImagerPixelSpacing": "ImagerPixelSpacing",
    "none": "none",
}


def _pt(p) -> list[float]:
    return [round(float(p[0]), 4), round(float(p[1]), 4)]


def landmarks(spine: Spine, to_xy, in_view: np.ndarray | None = None, s1_in_view: bool = True,
              femoral_in_view: np.ndarray | None = None, radius_scale: float = 1.0) -> dict:
    """The contract's ``landmarks`` object with points mapped by ``to_xy`` ((..., 2) → (..., 2))."""
    in_view = np.ones(len(LEVELS), bool) if in_view is None else in_view
    femoral_in_view = np.ones(2, bool) if femoral_in_view is None else femoral_in_view
    verts = {}
    for i, level in enumerate(LEVELS):
        if in_view[i]:
            xy = to_xy(spine.points_mm[i])
            verts[level] = {name: _pt(xy[k]) for k, name in enumerate(POINT_NAMES)}
    s1 = None
    if s1_in_view:
        xy = to_xy(spine.s1_mm)
        s1 = {"anterior": _pt(xy[0]), "posterior": _pt(xy[1])}
    heads = []
    for k in range(2):
        if femoral_in_view[k]:
            c = to_xy(spine.femoral_centers_mm[k])
            heads.append({"center": _pt(c), "radius_px": round(float(spine.femoral_radii_mm[k] * radius_scale), 4)})
    return {"vertebrae": verts, "s1_endplate": s1, "femoral_heads": heads}


def vertebrae(spine: Spine, in_view: np.ndarray | None = None) -> list[dict]:
    """Per-vertebra truth, cranial to caudal."""
    out = []
    for i, level in enumerate(LEVELS):
        h = spine.heights_mm[i]
        oed = spine.oedema_pct[i]
        cleft = spine.cleft[i]
        out.append({
            "level": level,
            "in_view": bool(True if in_view is None else in_view[i]),
            "heights_mm": {"anterior": round(float(h[0]), 4), "middle": round(float(h[1]), 4),
                           "posterior": round(float(h[2]), 4)},
            "heights_before_fracture_mm": {k: round(float(v), 4) for k, v in
                                           zip(("anterior", "middle", "posterior"), spine.heights_before_mm[i], strict=True)},
            "height_loss_pct": round(float(spine.loss_pct[i]), 4),
            "genant_grade": int(spine.grade[i]),
            "morphology": spine.morphology[i],
            "vertebral_kyphosis_deg": round(float(np.degrees(spine.phi_rad[i, 1] - spine.phi_rad[i, 0])), 6),
            "oedema": {"present": oed is not None, "extent_pct": None if oed is None else round(oed, 2)},
            "cleft": {"present": cleft is not None, "content": cleft},
        })
    return out


def spine_truth(spine: Spine) -> dict:
    """Everything about the spine itself, frame-independent (mm, sagittal patient frame)."""
    spec = spine.spec
    return {
        "frame": "sagittal patient frame: mm, +x anterior, +y superior, hip axis at the origin",
        "parameters": {k: round(float(v), 6) for k, v in spine.parameters.items()},
        "requested": {
            "pelvic_incidence_deg": spec.pelvic_incidence_deg,
            "pelvic_tilt_deg": spec.pelvic_tilt_deg,
            "lumbar_lordosis_before_fractures_deg": spec.lumbar_lordosis_deg,
            "thoracic_kyphosis_before_fractures_deg": spec.thoracic_kyphosis_deg,
        },
        "landmarks_mm": landmarks(spine, lambda p: np.asarray(p)),
        "fractures": [
            {"level": f.level, "grade": f.grade, "loss_pct": round(f.loss_pct, 4), "morphology": f.morphology,
             "oedema_pct": f.oedema_pct, "cleft": f.cleft} for f in spec.fractures
        ],
        "bone_density": spec.bone_density,
        "vertebrae": vertebrae(spine),
    }


def radiograph_truth(spine: Spine, rg: Radiograph) -> dict:
    """Truth of one radiograph: what an analysis of it should report."""
    expected_spacing = {
        "PixelSpacing": rg.spacing_mm, "both": rg.spacing_mm, "ImagerPixelSpacing/ERMF": rg.spacing_mm,
        "ImagerPixelSpacing": rg.imager_spacing_mm, "none": None,
    }[rg.calibration]
    return {
        "kind": "radiograph",
        "modality": rg.modality,
        "image": {
            "rows": int(rg.pixels.shape[0]),
            "columns": int(rg.pixels.shape[1]),
            "pixel_spacing_mm": None if expected_spacing is None else [round(v, 8) for v in expected_spacing],
            "spacing_source": SPACING_SOURCE[rg.calibration],
            "anterior": rg.facing,
            "true_spacing_at_patient_mm": [round(v, 8) for v in rg.spacing_mm],
            "imager_spacing_mm": [round(v, 8) for v in rg.imager_spacing_mm],
            "magnification": rg.magnification,
            "photometric": rg.photometric,
            "bits_stored": rg.bits_stored,
            "field_of_view": rg.field_of_view,
        },
        "landmarks": landmarks(spine, rg.to_px, rg.in_view, rg.s1_in_view, rg.femoral_in_view,
                               radius_scale=1.0 / rg.spacing_mm[1]),
        "parameters": {k: round(float(v), 6) for k, v in spine.parameters.items()},
        "vertebrae": vertebrae(spine, rg.in_view),
        "style": {k: v for k, v in rg.style.items() if not isinstance(v, np.ndarray)},
    }
