from __future__ import annotations

import numpy as np
import pytest

from sagittal.geometry.classify import roussouly_type, schwab_modifiers
from sagittal.levels import LEVEL_INDEX


@pytest.mark.parametrize(
    "pi_ll, pt, sva, expected",
    [
        pytest.param(5.0, 15.0, 10.0, ("0", "0", "0"), id="aligned"),
        pytest.param(10.0, 20.0, 40.0, ("+", "+", "+"), id="lower-edges"),
        pytest.param(20.0, 30.0, 95.0, ("+", "+", "+"), id="upper-edges"),
        pytest.param(25.0, 35.0, 120.0, ("++", "++", "++"), id="severe"),
        pytest.param(np.nan, 12.0, np.nan, (None, "0", None), id="unmeasured"),
    ],
)
def test_schwab(pi_ll, pt, sva, expected):
    m = schwab_modifiers(np.array([pi_ll]), np.array([pt]), np.array([sva]))
    assert (m["pi_ll"][0], m["pt"][0], m["sva"][0]) == expected


def _lumbar_with_apex(apex_level: str) -> np.ndarray:
    pts = np.zeros((18, 6, 2))
    for k, lv in enumerate(("L1", "L2", "L3", "L4", "L5")):
        pts[LEVEL_INDEX[lv], :, 0] = 10.0 - abs(k - ("L1", "L2", "L3", "L4", "L5").index(apex_level))
    return pts


@pytest.mark.parametrize(
    "ss, apex, expected",
    [(30.0, "L5", 1), (30.0, "L3", 2), (35.0, "L4", 3), (45.0, "L4", 3), (50.0, "L3", 4), (np.nan, "L4", 0)],
)
def test_roussouly(ss, apex, expected):
    assert roussouly_type(_lumbar_with_apex(apex), ss) == expected


def test_roussouly_batch_and_missing():
    pts = np.stack([_lumbar_with_apex("L5"), _lumbar_with_apex("L2")])
    pts[1, LEVEL_INDEX["L3"]] = np.nan
    np.testing.assert_array_equal(roussouly_type(pts, np.array([20.0, 20.0])), [1, 0])
