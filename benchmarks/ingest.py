"""Ingestion speed over a phantom PACS export: header scanning (files/s) and decoding (MB/s),
each beside a raw read of the same bytes, with memory against the number of files.

    .venv/bin/python benchmarks/ingest.py [--files 2000] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def make_export(root: Path, n_files: int) -> None:
    """``n_files`` CT slices (64 x 64, explicit VR) in series of 200, plus 20 JPEG 2000 radiographs."""
    from sagittal.phantom import build_spine, render_ct, render_radiograph, sample_spec
    from sagittal.phantom.dicom import StudyInfo, radiograph_dataset, volume_datasets, write_dataset

    rng = np.random.default_rng(0)
    spine = build_spine(sample_spec(rng))
    written, series = 0, 0
    while written < n_files:
        ct = render_ct(spine, rng, matrix=64, pixel_spacing_mm=6.0, slice_mm=1.0)
        info = StudyInfo.make(f"bench{series}", f"B{series:04d}")
        for k, ds in enumerate(volume_datasets(ct, info, f"ct{series}")):
            if written >= n_files:
                break
            write_dataset(ds, root / "ct" / f"S{series:03d}" / f"IM{k:05d}", "explicit")
            written += 1
        series += 1
    info = StudyInfo.make("benchdx", "BDX")
    for k in range(20):
        rg = render_radiograph(spine, rng, modality="DX", pixel_spacing_mm=0.3)
        write_dataset(radiograph_dataset(rg, info, f"dx{k}"), root / "dx" / f"DX{k:03d}", "jpeg2000")


def _raw_read(paths: list[Path]) -> tuple[float, int]:
    t = time.perf_counter()
    n = 0
    for p in paths:
        with open(p, "rb") as fh:
            n += len(fh.read())
    return time.perf_counter() - t, n


def child(mode: str, root: str, limit: int) -> None:
    """Run one measurement in a fresh process so peak memory is its own."""
    import resource

    from sagittal.io.decode import decode
    from sagittal.io.discover import discover

    paths = sorted(Path(root, "ct").rglob("IM*"))[:limit]
    if mode.startswith("scan"):
        workers = int(mode[4:])
        t = time.perf_counter()
        headers, aside = discover(paths, workers=workers)
        dt = time.perf_counter() - t
        assert len(headers) == len(paths) and not aside
        rate = len(paths) / dt
    else:
        dx = sorted(Path(root, "dx").glob("DX*"))
        t = time.perf_counter()
        out_bytes = sum(decode(str(p), radiograph=True).pixels.nbytes // 2 for p in dx)  # 16-bit stored size
        dt = time.perf_counter() - t
        rate = out_bytes / dt / 1e6
    print(f"{rate:.1f} {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=2000)
    ap.add_argument("--keep", help="build (or reuse) the export here")
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child[0], args.child[1], int(args.child[2]))
        return
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="sagittal-ingest-"))
    if not (root / "ct").is_dir() or len(list((root / "ct").rglob("IM*"))) < args.files:
        shutil.rmtree(root, ignore_errors=True)
        make_export(root, args.files)
    ct_paths = sorted((root / "ct").rglob("IM*"))[: args.files]
    dx_paths = sorted((root / "dx").glob("DX*"))

    def run(mode: str, limit: int) -> tuple[float, float]:
        out = subprocess.run([sys.executable, __file__, "--child", mode, str(root), str(limit)], check=True,
                             capture_output=True, text=True).stdout.split()
        return float(out[0]), float(out[1])

    t_raw, n_raw = _raw_read(ct_paths)
    raw_rate = len(ct_paths) / t_raw
    print(f"export: {len(ct_paths)} CT slice files ({n_raw / 1e6:.1f} MB) + {len(dx_paths)} JPEG 2000 DX "
          f"({sum(p.stat().st_size for p in dx_paths) / 1e6:.1f} MB), {os.cpu_count()} cores")
    print(f"raw read of the same files:      {raw_rate:10,.0f} files/s")
    for w in (1, 2):
        rate, rss = run(f"scan{w}", len(ct_paths))
        print(f"header scan, {w} process(es):     {rate:10,.0f} files/s  (raw read / scan = {raw_rate / rate:.0f}x)"
              f"  peak RSS {rss:.0f} MB")
    small_rate, small_rss = run("scan1", len(ct_paths) // 4)
    print(f"memory: scanning {len(ct_paths) // 4} files peaks at {small_rss:.0f} MB, {len(ct_paths)} files at "
          f"{run('scan1', len(ct_paths))[1]:.0f} MB (one process)")
    t_dx, n_dx = _raw_read(dx_paths)
    rate, rss = run("decode", 0)
    print(f"decode JPEG 2000 DX:              {rate:10.1f} MB/s of pixels; raw read {n_dx / t_dx / 1e6:,.0f} MB/s "
          f"of file bytes; peak RSS {rss:.0f} MB")
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
