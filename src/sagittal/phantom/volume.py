"""CT and MR series of a phantom spine: one 3-D tissue model, two scanners.

The sagittal outline of every structure is rasterised once on a fine grid (``SagittalMaps``);
the third, lateral dimension comes from each structure's half-width at that point (a
vertebral body's axial section is an ellipse of its depth and width). ``tissue_labels``
answers "which tissue is at these points" for any grid, so an axial CT and a sagittal MR
sample the same anatomy.

Patient coordinates follow DICOM (LPS, mm): +X patient left, +Y posterior, +Z head. The
sagittal frame maps as ``X = lateral + ox``, ``Y = -anterior + oy``, ``Z = superior + oz``
with the offset ``origin_lps`` recorded in the truth.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import cv2
import numpy as np
from numpy.typing import ArrayLike

from ..levels import LEVEL_INDEX, LEVELS
from .anatomy import Spine

# tissue codes
AIR, FAT, MUSCLE, LUNG, MARROW, CORTEX, DISC, CSF, CORD, OEDEMA, GAS, FLUID, SOFT, MODIC1, MODIC2 = range(15)
TISSUES = ("air", "fat", "muscle", "lung", "marrow", "cortex", "disc", "csf", "cord", "oedema", "gas", "fluid", "soft",
           "modic1", "modic2")

_RES_MM = 0.5  # sagittal map grid
_CANAL_DEPTH_MM = 15.0
_CANAL_HALF_MM = 10.0
_HIP_HALF_MM = 85.0  # lateral distance of each femoral head from the midline


@dataclass(frozen=True)
class SagittalMaps:
    """Rasterised sagittal outlines. Maps are ``(H, W)`` over ``x0 + j*res``, ``y0 - i*res``."""

    x0: float
    y0: float
    res: float
    struct: np.ndarray  # uint8: 0 none, 1 body, 2 disc, 3 posterior element, 4 canal, 5 sacrum
    level: np.ndarray  # int8 level index, -1 none
    half_width: np.ndarray  # float32 lateral half-width, mm
    height_frac: np.ndarray  # float32 0 at the inferior, 1 at the superior endplate of a body
    cortex_dist: np.ndarray  # float32 in-plane distance to the outline, mm
    skin_post: np.ndarray  # (H,) posterior skin x per row
    skin_ant: np.ndarray  # (H,) anterior skin x per row
    body_half_width: float
    diaphragm_y: float
    apex_y: float
    spine_front: np.ndarray  # (H,) anterior spine x per row
    depth_frac: np.ndarray | None = None  # float32 0 at the posterior, 1 at the anterior wall of a body


@dataclass(frozen=True)
class LateralCurve:
    """A scoliotic spine's midline: lateral offset (mm, + patient left) as a function of the
    sagittal-frame height ``y`` (mm), linear between knots, constant beyond them. The pelvis
    (femoral heads, sacrum below S1) stays on the body's midline."""

    y_mm: np.ndarray  # (K,) ascending
    offset_mm: np.ndarray  # (K,)

    def at(self, y: np.ndarray) -> np.ndarray:
        return np.interp(np.asarray(y, float), self.y_mm, self.offset_mm)


def scoliosis_curve(spine: Spine, rng: np.random.Generator, amplitude_mm: float | None = None,
                    double: bool | None = None) -> LateralCurve:
    """A lateral curve zero at S1 rising to one (C-shaped) or two opposite (S-shaped) arcs up to
    C7; ``amplitude_mm`` (default 5–30 mm, random side) is the largest deviation."""
    y0 = float(spine.s1_mm[:, 1].mean())
    y1 = float(spine.points_mm[0, :, 1].max()) + 30
    amp = float(rng.uniform(5, 30) if amplitude_mm is None else amplitude_mm) * (1 if rng.random() < 0.5 else -1)
    s_shape = bool(rng.random() < 0.4) if double is None else double
    t = np.linspace(0, 1, 33)
    phase = float(rng.uniform(-0.15, 0.15))
    shape = np.sin(np.pi * np.clip(t + phase * t * (1 - t) * 4, 0, 1) * (2 if s_shape else 1))
    return LateralCurve(y0 + t * (y1 - y0), amp * shape)


def sagittal_maps(spine: Spine, y_range: tuple[float, float], rng: np.random.Generator) -> SagittalMaps:
    """Rasterise ``spine`` between ``y_range = (y_bottom, y_top)`` (mm)."""
    pts = spine.points_mm
    x_lo = float(min(pe[:, 0].min() for pe in spine.posterior_elements_mm) - 80)
    x_hi = float(pts[..., 0].max() + 320)
    y_lo, y_hi = y_range
    res = _RES_MM
    W = int((x_hi - x_lo) / res) + 1
    H = int((y_hi - y_lo) / res) + 1

    def to_px(p):
        p = np.asarray(p, float)
        return np.round(np.stack([(p[..., 0] - x_lo) / res, (y_hi - p[..., 1]) / res], -1) * 16).astype(np.int32)

    struct = np.zeros((H, W), np.uint8)
    level = np.full((H, W), -1, np.int8)
    half = np.zeros((H, W), np.float32)
    frac = np.zeros((H, W), np.float32)
    dfrac = np.zeros((H, W), np.float32)
    jj, ii = np.meshgrid(np.arange(W, dtype=np.float32), np.arange(H, dtype=np.float32))
    X = x_lo + jj * res
    Y = y_hi - ii * res

    # canal strip behind the posterior walls, drawn first so the arches overwrite only outside it
    wall = np.concatenate([np.stack([pts[i, 1], pts[i, 2]]) for i in range(len(LEVELS))] + [spine.s1_mm[1:2]])
    back = wall - np.array([_CANAL_DEPTH_MM, 0.0])
    canal = np.concatenate([wall, back[::-1]])
    for i, pe in enumerate(spine.posterior_elements_mm):
        m = np.zeros((H, W), np.uint8)
        cv2.fillPoly(m, [to_px(pe).reshape(-1, 1, 2)], 1, cv2.LINE_8, 4)
        sel = m.astype(bool)
        struct[sel], level[sel], half[sel] = 3, i, 12.0
    m = np.zeros((H, W), np.uint8)
    cv2.fillPoly(m, [to_px(canal).reshape(-1, 1, 2)], 1, cv2.LINE_8, 4)
    sel = m.astype(bool)
    struct[sel], half[sel] = 4, _CANAL_HALF_MM

    # sacrum, narrowing caudally
    m = np.zeros((H, W), np.uint8)
    cv2.fillPoly(m, [to_px(spine.sacrum_mm).reshape(-1, 1, 2)], 1, cv2.LINE_8, 4)
    sel = m.astype(bool)
    s1_mid = spine.s1_mm.mean(axis=0)
    dist_down = np.clip((s1_mid[1] - Y) / 110.0, 0, 1)
    struct[sel] = 5
    half[sel] = (48.0 - 38.0 * dist_down)[sel]

    # discs and bodies (elliptic axial section)
    for i in range(len(LEVELS)):
        p = pts[i]
        u = p[3] - p[2]
        depth = float(np.linalg.norm(u))
        u = u / depth
        v = np.array([-u[1], u[0]])
        width = float(spine.spec.width_mm[i])
        for kind, poly in ((2, spine.discs_mm[i]), (1, spine.body_polygon_mm(i))):
            m = np.zeros((H, W), np.uint8)
            cv2.fillPoly(m, [to_px(poly).reshape(-1, 1, 2)], 1, cv2.LINE_8, 4)
            sel = m.astype(bool)
            a = (X[sel] - p[2][0]) * u[0] + (Y[sel] - p[2][1]) * u[1]
            t = np.clip(2 * a / depth - 1, -1, 1)
            struct[sel], level[sel] = kind, i
            half[sel] = width / 2 * np.sqrt(1 - t**2 * 0.85)
            if kind == 1:
                b = (X[sel] - p[2][0]) * v[0] + (Y[sel] - p[2][1]) * v[1]
                h_here = spine.heights_mm[i, 2] + (spine.heights_mm[i, 0] - spine.heights_mm[i, 2]) * np.clip(a / depth, 0, 1)
                frac[sel] = np.clip(b / np.maximum(h_here, 1e-3), 0, 1)
                dfrac[sel] = (t + 1) / 2
    bone = np.isin(struct, (1, 3, 5)).astype(np.uint8)
    cortex_dist = cv2.distanceTransform(bone, cv2.DIST_L2, 3).astype(np.float32) * res

    # skin lines and lungs
    y_lv = pts[:, :4, 1].mean(axis=1)
    yk = np.concatenate([[y_lv[0] + 200], y_lv, [spine.hip_axis_mm[1] - 200]])
    post_tip = np.array([pe[:, 0].min() for pe in spine.posterior_elements_mm])
    post = np.concatenate([[post_tip[0]], post_tip, [spine.sacrum_mm[:, 0].min() - 30]]) - rng.uniform(30, 60)
    ant_sp = pts[:, [0, 3], 0].max(axis=1)
    ant_k = np.concatenate([[ant_sp[0]], ant_sp, [spine.femoral_centers_mm[:, 0].max() + 40]])
    yrow = Y[:, 0]
    order = np.argsort(yk)
    skin_post = np.interp(yrow, yk[order], post[order])
    spine_front = np.interp(yrow, yk[order], ant_k[order])
    skin_ant = spine_front + rng.uniform(120, 220)
    return SagittalMaps(
        x0=x_lo, y0=y_hi, res=res, struct=struct, level=level, half_width=half, height_frac=frac,
        cortex_dist=cortex_dist, skin_post=skin_post, skin_ant=skin_ant,
        body_half_width=float(rng.uniform(140, 190)),
        diaphragm_y=float(y_lv[LEVEL_INDEX["T11"]] + rng.uniform(-10, 30)),
        apex_y=float(y_lv[LEVEL_INDEX["T1"]] + 20), spine_front=spine_front, depth_frac=dfrac,
    )


def tissue_labels(maps: SagittalMaps, spine: Spine, x: ArrayLike, y: ArrayLike, z: ArrayLike,
                  lateral: LateralCurve | None = None, pelvis: Pelvis | None = None) -> np.ndarray:
    """Tissue code at sagittal-frame points (``x`` anterior, ``y`` superior, ``z`` lateral, mm).

    The three arrays broadcast together; the result has their broadcast shape (uint8).
    ``lateral`` shifts the spine (not the trunk or the femoral heads) sideways by height: a
    scoliosis, so that the mid-sagittal plane of each body changes along the spine. ``pelvis``
    (``pelvis_of``) adds a bony pelvis and proximal femora about the femoral heads, on the body's
    midline like the heads (none by default: the femoral heads alone, as before).
    """
    x, y, z = np.broadcast_arrays(np.asarray(x, np.float32), np.asarray(y, np.float32), np.asarray(z, np.float32))
    z_trunk = z
    if lateral is not None:
        z = (z - lateral.at(y)).astype(np.float32)
    H, W = maps.struct.shape
    j = np.clip(np.round((x - maps.x0) / maps.res).astype(np.int32), 0, W - 1)
    i = np.clip(np.round((maps.y0 - y) / maps.res).astype(np.int32), 0, H - 1)
    struct = maps.struct[i, j]
    lvl = maps.level[i, j]
    half = maps.half_width[i, j]
    az = np.abs(z)
    out = np.full(x.shape, AIR, np.uint8)

    # soft tissue: an elliptic trunk; paraspinal muscle behind the spine; lungs in the chest
    post, ant = maps.skin_post[i], maps.skin_ant[i]
    xc, hx = (post + ant) / 2, np.maximum((ant - post) / 2, 1)
    inside = ((x - xc) / hx) ** 2 + (z_trunk / maps.body_half_width) ** 2 <= 1
    out[inside] = SOFT
    out[inside & (((x - xc) / hx) ** 2 + (z_trunk / maps.body_half_width) ** 2 > 0.8)] = FAT
    paraspinal = inside & (x < maps.spine_front[i] - 20) & (az < 70)
    out[paraspinal] = MUSCLE
    lung = inside & (y > maps.diaphragm_y + 0.2 * np.clip(x - maps.spine_front[i], 0, None)) & (y < maps.apex_y) & (az > 18) & (
        x > maps.spine_front[i] - 40) & (((x - xc) / hx) ** 2 + (z_trunk / maps.body_half_width) ** 2 < 0.7)
    out[lung] = LUNG

    # spine
    body = (struct == 1) & (az <= half)
    disc = (struct == 2) & (az <= half)
    canal = (struct == 4) & (az <= _CANAL_HALF_MM)
    pedicle = (struct == 4) & (az > _CANAL_HALF_MM) & (az <= _CANAL_HALF_MM + 7) & (lvl >= 0)
    arch = (struct == 3) & (az <= half)
    sacrum = (struct == 5) & (az <= half)
    out[disc] = DISC
    out[canal] = CSF
    cord = canal & (az < 5) & (y > spine.points_mm[LEVEL_INDEX["L1"], 2, 1])
    out[cord] = CORD
    cortex_d = maps.cortex_dist[i, j]
    for sel in (body, arch, sacrum, pedicle):
        out[sel] = MARROW
    shell = (body | sacrum) & ((cortex_d < 1.2) | (half - az < 1.2))
    out[shell] = CORTEX
    out[(arch | pedicle) & ((cortex_d < 1.0) | (half - az < 1.0))] = CORTEX

    # fracture findings inside bodies: oedema (band at the collapsed superior endplate, diffuse
    # or patchy), clefts; Modic endplate changes mirrored across a disc
    frac = maps.height_frac[i, j]
    dfrac = maps.depth_frac[i, j] if maps.depth_frac is not None else np.full(x.shape, 0.5, np.float32)
    for m in spine.spec.modic:
        n = LEVEL_INDEX[m.level]
        code = MODIC1 if m.type == 1 else MODIC2
        t = m.thickness_pct / 100.0
        out[body & (lvl == n) & (out == MARROW) & (frac <= t)] = code
        out[body & (lvl == n + 1) & (out == MARROW) & (frac >= 1 - t)] = code
    patterns = {LEVEL_INDEX[f.level]: f.oedema_pattern for f in spine.spec.fractures}
    for n in range(len(LEVELS)):
        extent = spine.oedema_pct[n]
        content = spine.cleft[n]
        if extent is None and content is None:
            continue
        in_body = body & (lvl == n) & (out == MARROW)
        if extent is not None:
            region = oedema_region(patterns.get(n, "band"), extent, dfrac, frac, seed=n)
            out[in_body & region] = OEDEMA
        if content is not None:
            band = in_body & (np.abs(frac - 0.7) < 0.08) & (az < 0.75 * half)  # a 4–5 mm cleft
            out[band] = GAS if content == "gas" else FLUID

    # the pelvis (bone only where soft tissue was: the spine and sacrum keep theirs), with the
    # joint space around each head kept free
    near = None
    if pelvis is not None:
        x_lo, x_hi, y_lo, y_hi = pelvis.box
        near = np.flatnonzero(((x >= x_lo) & (x <= x_hi) & (y >= y_lo) & (y <= y_hi)).ravel())
        if len(near):
            xs, ys, zs = x.ravel()[near], y.ravel()[near], z_trunk.ravel()[near]
            depth, joint = pelvis_labels(pelvis, xs, ys, zs)
            flat = out.reshape(-1)
            soft = np.isin(flat[near], (SOFT, FAT, MUSCLE))
            bone = (depth > 0) & ~joint & soft
            flat[near[bone]] = np.where(depth[bone] > _CORTEX_PELVIS_MM, MARROW, CORTEX)
            flat[near[joint & soft]] = SOFT

    # femoral heads (spheres at ±_HIP_HALF_MM)
    heads = np.zeros(x.shape, bool)
    for k, side in enumerate((1.0, -1.0)):
        c, r = spine.femoral_centers_mm[k], spine.femoral_radii_mm[k]
        d2 = (x - c[0]) ** 2 + (y - c[1]) ** 2 + (z_trunk - side * _HIP_HALF_MM) ** 2
        head = d2 <= r * r
        out[head] = MARROW
        out[head & (d2 >= (r - 1.5) ** 2)] = CORTEX
        heads |= head
    # the proximal femora: neck (its marrow joins the head's), greater trochanter, shaft
    if pelvis is not None and near is not None and len(near):
        fd = femur_depth(pelvis, xs, ys, zs)
        flat = out.reshape(-1)
        in_head = heads.ravel()[near]
        put = (fd > 0) & (np.isin(flat[near], (SOFT, FAT, MUSCLE)) | (in_head & (fd > _CORTEX_PELVIS_MM)))
        flat[near[put]] = np.where(fd[put] > _CORTEX_PELVIS_MM, MARROW, CORTEX)
    return out



# ------------------------------------------------------------------------------ pelvis

#: the pelvis' shapes are given in a frame that turns with the pelvis: origin at the hip axis,
#: ``a`` anterior and ``b`` along the hip axis -> S1 midpoint line, ``w`` lateral from the midline
#: on each side (mm); bone deeper than this is marrow, the rest cortex
_CORTEX_PELVIS_MM = 1.2


def _capsule_depth(p: np.ndarray, p0: np.ndarray, p1: np.ndarray, radius: float) -> np.ndarray:
    """How deep points ``p (N, 3)`` lie inside the capsule of ``radius`` about the segment p0-p1 (mm, < 0 outside)."""
    d = p1 - p0
    t = np.clip(((p - p0) @ d) / max(float(d @ d), 1e-9), 0, 1)
    return np.asarray(radius - np.linalg.norm(p - (p0 + t[:, None] * d), axis=1), np.float32)


def _ellipsoid_depth(p: np.ndarray, c: np.ndarray, semi: np.ndarray) -> np.ndarray:
    """About how deep points lie inside the axis-aligned ellipsoid (``semi`` half-axes; mm, < 0 outside)."""
    q = np.sqrt((((p - c) / semi) ** 2).sum(axis=1))
    return np.asarray((1 - q) * float(np.min(semi)), np.float32)


@dataclass(frozen=True)
class Pelvis:
    """A bony pelvis about the phantom's femoral heads, drawn by ``tissue_labels`` in the CT/MR
    phantom: per side an acetabulum (a hemispherical cup of bone around the head, a joint space of
    ``joint_mm`` between), an iliac wing (a flared elliptic shell from the acetabular roof to the
    crest, the anterior superior iliac spine to the posterior spines behind the sacrum), the thick
    ilium beside the sacroiliac joint, the ischium and its tuberosity below and behind the head,
    the pubic rami in front to the symphysis, and the proximal femur (neck, greater trochanter,
    shaft). Sizes are adult ones (cup depth about the head's radius, crest about 40-60 mm above S1,
    crests 115-140 mm from the midline), scaled with the head and randomised per spine
    (``pelvis_of``). Coordinates: see ``_PelvisFrame``."""

    origin: np.ndarray  # (2,) sagittal-frame hip axis
    ua: np.ndarray  # (2,) sagittal-frame direction of the pelvis' anterior axis
    ub: np.ndarray  # (2,) of its up axis (hip axis -> S1 midpoint)
    h: float  # hip axis to S1 midpoint, mm
    heads: np.ndarray  # (2, 3) head centres (a, b, w), w = lateral distance (+) on its own side
    radii: np.ndarray  # (2,)
    joint_mm: np.ndarray  # (2,) joint space between head and cup
    cup_mm: np.ndarray  # (2,) cup wall thickness
    cup_normal: np.ndarray  # (2, 3) where each cup opens (a, b, w): lateral, down, forward
    wing: dict  # iliac wing parameters (see ``_wing_depth``)
    si: np.ndarray  # (2, 2, 3) per side: the thick ilium by the sacroiliac joint, centre and half-axes
    ilium: np.ndarray  # (2, 2, 3) per side: the ilium's body from the acetabular roof to the sacroiliac joint
    ilium_r: np.ndarray  # (2,) its radius
    ischium: np.ndarray  # (2, 2, 3) per side: the body's top by the cup, the tuberosity's centre
    ischium_r: np.ndarray  # (2,) the body's radius
    tuber: np.ndarray  # (2, 3) the tuberosity's half-axes
    pubis: np.ndarray  # (2, 4, 3) per side: superior ramus from, symphysis top, symphysis bottom, inferior ramus end
    pubis_r: np.ndarray  # (2, 2) superior and inferior ramus radii
    neck: np.ndarray  # (2, 3, 3) per side: neck end, trochanter centre, shaft end
    femur_r: np.ndarray  # (2, 3) neck radius, shaft radius, trochanter half-size
    box: tuple[float, float, float, float]  # sagittal-frame (x_lo, x_hi, y_lo, y_hi) holding it all

    def local(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Sagittal-frame (x anterior, y superior) -> the pelvis frame's (a, b)."""
        x, y = x - self.origin[0], y - self.origin[1]
        return x * self.ua[0] + y * self.ua[1], x * self.ub[0] + y * self.ub[1]

    def to_sagittal(self, a: float, b: float) -> np.ndarray:
        return self.origin + a * self.ua + b * self.ub


def pelvis_of(spine: Spine, seed: int | None = None) -> Pelvis:
    """The pelvis of ``spine``: drawn from a stream seeded by the spine itself (every sequence of
    one study, and a CT of it, gets the same pelvis; no draw from the caller's generator, so the
    rest of a phantom is what it was without a pelvis), or from ``seed``."""
    sp = spine.spec
    key = [int(round(sp.hip_to_s1_mm * 1000)), int(round(sp.femoral_head_radius_mm * 1000)),
           int(round(sp.pelvic_incidence_deg * 1000))] if seed is None else [int(seed)]
    rng = np.random.default_rng([42_170, *key])
    s1_mid = spine.s1_mm.mean(axis=0)
    up = s1_mid - spine.hip_axis_mm
    h = float(np.linalg.norm(up))
    ub = up / h
    ua = np.array([ub[1], -ub[0]])
    scale = float(np.clip(np.mean(spine.femoral_radii_mm) / 24.0, 0.85, 1.15))
    cen = spine.femoral_centers_mm - spine.hip_axis_mm
    heads = np.array([[c @ ua, c @ ub, _HIP_HALF_MM] for c in cen])
    radii = np.asarray(spine.femoral_radii_mm, float)

    def u(lo: float, hi: float, n: int | None = None) -> Any:
        return rng.uniform(lo, hi, n) if n else float(rng.uniform(lo, hi))

    joint = u(2.0, 4.0, 2)
    cup = u(4.0, 7.0, 2) * scale
    normals = []
    for _ in range(2):
        inc, av = np.radians(u(38, 52)), np.radians(u(10, 25))  # inclination, anteversion
        n = np.array([np.sin(av), -np.cos(inc) * np.cos(av), np.sin(inc) * np.cos(av)])
        normals.append(n / np.linalg.norm(n))
    # the sacrum's posterior surface in the pelvis frame (its polygon), for the posterior spines
    sac = (spine.sacrum_mm - spine.hip_axis_mm)
    sac_a = sac @ ua
    wing = {
        "a_c": u(-8, 2) * scale,
        "A0": u(55, 65) * scale, "Ac": u(100, 115) * scale,  # AP half-axis at the roof / crest
        "Z0": u(78, 86), "Zc": u(108, 125) * scale,  # lateral half-axis at the roof / crest
        "b0": float(np.max(heads[:, 1] + radii)) + 3.0,  # the roof
        "crest": h + u(35, 60) * scale,
        "asis": u(0.6, 0.72) * h, "psis": u(0.68, 0.8) * h,
        "a_psis": float(sac_a.min()) - u(5, 15),
        "t": u(4.0, 8.0) * scale,
        "notch": u(0.5, 0.62) * h,
        "psi_asis": u(62, 70),  # where the anterior superior iliac spine lies on the ellipse (deg from anterior)
    }
    si, isch, tub, pub, neck, fr = [], [], [], [], [], []
    isch_r, pub_r, body, body_r = [], [], [], []
    s1_y = float(s1_mid[1])
    for k in range(2):
        a0, b0_, w0 = heads[k]
        r = radii[k]
        # the thick ilium beside the sacrum's upper part (its half-width there, ``sagittal_maps``)
        b_si = h - u(30, 40) * scale
        y_si = float((spine.hip_axis_mm + b_si * ub)[1])
        half_sac = 48.0 - 38.0 * float(np.clip((s1_y - y_si) / 110.0, 0, 1))
        semi = np.array([u(20, 26), u(24, 32), u(9, 12)]) * scale
        si.append([[float(np.clip(sac_a.min() + 0.55 * (sac_a.max() - sac_a.min()), -80, 20)), b_si,
                    half_sac + u(2.5, 4.0) + semi[2]], semi])
        # the ilium's body: a column from the acetabular roof back and up to the sacroiliac joint
        body.append([[a0 - 0.2 * r, b0_ + r + joint[k] + 0.3 * cup[k], w0 - 0.3 * r], si[-1][0]])
        body_r.append(u(0.35, 0.45) * r)
        # ischium: from the cup's posterior-inferior part down to the tuberosity
        top = np.array([a0 - 0.45 * r, b0_ - 0.7 * r, w0 - 0.25 * r])
        t_c = np.array([a0 - u(0.6, 0.9) * r, b0_ - u(1.9, 2.3) * r, w0 - u(0.6, 0.9) * r])
        isch.append([top, t_c])
        isch_r.append(u(0.4, 0.5) * r)
        tub.append(np.array([u(0.5, 0.65), u(0.8, 1.0), u(0.45, 0.55)]) * r)
        # pubis: the superior ramus from the cup's anterior-inferior part to the symphysis, the inferior back to the tuberosity
        s_top = np.array([a0 + u(2.0, 2.4) * r, b0_ - u(1.0, 1.4) * r, 4.0 + u(0.0, 1.5)])
        s_bot = s_top + np.array([-u(0.15, 0.3) * r, -u(1.2, 1.5) * r, 0.0])
        start = np.array([a0 + 0.55 * r, b0_ - 0.45 * r, w0 - 0.45 * r])
        pub.append([start, s_top, s_bot, t_c + np.array([0.2 * r, -0.3 * r, 0.0])])
        pub_r.append([u(0.32, 0.4) * r, u(0.22, 0.28) * r])
        # femur: neck down, out and back from the head (neck-shaft angle 125-135 deg, anteversion 8-20 deg)
        ns, av = np.radians(u(125, 135) - 90), np.radians(u(8, 20))
        d = np.array([-np.sin(av) * np.cos(ns), -np.sin(ns), np.cos(av) * np.cos(ns)])
        n_end = np.array([a0, b0_, w0]) + u(1.8, 2.1) * r * d
        troch = n_end + np.array([-0.2 * r, 0.35 * r, 0.35 * r])
        shaft = n_end + np.array([0.0, -6.0 * r, -0.3 * r])
        neck.append([n_end, troch, shaft])
        fr.append([u(0.6, 0.68) * r, u(0.5, 0.58) * r, u(0.75, 0.9) * r])
    y_lo = float(np.min(cen[:, 1])) - 8.0 * float(np.max(radii))
    corners = np.array([[-200.0, -200.0], [-200.0, wing["crest"] + 10], [200.0, -200.0], [200.0, wing["crest"] + 10]])
    sag = corners @ np.stack([ua, ub]) + spine.hip_axis_mm
    box = (float(sag[:, 0].min()), float(sag[:, 0].max()), max(float(sag[:, 1].min()), y_lo + float(spine.hip_axis_mm[1])),
           float(sag[:, 1].max()))
    return Pelvis(origin=np.asarray(spine.hip_axis_mm, float), ua=ua, ub=ub, h=h, heads=heads, radii=radii,
                  joint_mm=joint, cup_mm=cup, cup_normal=np.array(normals), wing=wing, si=np.array(si),
                  ilium=np.array(body), ilium_r=np.array(body_r),
                  ischium=np.array(isch), ischium_r=np.array(isch_r), tuber=np.array(tub), pubis=np.array(pub),
                  pubis_r=np.array(pub_r), neck=np.array(neck), femur_r=np.array(fr), box=box)


def _wing_depth(pv: Pelvis, p: np.ndarray) -> np.ndarray:
    """How deep points ``p (N, 3)`` (a, b, w) lie in one side's iliac wing: a shell of thickness
    ``t`` on a flared ellipse (half-axes from ``A0``/``Z0`` at the acetabular roof to ``Ac``/``Zc``
    at the crest), between the anterior superior spine and the posterior spines behind the
    sacrum, from the roof (and the sciatic notch behind it) up to the crest."""
    wg = pv.wing
    a, b, w = p[:, 0], p[:, 1], p[:, 2]
    tb = np.clip((b - wg["b0"]) / (wg["crest"] - wg["b0"]), 0, 1)
    A = wg["A0"] + (wg["Ac"] - wg["A0"]) * tb
    Z = wg["Z0"] + (wg["Zc"] - wg["Z0"]) * np.sqrt(tb)
    ea, ez = (a - wg["a_c"]) / A, w / Z
    rho = np.sqrt(ea**2 + ez**2)
    radial = np.sqrt((a - wg["a_c"]) ** 2 + w**2)
    dist = np.abs(rho - 1) * radial / np.maximum(rho, 1e-6)  # ~ distance to the surface
    psi = np.degrees(np.arctan2(ez, ea))  # 0 anterior, 90 lateral, 180 posterior
    psi_lo = wg["psi_asis"]
    psi_hi = np.degrees(np.arccos(np.clip((wg["a_psis"] - wg["a_c"]) / wg["Ac"], -1, 1)))
    psi_hi = float(np.clip(psi_hi, 140, 172))
    floor = np.interp(psi, [psi_lo, 80, 122, 145, psi_hi], [wg["asis"] - 10, wg["b0"], wg["b0"], wg["notch"],
                                                           wg["psis"] - 25])
    crest = np.interp(psi, [psi_lo, 100, psi_hi], [wg["asis"], wg["crest"], wg["psis"]])
    edge = np.minimum.reduce([wg["t"] / 2 - dist, b - floor, crest - b, (psi - psi_lo) * radial * np.pi / 180,
                              (psi_hi - psi) * radial * np.pi / 180])
    return np.asarray(edge, np.float32)


def pelvis_labels(pv: Pelvis, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bone of the pelvis at sagittal-frame points (1-D arrays; ``z`` lateral from the body's
    midline): ``(bone depth (mm, > 0 inside), inside a head or its joint space)`` - the joint space
    and the heads are kept free of pelvic bone; the femoral neck, trochanter and shaft are given
    separately (``femur_depth``)."""
    a, b = pv.local(x, y)
    depth = np.full(x.shape, -1.0, np.float32)
    keep_out = np.zeros(x.shape, bool)
    for k, side in enumerate((1.0, -1.0)):
        w = side * z
        sel = w > -2.0
        if not sel.any():
            continue
        p = np.stack([a[sel], b[sel], w[sel]], axis=1)
        c, r = pv.heads[k], pv.radii[k]
        rel = p - c
        rho = np.linalg.norm(rel, axis=1)
        ri = r + pv.joint_mm[k]
        cupd = np.minimum.reduce([rho - ri, ri + pv.cup_mm[k] - rho, -(rel @ pv.cup_normal[k])])
        parts = [cupd, _wing_depth(pv, p), _ellipsoid_depth(p, pv.si[k, 0], pv.si[k, 1]),
                 _capsule_depth(p, pv.ilium[k, 0], pv.ilium[k, 1], pv.ilium_r[k]),
                 _capsule_depth(p, pv.ischium[k, 0], pv.ischium[k, 1], pv.ischium_r[k]),
                 _ellipsoid_depth(p, pv.ischium[k, 1], pv.tuber[k]),
                 _capsule_depth(p, pv.pubis[k, 0], pv.pubis[k, 1], pv.pubis_r[k, 0]),
                 _capsule_depth(p, pv.pubis[k, 1], pv.pubis[k, 2], pv.pubis_r[k, 0]),
                 _capsule_depth(p, pv.pubis[k, 2], pv.pubis[k, 3], pv.pubis_r[k, 1])]
        d = np.maximum.reduce(parts)
        d = np.where(p[:, 2] < 2.0, np.minimum(d, p[:, 2] - 2.0), d)  # the symphysis: 4 mm between the pubic bodies
        depth[sel] = np.maximum(depth[sel], d)
        keep_out[sel] |= rho < ri
    return depth, keep_out


def femur_depth(pv: Pelvis, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
    """How deep sagittal-frame points (1-D) lie in either proximal femur's neck, greater
    trochanter or shaft (mm, > 0 inside; the head itself is the phantom's sphere)."""
    a, b = pv.local(x, y)
    depth = np.full(x.shape, -1.0, np.float32)
    for k, side in enumerate((1.0, -1.0)):
        w = side * z
        sel = w > 20.0
        if not sel.any():
            continue
        p = np.stack([a[sel], b[sel], w[sel]], axis=1)
        c = pv.heads[k]
        n_end, troch, shaft = pv.neck[k]
        rn, rs, rt = pv.femur_r[k]
        d = np.maximum.reduce([_capsule_depth(p, c, n_end, rn), _ellipsoid_depth(p, troch, np.array([0.9, 1.2, 0.8]) * rt),
                               _capsule_depth(p, n_end, shaft, rs)])
        depth[sel] = np.maximum(depth[sel], d)
    return depth


def oedema_region(pattern: str, extent_pct: float, u: np.ndarray, v: np.ndarray, seed: int) -> np.ndarray:
    """Which body points ``(u, v)`` are oedematous; ``u`` runs posterior→anterior, ``v``
    inferior→superior endplate, both in [0, 1] across the body.

    ``band`` fills from the superior endplate down, ``diffuse`` grows from the body's centre,
    ``patchy`` thresholds a sum of blobs; each covers ``extent_pct`` of the unit square (so
    about that share of the mid-sagittal section).
    """
    e = float(np.clip(extent_pct / 100.0, 0.0, 1.0))
    if pattern == "band":
        return v >= 1 - e
    if pattern == "diffuse":
        field = -(((u - 0.5) / 0.5) ** 2 + ((v - 0.5) / 0.5) ** 2)
        gu, gv = np.meshgrid(np.linspace(0, 1, 65), np.linspace(0, 1, 65))
        ref = -(((gu - 0.5) / 0.5) ** 2 + ((gv - 0.5) / 0.5) ** 2)
    elif pattern == "patchy":
        r = np.random.default_rng([4211, seed, int(extent_pct * 100)])
        centres, sig = r.uniform(0.1, 0.9, (4, 2)), r.uniform(0.08, 0.18, 4)

        def blobs(a: np.ndarray, b: np.ndarray) -> np.ndarray:
            acc = np.zeros(np.broadcast(a, b).shape, np.float32)
            for (cu, cv), s in zip(centres, sig, strict=True):
                acc += np.exp(-((a - cu) ** 2 + (b - cv) ** 2) / (2 * s * s)).astype(np.float32)
            return acc

        field = blobs(u, v)
        gu, gv = np.meshgrid(np.linspace(0, 1, 65), np.linspace(0, 1, 65))
        ref = blobs(gu, gv)
    else:
        raise ValueError(f"unknown oedema pattern {pattern!r}")
    if e >= 1.0:
        return np.ones(np.shape(field), bool)
    return field >= np.quantile(ref, 1 - e)


#: Hounsfield units by tissue (bone marrow scaled by density at render time)
_HU = np.array([-1000, -100, 50, -850, 180, 900, 85, 10, 35, 160, -950, 20, 40, 200, 120], np.float32)

#: MR signal by tissue for each sequence (arbitrary units, 0–1200)
MR_SIGNAL = {
    # Oedema is bright on STIR and T2 but well below free fluid (cleft, CSF); Modic type 1 has
    # oedema-like signal, type 2 fatty signal (bright T1 and T2, dark STIR).
    #         air fat  musc lung marrow cortex disc csf  cord oedema gas fluid soft modic1 modic2
    "T1": np.array([0, 950, 350, 20, 650, 30, 300, 150, 420, 220, 10, 160, 400, 260, 900], np.float32),
    "T2": np.array([0, 700, 220, 20, 450, 30, 800, 1150, 480, 760, 10, 1150, 380, 720, 650], np.float32),
    "STIR": np.array([0, 60, 220, 20, 110, 20, 650, 1050, 400, 700, 10, 1050, 320, 650, 70], np.float32),
    # fat-suppressed T2 (spectral fat saturation)
    "T2FS": np.array([0, 80, 200, 20, 130, 25, 700, 1100, 420, 720, 10, 1100, 330, 660, 90], np.float32),
}
#: acquisition parameters written with each sequence
MR_SEQUENCES = {
    "T1": dict(description="T1 TSE SAG", scanning="SE", variant="SK", tr=550.0, te=11.0, ti=None, etl=3),
    "T2": dict(description="T2 TSE SAG", scanning="SE", variant="SK", tr=3500.0, te=95.0, ti=None, etl=17),
    "STIR": dict(description="STIR SAG", scanning=["IR", "SE"], variant="SK", tr=4000.0, te=60.0, ti=160.0, etl=13),
    "T2FS": dict(description="T2 TSE FS SAG", scanning="SE", variant="SK", tr=3800.0, te=90.0, ti=None, etl=17),
}


@dataclass(frozen=True)
class Volume:
    """A rendered CT or MR series: stored values and the geometry of every slice."""

    stored: np.ndarray  # (n, rows, cols) uint16
    modality: str  # CT or MR
    positions_lps: np.ndarray  # (n, 3) ImagePositionPatient of each slice
    orientation: tuple[float, ...]  # ImageOrientationPatient
    pixel_spacing_mm: tuple[float, float]  # (row, col)
    slice_thickness_mm: float
    rescale: tuple[float, float]  # (slope, intercept)
    bits_stored: int
    origin_lps: np.ndarray  # (3,) LPS position of the sagittal frame's origin (the hip axis)
    sequence: str | None = None  # MR: T1, T2 or STIR
    style: dict = field(default_factory=dict)
    lateral: LateralCurve | None = None  # a scoliotic spine's midline
    image_type: tuple[str, ...] | None = None  # DICOM ImageType when not the modality's default
    description: str | None = None  # SeriesDescription when not the modality's default

    def sagittal_to_lps(self, pts_mm: np.ndarray, lateral_mm: float | None = None) -> np.ndarray:
        """Sagittal-frame points ``(..., 2)`` to LPS ``(..., 3)``, on the spine's own midline
        (``lateral`` curve, else 0) unless ``lateral_mm`` is given."""
        p = np.asarray(pts_mm, float)
        o = self.origin_lps
        if lateral_mm is None:
            lat = self.lateral.at(p[..., 1]) if self.lateral is not None else np.zeros(p.shape[:-1])
        else:
            lat = np.full(p.shape[:-1], lateral_mm)
        return np.stack([lat + o[0], -p[..., 0] + o[1], p[..., 1] + o[2]], -1)


def _y_range(spine: Spine, top_level: str) -> tuple[float, float]:
    top = float(spine.points_mm[LEVEL_INDEX[top_level], :, 1].max() + 20)
    bottom = float((spine.femoral_centers_mm[:, 1] - spine.femoral_radii_mm).min() - 30)
    return bottom, top


#: the sections a thick CT slice averages lie at most this far apart (``render_ct``'s ``thickness_mm``)
SLAB_SECTION_MM = 1.0


@dataclass(frozen=True)
class Aorta:
    """The descending and abdominal aorta in front of the spine, from the middle of T4 (below the arch)
    dividing into the common iliac arteries at the middle of L4 (``render_ct(aorta=...)``): a look the plane
    model had not trained on before the eighteenth session. Contrast-enhanced: a lumen of 150-450 HU, as
    bright as marrow or brighter; unenhanced in an older patient: a lumen of blood (40 HU) with calcified
    plaques in its wall (``wall_hu`` 500-1000 HU, as bright as cortical bone, over about half its
    circumference). A simplification: the thoracic aorta lies left-lateral of the bodies more than in
    front of them; a vessel ``lateral_mm`` to the left by less than its radius is cut by the spine's
    mid-sagittal plane, as a tortuous aorta is."""

    lumen_hu: float = 300.0
    radius_mm: float = 11.0
    lateral_mm: float = 15.0  # the centre's distance to the patient's left of the spine's midline
    gap_mm: float = 3.0  # between the spine's anterior outline and the vessel's back (its wall, where drawn)
    wall_hu: float | None = None  # calcified plaques in a 2.5-mm wall (None: no wall drawn)


#: the common iliac arteries: radius as a share of the aorta's, sideways divergence per mm below the
#: bifurcation, and how far below it they are drawn (mm)
_ILIAC_RADIUS_SHARE, _ILIAC_SPREAD, _ILIAC_LENGTH_MM = 0.62, 0.6, 90.0
#: the calcified wall's thickness (mm; plaques are 1-3 mm thick)
_WALL_MM = 2.5


def aorta_hu(aorta: Aorta, maps: SagittalMaps, spine: Spine, x: ArrayLike, y: ArrayLike, z: ArrayLike,
             lateral: LateralCurve | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(lumen, wall)`` masks of ``aorta`` at sagittal-frame points (``tissue_labels``' ``x`` anterior,
    ``y`` superior, ``z`` lateral, +left, mm; broadcast together): the vessel runs from the middle of T4 down,
    its back (the wall's, where drawn) ``gap_mm`` in front of the spine's anterior outline at that height
    (``_spine_front``) and its centre ``lateral_mm`` to the left of the spine's midline at that height,
    following a scoliotic spine sideways; below the middle of L4, two iliac arteries diverging to either
    side of that midline. The wall's plaques cover the half of the circumference where
    ``sin(3 angle + y / 8 mm) > 0``."""
    x, y, z = np.broadcast_arrays(np.asarray(x, np.float32), np.asarray(y, np.float32), np.asarray(z, np.float32))
    i = np.clip(np.round((maps.y0 - y) / maps.res).astype(np.int32), 0, len(maps.spine_front) - 1)
    off = lateral.at(y).astype(np.float32) if lateral is not None else np.zeros_like(y)
    y_fork = float(spine.points_mm[LEVEL_INDEX["L4"], :4, 1].mean())
    y_arch = float(spine.points_mm[LEVEL_INDEX["T4"], :4, 1].mean())
    rim = _WALL_MM if aorta.wall_hu is not None else 0.0
    front = _spine_front(maps, i)
    below = np.clip(y_fork - y, 0.0, None)
    lumen = np.zeros(x.shape, bool)
    wall = np.zeros(x.shape, bool)
    for side in (1.0, -1.0):  # above the fork both sides draw the one aorta
        r = np.where(below > 0, aorta.radius_mm * _ILIAC_RADIUS_SHARE, aorta.radius_mm)
        xc = front + aorta.gap_mm + rim + r
        # the pair's middle moves from the aorta's centre to the spine's midline over the first 30 mm
        zc = off + aorta.lateral_mm * np.clip(1.0 - below / 30.0, 0.0, 1.0) + side * below * _ILIAC_SPREAD
        dx, dz = x - xc, z - zc
        d = np.sqrt(dx * dx + dz * dz)
        drawn = (below <= _ILIAC_LENGTH_MM) & (y <= y_arch)
        lumen |= drawn & (d <= r)
        if aorta.wall_hu is not None:
            plaque = np.sin(3 * np.arctan2(dz, dx) + y / 8.0) > 0
            wall |= drawn & (d > r) & (d <= r + _WALL_MM) & plaque
    return lumen, wall


def _spine_front(maps: SagittalMaps, i: np.ndarray) -> np.ndarray:
    """The spine's anterior outline (mm, sagittal frame ``x``) at the map's rows ``i``: the most anterior
    body or disc of each row (``maps.struct``), or ``maps.spine_front`` (a smoothed profile, which runs up to
    a few millimetres behind the bodies' front where the spine curves) where that lies further forward."""
    rows = np.unique(i)
    spine_part = np.isin(maps.struct[rows], (1, 2))
    last = spine_part.shape[1] - 1 - np.argmax(spine_part[:, ::-1], axis=1)
    exact = np.where(spine_part.any(axis=1), maps.x0 + (last + 0.5) * maps.res, -np.inf)
    front = np.array(maps.spine_front, np.float32)
    front[rows] = np.fmax(front[rows], exact)
    return front[i]


def render_ct(spine: Spine, rng: np.random.Generator, *, pixel_spacing_mm: float = 1.5, slice_mm: float = 3.0,
              matrix: int = 256, top_level: str = "T10", noise_hu: float | None = None,
              scoliosis: LateralCurve | None = None, lateral_centre_mm: float = 0.0,
              pelvis: bool | Pelvis = True, thickness_mm: float | None = None, gantry_tilt_deg: float = 0.0,
              aorta: Aorta | None = None) -> Volume:
    """Axial CT in HU of the thoracolumbar spine and pelvis (stored = HU + 1024, 12 bits).

    ``thickness_mm``: each slice is the mean of the slab that thick about its centre (sections
    ``SLAB_SECTION_MM`` apart at most), as a reconstruction's slice sensitivity profile averages it,
    and ``SliceThickness`` says so - thicker than ``slice_mm`` for an overlapping reconstruction;
    ``None``: each slice is its centre's section (the phantom before the sixteenth session), its
    ``SliceThickness`` the spacing. The same ``rng`` draws either way. ``gantry_tilt_deg``: each slice's plane
    is tilted that far about the left-right axis through its centre (rows running posterior and caudal), the
    table still advancing head-foot by ``slice_mm`` - a gantry tilt (not drawn with ``thickness_mm``).

    ``scoliosis`` curves the spine sideways; ``lateral_centre_mm`` moves the field of view
    sideways (a small field may then hold one femoral head only). ``pelvis``: the bony pelvis
    and proximal femora around the femoral heads (``pelvis_of(spine)``, or the one given);
    ``False`` draws the heads alone, the phantom before the pelvis (the rest of the volume is the
    same: the pelvis draws nothing from ``rng``). ``aorta``: the aorta and iliac arteries drawn too (``Aorta``;
    it draws nothing from ``rng``: the same spine, field and noise without it), at each slice's centre
    section only: a thick slab's vessel is not averaged over the slab (it replaces the slab's mean there)."""
    if thickness_mm is not None and not (0.0 < thickness_mm <= 20.0):
        raise ValueError(f"slice thickness must be 0-20 mm, not {thickness_mm}")
    if not -30.0 <= gantry_tilt_deg <= 30.0 or (gantry_tilt_deg and thickness_mm):
        raise ValueError(f"a gantry tilt of -30 to 30 deg, without a slice thickness, not {gantry_tilt_deg}")
    tilt = np.radians(gantry_tilt_deg)
    half = (thickness_mm or 0.0) / 2 + (abs(float(np.sin(tilt))) * matrix * pixel_spacing_mm / 2 if tilt else 0.0)
    y_bot, y_top = _y_range(spine, top_level)
    maps = sagittal_maps(spine, (y_bot - 5 - half, y_top + 5 + half), rng)
    origin = np.array([rng.uniform(-5, 5), rng.uniform(40, 80), rng.uniform(-900, -700)])
    n = int((y_top - y_bot) / slice_mm) + 1
    n_sections = int(np.ceil(2 * half / SLAB_SECTION_MM)) if thickness_mm else 1
    sections = (np.arange(n_sections) + 0.5) / n_sections * 2 * half - half if thickness_mm else np.zeros(1)
    ys = y_top - np.arange(n) * slice_mm  # head first, as scanners often write
    # in-plane grid centred laterally on the spine, AP on the trunk
    centre_x = float(np.median((maps.skin_post + maps.skin_ant) / 2))
    cols = (np.arange(matrix) - (matrix - 1) / 2) * pixel_spacing_mm + lateral_centre_mm  # lateral (X, left)
    rows = (np.arange(matrix) - (matrix - 1) / 2) * pixel_spacing_mm  # posterior (Y)
    x_ant = (centre_x - rows)[:, None]  # row index increases posteriorly
    z_lat = cols[None, :]
    y_rows: Any = 0.0  # each row's height off the slice's centre (a gantry tilt)
    if tilt:  # the rows run posterior and caudal about the slice's centre
        x_ant = (centre_x - rows * np.cos(tilt))[:, None]
        y_rows = -(rows * np.sin(tilt))[:, None].astype(np.float32)
    sigma = noise_hu if noise_hu is not None else float(rng.uniform(8, 25))
    hu_table = _HU.copy()
    d = spine.spec.bone_density
    hu_table[MARROW] = 60 + 200 * d
    hu_table[OEDEMA] = 50 + 200 * d
    hu_table[CORTEX] = 500 + 600 * d
    pv = _pelvis_arg(spine, pelvis)
    out = np.empty((n, matrix, matrix), np.uint16)
    for k, y in enumerate(ys):
        hu = hu_table[tissue_labels(maps, spine, x_ant, np.float32(y + sections[0]) + y_rows, z_lat, scoliosis, pv)]
        if n_sections > 1:
            hu = hu.astype(np.float64)
            for off in sections[1:]:
                hu += hu_table[tissue_labels(maps, spine, x_ant, np.float32(y + off), z_lat, scoliosis, pv)]
            hu = (hu / n_sections).astype(np.float32)
        if aorta is not None:  # at the slice's centre section (its own heights where tilted)
            lumen, wall = aorta_hu(aorta, maps, spine, x_ant, np.float32(y) + y_rows, z_lat, scoliosis)
            hu = np.where(lumen, np.float32(aorta.lumen_hu), hu)
            if aorta.wall_hu is not None:
                hu = np.where(wall, np.float32(aorta.wall_hu), hu)
        hu = cv2.GaussianBlur(hu, (0, 0), 0.6) + rng.normal(0, sigma, hu.shape).astype(np.float32)
        out[k] = np.clip(np.round(hu + 1024), 0, 4095).astype(np.uint16)
    x0 = cols[0] + origin[0]
    y0 = -(centre_x - rows[0]) + origin[1]
    positions = np.stack([np.full(n, x0), np.full(n, y0), ys + origin[2]], axis=1)
    orientation = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
    if tilt:  # pixel (0, 0) of each slice: its first row lies anterior and cranial of the centre
        positions[:, 1] = -(centre_x - rows[0] * np.cos(tilt)) + origin[1]
        positions[:, 2] = ys - rows[0] * np.sin(tilt) + origin[2]
        orientation = (1.0, 0.0, 0.0, 0.0, float(np.cos(tilt)), float(-np.sin(tilt)))
    return Volume(
        stored=out, modality="CT", positions_lps=positions, orientation=orientation,
        pixel_spacing_mm=(pixel_spacing_mm, pixel_spacing_mm), slice_thickness_mm=thickness_mm or slice_mm,
        rescale=(1.0, -1024.0), bits_stored=12, origin_lps=origin,
        style={"noise_hu": sigma, "top_level": top_level, "pelvis": pv is not None,
               **({"thickness_mm": thickness_mm} if thickness_mm else {}),
               **({"gantry_tilt_deg": gantry_tilt_deg} if tilt else {}),
               **({"aorta": asdict(aorta)} if aorta is not None else {})},
        lateral=scoliosis,
    )


def render_mr(spine: Spine, rng: np.random.Generator, sequence: str, *, pixel_spacing_mm: float = 1.25,
              slice_mm: float = 4.0, n_slices: int = 11, matrix: int = 288, top_level: str = "T9",
              origin_lps: np.ndarray | None = None, centre_mm: tuple[float, float] | None = None,
              scoliosis: LateralCurve | None = None, lateral_centre_mm: float = 0.0,
              pelvis: bool | Pelvis = True) -> Volume:
    """Sagittal MR series (T1, T2 or STIR) centred on the spine; ``pelvis`` as ``render_ct``'s.

    Oedema is dark on T1 and bright on T2/STIR; a fluid cleft is bright on T2/STIR, a gas
    cleft dark on every sequence (tables ``MR_SIGNAL``). Pass the same ``origin_lps`` and
    ``centre_mm`` to every sequence of one study so they share a frame.
    """
    if sequence not in MR_SIGNAL:
        raise ValueError(f"unknown MR sequence {sequence!r}; expected one of {', '.join(MR_SIGNAL)}")
    y_bot, y_top = _y_range(spine, top_level)
    maps = sagittal_maps(spine, (y_bot - 40, y_top + 40), rng)
    origin = np.array([rng.uniform(-5, 5), rng.uniform(40, 80), rng.uniform(-900, -700)]) if origin_lps is None else origin_lps
    if centre_mm is None:
        centre_mm = (float(spine.points_mm[..., 0].mean() - 10), (y_bot + y_top) / 2)
    fov = matrix * pixel_spacing_mm
    # image columns run posterior (+Y), rows run caudal (-Z): the patient faces the image's left
    col_x = centre_mm[0] + fov / 2 - (np.arange(matrix) + 0.5) * pixel_spacing_mm  # anterior coordinate
    row_y = centre_mm[1] + fov / 2 - (np.arange(matrix) + 0.5) * pixel_spacing_mm
    lat = (np.arange(n_slices) - (n_slices - 1) / 2) * slice_mm + lateral_centre_mm
    table = MR_SIGNAL[sequence].copy()
    if sequence == "T1":
        table[MARROW] *= 1.0 + 0.3 * (1 - spine.spec.bone_density)  # fatty osteoporotic marrow
    bias_a = rng.uniform(-0.25, 0.25, 3)
    yy, xx = np.meshgrid(np.linspace(-1, 1, matrix), np.linspace(-1, 1, matrix), indexing="ij")
    bias = (1 + bias_a[0] * xx + bias_a[1] * yy + bias_a[2] * (xx**2 + yy**2)).astype(np.float32)
    sigma = float(rng.uniform(10, 35))
    pv = _pelvis_arg(spine, pelvis)
    out = np.empty((n_slices, matrix, matrix), np.uint16)
    for k, z in enumerate(lat):
        acc = np.zeros((matrix, matrix), np.float32)
        for dz in (-slice_mm / 3, 0.0, slice_mm / 3):  # partial volume across the slice
            acc += table[tissue_labels(maps, spine, col_x[None, :], row_y[:, None], np.float32(z + dz), scoliosis, pv)]
        img = cv2.GaussianBlur(acc / 3, (0, 0), 0.7) * bias
        re = img + rng.normal(0, sigma, img.shape).astype(np.float32)
        im = rng.normal(0, sigma, img.shape).astype(np.float32)
        out[k] = np.clip(np.sqrt(re * re + im * im), 0, 4095).astype(np.uint16)
    # ImagePositionPatient: centre of the first pixel, LPS
    positions = np.stack(
        [lat + origin[0], np.full(n_slices, -col_x[0] + origin[1]), np.full(n_slices, row_y[0] + origin[2])], axis=1
    )
    return Volume(
        stored=out, modality="MR", positions_lps=positions, orientation=(0.0, 1.0, 0.0, 0.0, 0.0, -1.0),
        pixel_spacing_mm=(pixel_spacing_mm, pixel_spacing_mm), slice_thickness_mm=slice_mm, rescale=(1.0, 0.0),
        bits_stored=12, origin_lps=origin, sequence=sequence,
        style={"noise": sigma, "centre_mm": list(centre_mm), "pelvis": pv is not None},
        lateral=scoliosis,
    )


def _pelvis_arg(spine: Spine, pelvis: bool | Pelvis) -> Pelvis | None:
    if isinstance(pelvis, Pelvis):
        return pelvis
    return pelvis_of(spine) if pelvis else None


def reformat_ct(axial: Volume, *, slice_mm: float = 2.0, half_width_mm: float = 60.0) -> Volume:
    """The sagittal reformat a CT console derives from an axial series: slabs ``slice_mm`` thick
    (mean of the columns inside) every ``slice_mm`` across ``±half_width_mm`` of the axial field's
    centre, rows resampled to the axial pixel spacing (linear between axial slices); its own
    series (ImageType DERIVED\\SECONDARY\\REFORMATTED), same frame of reference."""
    if tuple(axial.orientation) != (1.0, 0.0, 0.0, 0.0, 1.0, 0.0):
        raise ValueError("reformat_ct takes an axial phantom CT")
    n, rows, cols = axial.stored.shape
    ps_r, ps_c = axial.pixel_spacing_mm
    z = axial.positions_lps[:, 2]  # head first: decreasing
    step = float(z[0] - z[1])
    out_rows = int((z[0] - z[-1]) / ps_r) + 1
    zr = z[0] - np.arange(out_rows) * ps_r
    kf = (z[0] - zr) / step
    k0 = np.clip(np.floor(kf).astype(int), 0, n - 1)
    k1 = np.clip(k0 + 1, 0, n - 1)
    w = (kf - k0).astype(np.float32)[:, None]
    xs = axial.positions_lps[0, 0] + np.arange(cols) * ps_c
    centre = float(xs.mean())
    k_sl = int(half_width_mm // slice_mm)
    lat = centre + np.arange(-k_sl, k_sl + 1) * slice_mm
    vol = axial.stored.astype(np.float32)
    slices = []
    for x in lat:
        sel = np.abs(xs - x) <= slice_mm / 2 + 1e-6
        if not sel.any():
            sel = np.abs(xs - x) == np.abs(xs - x).min()
        slab = vol[:, :, sel].mean(axis=2)  # (n, rows): axial slice × AP
        slices.append(slab[k0] * (1 - w) + slab[k1] * w)  # (out_rows, AP)
    stored = np.clip(np.round(np.stack(slices)), 0, 4095).astype(np.uint16)
    positions = np.stack([lat, np.full(len(lat), axial.positions_lps[0, 1]), np.full(len(lat), z[0])], axis=1)
    return Volume(
        stored=stored, modality="CT", positions_lps=positions, orientation=(0.0, 1.0, 0.0, 0.0, 0.0, -1.0),
        pixel_spacing_mm=(ps_r, ps_r), slice_thickness_mm=slice_mm, rescale=axial.rescale, bits_stored=axial.bits_stored,
        origin_lps=axial.origin_lps, style=dict(axial.style, reformat_of="axial"), lateral=axial.lateral,
        image_type=("DERIVED", "SECONDARY", "REFORMATTED"), description="TL SPINE SAG MPR",
    )


def lps_to_voxel(volume: Volume, p_lps: np.ndarray) -> np.ndarray:
    """LPS point(s) ``(..., 3)`` → ``(slice, row, col)`` continuous indices of ``volume``."""
    o = np.asarray(volume.orientation, float)
    r_dir, c_dir = o[:3], o[3:]
    normal = np.cross(r_dir, c_dir)
    p0 = volume.positions_lps[0]
    d = np.asarray(p_lps, float) - p0
    col = d @ r_dir / volume.pixel_spacing_mm[1]
    row = d @ c_dir / volume.pixel_spacing_mm[0]
    step = (volume.positions_lps[-1] - p0) @ normal / max(len(volume.positions_lps) - 1, 1)
    sl = d @ normal / step if step else np.zeros_like(col)
    return np.stack([sl, row, col], -1)


__all__ = ["render_ct", "Aorta", "aorta_hu", "render_mr", "reformat_ct", "scoliosis_curve", "LateralCurve", "Volume",
           "tissue_labels", "sagittal_maps", "lps_to_voxel", "MR_SIGNAL", "MR_SEQUENCES", "TISSUES", "Pelvis",
           "pelvis_of", "pelvis_labels", "femur_depth"]
