"""Rendered radiographs agree with their truth: geometry, calibration, photometry."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from sagittal.levels import LEVELS
from sagittal.phantom.anatomy import build_spine, sample_spec
from sagittal.phantom.radiograph import mm_to_px, render_radiograph, sample_style
from sagittal.phantom.truth import radiograph_truth

# a clean look so the checks measure geometry, not randomised processing
CLEAN = dict(photons=1e7, scatter=0.2, equalise=0.9, equalise_mm=60.0, unsharp=0.0, gamma=1.0, window=(0.5, 99.5), seams=0,
             collimation="none", markers=False, ruler=False, grid=False, heel=0.0, blur_mm=0.1, bone_gain=1.2)


@pytest.fixture(scope="module")
def spine():
    return build_spine(sample_spec(np.random.default_rng(42), n_fractures=0))


def _bone_bright(rg) -> np.ndarray:
    img = rg.pixels.astype(np.float32)
    if rg.photometric == "MONOCHROME1":
        img = (1 << rg.bits_stored) - 1 - img
    return img


@pytest.mark.parametrize("facing", ["left", "right"])
@pytest.mark.parametrize("photometric", ["MONOCHROME1", "MONOCHROME2"])
def test_bodies_are_bright_where_the_truth_puts_them(spine, facing, photometric):
    rg = render_radiograph(spine, np.random.default_rng(1), field_of_view="whole", facing=facing,
                           photometric=photometric, pixel_spacing_mm=0.5, ribs=False, arms=False, **CLEAN)
    img = _bone_bright(rg)
    assert rg.in_view.sum() >= 15
    inside, rim = [], []
    for i in np.where(rg.in_view)[0]:
        body = np.zeros(img.shape, np.uint8)
        cv2.fillPoly(body, [np.round(rg.to_px(spine.body_polygon_mm(i))).astype(np.int32)], 1)
        grown = cv2.dilate(body, np.ones((31, 31), np.uint8))  # ~7 mm of surrounding soft tissue/disc
        inside.append(img[body.astype(bool)].mean())
        rim.append(img[(grown - body).astype(bool)].mean())
    # bone is brighter than what surrounds it in (nearly) every vertebra
    assert np.mean(np.array(inside) > np.array(rim)) >= 0.9
    # anterior faces the stated side: body centres lie on that side of the posterior elements
    c_body = rg.to_px(spine.points_mm[:, :4].mean(axis=1))[:, 0]
    c_post = np.array([rg.to_px(pe).mean(axis=0)[0] for pe in spine.posterior_elements_mm])
    assert np.all((c_body > c_post) if facing == "right" else (c_body < c_post))


def test_pixel_mapping_is_exact_and_non_square_aware(spine):
    rg = render_radiograph(spine, np.random.default_rng(2), modality="CR", non_square=True, pixel_spacing_mm=None,
                           **CLEAN)
    assert rg.imager_spacing_mm[0] != rg.imager_spacing_mm[1]
    truth = radiograph_truth(spine, rg)
    sp = rg.spacing_mm
    for level, pts in truth["landmarks"]["vertebrae"].items():
        i = LEVELS.index(level)
        for k, xy in enumerate(pts.values()):
            # back to mm by hand: columns scale with column spacing, rows with row spacing
            s = 1.0 if rg.facing == "right" else -1.0
            x_mm = s * (xy[0] - rg.origin_px[0]) * sp[1]
            y_mm = (rg.origin_px[1] - xy[1]) * sp[0]
            np.testing.assert_allclose([x_mm, y_mm], spine.points_mm[i, k], atol=1e-3)
    np.testing.assert_allclose(mm_to_px(spine.points_mm, rg.origin_px, rg.spacing_mm, rg.facing),
                               rg.to_px(spine.points_mm))


@pytest.mark.parametrize(
    "calibration, source, spacing",
    [("PixelSpacing", "PixelSpacing", "patient"), ("both", "PixelSpacing", "patient"),
     ("ImagerPixelSpacing/ERMF", "ImagerPixelSpacing/ERMF", "patient"),
     ("ImagerPixelSpacing", "ImagerPixelSpacing", "detector"), ("none", "none", None)],
)
def test_truth_states_the_expected_calibration(spine, calibration, source, spacing):
    rg = render_radiograph(spine, np.random.default_rng(3), modality="CR", calibration=calibration,
                           pixel_spacing_mm=0.6, **CLEAN)
    image = radiograph_truth(spine, rg)["image"]
    assert image["spacing_source"] == source
    expected = {"patient": rg.spacing_mm, "detector": rg.imager_spacing_mm, None: None}[spacing]
    if expected is None:
        assert image["pixel_spacing_mm"] is None
    else:
        np.testing.assert_allclose(image["pixel_spacing_mm"], expected, rtol=1e-6)
    assert image["true_spacing_at_patient_mm"] == pytest.approx(list(rg.spacing_mm))
    assert rg.imager_spacing_mm[0] == pytest.approx(rg.spacing_mm[0] * rg.magnification)


def test_lumbar_field_excludes_upper_levels(spine):
    rg = render_radiograph(spine, np.random.default_rng(4), field_of_view="lumbar", pixel_spacing_mm=0.6, **CLEAN)
    assert not rg.in_view[LEVELS.index("T5")]
    assert rg.in_view[LEVELS.index("L3")] and rg.s1_in_view and rg.femoral_in_view.all()
    truth = radiograph_truth(spine, rg)
    assert "T5" not in truth["landmarks"]["vertebrae"] and "L3" in truth["landmarks"]["vertebrae"]


def test_rendering_is_deterministic_by_seed(spine):
    a = render_radiograph(spine, np.random.default_rng(7), pixel_spacing_mm=0.8)
    b = render_radiograph(spine, np.random.default_rng(7), pixel_spacing_mm=0.8)
    c = render_radiograph(spine, np.random.default_rng(8), pixel_spacing_mm=0.8)
    np.testing.assert_array_equal(a.pixels, b.pixels)
    assert a.style == b.style
    assert a.pixels.shape != c.pixels.shape or not np.array_equal(a.pixels, c.pixels)


@pytest.mark.parametrize("seed", range(12))
def test_randomised_styles_render_valid_images(spine, seed):
    rg = render_radiograph(spine, np.random.default_rng(seed), pixel_spacing_mm=1.0)
    assert rg.pixels.dtype == np.uint16
    assert 12 <= rg.bits_stored <= 16 and rg.pixels.max() < (1 << rg.bits_stored)
    assert rg.pixels.std() > 0
    assert rg.photometric in ("MONOCHROME1", "MONOCHROME2")


def test_dx_refuses_calibration_it_cannot_carry():
    with pytest.raises(ValueError, match="DX image always carries ImagerPixelSpacing"):
        sample_style(np.random.default_rng(0), modality="DX", calibration="none")
