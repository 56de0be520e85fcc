#!/usr/bin/env python3
"""Train the landmark network on phantom radiographs only (no real images, no downloads).

    .venv/bin/python scripts/train_landmarks.py --minutes 35 --n-train 3000 --seed 0 \\
        --out models/landmarks.pt

Training seeds are 0 … n-train-1 of ``landmarks.data.render_sample``; the evaluation script
uses seeds from 1,000,000 up, never seen here. The run is time-bounded (cosine learning rate
over the wall-clock budget) and checkpoints atomically every few minutes. To fine-tune on
your own annotated radiographs, replace ``make_dataset`` by arrays of the same layout
(images uint8 on the model grid, landmarks in model-input pixels) and pass ``--init``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from sagittal.landmarks.data import make_dataset
from sagittal.landmarks.model import LandmarkNet
from sagittal.landmarks.preprocess import INPUT_SHAPE
from sagittal.landmarks.targets import C_OFFSETS, C_RADIUS, N_CHANNELS, make_targets


def batch_targets(data, idx, flip, rng):
    imgs, tgts, masks = [], [], []
    for k, f in zip(idx, flip):
        img = data["images"][k].astype(np.float32) / 255.0
        v = data["vertebrae"][k]
        v = v[np.isfinite(v).all(axis=(1, 2))]
        s1 = data["s1"][k] if np.isfinite(data["s1"][k]).all() else None
        ok = np.isfinite(data["heads"][k]).all(axis=1)
        heads, radii = data["heads"][k][ok], data["radii"][k][ok]
        # photometric augmentation on top of the renderer's: gamma, contrast, noise
        img = np.clip(img, 0, 1) ** rng.uniform(0.7, 1.4)
        img = np.clip((img - 0.5) * rng.uniform(0.8, 1.25) + 0.5 + rng.normal(0, 0.03), 0, 1)
        img = img + rng.normal(0, rng.uniform(0, 0.03), img.shape).astype(np.float32)
        if f:  # mirror: the same spine facing the other way
            w = img.shape[1]
            img = img[:, ::-1]
            mirror = lambda p: np.concatenate([w - 1 - p[..., :1], p[..., 1:]], axis=-1)  # noqa: E731
            v, heads = mirror(v), mirror(heads)
            s1 = None if s1 is None else mirror(s1)
        t, m = make_targets(INPUT_SHAPE, v, s1, heads, radii)
        imgs.append(np.ascontiguousarray(img, dtype=np.float32))
        tgts.append(t)
        masks.append(m)
    return (torch.from_numpy(np.stack(imgs))[:, None], torch.from_numpy(np.stack(tgts)),
            torch.from_numpy(np.stack(masks)))


def loss_fn(pred, target, mask, heat_channels):
    heat = heat_channels[None, :, None, None]
    w = 1.0 + 20.0 * target
    l_heat = (((pred - target) ** 2) * w * heat).sum() / (heat.sum() * pred.shape[0] * pred.shape[2] * pred.shape[3])
    reg = torch.zeros(N_CHANNELS, dtype=torch.bool)
    reg[C_OFFSETS] = True
    m = mask[:, None]
    l_off = ((pred - target).abs() * m * reg[None, :, None, None]).sum() / (m.sum() * 12 + 1)
    rad_mask = (target[:, C_RADIUS] > 0).float()
    l_rad = ((pred[:, C_RADIUS] - target[:, C_RADIUS]).abs() * rad_mask).sum() / (rad_mask.sum() + 1)
    return 100 * l_heat + l_off + l_rad, (float(l_heat), float(l_off), float(l_rad))


def save(model, path: Path, meta: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save({"widths": list(model.widths), "state_dict": model.state_dict(), "meta": meta}, tmp)
    os.replace(tmp, path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=35.0)
    ap.add_argument("--n-train", type=int, default=3000)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cache", default=".cache/landmark_train.npz")
    ap.add_argument("--init", help="start from these weights (fine-tuning)")
    ap.add_argument("--out", default="models/landmarks.pt")
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    t0 = time.time()
    cache = Path(args.cache)
    if cache.is_file() and len(np.load(cache)["seeds"]) == args.n_train:
        data = dict(np.load(cache))
    else:
        data = make_dataset(range(args.n_train))
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(cache, **data)
    t_data = time.time() - t0
    print(f"dataset: {args.n_train} phantom radiographs in {t_data:.0f} s", flush=True)
    model = LandmarkNet()
    if args.init:
        model.load_state_dict(torch.load(args.init, weights_only=True)["state_dict"])
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    heat_channels = model.is_heat.float()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    budget = args.minutes * 60
    start, last_save, it = time.time(), time.time(), 0
    losses = []
    while True:
        frac = (time.time() - start) / budget
        if frac >= 1:
            break
        for g in opt.param_groups:
            g["lr"] = args.lr * 0.5 * (1 + np.cos(np.pi * frac)) * min(1.0, (it + 1) / 50)
        idx = rng.integers(0, args.n_train, args.batch)
        x, t, m = batch_targets(data, idx, rng.random(args.batch) < 0.5, rng)
        model.train()
        pred = model(x)
        loss, parts = loss_fn(pred, t, m, heat_channels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss))
        it += 1
        if it % 50 == 0:
            print(f"it {it} {time.time() - start:6.0f}s lr {opt.param_groups[0]['lr']:.2e} loss "
                  f"{np.mean(losses[-50:]):.4f} (heat {parts[0]:.5f} off {parts[1]:.4f} rad {parts[2]:.4f})", flush=True)
        if time.time() - last_save > 300:
            save(model, out, {"iterations": it, "partial": True})
            last_save = time.time()
    meta = {
        "command": "scripts/train_landmarks.py " + " ".join(sys.argv[1:]),
        "iterations": it, "batch": args.batch, "images_seen": it * args.batch, "n_train": args.n_train,
        "train_seeds": f"0..{args.n_train - 1} of landmarks.data.render_sample", "minutes": args.minutes,
        "data_seconds": round(t_data), "train_seconds": round(time.time() - start), "threads": args.threads,
        "final_loss": float(np.mean(losses[-100:])), "torch": torch.__version__,
    }
    save(model, out, meta)
    print(json.dumps(meta), flush=True)


if __name__ == "__main__":
    main()
