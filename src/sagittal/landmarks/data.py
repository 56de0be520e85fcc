"""Training and evaluation samples rendered from the phantom, with their targets' geometry.

Each sample is a randomised radiograph (``phantom.render_radiograph``: contrast, noise,
scatter, processing, bit depth, MONOCHROME1/2, field of view, facing, seams, markers,
collimation …) passed through the same ``preprocess`` as a clinical image, plus the truth
landmarks mapped onto the model's input grid.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..phantom import build_spine, render_radiograph, sample_spec
from .preprocess import INPUT_SHAPE, letterbox, normalise


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


def render_sample(seed: int, **style) -> tuple[Sample, object, object]:
    """One randomised phantom radiograph → (sample, spine, radiograph)."""
    from ..levels import LEVELS

    rng = np.random.default_rng([7_000_003, seed])
    spine = build_spine(sample_spec(rng))
    spacing = style.pop("pixel_spacing_mm", float(rng.uniform(0.9, 2.2)))
    rg = render_radiograph(spine, rng, pixel_spacing_mm=spacing, **style)
    img, lb = letterbox(normalise(bone_bright(rg)))
    idx = np.where(rg.in_view)[0]
    verts = lb.to_input(rg.to_px(spine.points_mm[idx])) if len(idx) else np.zeros((0, 6, 2))
    s1 = lb.to_input(rg.to_px(spine.s1_mm)) if rg.s1_in_view else None
    keep = np.where(rg.femoral_in_view)[0]
    heads = lb.to_input(rg.to_px(spine.femoral_centers_mm[keep])) if len(keep) else np.zeros((0, 2))
    radii = spine.femoral_radii_mm[keep] / rg.spacing_mm[1] * lb.scale
    return Sample(img, verts, [LEVELS[i] for i in idx], s1, heads, radii), spine, rg


def make_dataset(seeds, shape=INPUT_SHAPE) -> dict[str, np.ndarray]:
    """Render samples for ``seeds`` into arrays (images uint8; geometry padded with NaN)."""
    seeds = list(seeds)
    n = len(seeds)
    images = np.zeros((n, *shape), np.uint8)
    verts = np.full((n, 18, 6, 2), np.nan, np.float32)
    s1 = np.full((n, 2, 2), np.nan, np.float32)
    heads = np.full((n, 2, 2), np.nan, np.float32)
    radii = np.full((n, 2), np.nan, np.float32)
    from ..levels import LEVEL_INDEX

    for k, seed in enumerate(seeds):
        smp, _, _ = render_sample(seed)
        images[k] = np.round(smp.image * 255).astype(np.uint8)
        for lv, pts in zip(smp.levels, smp.vertebrae):
            verts[k, LEVEL_INDEX[lv]] = pts
        if smp.s1 is not None:
            s1[k] = smp.s1
        heads[k, : len(smp.heads)] = smp.heads
        radii[k, : len(smp.radii)] = smp.radii
    return {"images": images, "vertebrae": verts, "s1": s1, "heads": heads, "radii": radii,
            "seeds": np.asarray(seeds)}
