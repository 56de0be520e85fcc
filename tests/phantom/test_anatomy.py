"""Truth consistency of the constructive spine: checked with independent, hand-written
arithmetic on the built points (never with sagittal.geometry)."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from sagittal.geometry.morphometry import NORMAL_ANTERIOR_RATIO, NORMAL_MIDDLE_RATIO, NORMAL_POSTERIOR_MM
from sagittal.levels import LEVEL_INDEX, LEVELS
from sagittal.phantom.anatomy import Fracture, build_spine, sample_spec, with_progression


def _angle_deg(v) -> float:
    return math.degrees(math.atan2(v[1], v[0]))


def _spine(seed=0, **kw):
    return build_spine(sample_spec(np.random.default_rng(seed), **kw))


@pytest.mark.parametrize(
    "pi, pt",
    [pytest.param(52.0, 13.0, id="average"), pytest.param(35.0, 2.0, id="low-PI"),
     pytest.param(80.0, 35.0, id="high-PI-retroverted"), pytest.param(45.0, -4.0, id="negative-PT")],
)
def test_pelvis_placed_so_that_pi_equals_pt_plus_ss(pi, pt):
    s = _spine(pelvic_incidence_deg=pi, pelvic_tilt_deg=pt, n_fractures=0)
    ant, post = s.s1_mm
    mid = (ant + post) / 2
    hip = (s.femoral_centers_mm[0] + s.femoral_centers_mm[1]) / 2
    # sacral slope: endplate against the horizontal, anterior end lower
    ss = -_angle_deg(ant - post)
    # pelvic tilt: vertical through the hip axis vs hip→S1 midpoint, + when the hip is anterior
    to_mid = mid - hip
    pt_meas = math.degrees(math.atan2(-to_mid[0], to_mid[1]))
    # pelvic incidence: endplate perpendicular (into the sacrum) vs midpoint→hip axis
    e = (ant - post) / np.linalg.norm(ant - post)
    down = np.array([e[1], -e[0]])
    to_hip = (hip - mid) / np.linalg.norm(hip - mid)
    pi_meas = math.degrees(math.acos(np.clip(down @ to_hip, -1, 1)))
    assert ss == pytest.approx(pi - pt, abs=1e-9)
    assert pt_meas == pytest.approx(pt, abs=1e-9)
    assert pi_meas == pytest.approx(pi, abs=1e-9)
    params = s.parameters
    assert params["pelvic_incidence_deg"] == pytest.approx(params["pelvic_tilt_deg"] + params["sacral_slope_deg"], abs=1e-12)
    np.testing.assert_allclose(hip, s.hip_axis_mm, atol=1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_unfractured_alignment_is_what_was_requested(seed):
    s = _spine(seed, n_fractures=0)
    p = s.points_mm
    ll = _angle_deg(p[LEVEL_INDEX["L1"], 0] - p[LEVEL_INDEX["L1"], 1]) - _angle_deg(s.s1_mm[0] - s.s1_mm[1])
    t4, t12 = LEVEL_INDEX["T4"], LEVEL_INDEX["T12"]
    tk = _angle_deg(p[t12, 3] - p[t12, 2]) - _angle_deg(p[t4, 0] - p[t4, 1])
    assert ll == pytest.approx(s.spec.lumbar_lordosis_deg, abs=1e-9)
    assert tk == pytest.approx(s.spec.thoracic_kyphosis_deg, abs=1e-9)
    assert s.parameters["lumbar_lordosis_deg"] == pytest.approx(ll, abs=1e-9)
    c7 = p[LEVEL_INDEX["C7"], :4].mean(axis=0)
    assert s.parameters["sagittal_vertical_axis_mm"] == pytest.approx(c7[0] - s.s1_mm[1, 0], abs=1e-9)


@pytest.mark.parametrize(
    "morphology, which",
    [pytest.param("wedge", 0, id="wedge-anterior"), pytest.param("biconcave", 1, id="biconcave-middle"),
     pytest.param("crush", 2, id="crush-posterior")],
)
@pytest.mark.parametrize("loss", [22.0, 33.0, 50.0])
def test_fractured_heights_show_the_requested_loss(morphology, which, loss):
    base = sample_spec(np.random.default_rng(11), n_fractures=0)
    s0 = build_spine(base)
    s = build_spine(replace(base, fractures=(Fracture("L1", 2, loss, morphology),)))
    i = LEVEL_INDEX["L1"]
    p = s.points_mm[i]
    h = np.array([np.linalg.norm(p[0] - p[3]), np.linalg.norm(p[4] - p[5]), np.linalg.norm(p[1] - p[2])])
    rel_loss = 100 * (1 - h / s.heights_before_mm[i])
    assert rel_loss.max() == pytest.approx(loss, abs=1e-6)
    assert int(np.argmax(rel_loss)) == which
    np.testing.assert_allclose(h, s.heights_mm[i], atol=1e-9)
    assert s.grade[i] == 2 and s.morphology[i] == morphology
    # the pre-fracture body is the expected one: level-normal proportions, posterior height
    # interpolated from the two neighbours (scaled by the normal sizes of the levels)
    ha0, hm0, hp0 = s.heights_before_mm[i]
    assert ha0 / hp0 == pytest.approx(NORMAL_ANTERIOR_RATIO[i])
    assert hm0 / hp0 == pytest.approx(NORMAL_MIDDLE_RATIO[i])
    nb = [s0.heights_mm[j, 2] * NORMAL_POSTERIOR_MM[i] / NORMAL_POSTERIOR_MM[j] for j in (i - 1, i + 1)]
    assert hp0 == pytest.approx(np.mean(nb))

    # other vertebrae keep their shape
    def heights(q):
        return np.array([np.linalg.norm(q[0] - q[3]), np.linalg.norm(q[4] - q[5]), np.linalg.norm(q[1] - q[2])])

    for j in range(len(LEVELS)):
        if j != i:
            np.testing.assert_allclose(heights(s.points_mm[j]), heights(s0.points_mm[j]), atol=1e-9)


def test_wedge_collapse_adds_kyphosis():
    base = sample_spec(np.random.default_rng(5), n_fractures=0)
    s = build_spine(replace(base, fractures=(Fracture("T12", 3, 45.0, "wedge"),)))
    i = LEVEL_INDEX["T12"]
    ha0, _, hp0 = s.heights_before_mm[i]
    before = math.degrees(math.atan2(hp0 - ha0, s.spec.depth_mm[i]))  # kyphosis of the intact body
    after = math.degrees(s.phi_rad[i, 1] - s.phi_rad[i, 0])
    assert after > before + 10
    # the requested (pre-fracture) kyphosis plus exactly what the collapse added
    assert s.parameters["thoracic_kyphosis_deg"] == pytest.approx(base.thoracic_kyphosis_deg + after - before, abs=1e-9)
    assert s.parameters["pelvic_incidence_deg"] == base.pelvic_incidence_deg


def test_progression_loses_more_height_at_the_same_level():
    base = replace(sample_spec(np.random.default_rng(3), n_fractures=0),
                   fractures=(Fracture("L1", 1, 22.0, "wedge", oedema_pct=60.0),))
    later = with_progression(base, "L1", 15.0)
    a, b = build_spine(base), build_spine(later)
    i = LEVEL_INDEX["L1"]
    assert b.heights_mm[i, 0] < a.heights_mm[i, 0]
    assert b.loss_pct[i] == pytest.approx(37.0) and b.grade[i] == 2
    with pytest.raises(ValueError, match="no fracture at T5"):
        with_progression(base, "T5", 5.0)


def test_sampled_spines_are_plausible():
    rng = np.random.default_rng(2024)
    svas, fx_levels = [], []
    for _ in range(200):
        s = build_spine(sample_spec(rng))
        svas.append(s.parameters["sagittal_vertical_axis_mm"])
        p = s.points_mm
        # bodies stack cranially and discs keep a positive anterior height
        assert np.all(np.diff(p[:, :4, 1].mean(axis=1)) < 0)
        assert all(np.linalg.norm(p[i, 3] - p[i + 1, 0]) > 0.5 for i in range(len(LEVELS) - 1))
        fx_levels += [f.level for f in s.spec.fractures]
    assert -50 <= min(svas) and max(svas) <= 120
    tl = sum(lv in ("T10", "T11", "T12", "L1", "L2") for lv in fx_levels)
    assert tl / len(fx_levels) > 0.4  # most fractures at the thoracolumbar junction


@pytest.mark.parametrize(
    "kwargs, message",
    [({"level": "S1"}, "unknown level"), ({"grade": 4}, "Genant grade"), ({"morphology": "burst"}, "morphology"),
     ({"loss_pct": 95.0}, "height loss"), ({"cleft": "air"}, "cleft")],
)
def test_fracture_rejects_bad_values(kwargs, message):
    args = {"level": "L1", "grade": 2, "loss_pct": 30.0, "morphology": "wedge"} | kwargs
    with pytest.raises(ValueError, match=message):
        Fracture(**args)


def test_build_is_deterministic_and_seed_dependent():
    a, b, c = _spine(9), _spine(9), _spine(10)
    np.testing.assert_array_equal(a.points_mm, b.points_mm)
    assert not np.allclose(a.points_mm, c.points_mm)
