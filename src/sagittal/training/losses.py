"""Losses of the two landmark networks (torch)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..landmarks.layout import C_OFFSETS, C_RADIUS, COARSE_HEAT, R_VERTEBRA
from ..levels import AI, AS, MI, MS, PI, PS


def focal(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """CenterNet's penalty-reduced focal loss over Gaussian heatmaps, per positive
    (Zhou et al. 2019, "Objects as Points", eq. 1)."""
    p = torch.sigmoid(logits).clamp(1e-4, 1 - 1e-4)
    pos = (target > 0.99).float()
    l_pos = -((1 - p) ** 2) * torch.log(p) * pos
    l_neg = -((1 - target) ** 4) * p**2 * torch.log(1 - p) * (1 - pos)
    return (l_pos.sum() + l_neg.sum()) / pos.sum().clamp(min=1)


def coarse_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, tuple[float, ...]]:
    """Focal loss on the heatmaps + L1 on the offsets (masked to the cells about each body) and
    the head radius. ``pred``/``target (B, COARSE_CHANNELS, h, w)``, ``mask (B, h, w)``."""
    heat = list(COARSE_HEAT)
    l_heat = focal(pred[:, heat], target[:, heat])
    m = mask[:, None]
    l_off = ((pred[:, C_OFFSETS] - target[:, C_OFFSETS]).abs() * m).sum() / (m.sum() * 12 + 1)
    rad_mask = (target[:, C_RADIUS] > 0).float()
    l_rad = ((pred[:, C_RADIUS] - target[:, C_RADIUS]).abs() * rad_mask).sum() / (rad_mask.sum() + 1)
    return l_heat + 10 * l_off + 5 * l_rad, (l_heat.item(), l_off.item(), l_rad.item())


def refine_loss(pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, tuple[float, ...]]:
    """Cross-entropy of each channel's spatial softmax against its normalised Gaussian,
    averaged over the channels that belong to the crop (their target sums to 1)."""
    b, k, h, w = pred.shape
    logp = F.log_softmax(pred.reshape(b, k, h * w), dim=-1)
    t = target.reshape(b, k, h * w)
    valid = (t.sum(-1) > 0.5).float()
    ce = -(t * logp).sum(-1)
    return (ce * valid).sum() / valid.sum().clamp(min=1), (valid.sum().item(),)


def expected_points(pred: torch.Tensor) -> torch.Tensor:
    """Each channel's spatial-softmax expectation: ``pred (B, K, H, W)`` → ``(B, K, 2)`` crop
    pixels ``(x, y)`` (differentiable; the runtime's peak equals it where the map is the target's
    Gaussian)."""
    b, k, h, w = pred.shape
    p = F.softmax(pred.reshape(b, k, h * w), dim=-1).reshape(b, k, h, w)
    xs = torch.arange(w, dtype=p.dtype, device=p.device)
    ys = torch.arange(h, dtype=p.dtype, device=p.device)
    return torch.stack([(p.sum(2) * xs).sum(-1), (p.sum(3) * ys).sum(-1)], dim=-1)


def local_expected_points(pred: torch.Tensor, radius: int = 2) -> torch.Tensor:
    """Each channel's expectation over the ``(2 radius + 1)²`` window about its peak (the
    softmax renormalised there): ``pred (B, K, H, W)`` → ``(B, K, 2)`` crop pixels ``(x, y)``.
    Unlike the whole map's expectation, a far tail does not move it; differentiable in the window's
    logits, the peak's position taken as given. The window cuts the distribution off, which pulls a
    point between pixel centres towards its peak pixel: on the training target (sigma 1.5 px) by up
    to 0.19 px at radius 2, 0.06 at 3 and 0.013 at 4 (a review's finding; tested), so a
    radius under 4 does not read the target's own points exactly."""
    b, k, h, w = pred.shape
    flat = pred.reshape(b, k, h * w)
    peak = flat.detach().argmax(-1)
    iy = (peak // w).clamp(radius, h - 1 - radius)
    ix = (peak % w).clamp(radius, w - 1 - radius)
    d = torch.arange(-radius, radius + 1, device=pred.device)
    yy = (iy[..., None, None] + d[:, None]).expand(b, k, len(d), len(d)).reshape(b, k, -1)
    xx = (ix[..., None, None] + d[None, :]).expand(b, k, len(d), len(d)).reshape(b, k, -1)
    p = F.softmax(flat.gather(-1, yy * w + xx), dim=-1)
    return torch.stack([(p * xx.to(p.dtype)).sum(-1), (p * yy.to(p.dtype)).sum(-1)], dim=-1)


def _height_ratios(q: torch.Tensor) -> torch.Tensor:
    """``q (..., 6, 2)`` one body's six points in ``POINT_NAMES`` order → ``(..., 2)`` the
    anterior / posterior and middle / posterior height ratios (Genant's wedge and biconcave
    shapes; docs/clinical.md)."""
    def h(a: int, b: int) -> torch.Tensor:
        return torch.linalg.vector_norm(q[..., a, :] - q[..., b, :], dim=-1)

    hp = h(PS, PI).clamp(min=1.0)
    return torch.stack([h(AS, AI) / hp, h(MS, MI) / hp], dim=-1)


def height_ratio_loss(pred: torch.Tensor, points: torch.Tensor, window: int = 0) -> torch.Tensor:
    """L1 between a body's height ratios read from the refinement maps' expectations (over the
    whole map, or with ``window`` > 0 over the window of that radius about each peak:
    ``local_expected_points``) and its true ones, over the crops whose six body points all lie in
    the crop. The cross-entropy alone lets a collapsed endplate drift towards the normal shape
    (the runtime under-read fractured bodies' height loss by 2-3 points and over-read normal ones
    by 1-2 on the projection looks); this term weighs that error by what the Genant grade is read
    from.
    ``pred (B, REFINE_CHANNELS, H, W)``; ``points (B, REFINE_CHANNELS, 2)`` crop pixels, NaN
    where a channel does not belong to the crop."""
    size = pred.shape[-1]
    truth = points[:, R_VERTEBRA]
    inside = (torch.isfinite(truth) & (truth >= -0.5) & (truth <= size - 0.5)).all(-1).all(-1)
    if not bool(inside.any()):
        return pred.sum() * 0.0
    body = pred[inside][:, R_VERTEBRA]
    q = local_expected_points(body, window) if window else expected_points(body)
    return (_height_ratios(q) - _height_ratios(truth[inside])).abs().sum(-1).mean()


def distillation_loss(pred: torch.Tensor, teacher: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Learning without forgetting (Li & Hoiem 2017) for the refinement: the KL divergence of each
    channel's spatial softmax from the starting network's (``teacher``, same crops), over the
    channels that belong to the crop (``target`` sums to 1 there). Unlike the L2-SP anchor,
    which holds the weights, this holds what the network outputs on the original look.
    pred, teacher, target: (B, K, H, W)."""
    b, k, h, w = pred.shape
    logp = F.log_softmax(pred.reshape(b, k, h * w), dim=-1)
    logq = F.log_softmax(teacher.reshape(b, k, h * w), dim=-1)
    valid = (target.reshape(b, k, h * w).sum(-1) > 0.5).float()
    kl = (logq.exp() * (logq - logp)).sum(-1)
    return (kl * valid).sum() / valid.sum().clamp(min=1)


def anchor_penalty(model: torch.nn.Module, start: dict[str, torch.Tensor]) -> torch.Tensor:
    """L2-SP: the squared distance of the trainable weights from ``start`` (the weights that
    fine-tuning began from), summed — so that adapting to a new look does not wander far from
    what the original look needed (Li et al. 2018, "Explicit inductive bias for transfer
    learning with convolutional networks"). ``start``: ``{name: tensor}`` of the parameters."""
    terms = [((p - start[n]) ** 2).sum() for n, p in model.named_parameters() if p.requires_grad and n in start]
    return torch.stack(terms).sum() if terms else torch.zeros(())


def parameter_snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A detached copy of ``model``'s parameters (the anchor of ``anchor_penalty``)."""
    return {n: p.detach().clone() for n, p in model.named_parameters()}
