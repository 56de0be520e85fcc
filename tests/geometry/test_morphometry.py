"""Six-point morphometry: hand-made vertebrae, Genant bands, and grading of phantom spines."""

from __future__ import annotations

import numpy as np
import pytest

from sagittal.geometry.morphometry import (
    NORMAL_ANTERIOR_RATIO,
    NORMAL_MIDDLE_RATIO,
    NORMAL_POSTERIOR_MM,
    genant_grade,
    heights_mm,
    morphology_name,
    morphometry,
)
from sagittal.levels import LEVEL_INDEX, LEVELS
from sagittal.phantom import build_spine, sample_spec


def _column(ha_scale=None, hm_scale=None, hp_scale=None, level="L3"):
    """A straight column of normal vertebrae (reference ratios exactly), one of them altered."""
    pts = np.full((len(LEVELS), 6, 2), np.nan)
    y = 0.0
    for i in range(len(LEVELS) - 1, -1, -1):
        hp = NORMAL_POSTERIOR_MM[i]
        ha = hp * NORMAL_ANTERIOR_RATIO[i]
        hm = hp * NORMAL_MIDDLE_RATIO[i]
        if LEVELS[i] == level:
            ha *= ha_scale or 1.0
            hm *= hm_scale or 1.0
            hp *= hp_scale or 1.0
        d = 30.0
        pts[i] = [[d, y + ha], [0, y + hp], [0, y], [d, y], [d / 2, y + hm], [d / 2, y]]
        y += max(ha, hp) + 8.0
    return pts


@pytest.mark.parametrize(
    "scales, loss, grade, morph",
    [
        pytest.param({}, 0.0, 0, "normal", id="normal"),
        pytest.param({"ha_scale": 0.7}, 30.0, 2, "wedge", id="wedge-30"),
        pytest.param({"ha_scale": 0.78}, 22.0, 1, "wedge", id="wedge-22"),
        pytest.param({"hm_scale": 0.55}, 45.0, 3, "biconcave", id="biconcave-45"),
        pytest.param({"ha_scale": 0.7, "hm_scale": 0.7, "hp_scale": 0.65}, 35.0, 2, "crush", id="crush-35"),
    ],
)
def test_hand_made_vertebrae(scales, loss, grade, morph):
    r = morphometry(_column(**scales))
    i = LEVEL_INDEX["L3"]
    assert r["height_loss_pct"][i] == pytest.approx(loss, abs=1e-6)
    assert r["genant_grade"][i] == grade
    assert morphology_name(r["morphology_index"])[i] == morph
    others = np.delete(r["genant_grade"], i)
    assert (others == 0).all()


def test_heights():
    h = heights_mm(_column())
    np.testing.assert_allclose(h[:, 2], NORMAL_POSTERIOR_MM)
    np.testing.assert_allclose(h[:, 0], NORMAL_POSTERIOR_MM * NORMAL_ANTERIOR_RATIO)


@pytest.mark.parametrize(
    "loss, grade",
    [(0.0, 0), (19.99, 0), (20.0, 1), (25.0, 1), (25.01, 2), (40.0, 2), (40.01, 3), (80.0, 3), (np.nan, -1)],
)
def test_genant_bands(loss, grade):
    assert genant_grade(np.array([loss]))[0] == grade


def test_missing_vertebrae_are_unknown_not_normal():
    pts = _column(ha_scale=0.7)
    pts[LEVEL_INDEX["T5"]] = np.nan
    r = morphometry(pts)
    assert r["genant_grade"][LEVEL_INDEX["T5"]] == -1
    assert morphology_name(r["morphology_index"])[LEVEL_INDEX["T5"]] is None
    assert r["genant_grade"][LEVEL_INDEX["L3"]] == 2


def test_grading_of_phantom_spines():
    """Issue 4's goal on 2,000 phantom spines' true landmarks: ≥ 95 % of fractured vertebrae
    graded exactly, ≥ 99 % of normal vertebrae grade 0."""
    rng = np.random.default_rng(0)
    spines = [build_spine(sample_spec(rng)) for _ in range(2000)]
    pts = np.stack([s.points_mm for s in spines])
    truth = np.stack([s.grade for s in spines])
    r = morphometry(pts)
    fx = truth > 0
    assert fx.sum() > 1000
    exact = (r["genant_grade"][fx] == truth[fx]).mean()
    normal0 = (r["genant_grade"][~fx] == 0).mean()
    assert normal0 >= 0.99
    assert exact >= 0.95
    morph = np.array([s.morphology for s in spines])
    assert (morphology_name(r["morphology_index"])[fx] == morph[fx]).mean() >= 0.9
