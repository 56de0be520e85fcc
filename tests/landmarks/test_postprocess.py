"""Post-processing and level labelling on hand-made maps (the training targets of phantom
radiographs, and edited versions of them)."""

from __future__ import annotations

import numpy as np
import pytest

from sagittal.landmarks.data import render_sample
from sagittal.landmarks.postprocess import decode, label_levels, to_contract
from sagittal.landmarks.preprocess import INPUT_SHAPE
from sagittal.landmarks.targets import C_CENTRE, make_targets


def _maps(smp, drop_levels=(), drop_s1=False):
    keep = [i for i, lv in enumerate(smp.levels) if lv not in drop_levels]
    t, _ = make_targets(INPUT_SHAPE, smp.vertebrae[keep], None if drop_s1 else smp.s1, smp.heads, smp.radii)
    return t


@pytest.fixture(scope="module")
def whole():
    for seed in range(40):
        smp, _, _ = render_sample(seed, field_of_view="whole")
        if len(smp.levels) == 18 and smp.s1 is not None and len(smp.heads) == 2:
            return smp
    raise AssertionError("no whole-spine sample")


@pytest.fixture(scope="module")
def lumbar():
    for seed in range(40):
        smp, _, _ = render_sample(seed, field_of_view="lumbar")
        if smp.s1 is not None and len(smp.levels) >= 5:
            return smp
    raise AssertionError("no lumbar sample")


def test_perfect_maps_give_back_the_truth(whole):
    det = label_levels(decode(_maps(whole)), INPUT_SHAPE[0])
    got = {b.level: b.points for b in det.bodies}
    assert sorted(got) == sorted(whole.levels)
    for lv, pts in zip(whole.levels, whole.vertebrae):
        assert np.abs(got[lv] - pts).max() < 0.6  # sub-pixel from the heatmaps
    np.testing.assert_allclose(det.s1, whole.s1, atol=0.6)
    assert len(det.heads) == 2
    centres = sorted(tuple(np.round(c)) for c, _, _ in det.heads)
    assert centres == sorted(tuple(np.round(h)) for h in whole.heads)


def test_lumbar_view_counts_up_from_s1(lumbar):
    det = label_levels(decode(_maps(lumbar)), INPUT_SHAPE[0])
    assert [b.level for b in sorted(det.bodies, key=lambda b: -b.centre[1])][:5] == ["L5", "L4", "L3", "L2", "L1"]
    assert not any("withheld" in w for w in det.warnings)


def test_a_missed_vertebra_is_not_renumbered(whole):
    det = label_levels(decode(_maps(whole, drop_levels=("T10",))), INPUT_SHAPE[0])
    levels = {b.level for b in det.bodies if b.level}
    assert {"L5", "L1", "T12", "T11"} <= levels
    assert "T10" not in levels and "T9" not in levels and "C7" not in levels  # nothing above the gap is named
    assert any("breaks above T11" in w for w in det.warnings)


def test_without_sacrum_levels_count_from_c7(whole):
    det = label_levels(decode(_maps(whole, drop_s1=True)), INPUT_SHAPE[0])
    top = min(det.bodies, key=lambda b: b.centre[1])
    assert top.level == "C7" and any("counted from C7" in w for w in det.warnings)


def test_wrong_lowest_body_withholds_all_levels(whole):
    # the lowest body missed: counting up from S1 would call L4 "L5"
    det = label_levels(decode(_maps(whole, drop_levels=("L5",))), INPUT_SHAPE[0])
    assert all(b.level is None for b in det.bodies)
    assert any("not just above the S1 endplate" in w for w in det.warnings)


def test_empty_maps():
    t = np.zeros((23, *INPUT_SHAPE), np.float32)
    det = label_levels(decode(t), INPUT_SHAPE[0])
    assert det.bodies == [] and det.s1 is None and any("no vertebral body" in w for w in det.warnings)


def test_to_contract_maps_back_to_source(whole):
    det = label_levels(decode(_maps(whole)), INPUT_SHAPE[0])
    lm = to_contract(det, lambda xy: np.asarray(xy) * 2.0 + 1.0)
    assert list(lm["vertebrae"])[0] == "C7" and list(lm["vertebrae"])[-1] == "L5"
    v = lm["vertebrae"]["L3"]
    assert set(v) == {"anterior_superior", "posterior_superior", "posterior_inferior", "anterior_inferior",
                      "middle_superior", "middle_inferior", "confidence"}
    assert 0 <= v["confidence"] <= 1
    truth = whole.vertebrae[whole.levels.index("L3"), 0] * 2 + 1
    np.testing.assert_allclose(v["anterior_superior"], truth, atol=1.2)
    assert lm["femoral_heads"][0]["radius_px"] > 0 and lm["s1_endplate"]["confidence"] > 0.5
    assert C_CENTRE == 0
