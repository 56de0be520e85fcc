"""DRR (cone-beam) renderer speed against the 2-D renderer, on one core.

Renders the same spines with ``render_drr`` and ``render_radiograph`` at the spacings the
landmark training uses (1.5 mm coarse images, 0.6 mm, 0.3 mm refinement crops) for a whole-spine
and a lumbar field, in the same run. Prints the median wall and CPU time per image of each and
their ratio, and the peak resident memory. CPU time is the fairer figure on a shared machine.

    .venv/bin/python benchmarks/drr_render.py [--n 6]
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import resource  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from functools import partial  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from sagittal.phantom import build_spine, render_drr, render_radiograph, sample_drr_spec  # noqa: E402


def _time(fn) -> tuple[float, float, object]:
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - w, time.process_time() - c, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=6, help="spines per setting")
    args = ap.parse_args()
    cv2.setNumThreads(1)
    spines = [build_spine(sample_drr_spec(np.random.default_rng([s, 1]))) for s in range(args.n)]
    print(f"{'setting':28} {'DRR wall/cpu s':>16} {'2-D wall/cpu s':>16} {'cpu ratio':>9}  image")
    for sp in (1.5, 0.6, 0.3):
        for field in ("whole", "lumbar"):
            d_w, d_c, r_w, r_c = [], [], [], []
            shape = None
            for k, spine in enumerate(spines):
                w, c, rg = _time(partial(render_drr, spine, np.random.default_rng(k), field=field, pixel_spacing_mm=sp))
                d_w.append(w)
                d_c.append(c)
                shape = rg.pixels.shape
                w, c, _ = _time(partial(render_radiograph, spine, np.random.default_rng(k), field_of_view=field,
                                        pixel_spacing_mm=sp))
                r_w.append(w)
                r_c.append(c)
            md, mc, rw, rc = (statistics.median(v) for v in (d_w, d_c, r_w, r_c))
            size = f"{shape[0]}x{shape[1]} px" if shape else ""
            print(f"{field + f' {sp} mm':28} {md:7.2f} /{mc:6.2f}   {rw:7.2f} /{rc:6.2f}   {mc / rc:9.2f}  {size}")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
