"""Losses of the two landmark networks (torch)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..landmarks.layout import C_OFFSETS, C_RADIUS, COARSE_HEAT


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
