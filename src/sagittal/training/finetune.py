"""``sagittal finetune``: adapt both landmark stages to a user's annotated radiographs.

Starts from the shipped weights (or ``--init``), splits the annotated images into a training
and a held-out part (seeded, by image), and trains both stages (``coarse`` and ``refine``; a
second coarse network the start holds, ``coarse2``, is left out of the output, since untuned it
would compete with the tuned one on every image) for a wall-clock budget with losses masked to
what is annotated:

- coarse: a body's centre heatmap needs its four corners; each of the six points' offsets is
  supervised only where that point is annotated; the S1 and femoral-head channels only on
  images where they are annotated; and, on a user's image, the heatmaps are not penalised
  above the highest or below the lowest annotated structure (a T12 that nobody annotated is
  not taught as background);
- refine: crops about every annotated body (and S1, and the hips when both heads and radii
  are annotated), jittered as the coarse stage would place them; a point not annotated has an
  all-zero target and no loss (``targets.refine_targets``).

Phantom radiographs (``training.data``, 2-D family, fully annotated, rendered as the shipped
weights were trained: plain, and for the refinement mostly fractured with extra crops per
fractured body) make up ``phantom_share`` of every coarse batch and ``refine_phantom_share`` of
every refinement batch, so what users rarely annotate (femoral heads, C7, the thoracic spine)
and the original look are not forgotten. Two more guards keep the original look:

- BatchNorm running statistics stay frozen (``freeze_bn``): in training mode they would drift
  to the statistics of the user's look and shift every original-look image at inference, however
  small the learning rate;
- an L2-SP penalty (``anchor``; ``losses.anchor_penalty``, Li et al. 2018) pulls the weights
  towards the starting ones, and weight decay is off then (it would pull them towards zero).

The held-out split is evaluated (``training.evaluate``) before and after; the
record goes into the weights file (``training_record`` and each stage's ``meta``) with a
``.sha256`` sidecar, and ``sagittal analyze --weights FILE`` loads it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..levels import LEVELS
from .annotations import Annotation

FINETUNE_STREAM = 7_000_011  # phantom seeds of the mixed-in data (distinct from training and evaluation)
# The default recipe: the best measured by scripts/finetune_experiment.py (models/README.md,
# "Fine-tuning experiment"). L2-SP weights: losses.anchor_penalty.
PHANTOM_SHARE, LR, ANCHOR, DISTILL = 0.5, 3e-4, 0.1, 5.0  # coarse stage (run 7)
REFINE_PHANTOM_SHARE, REFINE_LR, REFINE_ANCHOR, REFINE_DISTILL = 0.85, 1e-4, 0.5, 5.0  # refinement stage (run 7)
STEPS, REFINE_STEPS = 600, 1500  # optimizer steps of each stage (run 7)
# DISTILL: weight of the coarse stage's output distillation on the phantoms (coarse_distillation_loss);
# REFINE_DISTILL: the refinement's (losses.distillation_loss)
PHANTOM_FRACTURE_BOOST = 3  # extra refinement crops per fractured phantom body, as in the shipped training's step 4


# --------------------------------------------------------------------------- data (numpy)
def decoded(path: Path, ann: Annotation, spacing: tuple[float, float] | None) -> tuple[np.ndarray, Annotation]:
    """The image as the analysis decodes it (``batch.radiograph.prepare``) and the annotation
    scaled to its pixels (DICOM may be decoded at reduced resolution)."""
    from ..api import unit_of
    from ..batch.units import kinds
    from .evaluate import RASTER_SUFFIXES, read_raster

    src: Any = read_raster(path) if path.suffix.lower() in RASTER_SUFFIXES else path
    prep = kinds()["radiograph"].prepare(unit_of(src, spacing or ann.spacing_mm))
    s = float(prep.pixel_scale)
    if abs(s - 1.0) < 1e-9:
        return np.asarray(prep.image, np.float32), ann

    def sc(p: np.ndarray) -> np.ndarray:
        return (p + 0.5) * s - 0.5

    return np.asarray(prep.image, np.float32), Annotation(ann.name, ann.source, sc(ann.vertebrae), sc(ann.s1),
                                                          sc(ann.heads), ann.radii * s, ann.spacing_mm, ann.facing)


def facing_of(ann: Annotation) -> str:
    """The side the annotated patient faces (the format's word, else the annotated corners)."""
    if ann.facing:
        return ann.facing
    v = ann.vertebrae
    ant = np.nanmean(v[:, [0, 3], 0]) if np.isfinite(v[:, [0, 3], 0]).any() else math.nan
    post = np.nanmean(v[:, [1, 2], 0]) if np.isfinite(v[:, [1, 2], 0]).any() else math.nan
    if math.isfinite(ant) and math.isfinite(post):
        return "right" if ant > post else "left"
    if np.isfinite(ann.s1).all():
        return "right" if ann.s1[0, 0] > ann.s1[1, 0] else "left"
    return "right"


def coarse_item(image: np.ndarray, ann: Annotation) -> tuple[np.ndarray, ...]:
    """One user image on the coarse grid, as ``make_coarse_dataset`` rows (NaN = not annotated)."""
    from ..landmarks.preprocess import letterbox, normalise

    img, lb = letterbox(normalise(image))
    return (np.round(img * 255).astype(np.uint8), lb.to_input(ann.vertebrae).astype(np.float32),
            lb.to_input(ann.s1).astype(np.float32), lb.to_input(ann.heads).astype(np.float32),
            (ann.radii * lb.scale).astype(np.float32))


def refine_items(image: np.ndarray, ann: Annotation, rng: np.random.Generator, copies: int = 3) -> list[tuple]:
    """Jittered crops about each annotated structure: ``(crop uint8, kind code, points (10, 2))``."""
    from ..landmarks.crops import extract, hips_frame, s1_frame, vertebra_frame
    from ..landmarks.preprocess import normalise
    from .data import KIND_CODES, jittered
    from .targets import head_order

    img = normalise(image)
    mirror = facing_of(ann) == "left"
    out = []
    for i in range(len(LEVELS)):
        pts = ann.vertebrae[i]
        if not np.isfinite(pts[:4]).all():
            continue
        for _ in range(copies):
            f = jittered(vertebra_frame(pts, mirror), rng)
            pad = np.full((10, 2), np.nan, np.float32)
            pad[:6] = f.to_crop(pts)
            out.append((extract(img, f), KIND_CODES["vertebra"], pad))
    if np.isfinite(ann.s1).all():
        for _ in range(copies):
            f = jittered(s1_frame(ann.s1, mirror), rng)
            pad = np.full((10, 2), np.nan, np.float32)
            pad[6:8] = f.to_crop(ann.s1)
            out.append((extract(img, f), KIND_CODES["s1"], pad))
    if np.isfinite(ann.heads).all() and np.isfinite(ann.radii).all():
        for _ in range(copies):
            f = jittered(hips_frame(ann.heads, ann.radii, mirror), rng)
            q = f.to_crop(ann.heads)
            pad = np.full((10, 2), np.nan, np.float32)
            pad[8:10] = q[head_order(q)]
            out.append((extract(img, f), KIND_CODES["hips"], pad))
    return [(np.round(c * 255).astype(np.uint8), k, p) for c, k, p in out]


def _body_targets(t: np.ndarray, off_m: np.ndarray, pts: np.ndarray) -> None:
    """One body's centre heatmap and offsets, each point's offsets masked where it is not annotated."""
    from ..landmarks.layout import C_CENTRE, C_OFFSETS, OFFSET_UNIT, to_cells, to_input
    from .targets import splat

    h, w = off_m.shape[1:]
    c = to_cells(pts[:4].mean(axis=0))
    splat(t[C_CENTRE], c, 1.0)
    ix, iy = int(round(c[0])), int(round(c[1]))
    ok = np.repeat(np.isfinite(pts).all(axis=1), 2).astype(np.float32)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            x, y = ix + dx, iy + dy
            if 0 <= x < w and 0 <= y < h:
                t[C_OFFSETS, y, x] = np.nan_to_num((pts - to_input(np.array([x, y]))) / OFFSET_UNIT).ravel()
                off_m[:, y, x] = ok


def masked_coarse_targets(shape: tuple[int, int], verts: np.ndarray, s1: np.ndarray, heads: np.ndarray,
                          radii: np.ndarray, user: bool) -> tuple[np.ndarray, ...]:
    """Targets ``(17, h, w)``, heat weights ``(4, h, w)`` (``COARSE_HEAT`` order), offset mask
    ``(12, h, w)`` and radius mask ``(h, w)``; inputs in model-input pixels, NaN = not annotated."""
    from ..landmarks.layout import (
        C_HEAD,
        C_RADIUS,
        C_S1,
        COARSE_CHANNELS,
        RADIUS_UNIT,
        to_cells,
    )
    from ..landmarks.layout import COARSE_STRIDE as ST
    from .targets import splat

    h, w = shape[0] // ST, shape[1] // ST
    t = np.zeros((COARSE_CHANNELS, h, w), np.float32)
    heat_w = np.ones((4, h, w), np.float32)
    off_m = np.zeros((12, h, w), np.float32)
    rad_m = np.zeros((h, w), np.float32)
    for pts in verts:
        if np.isfinite(pts[:4]).all():
            _body_targets(t, off_m, pts)
    for k in range(2):
        if np.isfinite(s1[k]).all():
            splat(t[C_S1.start + k], to_cells(s1[k]), 1.0)
        elif user:
            heat_w[1 + k] = 0.0
    have_heads = np.isfinite(heads).all(axis=1)
    for c, r, ok in zip(heads, radii, have_heads, strict=True):
        if not ok:
            continue
        cc = to_cells(c)
        splat(t[C_HEAD], cc, 1.5)
        if math.isfinite(float(r)):
            ix, iy = int(round(cc[0])), int(round(cc[1]))
            t[C_RADIUS, max(0, iy - 1):iy + 2, max(0, ix - 1):ix + 2] = r / RADIUS_UNIT
            rad_m[max(0, iy - 1):iy + 2, max(0, ix - 1):ix + 2] = 1.0
    if user:
        _user_heat_weights(heat_w, verts, s1, heads)
    return t, heat_w, off_m, rad_m


def _user_heat_weights(heat_w: np.ndarray, verts: np.ndarray, s1: np.ndarray, heads: np.ndarray) -> None:
    """On a user's image: no head heatmap loss without annotated heads, and no body-centre loss
    above the highest or below the lowest annotated point (what nobody annotated is not background)."""
    from ..landmarks.layout import to_cells

    if not np.isfinite(heads).all(axis=1).any():
        heat_w[3] = 0.0
    ys = np.concatenate([verts[..., 1].ravel(), s1[:, 1], heads[:, 1]])
    ys = ys[np.isfinite(ys)]
    if not len(ys):
        heat_w[0] = 0.0
        return
    top, bot = to_cells(np.array([0.0, ys.min()]))[1] - 2, to_cells(np.array([0.0, ys.max()]))[1] + 2
    rows = np.arange(heat_w.shape[1])
    heat_w[0, (rows < top) | (rows > bot)] = 0.0


def _fill_noise(img: np.ndarray, pts: np.ndarray, rng: np.random.Generator) -> bool:
    """Fill the box of ``pts (n, 2)`` (2 px of margin) in ``img (h, w)`` with noise of the box's own
    range — uniform, Gaussian or blurred — in place; False when the box is (nearly) outside."""
    h, w = img.shape
    x0, y0 = np.maximum(np.floor(pts.min(axis=0)).astype(int) - 2, 0)
    x1, y1 = np.minimum(np.ceil(pts.max(axis=0)).astype(int) + 3, [w, h])
    region = img[y0:y1, x0:x1]
    if region.size < 4:
        return False
    lo, hi = float(region.min()), float(region.max())
    kind = rng.integers(3)
    noise: np.ndarray
    if kind == 0:
        noise = rng.uniform(lo, hi, region.shape)
    elif kind == 1:
        noise = rng.normal(float(region.mean()), float(region.std()) + 1e-3, region.shape)
    else:
        import cv2

        noise = np.asarray(cv2.GaussianBlur(rng.uniform(lo, hi, region.shape).astype(np.float32), (0, 0),
                                            rng.uniform(0.7, 2.0)), float)
    img[y0:y1, x0:x1] = np.clip(noise, 0.0, 1.0)
    return True


def erase_body(img: np.ndarray, verts: np.ndarray, rng: np.random.Generator) -> int | None:
    """Hard negative for the coarse stage, in place: one annotated body's box filled with noise
    (``_fill_noise``) and its points set to NaN, so the centre heatmap is taught background there:
    a body replaced by noise (a defect, a burnt-out region of an export) must not be found.
    ``img (h, w)`` float, ``verts (V, 6, 2)`` in its pixels. Returns the body's index, or None when
    no body has its four corners."""
    ok = np.flatnonzero(np.isfinite(verts[:, :4]).all(axis=(1, 2)))
    if not len(ok):
        return None
    i = int(rng.choice(ok))
    if not _fill_noise(img, verts[i][np.isfinite(verts[i]).all(axis=1)], rng):
        return None
    verts[i] = np.nan
    return i


def erase_crops(crops: np.ndarray, targets: np.ndarray, kinds: np.ndarray, points: np.ndarray, rate: float,
                rng: np.random.Generator) -> np.ndarray:
    """Hard negatives for the refinement, in place: in a share ``rate`` of the body crops the body
    itself is filled with noise (``_fill_noise``) and its six maps are taught uniform — nothing to
    place — so that the points of a body that is not there come out diffuse, their confidence low,
    and the body is withheld (``postprocess.MIN_POINT_CONFIDENCE``). ``crops (B, S, S)`` float,
    ``targets (B, 10, S, S)``, ``kinds (B,)``, ``points (B, 10, 2)`` crop pixels. Returns which
    crops were erased ``(B,)``."""
    from .data import KIND_CODES

    erased = np.zeros(len(crops), bool)
    size = crops.shape[-1]
    for j in range(len(crops)):
        pts = points[j, :4]
        if kinds[j] != KIND_CODES["vertebra"] or not np.isfinite(pts).all() or rng.random() >= rate:
            continue
        if _fill_noise(crops[j], pts, rng):
            targets[j, :6] = 1.0 / (size * size)
            erased[j] = True
    return erased


# --------------------------------------------------------------------------- training (torch)
def _coarse_batch(data: dict[str, np.ndarray], idx: np.ndarray, rng: np.random.Generator,
                  erase: float = 0.0, look: float = 0.0) -> tuple[Any, ...]:
    """Images ``(B, 1, rows, cols)``, masked targets, heat weights, offset and radius masks, and
    which items had a body erased (``erase_body``, probability ``erase``). A user image gets
    ``loop.regional_look`` with probability ``look`` (the phantoms keep their look: they are the
    ones distilled)."""
    import torch

    from ..landmarks.preprocess import INPUT_SHAPE
    from .loop import photometric, regional_look

    cols: list[list[np.ndarray]] = [[], [], [], [], []]
    erased = np.zeros(len(idx), bool)
    for j, k in enumerate(idx):
        img = data["images"][k].astype(np.float32) / 255.0
        if look > 0 and data["user"][k] and rng.random() < look:
            img = regional_look(img, rng)
        img = photometric(img, rng)
        v, s1, heads, radii = (data[n][k].copy() for n in ("vertebrae", "s1", "heads", "radii"))
        if erase > 0 and rng.random() < erase:
            erased[j] = erase_body(img, v, rng) is not None
        if rng.random() < 0.5:  # the same spine facing the other way
            wd = img.shape[1]
            img = img[:, ::-1]
            for a in (v, s1, heads):
                a[..., 0] = wd - 1 - a[..., 0]
        t, hw, om, rm = masked_coarse_targets(INPUT_SHAPE, v, s1, heads, radii, bool(data["user"][k]))
        for c, a in zip(cols, (np.ascontiguousarray(img), t, hw, om, rm), strict=True):
            c.append(a)
    x, *rest = (torch.from_numpy(np.stack(c)) for c in cols)
    return (x[:, None], *rest, erased)


def masked_coarse_loss(pred: Any, t: Any, heat_w: Any, off_m: Any, rad_m: Any) -> Any:
    """``losses.coarse_loss`` with per-pixel weights on the focal terms and per-channel offset masks."""
    import torch

    from ..landmarks.layout import C_OFFSETS, C_RADIUS, COARSE_HEAT

    heat = list(COARSE_HEAT)
    p = torch.sigmoid(pred[:, heat]).clamp(1e-4, 1 - 1e-4)
    tg = t[:, heat]
    pos = (tg > 0.99).float()
    l_pos = -((1 - p) ** 2) * torch.log(p) * pos * heat_w
    l_neg = -((1 - tg) ** 4) * p**2 * torch.log(1 - p) * (1 - pos) * heat_w
    l_heat = (l_pos.sum() + l_neg.sum()) / (pos * heat_w).sum().clamp(min=1)
    l_off = ((pred[:, C_OFFSETS] - t[:, C_OFFSETS]).abs() * off_m).sum() / (off_m.sum() + 1)
    l_rad = ((pred[:, C_RADIUS] - t[:, C_RADIUS]).abs() * rad_m).sum() / (rad_m.sum() + 1)
    return l_heat + 10 * l_off + 5 * l_rad


def coarse_distillation_loss(pred: Any, teacher: Any) -> Any:
    """Learning without forgetting for the coarse stage: the squared difference of the heatmaps
    (after the sigmoid) from the starting network's on the same images, over the teacher's heat
    mass (about the number of structures it sees times a peak's area), and the L1 difference of
    the offsets and radii where the teacher sees a structure (heat > 0.3). (B, C, H, W) each."""
    import torch

    from ..landmarks.layout import C_OFFSETS, C_RADIUS, COARSE_HEAT

    heat = list(COARSE_HEAT)
    ps, pt = torch.sigmoid(pred[:, heat]), torch.sigmoid(teacher[:, heat])
    l_heat = ((ps - pt) ** 2).sum() / pt.sum().clamp(min=1)
    near = (pt.amax(1, keepdim=True) > 0.3).float()
    geo = [*range(C_OFFSETS.start, C_OFFSETS.stop), C_RADIUS]
    l_geo = ((pred[:, geo] - teacher[:, geo]).abs() * near).sum() / (near.sum() * len(geo)).clamp(min=1)
    return l_heat + l_geo


def train_mode(model: Any, freeze_bn: bool) -> None:
    """``model.train()``, with every BatchNorm layer left in eval mode when ``freeze_bn`` (its
    running mean and variance stay those of the starting weights; its affine weights still train)."""
    import torch

    model.train()
    if freeze_bn:
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.eval()


def _sampling_weights(user: np.ndarray, phantom_share: float) -> np.ndarray:
    """Per-item draw probabilities so that ``phantom_share`` of a batch comes from the phantoms."""
    n = len(user)
    p = np.zeros(n)
    if user.all() or not user.any():
        p[:] = 1.0 / n
    else:
        p[user], p[~user] = (1 - phantom_share) / user.sum(), phantom_share / (~user).sum()
    return p


def _train_stage(stage: str, model: Any, data: dict[str, np.ndarray], seconds: float, lr: float, batch: int,
                 phantom_share: float, rng: np.random.Generator, device: str, log: Callable[[str], None], *,
                 anchor: float = 0.0, freeze_bn: bool = True, max_iterations: int | None = None,
                 distill: float = 0.0, teacher: Any = None, erase: float = 0.0, look: float = 0.0) -> dict:
    """Train one stage in place; returns its record. ``teacher``: the network whose outputs the
    phantoms are distilled towards (default: a frozen copy of the starting one); ``erase``: the
    hard-negative rate (``erase_body`` per coarse image, ``erase_crops`` per body crop; erased
    items are not distilled); ``look``: the share of user images or crops given
    ``loop.regional_look``."""
    import copy

    import torch

    from .loop import refine_batch
    from .losses import anchor_penalty, distillation_loss, parameter_snapshot, refine_loss

    user = np.asarray(data["user"], bool)
    n = len(user)
    p = _sampling_weights(user, phantom_share)
    model.to(device)
    start_params = parameter_snapshot(model)
    if distill <= 0:
        teacher = None
    else:
        teacher = (copy.deepcopy(model) if teacher is None else teacher.to(device)).eval()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0 if anchor > 0 else 1e-4)
    start, it, losses = time.time(), 0, []
    train_mode(model, freeze_bn)
    limit = math.inf if max_iterations is None else max_iterations  # 0: the stage is left as it is
    while ((t_frac := (time.time() - start) / max(seconds, 1e-6)) < 1 or it == 0) and it < limit:
        frac = max(t_frac, it / max_iterations) if max_iterations else t_frac  # the schedule ends with either bound
        for g in opt.param_groups:
            g["lr"] = lr * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0))) * min(1.0, (it + 1) / 20)
        idx = rng.choice(n, batch, p=p)
        t = None  # the refinement's targets (its distillation uses only the channels in the crop)
        erased = np.zeros(len(idx), bool)
        if stage == "coarse":
            x, *rest, erased = _coarse_batch(data, idx, rng, erase, look)
            x = x.to(device)
            pred = model(x)
            loss = masked_coarse_loss(pred, *(r.to(device) for r in rest))
        else:
            x, t = refine_batch(data, idx, rng, user[idx] & (rng.random(len(idx)) < look) if look > 0 else None)
            if erase > 0:
                erased = erase_crops(x.numpy()[:, 0], t.numpy(), data["kinds"][idx], data["points"][idx], erase, rng)
            x, t = x.to(device), t.to(device)
            pred = model(x)
            loss, _ = refine_loss(pred, t)
        original = torch.as_tensor(~user[idx] & ~erased, device=device)
        if teacher is not None and bool(original.any()):  # the original look keeps the starting network's outputs
            with torch.no_grad():
                before = teacher(x[original])
            loss = loss + distill * (coarse_distillation_loss(pred[original], before) if t is None
                                     else distillation_loss(pred[original], before, t[original]))
        if anchor > 0:
            loss = loss + anchor * anchor_penalty(model, start_params)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.item()))
        it += 1
        if it % 50 == 0:
            log(f"finetune {stage}: it {it} {time.time() - start:5.0f} s loss {np.mean(losses[-50:]):.4f}")
    model.eval()
    with torch.no_grad():
        moved = float(anchor_penalty(model, start_params))
    return {"iterations": it, "batch": batch, "seconds": round(time.time() - start, 1),
            "final_loss": float(np.mean(losses[-50:])) if losses else None, "items": n, "user_items": int(user.sum()),
            "lr": lr, "phantom_share": phantom_share, "anchor": anchor, "freeze_bn": freeze_bn,
            "distill": distill, "look": look, "squared_distance_from_start": moved}


def split(pairs: Sequence[tuple[Path, Annotation]], held_out: float, seed: int) -> tuple[list, list]:
    """A seeded split by image: ``(train, held_out)``; at least one image in each when there are two."""
    order = np.random.default_rng(seed).permutation(len(pairs))
    k = int(round(held_out * len(pairs)))
    if held_out > 0 and len(pairs) >= 2:
        k = min(max(k, 1), len(pairs) - 1)
    ho = {int(i) for i in order[:k]}
    return [pr for i, pr in enumerate(pairs) if i not in ho], [pr for i, pr in enumerate(pairs) if i in ho]


def _held_out_figures(weights: str | None, pairs: list, spacing: tuple[float, float] | None, device: str) -> dict:
    from ..api import Analyzer
    from .evaluate import analyse_pairs, headline, score_image

    scores = [score_image(*r) for r in analyse_pairs(Analyzer(device=device, weights=weights).load(), pairs, spacing)
              if not isinstance(r, str)]
    return {"n_images": len(scores), **{k: v for k, v in headline(scores).items() if v is not None}}


def finetune(images: Sequence[str | Path], annotations: str | Path, fmt: str, out: str | Path, *,
             spacing: tuple[float, float] | None = None, init: str | None = None, minutes: float = 60.0,
             held_out: float = 0.2, phantom: int = 200, phantom_share: float = PHANTOM_SHARE,
             refine_phantom_share: float = REFINE_PHANTOM_SHARE, anchor: float = ANCHOR,
             refine_anchor: float = REFINE_ANCHOR, freeze_bn: bool = True, refine_lr: float = REFINE_LR,
             device: str = "cpu", seed: int = 0, lr: float = LR, threads: int | None = None, before: dict | None = None,
             steps: int | None = STEPS, refine_steps: int | None = REFINE_STEPS, distill: float = DISTILL,
             refine_distill: float = REFINE_DISTILL, teacher: str | None = None, erase: float = 0.0,
             refine_erase: float = 0.0, look: float = 0.0, refine_look: float = 0.0,
             log: Callable[[str], None] = print) -> dict[str, Any]:
    """Fine-tune both stages (see the module docstring); returns the training record.

    ``steps`` and ``refine_steps`` stop each stage after that many optimizer
    steps, and the learning-rate schedule follows them, so a run does not depend on the
    machine's load; ``minutes`` caps the whole run (``steps=None``: the stages share it).
    ``phantom_share`` / ``lr`` / ``anchor`` are the coarse stage's, ``refine_*`` the refinement
    stage's (the defaults: the measured recipe, module constants). ``before``: the held-out figures of the starting weights when
    already measured (they are then not measured again). ``teacher``: weights whose outputs the
    phantoms are distilled towards (default: the starting weights); ``erase`` / ``refine_erase``:
    the coarse stage's / the refinement's hard-negative rate (``erase_body``, ``erase_crops``);
    ``look`` / ``refine_look``: the share of user images / crops given processing no renderer
    applies (``loop.regional_look``)."""
    import torch

    from ..fsio import atomic_path
    from ..landmarks.infer import resolve_device
    from ..landmarks.model import EXTRA_STAGES, build
    from ..landmarks.weights import sha256_file, weights_path, write_checksum
    from .data import make_coarse_dataset, make_refine_dataset
    from .evaluate import load_pairs

    t_start = time.time()
    device = resolve_device(device)
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    pairs, problems = load_pairs(images, annotations, fmt)
    for msg in problems:
        log(msg)
    if len(pairs) < 1:
        raise InputError("no image could be paired with an annotation: nothing to fine-tune on")
    train_pairs, ho_pairs = split(pairs, held_out, seed)
    init_path = weights_path(init)
    log(f"finetune: {len(train_pairs)} training and {len(ho_pairs)} held-out images; from {init_path}")
    if before is None:
        before = _held_out_figures(str(init_path), ho_pairs, spacing, device) if ho_pairs else {}
    if before:
        log(f"held-out before: {before}")
    coarse_rows, refine_rows, skipped = [], [], []
    for path, ann in train_pairs:
        try:
            img, a = decoded(path, ann, spacing)
        except Exception as exc:  # one bad file never stops the run
            skipped.append(f"{path}: {exc}")
            log(f"{path}: skipped ({exc})")
            continue
        coarse_rows.append(coarse_item(img, a))
        refine_rows += refine_items(img, a, rng)
    if not coarse_rows:
        raise InputError("no training image could be read")
    n_ph = max(0, int(phantom))
    # the original look as the shipped weights were trained on it (models/README.md, steps 1-6)
    cdata = _concat_coarse(coarse_rows, make_coarse_dataset(range(FINETUNE_STREAM, FINETUNE_STREAM + n_ph))
                           if n_ph else None)
    n_rf = max(n_ph // 2, 1)
    rdata = _concat_refine(refine_rows, make_refine_dataset(range(FINETUNE_STREAM, FINETUNE_STREAM + n_rf),
                                                            fracture_boost=PHANTOM_FRACTURE_BOOST) if n_ph else None)
    t_data = time.time() - t_start
    blob = torch.load(init_path, map_location="cpu", weights_only=True)
    t_blob = torch.load(weights_path(teacher), map_location="cpu", weights_only=True) if teacher else None
    budget = max(minutes * 60 - t_data, 10.0)
    stages = {}
    r_share, r_anchor = refine_phantom_share, refine_anchor
    for stage, data, share, batch, s_lr, s_ph, s_steps, s_anchor in (
            ("coarse", cdata, 0.5, 8, lr, phantom_share, steps, anchor),
            ("refine", rdata, 0.5, 32, refine_lr, r_share, refine_steps, r_anchor)):
        model = build(stage, blob[stage]["widths"])
        model.load_state_dict(blob[stage]["state_dict"])
        seconds = budget * share if stage == "coarse" else max(budget - (time.time() - t_start - t_data), 10.0)
        t_model = None
        if t_blob is not None:
            t_model = build(stage, t_blob[stage]["widths"])
            t_model.load_state_dict(t_blob[stage]["state_dict"])
        stages[stage] = _train_stage(stage, model, data, seconds, s_lr, batch, s_ph, rng, device, log,
                                     anchor=s_anchor, freeze_bn=freeze_bn, max_iterations=s_steps,
                                     distill=refine_distill if stage == "refine" else distill, teacher=t_model,
                                     erase=erase if stage == "coarse" else refine_erase,
                                     look=look if stage == "coarse" else refine_look)
        blob[stage] = {"widths": list(model.widths), "state_dict": {k: v.cpu() for k, v in model.state_dict().items()},
                       "meta": {**dict(blob[stage].get("meta") or {}), "finetune": stages[stage]}}
    record: dict[str, Any] = {
        "command": "sagittal finetune", "format": fmt, "annotations": str(annotations),
        "init": str(init_path), "init_sha256": sha256_file(init_path), "device": device, "minutes": minutes,
        "seed": seed, "steps": steps, "refine_steps": refine_steps, "lr": lr, "refine_lr": refine_lr,
        "held_out_fraction": held_out,
        "phantom_radiographs": n_ph, "phantom_refine_radiographs": n_rf if n_ph else 0,
        "phantom_fracture_boost": PHANTOM_FRACTURE_BOOST, "phantom_share": phantom_share,
        "refine_phantom_share": r_share, "anchor": anchor, "refine_anchor": r_anchor, "freeze_bn": freeze_bn,
        "distill": distill, "refine_distill": refine_distill,
        "teacher": str(weights_path(teacher)) if teacher else None,
        "teacher_sha256": sha256_file(weights_path(teacher)) if teacher else None, "erase": erase,
        "refine_erase": refine_erase, "look": look, "refine_look": refine_look,
        "train_images": [p.name for p, _ in train_pairs],
        "held_out_images": [p.name for p, _ in ho_pairs], "skipped": skipped, "stages": stages,
        "data_seconds": round(t_data, 1), "torch": str(torch.__version__),
    }
    # only ``coarse`` and ``refine`` are tuned: a second coarse network left untuned would compete
    # with the tuned one on every image (``infer.LandmarkDetector.coarse``), so it is not kept
    record["dropped_stages"] = [k for k in EXTRA_STAGES if blob.pop(k, None) is not None]
    blob["format"] = 2
    blob["training_record"] = _plain(record)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        torch.save(blob, tmp)
    write_checksum(out)
    if ho_pairs:
        record["held_out_before"] = before
        record["held_out_after"] = _held_out_figures(str(out), ho_pairs, spacing, device)
        log(f"held-out after: {record['held_out_after']}")
        blob["training_record"] = _plain(record)
        with atomic_path(out) as tmp:
            torch.save(blob, tmp)
        write_checksum(out)
    record["seconds"] = round(time.time() - t_start, 1)
    return record


def _plain(v: Any) -> Any:
    """JSON-like values only (``torch.load(weights_only=True)`` reads them back)."""
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_plain(x) for x in v]
    if isinstance(v, np.generic):
        return v.item()
    return v


def _concat_coarse(rows: list[tuple[np.ndarray, ...]], phantom: dict[str, np.ndarray] | None) -> dict[str, np.ndarray]:
    keys = ("images", "vertebrae", "s1", "heads", "radii")
    data = {k: np.stack([r[i] for r in rows]) for i, k in enumerate(keys)}
    data["user"] = np.ones(len(rows), bool)
    if phantom is not None:
        data = {k: np.concatenate([data[k], phantom[k].astype(data[k].dtype)]) for k in keys} | {
            "user": np.concatenate([data["user"], np.zeros(len(phantom["images"]), bool)])}
    return data


def _concat_refine(rows: list[tuple], phantom: dict[str, np.ndarray] | None) -> dict[str, np.ndarray]:
    from ..landmarks.crops import CROP

    data = {"crops": np.stack([r[0] for r in rows]).reshape(-1, CROP, CROP) if rows else np.zeros((0, CROP, CROP), np.uint8),
            "kinds": np.array([r[1] for r in rows], np.int8),
            "points": np.stack([r[2] for r in rows]).astype(np.float32) if rows else np.zeros((0, 10, 2), np.float32),
            "user": np.ones(len(rows), bool)}
    if phantom is not None:
        data = {k: np.concatenate([data[k], phantom[k]]) for k in ("crops", "kinds", "points")} | {
            "user": np.concatenate([data["user"], np.zeros(len(phantom["crops"]), bool)])}
    if not len(data["user"]):
        raise InputError("no annotated structure to train the refinement stage on (a body needs its four corners)")
    return data
