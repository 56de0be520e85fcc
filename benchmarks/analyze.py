"""End-to-end analysis time per whole-spine radiograph, stage by stage, against a plain decode.

For each ``--transfer-syntax``, writes ``--n`` phantom whole-spine lateral radiographs as DICOM
(at ``--pixel-spacing`` mm at the patient) into a temporary folder, then per file, in one run:

- ``plain``: ``pydicom.dcmread(f).pixel_array`` — what a naive reader spends on decoding alone;
- ``sagittal``: the unit analysed the way ``sagittal analyze`` does it (``batch.worker.run_chunk``:
  decode for analysis, the detector's coarse network, crops, refinement network and
  post-processing, geometry and the document, the overlay PNG) and its outputs written
  atomically (``batch.analyze.write_outcome``) — stage by stage;
- ``full-res``: the same with JPEG 2000 decoded at its full resolution (``max_spacing_mm=0``:
  the path before reduced-resolution decoding), for the before/after comparison.

Medians over the files; the ratio is our end-to-end time over the plain decode of the same file.
``--throughput`` also times whole batches through ``run_analyze`` with one and two workers.
The load average is printed: the development machine is shared.

    nice -n 10 .venv/bin/python benchmarks/analyze.py [--n 6] [--pixel-spacing 0.15]
        [--transfer-syntax jpeg2000 explicit] [--throughput]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pydicom

from sagittal.batch.analyze import run_analyze, write_outcome
from sagittal.batch.units import plan_units
from sagittal.batch.worker import RunConfig, run_chunk
from sagittal.io import decode as decode_module
from sagittal.phantom import build_spine, render_radiograph, sample_spec
from sagittal.phantom.dicom import StudyInfo, radiograph_dataset, write_dataset

STAGES = ("decode", "coarse", "crops", "refine", "postprocess", "geometry", "outputs")


def write_export(root: Path, n: int, spacing_mm: float, syntax: str) -> tuple[int, int]:
    shape = (0, 0)
    for k in range(n):
        rng = np.random.default_rng([424242, k])
        spine = build_spine(sample_spec(rng))
        rg = render_radiograph(spine, rng, pixel_spacing_mm=spacing_mm, field_of_view="whole", modality="DX")
        info = StudyInfo.make(f"bench/{k}", f"BENCH{k:03d}")
        write_dataset(radiograph_dataset(rg, info, f"bench/{k}/dx"), root / f"IM{k:04d}", syntax)
        shape = rg.pixels.shape
    return shape


def analyse_timed(unit: Any, config: RunConfig, out_json: Path) -> tuple[float, dict[str, float]]:
    """Seconds for one unit end to end (outputs on disk included) and its stage timings."""
    timings: dict[str, float] = {}
    t = time.perf_counter()
    (outcome,) = run_chunk([(0, unit)], config, timings)
    if outcome.failure is not None:
        raise RuntimeError(f"{unit.name}: {outcome.failure.reason}")
    t_write = time.perf_counter()
    write_outcome(outcome, out_json)
    now = time.perf_counter()
    timings["outputs"] = timings.get("outputs", 0.0) + now - t_write
    return now - t, timings


def plain_decode(path: str) -> float:
    t = time.perf_counter()
    pydicom.dcmread(path).pixel_array  # noqa: B018 — the decode is the point
    return time.perf_counter() - t


def bench_syntax(syntax: str, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    root, out = tmp / syntax, tmp / f"out-{syntax}"
    t = time.perf_counter()
    shape = write_export(root, args.n, args.pixel_spacing, syntax)
    print(f"\n{syntax}: {args.n} whole-spine DX radiographs, last {shape[0]} x {shape[1]} px at "
          f"{args.pixel_spacing} mm; written in {time.perf_counter() - t:.1f} s")
    units = sorted(plan_units([root])[0], key=lambda u: u.files[0])
    config = RunConfig(device="cpu")
    analyse_timed(units[0], config, out / "warm.json")  # model load and first image: not counted
    kw = decode_module.load_for_analysis.__kwdefaults__
    reduced_default = kw["max_spacing_mm"]
    rows: dict[str, list[Any]] = {"plain": [], "sagittal": [], "full-res": []}
    for r in range(args.repeat):
        for k, unit in enumerate(units):
            rows["plain"].append(plain_decode(unit.files[0]))
            for mode, max_spacing in (("sagittal", reduced_default), ("full-res", 0.0)):
                kw["max_spacing_mm"] = max_spacing
                try:
                    rows[mode].append(analyse_timed(unit, config, out / mode / f"{r}-{k}.json"))
                finally:
                    kw["max_spacing_mm"] = reduced_default
    plain = statistics.median(rows["plain"])
    print(f"per image, median of {len(rows['plain'])} (one process, torch on every core; load average "
          f"{os.getloadavg()[0]:.1f}):")
    print(f"  plain pydicom dcmread(f).pixel_array {plain * 1000:8.1f} ms")
    result: dict[str, Any] = {"plain_ms": plain * 1000}
    for mode in ("sagittal", "full-res"):
        totals = [tot for tot, _ in rows[mode]]
        ratios = [tot / p for (tot, _), p in zip(rows[mode], rows["plain"], strict=True)]
        label = "ours, reduced-resolution decode" if mode == "sagittal" else "ours, full-resolution decode (before)"
        print(f"  {label}:")
        for s in STAGES:
            print(f"    {s:12s} {statistics.median([tm.get(s, 0.0) for _, tm in rows[mode]]) * 1000:8.1f} ms")
        total = statistics.median(totals)
        print(f"    {'total':12s} {total * 1000:8.1f} ms   ratio to the plain decode: {total / plain:.2f}x "
              f"(median of per-file ratios {statistics.median(ratios):.2f}x)")
        result[mode] = {"total_ms": total * 1000, "ratio": total / plain}
    if args.throughput:
        rates = {}
        for workers in (1, 2):
            t = time.perf_counter()
            run_analyze([root], out / f"w{workers}", device="cpu", workers=workers, progress=False)
            rates[workers] = args.n / (time.perf_counter() - t)
            print(f"  run_analyze, {workers} worker(s): {rates[workers]:.2f} images/s (start-up and model load included)")
        print(f"  ratio 2 workers / 1: {rates[2] / rates[1]:.2f}x")
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=6)
    ap.add_argument("--repeat", type=int, default=1, help="passes over the files")
    ap.add_argument("--pixel-spacing", type=float, default=0.15, help="mm at the patient")
    ap.add_argument("--transfer-syntax", nargs="+", default=["jpeg2000", "explicit"],
                    choices=("explicit", "jpeg2000", "jpegls", "rle"))
    ap.add_argument("--throughput", action="store_true", help="also time run_analyze with 1 and 2 workers")
    args = ap.parse_args()
    print(f"cores: {os.cpu_count()}, load average at start {os.getloadavg()[0]:.1f}; analysis pixels no finer than "
          f"{decode_module.DEFAULT_MAX_SPACING_MM} mm")
    with tempfile.TemporaryDirectory() as tmp:
        for syntax in args.transfer_syntax:
            bench_syntax(syntax, args, Path(tmp))


if __name__ == "__main__":
    main()
