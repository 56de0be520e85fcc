"""Crop geometry of the refinement stage: the source ↔ crop mapping is exact (pixel centres,
mirroring, rotation), extraction puts image content where the mapping says, and the training
crops carry their landmarks onto the bodies."""

from __future__ import annotations

import numpy as np
import pytest

from sagittal.landmarks.crops import CROP, CropFrame, extract, vertebra_frame, vertebra_size
from sagittal.training.data import KIND_CODES, make_refine_dataset


@pytest.mark.parametrize("mirror", [False, True])
@pytest.mark.parametrize("angle", [0.0, 0.2])
def test_mapping_round_trips_and_extraction_agrees(mirror, angle):
    spot = np.array([412.3, 1310.7])
    ys, xs = np.mgrid[:1600, :700]
    image = np.exp(-((xs - spot[0]) ** 2 + (ys - spot[1]) ** 2) / (2 * 6.0**2)).astype(np.float32)
    frame = CropFrame((420.0, 1300.0), 200.0, mirror, angle)
    q = frame.to_crop(spot)
    np.testing.assert_allclose(frame.to_source(q), spot, atol=1e-9)
    crop = extract(image, frame)
    assert crop.shape == (CROP, CROP) and crop.dtype == np.float32 and 0 <= crop.min() and crop.max() <= 1
    w = crop**4
    cy, cx = np.mgrid[:CROP, :CROP]
    found = np.array([(w * cx).sum() / w.sum(), (w * cy).sum() / w.sum()])
    np.testing.assert_allclose(found, q, atol=0.1)
    # mirrored crops show anterior (+x in the source when facing right) on the right
    right = frame.to_crop(np.array([430.0, 1300.0]))[0] - frame.to_crop(np.array([420.0, 1300.0]))[0]
    assert (right < 0) == mirror or angle != 0.0


def test_crop_outside_the_image_is_empty():
    frame = CropFrame((-500.0, -500.0), 100.0, False)
    assert not extract(np.ones((200, 100), np.float32), frame).any()


def test_vertebra_frame_centres_the_body():
    pts = np.array([[130.0, 100.0], [90.0, 98.0], [91.0, 128.0], [129.0, 131.0], [110.0, 101.0], [110.0, 127.5]])
    f = vertebra_frame(pts, mirror=False)
    np.testing.assert_allclose(f.to_crop(pts[:4].mean(axis=0)), [(CROP - 1) / 2] * 2)
    assert vertebra_size(pts) == pytest.approx((40.0 + 38.0 + 31.0 + 30.0) / 4, abs=0.1)


def test_training_crops_carry_their_landmarks():
    data = make_refine_dataset(range(3))
    kinds, pts = data["kinds"], data["points"]
    assert data["crops"].shape[1:] == (CROP, CROP) and len(kinds) == len(pts) > 10
    vert = kinds == KIND_CODES["vertebra"]
    assert np.isfinite(pts[vert, :6]).all() and np.isnan(pts[vert, 6:]).all()
    # jittered about the body: its centre near the crop centre, anterior corners to the right
    centre = pts[vert, :4].mean(axis=1)
    assert np.abs(centre - (CROP - 1) / 2).max() < 0.3 * CROP
    assert (pts[vert, 0, 0] > pts[vert, 1, 0]).mean() > 0.95
    # the body is brighter than the crop's surroundings at its centre
    c = np.round(centre).astype(int)
    inner = data["crops"][vert][np.arange(vert.sum()), c[:, 1], c[:, 0]]
    assert np.median(inner) > np.median(data["crops"][vert])


def test_fracture_boost_adds_crops_of_fractured_bodies():
    from sagittal.training.data import REFINE_STREAM, _refine_one, _render

    for seed in range(20):
        spine, rg, _ = _render(REFINE_STREAM, seed, (0.3, 0.9), fracture_rate=0.6)
        fractured = int((spine.grade[rg.in_view] > 0).sum())
        if fractured:
            break
    assert fractured, "no fractured spine in 20 seeds"
    crops = _refine_one(seed, fracture_boost=2)
    expected = int(rg.in_view.sum()) + 2 * fractured + int(rg.s1_in_view) + int(rg.femoral_in_view.all())
    assert len(crops) == expected


def test_pair_extraction_matches_two_single_extractions():
    """The consistency check's two crops from one window: the first as ``extract`` gives it, the
    second (larger, turned) from the same window with the first's low-pass, so within the
    difference of the two low-passes."""
    from dataclasses import replace

    import cv2

    from sagittal.landmarks.crops import extract_pair

    rng = np.random.default_rng(5)
    img = cv2.GaussianBlur(rng.random((900, 500)).astype(np.float32), (0, 0), 6)
    for side in (40.0, 300.0):  # not shrunk / shrunk ~5x (low-passed)
        f = CropFrame((250.0, 450.0), side, mirror=True)
        g = replace(f, side_px=side * 1.12, angle_rad=np.radians(6))
        a, b = extract_pair(img, f, g)
        np.testing.assert_allclose(a, extract(img, f), atol=1e-4)
        assert np.abs(b - extract(img, g)).mean() < 0.01
        assert np.abs(b - extract(img, f)).mean() > 0.02  # it is the other frame's crop
