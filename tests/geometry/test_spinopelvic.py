"""Sagittal parameters: hand-computed tables, invariances (hypothesis) and the phantom's
constructive truth recovered."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sagittal.geometry import (
    endplate_angle_deg,
    lumbar_lordosis_deg,
    pelvic_incidence_deg,
    pelvic_tilt_deg,
    pixels_to_patient,
    regional_kyphosis_deg,
    sacral_slope_deg,
    sagittal_vertical_axis_mm,
    t1_pelvic_angle_deg,
    thoracic_kyphosis_deg,
    vertebral_kyphosis_deg,
    wrap_deg,
)
from sagittal.levels import LEVEL_INDEX
from sagittal.phantom import build_spine, sample_spec


def _s1(ant, post):
    return np.array([ant, post], float)


@pytest.mark.parametrize(
    "ant, post, hip, ss, pt, pi",
    [
        # endplate 40 mm long falling 45° anteriorly; hip axis straight below the midpoint
        pytest.param((10, -10), (-10, 10), (0, -100), 45.0, 0.0, 45.0, id="ss45-pt0"),
        # flat endplate, hip axis 100 mm anterior and 100 mm below the midpoint
        pytest.param((20, 0), (-20, 0), (100, -100), 0.0, 45.0, 45.0, id="ss0-pt45"),
        # the hip behind the midpoint: negative tilt
        pytest.param((20, 0), (-20, 0), (-100 * math.tan(math.radians(10)), -100), 0.0, -10.0, -10.0, id="pt-negative"),
        # 30° slope, hip 20° anterior of the vertical
        pytest.param((math.cos(math.radians(30)), -math.sin(math.radians(30))),
                     (-math.cos(math.radians(30)), math.sin(math.radians(30))),
                     (100 * math.sin(math.radians(20)), -100 * math.cos(math.radians(20))), 30.0, 20.0, 50.0,
                     id="ss30-pt20"),
    ],
)
def test_pelvic_parameters_hand_computed(ant, post, hip, ss, pt, pi):
    s1 = _s1(ant, post)
    assert sacral_slope_deg(s1) == pytest.approx(ss, abs=1e-9)
    assert pelvic_tilt_deg(s1, np.array(hip)) == pytest.approx(pt, abs=1e-9)
    assert pelvic_incidence_deg(s1, np.array(hip)) == pytest.approx(pi, abs=1e-9)


@pytest.mark.parametrize(
    "post, ant, deg",
    [pytest.param((0, 0), (1, 0), 0.0, id="flat"), pytest.param((0, 0), (1, 1), 45.0, id="anterior-up"),
     pytest.param((0, 0), (1, -1), -45.0, id="anterior-down"), pytest.param((0, 0), (-1, 0), 180.0, id="reversed")],
)
def test_endplate_angle(post, ant, deg):
    assert endplate_angle_deg(np.array(post, float), np.array(ant, float)) == pytest.approx(deg)


@pytest.mark.parametrize("a, w", [(190.0, -170.0), (-180.0, 180.0), (540.0, 180.0), (-190.0, 170.0), (10.0, 10.0)])
def test_wrap(a, w):
    assert wrap_deg(a) == pytest.approx(w)


@pytest.fixture(scope="module")
def phantoms():
    rng = np.random.default_rng(77)
    spines = [build_spine(sample_spec(rng)) for _ in range(300)]
    pts = np.stack([s.points_mm for s in spines])
    s1 = np.stack([s.s1_mm for s in spines])
    hip = np.stack([s.femoral_centers_mm.mean(axis=0) for s in spines])
    return spines, pts, s1, hip


def _params(pts, s1, hip):
    return {
        "pelvic_incidence_deg": pelvic_incidence_deg(s1, hip),
        "pelvic_tilt_deg": pelvic_tilt_deg(s1, hip),
        "sacral_slope_deg": sacral_slope_deg(s1),
        "lumbar_lordosis_deg": lumbar_lordosis_deg(pts, s1),
        "thoracic_kyphosis_deg": thoracic_kyphosis_deg(pts),
        "sagittal_vertical_axis_mm": sagittal_vertical_axis_mm(pts, s1),
        "t1_pelvic_angle_deg": t1_pelvic_angle_deg(pts, s1, hip),
    }


def test_phantom_truth_recovered(phantoms):
    spines, pts, s1, hip = phantoms
    got = _params(pts, s1, hip)
    for key, values in got.items():
        truth = np.array([s.parameters[key] for s in spines])
        np.testing.assert_allclose(values, truth, atol=1e-6, err_msg=key)
    vk = vertebral_kyphosis_deg(pts)
    truth_vk = np.degrees(np.stack([s.phi_rad[:, 1] - s.phi_rad[:, 0] for s in spines]))
    np.testing.assert_allclose(vk, truth_vk, atol=1e-6)


def test_regional_kyphosis_spans_three_levels(phantoms):
    spines, pts, s1, _ = phantoms
    rk = regional_kyphosis_deg(pts, s1)
    assert np.isnan(rk[:, 0]).all()
    s = spines[0]
    i = LEVEL_INDEX["T12"]
    assert rk[0, i] == pytest.approx(math.degrees(s.phi_rad[i + 1, 1] - s.phi_rad[i - 1, 0]), abs=1e-9)
    i = LEVEL_INDEX["L5"]
    s1_phi = math.degrees(math.atan2(*(s.s1_mm[0] - s.s1_mm[1])[::-1]))
    assert rk[0, i] == pytest.approx(s1_phi - math.degrees(s.phi_rad[i - 1, 0]), abs=1e-9)


def _rotate(p, deg, about=(0.0, 0.0)):
    t = math.radians(deg)
    r = np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])
    return (np.asarray(p) - about) @ r.T + about


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 299), st.floats(-500, 500), st.floats(-500, 500))
def test_translation_invariance(phantoms, k, dx, dy):
    _, pts, s1, hip = phantoms
    a = _params(pts[k], s1[k], hip[k])
    b = _params(pts[k] + [dx, dy], s1[k] + [dx, dy], hip[k] + [dx, dy])
    for key in a:
        assert b[key] == pytest.approx(a[key], abs=1e-7)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 299), st.floats(-20, 20))
def test_rotation_shifts_only_ss_and_pt(phantoms, k, deg):
    _, pts, s1, hip = phantoms
    a = _params(pts[k], s1[k], hip[k])
    b = _params(_rotate(pts[k], deg), _rotate(s1[k], deg), _rotate(hip[k], deg))
    for key in ("pelvic_incidence_deg", "lumbar_lordosis_deg", "thoracic_kyphosis_deg"):
        assert b[key] == pytest.approx(a[key], abs=1e-7)
    assert b["sacral_slope_deg"] == pytest.approx(a["sacral_slope_deg"] - deg, abs=1e-7)
    assert b["pelvic_tilt_deg"] == pytest.approx(a["pelvic_tilt_deg"] + deg, abs=1e-7)
    np.testing.assert_allclose(vertebral_kyphosis_deg(_rotate(pts[k], deg)), vertebral_kyphosis_deg(pts[k]), atol=1e-7)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 299), st.floats(0.2, 5.0))
def test_scaling_keeps_angles_and_scales_lengths(phantoms, k, f):
    _, pts, s1, hip = phantoms
    a = _params(pts[k], s1[k], hip[k])
    b = _params(pts[k] * f, s1[k] * f, hip[k] * f)
    for key in a:
        expected = a[key] * f if key.endswith("_mm") else a[key]
        assert b[key] == pytest.approx(expected, abs=1e-7)


@settings(max_examples=60, deadline=None)
@given(st.floats(-60, 60), st.floats(1, 80), st.floats(-90, 90), st.floats(20, 200), st.floats(-30, 60))
def test_pi_equals_pt_plus_ss(ss, half_width, pt, dist, tilt):
    e = np.array([math.cos(math.radians(-ss)), math.sin(math.radians(-ss))])
    mid = np.array([3.0, 7.0])
    s1 = np.array([mid + half_width * e, mid - half_width * e])
    hip = mid + dist * np.array([math.sin(math.radians(pt)), -math.cos(math.radians(pt))])
    got = pelvic_incidence_deg(s1, hip) - pelvic_tilt_deg(s1, hip) - sacral_slope_deg(s1)
    assert abs(wrap_deg(got)) < 1e-9


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 299), st.sampled_from([(0.15, 0.15), (0.2, 0.14), (0.5, 0.33)]), st.integers(300, 3000))
def test_mirror_and_non_square_pixels(phantoms, k, spacing, width_px):
    """The same spine drawn facing left or right, with any pixel aspect, gives identical values."""
    _, pts, s1, hip = phantoms
    sr, sc = spacing
    ref = _params(pts[k], s1[k], hip[k])
    for side in ("left", "right"):
        sgn = 1 if side == "right" else -1

        def to_px(p, sgn=sgn):
            p = np.asarray(p)
            return np.stack([width_px / 2 + sgn * p[..., 0] / sc, 2000 - p[..., 1] / sr], axis=-1)

        back = [pixels_to_patient(to_px(x), spacing, side) for x in (pts[k], s1[k], hip[k])]
        got = _params(*back)
        for key in ref:
            assert got[key] == pytest.approx(ref[key], abs=1e-7)


def test_nan_in_nan_out(phantoms):
    _, pts, s1, hip = phantoms
    p = pts[:2].copy()
    p[0, LEVEL_INDEX["T4"]] = np.nan
    tk = thoracic_kyphosis_deg(p)
    assert np.isnan(tk[0]) and np.isfinite(tk[1])
    assert np.isnan(pelvic_tilt_deg(s1[0], np.array([np.nan, np.nan])))
    assert np.isnan(pixels_to_patient(np.array([1.0, 2.0]), (0.1, 0.1), "up")[0])  # unknown facing
