"""The training loop's bounds: ``--steps`` stops a run whose wall-clock budget is far away."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from sagittal.landmarks.crops import CROP
from sagittal.training import loop


def test_steps_bound_stops_the_run_and_is_recorded(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    n = 8
    points = np.full((n, 10, 2), np.nan, np.float32)
    points[:, :6] = rng.uniform(10, CROP - 10, (n, 6, 2))
    cache = tmp_path / "refine.npz"
    np.savez(cache, crops=rng.integers(0, 255, (n, CROP, CROP), dtype=np.uint8),
             kinds=np.zeros(n, np.int8), points=points)
    out = tmp_path / "w.pt"
    torch.manual_seed(0)
    assert loop.main(["--stage", "refine", "--out", str(out), "--minutes", "600", "--steps", "3",
                      "--batch", "2", "--n-train", str(n), "--cache", str(cache), "--warmup", "1"]) == 0
    meta = torch.load(out, weights_only=True)["refine"]["meta"]
    assert meta["iterations"] == 3
    assert meta["steps"] == 3
