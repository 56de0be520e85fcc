#!/usr/bin/env python3
"""Evaluate landmark weights on fresh phantom radiographs they never saw, per renderer family.

    .venv/bin/python scripts/eval_landmarks.py --families 2d,drr-a,drr-b --n 60 \\
        --weights new=src/sagittal/weights/landmarks.pt --weights old=/tmp/landmarks_old.pt --json eval.json

For each renderer family (``2d``: the constructive 2-D renderer; ``drr-a`` / ``drr-b``: projection
styles through a 3-D volume, ``phantom.drr``) it renders ``--n`` radiographs from numpy's
single-integer seeds ``first-seed …`` (the training streams in ``sagittal.training.data`` use
two- and three-element seeds, so no evaluation image was trained on) at 0.3–0.6 mm, runs the
whole inference path on the rendered pixels without telling it which way the patient faces, and
reports for every weights file on the same images: the fraction of radiographs analysed (ok or
partial), vertebrae in view found with the right level (centroid within 5 mm; also over the
images with the S1 endplate in view, where levels can be counted), wrong levels
(labelled bodies off their true level by more than 5 mm), bodies reported although the field cuts them
(at their true level, so not a wrong level), landmark error per point (mm),
parameter mean absolute errors (PI, PT, SS, LL, TK, SVA; regional kyphosis over every vertebra
measured; also "paired", over the images that every weights measured, since a model that measures
more images takes harder ones into its plain MAE), Genant agreement, fracture sensitivity, false
positives per normal vertebra, and the signed height-loss bias (a body's loss minus the loss the
same measurement gives on its true points, so the grading method itself is not in it) and the
fractured bodies graded 0, by true grade.
``--fractured P`` draws 1–3 fractures in that share of the spines (else the phantom's own rate)
so that fracture figures rest on enough fractured bodies. ``--shift`` adds, on top of every
family, a look no training image had (8-bit, JPEG, resampling, CLAHE).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from sagittal.landmarks.infer import LandmarkDetector
from sagittal.levels import LEVEL_INDEX, LEVELS, POINT_NAMES, UNGRADED
from sagittal.phantom import build_spine
from sagittal.phantom.drr import long_film_field, tight_lumbar_field
from sagittal.phantom.truth import landmarks as truth_landmarks
from sagittal.phantom.truth import vertebrae as truth_vertebrae
from sagittal.report.analysis import analysis_document
from sagittal.training.data import FAMILIES, View, as_view, render_family, sample_family_spec

PARAMS = ("pelvic_incidence_deg", "pelvic_tilt_deg", "sacral_slope_deg", "lumbar_lordosis_deg",
          "thoracic_kyphosis_deg", "sagittal_vertical_axis_mm")
NEEDS = {"thoracic_kyphosis_deg": ("T4", "T12"), "sagittal_vertical_axis_mm": ("C7",), "lumbar_lordosis_deg": ("L1",)}
LEVEL_TOLERANCE_MM = 5.0
#: the range each film's pixel spacing is drawn from (``--pixel-mm``); real DX/CR films are finer, 0.1-0.2 mm
PIXEL_MM = (0.3, 0.6)


def shifted_look(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """An unseen look: 8 bits, JPEG at quality 40–80, resampled by 0.5–0.8 and back, CLAHE."""
    lo, hi = np.percentile(img, (0.5, 99.5))
    u8 = np.clip((img - lo) / max(hi - lo, 1e-6) * 255, 0, 255).astype(np.uint8)
    h, w = u8.shape
    f = rng.uniform(0.5, 0.8)
    u8 = cv2.resize(cv2.resize(u8, (int(w * f), int(h * f)), interpolation=cv2.INTER_AREA), (w, h))
    _, buf = cv2.imencode(".jpg", u8, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(40, 81))])
    u8 = cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE)
    tiles = int(rng.integers(4, 12))
    return cv2.createCLAHE(clipLimit=float(rng.uniform(1.5, 4.0)), tileGridSize=(tiles, tiles)).apply(u8)


def regional_truth_deg(spine: Any) -> dict[str, float]:
    """Regional kyphosis by construction: superior endplate above to inferior endplate below
    (L5: to S1), kyphosis positive (``phantom.anatomy`` conventions)."""
    phi = spine.phi_rad
    out = {}
    for i in range(1, len(LEVELS)):
        below = -np.radians(spine.parameters["sacral_slope_deg"]) if i == len(LEVELS) - 1 else phi[i + 1, 1]
        out[LEVELS[i]] = float(np.degrees(below - phi[i - 1, 0]))
    return out


def render_case(family: str, seed: int, fractured: float, shift: bool, framing: str = "as-drawn",
                pixel_mm: tuple[float, float] = PIXEL_MM) -> tuple[Any, View, dict]:
    """One evaluation radiograph: (spine, view, truth) from single-integer ``seed``; ``framing``
    ``tight-lumbar`` / ``long-film`` frames the same spine and style as a tightly collimated lumbar
    film / a longer whole-spine film (``phantom.drr.tight_lumbar_field`` / ``long_film_field``,
    drawn from the seed ``[seed, 7]``); ``pixel_mm``: the range the pixel spacing is drawn from
    (the same draws: another range gives the same spine, style and field at other pixels)."""
    rng = np.random.default_rng([seed])
    n_fx = int(rng.integers(1, 4)) if fractured and rng.random() < fractured else None
    spine = build_spine(sample_family_spec(family, rng, n_fx))
    style: dict[str, Any] = {"pixel_spacing_mm": float(rng.uniform(*pixel_mm))}
    if framing != "as-drawn":
        if family == "2d":
            raise ValueError(f"--framing {framing} needs a projection family (drr-a, drr-b): the 2-D renderer "
                             "draws its own fields")
        frame, kind = (tight_lumbar_field, "lumbar") if framing == "tight-lumbar" else (long_film_field, "whole")
        # the field's kind sets the source distance, stitching seams and the header's field of view
        style.update(field_mm=frame(spine, np.random.default_rng([seed, 7])), field=kind)
    view = as_view(render_family(family, spine, rng, **style))
    if shift:
        view = replace(view, pixels=shifted_look(view.pixels, rng).astype(np.float32))
    truth = {"landmarks": truth_landmarks(spine, view.to_px, view.in_view, view.s1_in_view, view.femoral_in_view,
                                          radius_scale=1.0 / view.spacing_mm[1]),
             "parameters": {k: float(v) for k, v in spine.parameters.items()},
             "vertebrae": truth_vertebrae(spine, view.in_view)}
    return spine, view, truth


class Tally:
    """Accumulates one (weights, family) cell of the table."""

    def __init__(self) -> None:
        self.point_err: dict[str, list[float]] = {k: [] for k in POINT_NAMES}
        self.found = {lv: [0, 0] for lv in LEVELS}
        self.found_anchored = [0, 0]  # over images with the S1 endplate in view (levels can be counted)
        self.found_fractured = [0, 0]  # over the fractured vertebrae in view (a withheld fracture is a missed one)
        self.perr: dict[str, list[float]] = {k: [] for k in (*PARAMS, "regional_kyphosis_deg")}
        #: per parameter, image number → error: for the paired figures (images every weights measured)
        self.perr_by_image: dict[str, dict[int, float]] = {k: {} for k in PARAMS}
        self.grades: list[tuple[int, int]] = []
        #: per graded body: (true grade, its height loss minus the loss the same measurement gives on the true points)
        self.loss_err: list[tuple[int, float]] = []
        self.statuses: list[str] = []
        self.wrong_level = 0
        self.cut_reported = 0  # the right level, but a body the truth has cut by the field (not wholly in view)
        self.cut_false_fractures = 0  # ... of them graded fractured though not (a false fracture the in-view figures miss)
        self.found_ungraded = 0  # of the found ones (right level), those reported ungraded (``levels.UNGRADED``)
        self.seconds = 0.0

    def add(self, spine: Any, view: View, truth: dict, lm: dict, facing: str | None) -> None:
        image = {"rows": int(view.pixels.shape[0]), "columns": int(view.pixels.shape[1]),
                 "pixel_spacing_mm": list(view.spacing_mm), "spacing_source": "supplied",
                 "anterior": facing or view.facing}
        doc = analysis_document(image, lm)
        graded = {v["level"]: v["genant_grade"] for v in doc["vertebrae"]}
        self.statuses.append(doc["status"] if (lm["vertebrae"] or lm["s1_endplate"]) else "rejected")
        sp = np.array([view.spacing_mm[1], view.spacing_mm[0]])
        tv = truth["landmarks"]["vertebrae"]
        anchored = truth["landmarks"]["s1_endplate"] is not None
        for lv in tv:
            self.found[lv][1] += 1
        self.found_anchored[1] += len(tv) if anchored else 0
        self.found_fractured[1] += sum(int(spine.grade[LEVEL_INDEX[lv]]) > 0 for lv in tv)
        right: set[str] = set()  # levels reported at their true place (the bias compares only those)
        for lv, pp in lm["vertebrae"].items():
            tp = tv.get(lv)
            pc = np.mean([pp[n] for n in POINT_NAMES[:4]], axis=0)
            if tp is None and np.linalg.norm((view.to_px(spine.points_mm[LEVEL_INDEX[lv]])[:4].mean(axis=0) - pc) * sp) \
                    <= LEVEL_TOLERANCE_MM:
                self.cut_reported += 1
                self.cut_false_fractures += (graded.get(lv) or 0) > 0 and int(spine.grade[LEVEL_INDEX[lv]]) == 0
                continue
            if tp is None or np.linalg.norm((np.mean([tp[n] for n in POINT_NAMES[:4]], axis=0) - pc) * sp) > LEVEL_TOLERANCE_MM:
                self.wrong_level += 1
                continue
            self.found[lv][0] += 1
            right.add(lv)
            self.found_anchored[0] += anchored
            self.found_fractured[0] += int(spine.grade[LEVEL_INDEX[lv]]) > 0
            self.found_ungraded += lv in (lm.get(UNGRADED) or {})
            for n in POINT_NAMES:
                self.point_err[n].append(float(np.linalg.norm((np.array(pp[n]) - tp[n]) * sp)))
        self._parameters(doc, truth, len(self.statuses) - 1)
        rk = regional_truth_deg(spine)
        tv_by = {v["level"]: v for v in truth["vertebrae"] if v["in_view"]}
        on_truth = {v["level"]: v["height_loss_pct"] for v in analysis_document(image, truth["landmarks"])["vertebrae"]}
        for v in doc["vertebrae"]:
            if v["level"] in tv_by and v["genant_grade"] is not None:
                self.grades.append((tv_by[v["level"]]["genant_grade"], v["genant_grade"]))
                if v["level"] in right and on_truth.get(v["level"]) is not None:
                    self.loss_err.append((tv_by[v["level"]]["genant_grade"], v["height_loss_pct"] - on_truth[v["level"]]))
            if v.get("regional_kyphosis_deg") is not None and v["level"] in rk:
                i = LEVEL_INDEX[v["level"]]
                if (i == len(LEVELS) - 1 or LEVELS[i + 1] in tv) and LEVELS[i - 1] in tv:
                    self.perr["regional_kyphosis_deg"].append(abs(v["regional_kyphosis_deg"] - rk[v["level"]]))

    def _parameters(self, doc: dict, truth: dict, image: int) -> None:
        tl = truth["landmarks"]
        s1_in, heads_in = tl["s1_endplate"] is not None, len(tl["femoral_heads"]) > 0
        for key in PARAMS:
            pv = doc["parameters"].get(key)
            if key == "thoracic_kyphosis_deg":
                in_view = all(x in tl["vertebrae"] for x in NEEDS[key])
            else:
                in_view = all(x in tl["vertebrae"] for x in NEEDS.get(key, ())) and s1_in and (
                    heads_in or key not in ("pelvic_incidence_deg", "pelvic_tilt_deg"))
            if in_view and pv is not None:
                self.perr[key].append(abs(pv - truth["parameters"][key]))
                self.perr_by_image[key][image] = abs(pv - truth["parameters"][key])

    def report(self) -> dict:
        errs = [e for v in self.point_err.values() for e in v]
        g = np.array(self.grades, int).reshape(-1, 2)
        fx, nm = g[:, 0] > 0, g[:, 0] == 0
        le = np.array(self.loss_err, float).reshape(-1, 2)
        found, total = sum(f for f, _ in self.found.values()), sum(n for _, n in self.found.values())

        def mean(v: list[float]) -> float | None:
            return round(float(np.mean(v)), 4) if v else None

        return {
            "images": len(self.statuses),
            "analysed_fraction": float(np.mean([s in ("ok", "partial") for s in self.statuses])),
            "status_counts": {s: self.statuses.count(s) for s in ("ok", "partial", "rejected")},
            "detection_rate": found / max(total, 1), "vertebrae_in_view": total,
            "detection_rate_s1_in_view": self.found_anchored[0] / max(self.found_anchored[1], 1),
            "vertebrae_in_view_s1_in_view": self.found_anchored[1],
            "detection_rate_fractured": self.found_fractured[0] / max(self.found_fractured[1], 1),
            "vertebrae_in_view_fractured": self.found_fractured[1],
            "wrong_levels": self.wrong_level, "cut_bodies_reported": self.cut_reported,
            "cut_bodies_false_fractures": self.cut_false_fractures,
            "found_ungraded": self.found_ungraded,
            "detection_rate_per_level": {lv: (round(f / n, 4) if n else None) for lv, (f, n) in self.found.items()},
            "landmark_error_mm": {"median": float(np.median(errs)) if errs else None,
                                  "p90": float(np.percentile(errs, 90)) if errs else None,
                                  "per_point_median": {k: (round(float(np.median(v)), 4) if v else None)
                                                       for k, v in self.point_err.items()}},
            "parameter_mae": {k: mean(v) for k, v in self.perr.items()},
            "parameter_n": {k: len(v) for k, v in self.perr.items()},
            "fracture_sensitivity": float(np.mean(g[fx, 1] > 0)) if fx.any() else None,
            "genant_exact_fractured": float(np.mean(g[fx, 1] == g[fx, 0])) if fx.any() else None,
            "fracture_false_positive_rate": float(np.mean(g[nm, 1] > 0)) if nm.any() else None,
            "fractured_vertebrae_graded": int(fx.sum()), "normal_vertebrae_graded": int(nm.sum()),
            # the fractured bodies graded 0 (missed), by their true grade
            "fractures_missed_by_true_grade": {str(k): int(((g[:, 0] == k) & (g[:, 1] == 0)).sum()) for k in (1, 2, 3)},
            # signed: the body's height loss minus the loss measured the same way on its true points
            # (percentage points; negative = fractures read milder than drawn)
            "height_loss_bias_pct": {"fractured": mean(list(le[le[:, 0] > 0, 1])),
                                     "normal": mean(list(le[le[:, 0] == 0, 1]))},
            "inference_s_per_image": self.seconds / max(len(self.statuses), 1),
        }


def paired(results: dict, cells: dict[str, Tally], family: str) -> None:
    """Add to each weights' figures of ``family`` the parameter MAE over the images that every
    weights measured (``parameter_mae_paired``, ``parameter_n_paired``): a model that measures
    more images takes harder ones into its plain MAE, so only the paired figures compare."""
    for key in PARAMS:
        common = set.intersection(*(set(t.perr_by_image[key]) for t in cells.values()))
        for label, t in cells.items():
            r = results[label][family]
            r.setdefault("parameter_mae_paired", {})[key] = (
                round(float(np.mean([t.perr_by_image[key][i] for i in common])), 4) if common else None)
            r.setdefault("parameter_n_paired", {})[key] = len(common)


def table(results: dict) -> str:
    """A Markdown table: one row per figure, one column per (weights, family)."""
    cols = [(w, f) for w in results for f in results[w]]
    rows = [
        ("radiographs analysed", lambda r: f"{100 * r['analysed_fraction']:.1f} %"),
        ("vertebrae in view found, right level", lambda r: f"{100 * r['detection_rate']:.1f} %"),
        ("… of those in images with S1 in view", lambda r: f"{100 * r['detection_rate_s1_in_view']:.1f} % "
                                                        f"(of {r['vertebrae_in_view_s1_in_view']})"),
        ("… of the fractured ones", lambda r: f"{100 * r['detection_rate_fractured']:.1f} % "
                                            f"(of {r['vertebrae_in_view_fractured']})"),
        ("… of those reported ungraded (placed again, or crushed between)", lambda r: str(r.get("found_ungraded", 0))),
        ("wrong levels", lambda r: str(r["wrong_levels"])),
        ("bodies cut by the field reported (right level)", lambda r: str(r["cut_bodies_reported"])),
        ("… of them graded fractured though not (false fractures)", lambda r: str(r["cut_bodies_false_fractures"])),
        ("landmark error median", lambda r: _f(r["landmark_error_mm"]["median"], " mm", 2)),
        *[(f"{k.replace('_deg', '').replace('_mm', '')} MAE", _mae(k)) for k in (*PARAMS, "regional_kyphosis_deg")],
        *[(f"{k.replace('_deg', '').replace('_mm', '')} MAE, paired", _mae_paired(k)) for k in PARAMS],
        ("fracture sensitivity", lambda r: _pct(r["fracture_sensitivity"], r["fractured_vertebrae_graded"])),
        ("exact Genant grade (fractured)", lambda r: _pct(r["genant_exact_fractured"], r["fractured_vertebrae_graded"])),
        ("false positives (normal)", lambda r: _pct(r["fracture_false_positive_rate"], r["normal_vertebrae_graded"])),
        ("height loss bias, fractured / normal (points)",
         lambda r: " / ".join(_f(r["height_loss_bias_pct"][k], "", 2) for k in ("fractured", "normal"))),
    ]
    out = ["| figure | " + " | ".join(f"{w} / {f}" for w, f in cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for name, fmt in rows:
        out.append(f"| {name} | " + " | ".join(fmt(results[w][f]) for w, f in cols) + " |")
    return "\n".join(out)


def _mae_paired(key: str) -> Any:
    unit = " mm" if key.endswith("_mm") else "°"
    return lambda r: (f"{_f(r['parameter_mae_paired'][key], unit, 2)} ({r['parameter_n_paired'][key]})"
                      if r.get("parameter_mae_paired") else "–")


def _mae(key: str) -> Any:
    return lambda r: _f(r["parameter_mae"][key], " mm" if key.endswith("_mm") else "°", 2)


def _f(v: float | None, unit: str, nd: int) -> str:
    return "–" if v is None else f"{v:.{nd}f}{unit}"


def _pct(v: float | None, n: int) -> str:
    return "–" if v is None else f"{100 * v:.1f} % (of {n})"


#: ``--weights PATH@suffix``: the detector's switches (``_detector``)
SUFFIXES = ("plain", "no-zoom-out", "no-zoom-in", "no-placed-step", "no-off-s1", "no-crushed-between", "no-smoothed",
            "no-hips-place", "no-facing-check")


def _detector(spec: str | None, no_consistency: bool) -> LandmarkDetector:
    """``PATH[@SUFFIX]…`` (``SUFFIXES``; ``None``: the packaged
    weights) → its detector."""
    path, flags = spec or "", set()
    while (end := path.rsplit("@", 1)) and len(end) == 2 and end[1] in SUFFIXES:
        path, flags = end[0], flags | {end[1]}
    if path and "@" in path and not Path(path).is_file():
        raise SystemExit(f"--weights {spec}: no such file, and @{path.rsplit('@', 1)[1]} is not a suffix "
                         f"(expected one of {', '.join('@' + x for x in SUFFIXES)})")
    det = LandmarkDetector(path or None, device="cpu", consistency=not (no_consistency or "plain" in flags))
    det.zoom_out_look = "no-zoom-out" not in flags
    det.zoom_in_look = "no-zoom-in" not in flags
    det.placed_step_rule = "no-placed-step" not in flags
    det.off_s1_rule = "no-off-s1" not in flags
    det.crushed_between_rule = "no-crushed-between" not in flags
    det.smoothed_look = "no-smoothed" not in flags
    det.hips_place_rule = "no-hips-place" not in flags
    det.facing_check = "no-facing-check" not in flags
    return det


#: the detector's switches the evaluation records (each arm's JSON says what ran)
SWITCHES = ("consistency", "zoom_out_look", "zoom_in_look", "placed_step_rule", "off_s1_rule",
            "crushed_between_rule", "smoothed_look", "hips_place_rule", "facing_check")


def _switches(det: LandmarkDetector) -> dict[str, bool]:
    return {name: bool(getattr(det, name)) for name in SWITCHES}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--families", default="2d", help=f"comma-separated, of {', '.join(FAMILIES)}")
    ap.add_argument("--n", type=int, default=60, help="radiographs per family")
    ap.add_argument("--first-seed", type=int, default=1_000_000)
    ap.add_argument("--fractured", type=float, default=0.5, help="share of spines drawn with 1–3 fractures")
    ap.add_argument("--weights", action="append", default=[],
                    metavar="[LABEL=]PATH[@plain][@no-zoom-out][@no-zoom-in][@no-placed-step][@no-off-s1][@no-crushed-between][@no-smoothed][@no-hips-place][@no-facing-check]",
                    help="weights to score (repeatable; default the packaged weights); @plain: without the "
                         "test-time consistency check; @no-zoom-out: without the shrunk second look "
                         "(LandmarkDetector.zoom_out_look); @no-zoom-in: without the look magnified about the spine "
                         "(LandmarkDetector.zoom_in_look); @no-placed-step: without the step check over bodies withheld "
                         "for their points (LandmarkDetector.placed_step_rule); @no-off-s1: without withholding the levels where "
                         "the lowest body stands off S1 for its level (LandmarkDetector.off_s1_rule); @no-crushed-between: "
                         "without reporting, ungraded, a collapsed-looking body 4-10 %% unsteady between reported "
                         "neighbours (LandmarkDetector.crushed_between_rule); @no-smoothed: without reading a film again "
                         "smoothed where the fine placement lost most levels (LandmarkDetector.smoothed_look); @no-hips-place: "
                         "without setting aside femoral heads found where no hip lies against the S1 endplate "
                         "(LandmarkDetector.hips_place_rule); @no-facing-check: without reading again the other way round "
                         "a film whose S1 endplate read upside down (LandmarkDetector.facing_check)")
    ap.add_argument("--no-consistency", action="store_true", help="skip the test-time consistency check")
    ap.add_argument("--shift", action="store_true", help="an unseen look on top of every family's")
    ap.add_argument("--framing", choices=("as-drawn", "tight-lumbar", "long-film"), default="as-drawn",
                    help="tight-lumbar: every film reframed as a tightly collimated lumbar film; long-film: as a "
                         "whole-spine film 120 mm longer at each end (projection families)")
    ap.add_argument("--pixel-mm", type=float, nargs=2, default=PIXEL_MM, metavar=("LO", "HI"),
                    help="the range each film's pixel spacing is drawn from (default 0.3 0.6 mm; real films are "
                         "0.1-0.2 mm); the same spines, styles and fields at other pixels")
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args(argv)
    lo, hi = args.pixel_mm
    if not 0 < lo <= hi:
        ap.error(f"--pixel-mm {lo:g} {hi:g}: a range of pixel spacings, 0 < LO <= HI (mm)")
    families = [f.strip() for f in args.families.split(",") if f.strip()]
    if args.framing != "as-drawn" and "2d" in families:
        ap.error(f"--framing {args.framing} needs projection families (drr-a, drr-b): the 2-D renderer draws its own fields")
    specs = [w.split("=", 1) if "=" in w else [w, w] for w in args.weights] or [["packaged", None]]
    detectors = {label: _detector(path, args.no_consistency) for label, path in specs}
    tallies = {label: {f: Tally() for f in families} for label in detectors}
    for family in families:
        for k in range(args.n):
            spine, view, truth = render_case(family, args.first_seed + k, args.fractured, args.shift, args.framing,
                                             (lo, hi))
            for label, det in detectors.items():
                t = time.perf_counter()
                ((lm, facing, _),) = det.detect([view.pixels])
                tallies[label][family].seconds += time.perf_counter() - t
                tallies[label][family].add(spine, view, truth, lm, facing)
    results = {label: {f: t.report() for f, t in per.items()} for label, per in tallies.items()}
    for family in families:
        paired(results, {label: tallies[label][family] for label in tallies}, family)
    report = {"n_per_family": args.n, "first_seed": args.first_seed, "fractured": args.fractured, "shift": args.shift,
              "framing": args.framing, "pixel_mm": [lo, hi],
              "consistency": not args.no_consistency,
              "weights": {label: {"file": str(det.weights), "switches": _switches(det)}
                          for label, det in detectors.items()}, "results": results}
    print(json.dumps(report, indent=1))
    print(table(results))
    if args.json:
        from sagittal.fsio import atomic_write_text

        atomic_write_text(args.json, json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
