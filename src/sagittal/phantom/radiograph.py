"""Standing lateral radiographs (DX/CR) of a phantom spine, heavily randomised.

The picture is made the way a radiograph is: attenuation line integrals (soft tissue,
lungs, bone) → transmitted intensity with heel effect and scatter → quantum noise and
detector blur → log and the vendor-like processing (equalisation, unsharp masking, a tone
curve) → stored values of 12–16 bits, MONOCHROME1 or 2, with collimation, stitching seams,
an anti-scatter grid and burned-in markers on top.

Pixel frame (docs/contract.md): ``[x, y] = [column, row]``, ``(0, 0)`` the centre of the top-left
pixel. A point of the sagittal patient frame (mm, +x anterior, +y superior) maps to
``col = c0 + s * x / spacing_col``, ``row = r0 - y / spacing_row`` with ``s = +1`` when the
patient faces the image's right. ``spacing`` is the true spacing at the patient's midsagittal
plane, i.e. the detector spacing divided by the geometric magnification.

Smooth, large-scale structures (body outline, lungs, scatter) are computed on a coarse grid
and resized; bones are drawn at full resolution with 1/16-pixel vertex precision.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from ..levels import LEVEL_INDEX, LEVELS
from .anatomy import Spine

FIELDS = ("whole", "lumbar")
CALIBRATIONS = ("PixelSpacing", "ImagerPixelSpacing/ERMF", "both", "ImagerPixelSpacing", "none")
_SHIFT = 4  # cv2 fixed-point fraction bits: vertices to 1/16 pixel
_COARSE_MM = 2.0  # grid of the smooth layers


@dataclass(frozen=True)
class Radiograph:
    """A rendered lateral radiograph and everything needed to write and score it."""

    pixels: np.ndarray  # (rows, cols) uint16 stored values
    photometric: str  # MONOCHROME1 or MONOCHROME2
    bits_stored: int
    modality: str  # DX or CR
    spacing_mm: tuple[float, float]  # (row, col) at the patient: the truth
    imager_spacing_mm: tuple[float, float]  # (row, col) at the detector
    magnification: float
    calibration: str  # one of CALIBRATIONS: which tags the writer sets
    facing: str  # image side the patient faces: "left" or "right"
    field_of_view: str  # "whole" or "lumbar"
    origin_px: tuple[float, float]  # (c0, r0): the hip axis in pixels
    in_view: np.ndarray  # (18,) bool, vertebra wholly inside the exposed field
    s1_in_view: bool
    femoral_in_view: np.ndarray  # (2,) bool
    style: dict = field(default_factory=dict)

    def to_px(self, pts_mm: np.ndarray) -> np.ndarray:
        """Map sagittal-frame points ``(..., 2)`` mm to pixel ``[col, row]``."""
        return mm_to_px(pts_mm, self.origin_px, self.spacing_mm, self.facing)


def mm_to_px(pts_mm: np.ndarray, origin_px, spacing_mm, facing: str) -> np.ndarray:
    pts = np.asarray(pts_mm, float)
    s = 1.0 if facing == "right" else -1.0
    col = origin_px[0] + s * pts[..., 0] / spacing_mm[1]
    row = origin_px[1] - pts[..., 1] / spacing_mm[0]
    return np.stack([col, row], axis=-1)


# ----------------------------------------------------------------------------- drawing helpers


def _fixed(px: np.ndarray) -> np.ndarray:
    return np.round(np.asarray(px) * (1 << _SHIFT)).astype(np.int32)


def _add_shape(canvas: np.ndarray, poly_px: np.ndarray, fill: float, edge: float | np.floating[Any] = 0.0, edge_px: int = 0,
               closed: bool = True, thickness_px: int = 0) -> None:
    """Add a filled polygon (or a thick polyline when ``thickness_px``) into ``canvas``.

    Drawn into a buffer the size of the shape's bounding box, then added, so overlapping
    structures sum like attenuation does. ``edge`` adds a cortical rim ``edge_px`` wide.
    """
    pad = max(thickness_px, edge_px) + 2
    lo = np.floor(poly_px.min(axis=0)).astype(int) - pad
    hi = np.ceil(poly_px.max(axis=0)).astype(int) + pad
    h, w = canvas.shape
    x0, y0 = max(lo[0], 0), max(lo[1], 0)
    x1, y1 = min(hi[0], w), min(hi[1], h)
    if x1 <= x0 or y1 <= y0:
        return
    buf = np.zeros((y1 - y0, x1 - x0), np.float32)
    pts = _fixed(poly_px - [x0, y0]).reshape(-1, 1, 2)
    if thickness_px:
        cv2.polylines(buf, [pts], closed, float(fill + edge), max(1, thickness_px), cv2.LINE_8, _SHIFT)
        if edge and thickness_px > 2 * edge_px + 1:
            cv2.polylines(buf, [pts], closed, float(fill), thickness_px - 2 * edge_px, cv2.LINE_8, _SHIFT)
    else:
        cv2.fillPoly(buf, [pts], float(fill), cv2.LINE_8, _SHIFT)
        if edge and edge_px:
            cv2.polylines(buf, [pts], True, float(fill + edge), edge_px, cv2.LINE_8, _SHIFT)
    canvas[y0:y1, x0:x1] += buf


def _circle_poly(center: np.ndarray, radius: float, n: int = 64) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return center + radius * np.stack([np.cos(t), np.sin(t)], axis=1)


def _bezier(p0, p1, p2, n: int = 24) -> np.ndarray:
    t = np.linspace(0, 1, n)[:, None]
    return (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t**2 * p2


def _smooth_blur(img: np.ndarray, sigma_px: float) -> np.ndarray:
    """Gaussian blur of a large sigma computed on a reduced copy (fast, same result scale)."""
    if sigma_px < 4:
        return cv2.GaussianBlur(img, (0, 0), max(sigma_px, 0.3))
    f = max(1, int(sigma_px / 3))
    h, w = img.shape
    small = cv2.resize(img, (max(1, w // f), max(1, h // f)), interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (0, 0), sigma_px / f)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


# ----------------------------------------------------------------------------- rendering


def sample_style(rng: np.random.Generator, **overrides) -> dict:
    """Draw the acquisition and appearance of one radiograph (domain randomisation).

    Any key may be fixed by a keyword argument, e.g. ``facing="left"``,
    ``pixel_spacing_mm=0.15``, ``calibration="none"``, ``field_of_view="lumbar"``.
    """
    modality = overrides.get("modality", str(rng.choice(["DX", "CR"])))
    cal_choices = list(CALIBRATIONS) if modality == "CR" else ["ImagerPixelSpacing/ERMF", "both", "ImagerPixelSpacing"]
    style = {
        "modality": modality,
        "field_of_view": str(rng.choice(FIELDS, p=[0.55, 0.45])),
        "facing": str(rng.choice(["left", "right"])),
        "calibration": str(rng.choice(cal_choices)),
        "detector_spacing_mm": float(rng.choice([0.1, 0.139, 0.143, 0.148, 0.15, 0.16, 0.175, 0.2])),
        "non_square": bool(rng.random() < 0.08),
        "magnification": float(rng.uniform(1.05, 1.25)),
        "photometric": str(rng.choice(["MONOCHROME1", "MONOCHROME2"], p=[0.35, 0.65])),
        "bits_stored": int(rng.choice([12, 13, 14, 15, 16])),
        "body_width_mm": float(rng.uniform(260, 400)),
        "abdomen_depth_mm": float(rng.uniform(150, 300)),
        "soft_mu": float(rng.uniform(0.016, 0.024)),
        "bone_gain": float(rng.uniform(0.9, 1.6)),
        "cortex_gain": float(rng.uniform(0.5, 1.5)),
        "ribs": bool(rng.random() < 0.9),
        "arms": bool(rng.random() < 0.7),
        "bowel_gas": int(rng.integers(0, 12)),
        "heel": float(rng.uniform(-0.35, 0.35)),
        "scatter": float(rng.uniform(0.1, 1.2)),
        "photons": float(10 ** rng.uniform(4.3, 6.3)),  # per 0.15 mm pixel; scaled with pixel area
        "blur_mm": float(rng.uniform(0.08, 0.5)),
        "grid": bool(rng.random() < 0.3),
        "equalise": float(rng.uniform(0.7, 0.97)),
        "equalise_mm": float(rng.uniform(50, 120)),
        "unsharp": float(rng.uniform(0.2, 1.5)),
        "unsharp_mm": float(rng.uniform(3, 25)),
        "gamma": float(rng.uniform(0.6, 1.6)),
        "window": (float(rng.uniform(0.0, 3.0)), float(rng.uniform(97.0, 100.0))),
        "seams": int(rng.choice([0, 1, 2], p=[0.5, 0.3, 0.2])),
        "collimation": str(rng.choice(["none", "white", "black"], p=[0.3, 0.4, 0.3])),
        "markers": bool(rng.random() < 0.85),
        "ruler": bool(rng.random() < 0.3),
    }
    if overrides.get("pixel_spacing_mm") is not None:
        # a requested spacing is the spacing at the patient; the detector spacing follows
        style["detector_spacing_mm"] = float(overrides["pixel_spacing_mm"]) * overrides.get(
            "magnification", style["magnification"]
        )
        style["non_square"] = False
    style.update({k: v for k, v in overrides.items() if k in style})
    if style["modality"] == "DX" and style["calibration"] in ("PixelSpacing", "none"):
        raise ValueError("a DX image always carries ImagerPixelSpacing (DX Detector module); use CR for "
                         f"calibration {style['calibration']!r}")
    return style


def render_radiograph(spine: Spine, rng: np.random.Generator, **overrides) -> Radiograph:
    """Render ``spine`` as a standing lateral radiograph; see ``sample_style`` for options."""
    st = sample_style(rng, **overrides)
    det = st["detector_spacing_mm"]
    det_rc = (det * (1.04 if st["non_square"] else 1.0), det)
    mag = st["magnification"]
    sp = (det_rc[0] / mag, det_rc[1] / mag)  # spacing at the patient, (row, col)
    facing = st["facing"]
    sgn = 1.0 if facing == "right" else -1.0

    pts = spine.points_mm
    fc, fr = spine.femoral_centers_mm, spine.femoral_radii_mm
    head_bottom = float((fc[:, 1] - fr).min())
    if st["field_of_view"] == "whole":
        y_top = float(pts[0, :, 1].max() + rng.uniform(30, 110))
    else:
        top_level = int(rng.integers(LEVEL_INDEX["T10"], LEVEL_INDEX["L1"] + 1))
        y_top = float(pts[top_level, :, 1].max() + rng.uniform(5, 35))
    y_bot = head_bottom - float(rng.uniform(50, 150))
    spine_x = np.concatenate([pts[..., 0].ravel(), fc[:, 0]])
    x_mid = float((spine_x.min() + spine_x.max()) / 2 + rng.uniform(-25, 25))
    width_mm = float(rng.uniform(280, 400))
    rows = int(round((y_top - y_bot) / sp[0]))
    cols = int(round(width_mm / sp[1]))
    # the hip axis in pixels (c0, r0); x_mid sits at the image centre
    c0 = (cols - 1) / 2 - sgn * x_mid / sp[1]
    r0 = y_top / sp[0]
    origin = (c0, r0)

    def px(p):
        return mm_to_px(p, origin, sp, facing)

    # ---- smooth layers on a coarse grid: body outline, lungs, bowel gas, arm soft tissue
    f = max(1, int(round(_COARSE_MM / sp[1])))
    ch, cw = max(2, rows // f), max(2, cols // f)
    yy = y_top - (np.arange(ch) + 0.5) * (rows / ch) * sp[0]
    xx = sgn * ((np.arange(cw) + 0.5) * (cols / cw) - 0.5 - c0) * sp[1]
    X, Y = np.meshgrid(xx, yy)
    soft_coarse = _soft_tissue(spine, st, X, Y, rng)
    soft: np.ndarray = cv2.resize(soft_coarse.astype(np.float32), (cols, rows), interpolation=cv2.INTER_LINEAR)

    # ---- bones at full resolution
    bone = np.zeros((rows, cols), np.float32)
    _draw_bones(bone, spine, st, px, sp, rng)
    sr, sc = max(1, rows // 400), max(1, cols // 200)
    core = soft[::sr, ::sc]
    in_body = core > 0.6 * np.percentile(core, 99)  # window on the trunk, as a detector's histogram analysis does
    in_patient = (soft > 1.0).astype(np.float32)
    att = soft
    att += bone * np.float32(st["bone_gain"])
    del bone

    # ---- physics: transmission, heel effect, scatter, noise, blur
    inten: np.ndarray = cv2.exp(-att)
    del att
    heel = (1.0 + st["heel"] * (np.linspace(-0.5, 0.5, rows, dtype=np.float32)))[:, None]
    inten *= heel
    for _ in range(st["seams"] if st["field_of_view"] == "whole" else 0):
        r = int(rng.uniform(0.25, 0.75) * rows)
        inten[r:] *= np.float32(rng.uniform(0.8, 1.25))
    # scatter arises in the patient: a broad haze proportional to the primary leaving the body
    # (scatter-to-primary ratios of 1–4 in a thick lateral), not to the direct beam beside it
    inten += _smooth_blur(inten * in_patient, 60.0 / sp[1]) * np.float32(3.0 * st["scatter"])
    del in_patient
    noise = rng.standard_normal((rows, cols), dtype=np.float32)
    photons = st["photons"] * (sp[0] * sp[1]) / (0.15 * 0.15)  # quantum noise per area, not per pixel
    noise *= np.sqrt(np.maximum(inten, 1e-9) / np.float32(photons))
    inten += noise
    del noise
    inten = cv2.GaussianBlur(inten, (0, 0), max(0.3, st["blur_mm"] / sp[1]))
    dens: np.ndarray = -cv2.log(np.maximum(inten, np.float32(1e-6)))
    del inten
    if st["grid"]:
        period = float(rng.uniform(2.5, 6.0))
        dens += np.float32(0.01) * np.sin(2 * np.pi * np.arange(cols, dtype=np.float32) / period)[None, :]

    # ---- processing: equalisation, unsharp masking, window and tone curve
    if st["equalise"] > 0:
        dens -= _smooth_blur(dens, st.get("equalise_mm", 40.0) / sp[1]) * np.float32(st["equalise"])
    if st["unsharp"] > 0:
        low = _smooth_blur(dens, st["unsharp_mm"] / sp[1])
        dens += (dens - low) * np.float32(st["unsharp"])
        del low
    sample = dens[::sr, ::sc]
    sample = sample[in_body] if in_body.sum() > 100 else sample.ravel()
    lo, hi = np.percentile(sample, st["window"])
    maxval = (1 << st["bits_stored"]) - 1
    lut_in = np.linspace(0, 1, 4096, dtype=np.float32)
    lut = np.clip(lut_in ** np.float32(st["gamma"]) * maxval, 0, maxval)
    q = np.clip((dens - lo) * np.float32(4095.0 / max(hi - lo, 1e-6)), 0, 4095).astype(np.uint16)
    del dens
    img = lut.astype(np.uint16)[q]

    exposed = _display_artefacts(img, st, rng, maxval, sp, facing)
    if st["photometric"] == "MONOCHROME1":
        img = (maxval - img).astype(np.uint16)

    # ---- what is in view
    margin = 1.0
    def inside(p):
        p = np.asarray(p)
        c, r = p[..., 0], p[..., 1]
        ok = (c >= margin) & (c <= cols - 1 - margin) & (r >= margin) & (r <= rows - 1 - margin)
        ci = np.clip(np.round(c).astype(int), 0, cols - 1)
        ri = np.clip(np.round(r).astype(int), 0, rows - 1)
        return ok & exposed[ri, ci]
    in_view = inside(px(pts)).all(axis=1)
    s1_in = bool(inside(px(spine.s1_mm)).all())
    fem_in = np.array([bool(inside(px(_circle_poly(c, r, 16))).all()) for c, r in zip(fc, fr, strict=True)])
    style = {k: v for k, v in st.items()}
    return Radiograph(
        pixels=img,
        photometric=st["photometric"],
        bits_stored=st["bits_stored"],
        modality=st["modality"],
        spacing_mm=sp,
        imager_spacing_mm=det_rc,
        magnification=mag,
        calibration=st["calibration"],
        facing=facing,
        field_of_view=st["field_of_view"],
        origin_px=origin,
        in_view=in_view,
        s1_in_view=s1_in,
        femoral_in_view=fem_in,
        style=style,
    )


def _display_artefacts(img: np.ndarray, st: dict[str, Any], rng: np.random.Generator, maxval: int,
                       sp: tuple[float, float], facing: str) -> np.ndarray:
    """Seams, collimation and burned-in markers, in display space, into ``img : (rows, cols)``
    (in place); returns the exposed field ``(rows, cols)`` bool."""
    rows, cols = img.shape
    exposed = np.ones((rows, cols), bool)
    if st["field_of_view"] == "whole":
        for _ in range(st["seams"]):
            r = int(rng.uniform(0.2, 0.8) * rows)
            img[r : r + max(1, int(0.5 / sp[0]))] = int(maxval * rng.uniform(0.3, 0.9))
    if st["collimation"] != "none":
        m = [int(rng.uniform(0, 0.06) * cols), int(rng.uniform(0, 0.06) * cols), int(rng.uniform(0, 0.03) * rows),
             int(rng.uniform(0, 0.03) * rows)]
        exposed[:, : m[0]] = False
        exposed[:, cols - m[1]:] = False
        exposed[: m[2]] = False
        exposed[rows - m[3]:] = False
        img[~exposed] = maxval if st["collimation"] == "white" else 0
    if st["markers"] or st["ruler"]:
        _burn_in(img, st, rng, maxval, sp, facing)
    return exposed


def _interp_profile(y_knots: np.ndarray, x_knots: np.ndarray, y: np.ndarray) -> np.ndarray:
    order = np.argsort(y_knots)
    return np.interp(y, y_knots[order], x_knots[order])


def _soft_tissue(spine: Spine, st: dict, X: np.ndarray, Y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Line integral of soft-tissue attenuation (lungs and gas subtracted) on a coarse grid."""
    pts = spine.points_mm
    y_lv = pts[:, :4, 1].mean(axis=1)
    post_tip = np.array([pe[:, 0].min() for pe in spine.posterior_elements_mm])
    ant = pts[:, [0, 3], 0].max(axis=1)
    yk = np.concatenate([[y_lv[0] + 150], y_lv, [spine.hip_axis_mm[1] - 150]])
    post_k = np.concatenate([[post_tip[0] + 20], post_tip, [spine.sacrum_mm[:, 0].min() - 40]])
    ant_k = np.concatenate([[ant[0] + 60], ant, [spine.femoral_centers_mm[:, 0].max() + 60]])
    y = Y[:, 0]
    fat = rng.uniform(25, 70)
    x_post = _interp_profile(yk, post_k, y) - fat
    depth = st["abdomen_depth_mm"]
    chest = depth * rng.uniform(0.75, 1.0)
    lvl_t12 = y_lv[LEVEL_INDEX["T12"]]
    front = np.where(y > lvl_t12, chest, depth) * (1 + 0.1 * np.sin(y / 70.0 + rng.uniform(0, 6)))
    x_ant = _interp_profile(yk, ant_k, y) + front
    xc = (x_post + x_ant) / 2
    half = np.maximum((x_ant - x_post) / 2, 1.0)
    width = st["body_width_mm"]
    u = (X - xc[:, None]) / half[:, None]
    # a trunk's axial section is closer to a rounded rectangle than to an ellipse
    path = width * np.clip(1 - u**4, 0, 1) ** 0.25
    # soft edges on the skin line
    mu = st["soft_mu"]
    att = mu * path
    # lungs: air along part of the path, anterior of the spine, between diaphragm and apex
    t1_y = y_lv[LEVEL_INDEX["T1"]]
    dia = lvl_t12 + rng.uniform(-10, 40) + 0.25 * np.clip(X, 0, None)
    spine_front = _interp_profile(yk, ant_k, y)[:, None]
    lung = (Y < t1_y + 20) & (Y > dia) & (X > spine_front - 50) & (u < 0.85)
    lung_frac = rng.uniform(0.45, 0.7)
    lung_mask = cv2.GaussianBlur(lung.astype(np.float32), (0, 0), 6)
    att -= mu * width * lung_frac * lung_mask * np.sqrt(np.clip(1 - u**2, 0, 1))
    # bowel gas
    gas = np.zeros_like(att, np.float32)
    l3 = pts[LEVEL_INDEX["L3"], :4].mean(axis=0)
    for _ in range(st["bowel_gas"]):
        cx = l3[0] + rng.uniform(10, depth * 0.8)
        cy = l3[1] + rng.uniform(-120, 100)
        r = rng.uniform(8, 35)
        gas += np.exp(-((X - cx) ** 2 + (Y - cy) ** 2) / (2 * r * r)).astype(np.float32) * rng.uniform(0.5, 1.5)
    att -= mu * 40 * gas
    # arms raised forwards across the upper thorax
    if st["arms"] and st["field_of_view"] == "whole":
        for _ in range(2):
            sy = t1_y - rng.uniform(0, 60)
            ang = math.radians(rng.uniform(-20, 35))
            d = np.abs(-(X - ant[1]) * math.sin(ang) + (Y - sy) * math.cos(ang))
            att += mu * 90 * np.clip(1 - (d / 45.0) ** 2, 0, 1)
    return np.maximum(att, 0.0)


def _draw_bones(bone: np.ndarray, spine: Spine, st: dict, px, sp, rng: np.random.Generator) -> None:
    """Add the excess attenuation of bone (over soft tissue) into ``bone``."""
    dens = spine.spec.bone_density
    mm = 1.0 / sp[1]
    cortex = np.float32(0.35 * st["cortex_gain"] * (0.5 + 0.5 * dens))
    rim = max(1, int(round(1.0 * mm)))
    for i in range(len(LEVELS)):
        w = spine.spec.width_mm[i]
        trab = 0.015 * w * dens
        poly = px(spine.body_polygon_mm(i))
        _add_shape(bone, poly, trab, cortex, rim)
        if spine.cleft[i] == "gas":
            p = spine.points_mm[i]
            a = 0.6 * p[0] + 0.4 * p[3]
            b = 0.6 * p[1] + 0.4 * p[2]
            mid_a, mid_b = a + 0.15 * (b - a), b + 0.15 * (a - b)
            _add_shape(bone, px(np.array([mid_a, mid_b])), -trab * 1.6, closed=False, thickness_px=max(1, int(2.0 * mm)))
        pe = px(spine.posterior_elements_mm[i])
        _add_shape(bone, pe, 0.18 * dens, cortex * 0.6, rim)
    _add_shape(bone, px(spine.sacrum_mm), 0.3 * dens, cortex, rim)
    # femoral heads, necks and shafts, each side on its own (their outlines double up)
    for c, r in zip(spine.femoral_centers_mm, spine.femoral_radii_mm, strict=True):
        _add_shape(bone, px(_circle_poly(c, r)), 0.3 * dens, cortex, rim)
        ang = math.radians(rng.uniform(-110, -70))
        d = np.array([math.cos(ang), math.sin(ang)])
        n = np.array([-d[1], d[0]])
        shaft = np.array([c + 0.5 * r * n, c + 0.5 * r * n + 3.5 * r * d, c - 0.5 * r * n + 3.5 * r * d, c - 0.5 * r * n])
        _add_shape(bone, px(shaft), 0.25 * dens, cortex, rim)
        troch = c + np.array([rng.uniform(-25, -5), -rng.uniform(25, 40)])
        _add_shape(bone, px(_circle_poly(troch, r * 0.7, 24)), 0.12 * dens, cortex * 0.5, rim)
    # ilia: two overlapping wings above and behind the hips, and the acetabular roofs
    s1 = spine.s1_mm.mean(axis=0)
    for k in range(2):
        off = rng.normal(0, 6, 2)
        centre = np.array([0.6 * s1[0] + off[0] + 5, 0.55 * s1[1] + off[1] + 15])
        t = np.linspace(0, 2 * np.pi, 40, endpoint=False)
        radius = 1 + 0.15 * np.sin(2 * t + rng.uniform(0, 6)) + 0.08 * np.sin(3 * t + rng.uniform(0, 6))
        tilt = math.radians(rng.uniform(20, 45))
        e = np.stack([rng.uniform(55, 75) * np.cos(t) * radius, rng.uniform(35, 50) * np.sin(t) * radius], axis=1)
        wing = centre + e @ np.array([[math.cos(tilt), math.sin(tilt)], [-math.sin(tilt), math.cos(tilt)]])
        _add_shape(bone, px(wing), 0.12 * dens, cortex * 0.6, rim)
        c = spine.femoral_centers_mm[k]
        r = spine.femoral_radii_mm[k] + 3
        arc = c + r * np.stack([np.cos(np.linspace(0.2, 2.9, 20)), np.sin(np.linspace(0.2, 2.9, 20))], axis=1)
        _add_shape(bone, px(arc), 0.0, cortex, rim, closed=False, thickness_px=max(1, int(3 * mm)))
        isch = c + np.array([rng.uniform(-40, -10), -rng.uniform(40, 70)])
        _add_shape(bone, px(_circle_poly(isch, 22, 24)), 0.1 * dens, cortex * 0.5, rim)
    # ribs: pairs from each thoracic vertebra, arching back then forwards and down
    if st["ribs"]:
        for name in LEVELS[1:13]:
            i = LEVEL_INDEX[name]
            p = spine.points_mm[i]
            head = p[1] + 0.3 * (p[2] - p[1]) + np.array([-4.0, 0.0])
            for side in (0, 1):
                s = 1.0 + (0.04 if side else -0.04)
                angle_pt = head + np.array([-rng.uniform(25, 50), rng.uniform(-15, 5)]) * s
                front = head + np.array([rng.uniform(120, 220), -rng.uniform(40, 110)]) * s
                ctrl = head + np.array([rng.uniform(40, 90), rng.uniform(10, 40)]) * s
                curve = np.concatenate([_bezier(head, angle_pt + [0, 8], angle_pt, 8), _bezier(angle_pt, ctrl, front)])
                _add_shape(bone, px(curve), 0.06 * dens, cortex * 0.5, rim, closed=False,
                           thickness_px=max(2, int(rng.uniform(7, 11) * mm)))
    # humeri when the arms are raised
    if st["arms"] and st["field_of_view"] == "whole":
        t1 = spine.points_mm[LEVEL_INDEX["T1"], :4].mean(axis=0)
        for _ in range(2):
            a = t1 + np.array([rng.uniform(20, 60), rng.uniform(-60, 0)])
            ang = math.radians(rng.uniform(-10, 40))
            b = a + 260 * np.array([math.cos(ang), math.sin(ang)])
            _add_shape(bone, px(np.array([a, b])), 0.2 * dens, cortex, rim, closed=False,
                       thickness_px=max(2, int(22 * mm)))


def _burn_in(img: np.ndarray, st: dict, rng: np.random.Generator, maxval: int, sp, facing: str) -> None:
    rows, cols = img.shape
    scale = max(0.5, 8.0 / (sp[1] * 100))
    mask = np.zeros((rows, cols), np.uint8)  # cv2 draws text into 8-bit images only
    if st["markers"]:
        side = "L" if rng.random() < 0.5 else "R"
        org = (int(rng.uniform(0.05, 0.3) * cols), int(rng.uniform(0.03, 0.15) * rows))
        cv2.putText(mask, side, org, cv2.FONT_HERSHEY_SIMPLEX, 2.5 * scale, 255, max(1, int(4 * scale)))
        text = str(rng.choice(["STANDING", "ERECT", "LAT", "WS LAT", "STEHEND"]))
        org = (int(rng.uniform(0.05, 0.5) * cols), int(rng.uniform(0.85, 0.97) * rows))
        cv2.putText(mask, text, org, cv2.FONT_HERSHEY_SIMPLEX, 1.2 * scale, 255, max(1, int(2 * scale)))
        img[mask > 0] = maxval
    if st["ruler"]:
        c = int((0.04 if facing == "right" else 0.92) * cols)
        step = max(2, int(round(10.0 / sp[0])))
        for k, r in enumerate(range(0, rows, step)):
            length = int((6 if k % 5 else 12) / sp[1])
            img[r : r + max(1, int(0.4 / sp[0])), c : c + length] = maxval
