"""Geometry core throughput: the full parameter, morphometry and classification set over 10^6 spines.

In one run: ``geometry.measure`` (the single entry point: chunked, the fused kernel, on every
core) against the same numbers from the readable reference functions (``measure_all``, chunked
as ``measure`` chunks, one core — what ``measure`` ran before the kernel) and against
``measure_all`` called spine by spine in a loop; the peak memory numpy allocates (tracemalloc)
beside the size of the input; with ``--profile``, each reference function's time per chunk.

    nice -n 10 .venv/bin/python benchmarks/geometry.py [--n 1000000] [--loop 2000] [--repeat 3] [--profile]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import tracemalloc
from collections.abc import Callable

import numpy as np

from sagittal.geometry import classify as C
from sagittal.geometry import measure
from sagittal.geometry import morphometry as M
from sagittal.geometry import spinopelvic as S
from sagittal.geometry.batch import FIELDS, measure_all
from sagittal.phantom import build_spine, sample_spec


def synthetic_spines(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n`` spines: 500 phantom spines repeated with 0.3 mm landmark noise."""
    rng = np.random.default_rng(seed)
    base = [build_spine(sample_spec(rng)) for _ in range(500)]
    idx = rng.integers(0, len(base), n)
    pts = np.stack([s.points_mm for s in base])[idx]
    pts += rng.normal(0, 0.3, pts.shape)
    s1 = np.stack([s.s1_mm for s in base])[idx]
    hip = np.stack([s.hip_axis_mm for s in base])[idx]
    return pts, s1, hip


def reference_chunked(pts: np.ndarray, s1: np.ndarray, hip: np.ndarray, chunk: int = 4096) -> None:
    """The reference functions over the batch in chunks, one core (the path before the kernel)."""
    for start in range(0, len(pts), chunk):
        sl = slice(start, start + chunk)
        block = np.ascontiguousarray(np.moveaxis(pts[sl], (-2, -1), (0, 1)))
        measure_all(np.moveaxis(block, (0, 1), (-2, -1)), s1[sl], hip[sl])


def profile(pts: np.ndarray, s1: np.ndarray, hip: np.ndarray, chunk: int = 4096) -> None:
    p, s, h = pts[:chunk], s1[:chunk], hip[:chunk]
    phi = (S.superior_phi_deg(p), S.inferior_phi_deg(p))
    ss = S.sacral_slope_deg(s)
    parts: dict[str, Callable[[], object]] = {
        "endplate directions": lambda: (S.superior_phi_deg(p), S.inferior_phi_deg(p)),
        "PI, PT, SS": lambda: (S.pelvic_incidence_deg(s, h), S.pelvic_tilt_deg(s, h), S.sacral_slope_deg(s)),
        "LL, TK, SVA, T1PA": lambda: (S.lumbar_lordosis_deg(p, s), S.thoracic_kyphosis_deg(p),
                                      S.sagittal_vertical_axis_mm(p, s), S.t1_pelvic_angle_deg(p, s, h)),
        "regional + vertebral": lambda: (S.regional_kyphosis_deg(p, s, phi=phi), S.vertebral_kyphosis_deg(p, phi=phi)),
        "morphometry": lambda: M.morphometry(p),
        "Roussouly": lambda: C.roussouly_type(p, ss),
        "measure_all (all)": lambda: measure_all(p, s, h),
        "measure, 1 core (kernel)": lambda: measure(p, s, h, workers=1),
    }
    print(f"per chunk of {chunk:,} spines, one core (median of 5):")
    for name, fn in parts.items():
        times = []
        for _ in range(5):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        print(f"  {name:26s} {statistics.median(times) * 1000:7.2f} ms")


def timed(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--loop", type=int, default=2000, help="spines timed one by one (extrapolated)")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each vectorised timing (median)")
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()
    pts, s1, hip = synthetic_spines(args.n)
    input_mb = (pts.nbytes + s1.nbytes + hip.nbytes) / 1e6
    print(f"spines: {args.n:,}  cores: {os.cpu_count()}  load average {os.getloadavg()[0]:.1f} at start, "
          f"input {input_mb:.0f} MB")
    if args.profile:
        profile(pts, s1, hip)

    tracemalloc.start()
    out = measure(pts, s1, hip)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    out_mb = sum(v.nbytes for v in out.values()) / 1e6
    assert set(out) == set(FIELDS)

    t_vec = timed(lambda: measure(pts, s1, hip), args.repeat)
    m = min(args.n, 200_000)
    t_one = timed(lambda: measure(pts[:m], s1[:m], hip[:m], workers=1), args.repeat) / m
    t_ref = timed(lambda: reference_chunked(pts[:m], s1[:m], hip[:m]), args.repeat) / m
    k = min(args.loop, args.n)
    t = time.perf_counter()
    for i in range(k):
        measure_all(pts[i], s1[i], hip[i])
    t_loop = (time.perf_counter() - t) / k

    rate = args.n / t_vec
    print(f"measure, all cores:          {t_vec:7.2f} s  {rate:12,.0f} spines/s (median of {args.repeat})")
    print(f"measure, one core:           {t_one * args.n:7.2f} s  {1 / t_one:12,.0f} spines/s (first {m:,})")
    print(f"reference functions chunked: {t_ref * args.n:7.2f} s  {1 / t_ref:12,.0f} spines/s (one core, first {m:,})")
    print(f"loop, spine by spine:        {t_loop * args.n:7.2f} s  {1 / t_loop:12,.0f} spines/s "
          f"(timed on {k:,}, extrapolated)")
    print(f"speed-up measure / loop: {t_loop * rate:,.0f}x; one core, kernel / reference functions: {t_ref / t_one:.2f}x")
    print(f"peak numpy memory during measure: {peak / 1e6:.0f} MB (outputs {out_mb:.0f} MB + chunk intermediates)")
    print(f"load average at the end: {os.getloadavg()[0]:.1f}; fractures found: "
          f"{(out['genant_grade'] > 0).mean() * 100:.1f} % of vertebrae")


if __name__ == "__main__":
    main()
