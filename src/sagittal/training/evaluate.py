"""``sagittal evaluate``: the model against a user's annotated radiographs.

The figures are those of ``scripts/eval_landmarks.py`` on phantom truth, computed from
annotations instead (only what is annotated is scored):

- ``detection_rate``: annotated vertebrae that the model found at the right level — its
  labelled body's centre (mean of the corners annotated) within 5 mm of the annotated one
  (without a pixel spacing: within 15 % of the annotated body's mean endplate width, about
  5 mm on a lumbar body); ``wrong_levels`` counts labelled bodies off their annotated level,
  and bodies labelled at a level nobody annotated that lie on another annotated body (with
  complete annotations, as on the phantom, ``eval_landmarks`` also counts a body labelled
  where none is in view; a user's partial annotations cannot tell that apart).
- ``point_error_px_median`` / ``point_error_mm_median``: distance of each annotated point of a
  body found at the right level (the six vertebral points, as ``eval_landmarks``);
- ``endplate_angle_error_deg_mae``: the superior and inferior endplates of bodies found (and
  the S1 endplate), corner to corner, in millimetres when the spacing is known;
- parameter errors (``lumbar_lordosis_deg_mae``, ``sacral_slope_deg_mae``,
  ``pelvic_incidence_deg_mae``, ``pelvic_tilt_deg_mae``, …) where both the annotations and
  the model give the parameter; the annotated value is computed by the same geometry
  (``report.analysis.analysis_document``) from the annotated points, an endplate's missing
  middle point taken at the midpoint of its corners (angles use corners only).

95 % confidence intervals: percentile bootstrap over images (resampling whole radiographs,
``BOOTSTRAP`` replicates, fixed seed).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError, SagittalError
from ..levels import LEVEL_INDEX, LEVELS, POINT_NAMES
from .annotations import Annotation, image_files, pair, read_annotations

LEVEL_TOLERANCE_MM = 5.0
TOLERANCE_OF_WIDTH = 0.15
BOOTSTRAP = 1000
SEED = 0
RASTER_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
PARAMS = ("pelvic_incidence_deg", "pelvic_tilt_deg", "sacral_slope_deg", "lumbar_lordosis_deg",
          "thoracic_kyphosis_deg", "sagittal_vertical_axis_mm")
ENDPLATES = {"superior": (0, 1), "inferior": (3, 2)}  # (anterior, posterior) indices into POINT_NAMES


@dataclass
class ImageScore:
    """What one annotated radiograph contributes."""

    name: str
    status: str
    spacing_mm: tuple[float, float] | None
    found: dict[str, bool] = field(default_factory=dict)  # annotated level -> found at the right level
    wrong_levels: int = 0
    point_px: dict[str, list[float]] = field(default_factory=dict)
    point_mm: dict[str, list[float]] = field(default_factory=dict)
    angle_deg: list[float] = field(default_factory=list)
    params: dict[str, tuple[float, float]] = field(default_factory=dict)  # key -> (annotated, model)


def read_raster(path: Path) -> np.ndarray:
    """A PNG/JPEG/TIFF radiograph as a 2-D float32 array (colour → grey); ``InputError`` naming it."""
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise InputError(f"{path}: cannot be read as an image")
    if img.ndim == 3:
        img = cv2.cvtColor(img[..., :3], cv2.COLOR_BGR2GRAY)
    return np.asarray(img, np.float32)


def parse_spacing(text: str | None) -> tuple[float, float] | None:
    """``--spacing MM`` (square pixels) or ``ROW,COL`` → (row, column) millimetres."""
    if text is None:
        return None
    try:
        vals = [float(v) for v in str(text).split(",")]
    except ValueError:
        raise InputError(f"--spacing {text!r}: give millimetres per pixel, e.g. 0.15 or 0.15,0.15") from None
    if len(vals) == 1:
        vals *= 2
    if len(vals) != 2 or not all(math.isfinite(v) and v > 0 for v in vals):
        raise InputError(f"--spacing {text!r}: give one or two positive numbers of millimetres")
    return vals[0], vals[1]


def _xy_scale(spacing: tuple[float, float] | None) -> np.ndarray:
    return np.array([spacing[1], spacing[0]]) if spacing else np.ones(2)


def _predicted(lm: dict[str, Any]) -> np.ndarray:
    out = np.full((len(LEVELS), 6, 2), np.nan)
    for lv, pts in (lm.get("vertebrae") or {}).items():
        if lv in LEVEL_INDEX:
            out[LEVEL_INDEX[lv]] = [pts[n] for n in POINT_NAMES]
    return out


def _angle_deg(a: np.ndarray, p: np.ndarray, sc: np.ndarray) -> float:
    d = (p - a) * sc
    return math.degrees(math.atan2(d[1], d[0]))


def _angle_diff(a: float, b: float) -> float:
    return abs((a - b + 180.0) % 360.0 - 180.0)


def filled_landmarks(ann: Annotation) -> dict[str, Any]:
    """``ann``'s landmarks for the reference parameters: bodies with all four corners, middle
    points taken at the corners' midpoints where not annotated."""
    v = ann.vertebrae.copy()
    for i in range(len(LEVELS)):
        if np.isfinite(v[i, :4]).all():
            for m, (a, b) in ((4, (0, 1)), (5, (3, 2))):
                if not np.isfinite(v[i, m]).all():
                    v[i, m] = (v[i, a] + v[i, b]) / 2
        else:
            v[i] = np.nan
    filled = Annotation(ann.name, ann.source, v, ann.s1, ann.heads, ann.radii, ann.spacing_mm, ann.facing)
    lm = filled.to_landmarks()
    for h in lm["femoral_heads"]:
        if h["radius_px"] is None:
            del h["radius_px"]
    return lm


def _facing(ann: Annotation, lm: dict[str, Any]) -> str | None:
    if ann.facing:
        return ann.facing
    from ..landmarks.infer import facing_from_landmarks

    return facing_from_landmarks(lm)


def reference_parameters(ann: Annotation, shape: tuple[int, int], spacing: tuple[float, float] | None) -> dict[str, Any]:
    """The parameters the annotated points give (the document's geometry), null where not computable."""
    from ..report.analysis import analysis_document

    lm = filled_landmarks(ann)
    image = {"rows": int(shape[0]), "columns": int(shape[1]), "pixel_spacing_mm": list(spacing) if spacing else None,
             "spacing_source": "supplied" if spacing else None, "anterior": _facing(ann, lm) or "right"}
    try:
        return dict(analysis_document(image, lm)["parameters"])
    except SagittalError:
        return {}


def score_image(ann: Annotation, result: Any, spacing: tuple[float, float] | None) -> ImageScore:
    """Compare one ``sagittal.Analysis`` with its annotation (``spacing`` (row, col) mm or None)."""
    lm = result.landmarks
    pred = _predicted(lm)
    sc = _xy_scale(spacing)
    s = ImageScore(ann.name, result.status, spacing)
    annotated = [i for i in range(len(LEVELS)) if np.isfinite(ann.vertebrae[i]).all(axis=1).any()]
    centres = {}
    for i in annotated:
        corners = np.isfinite(ann.vertebrae[i, :4]).all(axis=1)
        s.found[LEVELS[i]] = False
        if corners.any():
            centres[i] = corners
    for i in np.where(np.isfinite(pred).all(axis=(1, 2)))[0]:
        if i not in centres:
            # a labelled body at a level not annotated: wrong when it lies on another annotated body
            c = pred[i, :4].mean(axis=0)
            if any(_near(c, ann.vertebrae[j], pred_mask, sc, spacing) for j, pred_mask in centres.items()):
                s.wrong_levels += 1
            continue
        mask = centres[i]
        if not _near(pred[i, :4][mask].mean(axis=0), ann.vertebrae[i], mask, sc, spacing):
            s.wrong_levels += 1
            continue
        s.found[LEVELS[i]] = True
        _score_body(s, pred[i], ann.vertebrae[i], sc, spacing)
    ps1 = lm.get("s1_endplate")
    if ps1 and np.isfinite(ann.s1).all():
        pa, pp = np.array(ps1["anterior"], float), np.array(ps1["posterior"], float)
        s.angle_deg.append(_angle_diff(_angle_deg(pa, pp, sc), _angle_deg(ann.s1[0], ann.s1[1], sc)))
    ref = reference_parameters(ann, (int(result.image["rows"]), int(result.image["columns"])), spacing)
    for key in PARAMS:
        a, b = ref.get(key), result.parameters.get(key)
        if a is not None and b is not None:
            s.params[key] = (float(a), float(b))
    return s


def _score_body(s: ImageScore, pred: np.ndarray, ref: np.ndarray, sc: np.ndarray,
                spacing: tuple[float, float] | None) -> None:
    """Point and endplate-angle errors of one body found at its level (``(6, 2)`` each)."""
    for k, name in enumerate(POINT_NAMES):
        if np.isfinite(ref[k]).all():
            d = pred[k] - ref[k]
            s.point_px.setdefault(name, []).append(float(np.linalg.norm(d)))
            if spacing:
                s.point_mm.setdefault(name, []).append(float(np.linalg.norm(d * sc)))
    for a, p in ENDPLATES.values():
        if np.isfinite(ref[[a, p]]).all():
            s.angle_deg.append(_angle_diff(_angle_deg(pred[a], pred[p], sc), _angle_deg(ref[a], ref[p], sc)))


def _near(c: np.ndarray, body: np.ndarray, mask: np.ndarray, sc: np.ndarray, spacing: tuple[float, float] | None) -> bool:
    ref = body[:4][mask].mean(axis=0)
    if spacing:
        return float(np.linalg.norm((c - ref) * sc)) <= LEVEL_TOLERANCE_MM
    widths = [np.linalg.norm(body[a] - body[p]) for a, p in ENDPLATES.values() if np.isfinite(body[[a, p]]).all()]
    tol = TOLERANCE_OF_WIDTH * float(np.mean(widths)) if widths else 0.0
    return float(np.linalg.norm(c - ref)) <= tol


# ------------------------------------------------------------------------------ aggregation
def _cat(scores: Sequence[ImageScore], get: Callable[[ImageScore], list[float]]) -> list[float]:
    return [v for s in scores for v in get(s)]


def _per_point(scores: Sequence[ImageScore], name: str, mm: bool) -> list[float]:
    return [e for s in scores for e in (s.point_mm if mm else s.point_px).get(name, [])]


def _median(v: list[float]) -> float | None:
    return float(np.median(v)) if v else None


def _mean(v: list[float]) -> float | None:
    return float(np.mean(v)) if v else None


def headline(scores: Sequence[ImageScore]) -> dict[str, float | None]:
    """The figures that get confidence intervals (one value per figure; None when nothing to score)."""
    found = _cat(scores, lambda s: [float(f) for f in s.found.values()])
    out: dict[str, float | None] = {
        "detection_rate": _mean(found),
        "point_error_px_median": _median(_cat(scores, lambda s: [e for v in s.point_px.values() for e in v])),
        "point_error_mm_median": _median(_cat(scores, lambda s: [e for v in s.point_mm.values() for e in v])),
        "endplate_angle_error_deg_mae": _mean(_cat(scores, lambda s: s.angle_deg)),
    }
    for key in PARAMS:
        out[f"{key}_mae"] = _mean([abs(s.params[key][1] - s.params[key][0]) for s in scores if key in s.params])
    return out


def bootstrap(scores: Sequence[ImageScore], n: int = BOOTSTRAP, seed: int = SEED) -> dict[str, list[float] | None]:
    """Percentile 95 % intervals of ``headline``'s figures over images resampled with replacement."""
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {}
    for _ in range(n if scores else 0):
        pick = [scores[k] for k in rng.integers(0, len(scores), len(scores))]
        for key, v in headline(pick).items():
            if v is not None:
                draws.setdefault(key, []).append(v)
    keys = headline(scores).keys()
    return {k: [float(np.percentile(draws[k], 2.5)), float(np.percentile(draws[k], 97.5))] if k in draws else None
            for k in keys}


def metrics(scores: Sequence[ImageScore], failed: list[str], n_boot: int = BOOTSTRAP) -> dict[str, Any]:
    """The contents of ``metrics.json``."""
    head = headline(scores)
    per_level = {lv: [s.found[lv] for s in scores if lv in s.found] for lv in LEVELS}
    params = {k: [s.params[k] for s in scores if k in s.params] for k in PARAMS}
    out: dict[str, Any] = {
        "n_images": len(scores), "n_failed": len(failed), "failed": failed,
        "statuses": {st: sum(s.status == st for s in scores) for st in sorted({s.status for s in scores})},
        "vertebrae_annotated": sum(len(s.found) for s in scores),
        "vertebrae_found": sum(sum(s.found.values()) for s in scores),
        "wrong_levels": sum(s.wrong_levels for s in scores),
        **{k: (None if v is None else round(v, 6)) for k, v in head.items()},
        "ci95": bootstrap(scores, n_boot),
        "bootstrap": {"replicates": n_boot, "seed": SEED, "unit": "image"},
        "detection_rate_per_level": {lv: round(float(np.mean(v)), 4) if v else None for lv, v in per_level.items()},
        "per_point_error_px_median": {n: _median(_per_point(scores, n, False)) for n in POINT_NAMES},
        "per_point_error_mm_median": {n: _median(_per_point(scores, n, True)) for n in POINT_NAMES},
        "parameter_n": {k: len(v) for k, v in params.items()},
        "parameter_bias": {k: (round(float(np.mean([b - a for a, b in v])), 4) if v else None) for k, v in params.items()},
        "per_image": [{"name": s.name, "status": s.status, "annotated": len(s.found), "found": sum(s.found.values()),
                       "wrong_levels": s.wrong_levels,
                       "point_error_px_median": _median([e for v in s.point_px.values() for e in v])} for s in scores],
    }
    return out


def markdown(m: dict[str, Any]) -> str:
    """``metrics.md``: the headline figures with their intervals."""
    def fmt(key: str, unit: str, scale: float = 1.0) -> str:
        v, ci = m.get(key), m["ci95"].get(key)
        if v is None:
            return "–"
        s = f"{v * scale:.2f}{unit}"
        return s + (f" ({ci[0] * scale:.2f}–{ci[1] * scale:.2f})" if ci else "")

    rows = [("images analysed", str(m["n_images"]) + (f" ({m['n_failed']} failed)" if m["n_failed"] else "")),
            ("annotated vertebrae found at the right level", fmt("detection_rate", " %", 100.0)
             + f" of {m['vertebrae_annotated']}"),
            ("wrong levels", str(m["wrong_levels"])),
            ("point error median (px)", fmt("point_error_px_median", " px")),
            ("point error median (mm)", fmt("point_error_mm_median", " mm")),
            ("endplate angle error MAE", fmt("endplate_angle_error_deg_mae", "°"))]
    for k in PARAMS:
        unit = " mm" if k.endswith("_mm") else "°"
        rows.append((f"{k.removesuffix('_deg').removesuffix('_mm').replace('_', ' ')} MAE (n={m['parameter_n'][k]})",
                     fmt(f"{k}_mae", unit)))
    out = ["# sagittal evaluate", "", "Values with bootstrap 95 % intervals over images "
           f"({m['bootstrap']['replicates']} replicates, seed {m['bootstrap']['seed']}).", "",
           "| figure | value (95 % CI) |", "|---|---|"]
    out += [f"| {a} | {b} |" for a, b in rows]
    out += ["", "| level | detected |", "|---|---|"]
    out += [f"| {lv} | {100 * v:.1f} % |" for lv, v in m["detection_rate_per_level"].items() if v is not None]
    if m["failed"]:
        out += ["", "Failed images:", ""] + [f"- {f}" for f in m["failed"]]
    return "\n".join(out) + "\n"


def plots(scores: Sequence[ImageScore], m: dict[str, Any], outdir: Path) -> list[str]:
    """Per-point error, detection per level, endplate-angle error and Bland–Altman plots (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..fsio import atomic_path

    written: list[str] = []

    def save(fig: Any, name: str) -> None:
        with atomic_path(outdir / name) as tmp:
            fig.savefig(tmp, format="png", dpi=100)
        plt.close(fig)
        written.append(name)

    use_mm = any(s.point_mm for s in scores)
    data = [_per_point(scores, n, use_mm) for n in POINT_NAMES]
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.boxplot([d or [np.nan] for d in data], showfliers=False)
    ax.set_xticks(range(1, len(POINT_NAMES) + 1), [n.replace("_", "\n") for n in POINT_NAMES], fontsize=7)
    ax.set_ylabel("error (mm)" if use_mm else "error (px)")
    ax.set_title("landmark error per point")
    save(fig, "point_error.png")
    levels = [lv for lv, v in m["detection_rate_per_level"].items() if v is not None]
    fig, ax = plt.subplots(figsize=(8, 3.5))
    ax.bar(levels, [100 * m["detection_rate_per_level"][lv] for lv in levels])
    ax.set_ylim(0, 100)
    ax.set_ylabel("found at the right level (%)")
    ax.set_title("detection per level")
    save(fig, "detection_per_level.png")
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.hist(_cat(scores, lambda s: s.angle_deg) or [0.0], bins=30)
    ax.set_xlabel("endplate angle error (°)")
    ax.set_title("endplate angle error")
    save(fig, "endplate_angle_error.png")
    for key in PARAMS:
        pairs = np.array([s.params[key] for s in scores if key in s.params], float).reshape(-1, 2)
        if len(pairs) < 2:
            continue
        mean, diff = pairs.mean(axis=1), pairs[:, 1] - pairs[:, 0]
        bias, sd = float(diff.mean()), float(diff.std(ddof=1))
        fig, axes = plt.subplots(1, 2, figsize=(9, 4))
        axes[0].scatter(pairs[:, 0], pairs[:, 1], s=10)
        lo, hi = float(pairs.min()), float(pairs.max())
        axes[0].plot([lo, hi], [lo, hi], "k--", lw=0.8)
        axes[0].set_xlabel("annotated")
        axes[0].set_ylabel("model")
        axes[1].scatter(mean, diff, s=10)
        for y, style in ((bias, "-"), (bias + 1.96 * sd, "--"), (bias - 1.96 * sd, "--")):
            axes[1].axhline(y, color="k", ls=style, lw=0.8)
        axes[1].set_xlabel("mean of annotated and model")
        axes[1].set_ylabel("model − annotated")
        fig.suptitle(f"{key}: Bland–Altman (bias {bias:.2f}, limits ±{1.96 * sd:.2f})")
        save(fig, f"bland_altman_{key}.png")
    return written


# ----------------------------------------------------------------------------------- driver
def load_pairs(images: Sequence[str | Path], annotations: str | Path, fmt: str) -> tuple[list[tuple[Path, Annotation]],
                                                                                        list[str]]:
    """Read the annotations and pair them with the image files; the messages list what was skipped."""
    return pair(image_files(images), read_annotations(annotations, fmt))


def analyse_pairs(analyzer: Any, pairs: Sequence[tuple[Path, Annotation]], spacing: tuple[float, float] | None,
                  chunk: int = 16) -> list[tuple[Annotation, Any, tuple[float, float] | None] | str]:
    """Run the model over every paired image: per pair ``(annotation, Analysis, spacing)`` or a
    message naming the file and the reason it failed (the run goes on)."""
    from ..api import unit_of
    from ..batch.units import Failure

    out: list[tuple[Annotation, Any, tuple[float, float] | None] | str] = []
    for start in range(0, len(pairs), chunk):
        units: list[Any] = []
        sp_used: list[tuple[float, float] | None] = []
        for path, ann in pairs[start:start + chunk]:
            sp = spacing or ann.spacing_mm
            try:
                src = read_raster(path) if path.suffix.lower() in RASTER_SUFFIXES else path
                units.append(unit_of(src, sp))
            except SagittalError as exc:
                units.append(f"{path}: {exc}")
            sp_used.append(sp)
        todo = [u for u in units if not isinstance(u, str)]
        results = iter(analyzer.analyze_many(todo)) if todo else iter([])
        for (path, ann), u, sp in zip(pairs[start:start + chunk], units, sp_used, strict=True):
            if isinstance(u, str):
                out.append(u)
                continue
            r = next(results)
            if isinstance(r, Failure):
                out.append(f"{path}: {r.stage}: {r.reason}")
                continue
            if sp is None and r.image.get("pixel_spacing_mm"):
                sp = (float(r.image["pixel_spacing_mm"][0]), float(r.image["pixel_spacing_mm"][1]))
            out.append((ann, r, sp))
    return out


def evaluate(images: Sequence[str | Path], annotations: str | Path, fmt: str, outdir: str | Path, *,
             spacing: tuple[float, float] | None = None, weights: str | None = None, device: str = "cpu",
             n_boot: int = BOOTSTRAP, make_plots: bool = True, analyzer: Any = None,
             log: Callable[[str], None] = print) -> dict[str, Any]:
    """Evaluate the model on annotated radiographs; writes ``metrics.json``, ``metrics.md`` and
    plots into ``outdir`` and returns the metrics."""
    from ..api import Analyzer
    from ..fsio import atomic_write_text

    pairs, problems = load_pairs(images, annotations, fmt)
    for p in problems:
        log(p)
    if not pairs:
        raise InputError("no image could be paired with an annotation (pairing is by file name or stem)")
    analyzer = analyzer or Analyzer(device=device, weights=weights).load()
    scores, failed = [], []
    for item in analyse_pairs(analyzer, pairs, spacing):
        if isinstance(item, str):
            log(item)
            failed.append(item)
        else:
            scores.append(score_image(*item))
    m = metrics(scores, failed, n_boot)
    m["weights"] = str(getattr(analyzer.detector, "weights", weights))
    m["format"] = fmt
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    if make_plots and scores:
        try:
            m["plots"] = plots(scores, m, out)
        except ImportError:
            log("matplotlib is not installed: no plots (pip install 'sagittal[train]')")
    atomic_write_text(out / "metrics.json", json.dumps(m, indent=1))
    atomic_write_text(out / "metrics.md", markdown(m))
    return m
