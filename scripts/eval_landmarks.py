#!/usr/bin/env python3
"""Evaluate the landmark model on fresh phantom radiographs it never saw in training.

    .venv/bin/python scripts/eval_landmarks.py [--n 200] [--first-seed 1000000] [--weights models/landmarks.pt]
                                               [--shift] [--json FILE]

Renders ``--n`` randomised radiographs (seeds ``first-seed …`` of numpy's single-integer seed
stream, disjoint from the two training streams of ``landmarks.data``) at 0.3–0.6 mm, runs the
full inference path on the rendered pixels without telling it which way the patient faces, and
reports: landmark error per point (mm, at the true spacing), detection rate per level (found
with the right level, centroid within 5 mm), parameter mean absolute errors (regional kyphosis
over every vertebra measured), Genant agreement, fracture sensitivity and false positives, and
the fraction of images analysed (ok or partial).

``--shift`` applies a look the training never had, on top of the renderer's: 8-bit
quantisation, lossy JPEG, a down-and-up resampling and local contrast equalisation (CLAHE) — a
rough stand-in for an independent generator or another vendor's processing.
"""

from __future__ import annotations

import argparse
import json
import time

import cv2
import numpy as np
from sagittal.training.data import bone_bright

from sagittal.landmarks.infer import LandmarkDetector
from sagittal.levels import LEVEL_INDEX, LEVELS, POINT_NAMES
from sagittal.phantom import build_spine, render_radiograph, sample_spec
from sagittal.phantom.truth import radiograph_truth
from sagittal.report.analysis import analysis_document

PARAMS = ("pelvic_incidence_deg", "pelvic_tilt_deg", "sacral_slope_deg", "lumbar_lordosis_deg",
          "thoracic_kyphosis_deg", "sagittal_vertical_axis_mm")
NEEDS = {"thoracic_kyphosis_deg": ("T4", "T12"), "sagittal_vertical_axis_mm": ("C7",), "lumbar_lordosis_deg": ("L1",)}


def shifted_look(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """An unseen look: 8 bits, JPEG at quality 40–80, resampled by 0.5–0.8 and back, CLAHE."""
    lo, hi = np.percentile(img, (0.5, 99.5))
    u8 = np.clip((img - lo) / max(hi - lo, 1e-6) * 255, 0, 255).astype(np.uint8)
    h, w = u8.shape
    f = rng.uniform(0.5, 0.8)
    u8 = cv2.resize(cv2.resize(u8, (int(w * f), int(h * f)), interpolation=cv2.INTER_AREA), (w, h))
    ok, buf = cv2.imencode(".jpg", u8, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(40, 81))])
    u8 = cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE)
    tiles = int(rng.integers(4, 12))
    return cv2.createCLAHE(clipLimit=float(rng.uniform(1.5, 4.0)), tileGridSize=(tiles, tiles)).apply(u8)


def regional_truth_deg(spine) -> dict[str, float]:
    """Regional kyphosis by construction: superior endplate above to inferior endplate below
    (L5: to S1), kyphosis positive (``phantom.anatomy`` conventions)."""
    phi = spine.phi_rad
    out = {}
    for i in range(1, len(LEVELS)):
        below = -np.radians(spine.parameters["sacral_slope_deg"]) if i == len(LEVELS) - 1 else phi[i + 1, 1]
        out[LEVELS[i]] = float(np.degrees(below - phi[i - 1, 0]))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--first-seed", type=int, default=1_000_000)
    ap.add_argument("--weights")
    ap.add_argument("--shift", action="store_true", help="an unseen look on top of the renderer's")
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args()
    det = LandmarkDetector(args.weights, device="cpu")
    point_err = {k: [] for k in POINT_NAMES}
    found = {lv: [0, 0] for lv in LEVELS}
    perr = {k: [] for k in PARAMS + ("regional_kyphosis_deg",)}
    grade_pairs, statuses, t_infer, wrong_level = [], [], 0.0, 0
    for k in range(args.n):
        rng = np.random.default_rng([args.first_seed + k])
        spine = build_spine(sample_spec(rng))
        rg = render_radiograph(spine, rng, pixel_spacing_mm=float(rng.uniform(0.3, 0.6)))
        truth = radiograph_truth(spine, rg)
        img = bone_bright(rg)
        if args.shift:
            img = shifted_look(img, rng)
        t = time.perf_counter()
        (lm, facing, warnings), = det.detect([img])
        t_infer += time.perf_counter() - t
        image = dict(truth["image"], pixel_spacing_mm=list(rg.spacing_mm), spacing_source="supplied",
                     anterior=facing or rg.facing)
        doc = analysis_document(image, lm)
        statuses.append(doc["status"] if (lm["vertebrae"] or lm["s1_endplate"]) else "rejected")
        sp = np.array([rg.spacing_mm[1], rg.spacing_mm[0]])
        tv = truth["landmarks"]["vertebrae"]
        for lv, tp in tv.items():
            found[lv][1] += 1
            pp = lm["vertebrae"].get(lv)
            if pp is None:
                continue
            tc = np.mean([tp[n] for n in POINT_NAMES[:4]], axis=0)
            pc = np.mean([pp[n] for n in POINT_NAMES[:4]], axis=0)
            if np.linalg.norm((tc - pc) * sp) > 5.0:
                wrong_level += 1
                continue
            found[lv][0] += 1
            for n in POINT_NAMES:
                point_err[n].append(float(np.linalg.norm((np.array(pp[n]) - tp[n]) * sp)))
        s1_in, heads_in = truth["landmarks"]["s1_endplate"] is not None, len(truth["landmarks"]["femoral_heads"]) > 0
        for key in PARAMS:
            pv = doc["parameters"].get(key)
            in_view = all(x in tv for x in NEEDS.get(key, ())) and s1_in and (heads_in or key not in (
                "pelvic_incidence_deg", "pelvic_tilt_deg"))
            if key == "thoracic_kyphosis_deg":
                in_view = all(x in tv for x in NEEDS[key])
            if in_view and pv is not None:
                perr[key].append(abs(pv - truth["parameters"][key]))
        rk = regional_truth_deg(spine)
        tv_by = {v["level"]: v for v in truth["vertebrae"] if v["in_view"]}
        for v in doc["vertebrae"]:
            if v["level"] in tv_by and v["genant_grade"] is not None:
                grade_pairs.append((tv_by[v["level"]]["genant_grade"], v["genant_grade"]))
            if v.get("regional_kyphosis_deg") is not None and v["level"] in rk:
                i = LEVEL_INDEX[v["level"]]
                neighbours_in = (i == len(LEVELS) - 1 or LEVELS[i + 1] in tv) and LEVELS[i - 1] in tv
                if neighbours_in:
                    perr["regional_kyphosis_deg"].append(abs(v["regional_kyphosis_deg"] - rk[v["level"]]))
    all_err = np.concatenate([np.array(v) for v in point_err.values()]) if point_err["anterior_superior"] else np.array([np.nan])
    g = np.array(grade_pairs) if grade_pairs else np.zeros((0, 2), int)
    fx, nm = g[:, 0] > 0, g[:, 0] == 0
    total_found = sum(f for f, _ in found.values())
    total = sum(n for _, n in found.values())
    report = {
        "images": args.n, "first_seed": args.first_seed, "weights": str(det.weights), "shifted_look": args.shift,
        "analysed_fraction": float(np.mean([s in ("ok", "partial") for s in statuses])),
        "status_counts": {s: statuses.count(s) for s in ("ok", "partial", "rejected")},
        "landmark_error_mm": {"median": float(np.median(all_err)), "mean": float(np.mean(all_err)),
                              "p90": float(np.percentile(all_err, 90)),
                              "per_point_median": {k: float(np.median(v)) if v else None for k, v in point_err.items()}},
        "detection_rate": total_found / max(total, 1),
        "misplaced_or_mislabelled": wrong_level,
        "detection_rate_per_level": {lv: (round(f / n, 4) if n else None) for lv, (f, n) in found.items()},
        "parameter_mae": {k: (float(np.mean(v)) if v else None) for k, v in perr.items()},
        "parameter_median_ae": {k: (float(np.median(v)) if v else None) for k, v in perr.items()},
        "parameter_n": {k: len(v) for k, v in perr.items()},
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
