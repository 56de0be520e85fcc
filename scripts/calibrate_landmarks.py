#!/usr/bin/env python3
"""Measure the test-time consistency of the landmark refinement on phantom radiographs, to set
``postprocess.CONSISTENCY_MAX`` and ``MIN_POINT_CONFIDENCE``.

    .venv/bin/python scripts/calibrate_landmarks.py --families 2d --n 40 [--weights PATH]

Every labelled body is kept whatever its spread (the limits are lifted for the run); for each
one it records the two placements' largest disagreement over the body's size (``spread``), its
least confident point, and its true error: the largest point error over its size, or "wrong"
when it sits on another level. Half the radiographs get ``training.data.degrade``'s heavy
degradation. Seeds: single integers from ``--first-seed`` (2,000,000: neither training nor
``eval_landmarks.py``'s default stream). Prints, for candidate limits, the share of good bodies
withheld and the share of bad ones (error over ``--bad`` of the size, or wrong level) caught.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from sagittal.landmarks.crops import vertebra_size
from sagittal.landmarks.infer import LandmarkDetector
from sagittal.levels import LEVEL_INDEX
from sagittal.phantom import build_spine, sample_spec
from sagittal.training.data import as_view, degrade, render_family

#: the consistency check's limits lifted, so that every labelled body is seen with its spread
LIFTED = {"max_spread": float("inf"), "collapsed_max": float("inf"), "min_point_confidence": 0.0}


def open_detector(weights: str | None) -> LandmarkDetector:
    """The detector with the consistency limits lifted. They are keyword arguments of
    ``postprocess.consistent`` (bound when it is defined) passed through the detector's
    ``consistency_limits``: setting the module's constants does not lift them."""
    det = LandmarkDetector(weights, device="cpu")
    det.consistency_limits = dict(LIFTED)
    return det


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--families", default="2d")
    ap.add_argument("--n", type=int, default=40)
    ap.add_argument("--first-seed", type=int, default=2_000_000)
    ap.add_argument("--weights")
    ap.add_argument("--bad", type=float, default=0.1, help="a body is badly placed past this error / size")
    ap.add_argument("--json")
    args = ap.parse_args()
    det = open_detector(args.weights)
    rows = []
    for family in args.families.split(","):
        for k in range(args.n):
            rng = np.random.default_rng([args.first_seed + k])
            spine = build_spine(sample_spec(rng, n_fractures=int(rng.integers(0, 3))))
            view = as_view(render_family(family, spine, rng, pixel_spacing_mm=float(rng.uniform(0.3, 0.6))))
            if k % 2:
                view = degrade(view, spine, rng)
            det.detect([view.pixels])
            truth = view.to_px(spine.points_mm)  # (18, 6, 2)
            for b in det.last_detections[0].bodies:
                if not b.level:
                    continue
                t = truth[LEVEL_INDEX[b.level]]
                size = float(vertebra_size(t))
                wrong = not view.in_view[LEVEL_INDEX[b.level]] or np.linalg.norm(t[:4].mean(0) - b.centre) > 0.3 * size
                err = float(np.linalg.norm(b.points - t, axis=1).max()) / size
                rows.append({"family": family, "degraded": bool(k % 2), "level": b.level, "spread": b.spread,
                             "point_confidence": b.point_confidence, "error": err, "wrong": bool(wrong),
                             "grade": int(spine.grade[LEVEL_INDEX[b.level]])})
    spread = np.array([r["spread"] for r in rows])
    conf = np.array([r["point_confidence"] for r in rows])
    bad = np.array([r["wrong"] or r["error"] > args.bad for r in rows])
    print(f"{len(rows)} labelled bodies, {bad.sum()} badly placed (wrong level or error > {args.bad} of the size)")
    print("spread percentiles of good bodies (50/90/99/99.5):",
          np.round(np.percentile(spread[~bad], (50, 90, 99, 99.5)), 4).tolist())
    for thr in (0.03, 0.04, 0.05, 0.06, 0.08, 0.1, 0.12, 0.15):
        print(f"spread > {thr:.2f}: withholds {100 * np.mean(spread[~bad] > thr):.2f} % of good bodies, "
              f"catches {100 * np.mean(spread[bad] > thr) if bad.any() else float('nan'):.0f} % of bad ones")
    for thr in (0.05, 0.1, 0.15, 0.2, 0.3):
        print(f"point confidence < {thr:.2f}: withholds {100 * np.mean(conf[~bad] < thr):.2f} % of good, "
              f"catches {100 * np.mean(conf[bad] < thr) if bad.any() else float('nan'):.0f} % of bad")
    if args.json:
        from sagittal.fsio import atomic_write_text

        atomic_write_text(args.json, json.dumps(rows))


if __name__ == "__main__":
    main()
