"""``geometry.measure``: the one entry point gives every field for one spine or many, and its
classification codes agree with ``geometry.classify``."""

from __future__ import annotations

import numpy as np
import pytest

from sagittal import geometry as g
from sagittal.geometry.classify import roussouly_type, schwab_modifiers
from sagittal.phantom import build_spine, sample_spec


def _spines(n: int, seed: int = 5) -> tuple[np.ndarray, np.ndarray, np.ndarray, list]:
    rng = np.random.default_rng(seed)
    spines = [build_spine(sample_spec(rng)) for _ in range(n)]
    return (np.stack([s.points_mm for s in spines]), np.stack([s.s1_mm for s in spines]),
            np.stack([s.hip_axis_mm for s in spines]), spines)


def test_one_spine_and_many_agree():
    pts, s1, hip, spines = _spines(12)
    pts[2, 0] = np.nan  # C7 out of view: SVA unmeasured
    many = g.measure(pts, s1, hip, chunk=5)
    grid = g.measure(pts.reshape(3, 4, 18, 6, 2), s1.reshape(3, 4, 2, 2), hip.reshape(3, 4, 2))
    assert set(many) == set(g.FIELDS)
    for i in range(len(pts)):
        one = g.measure(pts[i], s1[i], hip[i])
        for k, shape in g.FIELDS.items():
            assert one[k].shape == shape and many[k].shape == (12, *shape)
            np.testing.assert_array_equal(one[k], many[k][i], err_msg=k)
            np.testing.assert_array_equal(grid[k][i // 4, i % 4], many[k][i], err_msg=k)
    np.testing.assert_allclose(many["pelvic_incidence_deg"], [s.parameters["pelvic_incidence_deg"] for s in spines],
                               atol=1e-9)
    assert np.isnan(many["sagittal_vertical_axis_mm"][2]) and many["srs_schwab_sva"][2] == -1


def test_classification_codes_match_classify():
    pts, s1, hip, _ = _spines(30, seed=9)
    out = g.measure(pts, s1, hip)
    names = np.array(["0", "+", "++"], dtype=object)
    mods = schwab_modifiers(out["pi_ll_mismatch_deg"], out["pelvic_tilt_deg"], out["sagittal_vertical_axis_mm"])
    for key in ("pi_ll", "pt", "sva"):
        assert list(names[out[f"srs_schwab_{key}"]]) == list(mods[key])
    np.testing.assert_array_equal(out["roussouly_type"], roussouly_type(pts, out["sacral_slope_deg"]))
    assert set(np.unique(out["roussouly_type"])) <= {1, 2, 3, 4}


def test_shapes_are_checked():
    pts, s1, hip, _ = _spines(2)
    with pytest.raises(ValueError, match="points_mm"):
        g.measure(pts[:, :17], s1, hip)
    with pytest.raises(ValueError, match="leading shape"):
        g.measure(pts, s1[:1], hip)
