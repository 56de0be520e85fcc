"""The plane training data's fracture share (``training.planes``) and ``scripts/train_planes.py``
passing ``--steps`` and ``--fracture-rate`` through."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import torch

from sagittal.phantom.volume import Aorta
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


def test_ct_share_and_spacing_widen_the_draw_and_defaults_keep_it() -> None:
    """``ct_share`` 1.0 gives CT planes only; ``max_spacing_mm`` 2.0 draws in-plane spacings past
    1.5 mm (eval_planes' CTs reach 2.0); the defaults draw the same planes as before (rounds 1, 2)."""
    spine = planes._spine(planes.PLANE_REFINE_STREAM, 0, 0.0)[0]
    rendered = [planes.render_plane(spine, np.random.default_rng([9, s]), ct_share=1.0, max_spacing_mm=2.0)
                for s in range(8)]
    modalities = [r.modality for r in rendered]
    spacings = [r.spacing_mm for r in rendered]
    assert set(modalities) == {"CT"}
    assert max(spacings) > 1.5
    a = planes.render_plane(spine, np.random.default_rng(3), coarse=True)
    b = planes.render_plane(spine, np.random.default_rng(3), coarse=True, ct_share=0.5, max_spacing_mm=1.5)
    assert a.modality == b.modality and a.spacing_mm == b.spacing_mm and np.array_equal(a.image, b.image)


def test_fracture_boost_crops_fractured_bodies_more_often() -> None:
    few = planes.make_refine_planes(range(2), fracture_rate=1.0, fracture_boost=0)
    many = planes.make_refine_planes(range(2), fracture_rate=1.0, fracture_boost=4)
    n_fx = sum(int((planes._spine(planes.PLANE_REFINE_STREAM, s, 1.0)[0].grade > 0).sum()) for s in range(2))
    extra = len(many["crops"]) - len(few["crops"])  # the same planes: 4 more crops per fractured body cropped
    assert n_fx > 0 and extra > 0 and extra % 4 == 0 and extra <= 4 * n_fx


def test_severe_boost_crops_grade_2_and_3_bodies_more_often() -> None:
    """``severe_boost``: every body of grade 2-3 in view that many crops more, after the same crops
    as without it (the default draws the planes and crops as before)."""
    base = planes.refine_one(1, fracture_rate=1.0)
    more = planes.refine_one(1, fracture_rate=1.0, severe_boost=3)
    grades = planes._spine(planes.PLANE_REFINE_STREAM, 1, 1.0)[0].grade
    extra = len(more) - len(base)
    assert (grades >= 2).any() and extra > 0 and extra % 3 == 0 and extra <= 3 * int((grades >= 2).sum())
    assert all(np.array_equal(a[0], b[0]) for a, b in zip(base, more[:len(base)], strict=True))


def test_train_planes_passes_boost_ct_share_and_spacing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "planes.pt"
    monkeypatch.setattr("sys.argv", ["train_planes.py", "--stage", "refine", "--n-train", "2", "--first-seed", "5",
                                     "--minutes", "600", "--steps", "1", "--fracture-rate", "1.0", "--fracture-boost", "4",
                                     "--severe-boost", "2", "--ct-share", "0.6", "--max-spacing", "2.0",
                                     "--cache-dir", str(tmp_path), "--out", str(out)])
    assert script("train_planes").main() == 0
    assert (tmp_path / "planes_refine_5-2_fx1_boost4_severe2_ct0.6_sp2.npz").is_file()
    meta = torch.load(out, weights_only=True)["refine"]["meta"]
    assert "CT share 0.6" in meta["train_seeds"] and "0.5-2 mm" in meta["train_seeds"] and "x5" in meta["train_seeds"]
    assert "grade 2-3 bodies 2 more" in meta["train_seeds"]


def test_slice_sampling_makes_an_axial_ct_plane_a_ramp_between_slices() -> None:
    """A sharp edge seen through point-sampled slices 5 px apart is linear between them: the
    second difference along the rows vanishes except at the slices, where the reformat's ramp
    bends (the Gaussian blur's profile bends everywhere)."""
    img = np.zeros((60, 4), np.float32)
    img[23:] = 100.0

    class Draw:  # which half of the draw (point samples or slab averages), slices at rows 2, 7, 12, …
        def __init__(self, u: float) -> None:
            self.u = u

        def random(self) -> float:
            return self.u

        def uniform(self, lo: float, hi: float) -> float:
            return 2.0

    for rng in (Draw(0.9), Draw(0.1)):
        out = planes._slice_sampled(img, 5.0, rng)  # type: ignore[arg-type]
        d2 = np.abs(np.diff(out[:, 0], 2))
        assert out.shape == img.shape and out[0, 0] == 0.0 and out[-1, 0] == 100.0
        # bends only next to the slices around the edge (rows 17, 22, 27): each between two rows
        bends = np.nonzero(d2 > 1e-3)[0] + 1
        assert 0 < len(bends) <= 6 and all(min(abs(b - p) for p in (17, 22, 27)) <= 1 for b in bends)
    blurred = cv2.GaussianBlur(img, (0, 0), sigmaX=0.3, sigmaY=5.0 / 2.355)
    assert int((np.abs(np.diff(blurred[:, 0], 2)) > 1e-3).sum()) > 6
    assert planes._slice_sampled(img, 1.0, rng) is img  # slices no thicker than a row: unchanged


def test_pelvis_draws_bone_at_the_planes_bottom_and_nothing_else() -> None:
    """``pelvis=True`` draws the phantom's pelvis into the plane (below the S1 endplate: the pubis
    where the slab's thickness or the plane's placement error reaches past the symphysis' 4-mm gap,
    as MR's thick sagittal slices do); it draws nothing from the generator, so the plane is
    otherwise the one drawn without it, and the default, no pelvis, is the plane of rounds 1-4."""
    spine = planes._spine(planes.PLANE_REFINE_STREAM, 2, 0.0)[0]
    changed = 0
    for s in (0, 3):
        a = planes.render_plane(spine, np.random.default_rng([11, s]), ct_share=0.0, coarse=True)
        b = planes.render_plane(spine, np.random.default_rng([11, s]), ct_share=0.0, coarse=True, pelvis=True)
        c = planes.render_plane(spine, np.random.default_rng([11, s]), ct_share=0.0, coarse=True, pelvis=False)
        assert np.array_equal(a.image, c.image)
        assert a.image.shape == b.image.shape and a.spacing_mm == b.spacing_mm and np.array_equal(a.in_view, b.in_view)
        rows = np.nonzero((np.abs(a.image - b.image) > 1e-3).any(axis=1))[0]
        if len(rows):
            changed += 1
            assert rows.min() > a.to_px(spine.s1_mm)[:, 1].max()  # below the sacrum's top: the bodies are kept
    assert changed == 2


def test_train_planes_passes_pelvis_and_height_weight(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "planes.pt"
    monkeypatch.setattr("sys.argv", ["train_planes.py", "--stage", "refine", "--n-train", "2", "--first-seed", "5",
                                     "--minutes", "600", "--steps", "1", "--fracture-rate", "1.0", "--pelvis",
                                     "--height-weight", "20", "--height-window", "4", "--cache-dir", str(tmp_path),
                                     "--out", str(out)])
    mod = script("train_planes")
    seen: list[list[str]] = []
    real = mod.loop.main
    monkeypatch.setattr(mod.loop, "main", lambda argv: (seen.append(argv), real(argv))[1])
    assert mod.main() == 0
    assert (tmp_path / "planes_refine_5-2_fx1_pelvis.npz").is_file()
    assert seen and seen[0][seen[0].index("--height-weight") + 1] == "20.0"
    assert seen[0][seen[0].index("--height-window") + 1] == "4"
    meta = torch.load(out, weights_only=True)["refine"]["meta"]
    assert meta["height_weight"] == 20.0 and meta["height_window"] == 4 and meta["pelvis"] is True
    assert "bony pelvis" in meta["train_seeds"]
    assert np.isfinite(meta["final_loss"])


def test_aorta_share_draws_a_vessel_in_front_of_the_spine_on_ct_planes_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """``aorta_share=1``: a CT plane gets an aorta (``_draw_aorta``), which changes only pixels in front of the
    bodies' anterior walls, row by row between the highest and the lowest body in view (its draws shift the
    noise drawn after it, so the planes are compared smoothed); an MR plane is left as it was, and
    ``aorta_share=0`` (the default) never draws one (rounds 1-5's planes: ``_draw_aorta`` is not reached)."""
    spine = planes._spine(planes.PLANE_REFINE_STREAM, 4, 0.0)[0]
    seen = 0
    for s in range(6):
        a = planes.render_plane(spine, np.random.default_rng([12, s]), ct_share=1.0)
        mr = planes.render_plane(spine, np.random.default_rng([12, s]), ct_share=0.0, aorta_share=1.0)
        assert np.array_equal(mr.image, planes.render_plane(spine, np.random.default_rng([12, s]), ct_share=0.0).image)
        c = planes.render_plane(spine, np.random.default_rng([12, s]), ct_share=1.0, aorta_share=1.0)
        assert c.image.shape == a.image.shape and np.array_equal(c.in_view, a.in_view)
        seen += _vessel_in_front(spine, a, c)
    assert seen >= 2  # the plane cuts the vessel where it lies near the midline
    # a calcified wall right against the spine's front, cut by the plane: its plaques stay in front of the bodies
    # (they lay up to 2.5 mm inside them before review R18a)
    monkeypatch.setattr(planes, "_draw_aorta", lambda rng: Aorta(lumen_hu=40.0, wall_hu=800.0, lateral_mm=4.0,
                                                                  gap_mm=0.0, radius_mm=11.0))
    for s in range(3):
        a = planes.render_plane(spine, np.random.default_rng([12, s]), ct_share=1.0)
        c = planes.render_plane(spine, np.random.default_rng([12, s]), ct_share=1.0, aorta_share=1.0)
        assert _vessel_in_front(spine, a, c)
    monkeypatch.setattr(planes, "_draw_aorta", lambda rng: (_ for _ in ()).throw(AssertionError("drawn")))
    for s in range(6):
        planes.render_plane(spine, np.random.default_rng([12, s]), ct_share=1.0)
        planes.render_plane(spine, np.random.default_rng([12, s]), ct_share=1.0, aorta_share=0.0)


def _vessel_in_front(spine: Any, a: planes.PlaneRender, c: planes.PlaneRender) -> bool:
    """Whether plane ``c`` (``a`` with an aorta) shows a vessel between the highest and the lowest body in view,
    asserting that every pixel of it lies in front of the bodies' anterior wall in its row (the wall's column
    interpolated between the anterior corners; within 1 mm, the corners' line running before a concave wall)."""
    vessel = np.abs(cv2.GaussianBlur(c.image - a.image, (0, 0), 1.0)) > 100  # not the noise drawn anew
    corners = a.to_px(spine.points_mm[a.in_view][:, [0, 3]]).reshape(-1, 2)  # anterior corners, (x, y) px
    order = np.argsort(corners[:, 1])
    rows = np.arange(int(np.ceil(corners[:, 1].min())), int(corners[:, 1].max()))
    wall = np.interp(rows, corners[order, 1], corners[order, 0])  # the anterior wall's column per row
    hit = [np.nonzero(vessel[r])[0] for r in rows]
    # columns run posterior: the vessel's columns lie before the wall's
    assert all(h.max() < w + 1.0 / a.spacing_mm for h, w in zip(hit, wall, strict=True) if len(h))
    return any(len(h) for h in hit)


def test_train_planes_passes_the_aorta_share(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "planes.pt"
    monkeypatch.setattr("sys.argv", ["train_planes.py", "--stage", "coarse", "--n-train", "2", "--first-seed", "5",
                                     "--minutes", "600", "--steps", "1", "--aorta-share", "0.5", "--cache-dir",
                                     str(tmp_path), "--out", str(out)])
    seen: list[float] = []
    real = planes.render_plane

    def render(*a: Any, **kw: Any) -> planes.PlaneRender:
        seen.append(kw["aorta_share"])
        return real(*a, **kw)

    monkeypatch.setattr(planes, "render_plane", render)
    assert script("train_planes").main() == 0
    assert seen == [0.5, 0.5] and (tmp_path / "planes_coarse_5-2_aorta0.5.npz").is_file()
    meta = torch.load(out, weights_only=True)["coarse"]["meta"]
    assert meta["aorta_share"] == 0.5 and "an aorta in 0.5 of the CT planes" in meta["train_seeds"]
