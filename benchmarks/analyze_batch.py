"""Batch throughput of ``sagittal analyze``: one process vs two local worker processes vs a Dask
LocalCluster of two, start-up included, and the peak memory of each worker process at two
batch sizes.

Each configuration runs the command a user runs (``sagittal analyze INPUT -o OUT --device cpu
[--workers 2 | --dask local:2]``) as a fresh process, so interpreter start, torch import, model
loading, process or cluster start and every output written are inside the time. Peak resident
memory of the driver and of each worker process is sampled (psutil, every 0.2 s).

    .venv/bin/python benchmarks/analyze_batch.py [--n 24] [--rounds 3] [--pixel-spacing 0.15] [--transfer-syntax jpeg2000]
        [--memory 100 1000 --memory-spacing 1.0] [--memory-only] [--cache DIR] [--device cuda]

Each run also prints the CPU seconds of every process by role (the driver, the forkserver that
imports torch once for the workers, the workers): where parallelism's extra CPU goes.

With ``--device cuda`` (on a machine with a GPU) it times one process on the GPU with and
without ``--mixed-precision`` and reports how far mixed precision moves landmarks and angles:
the measurement that decides whether the switch may be turned on.

Figures depend on the machine and on what else runs on it: the load average is printed beside
them; ratios measured in one run are the comparable figures. The CPU seconds of each run's
whole process tree show what parallelism costs (every worker starts an interpreter, imports
torch and loads the model) independently of how busy the machine is.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil

from sagittal.phantom import build_spine, render_radiograph, sample_spec
from sagittal.phantom.dicom import StudyInfo, radiograph_dataset, write_dataset

SAGITTAL = str(Path(sys.executable).with_name("sagittal"))
CONFIGS = {"1 process": [], "--workers 2": ["--workers", "2"], "--dask local:2": ["--dask", "local:2"]}


def write_export(root: Path, n: int, spacing_mm: float, syntax: str, field_of_view: str = "whole") -> tuple[int, int]:
    """``n`` phantom lateral radiographs (one patient each) as DICOM under ``root``; the last one's
    shape. Files already there (``--cache``: the same parameters) are kept."""
    import pydicom

    shape = (0, 0)
    for k in range(n):
        if (root / f"IM{k:05d}").is_file():
            ds = pydicom.dcmread(root / f"IM{k:05d}", stop_before_pixels=True)
            shape = (int(ds.Rows), int(ds.Columns))
            continue
        rng = np.random.default_rng([424243, k])
        spine = build_spine(sample_spec(rng))
        rg = render_radiograph(spine, rng, pixel_spacing_mm=spacing_mm, field_of_view=field_of_view, modality="DX")
        info = StudyInfo.make(f"batch/{k}", f"BATCH{k:05d}")
        write_dataset(radiograph_dataset(rg, info, f"batch/{k}/dx"), root / f"IM{k:05d}", syntax)
        shape = rg.pixels.shape
    return shape


def _role(p: psutil.Process, root: psutil.Process) -> str:
    try:
        cmd = " ".join(p.cmdline())
    except psutil.Error:
        return "other"
    if p.pid == root.pid:
        return "driver"
    if "resource_tracker" in cmd:
        return "other"
    if "forkserver" in cmd and p.ppid() == root.pid:
        return "forkserver"
    return "worker"


def run_measured(args: list[str]) -> tuple[float, float, float, int, float, float, dict[str, float]]:
    """Run ``sagittal ARGS``; (wall s, driver peak RSS MB, largest worker peak RSS MB, worker processes
    seen, CPU seconds of the whole process tree (waited-for or sampled), largest worker's median RSS over the second half
    of its samples, MB: the steady state, where a peak grows with the number of samples; CPU
    seconds by process role — driver, forkserver, workers, other — as last sampled, so a process
    may lose its last 0.2 s)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    proc = subprocess.Popen([SAGITTAL, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env=dict(os.environ, OMP_NUM_THREADS="1"))
    peaks: dict[int, float] = {}
    samples: dict[int, list[float]] = {}
    cpu_by_pid: dict[int, float] = {}
    roles: dict[int, str] = {}
    root = psutil.Process(proc.pid)

    def sample() -> None:
        while proc.poll() is None:
            try:
                for p in [root, *root.children(recursive=True)]:
                    with p.oneshot():
                        rss = p.memory_info().rss / 1e6
                        c = p.cpu_times()
                    peaks[p.pid] = max(peaks.get(p.pid, 0.0), rss)
                    samples.setdefault(p.pid, []).append(rss)
                    cpu_by_pid[p.pid] = c.user + c.system
                    if p.pid not in roles:
                        roles[p.pid] = _role(p, root)
            except psutil.Error:
                pass
            time.sleep(0.2)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    _, err = proc.communicate()
    wall = time.perf_counter() - t
    th.join()
    if proc.returncode != 0:
        raise SystemExit(f"sagittal {' '.join(args)} failed ({proc.returncode}): {err.decode()[-2000:]}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)  # the driver and every process it waited for
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    # a forkserver's workers are waited for by the forkserver, which nobody waits for: their CPU
    # is missing above; the per-process samples then hold more
    cpu = max(cpu, sum(cpu_by_pid.values()))
    by_role: dict[str, float] = {}
    for pid, c in cpu_by_pid.items():
        role = roles.get(pid, "other")
        if role == "worker" and peaks.get(pid, 0.0) <= 150:  # a helper process (e.g. Dask's), not a model holder
            role = "other"
        by_role[role] = by_role.get(role, 0.0) + c
    driver = peaks.pop(proc.pid, 0.0)
    workers = [pid for pid, v in peaks.items() if v > 150 and roles.get(pid) == "worker"]
    late = [float(np.median(samples[pid][len(samples[pid]) // 2:])) for pid in workers]
    return (wall, driver, max((peaks[p] for p in workers), default=0.0), len(workers), cpu, max(late, default=0.0),
            by_role)


def _cpu_split(by_role: dict[str, float], n_workers: int) -> str:
    names = {"driver": "driver", "forkserver": "forkserver", "worker": f"{n_workers} worker(s)", "other": "other"}
    return "CPU s by process: " + ", ".join(f"{label} {by_role[k]:.1f}" for k, label in names.items() if by_role.get(k))


def throughput(root: Path, out: Path, n: int, rounds: int = 1) -> None:
    """Each configuration once per round, the order rotated from round to round (so that no
    configuration always runs first on a cold or a busy machine); ratios per round and of the
    median wall times."""
    walls: dict[str, list[float]] = {name: [] for name in CONFIGS}
    for r in range(rounds):
        names = list(CONFIGS)
        names = names[r % len(names):] + names[:r % len(names)]
        if rounds > 1:
            print(f" round {r + 1} of {rounds}:")
        for name in names:
            wall, driver, worker, nw, cpu, _, by_role = run_measured(
                ["analyze", str(root), "-o", str(out / f"{name.replace(' ', '_')}_{r}"), "--device", "cpu", *CONFIGS[name]])
            walls[name].append(wall)
            print(f"  {name:16s} {wall:7.1f} s  {n / wall:6.2f} images/s  CPU {cpu:6.1f} s ({cpu / n:4.2f} s/image)  "
                  f"peak RSS: driver {driver:5.0f} MB" + (f", each worker <= {worker:5.0f} MB ({nw} workers)" if nw else ""))
            print(f"  {'':16s} {_cpu_split(by_role, nw)}")
        one = walls["1 process"][-1]
        print(f"  ratios: --workers 2 / 1 process = {one / walls['--workers 2'][-1]:.2f}x; "
              f"--dask local:2 / 1 process = {one / walls['--dask local:2'][-1]:.2f}x")
    if rounds > 1:
        med = {name: float(np.median(w)) for name, w in walls.items()}
        print(f" medians of {rounds} rounds: " + ", ".join(f"{name} {med[name]:.1f} s ({n / med[name]:.2f} images/s)"
                                                          for name in CONFIGS))
        print(f"  ratios of the medians: --workers 2 / 1 process = {med['1 process'] / med['--workers 2']:.2f}x; "
              f"--dask local:2 / 1 process = {med['1 process'] / med['--dask local:2']:.2f}x")


def _documents(out: Path) -> dict[str, dict]:
    docs = {}
    for p in out.rglob("*.json"):
        d = json.loads(p.read_text())
        if d.get("schema") == "sagittal.analysis/1":
            docs[d["source"]["path"]] = d
    return docs


def gpu(root: Path, out: Path, n: int) -> None:
    """One process on CUDA, float32 vs float16 autocast: images/s and how far the results move."""
    rates = {}
    for name, extra in {"cuda float32": [], "cuda --mixed-precision": ["--mixed-precision"]}.items():
        wall, driver, _, _, _, _, _ = run_measured(["analyze", str(root), "-o", str(out / name.replace(" ", "_")), "--device",
                                              "cuda", *extra])
        rates[name] = n / wall
        print(f"  {name:24s} {wall:7.1f} s  {rates[name]:6.2f} images/s   peak RSS: driver {driver:5.0f} MB")
    full, half = _documents(out / "cuda_float32"), _documents(out / "cuda_--mixed-precision")
    point_err, param_err, levels_differ = [], [], 0
    for path, a in full.items():
        b = half.get(path)
        if b is None:
            continue
        va, vb = a["landmarks"]["vertebrae"], b["landmarks"]["vertebrae"]
        levels_differ += set(va) != set(vb)
        for lv in set(va) & set(vb):
            point_err += [float(np.hypot(*np.subtract(va[lv][k], vb[lv][k]))) for k in va[lv] if k != "confidence"]
        param_err += [abs(a["parameters"][k] - b["parameters"][k]) for k in a["parameters"]
                      if k.endswith("_deg") and a["parameters"][k] is not None and b["parameters"].get(k) is not None]
    print(f"  mixed precision vs float32 over {len(full)} images: landmark shift median "
          f"{np.median(point_err) if point_err else float('nan'):.3f} px, max {max(point_err, default=float('nan')):.3f} px; "
          f"angle parameters max |diff| {max(param_err, default=float('nan')):.3f} deg; "
          f"{levels_differ} image(s) with different levels found")


def memory(tmp: Path, cache: Path, sizes: list[int], spacing_mm: float) -> None:
    biggest = max(sizes)
    root = cache / f"memory_export_{spacing_mm}"
    t = time.perf_counter()
    shape = write_export(root, biggest, spacing_mm, "explicit", field_of_view="lumbar")
    print(f"\nmemory: {biggest} lumbar DX radiographs of {shape[0]} x {shape[1]} px at {spacing_mm} mm (explicit VR), "
          f"written in {time.perf_counter() - t:.0f} s; --workers 2, peak RSS per process:")
    files = sorted(root.iterdir())[:biggest]
    for n in sizes:
        sub = tmp / f"mem{n}"
        sub.mkdir()
        for f in files[:n]:
            os.symlink(f, sub / f.name)
        wall, driver, worker, nw, cpu, late, _ = run_measured(["analyze", str(sub), "-o", str(tmp / f"mem_out{n}"),
                                                               "--device", "cpu", "--workers", "2"])
        print(f"  {n:5d} images: {wall:7.1f} s ({n / wall:5.2f} images/s, CPU {cpu / n:4.2f} s/image); driver peak "
              f"{driver:5.0f} MB; each worker: peak <= {worker:5.0f} MB, median over the run's second half <= "
              f"{late:5.0f} MB ({nw} workers)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=24)
    ap.add_argument("--rounds", type=int, default=1, help="run every configuration this many times, the order rotated")
    ap.add_argument("--pixel-spacing", type=float, default=0.15, help="mm at the patient")
    ap.add_argument("--transfer-syntax", default="jpeg2000", choices=("explicit", "jpeg2000", "jpegls", "rle"))
    ap.add_argument("--memory", type=int, nargs="*", default=[], metavar="N",
                    help="also measure worker memory over these batch sizes (small lumbar images)")
    ap.add_argument("--memory-spacing", type=float, default=1.0)
    ap.add_argument("--memory-only", action="store_true", help="skip the throughput runs")
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"),
                    help="cuda: time one process on the GPU (batches of 16) with and without --mixed-precision and "
                         "compare their landmarks and parameters, instead of the CPU executors")
    ap.add_argument("--cache", type=Path, help="keep the phantom exports in this folder and reuse them (outputs still go "
                                               "to a temporary folder)")
    args = ap.parse_args()
    print(f"machine: {os.cpu_count()} CPU(s), load average {', '.join(f'{x:.1f}' for x in os.getloadavg())} at start")
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        cache = args.cache or tmp
        if not args.memory_only:
            t = time.perf_counter()
            export = cache / f"export_{args.n}_{args.pixel_spacing}_{args.transfer_syntax}"
            shape = write_export(export, args.n, args.pixel_spacing, args.transfer_syntax)
            print(f"{args.n} whole-spine DX radiographs, {shape[0]} x {shape[1]} px at {args.pixel_spacing} mm, "
                  f"{args.transfer_syntax}; written in {time.perf_counter() - t:.0f} s")
            print("sagittal analyze, start-up (interpreter, torch, model, workers) and outputs included:")
            if args.device == "cuda":
                gpu(export, tmp / "out", args.n)
            else:
                throughput(export, tmp / "out", args.n, args.rounds)
        if args.memory:
            memory(tmp, cache, sorted(args.memory), args.memory_spacing)
    print(f"load average {', '.join(f'{x:.1f}' for x in os.getloadavg())} at the end")


if __name__ == "__main__":
    main()
