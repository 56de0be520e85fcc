"""Training data for the CT/MR plane landmark model, rendered straight from the phantom's
tissue model (``phantom.volume.tissue_labels``) on the spine's own curved mid-sagittal section,
the way ``landmarks.volume`` presents a reformatted plane to the model: head up, the patient
facing the image's left, CT in Hounsfield units, MR in arbitrary signal.

Randomised per sample: modality and MR weighting (T1, T2, STIR, fat-suppressed T2), tissue
contrasts, acquisition (axial CT slices 1–5 mm thick reformatted, or sagittal slices 1–5 mm
thick), in-plane spacing 0.5–1.5 mm, noise, bias field, field of view (T12–sacrum to the whole
spine, trunk depth), scoliosis (``phantom.volume.scoliosis_curve``) with a plane-placement error
of a few millimetres, fractures. Planes are rendered without building full volumes (cheap);
evaluation (``scripts/eval_planes.py``) goes through full DICOM volumes and ``io`` instead.

Streams: ``PLANE_COARSE_STREAM`` and ``PLANE_REFINE_STREAM`` with ``default_rng([stream,
seed])``; evaluation draws from ``default_rng([EVAL_STREAM, seed])`` in its own script.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from types import SimpleNamespace
from typing import Any

import cv2
import numpy as np

from ..landmarks.crops import CROP
from ..landmarks.preprocess import letterbox, normalise
from ..landmarks.volume import plane_input
from ..levels import LEVEL_INDEX, LEVELS
from ..phantom import build_spine, sample_spec
from ..phantom.volume import (
    _HU,
    CORTEX,
    MARROW,
    MR_SIGNAL,
    OEDEMA,
    Aorta,
    aorta_hu,
    pelvis_of,
    sagittal_maps,
    scoliosis_curve,
    tissue_labels,
)
from .data import body_and_s1_crops

PLANE_COARSE_STREAM = 7_100_003
PLANE_REFINE_STREAM = 7_100_005
_TOP_LEVELS = ("C7", "T1", "T2", "T4", "T6", "T8", "T9", "T10", "T11", "T12")


@dataclass(frozen=True)
class PlaneRender:
    """A rendered plane: ``image`` (rows, cols) float32 (HU or MR signal), pixel ``[x, y]``
    of a sagittal-frame point ``(anterior, superior)`` mm by ``to_px``."""

    image: np.ndarray
    modality: str
    spacing_mm: float
    x_left_mm: float  # anterior coordinate of column 0 (columns run posterior)
    y_top_mm: float  # superior coordinate of row 0
    in_view: np.ndarray  # (18,) bool
    s1_in_view: bool

    def to_px(self, pts_mm: np.ndarray) -> np.ndarray:
        p = np.asarray(pts_mm, float)
        return np.stack([(self.x_left_mm - p[..., 0]) / self.spacing_mm, (self.y_top_mm - p[..., 1]) / self.spacing_mm], -1)


def _smooth_offset(rng: np.random.Generator, amp: float) -> Any:
    """A smooth random lateral error (mm) as a function of height: the plane's placement error."""
    k = rng.uniform(-amp, amp, 4)
    period = rng.uniform(150, 500)
    return lambda y: k[0] + k[1] * np.sin(2 * np.pi * y / period + k[2])


def render_plane(spine: Any, rng: np.random.Generator, *, spacing_mm: float | None = None,
                 modality: str | None = None, coarse: bool = False, ct_share: float = 0.5,
                 max_spacing_mm: float = 1.5, slice_sampling: bool = False, pelvis: bool = False,
                 aorta_share: float = 0.0) -> PlaneRender:
    """One randomised CT or MR plane of ``spine`` on its curved mid-sagittal section.

    ``coarse`` renders at no finer than a 512-row grid over the field (for the letterboxed coarse
    input, which is 256 rows). ``ct_share``: the share of CT planes; ``max_spacing_mm``: the
    in-plane spacing is drawn from 0.5 to it (the defaults draw rounds 1 and 2's planes again;
    a CT's plane takes its in-plane spacing, up to 2 mm in ``scripts/eval_planes.py``).

    ``slice_sampling``: an axial CT's plane is built as the reformat builds it — values at the
    slices' positions, ``thick`` apart along the rows at a random phase, linearly interpolated
    between them (``_slice_sampled``) — instead of a Gaussian blur of the slice's width. A
    phantom CT's slices are point samples (``phantom.volume.render_ct``), a scanner's are
    averaged over the slice: half the planes each. The blur hid that an endplate between two
    slices is seen only as a ramp between them (the diagnosis: CT fractured grades went wrong on
    3.4–4.9 mm slices).

    ``pelvis``: the phantom's bony pelvis and proximal femora (``phantom.volume.pelvis_of``) are
    drawn too, as ``render_ct`` / ``render_mr`` draw them by default since the twelfth session (the
    plane's bottom then shows the ilium and the pubis, as at run time); it draws nothing from
    ``rng``, so the rest of the plane is the one drawn without it.

    ``aorta_share``: the share of CT planes drawn with an aorta in front of the spine (``_draw_aorta``:
    contrast-filled or with calcified plaques; ``phantom.volume.aorta_hu``); 0 draws nothing more from
    ``rng`` (the planes of rounds 1-5)."""
    modality = modality or ("CT" if rng.random() < ct_share else "MR")
    top = _TOP_LEVELS[int(rng.integers(len(_TOP_LEVELS)))]
    pts = spine.points_mm
    y_top = float(pts[LEVEL_INDEX[top], :, 1].max() + rng.uniform(5, 40))
    bottom_hip = float((spine.femoral_centers_mm[:, 1] - spine.femoral_radii_mm).min() - rng.uniform(0, 40))
    y_bot = bottom_hip if rng.random() < 0.8 else float(spine.s1_mm[:, 1].min() - rng.uniform(25, 80))
    spine_x = float(pts[..., 0].mean())
    depth = rng.uniform(200, 420)
    x_left = spine_x + depth * rng.uniform(0.45, 0.7)  # anterior edge of the field
    inplane = float(rng.uniform(0.5, max_spacing_mm))
    sp = float(spacing_mm or inplane)
    if coarse:
        sp = max(sp, (y_top - y_bot) / 512)
    rows = int((y_top - y_bot) / sp) + 1
    cols = int(depth / sp) + 1
    maps = sagittal_maps(spine, (y_bot - 10, y_top + 10), rng)
    curve = scoliosis_curve(spine, rng) if rng.random() < 0.5 else None
    err = _smooth_offset(rng, rng.uniform(0, 3))
    x = x_left - np.arange(cols, dtype=np.float32) * sp
    y = y_top - np.arange(rows, dtype=np.float32) * sp
    z_mid = (curve.at(y) if curve is not None else np.zeros_like(y)) + err(y)
    axial = modality == "CT" and rng.random() < 0.8  # CT mostly reformatted from axial slices
    thick = float(rng.uniform(1, 5))
    lateral_thick = inplane if axial else thick
    n_dz = 3 if lateral_thick > 1.5 else 1
    dzs = np.linspace(-lateral_thick / 2, lateral_thick / 2, n_dz) if n_dz > 1 else np.zeros(1)
    if modality == "CT":
        table = _HU.copy()
        d = spine.spec.bone_density
        table[MARROW] = 60 + 200 * d
        table[OEDEMA] = 50 + 200 * d
        table[CORTEX] = 500 + 600 * d
        table = table + rng.normal(0, 15, table.shape).astype(np.float32)
    else:
        seq = ("T1", "T2", "STIR", "T2")[int(rng.integers(4))]
        table = MR_SIGNAL[seq].copy() * rng.uniform(0.75, 1.3, MR_SIGNAL[seq].shape).astype(np.float32)
    bones = pelvis_of(spine) if pelvis else None
    aorta = _draw_aorta(rng) if aorta_share > 0 and modality == "CT" and rng.random() < aorta_share else None
    acc = np.zeros((rows, cols), np.float32)
    for dz in dzs:
        z = (z_mid + dz)[:, None].astype(np.float32)
        values = table[np.minimum(tissue_labels(maps, spine, x[None, :], y[:, None], z, curve, pelvis=bones),
                                  len(table) - 1)]
        if aorta is not None:
            lumen, wall = aorta_hu(aorta, maps, spine, x[None, :], y[:, None], z, curve)
            values = np.where(lumen, np.float32(aorta.lumen_hu), values)
            if aorta.wall_hu is not None:
                values = np.where(wall, np.float32(aorta.wall_hu), values)
        acc += values
    img: np.ndarray = acc / len(dzs)
    # resolution: along the rows (superior) the slice thickness for axial CT, else the in-plane one
    sig_y = (thick if axial else inplane) / 2.355 / sp
    sig_x = inplane / 2.355 / sp
    if axial and slice_sampling:
        img = _slice_sampled(cv2.GaussianBlur(img, (0, 0), sigmaX=max(sig_x, 0.3), sigmaY=0.3), thick / sp, rng)
    else:
        img = cv2.GaussianBlur(img, (0, 0), sigmaX=max(sig_x, 0.3), sigmaY=max(sig_y, 0.3))
    if modality == "CT":
        img = img + rng.normal(0, rng.uniform(5, 30) / np.sqrt(max(thick, 1.0)), img.shape).astype(np.float32)
    else:
        hh, ww = np.meshgrid(np.linspace(-1, 1, rows), np.linspace(-1, 1, cols), indexing="ij")
        a = rng.uniform(-0.3, 0.3, 3)
        img = img * (1 + a[0] * hh + a[1] * ww + a[2] * (hh**2 + ww**2)).astype(np.float32)
        s = rng.uniform(5, 40)
        re = img + rng.normal(0, s, img.shape).astype(np.float32)
        im = rng.normal(0, s, img.shape).astype(np.float32)
        img = np.sqrt(re * re + im * im)
    r = PlaneRender(img.astype(np.float32), modality, sp, x_left, y_top, np.zeros(len(LEVELS), bool), False)
    px = r.to_px(pts)
    inside = (px[..., 0] >= 2) & (px[..., 0] <= cols - 3) & (px[..., 1] >= 2) & (px[..., 1] <= rows - 3)
    s1 = r.to_px(spine.s1_mm)
    s1_in = bool(((s1[:, 1] >= 2) & (s1[:, 1] <= rows - 3)).all())
    return PlaneRender(r.image, modality, sp, x_left, y_top, np.asarray(inside.all(axis=1), bool), s1_in)


def _draw_aorta(rng: np.random.Generator) -> Aorta:
    """An aorta for a training CT plane: contrast-filled (lumen 120-500 HU) or, half the time, unenhanced
    with calcified plaques of 400-1200 HU in its wall; radius 8-14 mm, 4-30 mm to the spine's left, 0-6 mm
    in front of the spine's outline (wider than ``scripts/eval_planes.py --ct-aorta``'s ranges). The eighteenth
    session's candidates (c7, r7ct) trained on planes drawn before two fixes to ``phantom.volume.aorta_hu``:
    there a wall's plaques could lie up to 2.5 mm inside the spine's front and the vessel ran above T4."""
    calcified = rng.random() < 0.5
    return Aorta(lumen_hu=float(rng.uniform(20, 60) if calcified else rng.uniform(120, 500)),
                 radius_mm=float(rng.uniform(8, 14)), lateral_mm=float(rng.uniform(4, 30)),
                 gap_mm=float(rng.uniform(0, 6)), wall_hu=float(rng.uniform(400, 1200)) if calcified else None)


def _slice_sampled(img: np.ndarray, step_px: float, rng: np.random.Generator) -> np.ndarray:
    """``img`` seen through axial slices ``step_px`` rows apart (random phase): averaged over the
    slice's width (half the time) or point samples, linearly interpolated between slices."""
    rows = img.shape[0]
    if step_px <= 1.0 or rows < 3:
        return img
    if rng.random() < 0.5:
        img = cv2.blur(img, (1, int(round(step_px)) | 1))
    pos = np.arange(rng.uniform(0, step_px), rows - 1, step_px)
    if len(pos) < 2:
        return img
    i0 = np.floor(pos).astype(int)
    f = (pos - i0)[:, None].astype(np.float32)
    samples = img[i0] * (1 - f) + img[i0 + 1] * f
    r = np.arange(rows)
    j = np.clip(np.searchsorted(pos, r) - 1, 0, len(pos) - 2)
    t = np.clip((r - pos[j]) / (pos[j + 1] - pos[j]), 0.0, 1.0)[:, None].astype(np.float32)
    out: np.ndarray = samples[j] * (1 - t) + samples[j + 1] * t
    return out


def model_image(r: PlaneRender, rng: np.random.Generator | None = None) -> np.ndarray:
    """What the model sees of a plane (``landmarks.volume.plane_input`` with, in training, a
    jittered CT window)."""
    window = None
    if rng is not None and r.modality == "CT":
        window = (float(rng.uniform(-400, -100)), float(rng.uniform(800, 1500)))
    return normalise(plane_input(r.image, r.modality, window=window))


def _spine(stream: int, seed: int, fracture_rate: float) -> tuple[Any, np.random.Generator]:
    rng = np.random.default_rng([stream, seed])
    n_fx = int(rng.integers(1, 4)) if rng.random() < fracture_rate else None
    return build_spine(sample_spec(rng, n_fractures=n_fx)), rng


COARSE_FRACTURE_RATE = 0.3
REFINE_FRACTURE_RATE = 0.6


def coarse_one(seed: int, fracture_rate: float = COARSE_FRACTURE_RATE, ct_share: float = 0.5,
               max_spacing_mm: float = 1.5, slice_sampling: bool = False, pelvis: bool = False,
               aorta_share: float = 0.0) -> tuple:
    """One coarse item as ``training.data.make_coarse_dataset`` lays it out (``fracture_rate``:
    the share of spines drawn with 1–3 fractures; the rest take ``phantom.sample_spec``'s own
    draw, 55 % of them with 1–5; ``ct_share``, ``max_spacing_mm``: ``render_plane``'s)."""
    spine, rng = _spine(PLANE_COARSE_STREAM, seed, fracture_rate)
    r = render_plane(spine, rng, coarse=True, ct_share=ct_share, max_spacing_mm=max_spacing_mm,
                     slice_sampling=slice_sampling, pelvis=pelvis, aorta_share=aorta_share)
    img, lb = letterbox(model_image(r, rng))
    verts = np.full((len(LEVELS), 6, 2), np.nan, np.float32)
    for i in np.where(r.in_view)[0]:
        verts[i] = lb.to_input(r.to_px(spine.points_mm[i]))
    s1 = lb.to_input(r.to_px(spine.s1_mm)) if r.s1_in_view else np.full((2, 2), np.nan)
    return (np.round(img * 255).astype(np.uint8), verts, s1, np.full((2, 2), np.nan, np.float32),
            np.full(2, np.nan, np.float32))


def refine_one(seed: int, fracture_rate: float = REFINE_FRACTURE_RATE, fracture_boost: int = 2,
               ct_share: float = 0.5, max_spacing_mm: float = 1.5, slice_sampling: bool = False,
               severe_boost: int = 0, pelvis: bool = False, aorta_share: float = 0.0) -> list[tuple]:
    """Crops about every body and the S1 endplate of one fine plane (mirrored: anterior left);
    a fractured body ``1 + fracture_boost`` times, each jittered anew, and a body of Genant grade
    2-3 ``severe_boost`` times more (the refinement under-read crushed bodies' loss on CT planes)."""
    spine, rng = _spine(PLANE_REFINE_STREAM, seed, fracture_rate)
    r = render_plane(spine, rng, ct_share=ct_share, max_spacing_mm=max_spacing_mm, slice_sampling=slice_sampling,
                     pelvis=pelvis, aorta_share=aorta_share)
    img = model_image(r, rng)
    out = body_and_s1_crops(img, r, spine, rng, True, fracture_boost=fracture_boost)
    if severe_boost > 0:  # the same crops again about the grade 2-3 bodies only (each 1 + boost: boost - 1 here)
        severe = SimpleNamespace(in_view=r.in_view & (np.asarray(spine.grade) >= 2), s1_in_view=False, to_px=r.to_px)
        out += body_and_s1_crops(img, severe, spine, rng, True, fracture_boost=severe_boost - 1)
    return [(np.round(c * 255).astype(np.uint8), k, p) for c, k, p in out]


def _map(fn: Any, seeds: list[int], workers: int) -> list:
    if workers <= 1:
        return [fn(s) for s in seeds]
    import multiprocessing as mp

    with mp.get_context("spawn").Pool(workers) as pool:
        return pool.map(fn, seeds, chunksize=8)


def make_coarse_planes(seeds: Any, workers: int = 1, fracture_rate: float = COARSE_FRACTURE_RATE,
                       ct_share: float = 0.5, max_spacing_mm: float = 1.5,
                       slice_sampling: bool = False, pelvis: bool = False,
                       aorta_share: float = 0.0) -> dict[str, np.ndarray]:
    """Coarse items for ``seeds`` in ``training.data.make_coarse_dataset``'s layout."""
    seeds = list(seeds)
    rows = _map(partial(coarse_one, fracture_rate=fracture_rate, ct_share=ct_share, max_spacing_mm=max_spacing_mm,
                        slice_sampling=slice_sampling, pelvis=pelvis, aorta_share=aorta_share), seeds, workers)
    keys = ("images", "vertebrae", "s1", "heads", "radii")
    data = {k: np.stack([r[i] for r in rows]).astype(np.uint8 if k == "images" else np.float32) for i, k in enumerate(keys)}
    data["seeds"] = np.asarray(seeds)
    return data


def make_refine_planes(seeds: Any, workers: int = 1, fracture_rate: float = REFINE_FRACTURE_RATE,
                       fracture_boost: int = 2, ct_share: float = 0.5, max_spacing_mm: float = 1.5,
                       slice_sampling: bool = False, severe_boost: int = 0,
                       pelvis: bool = False, aorta_share: float = 0.0) -> dict[str, np.ndarray]:
    """Refinement crops for ``seeds`` in ``training.data.make_refine_dataset``'s layout."""
    one = partial(refine_one, fracture_rate=fracture_rate, fracture_boost=fracture_boost, ct_share=ct_share,
                  max_spacing_mm=max_spacing_mm, slice_sampling=slice_sampling, severe_boost=severe_boost,
                  pelvis=pelvis, aorta_share=aorta_share)
    rows = [r for per in _map(one, list(seeds), workers) for r in per]
    return {"crops": np.stack([r[0] for r in rows]).reshape(-1, CROP, CROP),
            "kinds": np.array([r[1] for r in rows], np.int8),
            "points": np.stack([r[2] for r in rows]).astype(np.float32)}
