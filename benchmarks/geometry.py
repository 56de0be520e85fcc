"""Geometry core throughput: the full parameter and morphometry set over 10^6 spines.

In one run: ``measure_spines`` vectorised (chunked, on every core) against the same
``measure_all`` called spine by spine in a loop, with the peak memory numpy allocates
(tracemalloc) beside the size of the input.

    .venv/bin/python benchmarks/geometry.py [--n 1000000] [--loop 2000]
"""

from __future__ import annotations

import argparse
import os
import time
import tracemalloc

import numpy as np

from sagittal.geometry.batch import measure_all, measure_spines
from sagittal.phantom import build_spine, sample_spec


def synthetic_spines(n: int, seed: int = 0):
    """``n`` spines: 500 phantom spines repeated with 0.3 mm landmark noise."""
    rng = np.random.default_rng(seed)
    base = [build_spine(sample_spec(rng)) for _ in range(500)]
    idx = rng.integers(0, len(base), n)
    pts = np.stack([s.points_mm for s in base])[idx]
    pts += rng.normal(0, 0.3, pts.shape)
    s1 = np.stack([s.s1_mm for s in base])[idx]
    hip = np.stack([s.hip_axis_mm for s in base])[idx]
    return pts, s1, hip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--loop", type=int, default=2000, help="spines timed one by one (extrapolated)")
    args = ap.parse_args()
    pts, s1, hip = synthetic_spines(args.n)
    input_mb = (pts.nbytes + s1.nbytes + hip.nbytes) / 1e6

    tracemalloc.start()
    t = time.perf_counter()
    out = measure_spines(pts, s1, hip)
    t_vec = time.perf_counter() - t
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    out_mb = sum(v.nbytes for v in out.values()) / 1e6

    t1 = time.perf_counter()
    measure_spines(pts[:200_000], s1[:200_000], hip[:200_000], workers=1)
    t_single = (time.perf_counter() - t1) / min(args.n, 200_000)

    k = min(args.loop, args.n)
    t = time.perf_counter()
    for i in range(k):
        measure_all(pts[i], s1[i], hip[i])
    t_loop = (time.perf_counter() - t) / k

    rate = args.n / t_vec
    print(f"spines: {args.n:,}  cores: {os.cpu_count()}  input {input_mb:.0f} MB, outputs {out_mb:.0f} MB")
    print(f"vectorised, all cores:  {t_vec:8.2f} s  {rate:12,.0f} spines/s")
    print(f"vectorised, one core:   {t_single * args.n:8.2f} s  {1 / t_single:12,.0f} spines/s (first 200,000)")
    print(f"loop, spine by spine:   {t_loop * args.n:8.2f} s  {1 / t_loop:12,.0f} spines/s (timed on {k:,}, extrapolated)")
    print(f"speed-up vectorised / loop: {t_loop * rate:,.0f}x")
    print(f"peak numpy memory during the vectorised run: {peak / 1e6:.0f} MB "
          f"(outputs {out_mb:.0f} MB + chunk intermediates)")
    print(f"fractures found: {(out['genant_grade'] > 0).mean() * 100:.1f} % of vertebrae")


if __name__ == "__main__":
    main()
