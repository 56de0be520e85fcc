"""End-to-end ``sagittal analyze`` time per whole-spine radiograph, stage by stage.

Writes ``--n`` phantom whole-spine lateral radiographs as DICOM (``--transfer-syntax``, at
``--pixel-spacing`` mm at the patient) into a temporary folder, then times ``analyse_one`` — the
function the CLI runs per image — on each: decode (header checks, calibration and pixel
decoding), the detector's coarse network, crops, refinement network and post-processing,
geometry (the analysis document) and outputs (JSON and overlay PNG written). In the same run it
times the whole batch through ``run_analyze`` with one and with two worker processes.

    .venv/bin/python benchmarks/analyze.py [--n 12] [--pixel-spacing 0.15] [--transfer-syntax jpeg2000]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from sagittal.batch.analyze import analyse_one, plan, run_analyze
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=12)
    ap.add_argument("--pixel-spacing", type=float, default=0.15, help="mm at the patient")
    ap.add_argument("--transfer-syntax", default="jpeg2000", choices=("explicit", "jpeg2000", "jpegls", "rle"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root, out = Path(tmp) / "export", Path(tmp) / "out"
        t = time.perf_counter()
        shape = write_export(root, args.n, args.pixel_spacing, args.transfer_syntax)
        print(f"{args.n} whole-spine DX radiographs, last {shape[0]} x {shape[1]} px at {args.pixel_spacing} mm, "
              f"{args.transfer_syntax}; written in {time.perf_counter() - t:.1f} s")
        tasks, _, _ = plan([root], out / "single")
        t = time.perf_counter()
        analyse_one(tasks[0])  # loads the models; not counted below
        print(f"model load and first image: {time.perf_counter() - t:.2f} s")
        per_stage = {s: [] for s in STAGES}
        totals = []
        for task in tasks:
            Path(task.out_json).unlink(missing_ok=True)
            timings: dict[str, float] = {}
            t = time.perf_counter()
            doc, err = analyse_one(task, timings=timings)
            totals.append(time.perf_counter() - t)
            if err:
                print("failed:", err.reason)
            for s in STAGES:
                per_stage[s].append(timings.get(s, 0.0))
        print(f"per image, median of {len(totals)} (one process, torch on every core):")
        for s in STAGES:
            print(f"  {s:12s} {statistics.median(per_stage[s]) * 1000:8.1f} ms")
        print(f"  {'total':12s} {statistics.median(totals) * 1000:8.1f} ms  (max {max(totals) * 1000:.0f} ms)")
        rates = {}
        for workers in (1, 2):
            t = time.perf_counter()
            run_analyze([root], out / f"w{workers}", device="cpu", workers=workers, progress=False)
            rates[workers] = args.n / (time.perf_counter() - t)
            print(f"run_analyze, {workers} worker(s): {rates[workers]:.2f} images/s (process start-up and model "
                  "load included)")
        print(f"ratio 2 workers / 1: {rates[2] / rates[1]:.2f}x")


if __name__ == "__main__":
    main()
