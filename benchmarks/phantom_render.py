"""Phantom rendering speed, on one core.

Renders whole-spine lateral radiographs at 0.15 mm (a detector's resolution) and at 0.6 mm
(a training-size image), an axial CT and a sagittal MR series, and writes one radiograph in
each transfer syntax. Prints the median wall time of each, their ratio, and the peak
resident memory of the process.

    .venv/bin/python benchmarks/phantom_render.py [--repeat 5]
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import resource  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from sagittal.phantom import build_spine, render_ct, render_mr, render_radiograph, sample_spec  # noqa: E402
from sagittal.phantom.dicom import TRANSFER_SYNTAXES, StudyInfo, radiograph_dataset, write_dataset  # noqa: E402


def _median_s(fn, repeat: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    cv2.setNumThreads(1)
    spine = build_spine(sample_spec(np.random.default_rng(0), n_fractures=1))
    rows = []

    def rg(spacing):
        return render_radiograph(spine, np.random.default_rng(1), field_of_view="whole", pixel_spacing_mm=spacing)

    t_fine, img = _median_s(lambda: rg(0.15), args.repeat)
    rows.append(("DX whole spine 0.15 mm", t_fine, f"{img.pixels.shape[0]}x{img.pixels.shape[1]} px"))
    t_coarse, small = _median_s(lambda: rg(0.6), args.repeat)
    rows.append(("DX whole spine 0.60 mm", t_coarse, f"{small.pixels.shape[0]}x{small.pixels.shape[1]} px"))
    t_ct, ct = _median_s(lambda: render_ct(spine, np.random.default_rng(2)), max(1, args.repeat // 2))
    rows.append(("CT axial 256x256", t_ct, f"{ct.stored.shape[0]} slices"))
    t_mr, mr = _median_s(lambda: render_mr(spine, np.random.default_rng(3), "STIR"), max(1, args.repeat // 2))
    rows.append(("MR sagittal STIR 288x288", t_mr, f"{mr.stored.shape[0]} slices"))
    info = StudyInfo.make("bench", "BENCH")
    with tempfile.TemporaryDirectory() as tmp:
        for ts in TRANSFER_SYNTAXES:
            t, _ = _median_s(lambda ts=ts: write_dataset(radiograph_dataset(small, info, ts), Path(tmp) / f"{ts}.dcm", ts), 3)
            size = (Path(tmp) / f"{ts}.dcm").stat().st_size
            rows.append((f"write 0.6 mm DX, {ts}", t, f"{size / 1e6:.2f} MB"))
    print(f"{'what':32} {'median s':>9}  notes")
    for name, t, note in rows:
        print(f"{name:32} {t:9.3f}  {note}")
    mpix = img.pixels.size / 1e6
    print(f"\n0.15 mm render: {mpix:.1f} Mpx in {t_fine:.2f} s = {mpix / t_fine:.1f} Mpx/s on one core; "
          f"0.15 mm / 0.6 mm time ratio {t_fine / t_coarse:.1f} for {img.pixels.size / small.pixels.size:.0f}x the pixels")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
