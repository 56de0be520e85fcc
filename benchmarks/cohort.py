"""``sagittal cohort`` at scale: N synthetic analysis documents → the research tables, with
documents/s and peak memory.

Documents are made from the sample patients' truth documents (``sample_dicom/``) with new
patient IDs, study UIDs and dates, and perturbed measurements (a patient: 1–4 studies of 1–2
images each), written as ``<patient>/<study>/<sop>.json`` like ``sagittal analyze`` does. The
cohort then runs in a fresh process, so its peak RSS is its own.

    .venv/bin/python benchmarks/cohort.py [--docs 100000] [--workers 2] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def _templates() -> list[dict]:
    from sagittal.phantom.samples import truth_analysis_documents

    with tempfile.TemporaryDirectory() as tmp:
        return [json.loads(p.read_text()) for p in truth_analysis_documents(REPO / "sample_dicom", tmp)]


def _write_part(args: tuple[str, int, int, int]) -> int:
    """Documents of patients ``first`` … until ``n_docs`` documents are written; returns how many."""
    root, first, n_docs, seed = args
    rng = np.random.default_rng(seed)
    templates = _templates()
    written, patient = 0, first
    while written < n_docs:
        pid = f"BENCH{patient:08d}"
        base = 738000 + int(rng.integers(0, 3000))
        day = 0
        for s in range(int(rng.integers(1, 5))):
            suid = f"2.25.{patient}{s:02d}{seed}"
            day += int(rng.integers(30, 400)) if s else 0
            date = (np.datetime64("0001-01-01") + np.timedelta64(base + day - 1, "D")).astype(str).replace("-", "")
            for i in range(int(rng.integers(1, 3))):
                if written >= n_docs:
                    break
                doc = json.loads(json.dumps(templates[int(rng.integers(len(templates)))]))
                src = doc["source"]
                src.update(patient_id=pid, study_instance_uid=suid, study_date=date, sop_instance_uids=[f"{suid}.{i}"],
                           patient_sex="FM"[patient % 2], patient_age_years=int(50 + patient % 45))
                for k, v in doc["parameters"].items():
                    if isinstance(v, float):
                        doc["parameters"][k] = round(v + float(rng.normal(0, 3)), 4)
                for v in doc["vertebrae"]:
                    if v["height_loss_pct"] is not None:
                        loss = max(0.0, v["height_loss_pct"] + float(rng.normal(0, 2)) + 3.0 * s)
                        v["height_loss_pct"] = round(loss, 4)
                        v["genant_grade"] = 0 if loss < 20 else 1 if loss < 25 else 2 if loss <= 40 else 3
                out = Path(root) / f"p{patient:08d}" / suid / f"{i}.json"
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_text(json.dumps(doc))
                written += 1
        patient += 1
    return written


def generate(root: Path, n_docs: int, workers: int) -> float:
    import multiprocessing as mp

    t0 = time.perf_counter()
    per = -(-n_docs // workers)
    jobs = [(str(root), k * 10_000_000, min(per, n_docs - k * per), k + 1) for k in range(workers) if n_docs > k * per]
    with mp.Pool(len(jobs)) as pool:
        assert sum(pool.map(_write_part, jobs)) == n_docs
    return time.perf_counter() - t0


def _cpu() -> float:
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def run_cohort(docs: Path, out: Path, workers: int) -> None:
    """In this (fresh) process: the steps of ``run_cohort`` timed one by one (wall and CPU of
    every process), printed as JSON with the peak RSS."""
    from sagittal.cohort.export import _write_all
    from sagittal.cohort.pseudonym import load_or_create_key
    from sagittal.cohort.read import read_documents
    from sagittal.cohort.tables import build_tables

    key = load_or_create_key(out.parent / "bench.key")
    marks = [(time.perf_counter(), _cpu())]
    cols = read_documents([docs], workers=workers)
    # readers run under a forkserver, not as this process's children: they report their own CPU
    extra = cols.cpu_s if workers > 1 else 0.0
    marks.append((time.perf_counter(), _cpu() + extra))
    n_docs, n_errors, reader_mb = cols.n_docs, len(cols.errors), cols.peak_rss_mb
    tables = build_tables(cols, {}, key)
    del cols
    marks.append((time.perf_counter(), _cpu() + extra))
    _write_all(out, tables, figures=True)
    marks.append((time.perf_counter(), _cpu() + extra))
    rows = {k: len(getattr(v, "codes", v)) for k, v in ((n, t["pseudonym"]) for n, t in tables.items())}
    stages = {name: {"wall_s": b[0] - a[0], "cpu_s": b[1] - a[1]}
              for name, a, b in zip(("read", "link", "write"), marks[:-1], marks[1:], strict=True)}
    me = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"documents": n_docs, "errors": n_errors, "rows": rows, "wall_s": marks[-1][0] - marks[0][0],
                      "cpu_s": marks[-1][1] - marks[0][1], "stages": stages, "peak_rss_mb": me.ru_maxrss / 1024,
                      "peak_rss_worker_mb": reader_mb if workers > 1 else 0.0}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=100_000)
    ap.add_argument("--workers", type=int, default=2, help="processes reading documents")
    ap.add_argument("--keep", type=Path, help="generate into (or reuse) this folder instead of a temporary one")
    ap.add_argument("--_run", nargs=2, type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._run:
        run_cohort(args._run[0], args._run[1], args.workers)
        return
    root = args.keep or Path(tempfile.mkdtemp(prefix="sagittal-cohort-bench-"))
    docs = root / "docs"
    try:
        if docs.exists() and args.keep:
            print(f"reusing the documents in {docs}")
        else:
            secs = generate(docs, args.docs, max(args.workers, 1))
            print(f"generated {args.docs} documents in {secs:.1f} s")
        out = root / "cohort"
        shutil.rmtree(out, ignore_errors=True)
        cmd = [sys.executable, __file__, "--workers", str(args.workers), "--_run", str(docs), str(out)]
        res = subprocess.run(cmd, capture_output=True, text=True, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        r = json.loads(res.stdout.strip().splitlines()[-1])
        print(f"{r['documents']} documents ({r['errors']} skipped) -> {r['rows']} rows in {r['wall_s']:.1f} s wall "
              f"({r['documents'] / r['wall_s']:,.0f} documents/s), {r['cpu_s']:.1f} s CPU in all processes")
        for name, what in (("read", f"reading with {args.workers} process(es)"), ("link", "linking"),
                           ("write", "Parquet + CSV + dictionary + figures")):
            st = r["stages"][name]
            print(f"  {what:40} {st['wall_s']:6.1f} s wall {st['cpu_s']:6.1f} s CPU")
        print(f"peak RSS: {r['peak_rss_mb']:.0f} MB (main process), {r['peak_rss_worker_mb']:.0f} MB (largest reader "
              f"process); load average now {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
