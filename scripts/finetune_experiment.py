#!/usr/bin/env python3
"""Fine-tuning experiment: adapt the shipped landmark weights to a phantom look they never saw.

    nice -n 10 .venv/bin/python scripts/finetune_experiment.py --n-train 150 --n-held-out 50 \\
        --minutes 15 --workdir /tmp/sagittal-finetune --json finetune_experiment.json

1. Renders ``n-train + n-held-out`` radiographs of the DRR family ``drr-b`` (held out of the
   shipped weights' training entirely; ``training.data``) from single-integer seeds
   ``first-seed …``, and writes them as a user would have them: 16-bit PNGs and sagittal-format
   annotations (``{"image", "landmarks"}`` with the pixel spacing).
2. Runs ``sagittal finetune`` on them (``training.finetune``: the held-out split is reported
   before and after by ``training.evaluate``'s figures).
3. Checks the original look is not lost: ``scripts/eval_landmarks.py``'s 2-D family figures
   with the shipped and the fine-tuned weights on the same fresh phantoms, and
   ``sagittal analyze`` of ``sample_dicom/`` with both (parameter differences per document).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]


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


def analyze_sample(weights: str | None, out: Path) -> dict[str, dict]:
    """``sagittal analyze sample_dicom`` → {document stem: parameters}."""
    cmd = [sys.executable, "-m", "sagittal.cli", "analyze", str(ROOT / "sample_dicom"), "-o", str(out), "--device", "cpu"]
    if weights:
        cmd += ["--weights", weights]
    subprocess.run(cmd, check=False, capture_output=True)
    docs = {}
    for p in sorted(out.rglob("*.json")):
        try:
            d = json.loads(p.read_text())
        except ValueError:
            continue
        if d.get("schema") == "sagittal.analysis/1" and (d.get("image") or {}).get("kind", "radiograph") != "volume":
            docs[str(p.relative_to(out))] = {"status": d["status"], "parameters": d["parameters"],
                                             "n_vertebrae": len(d["vertebrae"])}
    return docs


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--family", default="drr-b")
    ap.add_argument("--n-train", type=int, default=150)
    ap.add_argument("--n-held-out", type=int, default=50)
    ap.add_argument("--first-seed", type=int, default=3_000_000)
    ap.add_argument("--minutes", type=float, default=15.0, help="fine-tuning budget")
    ap.add_argument("--phantom", type=int, default=100, help="2-D phantom radiographs mixed in")
    ap.add_argument("--phantom-share", type=float, default=0.3, help="share of every batch drawn from the phantoms")
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--check-n", type=int, default=30, help="2-D family radiographs for the original-look check")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--workdir", default="/tmp/sagittal-finetune")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    from sagittal.training.finetune import finetune

    work = Path(args.workdir)
    t0 = time.time()
    n = args.n_train + args.n_held_out
    write_set(work, n, args.first_seed, args.family)
    print(f"rendered {n} {args.family} radiographs in {time.time() - t0:.0f} s", flush=True)
    weights = work / "finetuned.pt"
    rec = finetune([work / "images"], work / "annotations", "sagittal", weights, minutes=args.minutes,
                   held_out=args.n_held_out / n, phantom=args.phantom, phantom_share=args.phantom_share, lr=args.lr,
                   device=args.device,
                   log=lambda m: print(m, flush=True))
    check = subprocess.run([sys.executable, str(ROOT / "scripts" / "eval_landmarks.py"), "--families", "2d", "--n",
                            str(args.check_n), "--weights", "shipped=" + str(rec["init"]), "--weights",
                            f"finetuned={weights}", "--json", str(work / "eval_2d.json")],
                           capture_output=True, text=True, check=False)
    eval_2d = json.loads((work / "eval_2d.json").read_text())["results"] if check.returncode == 0 else {
        "error": check.stderr[-2000:]}
    samples = {"shipped": analyze_sample(None, work / "sample_shipped"),
               "finetuned": analyze_sample(str(weights), work / "sample_finetuned")}
    report = {"family": args.family, "n_train": args.n_train, "n_held_out": args.n_held_out,
              "first_seed": args.first_seed, "minutes": args.minutes, "argv": sys.argv[1:], "record": rec, "eval_2d": eval_2d,
              "sample_dicom": samples, "seconds": round(time.time() - t0)}
    print(table(report))
    if args.json:
        from sagittal.fsio import atomic_write_text

        atomic_write_text(args.json, json.dumps(report, indent=1))
    return 0


def table(report: dict) -> str:
    """Before/after on the held-out split, and the 2-D family check."""
    b, a = report["record"].get("held_out_before", {}), report["record"].get("held_out_after", {})
    keys = ["n_images", "detection_rate", "point_error_px_median", "point_error_mm_median",
            "endplate_angle_error_deg_mae", "lumbar_lordosis_deg_mae", "sacral_slope_deg_mae",
            "pelvic_incidence_deg_mae", "pelvic_tilt_deg_mae"]
    out = [f"held-out {report['family']} ({report['n_held_out']} images)", "| figure | shipped | fine-tuned |",
           "|---|---|---|"]
    out += [f"| {k} | {b.get(k, float('nan')):.4g} | {a.get(k, float('nan')):.4g} |" for k in keys]
    e = report["eval_2d"]
    if "shipped" in e:
        out += ["", "2-D family (original look)", "| figure | shipped | fine-tuned |", "|---|---|---|"]
        for name, get in (("detection_rate", lambda r: r["detection_rate"]),
                          ("landmark_error_mm_median", lambda r: r["landmark_error_mm"]["median"]),
                          ("wrong_levels", lambda r: r["wrong_levels"]),
                          ("LL MAE", lambda r: r["parameter_mae"]["lumbar_lordosis_deg"])):
            out.append(f"| {name} | {get(e['shipped']['2d'])} | {get(e['finetuned']['2d'])} |")
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main())
