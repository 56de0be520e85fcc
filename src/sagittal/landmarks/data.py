"""Training and evaluation samples rendered from the phantom, with their targets' geometry.

Each sample is a randomised radiograph (``phantom.render_radiograph``: contrast, noise,
scatter, processing, bit depth, MONOCHROME1/2, field of view, facing, seams, markers,
collimation …) passed through the same preprocessing as a clinical image.

- ``make_coarse_dataset``: whole images letterboxed to the coarse input, landmarks in
  model-input pixels (seeds of stream ``COARSE_STREAM``).
- ``make_refine_dataset``: crops about every structure in view of finer renders, jittered in
  position, size and angle as the coarse stage's errors would place them, landmarks in crop
  pixels (seeds of stream ``REFINE_STREAM``).

Evaluation (``scripts/eval_landmarks.py``) draws from a third stream, never used here.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import numpy as np

from ..levels import LEVEL_INDEX, LEVELS
from ..phantom import build_spine, render_radiograph, sample_spec
from .crops import CROP, CropFrame, extract, hips_frame, s1_frame, vertebra_frame
from .preprocess import INPUT_SHAPE, letterbox, normalise
from .targets import head_order

COARSE_STREAM = 7_000_003
REFINE_STREAM = 7_000_005
KIND_CODES = {"vertebra": 0, "s1": 1, "hips": 2}


@dataclass
class Sample:
    image: np.ndarray  # INPUT_SHAPE float32 in [0, 1]
    vertebrae: np.ndarray  # (V, 6, 2) input pixels, wholly in view
    levels: list[str]
    s1: np.ndarray | None  # (2, 2)
    heads: np.ndarray  # (H, 2)
    radii: np.ndarray  # (H,)


def bone_bright(rg) -> np.ndarray:
    img = rg.pixels.astype(np.float32)
    return ((1 << rg.bits_stored) - 1 - img) if rg.photometric == "MONOCHROME1" else img


def _render(stream: int, seed: int, spacing_range: tuple[float, float], fracture_rate: float = 0.0, **style):
    """``fracture_rate``: the chance that the spine is drawn with 1–3 fractures (else the
    phantom's own fracture frequency)."""
    rng = np.random.default_rng([stream, seed])
    n_fx = int(rng.integers(1, 4)) if fracture_rate and rng.random() < fracture_rate else None
    spine = build_spine(sample_spec(rng, n_fractures=n_fx))
    spacing = style.pop("pixel_spacing_mm", float(rng.uniform(*spacing_range)))
    return spine, render_radiograph(spine, rng, pixel_spacing_mm=spacing, **style), rng


def render_sample(seed: int, **style) -> tuple[Sample, object, object]:
    """One randomised phantom radiograph on the coarse grid → (sample, spine, radiograph)."""
    spine, rg, _ = _render(COARSE_STREAM, seed, (0.9, 2.2), **style)
    img, lb = letterbox(normalise(bone_bright(rg)))
    idx = np.where(rg.in_view)[0]
    verts = lb.to_input(rg.to_px(spine.points_mm[idx])) if len(idx) else np.zeros((0, 6, 2))
    s1 = lb.to_input(rg.to_px(spine.s1_mm)) if rg.s1_in_view else None
    keep = np.where(rg.femoral_in_view)[0]
    heads = lb.to_input(rg.to_px(spine.femoral_centers_mm[keep])) if len(keep) else np.zeros((0, 2))
    radii = spine.femoral_radii_mm[keep] / rg.spacing_mm[1] * lb.scale
    return Sample(img, verts, [LEVELS[i] for i in idx], s1, heads, radii), spine, rg


def _coarse_one(seed: int) -> tuple:
    smp, _, _ = render_sample(seed)
    verts = np.full((18, 6, 2), np.nan, np.float32)
    for lv, pts in zip(smp.levels, smp.vertebrae):
        verts[LEVEL_INDEX[lv]] = pts
    s1 = smp.s1 if smp.s1 is not None else np.full((2, 2), np.nan)
    heads, radii = np.full((2, 2), np.nan, np.float32), np.full(2, np.nan, np.float32)
    heads[: len(smp.heads)], radii[: len(smp.radii)] = smp.heads, smp.radii
    return np.round(smp.image * 255).astype(np.uint8), verts, s1, heads, radii


def _pool_map(fn, seeds, workers: int):
    if workers <= 1:
        return [fn(s) for s in seeds]
    import multiprocessing as mp

    with mp.get_context("spawn").Pool(workers) as pool:
        return pool.map(fn, seeds, chunksize=8)


def make_coarse_dataset(seeds, workers: int = 1) -> dict[str, np.ndarray]:
    """Render coarse samples for ``seeds`` (images uint8; geometry padded with NaN)."""
    seeds = list(seeds)
    rows = _pool_map(_coarse_one, seeds, workers)
    keys = ("images", "vertebrae", "s1", "heads", "radii")
    data = {k: np.stack([r[i] for r in rows]).astype(np.uint8 if k == "images" else np.float32) for i, k in enumerate(keys)}
    data["seeds"] = np.asarray(seeds)
    return data


def jittered(frame: CropFrame, rng: np.random.Generator, shift: float = 0.08) -> CropFrame:
    """The frame as the coarse stage might have placed it: centre off by about ``shift`` of the
    side, side ±10 %, turned up to ±10°."""
    side = frame.side_px * float(np.exp(rng.normal(0, 0.1)))
    d = rng.normal(0, shift * frame.side_px / 2.4, 2)
    return CropFrame((frame.centre[0] + d[0], frame.centre[1] + d[1]), side, frame.mirror,
                     float(np.radians(rng.uniform(-10, 10))))


def _refine_one(seed: int, fracture_boost: int = 0) -> list[tuple]:
    spine, rg, rng = _render(REFINE_STREAM, seed, (0.3, 0.9), fracture_rate=0.6 if fracture_boost else 0.0)
    img = normalise(bone_bright(rg))
    mirror = rg.facing == "left"
    out = []
    for i in np.where(rg.in_view)[0]:
        pts = rg.to_px(spine.points_mm[i])
        for _ in range(1 + (fracture_boost if spine.grade[i] else 0)):
            f = jittered(vertebra_frame(pts, mirror), rng)
            pad = np.full((10, 2), np.nan, np.float32)
            pad[:6] = f.to_crop(pts)
            out.append((extract(img, f), KIND_CODES["vertebra"], pad))
    if rg.s1_in_view:
        s1 = rg.to_px(spine.s1_mm)
        f = jittered(s1_frame(s1, mirror), rng)
        pad = np.full((10, 2), np.nan, np.float32)
        pad[6:8] = f.to_crop(s1)
        out.append((extract(img, f), KIND_CODES["s1"], pad))
    if rg.femoral_in_view.all():
        c = rg.to_px(spine.femoral_centers_mm)
        r = spine.femoral_radii_mm / rg.spacing_mm[1]
        f = jittered(hips_frame(c, r, mirror), rng)
        q = f.to_crop(c)
        pad = np.full((10, 2), np.nan, np.float32)
        pad[8:10] = q[head_order(q)]
        out.append((extract(img, f), KIND_CODES["hips"], pad))
    return [(np.round(c * 255).astype(np.uint8), k, p) for c, k, p in out]


def make_refine_dataset(seeds, workers: int = 1, fracture_boost: int = 0) -> dict[str, np.ndarray]:
    """Crops about every structure in view of the radiographs of ``seeds``: ``crops (N, CROP,
    CROP)`` uint8, ``kinds (N,)`` (``KIND_CODES``), ``points (N, 10, 2)`` crop pixels, NaN where
    the channel does not belong to the crop's kind.

    ``fracture_boost`` > 0: most spines get 1–3 fractures and each fractured body that many
    extra crops, so that collapsed shapes are not drowned by normal ones (the coarse-to-fine
    model otherwise pulls a collapsed endplate towards the normal shape)."""
    rows = [r for per in _pool_map(partial(_refine_one, fracture_boost=fracture_boost), list(seeds), workers)
            for r in per]
    return {"crops": np.stack([r[0] for r in rows]).reshape(-1, CROP, CROP),
            "kinds": np.array([r[1] for r in rows], np.int8),
            "points": np.stack([r[2] for r in rows]).astype(np.float32)}
