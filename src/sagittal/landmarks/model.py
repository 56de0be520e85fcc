"""The two landmark networks (torch; imported only by code that needs it).

- ``coarse``: the whole radiograph letterboxed to ``INPUT_SHAPE`` (256 × 128) → maps at stride 2
  (128 × 64): body-centre, S1-corner and femoral-head heatmaps (logits), the six points'
  offsets from each body centre and the head radius. It finds and groups the structures.
- ``refine``: a ``CROP`` × ``CROP`` window of the full-resolution image around one structure
  (a vertebral body, the S1 endplate or the hips) → one spatial-softmax heatmap per point of
  that structure, for sub-pixel placement at about 1 mm per crop pixel.

Both are small U-Nets (``UNet``) sized to train on two CPU cores. A weights file may hold more
networks of the same two kinds (``EXTRA_STAGES``): ``coarse2``, a second coarse network whose
look of an image is kept when it went better (``infer.LandmarkDetector.coarse``), and
``refine_ct``, the CT planes' own refinement (``plane_detector``).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from .layout import COARSE_CHANNELS, COARSE_HEAT, REFINE_CHANNELS


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
    )


class UNet(nn.Module):
    """``(B, 1, H, W)`` → ``(B, out_channels, H / stride, W / stride)`` logits.

    ``stride`` 1 or 2; with 2 a strided stem replaces the full-resolution level. ``H`` and ``W``
    must be divisible by ``stride × 2 ** (len(widths) - 1)``.
    """

    def __init__(self, out_channels: int, widths: tuple[int, ...], stride: int = 1):
        super().__init__()
        self.widths, self.stride, self.out_channels = tuple(widths), stride, out_channels
        self.stem = (nn.Sequential(nn.Conv2d(1, widths[0], 3, stride=2, padding=1, bias=False),
                                   nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True)) if stride == 2 else nn.Identity())
        cin = widths[0] if stride == 2 else 1
        self.down = nn.ModuleList()
        for w in widths:
            self.down.append(_block(cin, w))
            cin = w
        self.pool = nn.MaxPool2d(2)
        self.up = nn.ModuleList()
        self.merge = nn.ModuleList()
        for w_hi, w_lo in zip(reversed(widths[:-1]), reversed(widths[1:]), strict=False):
            self.up.append(nn.ConvTranspose2d(w_lo, w_hi, 2, stride=2))
            self.merge.append(_block(2 * w_hi, w_hi))
        self.head = nn.Conv2d(widths[0], out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        skips = []
        for i, block in enumerate(self.down):
            x = block(x)
            if i < len(self.down) - 1:
                skips.append(x)
                x = self.pool(x)
        for up, merge, skip in zip(self.up, self.merge, reversed(skips), strict=False):
            x = merge(torch.cat([up(x), skip], dim=1))
        return self.head(x)


def coarse_net(widths: tuple[int, ...] = (16, 32, 48, 64, 96)) -> UNet:
    net = UNet(COARSE_CHANNELS, widths, stride=2)
    with torch.no_grad():  # heatmaps start near p = 0.02, as CenterNet does, so the focal loss starts sane
        bias = net.head.bias
        assert bias is not None  # the head is a Conv2d with a bias
        bias[list(COARSE_HEAT)] = -4.0
    return net


def refine_net(widths: tuple[int, ...] = (16, 32, 48, 64)) -> UNet:
    return UNet(REFINE_CHANNELS, widths, stride=1)


def build(stage: str, widths: tuple[int, ...] | list[int] | None = None) -> UNet:
    factory = {"coarse": coarse_net, "refine": refine_net}[stage]
    return factory(tuple(widths)) if widths else factory()


#: optional networks a weights file may hold, by the kind of network each is
EXTRA_STAGES = {"coarse2": "coarse", "refine_ct": "refine"}


def load_models(path: str | os.PathLike[str], device: str = "cpu") -> dict[str, UNet]:
    """Both stages from one weights file written by ``sagittal.training.loop``, and those of
    ``EXTRA_STAGES`` it holds.

    The file is checked against its ``.sha256`` sidecar when it has one (the packaged weights
    always do: ``landmarks.weights``), then loaded with ``weights_only=True`` (tensors and plain
    values only); never from the network.
    """
    from ..errors import InputError
    from .weights import packaged, verify

    verify(path, required=Path(path).resolve() == packaged().resolve())
    try:
        blob = torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:
        raise InputError(f"{path}: not a readable sagittal weights file ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0] if str(exc) else ''})") from exc
    missing = [s for s in ("coarse", "refine") if not isinstance(blob, dict) or s not in blob]
    if missing:
        raise InputError(f"{path}: the weights file lacks the {' and '.join(missing)} stage(s); "
                         "train it with scripts/train_landmarks.py --stage " + missing[0])
    models = {}
    for stage in ("coarse", "refine", *(s for s in EXTRA_STAGES if s in blob)):
        m = build(EXTRA_STAGES.get(stage, stage), blob[stage]["widths"])
        try:
            m.load_state_dict(blob[stage]["state_dict"])
        except RuntimeError as exc:
            raise InputError(f"{path}: the {stage} weights do not fit this version's network "
                             f"({str(exc).splitlines()[0]})") from exc
        models[stage] = m.eval().to(device)
    return models
