"""A second radiograph renderer: digitally reconstructed radiographs (DRR) of a 3-D phantom.

Where ``phantom.radiograph`` paints sagittal outlines, this one builds the anatomy in 3-D
(``drr_anatomy``) and projects it through a cone beam from a focal spot (``drr_project``):
each structure is magnified by its own distance from the source, so the two femoral heads
come out as two circles of different sizes, endplates away from the central ray are seen
slightly obliquely, a rotated or scoliotic vertebra shows double endplate contours, and ribs,
iliac wings, arms and bowel gas overlap the spine where the geometry puts them. Intensities
follow ``I = I0 · exp(−∫μ)`` with heel effect, scatter and quantum noise, then a detector's
log transform and processing.

The result is the same ``Radiograph`` as ``render_radiograph`` with the same truth
conventions (``truth.radiograph_truth`` works unchanged): every landmark of the spine lies in
the mid-sagittal plane (or, when the spine curves sideways, is placed so that its reference
plane projects onto the constructive point), and the femoral heads are spheres at their own
lateral depths whose projections are exactly the spine's two femoral circles.

Style families (``family=``): two looks that differ in processing and in some anatomy
choices, so that a model can be trained on one and scored on the other (``FAMILIES``):

- ``drr-a``: log / linear display, mild equalisation and unsharp masking, Gaussian quantum
  noise, an anti-scatter grid's line pattern on half of the images, 12–16 bits stored,
  an elliptic trunk, round ribs, fine trabecular texture.
- ``drr-b``: strong multiscale equalisation, CLAHE on most images, an S-shaped tone curve,
  8-bit export on most images (a third of them through lossy JPEG), Poisson noise at low dose
  with row/column banding, no grid lines, a rounded-rectangle (super-elliptic) trunk with more
  fat, thinner ribs, coarse trabecular texture, stronger heel effect, more MONOCHROME1.

Both families also draw stitching seams on whole-spine films, collimator shutters (white,
black or none, sometimes turned a little), burned-in markers and rulers, clipped windows.

Anatomy variety drawn in both families: scoliosis with axial rotation, patient rotation,
osteophytes, endplate sclerosis, osteoporotic bone, impaction bands under fractured
endplates, gas clefts, cement in fractured bodies, pedicle screws and rods, a sacralised L5
or an open S1–S2 junction (levels unchanged: S1 stays the sacrum's top), sacral curvature and
promontory shape, arms, breasts, bowel gas, two hemidiaphragms. Disc narrowing and
spondylolisthesis change the spine itself: ``sample_drr_spec`` draws them into the spec.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import cv2
import numpy as np

from ..levels import LEVEL_INDEX, LEVELS
from .anatomy import Spine, SpineSpec, sample_spec
from .drr_anatomy import Builder, humeri, soft_tissue
from .drr_project import Accumulator, ConeBeam, texture_bank
from .radiograph import CALIBRATIONS, Radiograph, _burn_in, mm_to_px
from .radiograph import _smooth_blur as _blur

FAMILIES = ("drr-a", "drr-b")
#: film fields: the spine from C7 to the femora, a lumbar film whose top cuts T10–L2, a
#: thoracolumbar film, a thoracic film, a zoomed crop of a few vertebrae
DRR_FIELDS = ("whole", "lumbar", "thoracolumbar", "thoracic", "zoom")
_FIELD_P = (0.32, 0.36, 0.12, 0.06, 0.14)
_WORK_MIN_MM, _WORK_MAX_MM = 0.3, 0.75  # the working grid of the projection, at the patient


def sample_drr_spec(rng: np.random.Generator, *, n_fractures: int | None = None, **overrides) -> SpineSpec:
    """``anatomy.sample_spec`` plus degenerative change of the spine's shape: narrowed discs
    (30 %: one to three lower discs at 35–70 % of their height) and spondylolisthesis
    (10 %: L3, L4 or L5 slipped 3–12 mm forwards; 4 %: a 2–5 mm retrolisthesis)."""
    spec = sample_spec(rng, n_fractures=n_fractures, **overrides)
    disc = spec.disc_posterior_mm.copy()
    slip = spec.listhesis_mm.copy()
    if "disc_posterior_mm" not in overrides and rng.random() < 0.3:
        for i in rng.choice(np.arange(LEVEL_INDEX["T11"], len(LEVELS)), size=int(rng.integers(1, 4)), replace=False):
            disc[i] *= rng.uniform(0.35, 0.7)
    if "listhesis_mm" not in overrides:
        u = rng.random()
        if u < 0.10:
            slip[LEVEL_INDEX[str(rng.choice(["L3", "L4", "L5"], p=[0.15, 0.45, 0.4]))]] = rng.uniform(3, 12)
        elif u < 0.14:
            slip[LEVEL_INDEX[str(rng.choice(["L2", "L3", "L4"]))]] = -rng.uniform(2, 5)
    return replace(spec, disc_posterior_mm=disc, listhesis_mm=slip)


# ----------------------------------------------------------------------------- style


def sample_drr_style(rng: np.random.Generator, **overrides) -> dict:
    """Draw acquisition, processing and anatomy appearance; any key may be fixed.

    Common keys: ``family`` (``drr-a`` / ``drr-b``), ``field`` (``DRR_FIELDS``; ``field_of_view``
    as ``render_radiograph`` names it is accepted too),
    ``pixel_spacing_mm`` (at the patient), ``facing``, ``photometric``, ``bits_stored``,
    ``calibration``, ``modality``, ``scoliosis_mm`` (0 = straight), ``instrumented``,
    ``field_mm`` = ``(y_bottom, y_top, x_lo, x_hi)`` (an explicit region of the sagittal
    frame, mm: renders only that region).
    """
    family = overrides.get("family", str(rng.choice(FAMILIES)))
    if family not in FAMILIES:
        raise ValueError(f"unknown DRR style family {family!r}; expected one of {', '.join(FAMILIES)}")
    b = family == "drr-b"
    modality = overrides.get("modality", str(rng.choice(["DX", "CR"])))
    cal_choices = list(CALIBRATIONS) if modality == "CR" else ["ImagerPixelSpacing/ERMF", "both", "ImagerPixelSpacing"]
    st = {
        "renderer": "drr",
        "family": family,
        "modality": modality,
        "field": str(rng.choice(DRR_FIELDS, p=_FIELD_P)),
        "facing": str(rng.choice(["left", "right"])),
        "calibration": str(rng.choice(cal_choices)),
        "detector_spacing_mm": float(rng.choice([0.139, 0.143, 0.148, 0.15, 0.16, 0.175, 0.2, 0.25, 0.3])),
        "photometric": str(rng.choice(["MONOCHROME1", "MONOCHROME2"], p=[0.5, 0.5] if b else [0.3, 0.7])),
        "bits_stored": int(rng.choice([8, 8, 8, 10, 12]) if b else rng.choice([12, 13, 14, 15, 16])),
        "oid_mm": float(rng.uniform(120, 240)),
        "ray_jitter_mm": [float(v) for v in rng.normal(0, 20, 2)],
        # physics
        "photons": float(10 ** (rng.uniform(4.2, 5.2) if b else rng.uniform(4.4, 6.0))),
        "scatter": float(rng.uniform(0.03, 0.5)),
        "heel": float(rng.uniform(-0.5, 0.5) if b else rng.uniform(-0.3, 0.3)),
        "blur_mm": float(rng.uniform(0.1, 0.3) if b else rng.uniform(0.15, 0.5)),
        "banding": float(rng.uniform(0.0, 0.015)) if b else 0.0,
        "grid": bool(rng.random() < (0.0 if b else 0.5)),
        "grid_period_px": float(rng.uniform(2.2, 6.0)),
        "grid_amp": float(rng.uniform(0.004, 0.02)),
        # processing
        "equalise": (float(rng.uniform(0.45, 0.92)) if rng.random() < 0.9 else 0.0) if not b else 0.0,
        "equalise_mm": float(rng.uniform(60, 150)),
        "unsharp": float(rng.uniform(0.0, 0.8)) if not b else 0.0,
        "unsharp_mm": float(rng.uniform(2, 8)),
        "multiscale": [float(rng.uniform(1.0, 1.5)), float(rng.uniform(1.0, 1.6)), float(rng.uniform(0.6, 1.0)),
                       float(rng.uniform(0.15, 0.5))] if b else None,
        "clahe": float(rng.uniform(1.5, 4.0)) if b and rng.random() < 0.7 else 0.0,
        "clahe_tiles": int(rng.integers(4, 14)),
        "gamma": float(rng.uniform(0.7, 1.4)),
        "sigmoid": float(rng.uniform(3.0, 8.0)) if b else 0.0,
        "window": (float(rng.uniform(0.0, 2.0)), float(rng.uniform(98.0, 100.0) if rng.random() < 0.85 else rng.uniform(88, 98))),
        "collimation": str(rng.choice(["none", "white", "black"], p=[0.4, 0.35, 0.25])),
        "markers": bool(rng.random() < 0.7),
        "ruler": bool(rng.random() < 0.15),
        "seams": int(rng.choice([0, 1, 2], p=[0.6, 0.25, 0.15])),  # stitched whole-spine films only
        "grid_rows": bool(rng.random() < 0.3),
        "shutter_tilt_deg": float(rng.normal(0, 2.0)) if rng.random() < 0.4 else 0.0,
        "jpeg_quality": int(rng.integers(55, 92)) if b and rng.random() < 0.35 else 0,
        # anatomy appearance
        "scoliosis_mm": float(rng.uniform(6, 40)) if rng.random() < 0.2 else 0.0,
        "instrumented": bool(rng.random() < 0.08),
        "degenerative": float(rng.uniform(0.3, 1.0)) if rng.random() < 0.4 else 0.0,
    }
    if overrides.get("pixel_spacing_mm") is not None:
        st["pixel_spacing_mm"] = float(overrides["pixel_spacing_mm"])
    if overrides.get("field_of_view") is not None and "field" not in overrides:  # render_radiograph's name
        st["field"] = str(overrides["field_of_view"])
    st.update({k: v for k, v in overrides.items() if k in st or k in ("field_mm", "pixel_spacing_mm")})
    if st["field"] not in DRR_FIELDS:
        raise ValueError(f"unknown DRR field {st['field']!r}; expected one of {', '.join(DRR_FIELDS)}")
    if st["modality"] == "DX" and st["calibration"] in ("PixelSpacing", "none"):
        raise ValueError("a DX image always carries ImagerPixelSpacing (DX Detector module); use CR for "
                         f"calibration {st['calibration']!r}")
    return st


def _anatomy(spine: Spine, st: dict, rng: np.random.Generator) -> dict:
    """Anatomy appearance of one image (drawn after the style; depends on the family)."""
    b = st["family"] == "drr-b"
    y_lv = spine.points_mm[:, :4, 1].mean(axis=1)
    # scoliosis: a C- or S-shaped lateral curve zero at S1, axial rotation towards the convexity
    amp = st["scoliosis_mm"] * (1 if rng.random() < 0.5 else -1)
    lateral = rng.normal(0, 0.8, len(LEVELS))
    rot = rng.normal(0, 0.8, len(LEVELS)) + rng.normal(0, 2.5)  # patient turned a little
    tilt = rng.normal(0, 0.5, len(LEVELS))
    if amp:
        s_shape = rng.random() < 0.4
        y0 = float(spine.s1_mm[:, 1].mean())
        y1 = float(y_lv[0]) + 30
        t = np.clip((y_lv - y0) / (y1 - y0), 0, 1)
        phase = rng.uniform(-0.15, 0.15)
        shape = np.sin(np.pi * np.clip(t + phase * t * (1 - t) * 4, 0, 1) * (2 if s_shape else 1))
        curve = amp * shape
        lateral += curve
        slope = np.gradient(curve, y_lv)
        tilt += np.degrees(np.arctan(slope))
        rot += rng.uniform(0.3, 0.6) * curve  # ≈ 0.3–0.6° of rotation per mm of deviation
    deg = st["degenerative"]
    osteo = np.zeros(len(LEVELS))
    scl = np.zeros(len(LEVELS))
    if deg:
        w = np.linspace(0.3, 1.5, len(LEVELS))
        for i in rng.choice(len(LEVELS), size=int(rng.integers(2, 9)), replace=False, p=w / w.sum()):
            osteo[i] = rng.uniform(1.5, 9.0) * deg
            scl[i] = rng.uniform(0.2, 1.5) * deg
    fractured = [i for i in range(len(LEVELS)) if spine.grade[i] > 0]
    cement = set()
    if fractured and rng.random() < 0.15:
        cement = {int(i) for i in rng.choice(fractured, size=min(len(fractured), int(rng.integers(1, 3))), replace=False)}
    screws: set[int] = set()
    if st["instrumented"]:
        n = int(rng.integers(2, 6))
        start = int(rng.integers(LEVEL_INDEX["T9"], len(LEVELS) - n + 1))
        screws = set(range(start, start + n))
    tp = np.zeros(len(LEVELS))
    tp[1:13] = rng.uniform(33, 42, 12)
    tp[13:] = np.array([30, 40, 46, 44, 42]) * rng.uniform(0.85, 1.15, 5)
    tp[0] = 30
    w_mean = float(rng.uniform(88, 96))
    half_w = [float(rng.uniform(160, 200)), float(rng.uniform(150, 190)), float(rng.uniform(115, 160)),
              float(rng.uniform(130, 170)), float(rng.uniform(170, 210)), float(rng.uniform(170, 210))]
    gap_kind = rng.choice(["fused", "residual", "open"], p=[0.6, 0.3, 0.1])
    female = rng.random() < 0.45
    dia = float(rng.uniform(-15, 35))
    an: dict[str, Any] = {
        "bone_gain": float(rng.uniform(0.75, 1.35)),
        "density_gain": float(rng.uniform(0.8, 1.15)),
        "texture": float(rng.uniform(0.15, 0.45) if not b else rng.uniform(0.25, 0.6)),
        "texture_mm": float(rng.uniform(0.8, 1.2) if not b else rng.uniform(1.3, 2.0)),
        "texture_vertical": float(rng.uniform(1.0, 1.4) + (1.0 - spine.spec.bone_density) * rng.uniform(0.0, 2.0)),
        "wall_concavity_mm": [float(rng.uniform(0.3, 2.0)), float(rng.uniform(0.2, 1.2))],  # anterior, posterior
        "cortex_mm": float(rng.uniform(0.8, 1.4) * (0.7 + 0.3 * spine.spec.bone_density)),
        "width_gain": float(rng.uniform(0.92, 1.08)),
        "body_flat": float(rng.uniform(0.75, 0.9)),
        "waist": float(rng.uniform(0.03, 0.12)),
        "pedicle_gain": float(rng.uniform(0.85, 1.2)),
        "spinous_deg": [float(rng.uniform(40, 65)), float(rng.uniform(0, 18))],  # thoracic, lumbar
        "lateral_mm": lateral,
        "rotation_deg": rot,
        "tilt_deg": tilt,
        "osteophyte_mm": osteo,
        "osteophyte_lower": float(rng.uniform(0.5, 1.0)),
        "sclerosis": scl,
        "impaction": float(rng.uniform(0.2, 1.2)),
        "cement": cement,
        "cement_mu": float(rng.uniform(0.05, 0.09)),
        "screws": screws,
        "metal_mu": float(rng.uniform(0.12, 0.25)),
        "tp_mm": tp,
        "sacralised_l5": bool(rng.random() < 0.07),
        "sacrum_len_mm": float(rng.uniform(95, 125)),
        "sacrum_curve_mm": float(rng.uniform(10, 45)),
        "sacrum_back": float(rng.uniform(0.15, 0.4)),
        "coccyx": int(rng.integers(0, 4)),
        "promontory": float(rng.uniform(0.0, 1.0)),
        "s1s2_t": float(rng.uniform(0.26, 0.34)),
        "s1s2_gap_mm": {"fused": 0.0, "residual": float(rng.uniform(0.8, 2.0)), "open": float(rng.uniform(3.0, 6.0))}[
            str(gap_kind)],
        "s1s2": str(gap_kind),
        "ala_mm": float(rng.uniform(42, 55)),
        "hip_half_mm": [w_mean + float(rng.normal(0, 2)), w_mean + float(rng.normal(0, 2))],
        "shaft_deg": [float(rng.uniform(-12, 12)), float(rng.uniform(-12, 12))],
        "wing": [[float(v) for v in rng.normal(0, 6, 5)] for _ in range(2)],
        "crest_mm": float(rng.uniform(-15, 20)),
        "wing_z_mm": float(rng.uniform(65, 95)),
        "wing_mm": float(rng.uniform(6, 12)),
        "ribs": bool(rng.random() < 0.97),
        "rib12": bool(rng.random() < 0.85),
        "rib_radius_mm": float(rng.uniform(4.0, 5.2) if not b else rng.uniform(3.3, 4.3)),
        "rib_drop_mm": float(rng.uniform(50, 110)),
        "chest_half_mm": float(rng.uniform(120, 155)),
        "chest_depth_mm": float(rng.uniform(170, 240)),
        "sternum": bool(rng.random() < 0.9),
        "scapulae": bool(rng.random() < 0.8),
        "scapula": [[float(v) for v in rng.normal(0, 10, 4)] for _ in range(2)],
        # soft tissue
        "back_fat_mm": float(rng.uniform(25, 70)),
        "abdomen_depth_mm": float(rng.uniform(150, 320)),
        "half_widths_mm": half_w,
        "trunk_power": 2.0 if not b else float(rng.uniform(2.6, 4.0)),
        "fat_frac": float(rng.uniform(0.05, 0.15) if not b else rng.uniform(0.12, 0.3)),
        "diaphragm_mm": dia,
        "dome_mm": float(rng.uniform(15, 45)),
        "hemi_mm": float(rng.uniform(-25, 25)),
        "heart": [float(rng.uniform(60, 110)), float(rng.uniform(55, 75)), float(rng.uniform(50, 90)),
                  float(rng.uniform(55, 75)), float(rng.uniform(-10, 40)), float(rng.uniform(50, 70))],
        "gas": [],
        "breasts": bool(female and rng.random() < 0.8),
        "breast_mm": float(rng.uniform(40, 120)),
        "breast": [float(rng.uniform(-20, 10)), 0.0, float(rng.uniform(60, 100)), float(rng.uniform(50, 80))],
        "arms": bool(rng.random() < 0.75),
        "arm_deg": [float(rng.uniform(-25, 45)), float(rng.uniform(-25, 45))],
        "arm_x_mm": float(rng.uniform(10, 70)),
        "arm_z_mm": float(rng.uniform(150, 200)),
        "arm_r_mm": float(rng.uniform(38, 55)),
    }
    an["breast"][1] = float(y_lv[LEVEL_INDEX["T8"]] + rng.uniform(-40, 20))
    l3 = spine.points_mm[LEVEL_INDEX["L3"], :4].mean(axis=0)
    gas: list[list[float]] = []
    for _ in range(int(rng.integers(0, 9))):  # loops of bowel: clusters of small pockets along a path
        x, y, z = rng.uniform(20, 0.8 * an["abdomen_depth_mm"]), l3[1] + rng.uniform(-130, 110), rng.uniform(-120, 120)
        step = rng.normal(0, 1, 3)
        for _ in range(int(rng.integers(1, 6))):
            gas.append([float(x), float(y), float(z), float(rng.uniform(5, 20)), float(rng.uniform(5, 16)),
                        float(rng.uniform(8, 30))])
            step = 0.6 * step + 0.4 * rng.normal(0, 1, 3)
            x, y, z = x + 14 * step[0], y + 14 * step[1], z + 14 * step[2]
    if rng.random() < 0.6:  # the stomach bubble under the left hemidiaphragm
        gas.append([float(rng.uniform(40, 100)), float(y_lv[LEVEL_INDEX["T11"]] + dia - 15), 60.0, 35.0, 22.0, 40.0])
    an["gas"] = gas
    return an


# ----------------------------------------------------------------------------- field and geometry


def _field(spine: Spine, st: dict, rng: np.random.Generator) -> tuple[float, float, float, float]:
    """``(y_bottom, y_top, x_lo, x_hi)`` of the film in the sagittal frame (q-space mm)."""
    if st.get("field_mm") is not None:
        y_bot, y_top, x_lo, x_hi = (float(v) for v in st["field_mm"])
        if y_top <= y_bot or x_hi <= x_lo:
            raise ValueError(f"field_mm must be (y_bottom, y_top, x_lo, x_hi) with top > bottom, not {st['field_mm']}")
        return y_bot, y_top, x_lo, x_hi
    pts = spine.points_mm
    fc, fr = spine.femoral_centers_mm, spine.femoral_radii_mm
    head_bot = float((fc[:, 1] - fr).min())
    top_of = {lv: float(pts[LEVEL_INDEX[lv], :, 1].max()) for lv in LEVELS}
    bot_of = {lv: float(pts[LEVEL_INDEX[lv], :, 1].min()) for lv in LEVELS}
    kind = st["field"]
    if kind == "whole":
        y_top = top_of["C7"] + rng.uniform(20, 110)
        y_bot = head_bot - rng.uniform(40, 150)
    elif kind == "lumbar":
        # the top edge anywhere from above T10 to the middle of L2: T12 or L1 often cut
        lo, hi = bot_of["L2"] + 0.5 * (top_of["L2"] - bot_of["L2"]), top_of["T10"] + 10
        y_top = rng.uniform(lo, hi)
        y_bot = head_bot - rng.uniform(10, 120)
    elif kind == "thoracolumbar":
        y_top = rng.uniform(top_of["T8"], top_of["T4"] + 20)
        y_bot = rng.uniform(head_bot - 60, bot_of["L3"])
    elif kind == "thoracic":
        y_top = top_of["C7"] + rng.uniform(10, 60)
        y_bot = rng.uniform(bot_of["L2"], bot_of["T11"])
    else:  # zoom: three to six vertebrae, maybe with the sacrum
        n = int(rng.integers(3, 7))
        first = int(rng.integers(0, len(LEVELS) - n + 2))
        levels = list(range(first, min(first + n, len(LEVELS))))
        y_top = float(pts[levels[0], :, 1].max()) + rng.uniform(-12, 25)
        y_bot = float(pts[levels[-1], :, 1].min()) - rng.uniform(-12, 40) - (60 if first + n > len(LEVELS) else 0)
    inside = pts[..., 1].max(axis=1) > y_bot
    inside &= pts[..., 1].min(axis=1) < y_top
    xs = pts[inside, :, 0].ravel()
    if spine.s1_mm[:, 1].max() > y_bot or not xs.size:
        xs = np.concatenate([xs, spine.s1_mm[:, 0]])
    x_mid = float((xs.min() + xs.max()) / 2 + rng.uniform(-25, 25))
    width = {"whole": (280, 420), "lumbar": (220, 380), "thoracolumbar": (250, 400), "thoracic": (240, 380),
             "zoom": (110, 220)}[kind]
    w = float(rng.uniform(*width))
    return float(y_bot), float(y_top), x_mid - w / 2, x_mid + w / 2


def tight_lumbar_field(spine: Spine, rng: np.random.Generator) -> tuple[float, float, float, float]:
    """A lateral lumbar film collimated tightly, as clinics take them: ``field_mm`` (``render_drr``)
    from 5–25 mm above L1 to 5–30 mm below the lower femoral head, 170–240 mm wide about L1–S1.
    Its bodies fill more of the image than any of ``DRR_FIELDS``' do (an evaluation framing,
    ``scripts/eval_landmarks.py --framing tight-lumbar``; no training image is framed so)."""
    pts = spine.points_mm
    y_top = float(pts[LEVEL_INDEX["L1"], :, 1].max()) + rng.uniform(5, 25)
    y_bot = float((spine.femoral_centers_mm[:, 1] - spine.femoral_radii_mm).min()) - rng.uniform(5, 30)
    xs = np.concatenate([pts[LEVEL_INDEX["L1"]:, :, 0].ravel(), spine.s1_mm[:, 0]])
    x_mid = float((xs.min() + xs.max()) / 2 + rng.uniform(-15, 15))
    half = float(rng.uniform(170, 240)) / 2
    return y_bot, y_top, x_mid - half, x_mid + half


def long_film_field(spine: Spine, rng: np.random.Generator, extra_mm: float = 120.0) -> tuple[float, float, float, float]:
    """A whole-spine film framed longer than the training films' (a 36-inch cassette reaching the
    skull base and the thighs): ``field_mm`` of the ``whole`` field (20–110 mm above C7, 40–150 mm
    below the lower femoral head, 280–420 mm wide) with ``extra_mm`` more at each end and the width
    grown in proportion, so its bodies are smaller in the image than any training film's. The
    phantom has no skull or thighs: the extra field is soft tissue (an evaluation framing,
    ``scripts/eval_landmarks.py --framing long-film``)."""
    pts = spine.points_mm
    y_top = float(pts[LEVEL_INDEX["C7"], :, 1].max()) + rng.uniform(20, 110) + extra_mm
    y_bot = float((spine.femoral_centers_mm[:, 1] - spine.femoral_radii_mm).min()) - rng.uniform(40, 150) - extra_mm
    xs = pts[..., 0].ravel()
    x_mid = float((xs.min() + xs.max()) / 2)
    half = float(rng.uniform(280, 420)) * (1 + extra_mm / 400) / 2
    return y_bot, y_top, x_mid - half, x_mid + half


def _geometry(spine: Spine, st: dict, an: dict) -> tuple[float, float]:
    """``(SID, SOD)``: the source far enough that the two femoral heads, each ``hip_half_mm``
    from the midline, show the spine's relative magnification as nearly as plausible."""
    m = float(spine.spec.femoral_head_magnification)
    ratio = (1 + m / 2) / (1 - m / 2)
    h = float(np.mean(an["hip_half_mm"]))
    sod = h * (ratio + 1) / max(ratio - 1, 1e-3)
    lo, hi = (1300.0, 2400.0) if st["field"] in ("whole", "thoracolumbar", "thoracic") else (850.0, 1800.0)
    sod = float(np.clip(sod, lo, hi))
    return sod + st["oid_mm"], sod


# ----------------------------------------------------------------------------- rendering


def render_drr(spine: Spine, rng: np.random.Generator, **overrides) -> Radiograph:
    """Render ``spine`` as a lateral radiograph by cone-beam projection of a 3-D phantom.

    Options: see ``sample_drr_style``. Returns a ``Radiograph`` like ``render_radiograph``;
    ``style`` records the renderer, family, field, geometry and anatomy choices.
    """
    st = sample_drr_style(rng, **overrides)
    an = _anatomy(spine, st, rng)
    sid, sod = _geometry(spine, st, an)
    mag = sid / sod
    if st.get("pixel_spacing_mm") is not None:
        sp = float(st["pixel_spacing_mm"])
        det = sp * mag
    else:
        det = float(st["detector_spacing_mm"])
        sp = det / mag
    y_bot, y_top, x_lo, x_hi = _field(spine, st, rng)
    rows = max(8, int(round((y_top - y_bot) / sp)))
    cols = max(8, int(round((x_hi - x_lo) / sp)))
    facing = st["facing"]
    sgn = 1.0 if facing == "right" else -1.0
    x_mid = (x_lo + x_hi) / 2
    c0 = (cols - 1) / 2 - sgn * x_mid / sp
    r0 = y_top / sp
    # the working grid of the projection: `per` working pixels per output pixel (down-sampled
    # by area at the end) or one working pixel per `up` output pixels (up-sampled)
    per = math.ceil(sp / _WORK_MAX_MM) if sp > _WORK_MAX_MM else 1
    up = math.ceil(_WORK_MIN_MM / sp) if sp < _WORK_MIN_MM else 1
    work = sp / per * up
    ratio = per / up  # working pixels per output pixel
    wrows, wcols = (rows * per, cols * per) if up == 1 else (rows // up + 2, cols // up + 2)
    origin_w = ((c0 + 0.5) * ratio - 0.5, (r0 + 0.5) * ratio - 0.5)
    ray = (x_mid + st["ray_jitter_mm"][0], (y_top + y_bot) / 2 + st["ray_jitter_mm"][1])
    geo = ConeBeam(sid, sod, ray, work, origin_w, sgn, (wrows, wcols))

    acc = Accumulator(geo)
    bank = texture_bank(rng, work, an["texture_mm"], vertical=an["texture_vertical"])
    bld = Builder(spine, an, geo, acc, rng, bank)
    for i in range(len(LEVELS)):
        bld.vertebra(i)
    bld.rods()
    bld.sacrum()
    bld.pelvis()
    if an["ribs"]:
        bld.ribs()
    bld.chest_wall()
    humeri(bld, spine, an)
    att_w = acc.acc
    att_w += soft_tissue(spine, an, geo, (y_bot, y_top, x_lo, x_hi))
    if per > 1:
        att = cv2.resize(att_w, (cols, rows), interpolation=cv2.INTER_AREA)
    elif up > 1:
        att = _upsample(att_w, rows, cols, up)
    else:
        att = att_w
    att = np.ascontiguousarray(att, np.float32)

    img, exposed, maxval = _detector(att, st, sp, rng)
    origin = (c0, r0)

    def px(p: np.ndarray) -> np.ndarray:
        return mm_to_px(p, origin, (sp, sp), facing)

    in_view, s1_in, fem_in = _in_view(spine, px, exposed)
    style = {k: (list(v) if isinstance(v, tuple) else v) for k, v in st.items()}
    style.update(sid_mm=round(sid, 2), sod_mm=round(sod, 2), field_mm=[round(v, 2) for v in (y_bot, y_top, x_lo, x_hi)],
                 hip_depth_mm=[round(an["hip_half_mm"][0], 2), -round(an["hip_half_mm"][1], 2)],
                 scoliosis_lateral_mm=[round(float(v), 2) for v in an["lateral_mm"]],
                 rotation_deg=[round(float(v), 2) for v in an["rotation_deg"]],
                 osteophyte_mm=[round(float(v), 2) for v in an["osteophyte_mm"]],
                 cement_levels=[LEVELS[i] for i in sorted(an["cement"])],
                 screw_levels=[LEVELS[i] for i in sorted(an["screws"])],
                 sacralised_l5=an["sacralised_l5"], s1s2=an["s1s2"], arms=an["arms"], breasts=an["breasts"],
                 bowel_gas=len(an["gas"]))
    return Radiograph(
        pixels=img, photometric=st["photometric"], bits_stored=st["bits_stored"], modality=st["modality"],
        spacing_mm=(sp, sp), imager_spacing_mm=(det, det), magnification=mag, calibration=st["calibration"],
        facing=facing, field_of_view="whole" if st["field"] == "whole" else "lumbar", origin_px=origin,
        in_view=in_view, s1_in_view=s1_in, femoral_in_view=fem_in, style=style,
    )


def _upsample(att_w: np.ndarray, rows: int, cols: int, up: int) -> np.ndarray:
    """Working grid → output grid ``up`` times finer (pixel centres kept)."""
    big = cv2.resize(att_w, (att_w.shape[1] * up, att_w.shape[0] * up), interpolation=cv2.INTER_CUBIC)
    return big[:rows, :cols]


def _detector(att: np.ndarray, st: dict, sp: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, int]:
    """Transmission, scatter, noise, blur, log and the family's processing → stored values."""
    dens = _expose(att, st, sp, rng)
    v = _process(dens, att > 1.0, st, sp)
    rows, cols = att.shape
    maxval = (1 << st["bits_stored"]) - 1
    img = np.round(v * maxval).astype(np.uint16)
    if st.get("jpeg_quality") and st["bits_stored"] == 8:  # a lossy 8-bit export somewhere upstream
        ok, buf = cv2.imencode(".jpg", img.astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, int(st["jpeg_quality"])])
        decoded = cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE) if ok else None
        if decoded is not None:
            img = decoded.astype(np.uint16)
    exposed = _shutters(rows, cols, st, rng)
    if st["collimation"] != "none":
        img[~exposed] = maxval if st["collimation"] == "white" else 0
    if st["markers"] or st["ruler"]:
        _burn_in(img, st, rng, maxval, (sp, sp), st["facing"])
    if st["photometric"] == "MONOCHROME1":
        img = (maxval - img).astype(np.uint16)
    return img, exposed, maxval


def _shutters(rows: int, cols: int, st: dict, rng: np.random.Generator) -> np.ndarray:
    """The exposed field inside the collimator's shutters (all of it without collimation),
    possibly turned a little against the detector."""
    exposed = np.ones((rows, cols), bool)
    if st["collimation"] == "none":
        return exposed
    m = [rng.uniform(0, 0.08) * cols, rng.uniform(0, 0.08) * cols, rng.uniform(0, 0.04) * rows, rng.uniform(0, 0.04) * rows]
    yy, xx = np.mgrid[0:rows, 0:cols].astype(np.float32)
    a = math.radians(st.get("shutter_tilt_deg", 0.0))
    cx, cy = (cols - 1) / 2, (rows - 1) / 2
    u = (xx - cx) * math.cos(a) + (yy - cy) * math.sin(a) + cx
    v = -(xx - cx) * math.sin(a) + (yy - cy) * math.cos(a) + cy
    exposed &= (u >= m[0]) & (u <= cols - 1 - m[1]) & (v >= m[2]) & (v <= rows - 1 - m[3])
    return exposed


def _expose(att: np.ndarray, st: dict, sp: float, rng: np.random.Generator) -> np.ndarray:
    """Line integrals → the detector's log signal: heel effect, scatter, quantum noise (Gaussian
    in family A; Poisson with row/column banding in B), detector blur, an anti-scatter grid."""
    rows, cols = att.shape
    b = st["family"] == "drr-b"
    y = np.linspace(-0.5, 0.5, rows, dtype=np.float32)[:, None]
    heel = 1.0 + np.float32(st["heel"]) * y + (np.float32(0.3 * st["heel"]) * y * y if b else np.float32(0.0))
    inten = (cv2.exp(-att) * heel).astype(np.float32)
    inten += _blur(inten * (att > 1.0), 40.0 / sp) * np.float32(st["scatter"])
    photons = st["photons"] * (sp * sp) / (0.15 * 0.15)
    if b:
        lam = np.maximum(inten, 0) * np.float32(photons)
        inten = rng.poisson(lam).astype(np.float32) / np.float32(photons)
        band = st["banding"]
        if band:
            rb = cv2.GaussianBlur(rng.normal(0, 1, (rows, 1)).astype(np.float32), (0, 0), 2.0)
            cb = cv2.GaussianBlur(rng.normal(0, 1, (1, cols)).astype(np.float32), (0, 0), 1.0)
            inten *= (1 + np.float32(band) * rb) * (1 + np.float32(band * 0.5) * cb)
    else:
        noise = rng.standard_normal((rows, cols), dtype=np.float32)
        inten += noise * np.sqrt(np.maximum(inten, 1e-9) / np.float32(photons))
    blurred = cv2.GaussianBlur(np.asarray(inten, np.float32), (0, 0), max(0.3, st["blur_mm"] / sp))
    dens = np.asarray(-cv2.log(np.maximum(blurred, np.float32(1e-5))), np.float32)
    if st["grid"]:
        period = st["grid_period_px"]
        n = rows if st.get("grid_rows") else cols
        lines = np.float32(st["grid_amp"]) * np.sin(2 * np.pi * np.arange(n, dtype=np.float32) / period)
        dens += lines[:, None] if st.get("grid_rows") else lines[None, :]
    if st.get("seams") and st["field"] == "whole":  # stitched cassettes: a step in exposure at each join
        for _ in range(st["seams"]):
            r = int(rng.uniform(0.25, 0.75) * rows)
            dens[r:] += np.float32(rng.uniform(-0.15, 0.15))
    return np.asarray(dens, np.float32)


def _process(dens: np.ndarray, inside: np.ndarray, st: dict, sp: float) -> np.ndarray:
    """The family's image processing and tone curve → display values in [0, 1]."""
    rows, cols = dens.shape
    if st["family"] == "drr-b":
        dens = _multiscale(dens, st["multiscale"], sp)
    else:
        if st["equalise"] > 0:
            dens = dens - _blur(dens, st["equalise_mm"] / sp) * np.float32(st["equalise"])
        if st["unsharp"] > 0:
            dens = dens + (dens - _blur(dens, st["unsharp_mm"] / sp)) * np.float32(st["unsharp"])
    sr, sc = max(1, rows // 400), max(1, cols // 200)
    sample = dens[::sr, ::sc][inside[::sr, ::sc]]
    if sample.size < 100:
        sample = dens[::sr, ::sc].ravel()
    lo, hi = np.percentile(sample, st["window"])
    v = np.clip((dens - lo) / max(float(hi - lo), 1e-6), 0, 1)
    if st["clahe"] > 0:
        q16 = (v * 65535).astype(np.uint16)
        tiles = int(st["clahe_tiles"])
        clahe = cv2.createCLAHE(clipLimit=float(st["clahe"]), tileGridSize=(tiles, max(2, tiles * cols // max(rows, 1))))
        v = clahe.apply(q16).astype(np.float32) / np.float32(65535)
    if st["sigmoid"]:
        k = float(st["sigmoid"])
        lo_s, hi_s = 1 / (1 + math.exp(k / 2)), 1 / (1 + math.exp(-k / 2))
        v = (1 / (1 + np.exp(-k * (v - 0.5))) - lo_s) / (hi_s - lo_s)
    return np.asarray(np.clip(v, 0, 1) ** np.float32(st["gamma"]), np.float32)


def _multiscale(dens: np.ndarray, gains: list[float], sp: float) -> np.ndarray:
    """Multiscale equalisation: band-pass layers at 2, 8, 32, 100 mm re-weighted by ``gains``
    (the finest boosted, the coarsest compressed), as vendors' processing does."""
    out = np.zeros_like(dens)
    prev = dens
    for g, scale in zip(gains, (2.0, 8.0, 32.0, 100.0), strict=True):
        low = _blur(prev, scale / sp)
        out += (prev - low) * np.float32(g)
        prev = low
    return out + prev * np.float32(0.05)


def _in_view(spine: Spine, px, exposed: np.ndarray) -> tuple[np.ndarray, bool, np.ndarray]:
    rows, cols = exposed.shape
    margin = 1.0

    def inside(p: np.ndarray) -> np.ndarray:
        c, r = p[..., 0], p[..., 1]
        ok = (c >= margin) & (c <= cols - 1 - margin) & (r >= margin) & (r <= rows - 1 - margin)
        ci = np.clip(np.round(c).astype(int), 0, cols - 1)
        ri = np.clip(np.round(r).astype(int), 0, rows - 1)
        return ok & exposed[ri, ci]

    in_view = np.asarray(inside(px(spine.points_mm)).all(axis=1), bool)
    s1_in = bool(inside(px(spine.s1_mm)).all())
    t = np.linspace(0, 2 * np.pi, 16, endpoint=False)
    circ = np.stack([np.cos(t), np.sin(t)], axis=1)
    fem_in = np.array([bool(inside(px(c + r * circ)).all()) for c, r in
                       zip(spine.femoral_centers_mm, spine.femoral_radii_mm, strict=True)])
    return in_view, s1_in, fem_in


__all__ = ["render_drr", "sample_drr_style", "sample_drr_spec", "tight_lumbar_field", "long_film_field", "FAMILIES", "DRR_FIELDS"]
