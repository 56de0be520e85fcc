"""The plane training data's fracture share (``training.planes``) and ``scripts/train_planes.py``
passing ``--steps`` and ``--fracture-rate`` through."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from sagittal.training import planes
from tests.training.fixtures import script


@pytest.mark.parametrize("stream", [planes.PLANE_COARSE_STREAM, planes.PLANE_REFINE_STREAM])
def test_fracture_rate_sets_the_share_of_fractured_spines(stream: int) -> None:
    """Rate 1: every spine has 1-3 fractures; rate 0: the phantom's own draw (45 % without)."""
    n_fx = {rate: [int((planes._spine(stream, s, rate)[0].grade > 0).sum()) for s in range(20)] for rate in (0.0, 1.0)}
    assert all(1 <= n <= 3 for n in n_fx[1.0])
    assert 0 in n_fx[0.0]


def test_refine_crops_follow_the_fracture_rate() -> None:
    """Fractured bodies are cropped more than once (``fracture_boost``): rate 1.0 gives the same
    seeds more crops than rate 0."""
    none = planes.make_refine_planes(range(3), fracture_rate=0.0)
    every = planes.make_refine_planes(range(3), fracture_rate=1.0)
    assert 0 < len(none["crops"]) < len(every["crops"])
    assert none["crops"].shape[1:] == every["crops"].shape[1:]


def test_train_planes_passes_steps_and_fracture_rate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "planes.pt"
    monkeypatch.setattr("sys.argv", ["train_planes.py", "--stage", "refine", "--n-train", "2", "--first-seed", "5",
                                     "--minutes", "600", "--steps", "2", "--fracture-rate", "1.0",
                                     "--cache-dir", str(tmp_path), "--out", str(out)])
    assert script("train_planes").main() == 0
    assert (tmp_path / "planes_refine_5-2_fx1.npz").is_file()
    meta = torch.load(out, weights_only=True)["refine"]["meta"]
    assert meta["iterations"] == 2 and meta["steps"] == 2
    assert "fracture rate 1" in meta["train_seeds"]
    assert np.isfinite(meta["final_loss"])
