#!/usr/bin/env python3
"""Interpolate two landmark weights files stage by stage (WiSE-FT: Wortsman et al. 2022, "Robust
fine-tuning of zero-shot models"): ``(1 - alpha) * START + alpha * TUNED`` for every float tensor.

    .venv/bin/python scripts/interpolate_weights.py START.pt TUNED.pt OUT.pt --alpha 0.5 [--refine-alpha A]

The model card's issue-11 section scored alpha 0.5 and 0.7 (both stages) this way.
"""

from __future__ import annotations

import argparse

import torch

from sagittal.fsio import atomic_path
from sagittal.landmarks.weights import write_checksum


def interpolate(start: dict, tuned: dict, alphas: dict[str, float]) -> dict:
    """The weights blob of ``tuned`` with each stage's float tensors moved back towards ``start``."""
    blob = dict(tuned)
    for stage, a in alphas.items():
        old, new = start[stage]["state_dict"], tuned[stage]["state_dict"]
        sd = {k: (1 - a) * old[k] + a * v if v.is_floating_point() else v for k, v in new.items()}
        meta = {**tuned[stage].get("meta", {}), "wise_ft_alpha": a}
        blob[stage] = {**tuned[stage], "state_dict": sd, "meta": meta}
    return blob


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("start")
    ap.add_argument("tuned")
    ap.add_argument("out")
    ap.add_argument("--alpha", type=float, required=True, help="0 = START, 1 = TUNED (coarse stage, and refine unless set)")
    ap.add_argument("--refine-alpha", type=float, default=None)
    args = ap.parse_args(argv)
    load = lambda p: torch.load(p, map_location="cpu", weights_only=True)  # noqa: E731
    alphas = {"coarse": args.alpha, "refine": args.alpha if args.refine_alpha is None else args.refine_alpha}
    blob = interpolate(load(args.start), load(args.tuned), alphas)
    with atomic_path(args.out) as tmp:
        torch.save(blob, tmp)
    write_checksum(args.out)
    print(f"wrote {args.out} (alpha coarse {alphas['coarse']:g}, refine {alphas['refine']:g})")


if __name__ == "__main__":
    main()
