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
from sagittal.geometry.batch import FIELDS, INTEGER_FIELDS, measure_all
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


def reference_chunked(pts: np.ndarray, s1: np.ndarray, hip: np.ndarray, chunk: int = 4096) -> dict[str, np.ndarray]:
    """The reference functions over the batch in chunks into preallocated outputs, one core:
    ``measure_spines`` as it was before the kernel."""
    n = len(pts)
    out = {k: np.empty((n, *shape), np.int8 if k in INTEGER_FIELDS else np.float64) for k, shape in FIELDS.items()}
    for start in range(0, n, chunk):
        sl = slice(start, start + chunk)
        block = np.ascontiguousarray(np.moveaxis(pts[sl], (-2, -1), (0, 1)))
        part = measure_all(np.moveaxis(block, (0, 1), (-2, -1)), s1[sl], hip[sl])
        for k in FIELDS:
            out[k][sl] = part[k]
    return out


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


def interleaved(fns: dict[str, Callable[[], object]], repeat: int) -> dict[str, tuple[float, float]]:
    """Median wall and CPU (this process) seconds of each function, run in turns so that a
    shared machine's load falls on all alike."""
    wall: dict[str, list[float]] = {k: [] for k in fns}
    cpu: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeat):
        for k, fn in fns.items():
            t, c = time.perf_counter(), time.process_time()
            fn()
            wall[k].append(time.perf_counter() - t)
            cpu[k].append(time.process_time() - c)
    return {k: (statistics.median(wall[k]), statistics.median(cpu[k])) for k in fns}


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
    k = min(args.loop, args.n)

    def loop() -> None:
        for i in range(k):
            measure_all(pts[i], s1[i], hip[i])

    one = interleaved({"kernel": lambda: measure(pts[:m], s1[:m], hip[:m], workers=1),
                       "reference": lambda: reference_chunked(pts[:m], s1[:m], hip[:m]), "loop": loop}, args.repeat)
    rate = args.n / t_vec
    print(f"measure, all cores:          {t_vec:7.2f} s  {rate:12,.0f} spines/s (wall, median of {args.repeat})")
    for name, label, count in (("kernel", "measure, one core:          ", m),
                               ("reference", "reference functions chunked:", m), ("loop", "loop, spine by spine:       ", k)):
        w, c = one[name]
        print(f"{label} {w / count * args.n:7.2f} s  {count / w:12,.0f} spines/s wall, {count / c:12,.0f} per CPU-second "
              f"(on {count:,}, extrapolated)")
    (w_k, c_k), (w_r, c_r), (w_l, c_l) = one["kernel"], one["reference"], one["loop"]
    print(f"speed-up measure (all cores) / loop: {w_l / k * rate:,.0f}x wall; one core, kernel / reference functions: "
          f"{w_r / w_k:.2f}x wall, {c_r / c_k:.2f}x CPU time; kernel / loop {c_l / k / (c_k / m):,.0f}x CPU time")
    print(f"peak numpy memory during measure: {peak / 1e6:.0f} MB (outputs {out_mb:.0f} MB + chunk intermediates)")
    print(f"load average at the end: {os.getloadavg()[0]:.1f}; fractures found: "
          f"{(out['genant_grade'] > 0).mean() * 100:.1f} % of vertebrae")


if __name__ == "__main__":
    main()
