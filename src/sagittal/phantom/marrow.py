"""Phantom MR and CT planes with marrow truth, for the oedema and cleft method's tests and evaluation.

``mr_plane_case`` renders the mid-sagittal MR plane of a spine for several sequences on one
pixel grid, with the six true points of every body in pixels and, per body, the truth the
contract asks for: oedema extent (percent of the body's mid-sagittal section labelled
oedema, from the tissue model itself), cleft content, and whether a Modic change touches it.
``scale`` multiplies the stored signal, as another scanner's receive chain would.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

from ..levels import LEVEL_INDEX, LEVELS
from .anatomy import OEDEMA_PATTERNS, Modic, Spine, build_spine, sample_fractures, sample_spec
from .volume import (
    CORTEX,
    FLUID,
    GAS,
    MARROW,
    MODIC1,
    MODIC2,
    OEDEMA,
    SagittalMaps,
    oedema_region,
    render_ct,
    render_mr,
    sagittal_maps,
    tissue_labels,
)

__all__ = ["MarrowCase", "mr_plane_case", "ct_plane_case", "sample_marrow_spine"]


@dataclass(frozen=True)
class MarrowCase:
    planes: dict[str, np.ndarray]  # sequence (or "CT", in HU) → (H, W) float32
    points_px: dict[str, np.ndarray]  # level → (6, 2), bodies wholly in the field
    spacing_mm: tuple[float, float]
    truth: dict[str, dict[str, object]] = field(default_factory=dict)  # level → oedema_pct, cleft, modic


def sample_marrow_spine(rng: np.random.Generator, *, modic_rate: float = 0.4) -> Spine:
    """A spine with 1–3 fractures drawn with every oedema pattern, and Modic distractors."""
    spec = sample_spec(rng, n_fractures=0)
    fxs = list(sample_fractures(rng, int(rng.integers(1, 4)), levels=None))
    out = []
    for fx in fxs:
        pattern = str(rng.choice(OEDEMA_PATTERNS))
        oedema = fx.oedema_pct
        if oedema is not None and pattern == "diffuse":
            oedema = float(rng.uniform(50, 100))
        cleft = fx.cleft if fx.cleft is not None else (str(rng.choice(["gas", "fluid"])) if rng.random() < 0.15 else None)
        out.append(replace(fx, oedema_pct=oedema, oedema_pattern=pattern, cleft=cleft if fx.grade >= 2 else None))
    fractured = {LEVEL_INDEX[f.level] for f in out}
    modic = []
    if rng.random() < modic_rate:
        free = [i for i in range(LEVEL_INDEX["T10"], len(LEVELS) - 1) if i not in fractured and i + 1 not in fractured]
        if free:
            i = int(rng.choice(free))
            modic.append(Modic(LEVELS[i], type=int(rng.choice([1, 1, 2])), thickness_pct=float(rng.uniform(6, 22))))
    return build_spine(replace(spec, fractures=tuple(out), modic=tuple(modic)))


def _truth(spine: Spine, maps: SagittalMaps, xs: np.ndarray, ys: np.ndarray, masks: dict[str, np.ndarray]
           ) -> dict[str, dict[str, object]]:
    """Per body: the oedema extent as the contract defines it (share of the whole mid-sagittal
    section, cortex included, cleft excluded), the cleft drawn, and whether a Modic band touches it."""
    labels = tissue_labels(maps, spine, xs[None, :], ys[:, None], np.zeros(1, np.float32))
    jj = np.clip(np.round((xs - maps.x0) / maps.res).astype(int), 0, maps.struct.shape[1] - 1)
    ii = np.clip(np.round((maps.y0 - ys) / maps.res).astype(int), 0, maps.struct.shape[0] - 1)
    v = maps.height_frac[ii[:, None], jj[None, :]]
    u = maps.depth_frac[ii[:, None], jj[None, :]] if maps.depth_frac is not None else np.full(v.shape, 0.5)
    patterns = {f.level: f.oedema_pattern for f in spine.spec.fractures}
    modic_levels = {m.level for m in spine.spec.modic} | {LEVELS[LEVEL_INDEX[m.level] + 1] for m in spine.spec.modic}
    out: dict[str, dict[str, object]] = {}
    for lv, mask in masks.items():
        i = LEVEL_INDEX[lv]
        lab = labels[mask]
        cleft_px = (lab == GAS) | (lab == FLUID)
        e = spine.oedema_pct[i]
        extent = 0.0
        if e is not None:
            region = oedema_region(patterns.get(lv, "band"), e, u[mask], v[mask], seed=i) & ~cleft_px
            extent = 100.0 * float(region.sum()) / max(int(mask.sum()), 1)
        out[lv] = {
            "oedema_pct": extent,
            "cleft": spine.cleft[i] if cleft_px.any() else None,
            "modic": lv in modic_levels and bool(((lab == MODIC1) | (lab == MODIC2)).any()),
            "grade": int(spine.grade[i]),
        }
    return out


def section_oedema_pct(spine: Spine, level: str, res_mm: float = 0.2) -> float:
    """The oedema the volume phantom draws in ``level``'s mid-sagittal section (``z = 0``), as the
    contract measures it: percent of the body's whole section (cortex included), a cleft excluded.
    It is less than the fracture's nominal ``oedema_pct``, which covers that share of the body's
    unit square before the cortex and a cleft are drawn (``volume.oedema_region``)."""
    pts = spine.points_mm[LEVEL_INDEX[level]]
    lo, hi = float(pts[:, 1].min()) - 10.0, float(pts[:, 1].max()) + 10.0
    maps = sagittal_maps(spine, (lo - 50.0, hi + 50.0), np.random.default_rng(0))
    xs = np.arange(float(pts[:, 0].min()) - 10.0, float(pts[:, 0].max()) + 10.0, res_mm)
    ys = np.arange(lo, hi, res_mm)
    lab = tissue_labels(maps, spine, xs[None, :], ys[:, None], np.float32(0.0))
    ii = np.clip(np.round((maps.y0 - ys) / maps.res).astype(int), 0, maps.level.shape[0] - 1)
    jj = np.clip(np.round((xs - maps.x0) / maps.res).astype(int), 0, maps.level.shape[1] - 1)
    body = (maps.level[ii[:, None], jj[None, :]] == LEVEL_INDEX[level]) & np.isin(
        lab, [MARROW, CORTEX, OEDEMA, FLUID, GAS, MODIC1, MODIC2])
    return 100.0 * float((body & (lab == OEDEMA)).sum()) / max(int(body.sum()), 1)


def _plane_points(spine: Spine, to_px: Callable[[np.ndarray], np.ndarray]) -> dict[str, np.ndarray]:
    return {lv: to_px(spine.points_mm[LEVEL_INDEX[lv]]) for lv in LEVELS}


def mr_plane_case(spine: Spine, rng: np.random.Generator, sequences: tuple[str, ...] = ("T1", "STIR"), *,
                  scale: float = 1.0, pixel_spacing_mm: float = 1.25, matrix: int = 256, top_level: str = "T10") -> MarrowCase:
    """The mid-sagittal MR plane of ``spine`` for ``sequences`` on one grid, with truth."""
    from ..findings.oedema import body_mask

    origin = np.array([0.0, 60.0, -800.0])
    bottom = float(spine.hip_axis_mm[1] - 40)
    top = float(spine.points_mm[LEVEL_INDEX[top_level], :, 1].max() + 10)
    centre = (float(spine.points_mm[..., 0].mean() - 10), (bottom + top) / 2)
    planes = {}
    for seq in sequences:
        vol = render_mr(spine, rng, seq, pixel_spacing_mm=pixel_spacing_mm, n_slices=1, matrix=matrix,
                        top_level=top_level, origin_lps=origin, centre_mm=centre)
        planes[seq] = vol.stored[0].astype(np.float32) * np.float32(scale)
    fov = matrix * pixel_spacing_mm

    def to_px(p_mm: np.ndarray) -> np.ndarray:
        p = np.asarray(p_mm, float)
        col = (centre[0] + fov / 2 - p[..., 0]) / pixel_spacing_mm - 0.5
        row = (centre[1] + fov / 2 - p[..., 1]) / pixel_spacing_mm - 0.5
        return np.stack([col, row], -1)

    pts = {lv: p for lv, p in _plane_points(spine, to_px).items()
           if np.all(p >= 0) and np.all(p <= matrix - 1)}
    col_x = centre[0] + fov / 2 - (np.arange(matrix) + 0.5) * pixel_spacing_mm
    row_y = centre[1] + fov / 2 - (np.arange(matrix) + 0.5) * pixel_spacing_mm
    maps = sagittal_maps(spine, (float(row_y.min()) - 5, float(row_y.max()) + 5), np.random.default_rng(0))
    masks = {lv: body_mask(p, (matrix, matrix)) for lv, p in pts.items()}
    return MarrowCase(planes, pts, (pixel_spacing_mm, pixel_spacing_mm), _truth(spine, maps, col_x, row_y, masks))


def ct_plane_case(spine: Spine, rng: np.random.Generator, *, pixel_spacing_mm: float = 1.0, slice_mm: float = 1.0,
                  matrix: int = 288) -> MarrowCase:
    """The mid-sagittal plane of an axial phantom CT (HU), resampled from the slices, with truth."""
    from ..findings.oedema import body_mask

    vol = render_ct(spine, rng, pixel_spacing_mm=pixel_spacing_mm, slice_mm=slice_mm, matrix=matrix, top_level="T11",
                    noise_hu=10.0)
    hu = vol.stored.astype(np.float32) * vol.rescale[0] + vol.rescale[1]
    mid = matrix // 2  # the volume is centred laterally on the spine: the midline lies between two columns
    plane = hu[:, :, mid - 1:mid + 1].mean(axis=-1) if matrix % 2 == 0 else hu[:, :, mid]  # (slices, CT rows)
    # plane pixel (x = CT row index, y = slice index): x runs posterior, so the patient faces left
    y_top = float(vol.positions_lps[0, 2] - vol.origin_lps[2])
    centre_x = float(-(vol.positions_lps[0, 1] - vol.origin_lps[1]))  # anterior coordinate of CT row 0

    def to_px(p_mm: np.ndarray) -> np.ndarray:
        p = np.asarray(p_mm, float)
        col = (centre_x - p[..., 0]) / pixel_spacing_mm
        row = (y_top - p[..., 1]) / slice_mm
        return np.stack([col, row], -1)

    pts = {lv: p for lv, p in _plane_points(spine, to_px).items()
           if np.all(p >= 0) and np.all(p[:, 0] <= plane.shape[1] - 1) and np.all(p[:, 1] <= plane.shape[0] - 1)}
    maps = sagittal_maps(spine, (y_top - plane.shape[0] * slice_mm - 5, y_top + 5), np.random.default_rng(0))
    xs = centre_x - np.arange(plane.shape[1]) * pixel_spacing_mm
    ys = y_top - np.arange(plane.shape[0]) * slice_mm
    masks = {lv: body_mask(p, plane.shape) for lv, p in pts.items()}
    return MarrowCase({"CT": plane}, pts, (slice_mm, pixel_spacing_mm), _truth(spine, maps, xs, ys, masks))

