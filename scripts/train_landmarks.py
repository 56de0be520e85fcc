#!/usr/bin/env python3
"""Train one stage of the landmark model on phantom radiographs only (no real images, no downloads).

    .venv/bin/python scripts/train_landmarks.py --stage coarse --minutes 60 --n-train 4000 --seed 0
    .venv/bin/python scripts/train_landmarks.py --stage refine --minutes 60 --n-train 2500 --seed 0

Each run writes its stage into ``--out`` (default ``models/landmarks.pt``), keeping the other
stage that is already there (read-modify-write under a lock, atomic replace), so the two stages
can train at once, one thread each. Training images are seeds 0 … n-train-1 of the stage's own
stream in ``landmarks.data``; ``scripts/eval_landmarks.py`` renders from another stream. The run
is time-bounded (cosine learning rate over the wall-clock budget) and checkpoints every few
minutes.

Fine-tuning on your own annotated radiographs: build arrays of the same layout as
``make_coarse_dataset`` / ``make_refine_dataset`` (images letterboxed to the coarse grid with
landmarks in model-input pixels; crops from ``landmarks.crops`` with points in crop pixels), save
them with ``np.savez`` and pass them as ``--cache`` with ``--init models/landmarks.pt``.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from sagittal.landmarks.data import make_coarse_dataset, make_refine_dataset
from sagittal.landmarks.model import build
from sagittal.landmarks.preprocess import INPUT_SHAPE
from sagittal.landmarks.targets import (C_HEAD, C_OFFSETS, C_RADIUS, C_S1, COARSE_HEAT, coarse_targets,
                                        refine_targets)


def photometric(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Gamma, contrast, brightness, blur-free noise on top of the renderer's randomisation."""
    img = np.clip(img, 0, 1) ** rng.uniform(0.6, 1.6)
    img = np.clip((img - 0.5) * rng.uniform(0.7, 1.3) + 0.5 + rng.normal(0, 0.05), 0, 1)
    return (img + rng.normal(0, rng.uniform(0, 0.04), img.shape)).astype(np.float32)


# ---------------------------------------------------------------------------------- coarse

def coarse_batch(data, idx, rng):
    imgs, tgts, masks = [], [], []
    for k in idx:
        img = photometric(data["images"][k].astype(np.float32) / 255.0, rng)
        v = data["vertebrae"][k]
        v = v[np.isfinite(v).all(axis=(1, 2))]
        s1 = data["s1"][k] if np.isfinite(data["s1"][k]).all() else None
        ok = np.isfinite(data["heads"][k]).all(axis=1)
        heads, radii = data["heads"][k][ok], data["radii"][k][ok]
        if rng.random() < 0.5:  # mirror: the same spine facing the other way
            w = img.shape[1]
            img = img[:, ::-1]
            mirror = lambda p: np.concatenate([w - 1 - p[..., :1], p[..., 1:]], axis=-1)  # noqa: E731
            v, heads = mirror(v), mirror(heads)
            s1 = None if s1 is None else mirror(s1)
        t, m = coarse_targets(INPUT_SHAPE, v, s1, heads, radii)
        imgs.append(np.ascontiguousarray(img))
        tgts.append(t)
        masks.append(m)
    return (torch.from_numpy(np.stack(imgs))[:, None], torch.from_numpy(np.stack(tgts)),
            torch.from_numpy(np.stack(masks)))


def focal(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """CenterNet's penalty-reduced focal loss over Gaussian heatmaps, per positive."""
    p = torch.sigmoid(logits).clamp(1e-4, 1 - 1e-4)
    pos = (target > 0.99).float()
    l_pos = -((1 - p) ** 2) * torch.log(p) * pos
    l_neg = -((1 - target) ** 4) * p**2 * torch.log(1 - p) * (1 - pos)
    return (l_pos.sum() + l_neg.sum()) / pos.sum().clamp(min=1)


def coarse_loss(pred, target, mask):
    heat = list(COARSE_HEAT)
    l_heat = focal(pred[:, heat], target[:, heat])
    m = mask[:, None]
    l_off = ((pred[:, C_OFFSETS] - target[:, C_OFFSETS]).abs() * m).sum() / (m.sum() * 12 + 1)
    rad_mask = (target[:, C_RADIUS] > 0).float()
    l_rad = ((pred[:, C_RADIUS] - target[:, C_RADIUS]).abs() * rad_mask).sum() / (rad_mask.sum() + 1)
    return l_heat + 10 * l_off + 5 * l_rad, (l_heat.item(), l_off.item(), l_rad.item())


# ---------------------------------------------------------------------------------- refine

def refine_batch(data, idx, rng):
    crops = np.stack([photometric(data["crops"][k].astype(np.float32) / 255.0, rng) for k in idx])
    size = crops.shape[-1]
    tgts = np.stack([refine_targets(size, data["points"][k]) for k in idx])
    return torch.from_numpy(crops)[:, None], torch.from_numpy(tgts)


def refine_loss(pred, target):
    """Cross-entropy of each channel's spatial softmax against its normalised Gaussian,
    averaged over the channels that belong to the crop (their target sums to 1)."""
    b, k, h, w = pred.shape
    logp = F.log_softmax(pred.reshape(b, k, h * w), dim=-1)
    t = target.reshape(b, k, h * w)
    valid = (t.sum(-1) > 0.5).float()
    ce = -(t * logp).sum(-1)
    return (ce * valid).sum() / valid.sum().clamp(min=1), (valid.sum().item(),)


# ---------------------------------------------------------------------------------- common

def save_stage(path: Path, stage: str, model, meta: dict) -> None:
    """Write ``stage`` into the weights file at ``path``, keeping the other stage (locked)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(f".{path.name}.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        blob = torch.load(path, map_location="cpu", weights_only=True) if path.is_file() else {}
        if "coarse" not in blob and "refine" not in blob:
            blob = {}
        blob["format"] = 2
        blob[stage] = {"widths": list(model.widths), "state_dict": model.state_dict(), "meta": meta}
        tmp = path.with_name(f".{path.name}.{stage}.tmp")
        torch.save(blob, tmp)
        os.replace(tmp, path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stage", choices=("coarse", "refine"), required=True)
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--n-train", type=int, default=3000, help="rendered radiographs")
    ap.add_argument("--batch", type=int, default=None, help="16 images (coarse) or 64 crops (refine)")
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--workers", type=int, default=2, help="processes rendering the training set")
    ap.add_argument("--cache", default=None, help="npz of the rendered set (default .cache/<stage>_<n>.npz)")
    ap.add_argument("--init", help="start from the stage's weights in this file (fine-tuning)")
    ap.add_argument("--first-seed", type=int, default=0, help="render seeds first-seed … first-seed + n-train - 1")
    ap.add_argument("--fracture-boost", type=int, default=0,
                    help="refine: spines mostly fractured, this many extra crops per fractured body")
    ap.add_argument("--also", action="append", default=[], metavar="FIRST:N:BOOST",
                    help="refine: add the crops of N more radiographs from seed FIRST with that fracture boost "
                         "(repeatable)")
    ap.add_argument("--out", default="models/landmarks.pt")
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    batch = args.batch or (16 if args.stage == "coarse" else 64)
    t0 = time.time()
    seeds = range(args.first_seed, args.first_seed + args.n_train)
    extra = [tuple(int(v) for v in a.split(":")) for a in args.also]
    key = "_".join(f"{a}-{b}-{c}" for a, b, c in [(args.first_seed, args.n_train, args.fracture_boost), *extra])
    cache = Path(args.cache or f".cache/{args.stage}_{key}.npz")
    if cache.is_file():
        data = dict(np.load(cache))
    elif args.stage == "coarse":
        data = make_coarse_dataset(seeds, workers=args.workers)
    else:
        parts = [make_refine_dataset(range(first, first + n), workers=args.workers, fracture_boost=boost)
                 for first, n, boost in [(args.first_seed, args.n_train, args.fracture_boost), *extra]]
        data = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    if not cache.is_file():
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, **data)
    n = len(data["images"] if args.stage == "coarse" else data["crops"])
    t_data = time.time() - t0
    print(f"{args.stage}: {n} training items in {t_data:.0f} s", flush=True)
    model = build(args.stage)
    if args.init:
        model.load_state_dict(torch.load(args.init, weights_only=True)[args.stage]["state_dict"])
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    out = Path(args.out)
    budget = args.minutes * 60
    start, last_save, it = time.time(), time.time(), 0
    losses = []
    while (frac := (time.time() - start) / budget) < 1:
        for g in opt.param_groups:
            g["lr"] = args.lr * 0.5 * (1 + np.cos(np.pi * frac)) * min(1.0, (it + 1) / 100)
        idx = rng.integers(0, n, batch)
        model.train()
        if args.stage == "coarse":
            x, t, m = coarse_batch(data, idx, rng)
            loss, parts = coarse_loss(model(x), t, m)
        else:
            x, t = refine_batch(data, idx, rng)
            loss, parts = refine_loss(model(x), t)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
        it += 1
        if it % 50 == 0:
            print(f"it {it} {time.time() - start:6.0f}s lr {opt.param_groups[0]['lr']:.2e} loss "
                  f"{np.mean(losses[-50:]):.4f} {tuple(round(p, 4) for p in parts)}", flush=True)
        if time.time() - last_save > 300:
            save_stage(out, args.stage, model, {"iterations": it, "partial": True})
            last_save = time.time()
    meta = {
        "command": "scripts/train_landmarks.py " + " ".join(sys.argv[1:]),
        "stage": args.stage, "iterations": it, "batch": batch, "items_seen": it * batch, "n_train": args.n_train,
        "train_items": n, "train_seeds": "; ".join(f"{a}..{a + b - 1} (fracture boost {c})" for a, b, c in
                                 [(args.first_seed, args.n_train, args.fracture_boost), *extra])
        + f" of the {args.stage} stream in landmarks.data",
        "init": args.init,
        "minutes": args.minutes, "data_seconds": round(t_data), "train_seconds": round(time.time() - start),
        "threads": args.threads, "final_loss": float(np.mean(losses[-100:])), "torch": str(torch.__version__),
    }
    save_stage(out, args.stage, model, meta)
    print(json.dumps(meta), flush=True)


if __name__ == "__main__":
    main()
