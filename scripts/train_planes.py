#!/usr/bin/env python3
"""Fine-tune one stage of the landmark model on phantom CT/MR sagittal planes (no real images,
no downloads), starting from the radiograph weights.

    nice -n 10 .venv/bin/python scripts/train_planes.py --stage coarse --n-train 2000 --minutes 30
    nice -n 10 .venv/bin/python scripts/train_planes.py --stage refine --n-train 700 --minutes 30

Renders the stage's planes with ``sagittal.training.planes`` (seeds 0 … n-train-1 of its own
stream; cached as an npz under ``--cache-dir``), then runs ``sagittal.training.loop`` on them
with ``--init`` (default: the packaged radiograph weights) into ``--out`` (default
``src/sagittal/weights/landmarks_planes.pt``; the two stages can train at once, one thread
each). ``scripts/eval_planes.py`` scores the result on full phantom volumes of other seeds.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from sagittal.fsio import atomic_path
from sagittal.landmarks.weights import packaged
from sagittal.training import loop
from sagittal.training.planes import (
    COARSE_FRACTURE_RATE,
    REFINE_FRACTURE_RATE,
    make_coarse_planes,
    make_refine_planes,
)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stage", choices=("coarse", "refine"), required=True)
    ap.add_argument("--n-train", type=int, default=2000, help="rendered planes")
    ap.add_argument("--first-seed", type=int, default=0)
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--steps", type=int, default=0,
                    help="iterations (0: none); the run stops at whichever of --minutes / --steps comes first")
    ap.add_argument("--fracture-rate", type=float, default=None,
                    help="share of spines with 1-3 fractures (default: 0.3 coarse, 0.6 refine)")
    ap.add_argument("--fracture-boost", type=int, default=2,
                    help="refine: each fractured body cropped 1 + this many times (default 2)")
    ap.add_argument("--severe-boost", type=int, default=0,
                    help="refine: each body of Genant grade 2-3 cropped this many times more (default 0)")
    ap.add_argument("--ct-share", type=float, default=0.5, help="share of CT planes (default 0.5)")
    ap.add_argument("--max-spacing", type=float, default=1.5,
                    help="in-plane spacing drawn from 0.5 mm to this (default 1.5; eval_planes' CTs reach 2.0)")
    ap.add_argument("--slice-sampling", action="store_true",
                    help="axial CT planes sampled at the slices and interpolated as a reformat is (not a Gaussian blur)")
    ap.add_argument("--pelvis", action="store_true",
                    help="draw the phantom's bony pelvis and proximal femora in the planes (as render_ct/render_mr "
                         "do by default since the twelfth session; rounds 1-4 trained without it)")
    ap.add_argument("--aorta-share", type=float, default=0.0,
                    help="the share of CT planes drawn with an aorta in front of the spine, contrast-filled or with "
                         "calcified plaques (training.planes._draw_aorta; default 0: none, as rounds 1-5)")
    ap.add_argument("--height-weight", type=float, default=0.0,
                    help="refine: weight of the height-ratio term (loop --height-weight; "
                         "training.losses.height_ratio_loss; default 0 = the cross-entropy alone, as rounds 1-4)")
    ap.add_argument("--height-window", type=int, default=0,
                    help="refine: read the height term's points over this radius about each peak (loop --height-window; "
                         "0: the whole map)")
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--init", default=None, help="weights to start from (default: the packaged radiograph weights)")
    ap.add_argument("--out", default="src/sagittal/weights/landmarks_planes.pt")
    ap.add_argument("--cache-dir", default="/tmp/sagittal-train")
    args = ap.parse_args()
    if (why := loop.height_options_error(args.stage, args.height_weight, args.height_window)) is not None:
        ap.error(why)  # before rendering the planes
    default_rate = COARSE_FRACTURE_RATE if args.stage == "coarse" else REFINE_FRACTURE_RATE
    rate = default_rate if args.fracture_rate is None else args.fracture_rate
    tag = "" if rate == default_rate else f"_fx{rate:g}"
    tag += "" if args.fracture_boost == 2 or args.stage == "coarse" else f"_boost{args.fracture_boost}"
    tag += "" if args.severe_boost == 0 or args.stage == "coarse" else f"_severe{args.severe_boost}"
    tag += "" if args.ct_share == 0.5 else f"_ct{args.ct_share:g}"
    tag += "" if args.max_spacing == 1.5 else f"_sp{args.max_spacing:g}"
    tag += "_slices" if args.slice_sampling else ""
    tag += "_pelvis" if args.pelvis else ""
    tag += f"_aorta{args.aorta_share:g}" if args.aorta_share else ""
    cache = Path(args.cache_dir) / f"planes_{args.stage}_{args.first_seed}-{args.n_train}{tag}.npz"
    if not cache.is_file():
        t = time.time()
        seeds = range(args.first_seed, args.first_seed + args.n_train)
        if args.stage == "coarse":
            data = make_coarse_planes(seeds, args.workers, fracture_rate=rate, ct_share=args.ct_share,
                                      max_spacing_mm=args.max_spacing, slice_sampling=args.slice_sampling,
                                      pelvis=args.pelvis, aorta_share=args.aorta_share)
        else:
            data = make_refine_planes(seeds, args.workers, fracture_rate=rate, fracture_boost=args.fracture_boost,
                                      ct_share=args.ct_share, max_spacing_mm=args.max_spacing,
                                      slice_sampling=args.slice_sampling, severe_boost=args.severe_boost,
                                      pelvis=args.pelvis, aorta_share=args.aorta_share)
        with atomic_path(cache) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, **data)  # type: ignore[arg-type]  # numpy stubs: savez(file, *args, allow_pickle=..., **kwds)
        print(f"rendered {args.stage} planes into {cache} in {time.time() - t:.0f} s", flush=True)
    init = args.init or str(packaged("landmarks.pt"))
    rc = loop.main(["--stage", args.stage, "--out", args.out, "--minutes", str(args.minutes), "--steps", str(args.steps),
                    "--lr", str(args.lr), "--height-weight", str(args.height_weight), "--height-window", str(args.height_window),
                    "--warmup", "20", "--threads", str(args.threads), "--seed", str(args.seed), "--init", init,
                    "--n-train", str(args.n_train), "--first-seed", str(args.first_seed), "--cache", str(cache)])
    _own_meta(Path(args.out), args.stage, {
        "command": "scripts/train_planes.py " + " ".join(sys.argv[1:]),
        "train_seeds": f"{args.first_seed}..{args.first_seed + args.n_train - 1} of the plane {args.stage} stream "
                       f"in training.planes (phantom CT/MR planes, fracture rate {rate:g}, CT share "
                       f"{args.ct_share:g}, in-plane 0.5-{args.max_spacing:g} mm"
                       + (f", fractured bodies x{1 + args.fracture_boost}" if args.stage == "refine" else "")
                       + (f", grade 2-3 bodies {args.severe_boost} more" if args.stage == "refine" and args.severe_boost else "")
                       + (", axial CT sampled at its slices" if args.slice_sampling else "")
                       + (", bony pelvis drawn" if args.pelvis else "")
                       + (f", an aorta in {args.aorta_share:g} of the CT planes" if args.aorta_share else "") + ")",
        "height_weight": args.height_weight, "height_window": args.height_window, "pelvis": args.pelvis,
        "aorta_share": args.aorta_share})
    return rc


def _own_meta(path: Path, stage: str, fields: dict) -> None:
    """Correct the stage's record (the shared loop names the radiograph script and data)."""
    import fcntl

    import torch

    from sagittal.landmarks.weights import write_checksum

    with open(path.with_name(f".{path.name}.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        blob = torch.load(path, map_location="cpu", weights_only=True)
        blob[stage]["meta"].update(fields)
        with atomic_path(path) as tmp:
            torch.save(blob, tmp)
        write_checksum(path)


if __name__ == "__main__":
    sys.exit(main())
