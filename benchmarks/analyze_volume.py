"""End-to-end analysis of a CT series and of an MR study against a plain pydicom read of the
same files' pixels, measured in one run, with each stage's time.

Writes (once, cached under ``--cache``) a phantom axial CT of ``--slices`` slices of
``--matrix``² pixels and an MR study (T1, T2, STIR; ``--mr-slices`` sagittal slices of
``--mr-matrix``²), uncompressed. Then, alternating ``--repeat`` times:

- the baseline: ``pydicom.dcmread(f).pixel_array`` for every file of the unit;
- the analysis: ``sagittal.batch.worker.run_chunk`` on the unit (what ``sagittal analyze`` runs per
  unit: decode, centre line, curved reformat, the plane model, femoral heads, the document and
  the overlay PNGs) with the model already loaded.

Wall-clock ratios are meaningful on an idle machine only; the CPU-second ratio (one thread) is
printed beside them and depends much less on the load.

    nice -n 10 .venv/bin/python benchmarks/analyze_volume.py [--slices 300] [--matrix 512] [--repeat 3]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import pydicom

from sagittal.batch import volume as volume_kind
from sagittal.batch.units import plan_units
from sagittal.batch.worker import RunConfig, analyzer_for, run_chunk
from sagittal.phantom import build_spine, sample_spec
from sagittal.phantom.dicom import StudyInfo
from sagittal.phantom.generate import write_volume
from sagittal.phantom.volume import render_ct, render_mr


def write_cases(root: Path, slices: int, matrix: int, mr_slices: int, mr_matrix: int) -> None:
    """The CT and the MR study (skipped when ``root`` already holds them)."""
    if (root / "done").is_file():
        return
    rng = np.random.default_rng(515)
    spine = build_spine(sample_spec(rng, n_fractures=1))
    info = StudyInfo.make("bench/vol", "BENCHVOL")
    # a whole-spine-to-hips span of ``slices`` slices: slice spacing from the span
    span = float(spine.points_mm[0, :, 1].max() - (spine.femoral_centers_mm[:, 1] - spine.femoral_radii_mm).min() + 50)
    ct = render_ct(spine, rng, matrix=matrix, pixel_spacing_mm=400.0 / matrix, slice_mm=span / slices, top_level="C7")
    write_volume(ct, spine, root / "ct", "ct", info, "bench/ct", frame_key="bench/ct")
    origin = np.array([0.0, 60.0, -800.0])
    for s, seq in enumerate(("T1", "T2", "STIR")):
        mr = render_mr(spine, rng, seq, matrix=mr_matrix, pixel_spacing_mm=440.0 / mr_matrix, n_slices=mr_slices,
                       slice_mm=4.0, top_level="T9", origin_lps=origin)
        write_volume(mr, spine, root / "mr", f"{seq}", info, f"bench/mr/{seq}", series_number=2 + s, frame_key="bench/mr")
    (root / "done").write_text("ok\n")


def plain_read(files: list[str]) -> tuple[float, float]:
    """Wall and CPU seconds of ``pydicom.dcmread(f).pixel_array`` over ``files``."""
    t, c = time.perf_counter(), time.process_time()
    total = 0.0
    for f in files:
        total += float(pydicom.dcmread(f).pixel_array[0, 0])
    return time.perf_counter() - t, time.process_time() - c


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--slices", type=int, default=300)
    ap.add_argument("--matrix", type=int, default=512)
    ap.add_argument("--mr-slices", type=int, default=15)
    ap.add_argument("--mr-matrix", type=int, default=384)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--cache", default="/tmp/sagittal-bench-volume")
    ap.add_argument("--centreline-looks", choices=("on", "off"), default=None,
                    help="the MR centre line's fallback looks of weak slices (on: PlaneDetector.centreline_plain "
                         "False, as before the ninth session; default: as shipped)")
    args = ap.parse_args()
    root = Path(args.cache) / f"ct{args.slices}x{args.matrix}_mr{args.mr_slices}x{args.mr_matrix}"
    t = time.perf_counter()
    write_cases(root, args.slices, args.matrix, args.mr_slices, args.mr_matrix)
    print(f"cases ready in {time.perf_counter() - t:.1f} s under {root}")
    units, _, _ = plan_units([root])
    config = RunConfig(device="cpu", threads=1)
    t = time.perf_counter()
    analyzer = analyzer_for(config)
    for model in {"radiograph", "planes"}:
        analyzer.detector_for(model)
    if args.centreline_looks is not None:
        analyzer.detector_for("planes").centreline_plain = args.centreline_looks == "off"
    print(f"models loaded in {time.perf_counter() - t:.1f} s (not counted)")
    for unit in units:
        what = f"{unit.data.modality} {'+'.join(unit.data.roles)}: {len(unit.files)} files"
        reads, runs, stages, cpu_reads, cpu_runs = [], [], [], [], []
        for _ in range(args.repeat):
            wall, cpu = plain_read(list(unit.files))
            reads.append(wall)
            cpu_reads.append(cpu)
            timings: dict[str, float] = {}
            t, c = time.perf_counter(), time.process_time()
            (outcome,) = run_chunk([(0, unit)], config, timings)
            runs.append(time.perf_counter() - t)
            cpu_runs.append(time.process_time() - c)
            if outcome.failure is not None:
                raise SystemExit(f"{what}: {outcome.failure.reason}")
            stages.append(dict(timings, **{f"of which {k}": v for k, v in volume_kind.LAST_TIMINGS.items()}))
        r, a = statistics.median(reads), statistics.median(runs)
        cr, ca = statistics.median(cpu_reads), statistics.median(cpu_runs)
        doc = outcome.document
        assert doc is not None
        print(f"{what}: plain pydicom read {r:.2f} s, analysis end to end {a:.2f} s = {a / r:.2f}x the read "
              f"(medians of {args.repeat}); CPU seconds {cr:.2f} vs {ca:.2f} = {ca / cr:.2f}x; "
              f"status {doc['status']}, {len(doc['landmarks']['vertebrae'])} vertebrae")
        last = stages[-1]
        print("  stages (s, last run): " + ", ".join(f"{k} {v:.3f}" for k, v in sorted(last.items())))


if __name__ == "__main__":
    main()
