"""Chunked, threaded batch measurement equals the one-shot computation."""

from __future__ import annotations

import numpy as np
import pytest

from sagittal.geometry.batch import FIELDS, INTEGER_FIELDS, measure_all, measure_spines
from sagittal.phantom import build_spine, sample_spec


@pytest.mark.parametrize("chunk, workers", [(7, 1), (7, 2), (1000, 2)])
def test_chunked_equals_one_shot(chunk, workers):
    rng = np.random.default_rng(1)
    spines = [build_spine(sample_spec(rng)) for _ in range(40)]
    pts = np.stack([s.points_mm for s in spines])
    s1 = np.stack([s.s1_mm for s in spines])
    hip = np.stack([s.hip_axis_mm for s in spines])
    pts[3, 5] = np.nan  # a vertebra out of view
    ref = measure_all(pts, s1, hip)
    got = measure_spines(pts, s1, hip, chunk=chunk, workers=workers)
    assert set(got) == set(FIELDS)
    for k in FIELDS:  # the kernel's arctan(dy/dx) is within an ulp of the reference's arctan2 (1e-14 deg)
        if k in INTEGER_FIELDS:
            np.testing.assert_array_equal(got[k], np.asarray(ref[k]).astype(got[k].dtype), err_msg=k)
        else:
            np.testing.assert_allclose(got[k], ref[k], rtol=0, atol=1e-12, equal_nan=True, err_msg=k)
    np.testing.assert_allclose(got["pelvic_incidence_deg"], [s.parameters["pelvic_incidence_deg"] for s in spines],
                               atol=1e-9)
