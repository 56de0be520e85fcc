"""Training and evaluation samples rendered from the phantom, with their targets' geometry.

Each sample is a randomised radiograph of one renderer *family* — ``"2d"``, the constructive
2-D renderer (``phantom.render_radiograph``), or a projection style through a 3-D volume
(``"drr-a"``, ``"drr-b"``: ``phantom.drr.render_drr``) — optionally degraded further
(``degrade``: 8-bit export, tone curves, equalisation, inverted look-up table, noise, blur,
JPEG, field cuts at any level, zoomed crops), then passed through the same preprocessing as a
clinical image.

- ``make_coarse_dataset``: whole images letterboxed to the coarse input, landmarks in
  model-input pixels (seeds of stream ``COARSE_STREAM``).
- ``make_refine_dataset``: crops about every structure in view of finer renders, jittered in
  position, size and angle as the coarse stage's errors would place them, landmarks in crop
  pixels (seeds of stream ``REFINE_STREAM``).

The 2-D family draws from ``default_rng([stream, seed])`` (as the first weights did), the others
from ``default_rng([stream, FAMILY_CODES[family], seed])``. Evaluation
(``scripts/eval_landmarks.py``) draws from single-integer seeds, never used here.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import partial
from typing import Any

import cv2
import numpy as np

from ..landmarks.crops import CROP, CropFrame, extract, hips_frame, s1_frame, vertebra_frame
from ..landmarks.preprocess import letterbox, normalise
from ..levels import LEVEL_INDEX, LEVELS
from ..phantom import build_spine, render_radiograph, sample_spec
from .targets import head_order

COARSE_STREAM = 7_000_003
REFINE_STREAM = 7_000_005
KIND_CODES = {"vertebra": 0, "s1": 1, "hips": 2}
FAMILIES = ("2d", "drr-a", "drr-b")
FAMILY_CODES = {"drr-a": 11, "drr-b": 12}
DEGRADE_STREAM = 99


@dataclass
class Sample:
    image: np.ndarray  # INPUT_SHAPE float32 in [0, 1]
    vertebrae: np.ndarray  # (V, 6, 2) input pixels, wholly in view
    levels: list[str]
    s1: np.ndarray | None  # (2, 2)
    heads: np.ndarray  # (H, 2)
    radii: np.ndarray  # (H,)


@dataclass(frozen=True)
class View:
    """A rendered radiograph as the model sees it: ``pixels`` bone-bright float32 and the truth's
    geometry (``to_px`` maps phantom millimetres to these pixels; ``in_view (18,)`` bodies wholly
    in the exposed field, ``s1_in_view``, ``femoral_in_view (2,)``)."""

    pixels: np.ndarray
    spacing_mm: tuple[float, float]
    facing: str
    origin_px: tuple[float, float]
    offset_px: tuple[float, float]  # (x, y) subtracted after the renderer's mapping (crops)
    in_view: np.ndarray
    s1_in_view: bool
    femoral_in_view: np.ndarray
    radiograph: Any  # the renderer's own object

    def to_px(self, pts_mm: np.ndarray) -> np.ndarray:
        return np.asarray(self.radiograph.to_px(pts_mm), float) - np.asarray(self.offset_px)


def bone_bright(rg: Any) -> np.ndarray:
    """A rendered radiograph's stored pixels, bone bright (MONOCHROME1 inverted), float32."""
    img = rg.pixels.astype(np.float32)
    return ((1 << rg.bits_stored) - 1 - img) if rg.photometric == "MONOCHROME1" else img


def render_family(family: str, spine: Any, rng: np.random.Generator, **style: Any) -> Any:
    """Render ``spine`` with the renderer of ``family`` (keyword ``style`` as that renderer takes)."""
    if family == "2d":
        return render_radiograph(spine, rng, **style)
    if family not in FAMILY_CODES:
        raise ValueError(f"unknown renderer family {family!r}; expected one of {', '.join(FAMILIES)}")
    from ..phantom.drr import render_drr

    return render_drr(spine, rng, family=family, **style)


def sample_family_spec(family: str, rng: np.random.Generator, n_fractures: int | None = None) -> Any:
    """The spine's specification as ``family`` draws it (the projection families add disc
    narrowing and spondylolisthesis: ``phantom.drr.sample_drr_spec``)."""
    if family == "2d":
        return sample_spec(rng, n_fractures=n_fractures)
    from ..phantom.drr import sample_drr_spec

    return sample_drr_spec(rng, n_fractures=n_fractures)


def as_view(rg: Any) -> View:
    return View(bone_bright(rg), tuple(rg.spacing_mm), rg.facing, tuple(rg.origin_px), (0.0, 0.0),
                np.asarray(rg.in_view, bool), bool(rg.s1_in_view), np.asarray(rg.femoral_in_view, bool), rg)


def _inside(pts_px: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """Which points ``(..., 2)`` lie inside ``box`` (x0, y0, x1, y1) with a pixel of margin."""
    x0, y0, x1, y1 = box
    p = np.asarray(pts_px)
    return (p[..., 0] >= x0 + 1) & (p[..., 0] <= x1 - 2) & (p[..., 1] >= y0 + 1) & (p[..., 1] <= y1 - 2)


def field_cut(view: View, spine: Any, rng: np.random.Generator) -> View:
    """Crop the image to a smaller field: its top or bottom at any height of the spine (through
    a body as often as not), or a zoomed window about part of the spine. What the new field cuts
    is no longer in view."""
    h, w = view.pixels.shape
    ys = view.to_px(spine.points_mm)[..., 1]  # (18, 6)
    top, bottom = 0, h
    kind = rng.choice(["top", "bottom", "both", "zoom"], p=[0.4, 0.15, 0.2, 0.25])
    lo, hi = float(np.clip(ys.min(), 0, h - 1)), float(np.clip(ys.max(), 0, h - 1))
    if kind in ("top", "both", "zoom"):
        top = int(rng.uniform(lo, lo + 0.7 * (hi - lo)))
    if kind in ("bottom", "both"):
        bottom = int(rng.uniform(top + 0.3 * (h - top), h))
    if kind == "zoom":
        bottom = int(min(h, top + rng.uniform(0.25, 0.6) * h))
    x0, x1 = 0, w
    if rng.random() < 0.5:  # narrow: the spine with less of the trunk beside it
        xs = view.to_px(spine.points_mm)[..., 0]
        cx, half = float(np.median(xs)), float(rng.uniform(0.2, 0.45) * w)
        x0, x1 = int(max(0, cx - half)), int(min(w, cx + half))
    if bottom - top < 64 or x1 - x0 < 32:
        return view
    box = (x0, top, x1, bottom)
    pix = np.ascontiguousarray(view.pixels[top:bottom, x0:x1])
    pts = view.to_px(spine.points_mm)
    in_view = view.in_view & _inside(pts, box).all(axis=1)
    s1_in = view.s1_in_view and bool(_inside(view.to_px(spine.s1_mm), box).all())
    ang = np.linspace(0, 2 * np.pi, 16, endpoint=False)
    fem = np.array([bool(_inside(view.to_px(c + r * np.stack([np.cos(ang), np.sin(ang)], 1)), box).all())
                    for c, r in zip(spine.femoral_centers_mm, spine.femoral_radii_mm, strict=False)])
    off = (view.offset_px[0] + x0, view.offset_px[1] + top)
    return replace(view, pixels=pix, offset_px=off, in_view=in_view, s1_in_view=s1_in,
                   femoral_in_view=view.femoral_in_view & fem)


def unsharp(x: np.ndarray, sigma_px: float, amount: float) -> np.ndarray:
    """Edge enhancement as DR processing does it: ``x + amount * (x - blur(x, sigma_px))``, same
    shape and dtype, not clipped."""
    return x + amount * (x - cv2.GaussianBlur(x, (0, 0), sigma_px))


def _other_noise(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Noise of another kind than the renderer's: additive, multiplicative or correlated."""
    kind = rng.integers(0, 3)
    n = rng.standard_normal(x.shape).astype(np.float32)
    if kind == 0:
        x = x + n * np.float32(rng.uniform(0.01, 0.08))
    elif kind == 1:
        x = x * (1 + n * np.float32(rng.uniform(0.02, 0.15)))
    else:
        x = x + cv2.GaussianBlur(n, (0, 0), rng.uniform(1, 3)) * np.float32(rng.uniform(0.03, 0.12))
    return np.clip(x, 0, 1)


def _eight_bit(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """An 8-bit export, sometimes with CLAHE or global histogram equalisation, sometimes JPEG."""
    u8 = np.round(np.clip(x, 0, 1) * 255).astype(np.uint8)
    if rng.random() < 0.4:
        tiles = int(rng.integers(2, 16))
        u8 = cv2.createCLAHE(clipLimit=float(rng.uniform(1.0, 6.0)), tileGridSize=(tiles, tiles)).apply(u8)
    elif rng.random() < 0.15:
        u8 = cv2.equalizeHist(u8)
    if rng.random() < 0.35:
        _, buf = cv2.imencode(".jpg", u8, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(25, 90))])
        u8 = cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE)
    return u8.astype(np.float32) / 255


def degrade_pixels(img: np.ndarray, rng: np.random.Generator, spacing_mm: float) -> np.ndarray:
    """A different export and processing chain on a bone-bright image: any of 8-bit quantisation,
    a tone curve, strong or no local equalisation (CLAHE / unsharp), a down-and-up resampling or
    blur, noise of another kind, lossy JPEG, an inverted look-up table. Bone-bright float32 out
    (inverted where the LUT says: a look the model must also survive)."""
    lo, hi = np.percentile(img[:: max(1, img.shape[0] // 300), :: max(1, img.shape[1] // 150)], (0.5, 99.5))
    x = np.clip((img - lo) / max(float(hi - lo), 1e-6), 0, 1).astype(np.float32)
    if rng.random() < 0.5:
        x = x ** np.float32(rng.uniform(0.4, 2.2))
    if rng.random() < 0.3:  # a sigmoid tone curve
        k = rng.uniform(4, 10)
        x = (1 / (1 + np.exp(-k * (x - rng.uniform(0.35, 0.65))))).astype(np.float32)
    if rng.random() < 0.35:  # unsharp mask / strong edge enhancement
        sig = rng.uniform(2, 30) / spacing_mm
        x = np.clip(unsharp(x, sig, rng.uniform(0.5, 3.0)), 0, 1)
    if rng.random() < 0.4:  # resampled or blurred
        if rng.random() < 0.5:
            f = rng.uniform(0.3, 0.8)
            h, w = x.shape
            x = cv2.resize(cv2.resize(x, (max(8, int(w * f)), max(8, int(h * f))), interpolation=cv2.INTER_AREA),
                           (w, h), interpolation=cv2.INTER_LINEAR)
        else:
            x = cv2.GaussianBlur(x, (0, 0), rng.uniform(0.5, 2.5))
    if rng.random() < 0.4:
        x = _other_noise(x, rng)
    if rng.random() < 0.6:
        x = _eight_bit(x, rng)
    if rng.random() < 0.12:  # inverted look-up table: bone dark
        x = 1 - x
    return x.astype(np.float32)


def degrade(view: View, spine: Any, rng: np.random.Generator) -> View:
    if rng.random() < 0.6:
        view = field_cut(view, spine, rng)
    return replace(view, pixels=degrade_pixels(view.pixels, rng, float(view.spacing_mm[1])))


def _render(stream: int, seed: int, spacing_range: tuple[float, float], fracture_rate: float = 0.0,
            family: str = "2d", augment: float = 0.0, **style: Any) -> tuple[Any, View, np.random.Generator]:
    """``fracture_rate``: the chance that the spine is drawn with 1–3 fractures (else the
    phantom's own fracture frequency); ``augment``: the chance of ``degrade``."""
    rng = np.random.default_rng([stream, seed] if family == "2d" else [stream, FAMILY_CODES[family], seed])
    n_fx = int(rng.integers(1, 4)) if fracture_rate and rng.random() < fracture_rate else None
    spine = build_spine(sample_family_spec(family, rng, n_fx))
    spacing = style.pop("pixel_spacing_mm", float(rng.uniform(*spacing_range)))
    view = as_view(render_family(family, spine, rng, pixel_spacing_mm=spacing, **style))
    if augment:
        drng = np.random.default_rng([stream, DEGRADE_STREAM, seed])
        if drng.random() < augment:
            view = degrade(view, spine, drng)
    return spine, view, rng


def render_sample(seed: int, family: str = "2d", augment: float = 0.0, **style: Any) -> tuple[Sample, Any, View]:
    """One randomised phantom radiograph on the coarse grid → (sample, spine, view)."""
    spine, rg, _ = _render(COARSE_STREAM, seed, (0.9, 2.2), family=family, augment=augment, **style)
    img, lb = letterbox(normalise(rg.pixels))
    idx = np.where(rg.in_view)[0]
    verts = lb.to_input(rg.to_px(spine.points_mm[idx])) if len(idx) else np.zeros((0, 6, 2))
    s1 = lb.to_input(rg.to_px(spine.s1_mm)) if rg.s1_in_view else None
    keep = np.where(rg.femoral_in_view)[0]
    heads = lb.to_input(rg.to_px(spine.femoral_centers_mm[keep])) if len(keep) else np.zeros((0, 2))
    radii = spine.femoral_radii_mm[keep] / rg.spacing_mm[1] * lb.scale
    return Sample(img, verts, [LEVELS[i] for i in idx], s1, heads, radii), spine, rg


def _coarse_one(seed: int, family: str = "2d", augment: float = 0.0) -> tuple:
    smp, _, _ = render_sample(seed, family, augment)
    verts = np.full((18, 6, 2), np.nan, np.float32)
    for lv, pts in zip(smp.levels, smp.vertebrae, strict=False):
        verts[LEVEL_INDEX[lv]] = pts
    s1 = smp.s1 if smp.s1 is not None else np.full((2, 2), np.nan)
    heads, radii = np.full((2, 2), np.nan, np.float32), np.full(2, np.nan, np.float32)
    heads[: len(smp.heads)], radii[: len(smp.radii)] = smp.heads, smp.radii
    return np.round(smp.image * 255).astype(np.uint8), verts, s1, heads, radii


def _pool_map(fn: Any, seeds: list[int], workers: int) -> list:
    if workers <= 1:
        return [fn(s) for s in seeds]
    import multiprocessing as mp

    with mp.get_context("spawn").Pool(workers) as pool:
        return pool.map(fn, seeds, chunksize=8)


def make_coarse_dataset(seeds: Any, workers: int = 1, family: str = "2d", augment: float = 0.0) -> dict[str, np.ndarray]:
    """Render coarse samples for ``seeds`` (images uint8; geometry padded with NaN)."""
    seeds = list(seeds)
    rows = _pool_map(partial(_coarse_one, family=family, augment=augment), seeds, workers)
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


def body_and_s1_crops(img: np.ndarray, view: Any, spine: Any, rng: np.random.Generator, mirror: bool,
                      fracture_boost: int) -> list[tuple[np.ndarray, int, np.ndarray]]:
    """Refinement items ``(crop, kind code, (10, 2) points in crop pixels, NaN where absent)``
    about every body wholly in ``view`` (fractured ones ``1 + fracture_boost`` times, each
    jittered anew) and the S1 endplate; ``view`` has ``in_view``, ``s1_in_view`` and ``to_px``."""
    out = []
    for i in np.where(view.in_view)[0]:
        pts = view.to_px(spine.points_mm[i])
        for _ in range(1 + (fracture_boost if spine.grade[i] else 0)):
            f = jittered(vertebra_frame(pts, mirror), rng)
            pad = np.full((10, 2), np.nan, np.float32)
            pad[:6] = f.to_crop(pts)
            out.append((extract(img, f), KIND_CODES["vertebra"], pad))
    if view.s1_in_view:
        s1 = view.to_px(spine.s1_mm)
        f = jittered(s1_frame(s1, mirror), rng)
        pad = np.full((10, 2), np.nan, np.float32)
        pad[6:8] = f.to_crop(s1)
        out.append((extract(img, f), KIND_CODES["s1"], pad))
    return out


def _refine_one(seed: int, fracture_boost: int = 0, family: str = "2d", augment: float = 0.0) -> list[tuple]:
    spine, rg, rng = _render(REFINE_STREAM, seed, (0.3, 0.9), fracture_rate=0.6 if fracture_boost else 0.0,
                             family=family, augment=augment)
    img = normalise(rg.pixels)
    mirror = rg.facing == "left"
    out = body_and_s1_crops(img, rg, spine, rng, mirror, fracture_boost)
    if rg.femoral_in_view.all():
        c = rg.to_px(spine.femoral_centers_mm)
        r = spine.femoral_radii_mm / rg.spacing_mm[1]
        f = jittered(hips_frame(c, r, mirror), rng)
        q = f.to_crop(c)
        pad = np.full((10, 2), np.nan, np.float32)
        pad[8:10] = q[head_order(q)]
        out.append((extract(img, f), KIND_CODES["hips"], pad))
    return [(np.round(c * 255).astype(np.uint8), k, p) for c, k, p in out]


def make_refine_dataset(seeds: Any, workers: int = 1, fracture_boost: int = 0, family: str = "2d",
                        augment: float = 0.0) -> dict[str, np.ndarray]:
    """Crops about every structure in view of the radiographs of ``seeds``: ``crops (N, CROP,
    CROP)`` uint8, ``kinds (N,)`` (``KIND_CODES``), ``points (N, 10, 2)`` crop pixels, NaN where
    the channel does not belong to the crop's kind.

    ``fracture_boost`` > 0: most spines get 1–3 fractures and each fractured body that many
    extra crops, so that collapsed shapes are not drowned by normal ones (the coarse-to-fine
    model otherwise pulls a collapsed endplate towards the normal shape)."""
    fn = partial(_refine_one, fracture_boost=fracture_boost, family=family, augment=augment)
    rows = [r for per in _pool_map(fn, list(seeds), workers)
            for r in per]
    return {"crops": np.stack([r[0] for r in rows]).reshape(-1, CROP, CROP),
            "kinds": np.array([r[1] for r in rows], np.int8),
            "points": np.stack([r[2] for r in rows]).astype(np.float32)}
