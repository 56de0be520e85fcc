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

from dataclasses import dataclass, field

import cv2
import numpy as np

from ..levels import LEVEL_INDEX, LEVELS
from .anatomy import Spine

# tissue codes
AIR, FAT, MUSCLE, LUNG, MARROW, CORTEX, DISC, CSF, CORD, OEDEMA, GAS, FLUID, SOFT = range(13)
TISSUES = ("air", "fat", "muscle", "lung", "marrow", "cortex", "disc", "csf", "cord", "oedema", "gas", "fluid", "soft")

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
        apex_y=float(y_lv[LEVEL_INDEX["T1"]] + 20), spine_front=spine_front,
    )


def tissue_labels(maps: SagittalMaps, spine: Spine, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Tissue code at sagittal-frame points (``x`` anterior, ``y`` superior, ``z`` lateral, mm).

    The three arrays broadcast together; the result has their broadcast shape (uint8).
    """
    x, y, z = np.broadcast_arrays(np.asarray(x, np.float32), np.asarray(y, np.float32), np.asarray(z, np.float32))
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
    inside = ((x - xc) / hx) ** 2 + (z / maps.body_half_width) ** 2 <= 1
    out[inside] = SOFT
    out[inside & (((x - xc) / hx) ** 2 + (z / maps.body_half_width) ** 2 > 0.8)] = FAT
    paraspinal = inside & (x < maps.spine_front[i] - 20) & (az < 70)
    out[paraspinal] = MUSCLE
    lung = inside & (y > maps.diaphragm_y + 0.2 * np.clip(x - maps.spine_front[i], 0, None)) & (y < maps.apex_y) & (az > 18) & (
        x > maps.spine_front[i] - 40) & (((x - xc) / hx) ** 2 + (z / maps.body_half_width) ** 2 < 0.7)
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

    # fracture findings inside bodies: oedema band at the collapsed (superior) endplate, clefts
    frac = maps.height_frac[i, j]
    for n, name in enumerate(LEVELS):
        extent = spine.oedema_pct[n]
        content = spine.cleft[n]
        if extent is None and content is None:
            continue
        in_body = body & (lvl == n) & (out == MARROW)
        if extent is not None:
            out[in_body & (frac >= 1 - extent / 100.0)] = OEDEMA
        if content is not None:
            band = in_body & (np.abs(frac - 0.72) < 0.06) & (az < 0.75 * half)
            out[band] = GAS if content == "gas" else FLUID

    # femoral heads (spheres at ±_HIP_HALF_MM) and femoral necks
    for k, side in enumerate((1.0, -1.0)):
        c, r = spine.femoral_centers_mm[k], spine.femoral_radii_mm[k]
        d2 = (x - c[0]) ** 2 + (y - c[1]) ** 2 + (z - side * _HIP_HALF_MM) ** 2
        head = d2 <= r * r
        out[head] = MARROW
        out[head & (d2 >= (r - 1.5) ** 2)] = CORTEX
    return out


#: Hounsfield units by tissue (bone marrow scaled by density at render time)
_HU = np.array([-1000, -100, 50, -850, 180, 900, 85, 10, 35, 160, -950, 20, 40], np.float32)

#: MR signal by tissue for each sequence (arbitrary units, 0–1200)
MR_SIGNAL = {
    #         air fat  musc lung marrow cortex disc csf  cord oedema gas fluid soft
    "T1": np.array([0, 950, 350, 20, 650, 30, 300, 150, 420, 220, 10, 160, 400], np.float32),
    "T2": np.array([0, 700, 220, 20, 450, 30, 800, 1150, 480, 950, 10, 1150, 380], np.float32),
    "STIR": np.array([0, 60, 220, 20, 110, 20, 650, 1050, 400, 900, 10, 1050, 320], np.float32),
}
#: acquisition parameters written with each sequence
MR_SEQUENCES = {
    "T1": dict(description="T1 TSE SAG", scanning="SE", variant="SK", tr=550.0, te=11.0, ti=None, etl=3),
    "T2": dict(description="T2 TSE SAG", scanning="SE", variant="SK", tr=3500.0, te=95.0, ti=None, etl=17),
    "STIR": dict(description="STIR SAG", scanning=["IR", "SE"], variant="SK", tr=4000.0, te=60.0, ti=160.0, etl=13),
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

    def sagittal_to_lps(self, pts_mm: np.ndarray, lateral_mm: float = 0.0) -> np.ndarray:
        """Sagittal-frame points ``(..., 2)`` at a lateral offset to LPS ``(..., 3)``."""
        p = np.asarray(pts_mm, float)
        o = self.origin_lps
        return np.stack([np.full(p.shape[:-1], lateral_mm) + o[0], -p[..., 0] + o[1], p[..., 1] + o[2]], -1)


def _y_range(spine: Spine, top_level: str) -> tuple[float, float]:
    top = float(spine.points_mm[LEVEL_INDEX[top_level], :, 1].max() + 20)
    bottom = float((spine.femoral_centers_mm[:, 1] - spine.femoral_radii_mm).min() - 30)
    return bottom, top


def render_ct(spine: Spine, rng: np.random.Generator, *, pixel_spacing_mm: float = 1.5, slice_mm: float = 3.0,
              matrix: int = 256, top_level: str = "T10", noise_hu: float | None = None) -> Volume:
    """Axial CT in HU of the thoracolumbar spine and pelvis (stored = HU + 1024, 12 bits)."""
    y_bot, y_top = _y_range(spine, top_level)
    maps = sagittal_maps(spine, (y_bot - 5, y_top + 5), rng)
    origin = np.array([rng.uniform(-5, 5), rng.uniform(40, 80), rng.uniform(-900, -700)])
    n = int((y_top - y_bot) / slice_mm) + 1
    ys = y_top - np.arange(n) * slice_mm  # head first, as scanners often write
    # in-plane grid centred laterally on the spine, AP on the trunk
    centre_x = float(np.median((maps.skin_post + maps.skin_ant) / 2))
    cols = (np.arange(matrix) - (matrix - 1) / 2) * pixel_spacing_mm  # lateral (X, left)
    rows = (np.arange(matrix) - (matrix - 1) / 2) * pixel_spacing_mm  # posterior (Y)
    x_ant = (centre_x - rows)[:, None]  # row index increases posteriorly
    z_lat = cols[None, :]
    sigma = noise_hu if noise_hu is not None else float(rng.uniform(8, 25))
    hu_table = _HU.copy()
    d = spine.spec.bone_density
    hu_table[MARROW] = 60 + 200 * d
    hu_table[OEDEMA] = 50 + 200 * d
    hu_table[CORTEX] = 500 + 600 * d
    out = np.empty((n, matrix, matrix), np.uint16)
    for k, y in enumerate(ys):
        lab = tissue_labels(maps, spine, x_ant, np.float32(y), z_lat)
        hu = hu_table[lab]
        hu = cv2.GaussianBlur(hu, (0, 0), 0.6) + rng.normal(0, sigma, hu.shape).astype(np.float32)
        out[k] = np.clip(np.round(hu + 1024), 0, 4095).astype(np.uint16)
    x0 = cols[0] + origin[0]
    y0 = -(centre_x - rows[0]) + origin[1]
    positions = np.stack([np.full(n, x0), np.full(n, y0), ys + origin[2]], axis=1)
    return Volume(
        stored=out, modality="CT", positions_lps=positions, orientation=(1.0, 0.0, 0.0, 0.0, 1.0, 0.0),
        pixel_spacing_mm=(pixel_spacing_mm, pixel_spacing_mm), slice_thickness_mm=slice_mm, rescale=(1.0, -1024.0),
        bits_stored=12, origin_lps=origin, style={"noise_hu": sigma, "top_level": top_level},
    )


def render_mr(spine: Spine, rng: np.random.Generator, sequence: str, *, pixel_spacing_mm: float = 1.25,
              slice_mm: float = 4.0, n_slices: int = 11, matrix: int = 288, top_level: str = "T9",
              origin_lps: np.ndarray | None = None, centre_mm: tuple[float, float] | None = None) -> Volume:
    """Sagittal MR series (T1, T2 or STIR) centred on the spine.

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
    lat = (np.arange(n_slices) - (n_slices - 1) / 2) * slice_mm
    table = MR_SIGNAL[sequence].copy()
    if sequence == "T1":
        table[MARROW] *= 1.0 + 0.3 * (1 - spine.spec.bone_density)  # fatty osteoporotic marrow
    bias_a = rng.uniform(-0.25, 0.25, 3)
    yy, xx = np.meshgrid(np.linspace(-1, 1, matrix), np.linspace(-1, 1, matrix), indexing="ij")
    bias = (1 + bias_a[0] * xx + bias_a[1] * yy + bias_a[2] * (xx**2 + yy**2)).astype(np.float32)
    sigma = float(rng.uniform(10, 35))
    out = np.empty((n_slices, matrix, matrix), np.uint16)
    for k, z in enumerate(lat):
        acc = np.zeros((matrix, matrix), np.float32)
        for dz in (-slice_mm / 3, 0.0, slice_mm / 3):  # partial volume across the slice
            acc += table[tissue_labels(maps, spine, col_x[None, :], row_y[:, None], np.float32(z + dz))]
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
        bits_stored=12, origin_lps=origin, sequence=sequence, style={"noise": sigma, "centre_mm": list(centre_mm)},
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


__all__ = ["render_ct", "render_mr", "Volume", "tissue_labels", "sagittal_maps", "lps_to_voxel", "MR_SIGNAL",
           "MR_SEQUENCES", "TISSUES"]

