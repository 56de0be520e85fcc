#!/usr/bin/env python3
"""Genant grading on the phantom's true landmarks: how often sagittal.geometry's morphometry
gives each fractured vertebra its exact grade and each normal vertebra grade 0.

    .venv/bin/python scripts/eval_genant.py [--n 5000] [--seed 12345]
"""

from __future__ import annotations

import argparse

import numpy as np

from sagittal.geometry.morphometry import morphology_name, morphometry
from sagittal.phantom import build_spine, sample_spec


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--seed", type=int, default=12345)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    spines = [build_spine(sample_spec(rng)) for _ in range(args.n)]
    pts = np.stack([s.points_mm for s in spines])
    grade = np.stack([s.grade for s in spines])
    morph = np.array([s.morphology for s in spines])
    loss = np.stack([s.loss_pct for s in spines])
    r = morphometry(pts)
    g = r["genant_grade"]
    fx = grade > 0
    print(f"{args.n} spines, {grade.size} vertebrae, {fx.sum()} fractured (seed {args.seed})")
    print(f"fractured graded exactly: {(g[fx] == grade[fx]).mean() * 100:.1f} %   (goal >= 95 %)")
    print(f"normal graded 0:          {(g[~fx] == 0).mean() * 100:.2f} %  (goal >= 99 %)")
    print(f"morphology right (fractured): {(morphology_name(r['morphology_index'])[fx] == morph[fx]).mean() * 100:.1f} %")
    err = r["height_loss_pct"][fx] - loss[fx]
    print(f"height-loss error on fractures: median |e| {np.median(np.abs(err)):.2f} pp, bias {err.mean():+.2f} pp")
    print("\ntrue grade -> graded 0/1/2/3")
    for k in (1, 2, 3):
        counts = np.bincount(g[grade == k].clip(0), minlength=4)
        print(f"  {k}: {counts.tolist()}  exact {counts[k] / counts.sum() * 100:.1f} %")
    for m in ("wedge", "biconcave", "crush"):
        sel = morph == m
        print(f"  {m:9}: exact {(g[sel] == grade[sel]).mean() * 100:.1f} % of {sel.sum()}")


if __name__ == "__main__":
    main()
