"""The landmark network: a compact U-Net giving full-resolution heatmaps and offsets.

Imported only by code that needs torch. ~0.4 M parameters, sized to train on two CPU cores.
"""

from __future__ import annotations

import torch
from torch import nn

from .targets import N_CHANNELS


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
    )


class LandmarkNet(nn.Module):
    """U-Net: input ``(B, 1, 256, 128)`` → output ``(B, N_CHANNELS, 256, 128)`` (any size divisible by 16).

    Heatmap channels are sigmoid-activated in ``forward``; offset and radius channels are linear.
    """

    def __init__(self, widths: tuple[int, ...] = (8, 16, 32, 64, 96)):
        super().__init__()
        self.widths = widths
        self.down = nn.ModuleList()
        cin = 1
        for w in widths:
            self.down.append(_block(cin, w))
            cin = w
        self.pool = nn.MaxPool2d(2)
        self.up = nn.ModuleList()
        self.merge = nn.ModuleList()
        for w_hi, w_lo in zip(reversed(widths[:-1]), reversed(widths[1:])):
            self.up.append(nn.ConvTranspose2d(w_lo, w_hi, 2, stride=2))
            self.merge.append(_block(2 * w_hi, w_hi))
        self.head = nn.Conv2d(widths[0], N_CHANNELS, 1)
        heat = torch.zeros(N_CHANNELS, dtype=torch.bool)
        heat[0] = True
        heat[13:22] = True
        self.register_buffer("is_heat", heat, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, block in enumerate(self.down):
            x = block(x)
            if i < len(self.down) - 1:
                skips.append(x)
                x = self.pool(x)
        for up, merge, skip in zip(self.up, self.merge, reversed(skips)):
            x = merge(torch.cat([up(x), skip], dim=1))
        out = self.head(x)
        return torch.where(self.is_heat[None, :, None, None], torch.sigmoid(out), out)


def load_model(path, device: str = "cpu") -> LandmarkNet:
    """Load weights saved by ``scripts/train_landmarks.py`` (no network access, ever)."""
    blob = torch.load(path, map_location=device, weights_only=True)
    model = LandmarkNet(tuple(blob["widths"]))
    model.load_state_dict(blob["state_dict"])
    model.eval().to(device)
    return model
