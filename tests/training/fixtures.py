"""Phantom radiographs written out as a user's annotated set: 16-bit PNGs and their truth in
sagittal's, COCO's and BUU-LSPINE's formats (BUU's images stored facing left, so a right-facing
phantom is written mirrored), with what ``scripts/eval_landmarks.py`` scores on the same pixels."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import cv2
import numpy as np

from sagittal.levels import LEVEL_INDEX, LEVELS, POINT_NAMES
from sagittal.phantom import build_spine
from sagittal.phantom.truth import landmarks as truth_landmarks
from sagittal.phantom.truth import vertebrae as truth_vertebrae
from sagittal.training.annotations import Annotation, write_buu, write_coco, write_sagittal
from sagittal.training.data import as_view, render_family, sample_family_spec

ROOT = Path(__file__).resolve().parents[2]


def script(name: str) -> Any:
    """``scripts/<name>.py`` as a module."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def eval_script() -> Any:
    """``scripts/eval_landmarks.py`` as a module (its Tally holds the metric definitions)."""
    return script("eval_landmarks")


def to_png16(pixels: np.ndarray) -> np.ndarray:
    lo, hi = float(pixels.min()), float(pixels.max())
    return np.round((pixels - lo) / max(hi - lo, 1e-9) * 65535).astype(np.uint16)


def annotation_of(name: str, lm: dict, spacing: tuple[float, float] | None, facing: str) -> Annotation:
    ann = Annotation(name, "truth", spacing_mm=spacing, facing=facing, image_file=f"{name}.png")
    for lv, pts in lm["vertebrae"].items():
        ann.vertebrae[LEVEL_INDEX[lv]] = [pts[n] for n in POINT_NAMES]
    if lm["s1_endplate"]:
        ann.s1[:] = [lm["s1_endplate"]["anterior"], lm["s1_endplate"]["posterior"]]
    for k, h in enumerate(lm["femoral_heads"]):
        ann.heads[k], ann.radii[k] = h["center"], h["radius_px"]
    return ann


@dataclass
class Case:
    name: str
    pixels: np.ndarray  # what was written (read back), float32
    spacing_mm: tuple[float, float]
    facing: str
    truth: dict
    spine: Any


def write_set(root: Path, n: int = 4, spacing_mm: float = 0.6, first_seed: int = 4_242_000, family: str = "2d",
              flip_for_buu: bool = True, prefix: str = "case") -> list[Case]:
    """``n`` phantoms: ``root/png/*.png``, ``root/sagittal/*.json``, ``root/coco_{prefix}.json``
    (all on the images as rendered) and ``root/buu_png`` + ``root/buu/*.csv`` (mirrored to face
    left). Returns the rendered cases, then the mirrored ones."""
    for d in ("png", "sagittal", "buu_png", "buu"):
        (root / d).mkdir(parents=True, exist_ok=True)
    cases, buu_cases, anns = [], [], []
    for k in range(n):
        rng = np.random.default_rng([first_seed + k])
        spine = build_spine(sample_family_spec(family, rng, None))
        facing = "right" if k % 2 == 0 else "left"
        style: dict[str, Any] = {"pixel_spacing_mm": spacing_mm}
        if family == "2d":
            style["facing"] = facing
        view = as_view(render_family(family, spine, rng, **style))
        name = f"{prefix}{k:02d}"
        png = to_png16(view.pixels)
        cv2.imwrite(str(root / "png" / f"{name}.png"), png)
        lm = truth_landmarks(spine, view.to_px, view.in_view, view.s1_in_view, view.femoral_in_view,
                             radius_scale=1.0 / view.spacing_mm[1])
        truth = {"landmarks": lm, "parameters": {a: float(b) for a, b in spine.parameters.items()},
                 "vertebrae": truth_vertebrae(spine, view.in_view)}
        sp = (float(view.spacing_mm[0]), float(view.spacing_mm[1]))
        ann = annotation_of(name, lm, sp, view.facing)
        write_sagittal(ann, root / "sagittal" / f"{name}.json")
        anns.append(ann)
        cases.append(Case(name, png.astype(np.float32), sp, view.facing, truth, spine))
        if flip_for_buu:
            w = png.shape[1]
            flipped = png[:, ::-1] if view.facing == "right" else png
            cv2.imwrite(str(root / "buu_png" / f"{name}.png"), flipped)
            fa = ann.flipped(w) if view.facing == "right" else ann
            write_buu(fa, root / "buu" / f"{name}.csv")
            buu_cases.append(Case(name, np.ascontiguousarray(flipped).astype(np.float32), sp, "left",
                                  {**truth, "landmarks": fa.to_landmarks()}, spine))
    write_coco(anns, root / f"coco_{prefix}.json")
    return cases + buu_cases


def eval_landmarks_figures(detector: Any, cases: list[Case]) -> dict:
    """``scripts/eval_landmarks.py``'s Tally over ``cases`` (the pixels as written)."""
    mod = eval_script()
    tally = mod.Tally()
    for c in cases:
        ((lm, facing, _),) = detector.detect([c.pixels])
        view = SimpleNamespace(pixels=c.pixels, spacing_mm=c.spacing_mm, facing=c.facing)
        tally.add(c.spine, view, c.truth, lm, facing)
    return dict(tally.report())


__all__ = ["LEVELS", "Case", "eval_landmarks_figures", "write_set"]
