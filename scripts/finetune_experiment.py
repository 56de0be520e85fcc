#!/usr/bin/env python3
"""Fine-tuning experiment: adapt the shipped landmark weights to a phantom look they never saw.

    nice -n 10 OMP_NUM_THREADS=1 .venv/bin/python scripts/finetune_experiment.py --n-train 150 --n-held-out 50 \\
        --workdir /tmp/sagittal-finetune --json finetune_experiment.json

1. Renders ``n-train + n-held-out`` radiographs of the DRR family ``drr-b`` (held out of the
   shipped weights' training entirely; ``training.data``) from single-integer seeds
   ``first-seed …``, and writes them as a user would have them: 16-bit PNGs and sagittal-format
   annotations (``{"image", "landmarks"}`` with the pixel spacing).
2. Runs ``sagittal finetune`` on them (``training.finetune``: the held-out split is reported
   before and after by ``training.evaluate``'s figures).
3. Checks the original look is not lost: ``scripts/eval_landmarks.py``'s 2-D family figures
   with the shipped and the fine-tuned weights on the same fresh phantoms (same seeds), and
   ``sagittal analyze`` of the radiographs of ``sample_dicom/`` with both (status, vertebrae
   and parameters per document).
4. Prints one table: (a) held-out split, (b) original 2-D look, (c) ``sample_dicom/``, each row
   with its verdict against ``TOLERANCE`` (better on (a); no loss beyond the tolerance on (b)
   and (c)), and a last line saying whether the goal is met.

The shipped weights' figures (held-out split, 2-D check, ``sample_dicom/``) do not depend on the
recipe: they are kept in the work folder (keyed by the weights' SHA-256 and the check's size) and
reused by the next run; ``--label`` names each run's weights and results.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
# "no loss" on the original look: at most one vertebra's worth on the counted figures, and
TOLERANCE = {"landmark_error_mm": 0.01, "angle_deg": 2.0, "length_mm": 4.0, "mae_deg": 0.1}


def write_set(workdir: Path, n: int, first_seed: int, family: str) -> None:
    from sagittal.phantom import build_spine
    from sagittal.phantom.truth import landmarks as truth_landmarks
    from sagittal.training.data import as_view, render_family, sample_family_spec

    (workdir / "images").mkdir(parents=True, exist_ok=True)
    (workdir / "annotations").mkdir(parents=True, exist_ok=True)
    for k in range(n):
        name = f"{family}_{first_seed + k}"
        if (workdir / "annotations" / f"{name}.json").is_file():
            continue
        rng = np.random.default_rng([first_seed + k])
        spine = build_spine(sample_family_spec(family, rng, None))
        view = as_view(render_family(family, spine, rng, pixel_spacing_mm=float(rng.uniform(0.4, 0.7))))
        px = view.pixels
        lo, hi = float(px.min()), float(px.max())
        cv2.imwrite(str(workdir / "images" / f"{name}.png"),
                    np.round((px - lo) / max(hi - lo, 1e-9) * 65535).astype(np.uint16))
        lm = truth_landmarks(spine, view.to_px, view.in_view, view.s1_in_view, view.femoral_in_view,
                             radius_scale=1.0 / view.spacing_mm[1])
        doc = {"image": {"file": f"{name}.png", "pixel_spacing_mm": list(view.spacing_mm), "anterior": view.facing},
               "landmarks": lm}
        (workdir / "annotations" / f"{name}.json").write_text(json.dumps(doc))


def radiograph_files(root: Path) -> list[str]:
    """The DX/CR files under ``root`` (``sample_dicom/`` also holds CT and MR, which these
    weights do not analyse)."""
    import pydicom

    out = []
    for p in sorted(root.rglob("*")):
        if not p.is_file():
            continue
        try:
            ds = pydicom.dcmread(p, stop_before_pixels=True, specific_tags=["Modality"])
        except Exception:  # not DICOM (truth files, the clinical CSV)
            continue
        if str(ds.get("Modality", "")) in ("DX", "CR"):
            out.append(str(p))
    return out


def analyze_sample(weights: str | None, out: Path) -> dict[str, dict]:
    """``sagittal analyze`` of the radiographs of ``sample_dicom/`` → {document: status, vertebrae, parameters}."""
    cmd = [sys.executable, "-m", "sagittal.cli", "analyze", *radiograph_files(ROOT / "sample_dicom"), "-o", str(out),
           "--device", "cpu"]
    if weights:
        cmd += ["--weights", weights]
    shutil.rmtree(out, ignore_errors=True)  # a rerun analyses again (analyze would resume)
    subprocess.run(cmd, check=False, capture_output=True)
    docs = {}
    for p in sorted(out.rglob("*.json")):
        try:
            d = json.loads(p.read_text())
        except ValueError:
            continue
        if (isinstance(d, dict) and d.get("schema") == "sagittal.analysis/1"
                and (d.get("source") or {}).get("modality") in ("DX", "CR")):
            docs[str(p.relative_to(out))] = {"status": d["status"], "parameters": d["parameters"],
                                             "n_vertebrae": len(d["vertebrae"])}
    return docs


def eval_2d(weights: str, n: int, out: Path) -> dict:
    """``scripts/eval_landmarks.py --families 2d`` figures of ``weights`` (its fixed seeds)."""
    check = subprocess.run([sys.executable, str(ROOT / "scripts" / "eval_landmarks.py"), "--families", "2d", "--n", str(n),
                            "--weights", f"w={weights}", "--json", str(out)], capture_output=True, text=True, check=False)
    if check.returncode:
        return {"error": check.stderr[-2000:]}
    return json.loads(out.read_text())["results"]["w"]["2d"]


def cached(path: Path, make: Any) -> Any:
    """``make()``'s JSON result, kept at ``path`` for the next run."""
    if path.is_file():
        return json.loads(path.read_text())
    v = make()
    from sagittal.fsio import atomic_write_text

    atomic_write_text(path, json.dumps(v))
    return v


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--family", default="drr-b")
    ap.add_argument("--n-train", type=int, default=150)
    ap.add_argument("--n-held-out", type=int, default=50)
    ap.add_argument("--first-seed", type=int, default=3_000_000)
    ap.add_argument("--minutes", type=float, default=90.0, help="fine-tuning cap (the steps bound each stage)")
    # the recipe: each option left out takes finetune()'s default (the measured recipe)
    ap.add_argument("--steps", type=int, help="the coarse stage's optimizer steps (--minutes stays the cap)")
    ap.add_argument("--refine-steps", type=int, help="the refinement's")
    ap.add_argument("--phantom", type=int, default=100, help="2-D phantom radiographs mixed in")
    ap.add_argument("--phantom-share", type=float, help="share of every coarse batch from the phantoms")
    ap.add_argument("--refine-phantom-share", type=float, help="the refinement's")
    ap.add_argument("--anchor", type=float, help="L2-SP weight of the coarse stage")
    ap.add_argument("--refine-anchor", type=float, help="the refinement's L2-SP weight")
    ap.add_argument("--distill", type=float, help="the coarse stage's output distillation on the phantoms")
    ap.add_argument("--refine-distill", type=float, help="the refinement's output distillation on the phantoms")
    ap.add_argument("--bn-train", action="store_true", help="let BatchNorm running statistics adapt (the old recipe)")
    ap.add_argument("--init", help="start from these weights (default: the shipped ones)")
    ap.add_argument("--teacher", help="distil the phantoms towards these weights' outputs (default: the start's)")
    ap.add_argument("--erase", type=float, help="the coarse stage's hard-negative rate (a body replaced by noise)")
    ap.add_argument("--refine-erase", type=float, help="the refinement's (a body crop whose body is noise: maps uniform)")
    ap.add_argument("--look", type=float, help="share of the coarse stage's training films given processing no "
                                               "renderer applies (training.loop.regional_look)")
    ap.add_argument("--refine-look", type=float, help="the refinement's share of crops")
    ap.add_argument("--lr", type=float)
    ap.add_argument("--refine-lr", type=float)
    ap.add_argument("--check-n", type=int, default=30, help="2-D family radiographs for the original-look check")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--workdir", default="/tmp/sagittal-finetune")
    ap.add_argument("--label", default="finetuned", help="names this run's weights and results in the work folder")
    ap.add_argument("--reuse", action="store_true", help="the label's weights exist: run the checks only")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # the subprocesses
    from sagittal.landmarks.weights import sha256_file, weights_path
    from sagittal.training.finetune import finetune

    work = Path(args.workdir)
    t0 = time.time()
    n = args.n_train + args.n_held_out
    write_set(work, n, args.first_seed, args.family)
    print(f"rendered {n} {args.family} radiographs in {time.time() - t0:.0f} s", flush=True)
    init = weights_path(None)
    key = sha256_file(init)[:12]
    names = hashlib.sha256(json.dumps([args.first_seed, n, args.n_held_out]).encode()).hexdigest()[:8]
    before_path = work / f"shipped_{key}_held_out_{names}.json"
    before = json.loads(before_path.read_text()) if before_path.is_file() else None
    weights = work / f"{args.label}.pt"
    if args.reuse and weights.is_file():  # the checks only, on this run's weights
        rec = torch.load(weights, map_location="cpu", weights_only=True)["training_record"]
    else:
        recipe = {k: v for k in ("steps", "refine_steps", "phantom_share", "refine_phantom_share", "anchor",
                                 "refine_anchor", "lr", "refine_lr", "distill", "refine_distill", "init",
                                 "teacher", "erase", "refine_erase", "look", "refine_look")
                  if (v := getattr(args, k)) is not None}
        rec = finetune([work / "images"], work / "annotations", "sagittal", weights, minutes=args.minutes,
                       held_out=args.n_held_out / n, phantom=args.phantom, freeze_bn=not args.bn_train,
                       device=args.device, before=before, log=lambda m: print(m, flush=True), **recipe)
    if before is None and rec.get("held_out_before"):
        from sagittal.fsio import atomic_write_text

        atomic_write_text(before_path, json.dumps(rec["held_out_before"]))
    print(f"fine-tuned in {time.time() - t0:.0f} s; checking the original look", flush=True)
    e_ship = cached(work / f"shipped_{key}_eval_2d_{args.check_n}.json",
                    lambda: eval_2d(str(init), args.check_n, work / "eval_2d_shipped.json"))
    e_tuned = eval_2d(str(weights), args.check_n, work / f"{args.label}_eval_2d.json")
    s_ship = cached(work / f"shipped_{key}_sample_dicom.json", lambda: analyze_sample(None, work / "sample_shipped"))
    s_tuned = analyze_sample(str(weights), work / f"sample_{args.label}")
    report = {"family": args.family, "n_train": args.n_train, "n_held_out": args.n_held_out, "label": args.label,
              "first_seed": args.first_seed, "minutes": args.minutes, "argv": sys.argv[1:], "record": rec,
              "check_n": args.check_n, "eval_2d": {"shipped": e_ship, "finetuned": e_tuned},
              "sample_dicom": {"shipped": s_ship, "finetuned": s_tuned}, "seconds": round(time.time() - t0)}
    text, met = table(report)
    report["goal_met"] = met
    print(text)
    from sagittal.fsio import atomic_write_text

    atomic_write_text(work / f"{args.label}_result.json", json.dumps(report, indent=1))
    atomic_write_text(work / f"{args.label}_table.md", text + "\n")
    if args.json:
        atomic_write_text(args.json, json.dumps(report, indent=1))
    return 0


def _num(v: Any) -> float:
    return float(v) if isinstance(v, int | float) else math.nan


def _held_out_rows(b: dict, a: dict) -> list[tuple[str, str, str, bool]]:
    """(a): the fine-tuned weights must find more and place the points better."""
    rows = [("found at the right level", f"{100 * _num(b.get('detection_rate')):.1f} %",
             f"{100 * _num(a.get('detection_rate')):.1f} %", _num(a.get("detection_rate")) > _num(b.get("detection_rate"))),
            ("point error median", f"{_num(b.get('point_error_mm_median')):.2f} mm",
             f"{_num(a.get('point_error_mm_median')):.2f} mm",
             _num(a.get("point_error_mm_median")) < _num(b.get("point_error_mm_median")))]
    for k in ("endplate_angle_error_deg_mae", "lumbar_lordosis_deg_mae", "sacral_slope_deg_mae",
              "pelvic_incidence_deg_mae", "pelvic_tilt_deg_mae"):
        label = k.removesuffix("_mae").replace("_deg", "").replace("_", " ") + " MAE"
        rows.append((label, f"{_num(b.get(k)):.2f}°", f"{_num(a.get(k)):.2f}°",
                     not _num(a.get(k)) > _num(b.get(k)) + TOLERANCE["mae_deg"]))
    return rows


def _original_look_rows(s: dict, f: dict) -> list[tuple[str, str, str, bool]]:
    """(b): no loss beyond one vertebra's worth, ``TOLERANCE`` on the continuous figures."""
    n_in, n_fx, n_nm = s["vertebrae_in_view"], s["fractured_vertebrae_graded"], s["normal_vertebrae_graded"]
    lm_s, lm_f = s["landmark_error_mm"]["median"], f["landmark_error_mm"]["median"]
    rows = [("found at the right level", f"{100 * s['detection_rate']:.1f} %", f"{100 * f['detection_rate']:.1f} %",
             f["detection_rate"] >= s["detection_rate"] - 1 / max(n_in, 1) - 1e-9),
            ("wrong levels", str(s["wrong_levels"]), str(f["wrong_levels"]), f["wrong_levels"] <= s["wrong_levels"]),
            ("landmark error median", f"{lm_s:.3f} mm", f"{lm_f:.3f} mm", lm_f <= lm_s + TOLERANCE["landmark_error_mm"])]
    for k in ("lumbar_lordosis_deg", "sacral_slope_deg", "pelvic_incidence_deg", "thoracic_kyphosis_deg"):
        vs, vf = _num(s["parameter_mae"].get(k)), _num(f["parameter_mae"].get(k))
        rows.append((k.replace("_deg", "").replace("_", " ") + " MAE", f"{vs:.2f}°", f"{vf:.2f}°",
                     not vf > vs + TOLERANCE["mae_deg"]))
    fs, ff = _num(s["fracture_sensitivity"]), _num(f["fracture_sensitivity"])
    rows.append(("fracture sensitivity", f"{100 * fs:.1f} % of {n_fx}", f"{100 * ff:.1f} % of {f['fractured_vertebrae_graded']}",
                 not ff < fs - 1 / max(n_fx, 1) - 1e-9))
    ps, pf = _num(s["fracture_false_positive_rate"]), _num(f["fracture_false_positive_rate"])
    rows.append(("false positives (normal)", f"{100 * ps:.1f} % of {n_nm}", f"{100 * pf:.1f} % of {f['normal_vertebrae_graded']}",
                 not pf > ps + 1 / max(n_nm, 1) + 1e-9))
    return rows


def _sample_rows(s: dict, f: dict) -> list[tuple[str, str, str, bool]]:
    """(c): per document the same status and vertebrae, parameters within ``TOLERANCE``."""
    rows = []
    for doc in sorted(set(s) | set(f)):
        a, b = s.get(doc), f.get(doc)
        if a is None or b is None:
            rows.append((doc, "present" if a else "missing", "present" if b else "missing", False))
            continue
        worst, ok = "", True
        diffs = []
        for k, v in a["parameters"].items():
            w = b["parameters"].get(k)
            if (v is None) != (w is None):
                ok, worst = False, f"{k} {'lost' if w is None else 'gained'}"
            elif k.endswith(("_deg", "_mm")) and isinstance(v, int | float) and isinstance(w, int | float):
                tol = TOLERANCE["length_mm"] if k.endswith("_mm") else TOLERANCE["angle_deg"]
                diffs.append((abs(w - v) / tol, k, w - v))
            elif v != w:  # a category (e.g. the Roussouly type) must not change
                ok, worst = False, f"{k} {v} -> {w}"
        if diffs:
            r, k, d = max(diffs)
            ok = ok and r <= 1
            unit = "mm" if k.endswith("_mm") else "°"
            worst = worst or f"largest change {k.replace('_deg', '').replace('_mm', '')} {d:+.2f}{unit}"
        rows.append((doc, f"{a['status']}, {a['n_vertebrae']} vertebrae", f"{b['status']}, {b['n_vertebrae']} vertebrae; {worst}",
                     ok and a["status"] == b["status"] and a["n_vertebrae"] == b["n_vertebrae"]))
    return rows


def table(report: dict) -> tuple[str, bool]:
    """One Markdown table (a) held-out split, (b) original 2-D look, (c) ``sample_dicom/``, with a
    verdict per row, and whether the goal is met (every row passes)."""
    rec = report["record"]
    sections = [(f"(a) held-out {report['family']} ({report['n_held_out']} images): better",
                 _held_out_rows(rec.get("held_out_before", {}), rec.get("held_out_after", {})))]
    e = report["eval_2d"]
    if "error" in e["shipped"] or "error" in e["finetuned"]:
        sections.append(("(b) original 2-D look: eval_landmarks.py FAILED", [("error", "", "", False)]))
    else:
        sections.append((f"(b) original 2-D look (eval_landmarks.py --families 2d --n {report['check_n']}): no loss",
                         _original_look_rows(e["shipped"], e["finetuned"])))
    sections.append(("(c) sample_dicom/ radiographs: same status and vertebrae, parameters within "
                     f"{TOLERANCE['angle_deg']}° / {TOLERANCE['length_mm']} mm",
                     _sample_rows(report["sample_dicom"]["shipped"], report["sample_dicom"]["finetuned"])))
    out = [f"run {report['label']}: " + " ".join(report["argv"]), "",
           "| figure | shipped | fine-tuned | holds |", "|---|---|---|---|"]
    met = True
    for title, rows in sections:
        out.append(f"| **{title}** | | | |")
        for name, a, b, ok in rows:
            out.append(f"| {name} | {a} | {b} | {'yes' if ok else '**no**'} |")
            met = met and ok
    st = rec.get("stages", {})
    out += ["", "iterations: " + ", ".join(f"{k} {v.get('iterations')} x {v.get('batch')} "
                                           f"(moved {v.get('squared_distance_from_start', float('nan')):.3g})"
                                           for k, v in st.items()),
            f"goal met: {'YES' if met else 'NO'}"]
    return "\n".join(out), met


if __name__ == "__main__":
    sys.exit(main())
