"""Post-processing and level labelling on hand-made maps (the training targets of phantom
radiographs, and edited versions of them)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from sagittal.landmarks.crops import CROP
from sagittal.landmarks.layout import C_CENTRE, C_S1, COARSE_CHANNELS, R_HEADS, R_S1, R_VERTEBRA, REFINE_CHANNELS
from sagittal.landmarks.postprocess import (
    FROM_C7,
    REFINE_MASS,
    Body,
    Detections,
    confirm_bridges,
    crop_frames,
    decode,
    label_levels,
    refine,
    softmax_points,
    to_contract,
    withhold_c7_count_without_ends,
)
from sagittal.landmarks.preprocess import INPUT_SHAPE
from sagittal.training.data import render_sample
from sagittal.training.targets import coarse_targets


def _maps(smp, drop_levels=(), drop_s1=False):
    keep = [i for i, lv in enumerate(smp.levels) if lv not in drop_levels]
    t, _ = coarse_targets(INPUT_SHAPE, smp.vertebrae[keep], None if drop_s1 else smp.s1, smp.heads, smp.radii)
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
    det = label_levels(decode(_maps(whole)))
    got = {b.level: b.points for b in det.bodies}
    assert sorted(got) == sorted(whole.levels)
    for lv, pts in zip(whole.levels, whole.vertebrae, strict=False):
        assert np.abs(got[lv] - pts).max() < 0.6  # sub-pixel from the heatmaps
    np.testing.assert_allclose(det.s1, whole.s1, atol=0.6)
    assert 1 <= len(det.heads) <= 2  # two heads a cell apart can merge into one peak
    mid = np.mean([c for c, _, _ in det.heads], axis=0)
    np.testing.assert_allclose(mid, whole.heads.mean(axis=0), atol=2.5)


def test_lumbar_view_counts_up_from_s1(lumbar):
    det = label_levels(decode(_maps(lumbar)))
    assert [b.level for b in sorted(det.bodies, key=lambda b: -b.centre[1])][:5] == ["L5", "L4", "L3", "L2", "L1"]
    assert not any("withheld" in w for w in det.warnings)


def test_two_missed_vertebrae_are_not_renumbered(whole):
    det = label_levels(decode(_maps(whole, drop_levels=("T10", "T9"))))
    levels = {b.level for b in det.bodies if b.level}
    assert {"L5", "L1", "T12", "T11"} <= levels
    assert "T10" not in levels and "T8" not in levels and "C7" not in levels  # nothing above the gap is named
    assert any("breaks above T11" in w for w in det.warnings)


def test_one_missed_vertebra_is_bridged_and_must_be_confirmed(whole):
    """A one-body gap gets a body halfway (its level named, marked bridged); the fine placement
    must then find a body of its neighbours' size there, or it and every level above it go."""
    det = label_levels(decode(_maps(whole, drop_levels=("T10",))))
    by = {b.level: b for b in det.bodies if b.level}
    assert set(whole.levels) == set(by) and by["T10"].bridged == "T10"
    truth = whole.vertebrae[whole.levels.index("T10")]
    assert np.linalg.norm(by["T10"].centre - truth[:4].mean(axis=0)) < 0.35 * np.linalg.norm(truth[1] - truth[2])
    # found by the fine placement (here: the truth): it stands, with a note
    found = replace(det, bodies=[replace(b, points=truth, centre=truth[:4].mean(axis=0)) if b.bridged else b
                                 for b in det.bodies])
    ok = confirm_bridges(found)
    assert {b.level for b in ok.bodies if b.level} == set(whole.levels)
    assert any("T10 was missed by the first stage; placed between" in w for w in ok.warnings)
    # lost by the fine placement (strayed / unstable): T10 and every level above it are withheld
    lost = confirm_bridges(replace(det, bodies=[replace(b, level=None) if b.bridged else b for b in det.bodies]))
    named = {b.level for b in lost.bodies if b.level}
    assert named == {"T11", "T12", "L1", "L2", "L3", "L4", "L5"}
    assert any("did not confirm a body" in w for w in lost.warnings)
    # found, but beside a neighbour that did not stand (T11 withheld): the count across it is not checked
    alone = replace(found, bodies=[replace(b, level=None) if b.level == "T11" else b for b in found.bodies])
    assert "T9" not in {b.level for b in confirm_bridges(alone).bodies if b.level}
    # a "body" half the size of its neighbours is not one: withheld likewise
    small = truth[:4].mean(axis=0) + 0.5 * (truth - truth[:4].mean(axis=0))
    tiny = confirm_bridges(replace(det, bodies=[replace(b, points=small) if b.bridged else b for b in det.bodies]))
    assert "T9" not in {b.level for b in tiny.bodies if b.level}


def test_without_sacrum_levels_count_from_c7(whole):
    det = label_levels(decode(_maps(whole, drop_s1=True)))
    top = min(det.bodies, key=lambda b: b.centre[1])
    assert top.level == "C7" and any("counted from C7" in w for w in det.warnings)


def test_a_count_from_c7_is_withheld_when_either_end_of_the_chain_is(whole):
    """1,700,016 (drr-a): the sacrum's first segment read as a body and C7 missed gave an
    18-body chain T1-S1 named C7-L5, every level one off; its "L5" was then withheld as unstable."""
    det = label_levels(decode(_maps(whole, drop_s1=True)))
    assert FROM_C7 in det.warnings and {b.level for b in det.bodies if b.level} >= {"C7", "L5"}
    assert withhold_c7_count_without_ends(det) is det  # both ends held: the count stands
    for end in ("L5", "C7"):
        lost = replace(det, bodies=[replace(b, level=None) if b.level == end else b for b in det.bodies])
        out = withhold_c7_count_without_ends(lost)
        assert not any(b.level for b in out.bodies)
        assert f"the count from C7 rests on both ends of the chain C7–L5 and {end} was withheld" in out.warnings[-1]
    # a count from S1 does not rest on C7: the same loss there changes nothing
    from_s1 = label_levels(decode(_maps(whole)))
    assert FROM_C7 not in from_s1.warnings
    lost = replace(from_s1, bodies=[replace(b, level=None) if b.level == "C7" else b for b in from_s1.bodies])
    assert withhold_c7_count_without_ends(lost) is lost


def test_lumbar_view_without_sacrum_is_not_counted_from_c7(lumbar):
    det = label_levels(decode(_maps(lumbar, drop_s1=True)))
    assert det.bodies and all(b.level is None for b in det.bodies)
    assert any("withheld" in w for w in det.warnings)


def test_wrong_lowest_body_withholds_all_levels(whole):
    # the lowest body missed: counting up from S1 would call L4 "L5"
    det = label_levels(decode(_maps(whole, drop_levels=("L5",))))
    assert all(b.level is None for b in det.bodies)
    assert any("not just above the S1 endplate" in w for w in det.warnings)


def test_empty_maps():
    t = np.zeros((COARSE_CHANNELS, INPUT_SHAPE[0] // 2, INPUT_SHAPE[1] // 2), np.float32)
    det = label_levels(decode(t))
    assert det.bodies == [] and det.s1 is None and any("no vertebral body" in w for w in det.warnings)


def test_to_contract_maps_back_to_source(whole):
    det = label_levels(decode(_maps(whole)))
    lm = to_contract(det, lambda xy: np.asarray(xy) * 2.0 + 1.0)
    assert list(lm["vertebrae"])[0] == "C7" and list(lm["vertebrae"])[-1] == "L5"
    v = lm["vertebrae"]["L3"]
    assert set(v) == {"anterior_superior", "posterior_superior", "posterior_inferior", "anterior_inferior",
                      "middle_superior", "middle_inferior", "confidence"}
    assert 0 <= v["confidence"] <= 1
    truth = whole.vertebrae[whole.levels.index("L3"), 0] * 2 + 1
    np.testing.assert_allclose(v["anterior_superior"], truth, atol=1.2)
    assert lm["femoral_heads"][0]["radius_px"] > 0 and lm["s1_endplate"]["confidence"] > 0.5


def _peaked(points: np.ndarray, sigma: float = 1.5) -> np.ndarray:
    """Logits whose spatial softmax is a Gaussian about each point (crop pixels)."""
    ys, xs = np.mgrid[:CROP, :CROP]
    return np.stack([-((xs - p[0]) ** 2 + (ys - p[1]) ** 2) / (2 * sigma**2) for p in points]).astype(np.float32)


def test_softmax_points_are_sub_pixel_and_confident():
    truth = np.array([[20.3, 31.7], [40.0, 12.5], [0.4, 63.0]])
    pts, conf = softmax_points(_peaked(truth))
    np.testing.assert_allclose(pts[:2], truth[:2], atol=0.05)
    assert abs(pts[2, 0] - 0.4) < 0.6 and pts[2, 1] > 62.0  # at the edge the window is cut
    assert conf[0] == pytest.approx(1.0, abs=0.02)
    flat, c_flat = softmax_points(np.zeros((1, CROP, CROP), np.float32))
    assert c_flat[0] < 0.01  # a map with no opinion has no confidence


def _one_body_detections(points: np.ndarray) -> Detections:
    return Detections([Body(points, 0.9, points[:4].mean(axis=0), "L3")], np.array([[120.0, 300.0], [80.0, 310.0]]), 0.8,
                      [(np.array([60.0, 420.0]), 25.0, 0.7), (np.array([64.0, 424.0]), 24.0, 0.6)])


@pytest.mark.parametrize("mirror", [False, True])
def test_refine_places_points_from_the_crop_maps(mirror):
    truth = np.array([[130.0, 100.0], [90.0, 98.0], [91.0, 128.0], [129.0, 131.0], [110.0, 101.0], [110.0, 127.5]])
    if mirror:
        truth[:, 0] = 300 - truth[:, 0]
    coarse = truth + np.array([2.5, -1.5])  # the coarse stage a few pixels off
    det = _one_body_detections(coarse)
    frames = crop_frames(det, mirror)
    assert [k for k, _, _ in frames] == ["vertebra", "s1", "hips"]
    logits = np.full((3, REFINE_CHANNELS, CROP, CROP), -50.0, np.float32)
    logits[0, R_VERTEBRA] = _peaked(frames[0][2].to_crop(truth))
    s1_truth = np.array([[121.0, 302.0], [79.0, 309.0]])
    logits[1, R_S1] = _peaked(frames[1][2].to_crop(s1_truth))
    heads_truth = np.array([[61.0, 421.0], [63.5, 425.0]])
    logits[2, R_HEADS] = _peaked(frames[2][2].to_crop(heads_truth))
    fine = refine(det, frames, logits)
    np.testing.assert_allclose(fine.bodies[0].points, truth, atol=0.15)
    np.testing.assert_allclose(fine.s1, s1_truth, atol=0.15)
    np.testing.assert_allclose(sorted(c.tolist() for c, _, _ in fine.heads), heads_truth, atol=0.15)
    assert fine.bodies[0].confidence == pytest.approx(0.9, abs=0.02)
    assert 0.0 < REFINE_MASS < 1.0


def test_refine_that_strays_to_a_neighbour_withholds_the_body():
    truth = np.array([[130.0, 100.0], [90.0, 98.0], [91.0, 128.0], [129.0, 131.0], [110.0, 101.0], [110.0, 127.5]])
    det = _one_body_detections(truth)
    frames = crop_frames(det, False)[:1]
    logits = np.zeros((1, REFINE_CHANNELS, CROP, CROP), np.float32)
    logits[0, R_VERTEBRA] = _peaked(frames[0][2].to_crop(truth + np.array([0.0, 36.0])))  # the body below
    fine = refine(det, frames, logits)
    assert fine.bodies[0].level is None and any("strayed" in w for w in fine.warnings)
    assert to_contract(fine)["vertebrae"] == {}


def test_weak_body_fills_a_gap_but_a_weak_stray_peak_does_not_join(whole):
    from sagittal.landmarks.layout import C_CENTRE, C_OFFSETS, to_cells
    from sagittal.training.targets import splat

    t = _maps(whole)
    i = whole.levels.index("T10")
    c = to_cells(whole.vertebrae[i, :4].mean(axis=0))
    y0, x0 = int(round(c[1])), int(round(c[0]))
    t[C_CENTRE, y0 - 3:y0 + 4, x0 - 3:x0 + 4] *= 0.2  # T10 only faintly seen
    splat(t[C_CENTRE], np.array([5.0, c[1] + 1.0]), 1.0)  # a stray peak beside the spine …
    t[C_CENTRE, int(c[1]) - 4:int(c[1]) + 6, 0:12] *= 0.2  # … and faint too, shaped like a body
    for dy in range(-2, 3):
        for dx in range(-2, 3):
            t[C_OFFSETS, y0 + 1 + dy, 5 + dx] = t[C_OFFSETS, y0, x0]
    det = label_levels(decode(t))
    got = {b.level: b for b in det.bodies if b.level}
    assert sorted(got) == sorted(whole.levels)
    assert got["T10"].confidence < 0.3
    assert all(b.centre[0] > 20 for b in det.bodies)  # the stray peak was not taken into the chain


def test_exposed_box_ignores_collimation_and_burned_in_marks():
    from sagittal.landmarks.preprocess import exposed_box

    rng = np.random.default_rng(1)
    img = rng.normal(500, 80, (400, 300)).astype(np.float32)
    img[:30] = 4095  # white collimation band on top …
    img[:, 280:] = 0  # … and a black one on the right
    img[:, 10] = 4095  # a ruler burned in along the whole height
    x0, y0, x1, y1 = exposed_box(img)
    assert y0 == 30 and x1 == 279 and x0 == 0 and y1 == 399


def test_bodies_cut_by_the_field_edge_are_withheld():
    from sagittal.landmarks.postprocess import withhold_outside

    inside = np.array([[130.0, 100.0], [90.0, 98.0], [91.0, 128.0], [129.0, 131.0], [110.0, 101.0], [110.0, 127.5]])
    cut = inside - [0.0, 95.0]  # its superior corners above the exposed field
    det = Detections([Body(inside, 0.9, inside[:4].mean(axis=0), "L2"), Body(cut, 0.9, cut[:4].mean(axis=0), "L1")],
                     None, 0.0, [])
    out = withhold_outside(det, (0.0, 10.0, 399.0, 399.0))
    assert [b.level for b in out.bodies] == ["L2", None] and any("L1 is not wholly" in w for w in out.warnings)


def test_recheck_withholds_beyond_a_step_the_refinement_reveals(whole):
    from sagittal.landmarks.postprocess import recheck_chain

    det = label_levels(decode(_maps(whole)))
    assert recheck_chain(det) is det  # a sound chain passes untouched
    t9 = next(b for b in det.bodies if b.level == "T9")
    t10 = next(b for b in det.bodies if b.level == "T10")
    t9.points, t9.centre = t10.points.copy(), t10.centre.copy()  # both crops latched onto one body
    out = recheck_chain(det)
    levels = {b.level for b in out.bodies if b.level}
    assert "T10" in levels and "T9" not in levels and "C7" not in levels
    assert any("counted twice" in w for w in out.warnings)


def _faint_s1(maps: np.ndarray) -> np.ndarray:
    """The S1 corners' peaks brought under ``S1_THRESHOLD`` (a faint endplate)."""
    m = maps.copy()
    m[C_S1] *= 0.12
    return m


def _cell(xy_input: np.ndarray) -> tuple[int, int]:
    j, i = np.round((np.asarray(xy_input, float) + 0.5) / 2 - 0.5).astype(int)  # COARSE_STRIDE 2
    return int(i), int(j)


def test_a_faint_s1_in_line_under_a_strong_body_anchors_the_levels(lumbar):
    det = label_levels(decode(_faint_s1(_maps(lumbar))))
    assert det.s1 is not None and any("seen only faintly" in w for w in det.warnings)
    assert [b.level for b in sorted(det.bodies, key=lambda b: -b.centre[1])][:5] == ["L5", "L4", "L3", "L2", "L1"]


def test_a_faint_s1_beside_the_lowest_body_does_not_anchor(lumbar):
    m = _faint_s1(_maps(lumbar))
    l5 = lumbar.vertebrae[lumbar.levels.index("L5")]
    height_cells = float(np.linalg.norm(l5[1] - l5[2])) / 2
    dy, dx = -int(round(0.8 * height_cells)), int(round(1.3 * height_cells))  # up to the body's level, aside
    m[C_S1] = np.roll(m[C_S1], (dy, dx), axis=(1, 2))
    det = label_levels(decode(m))
    assert det.s1 is None and not any(b.level for b in det.bodies)


def test_a_faint_s1_under_a_weak_lowest_body_does_not_anchor(lumbar):
    m = _faint_s1(_maps(lumbar))
    i, j = _cell(lumbar.vertebrae[lumbar.levels.index("L5")][:4].mean(axis=0))
    m[C_CENTRE, i - 3:i + 4, j - 3:j + 4] *= 0.2  # the L5 peak weak: under CENTRE_THRESHOLD (0.3), over WEAK_THRESHOLD
    det = label_levels(decode(m))
    assert det.s1 is None and not any(b.level for b in det.bodies)
