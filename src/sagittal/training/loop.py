"""The time-bounded training loop of one landmark stage, its batches and its checkpoints.

``main(argv)`` is what ``scripts/train_landmarks.py`` runs. Each run writes its stage into
``--out``, keeping the other stage that is already there (read-modify-write under a lock,
atomic replace, SHA-256 sidecar rewritten), so the two stages can train at once, one thread
each. The run is bounded in wall-clock minutes (cosine learning rate over the budget) and
checkpoints every few minutes, so an interrupted run leaves usable weights; ``--steps`` also
bounds it in iterations (for runs that may be paused).
"""

from __future__ import annotations

import argparse
import fcntl
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from ..fsio import atomic_path
from ..landmarks.crops import CROP
from ..landmarks.model import UNet, build
from ..landmarks.preprocess import INPUT_SHAPE
from ..landmarks.weights import write_checksum
from .data import FAMILIES, make_coarse_dataset, make_refine_dataset, unsharp
from .losses import anchor_penalty, coarse_loss, height_ratio_loss, parameter_snapshot, refine_loss
from .targets import coarse_targets, refine_targets

CHECKPOINT_S = 300.0


def photometric(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Gamma, contrast, brightness and noise on top of the renderer's randomisation."""
    img = np.clip(img, 0, 1) ** rng.uniform(0.6, 1.6)
    img = np.clip((img - 0.5) * rng.uniform(0.7, 1.3) + 0.5 + rng.normal(0, 0.05), 0, 1)
    return (img + rng.normal(0, rng.uniform(0, 0.04), img.shape)).astype(np.float32)


def regional_look(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Processing the renderers never apply, drawn afresh per call: ``(H, W)`` in [0, 1] → the
    same shape, float32, renormalised to [0, 1] (1st–99.5th percentile, as ``normalise``).

    A smooth gain and offset field over a 2–5 × 2–4 grid (regions that read differently, as the
    lungs behind the thoracic spine against the abdomen), edge enhancement (an unsharp mask 1–8 %
    of the image wide, as DR processing does) or a slight blur, and now and then local
    equalisation (CLAHE). Exact zeros stay zero: the letterbox padding, and with it the darkest
    pixels ``normalise`` clipped to 0 (about 1 % of the image)."""
    import cv2

    x = np.asarray(img, np.float32)
    pad = x <= 0
    h, w = x.shape
    out = x.copy()
    if rng.random() < 0.7:
        gy, gx = int(rng.integers(2, 6)), int(rng.integers(2, 5))
        gain = cv2.resize(np.exp(rng.normal(0, 0.35, (gy, gx))).astype(np.float32), (w, h),
                          interpolation=cv2.INTER_CUBIC)
        offset = cv2.resize(rng.normal(0, 0.12, (gy, gx)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
        out = out * gain + offset
    if rng.random() < 0.5:
        sigma = float(rng.uniform(0.01, 0.08)) * max(h, w)
        out = unsharp(out, sigma, float(rng.uniform(0.3, 2.0)))
    elif rng.random() < 0.3:
        out = np.asarray(cv2.GaussianBlur(out, (0, 0), float(rng.uniform(0.5, 1.5))), np.float32)
    if rng.random() < 0.2:
        u8 = np.clip(out * 255, 0, 255).astype(np.uint8)
        tiles = int(rng.integers(2, 8))
        clahe = cv2.createCLAHE(clipLimit=float(rng.uniform(1.5, 4.0)), tileGridSize=(tiles, tiles))
        out = np.asarray(clahe.apply(u8), np.float32) / 255.0
    body = out[~pad] if (~pad).any() else out.ravel()
    lo, hi = np.percentile(body, (1.0, 99.5))
    out = np.clip((out - lo) / max(float(hi - lo), 1e-6), 0.0, 1.0)
    out[pad] = 0.0
    return out.astype(np.float32)


#: the range of ``rescaled``'s factor: bodies 0.55–1.7 × as large in the model's input as the
#: film's own letterbox makes them (the training fields' per-film body sizes span about 6–16 px;
#: longer and tighter films than any field draws fall outside, models/README.md *Limits*)
RESCALE_RANGE = (0.55, 1.7)


def rescaled(img: np.ndarray, v: np.ndarray, s1: np.ndarray | None, heads: np.ndarray, radii: np.ndarray,
             rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray, np.ndarray]:
    """The letterboxed image and its geometry as a film framed longer or tighter would give them:
    scaled by a factor drawn log-uniformly from ``RESCALE_RANGE`` about a random point of the
    spine (shrunk: zero margins; enlarged: cropped). Bodies, S1 and heads that leave the input are
    dropped, as for a field that cuts them."""
    import cv2

    h, w = img.shape
    f = float(np.exp(rng.uniform(*np.log(RESCALE_RANGE))))
    pts = v.reshape(-1, 2) if len(v) else np.array([[w / 2, h / 2]])
    about = pts[rng.integers(len(pts))] if f > 1 else np.array([w / 2, h / 2])
    centre = np.array([w / 2, h / 2]) + rng.uniform(-0.25, 0.25, 2) * [w, h] * (f > 1)
    m = np.array([[f, 0, centre[0] - f * about[0]], [0, f, centre[1] - f * about[1]]], np.float32)
    out = cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderValue=0.0)

    def move(p: np.ndarray) -> np.ndarray:
        return p * f + m[:, 2]

    def inside(p: np.ndarray) -> np.ndarray:  # per point (..., 2) -> (...)
        return (p[..., 0] >= 0) & (p[..., 0] <= w - 1) & (p[..., 1] >= 0) & (p[..., 1] <= h - 1)

    v2 = move(v) if len(v) else v
    v2 = v2[inside(v2).all(axis=-1)] if len(v2) else v2
    s2 = None if s1 is None else move(s1)
    s2 = s2 if s2 is not None and inside(s2).all() else None
    h2 = move(heads) if len(heads) else heads
    keep = inside(h2) if len(h2) else np.zeros(0, bool)
    return out.astype(np.float32), v2, s2, h2[keep], radii[keep] * f


def coarse_batch(data: dict[str, np.ndarray], idx: np.ndarray,
                 rng: np.random.Generator, rescale: float = 0.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Images ``(B, 1, rows, cols)``, targets and offset masks for the items ``idx``; half mirrored,
    ``rescale`` of them ``rescaled``."""
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

            def mirror(p: np.ndarray, w: int = w) -> np.ndarray:
                return np.concatenate([w - 1 - p[..., :1], p[..., 1:]], axis=-1)

            v, heads = mirror(v), mirror(heads)
            s1 = None if s1 is None else mirror(s1)
        if rescale and rng.random() < rescale:
            img, v, s1, heads, radii = rescaled(img, v, s1, heads, radii, rng)
        t, m = coarse_targets(INPUT_SHAPE, v, s1, heads, radii)
        imgs.append(np.ascontiguousarray(img))
        tgts.append(t)
        masks.append(m)
    return (torch.from_numpy(np.stack(imgs))[:, None], torch.from_numpy(np.stack(tgts)),
            torch.from_numpy(np.stack(masks)))


def refine_batch(data: dict[str, np.ndarray], idx: np.ndarray, rng: np.random.Generator,
                 looks: np.ndarray | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Crops ``(B, 1, S, S)`` and their targets; ``looks[j]``: item ``j`` gets ``regional_look``."""
    raw = [data["crops"][k].astype(np.float32) / 255.0 for k in idx]
    if looks is not None:
        raw = [regional_look(c, rng) if looks[j] else c for j, c in enumerate(raw)]
    crops = np.stack([photometric(c, rng) for c in raw])
    size = crops.shape[-1]
    tgts = np.stack([refine_targets(size, data["points"][k]) for k in idx])
    return torch.from_numpy(crops)[:, None], torch.from_numpy(tgts)


def save_stage(path: Path, stage: str, model: UNet, meta: dict) -> None:
    """Write ``stage`` into the weights file at ``path``, keeping the other stage (locked), and
    rewrite its ``.sha256`` sidecar."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(f".{path.name}.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        blob = torch.load(path, map_location="cpu", weights_only=True) if path.is_file() else {}
        if "coarse" not in blob and "refine" not in blob:
            blob = {}
        blob["format"] = 2
        blob[stage] = {"widths": list(model.widths), "state_dict": model.state_dict(), "meta": meta}
        with atomic_path(path) as tmp:
            torch.save(blob, tmp)
        write_checksum(path)


def _parts(args: argparse.Namespace) -> list[tuple[str, int, int, int, float]]:
    """``(family, first seed, n, fracture boost, degradation chance)`` of every data part."""
    parts = [(args.family, args.first_seed, args.n_train, args.fracture_boost, args.augment)]
    for spec in args.also:
        f = spec.split(":")
        family = f.pop(0) if f[0] in FAMILIES else "2d"
        parts.append((family, int(f[0]), int(f[1]), int(f[2]) if len(f) > 2 else 0,
                      float(f[3]) if len(f) > 3 else args.augment))
    return [p for p in parts if p[2] > 0]


def build_data(args: argparse.Namespace) -> dict[str, np.ndarray]:
    """Render (or load from the cache) every data part of the run, concatenated."""
    out = []
    for family, first, n, boost, aug in _parts(args):
        key = f"{args.stage}_{family}_{first}-{n}-{boost}_aug{aug:g}"
        cache = Path(args.cache) if args.cache and len(_parts(args)) == 1 else Path(args.cache_dir) / f"{key}.npz"
        if cache.is_file():
            part = dict(np.load(cache))
        else:
            seeds = range(first, first + n)
            if args.stage == "coarse":
                part = make_coarse_dataset(seeds, workers=args.workers, family=family, augment=aug)
            else:
                part = make_refine_dataset(seeds, workers=args.workers, fracture_boost=boost, family=family,
                                           augment=aug)
            with atomic_path(cache) as tmp:
                with open(tmp, "wb") as fh:
                    np.savez(fh, **part)  # type: ignore[arg-type]
        n_items = len(part["images"] if args.stage == "coarse" else part["crops"])
        part["family"] = np.full(n_items, FAMILIES.index(family), np.int8)
        out.append(part)
    return {k: np.concatenate([p[k] for p in out]) for k in out[0]}


def grow(data: dict[str, np.ndarray], patterns: list[str], seen: set[str]) -> list[str]:
    """Append to ``data`` (in place) every cached part file matching ``patterns`` not in ``seen``
    (written meanwhile by a ``--prepare-only`` run); the family is read from the file name
    (``<stage>_<family>_<first>-<n>-<boost>_aug<p>.npz``). Returns the files added."""
    import glob

    added = []
    for pattern in patterns:
        for f in sorted(glob.glob(pattern)):
            if f in seen:
                continue
            family = Path(f).name.split("_")[1]
            part = dict(np.load(f))
            n_items = len(part["images"] if "images" in part else part["crops"])
            part["family"] = np.full(n_items, FAMILIES.index(family), np.int8)
            for k in data:
                data[k] = np.concatenate([data[k], part[k]])
            seen.add(f)
            added.append(f)
    return added


def sampling_weights(family: np.ndarray, mix: list[str]) -> np.ndarray | None:
    """Per-item draw probabilities so that each family named in ``mix`` (``FAMILY=SHARE``) makes
    that share of every batch, the rest shared by the other families in proportion to their size;
    ``None`` (uniform) without ``mix``."""
    if not mix:
        return None
    shares = {FAMILIES.index(f): float(v) for f, v in (m.split("=") for m in mix)}
    present = set(np.unique(family).tolist())
    rest = 1.0 - sum(v for k, v in shares.items() if k in present)
    n_rest = int(sum((family == k).sum() for k in present if k not in shares))
    w = np.zeros(len(family))
    for k in present:
        sel = family == k
        w[sel] = shares[k] / sel.sum() if k in shares else max(rest, 0.0) / max(n_rest, 1)
    return w / w.sum()


def _step(stage: str, model: UNet, data: dict[str, np.ndarray], idx: np.ndarray,
          rng: np.random.Generator, rescale: float = 0.0,
          height_weight: float = 0.0, height_window: int = 0) -> tuple[torch.Tensor, tuple[float, ...]]:
    model.train()
    if stage == "coarse":
        x, t, m = coarse_batch(data, idx, rng, rescale)
        return coarse_loss(model(x), t, m)
    x, t = refine_batch(data, idx, rng)
    pred = model(x)
    loss, parts = refine_loss(pred, t)
    if height_weight:
        l_h = height_ratio_loss(pred, torch.from_numpy(data["points"][idx].astype(np.float32)), height_window)
        loss, parts = loss + height_weight * l_h, (*parts, l_h.item())
    return loss, parts


def train(args: argparse.Namespace, log: Callable[[str], None] = print) -> dict:
    """Train one stage as ``args`` says; return the run's record (also stored in the file)."""
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    batch = args.batch or (16 if args.stage == "coarse" else 64)
    t0 = time.time()
    data = build_data(args)
    n = len(data["images"] if args.stage == "coarse" else data["crops"])
    t_data = time.time() - t0
    log(f"{args.stage}: {n} training items in {t_data:.0f} s")
    if args.prepare_only:
        return {"stage": args.stage, "train_items": n, "data_seconds": round(t_data)}
    model = build(args.stage)
    if args.init:
        model.load_state_dict(torch.load(args.init, weights_only=True)[args.stage]["state_dict"])
    start_params = parameter_snapshot(model) if args.anchor else {}
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0 if args.anchor else 1e-4)
    out = Path(args.out)
    budget = args.minutes * 60
    start, last_save, it = time.time(), time.time(), 0
    losses: list[float] = []
    seen = {str(Path(args.cache_dir) / f"{args.stage}_{fam}_{a}-{b}-{c}_aug{g:g}.npz") for fam, a, b, c, g in _parts(args)}
    grown = grow(data, args.grow, seen)
    n = len(data["family"])
    p = sampling_weights(data["family"], args.mix)
    while (frac := max((time.time() - start) / budget, it / args.steps if args.steps else 0.0)) < 1:
        for g in opt.param_groups:
            g["lr"] = args.lr * 0.5 * (1 + np.cos(np.pi * frac)) * min(1.0, (it + 1) / args.warmup)
        loss, parts = _step(args.stage, model, data, rng.choice(n, batch, p=p), rng, args.rescale,
                            args.height_weight, args.height_window)
        if args.anchor:
            loss = loss + args.anchor * anchor_penalty(model, start_params)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
        it += 1
        if it % 50 == 0:
            log(f"it {it} {time.time() - start:6.0f}s lr {opt.param_groups[0]['lr']:.2e} loss "
                f"{np.mean(losses[-50:]):.4f} {tuple(round(p, 4) for p in parts)}")
        if time.time() - last_save > CHECKPOINT_S:
            save_stage(out, args.stage, model.eval(), {"iterations": it, "partial": True})
            last_save = time.time()
            if args.grow and (added := grow(data, args.grow, seen)):
                grown += added
                n = len(data["family"])
                p = sampling_weights(data["family"], args.mix)
                log(f"grew by {len(added)} part(s) to {n} items")
    meta = {
        "command": "scripts/train_landmarks.py " + " ".join(args.argv),
        "stage": args.stage, "iterations": it, "batch": batch, "items_seen": it * batch, "n_train": args.n_train,
        "train_items": n,
        "train_seeds": "; ".join(f"{fam} {a}..{a + b - 1} (fracture boost {c}, degraded p={g:g})"
                                 for fam, a, b, c, g in _parts(args)) + f" of the {args.stage} stream in training.data",
        "grown_from": [Path(f).name for f in grown], "mix": args.mix, "init": args.init, "anchor": args.anchor,
        "minutes": args.minutes, "steps": args.steps, "rescale": args.rescale,
        "data_seconds": round(t_data),
        "train_seconds": round(time.time() - start), "threads": args.threads,
        "final_loss": float(np.mean(losses[-100:])) if losses else None, "torch": str(torch.__version__),
    }
    save_stage(out, args.stage, model.eval(), meta)
    return meta


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description="Train one stage of the landmark model on phantom radiographs only "
                                             "(no real images, no downloads).")
    ap.add_argument("--stage", choices=("coarse", "refine"), required=True)
    ap.add_argument("--out", required=True, help="weights file to write the stage into (other stage kept)")
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--steps", type=int, default=0,
                    help="also stop after this many iterations (the cosine schedule follows whichever bound is nearer)")
    ap.add_argument("--n-train", type=int, default=3000, help="rendered radiographs of the main part")
    ap.add_argument("--family", choices=FAMILIES, default="2d", help="renderer family of the main part")
    ap.add_argument("--batch", type=int, default=None, help="16 images (coarse) or 64 crops (refine)")
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--warmup", type=int, default=100, help="iterations of linear learning-rate warm-up")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--workers", type=int, default=1, help="processes rendering the training set")
    ap.add_argument("--augment", type=float, default=0.0,
                    help="chance that a rendered radiograph gets heavy degradation (8-bit, LUT, equalisation, "
                         "noise, blur, JPEG, field cuts, zoom; training.data.degrade)")
    ap.add_argument("--height-weight", type=float, default=0.0,
                    help="refine: weight of the height-ratio term (training.losses.height_ratio_loss)")
    ap.add_argument("--height-window", type=int, default=0,
                    help="refine: read the height term's points over this radius about each peak (0: whole map)")
    ap.add_argument("--rescale", type=float, default=0.0,
                    help="coarse: the share of images shown as a longer or tighter film would give them "
                         "(bodies 0.55-1.7x as large; loop.rescaled)")
    ap.add_argument("--anchor", type=float, default=0.0,
                    help="L2-SP weight: penalise the squared distance from the --init weights (no weight decay then)")
    ap.add_argument("--cache", default=None, help="npz of the rendered set when it has one part")
    ap.add_argument("--cache-dir", default="/tmp/sagittal-train", help="where rendered parts are cached")
    ap.add_argument("--init", help="start from the stage's weights in this file (fine-tuning)")
    ap.add_argument("--first-seed", type=int, default=0, help="render seeds first-seed … first-seed + n-train - 1")
    ap.add_argument("--fracture-boost", type=int, default=0,
                    help="refine: spines mostly fractured, this many extra crops per fractured body")
    ap.add_argument("--also", action="append", default=[], metavar="[FAMILY:]FIRST:N[:BOOST[:AUGMENT]]",
                    help="add N more radiographs from seed FIRST of that family (default 2d) with that fracture "
                         "boost (refine) and degradation chance (default --augment) (repeatable)")
    ap.add_argument("--prepare-only", action="store_true", help="render and cache the data, then stop")
    ap.add_argument("--grow", action="append", default=[], metavar="GLOB",
                    help="at every checkpoint, add cached part files matching GLOB that a --prepare-only run has "
                         "written meanwhile (repeatable)")
    ap.add_argument("--mix", action="append", default=[], metavar="FAMILY=SHARE",
                    help="draw that share of every batch from that family's items (default: uniform over items)")
    return ap


def height_options_error(stage: str, weight: float, window: int) -> str | None:
    """Why ``--height-weight`` / ``--height-window`` are refused for ``stage``, or None."""
    if not weight >= 0:  # NaN too
        return "--height-weight is a weight >= 0"
    if (weight or window) and stage != "refine":
        return "--height-weight and --height-window are the refinement's (a body's six points in its crop)"
    if not 0 <= window < CROP // 2:
        return f"--height-window is a radius in pixels, 0 (the whole map) to {CROP // 2 - 1}"
    if window and not weight:
        return "--height-window reads the height term's points: it needs --height-weight"
    return None


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = parser()
    args = ap.parse_args(argv)
    if not 0.0 <= args.rescale <= 1.0 or (args.rescale and args.stage != "coarse"):
        ap.error("--rescale is a share in [0, 1] of coarse images (the refinement's crops are framed on each body)")
    if (why := height_options_error(args.stage, args.height_weight, args.height_window)) is not None:
        ap.error(why)
    args.argv = argv
    meta = train(args, log=lambda m: print(m, flush=True))
    print(json.dumps(meta), flush=True)
    return 0
