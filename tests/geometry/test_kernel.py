"""The fused kernel behind ``measure`` gives what the readable reference functions give."""

from __future__ import annotations

import numpy as np
import pytest

from sagittal.geometry.batch import FIELDS, INTEGER_FIELDS, measure_all, measure_spines
from sagittal.phantom import build_spine, sample_spec


def _spines(n: int, seed: int, *, missing: float = 0.0, reversed_share: float = 0.0):
    """``n`` noisy phantom spines; some levels, S1 endplates and hip axes missing (NaN); some
    mirrored so that endplates point to -x (the kernel's arctan2 fallback)."""
    rng = np.random.default_rng(seed)
    base = [build_spine(sample_spec(rng, n_fractures=int(rng.integers(0, 3)))) for _ in range(12)]
    idx = rng.integers(0, len(base), n)
    pts = np.stack([s.points_mm for s in base])[idx] + rng.normal(0, 0.8, (n, 18, 6, 2))
    s1 = np.stack([s.s1_mm for s in base])[idx] + rng.normal(0, 0.5, (n, 2, 2))
    hip = np.stack([s.hip_axis_mm for s in base])[idx] + rng.normal(0, 0.5, (n, 2))
    flip = rng.random(n) < reversed_share
    pts[flip, ..., 0] *= -1
    s1[flip, ..., 0] *= -1
    hip[flip, 0] *= -1
    pts[rng.random((n, 18)) < missing] = np.nan
    s1[rng.random(n) < missing] = np.nan
    hip[rng.random(n) < missing] = np.nan
    return pts, s1, hip


def _assert_same(ref: dict[str, np.ndarray], got: dict[str, np.ndarray]) -> None:
    for k in FIELDS:
        a, b = ref[k], got[k]
        assert b.shape == a.shape, k
        if k in INTEGER_FIELDS:
            np.testing.assert_array_equal(b, a, err_msg=k)
        else:
            np.testing.assert_array_equal(np.isnan(b), np.isnan(a), err_msg=k)
            np.testing.assert_allclose(b, a, rtol=0, atol=1e-9, equal_nan=True, err_msg=k)


@pytest.mark.parametrize("missing, reversed_share", [(0.0, 0.0), (0.08, 0.0), (0.05, 0.3)])
def test_kernel_matches_the_reference_functions(missing, reversed_share):
    pts, s1, hip = _spines(3000, seed=11, missing=missing, reversed_share=reversed_share)
    ref = measure_all(pts, s1, hip)
    _assert_same(ref, measure_spines(pts, s1, hip, chunk=512, workers=2))
    _assert_same(ref, measure_spines(pts, s1, hip, workers=1))
    if missing == 0.0:  # the data hold real fractures and no missing level: both kernel paths ran
        assert (ref["genant_grade"] > 0).any() and (ref["genant_grade"] == 0).any()


def test_kernel_edge_cases():
    pts, s1, hip = _spines(40, seed=5)
    pts[0, 3, :4] = pts[0, 3, 0]  # a degenerate body: all corners on one point
    pts[1] = np.nan  # nothing but the pelvis
    pts[2, :, :, 0] = np.inf  # absurd input stays non-finite, never raises
    pts[3, 5, 1, :] = pts[3, 5, 0, :] + [0.0, 3.0]  # a vertical superior endplate (dx = 0)
    s1[4] = np.nan
    hip[5] = np.nan
    with np.errstate(all="ignore"):
        ref = measure_all(pts, s1, hip)
    _assert_same(ref, measure_spines(pts, s1, hip, workers=1))


def test_kernel_writes_fractures_where_the_reference_finds_them():
    pts, s1, hip = _spines(500, seed=3)
    got = measure_spines(pts, s1, hip, chunk=128)
    ref = measure_all(pts, s1, hip)
    fractured = ref["genant_grade"] > 0
    assert fractured.sum() > 10
    np.testing.assert_array_equal(got["morphology_index"][fractured], ref["morphology_index"][fractured])
    assert set(np.unique(got["morphology_index"][fractured])) <= {1, 2, 3}
