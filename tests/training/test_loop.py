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


def test_rescaled_moves_the_geometry_with_the_pixels_and_drops_what_leaves() -> None:
    """``loop.rescaled``: a film framed longer or tighter. Each body's points go where its pixels
    go; bodies, S1 and heads that leave the input are dropped; radii scale with the image."""
    h, w = 256, 128
    img = np.zeros((h, w), np.float32)
    corners = np.array([[0, 0], [6, 0], [6, 8], [0, 8], [3, 0], [3, 8]])
    v = np.array([[[40.0 + 3 * k, 20.0 + 20 * k]] * 6 for k in range(11)]) + corners
    for body in v:  # a bright 5 x 5 spot centred on each body's first point
        x, y = body[0].astype(int)
        img[y - 2:y + 3, x - 2:x + 3] = 1.0
    s1 = np.array([[60.0, 240.0], [70.0, 238.0]])
    heads, radii = np.array([[90.0, 246.0]]), np.array([6.0])
    rng = np.random.default_rng(4)
    sizes, dropped, lost_s1 = [], 0, 0
    for _ in range(40):
        out, v2, s2, h2, r2 = loop.rescaled(img, v, s1, heads, radii, rng)
        assert out.shape == (h, w) and len(v2) <= len(v)
        f = float(np.linalg.norm(v2[0, 1] - v2[0, 0])) / 6.0 if len(v2) else None
        if f is None:
            continue
        sizes.append(f)
        assert 0.55 - 1e-6 <= f <= 1.7 + 1e-6
        np.testing.assert_allclose(r2, radii[: len(r2)] * f)
        for body in v2:  # the bright spot followed the body's first point
            x, y = np.round(body[0]).astype(int)
            assert out[max(y, 0), max(x, 0)] > 0.5
        inside = ((v2 >= 0) & (v2[..., :1] <= w - 1) & (v2[..., 1:] <= h - 1)).all()
        assert inside and (s2 is None or ((s2 >= 0).all() and (s2[:, 1] <= h - 1).all()))
        dropped += len(v2) < len(v)
        if f < 1:  # shrunk about the centre: everything stays, S1 and the head where they moved
            assert len(v2) == len(v) and s2 is not None and len(h2) == 1
            np.testing.assert_allclose(s2 - s2.mean(axis=0), (s1 - s1.mean(axis=0)) * f, atol=1e-4)
        else:
            lost_s1 += s2 is None
    assert min(sizes) < 0.8 and max(sizes) > 1.3 and dropped > 0  # both ways, and enlarging crops bodies out
    assert lost_s1 > 0  # an enlarged film can lose its sacrum off the bottom edge


def test_the_height_term_is_added_to_the_refinement_loss_when_weighted() -> None:
    """``loop._step`` with ``height_weight``: the loss grows by the weight times the term, which the
    parts report last; without it the loss is the cross-entropy alone."""
    rng = np.random.default_rng(1)
    n = 4
    points = np.full((n, 10, 2), np.nan, np.float32)
    points[:, :6] = [[22, 26], [42, 22], [42, 42], [22, 38], [32, 22], [32, 42]]  # a wedge: anterior 12, posterior 20
    data = {"crops": rng.integers(0, 255, (n, CROP, CROP), dtype=np.uint8), "kinds": np.zeros(n, np.int8),
            "points": points}
    model = loop.build("refine")
    idx = np.arange(n)
    torch.manual_seed(0)
    plain, parts = loop._step("refine", model, data, idx, np.random.default_rng(2))
    torch.manual_seed(0)
    weighted, parts_w = loop._step("refine", model, data, idx, np.random.default_rng(2), height_weight=10.0)
    assert len(parts) == 1 and len(parts_w) == 2 and parts_w[1] > 0
    assert abs(weighted.item() - (plain.item() + 10.0 * parts_w[1])) < 1e-3 * max(1.0, weighted.item())
    torch.manual_seed(0)
    _, parts_win = loop._step("refine", model, data, idx, np.random.default_rng(2), height_weight=10.0,
                              height_window=4)
    assert parts_win[1] != parts_w[1]  # the window reads the maps differently


def test_a_run_with_the_height_weight_trains_on_the_term(tmp_path: Path) -> None:
    """The same one-step run with and without ``--height-weight``: its recorded loss holds the term."""
    rng = np.random.default_rng(0)
    n = 4
    points = np.full((n, 10, 2), np.nan, np.float32)
    points[:, :6] = [[22, 26], [42, 22], [42, 42], [22, 38], [32, 22], [32, 42]]
    cache = tmp_path / "refine.npz"
    np.savez(cache, crops=rng.integers(0, 255, (n, CROP, CROP), dtype=np.uint8), kinds=np.zeros(n, np.int8),
             points=points)
    final = {}
    for w in ("0", "50"):
        out = tmp_path / f"w{w}.pt"
        assert loop.main(["--stage", "refine", "--out", str(out), "--minutes", "600", "--steps", "1", "--batch", "4",
                          "--n-train", str(n), "--cache", str(cache), "--warmup", "1", "--height-weight", w]) == 0
        final[w] = torch.load(out, weights_only=True)["refine"]["meta"]["final_loss"]
    assert final["50"] > final["0"] + 1.0  # 50 x a wedge read from untrained maps (0.4 and more)


def test_the_height_options_are_checked(monkeypatch) -> None:
    import pytest

    def no_training(*_a, **_k):
        raise AssertionError("the options should have been refused before training")

    monkeypatch.setattr(loop, "train", no_training)
    for bad in (["--stage", "coarse", "--height-weight", "5"], ["--stage", "refine", "--height-window", "40"],
                ["--stage", "refine", "--height-weight", "-1"], ["--stage", "refine", "--height-weight", "nan"],
                ["--stage", "refine", "--height-window", "4"]):
        with pytest.raises(SystemExit):
            loop.main([*bad, "--out", "/nonexistent/w.pt"])
    # what train_planes.py passes for its coarse stage is accepted
    assert loop.height_options_error("coarse", 0.0, 0) is None
    assert loop.height_options_error("refine", 20.0, 4) is None
