#!/usr/bin/env python3
"""Evaluate the landmark model on fresh phantom radiographs it never saw in training.

    .venv/bin/python scripts/eval_landmarks.py [--n 200] [--first-seed 1000000] [--weights models/landmarks.pt]

Renders ``--n`` randomised radiographs (seeds from 1,000,000 up; training used 0 … n-train-1),
runs the full inference path on the rendered pixels, and reports: landmark error per point
(mm, at the true spacing), detection rate per level (found with the right level, centroid
within 5 mm), parameter mean absolute errors, Genant agreement, fracture sensitivity and
false positives, and the fraction of images analysed (ok or partial).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from sagittal.landmarks.data import bone_bright
from sagittal.landmarks.infer import LandmarkDetector
from sagittal.levels import LEVELS, POINT_NAMES
from sagittal.phantom import build_spine, render_radiograph, sample_spec
from sagittal.phantom.truth import radiograph_truth
from sagittal.report.analysis import analysis_document

PARAMS = ("pelvic_incidence_deg", "pelvic_tilt_deg", "sacral_slope_deg", "lumbar_lordosis_deg",
          "thoracic_kyphosis_deg", "sagittal_vertical_axis_mm")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--first-seed", type=int, default=1_000_000)
    ap.add_argument("--weights")
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args()
    det = LandmarkDetector(args.weights, device="cpu")
    point_err = {k: [] for k in POINT_NAMES}
    found = {lv: [0, 0] for lv in LEVELS}
    perr = {k: [] for k in PARAMS + ("regional_kyphosis_deg",)}
    grade_pairs, analysed, t_infer = [], 0, 0.0
    for k in range(args.n):
        rng = np.random.default_rng([args.first_seed + k])
        spine = build_spine(sample_spec(rng))
        rg = render_radiograph(spine, rng, pixel_spacing_mm=float(rng.uniform(0.3, 0.6)))
        truth = radiograph_truth(spine, rg)
        t = time.perf_counter()
        (lm, facing, warnings), = det.detect([bone_bright(rg)])
        t_infer += time.perf_counter() - t
        image = dict(truth["image"], pixel_spacing_mm=list(rg.spacing_mm), spacing_source="supplied",
                     anterior=facing or rg.facing)
        doc = analysis_document(image, lm)
        analysed += doc["status"] in ("ok", "partial")
        sp = np.array([rg.spacing_mm[1], rg.spacing_mm[0]])
        for lv, tp in truth["landmarks"]["vertebrae"].items():
            found[lv][1] += 1
            pp = lm["vertebrae"].get(lv)
            if pp is None:
                continue
            tc = np.mean([tp[n] for n in POINT_NAMES[:4]], axis=0)
            pc = np.mean([pp[n] for n in POINT_NAMES[:4]], axis=0)
            if np.linalg.norm((tc - pc) * sp) > 5.0:
                continue
            found[lv][0] += 1
            for n in POINT_NAMES:
                point_err[n].append(float(np.linalg.norm((np.array(pp[n]) - tp[n]) * sp)))
        for key in PARAMS:
            tv, pv = truth["parameters"][key], doc["parameters"].get(key)
            needs = {"thoracic_kyphosis_deg": ("T4", "T12"), "sagittal_vertical_axis_mm": ("C7",)}.get(key, ())
            in_view = all(x in truth["landmarks"]["vertebrae"] for x in needs) and truth["landmarks"]["s1_endplate"]
            if key in ("pelvic_incidence_deg", "pelvic_tilt_deg") and len(truth["landmarks"]["femoral_heads"]) == 0:
                in_view = False
            if in_view and pv is not None:
                perr[key].append(abs(pv - tv))
        tv_by = {v["level"]: v for v in truth["vertebrae"] if v["in_view"]}
        for v in doc["vertebrae"]:
            if v["level"] in tv_by and v["genant_grade"] is not None:
                grade_pairs.append((tv_by[v["level"]]["genant_grade"], v["genant_grade"]))
    all_err = np.concatenate([np.array(v) for v in point_err.values()]) if point_err["anterior_superior"] else np.array([np.nan])
    g = np.array(grade_pairs) if grade_pairs else np.zeros((0, 2), int)
    fx, nm = g[:, 0] > 0, g[:, 0] == 0
    total_found = sum(f for f, _ in found.values())
    total = sum(n for _, n in found.values())
    report = {
        "images": args.n, "first_seed": args.first_seed, "weights": str(det.weights),
        "analysed_fraction": analysed / args.n,
        "landmark_error_mm": {"median": float(np.median(all_err)), "mean": float(np.mean(all_err)),
                              "p90": float(np.percentile(all_err, 90)),
                              "per_point_median": {k: float(np.median(v)) if v else None for k, v in point_err.items()}},
        "detection_rate": total_found / max(total, 1),
        "detection_rate_per_level": {lv: (f / n if n else None) for lv, (f, n) in found.items()},
        "parameter_mae": {k: (float(np.mean(v)) if v else None) for k, v in perr.items() if k != "regional_kyphosis_deg"},
        "parameter_n": {k: len(v) for k, v in perr.items() if k != "regional_kyphosis_deg"},
        "genant_exact_fractured": float(np.mean(g[fx, 1] == g[fx, 0])) if fx.any() else None,
        "genant_zero_normal": float(np.mean(g[nm, 1] == 0)) if nm.any() else None,
        "fracture_sensitivity": float(np.mean(g[fx, 1] > 0)) if fx.any() else None,
        "fracture_false_positive_rate": float(np.mean(g[nm, 1] > 0)) if nm.any() else None,
        "fractured_vertebrae": int(fx.sum()), "normal_vertebrae": int(nm.sum()),
        "inference_s_per_image": t_infer / args.n,
    }
    print(json.dumps(report, indent=1))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(report, fh, indent=1)


if __name__ == "__main__":
    main()
