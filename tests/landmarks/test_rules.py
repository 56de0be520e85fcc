"""The withholding rules of the landmark stage: a body cut by the field's edge, or whose points
are not stable between two looks, gets no landmarks (so no height and no grade) and a warning;
levels are anchored on S1 on films that start at T12 or L1, on a faint S1 only where the chain
puts the sacrum; a film with neither S1 nor the whole chain C7–L5 gets no levels."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from sagittal.landmarks import infer
from sagittal.landmarks.crops import CropFrame
from sagittal.landmarks.postprocess import (
    CONSISTENCY_MAX,
    Body,
    Detections,
    alternate_frames,
    consistent,
    decode,
    label_levels,
    withhold_faint_s1_at_edge,
    withhold_outside,
)
from sagittal.landmarks.preprocess import INPUT_SHAPE
from sagittal.levels import LEVEL_INDEX, LEVELS, POINT_NAMES, UNGRADED
from sagittal.report.analysis import analysis_document
from sagittal.training.data import render_sample
from sagittal.training.targets import coarse_targets

BODY = np.array([[130.0, 100.0], [90.0, 98.0], [91.0, 128.0], [129.0, 131.0], [110.0, 101.0], [110.0, 127.5]])


def _body(level: str, dy: float = 0.0, conf: float = 0.9) -> Body:
    p = BODY + [0.0, dy]
    return Body(p, conf, p[:4].mean(axis=0), level, point_confidence=0.8)


# ------------------------------------------------------------------ consistency (unit)

def test_consistent_placements_are_averaged_and_kept():
    a = Detections([_body("L2"), _body("L3", 40.0)], None, 0.0, [])
    b = replace(a, bodies=[replace(x, points=x.points + 0.5) for x in a.bodies])
    out = consistent(a, b)
    assert [x.level for x in out.bodies] == ["L2", "L3"]
    np.testing.assert_allclose(out.bodies[0].points, BODY + 0.25)
    assert out.bodies[0].spread == pytest.approx(0.5 / 34.5, rel=0.05)
    assert not any("withheld" in w for w in out.warnings)


def test_unstable_body_is_withheld_with_a_warning():
    a = Detections([_body("L2"), _body("L3", 40.0)], None, 0.0, [])
    moved = a.bodies[1].points.copy()
    moved[0] += [0.0, 2 * CONSISTENCY_MAX * 34.5]  # its anterior-superior corner jumps between the two looks
    b = replace(a, bodies=[a.bodies[0], replace(a.bodies[1], points=moved)])
    out = consistent(a, b)
    assert [x.level for x in out.bodies] == ["L2", None]
    assert any(w.startswith("L3: two placements") and "no height or grade" in w for w in out.warnings)


@pytest.mark.parametrize("s1_score, levels_kept", [(0.08, False), (0.5, True)])
def test_unstable_s1_withholds_the_levels_only_when_it_was_seen_faintly(s1_score: float, levels_kept: bool):
    s1 = np.array([[130.0, 170.0], [90.0, 168.0]])
    a = Detections([_body("L4"), _body("L5", 40.0)], s1, s1_score, [])
    b = replace(a, s1=s1 + [0.0, 3 * CONSISTENCY_MAX * 40.0])  # the endplate jumps between the two looks
    out = consistent(a, b)
    assert out.s1 is None
    assert [x.level for x in out.bodies] == (["L4", "L5"] if levels_kept else [None, None])
    assert any("faintly seen S1" in w for w in out.warnings) is not levels_kept
    steady = consistent(a, replace(a, s1=s1 + 0.5))  # a faint S1 that holds still keeps its count
    assert steady.s1 is not None and [x.level for x in steady.bodies] == ["L4", "L5"]


def test_alternate_frames_look_again_at_bodies_and_s1_only():
    f = CropFrame((10.0, 20.0), 50.0, True)
    alt = alternate_frames([("vertebra", 0, f), ("s1", 0, f), ("hips", 0, f)])
    assert [k for k, _, _ in alt] == ["vertebra", "s1"]
    assert alt[0][2].side_px > f.side_px and alt[0][2].angle_rad != 0 and alt[0][2].mirror


# ------------------------------------------------------------------ field edge (unit)

def test_a_body_touching_the_field_edge_is_withheld():
    det = Detections([_body("L1"), _body("L2", 40.0)], None, 0.0, [])
    out = withhold_outside(det, (0.0, 97.0, 399.0, 399.0))  # the field's top 1 px above L1's corners
    assert [b.level for b in out.bodies] == [None, "L2"]
    assert any(w.startswith("L1 is not wholly in the exposed field") for w in out.warnings)


@pytest.mark.parametrize(("s1_score", "field_below", "kept"),
                         [(0.1, 0.7, False), (0.1, 0.99, False), (0.1, 1.01, True), (0.1, 1.5, True), (0.5, 0.3, True)])
def test_a_faint_s1_at_the_bottom_edge_of_the_field_is_no_anchor(s1_score, field_below, kept):
    # L5 (the lowest labelled body, posterior height 30.0 px) above an S1 whose lower corner is at
    # y = 165; the field ends field_below body heights under it. A firm S1 anchors however close the edge.
    bodies = [_body("L5", 0.0), _body("L4", -40.0)]
    s1 = np.array([[130.0, 165.0], [92.0, 160.0]])
    det = Detections(bodies, s1, s1_score, [])
    out = withhold_faint_s1_at_edge(det, (0.0, 0.0, 400.0, 165.0 + field_below * 30.0))
    assert [b.level for b in out.bodies] == (["L5", "L4"] if kept else [None, None])
    assert (out.s1 is not None) == kept
    assert any("seen only faintly" in w and "no anchor" in w for w in out.warnings) != kept


def test_the_faint_s1_edge_rule_measures_the_body_the_chain_anchors_on():
    # an unlabelled small body below the S1 (a false peak in the pelvis) does not set the height:
    # L5's 30 px does, so 24 px of field below the S1 is 0.8 heights, and the levels are withheld
    small = Body(BODY * 0.3 + [0.0, 140.0], 0.9, (BODY * 0.3 + [0.0, 140.0])[:4].mean(axis=0), None)
    det = Detections([_body("L5", 0.0), _body("L4", -40.0), small], np.array([[130.0, 165.0], [92.0, 160.0]]), 0.1, [])
    out = withhold_faint_s1_at_edge(det, (0.0, 0.0, 400.0, 165.0 + 24.0))
    assert all(b.level is None for b in out.bodies) and out.s1 is None
    # nothing labelled above the S1: nothing to withhold, no warning
    bare = Detections([small], np.array([[130.0, 165.0], [92.0, 160.0]]), 0.1, [])
    assert withhold_faint_s1_at_edge(bare, (0.0, 0.0, 400.0, 170.0)) is bare


# ------------------------------------------------------------------ anchoring (maps)

def _lumbar_from(top_level: str, seed_range: range = range(60)):
    for seed in seed_range:
        smp, _, _ = render_sample(seed, field_of_view="lumbar")
        if smp.s1 is not None and smp.levels[0] == top_level:
            return smp
    raise AssertionError(f"no lumbar sample starting at {top_level}")


@pytest.mark.parametrize("top", ["T12", "L1"])
def test_film_starting_at_t12_or_l1_is_counted_from_s1(top):
    smp = _lumbar_from(top)
    t, _ = coarse_targets(INPUT_SHAPE, smp.vertebrae, smp.s1, smp.heads, smp.radii)
    det = label_levels(decode(t))
    got = {b.level: b.centre for b in det.bodies if b.level}
    assert sorted(got, key=LEVELS.index) == smp.levels
    for lv, pts in zip(smp.levels, smp.vertebrae, strict=True):
        assert np.linalg.norm(got[lv] - pts[:4].mean(axis=0)) < 1.0


def test_faint_s1_is_used_only_where_the_chain_puts_it():
    smp = _lumbar_from("L1")
    t, _ = coarse_targets(INPUT_SHAPE, smp.vertebrae, smp.s1, smp.heads, smp.radii)
    t[13:15] *= 0.12  # the S1 corners seen only faintly (peak 0.12 < S1_THRESHOLD)
    det = label_levels(decode(t))
    assert det.s1 is not None and any("seen only faintly" in w for w in det.warnings)
    assert {b.level for b in det.bodies if b.level} == set(smp.levels)
    # the same faint peaks moved far below the spine: not taken, and no levels without an anchor
    t2, _ = coarse_targets(INPUT_SHAPE, smp.vertebrae, smp.s1 + [0.0, 40.0], smp.heads, smp.radii)
    t2[13:15] *= 0.12
    det2 = label_levels(decode(t2))
    assert det2.s1 is None and all(b.level is None for b in det2.bodies)
    assert any("levels cannot be anchored" in w for w in det2.warnings)


# ------------------------------------------------------------------ the model on rendered films

@pytest.fixture(scope="module")
def detector():
    from sagittal.landmarks.infer import LandmarkDetector

    return LandmarkDetector(device="cpu", threads=1)


def _lumbar_view(seed: int = 3):
    from sagittal.training.data import COARSE_STREAM, _render

    for s in range(seed, seed + 40):
        spine, view, _ = _render(COARSE_STREAM, s, (0.5, 0.5), field_of_view="lumbar", collimation="none",
                                 markers=False, ruler=False)
        if view.s1_in_view and view.in_view[LEVEL_INDEX["L1"]] and view.in_view[LEVEL_INDEX["T12"]]:
            return spine, view
    raise AssertionError("no lumbar film with T12–S1 in view")


def _document(view, lm, facing):
    image = {"rows": view.pixels.shape[0], "columns": view.pixels.shape[1], "pixel_spacing_mm": list(view.spacing_mm),
             "spacing_source": "supplied", "anterior": facing or view.facing}
    return analysis_document(image, lm)


@pytest.mark.slow
def test_a_body_cut_by_the_top_of_the_film_gets_no_grade(detector):
    spine, view = _lumbar_view()
    t12 = view.to_px(spine.points_mm[LEVEL_INDEX["T12"]])
    cut_row = int(round(t12[:, 1].min() + 0.45 * (t12[:, 1].max() - t12[:, 1].min())))  # through T12's middle
    pixels = view.pixels[cut_row:]
    ((lm, facing, warnings),) = detector.detect([pixels])
    doc = _document(view, lm, facing)
    graded = {v["level"]: v["genant_grade"] for v in doc["vertebrae"]}
    assert "T12" not in lm["vertebrae"] and "T12" not in graded  # no points, no height, no grade
    assert "L3" in lm["vertebrae"] and graded.get("L3") is not None  # the bodies wholly in view still are
    shift = np.array([0.0, cut_row])
    l3 = view.to_px(spine.points_mm[LEVEL_INDEX["L3"]]) - shift
    assert np.linalg.norm(np.array(lm["vertebrae"]["L3"]["anterior_superior"]) - l3[0]) < 3.0


@pytest.mark.slow
def test_a_body_replaced_by_noise_is_not_reported(detector):
    spine, view = _lumbar_view()
    pts = view.to_px(spine.points_mm[LEVEL_INDEX["L3"]])
    x0, y0 = np.floor(pts.min(axis=0)).astype(int) - 3
    x1, y1 = np.ceil(pts.max(axis=0)).astype(int) + 3
    pixels = view.pixels.copy()
    region = pixels[y0:y1, x0:x1]
    rng = np.random.default_rng(0)
    pixels[y0:y1, x0:x1] = rng.uniform(region.min(), region.max(), region.shape)
    ((lm, _, warnings),) = detector.detect([pixels])
    assert "L3" not in lm["vertebrae"]
    assert any("withheld" in w for w in warnings)
    for lv, v in lm["vertebrae"].items():  # what is reported sits on its own body
        truth = view.to_px(spine.points_mm[LEVEL_INDEX[lv]])
        assert np.linalg.norm(np.array(v["anterior_superior"]) - truth[0]) < 3.0, lv


@pytest.mark.slow
def test_model_counts_a_film_cut_above_t12_from_s1(detector):
    spine, view = _lumbar_view()
    t12 = view.to_px(spine.points_mm[LEVEL_INDEX["T12"]])
    t11 = view.to_px(spine.points_mm[LEVEL_INDEX["T11"]])
    cut_row = int(round((t12[:, 1].min() + t11[:, 1].max()) / 2))  # in the disc above T12
    ((lm, _, _),) = detector.detect([view.pixels[cut_row:]])
    found = set(lm["vertebrae"])
    assert {"L1", "L2", "L3", "L4", "L5"} <= found and lm["s1_endplate"] is not None
    for lv, v in lm["vertebrae"].items():
        truth = view.to_px(spine.points_mm[LEVEL_INDEX[lv]]) - [0.0, cut_row]
        assert np.linalg.norm(np.array(v["anterior_superior"]) - truth[0]) < 3.0, lv


def test_a_body_that_looks_collapsed_must_be_steadier_to_be_reported():
    from sagittal.landmarks.postprocess import COLLAPSED_CONSISTENCY_MAX

    wedge = BODY.copy()
    wedge[0, 1] += 12.0  # anterior height 31 → 19 px: looks like a wedge fracture
    a = Detections([Body(wedge, 0.9, wedge[:4].mean(axis=0), "T12", point_confidence=0.8)], None, 0.0, [])
    jitter = (COLLAPSED_CONSISTENCY_MAX + CONSISTENCY_MAX) / 2 * 34.5  # between the two limits
    b = replace(a, bodies=[replace(a.bodies[0], points=wedge + [0.0, jitter])])
    assert consistent(a, b).bodies[0].level is None  # collapsed-looking and not steady: withheld
    normal = replace(a, bodies=[replace(a.bodies[0], points=BODY)])
    moved = replace(a, bodies=[replace(a.bodies[0], points=BODY + [0.0, jitter])])
    assert consistent(normal, moved).bodies[0].level == "T12"  # a normal shape at that spread is kept


def test_a_crushed_body_between_reported_neighbours_is_kept_ungraded_on_radiographs(detector):
    """``postprocess.keep_crushed_between`` with the radiographs' limits (``LandmarkDetector._rules``):
    a body withheld only for looking collapsed, its placements 4-10 % apart, between reported
    neighbours one body's step away is reported with its level and points, ungraded, with a
    warning; off (``crushed_between_rule``), or with a neighbour missing, it stays withheld."""
    from sagittal.landmarks.postprocess import COLLAPSED_CONSISTENCY_MAX, COLLAPSED_UNSTEADY

    wedge = BODY.copy() - [0.0, 80.0]
    wedge[0, 1] += 12.0  # L3 looks like a wedge fracture
    levels = ("L5", "L4", "L3", "L2", "L1")
    bodies = [Body(wedge, 0.9, wedge[:4].mean(axis=0), lv, point_confidence=0.8) if lv == "L3"
              else _body(lv, -40.0 * k) for k, lv in enumerate(levels)]
    s1 = np.array([[130.0, 152.0], [90.0, 150.0]])
    a = Detections(bodies, s1, 0.9, [])
    jitter = (COLLAPSED_CONSISTENCY_MAX + CONSISTENCY_MAX) / 2 * 34.5  # between the two limits
    b = replace(a, bodies=[replace(x, points=x.points + [0.0, jitter]) if x.level == "L3" else x for x in bodies])
    fine = consistent(a, b)
    assert fine.bodies[2].level is None and [r.reason for r in fine.withheld] == [COLLAPSED_UNSTEADY]
    box = (0.0, -400.0, 400.0, 400.0)
    _, lm, warnings = detector._rules(fine, box, frozenset())
    assert list(lm["vertebrae"]) == ["L1", "L2", "L3", "L4", "L5"]
    assert list(lm[UNGRADED]) == ["L3"] and "7 %" in lm[UNGRADED]["L3"]
    assert any(w.startswith("L3: it looks collapsed") and "heights and grade are not" in w for w in warnings)
    doc = analysis_document({"rows": 600, "columns": 400, "pixel_spacing_mm": [0.2, 0.2], "anterior": "right"}, lm)
    l3 = next(v for v in doc["vertebrae"] if v["level"] == "L3")
    assert l3["genant_grade"] is None and l3["heights_mm"] is None
    try:
        detector.crushed_between_rule = False
        _, lm, _ = detector._rules(fine, box, frozenset())
    finally:
        detector.crushed_between_rule = True
    assert "L3" not in lm["vertebrae"] and UNGRADED not in lm
    no_l4 = replace(fine, bodies=[replace(x, level=None) if x.level == "L4" else x for x in fine.bodies])
    _, lm, _ = detector._rules(no_l4, box, frozenset())
    assert "L3" not in lm["vertebrae"]  # a neighbour missing: nothing vouches for its level
    # the field's anterior edge cuts L3 only (its corners 8 px further anterior than its neighbours'):
    # withhold_outside passed it over as unlabelled, so the rule checks the field itself (review)
    ahead = replace(fine, bodies=[replace(x, points=x.points + [8.0, 0.0]) if x.level is None else x
                                  for x in fine.bodies])
    _, lm, _ = detector._rules(ahead, (0.0, -400.0, 140.0, 400.0), frozenset())
    assert "L3" not in lm["vertebrae"] and {"L2", "L4"} <= set(lm["vertebrae"])
    # in front of the line between its neighbours by 0.8 of half their distance: each step to a neighbour
    # (1.28 of half theirs) passes, the line does not (review: no direction was checked)
    front = replace(fine, bodies=[replace(x, points=x.points + [32.0, 0.0], centre=x.centre + [32.0, 0.0])
                                  if x.level is None else x for x in fine.bodies])
    _, lm, _ = detector._rules(front, box, frozenset())
    assert "L3" not in lm["vertebrae"] and {"L2", "L4"} <= set(lm["vertebrae"])


def test_a_body_between_its_neighbours_lies_near_the_line_between_them():
    """``postprocess.between``: off the line by at most half of half the neighbours' distance (phantom
    truth: 0.37 at most), a quarter to three quarters of the way along it."""
    from sagittal.landmarks.postprocess import between

    a, c = np.array([0.0, 0.0]), np.array([0.0, 80.0])
    assert between(np.array([0.0, 40.0]), a, c) and between(np.array([19.0, 40.0]), a, c)
    assert between(np.array([-19.0, 25.0]), a, c)
    assert not between(np.array([21.0, 40.0]), a, c) and not between(np.array([-32.0, 40.0]), a, c)
    assert not between(np.array([0.0, 15.0]), a, c) and not between(np.array([0.0, 65.0]), a, c)


def _contract_vertebra(dy: float) -> dict:
    return {name: [float(x), float(y)] for name, (x, y) in zip(POINT_NAMES, BODY + [0.0, dy], strict=True)}


def test_a_film_whose_fine_placement_lost_most_levels_is_read_again_smoothed(detector, monkeypatch):
    """``LandmarkDetector._smoothed``: where the fine placement kept no more than half the levels the
    coarse stage named, the image is read again smoothed (sigma from the coarse bodies' size), its
    field found on the image as given, and the levels only that read reports are added, ungraded,
    where the two reads agree (the first read's bodies and grades stand); an image that kept more than
    half is not read again, and one whose smoothed read counts differently is left as it was. (The
    model is replaced by a stub that keeps a few levels of a grainy image and five of a smooth one.)"""
    calls = []
    order = ("L5", "L4", "L3", "L2", "L1")

    def fake(images, facing=None, batch_size=8, boxes=None):
        calls.append((len(images), boxes, facing))
        out, coarse = [], []
        for img, side in zip(images, facing or [None] * len(images), strict=True):
            smooth = float(np.std(img)) < 20.0  # smoothed (std 40 -> ~11): every level held
            n = 5 if smooth else int(img[0, 0])
            # the third image (201 px wide): the smoothed read counts one level off (its L5 where the first read's L4 is)
            shift = 40.0 if smooth and img.shape[1] == 201 else 0.0
            lm = {"vertebrae": {lv: _contract_vertebra(-40.0 * k - shift) for k, lv in enumerate(order[:n])},
                  "s1_endplate": None, "femoral_heads": []}
            if not smooth and n:
                lm[UNGRADED] = {"L5": "placed again"}
            if smooth:  # the smoothed read keeps L2 ungraded for its own reason
                lm[UNGRADED] = {"L2": "it looks collapsed"}
            words = (["L2: it looks collapsed: its level and points are reported"] if smooth else
                     ["L3: two placements of its points disagree by 30 %", "after fine placement the step from L4 to L3 "
                      "is 1.70x its neighbours': levels beyond L4 are withheld", "L10: not stable",
                      "the chain of bodies breaks above L4 (a step 1.70× its neighbours', longer than a spine allows: a "
                      "body missed or one too many): the levels beyond it are withheld"])
            out.append((lm, side or "left", words))
            coarse.append(Detections([_body(lv, -40.0 * k) for k, lv in enumerate(order)], None, 0.0, []))
        detector.last_detections, detector.last_coarse, detector.last_recentred = list(coarse), coarse, {}
        detector.last_timings = {"coarse": 1.0}
        return out

    monkeypatch.setattr(detector, "_detect", fake)
    monkeypatch.setattr(detector, "smoothed_look", True)  # on by default; the fixture is shared
    rng = np.random.default_rng(0)
    grainy = rng.normal(100.0, 40.0, (300, 200)).astype(np.float32)
    grainy[0, 0], kept3 = 2.0, grainy.copy()
    kept3[0, 0] = 3.0  # keeps 3 of 5 levels: more than half, not read again
    off = rng.normal(100.0, 40.0, (300, 201)).astype(np.float32)
    off[0, 0] = 2.0  # keeps 2; its smoothed read is one level off
    results = detector.detect([grainy, kept3, off])
    assert [sorted(lm["vertebrae"]) for lm, _, _ in results] == [sorted(order), ["L3", "L4", "L5"], ["L4", "L5"]]
    assert list(results[0][0]["vertebrae"]) == list(reversed(order))  # in the levels' order
    note = [w for w in results[0][2] if w.startswith("the image was read again smoothed")]
    assert len(note) == 1 and "held 2 of the 5" in note[0] and "L1, L2, L3 added" in note[0]
    # the first read's words on the levels now added say they describe the image as given (review: a step
    # warning withholding "levels beyond L4" stood beside L1-L3 reported), the smoothed read's on them its image
    assert not any(w.startswith(("L3:", "after fine placement")) for w in results[0][2])
    assert "on the image as given: L3: two placements of its points disagree by 30 %" in results[0][2]
    assert any(w.startswith("on the image as given: after fine placement the step from L4 to L3") for w in results[0][2])
    assert "L10: not stable" in results[0][2]  # L1 is not L10
    # the chain break names only the level before it (review: it stood unmarked beside L1-L3)
    assert any(w.startswith("on the image as given: the chain of bodies breaks above L4") for w in results[0][2])
    assert "on the smoothed image: L2: it looks collapsed: its level and points are reported" in results[0][2]
    assert not any("smoothed" in w for w in results[1][2] + results[2][2])
    # the first read's L5 stands with its own status; the added levels are ungraded for the smoothing
    assert results[0][0][UNGRADED]["L5"] == "placed again" and "L4" not in results[0][0][UNGRADED]
    assert set(results[0][0][UNGRADED]) == {"L1", "L2", "L3", "L5"}
    assert results[0][0][UNGRADED]["L3"].startswith("its points were placed on the image smoothed")
    # the smoothed read's own reason is kept beside the smoothing's (review: a collapsed look was lost)
    assert results[0][0][UNGRADED]["L2"].startswith("it looks collapsed; its points were placed on the image smoothed")
    assert results[0][0]["vertebrae"]["L5"] == _contract_vertebra(0.0)
    assert results[2][0][UNGRADED] == {"L5": "placed again"}  # a different count: the first read stands
    (n_first, boxes_first, _), (n_again, boxes_again, facing_again) = calls
    assert (n_first, boxes_first, n_again) == (3, None, 2)
    assert facing_again == ["left", "left"]  # the first read's facing (review: the smoothed read chose its own)
    assert detector.last_read_again == 2  # the two images read again (diagnostics; benchmarks/landmarks.py counts them)
    assert boxes_again == [detector.field_box(grainy), detector.field_box(off)]  # the fields of the images as given
    assert detector.last_timings == {"coarse": 2.0}  # both reads counted
    monkeypatch.setattr(detector, "smoothed_look", False)
    assert [len(lm["vertebrae"]) for lm, _, _ in detector.detect([grainy])] == [2]


def test_the_smoothed_read_adds_levels_only_where_it_shares_two_with_the_first():
    """``infer.merge_smoothed``: the smoothed read is never taken whole - with no vertebra from the image
    as given, or one level in common, nothing is added (taken whole, it gave a long film 9 wrong levels,
    drr-b 8,000,0xx); with two in common its other levels are added, ungraded; an added body on a reported
    one, or a common level placed elsewhere, is a disagreement."""
    def lm(levels, shift=0.0):
        order = ("L5", "L4", "L3", "L2", "L1")
        return {"vertebrae": {lv: _contract_vertebra(-40.0 * order.index(lv) - shift) for lv in levels},
                "s1_endplate": None, "femoral_heads": []}

    five = lm(["L5", "L4", "L3", "L2", "L1"])
    nothing = lm([])
    assert infer.merge_smoothed(nothing, five, "smoothed") is None and not nothing["vertebrae"]
    one = lm(["L5"])
    assert infer.merge_smoothed(one, five, "smoothed") is None and list(one["vertebrae"]) == ["L5"]
    two = lm(["L5", "L4"])
    assert infer.merge_smoothed(two, five, "smoothed") == ["L1", "L2", "L3"]
    assert list(two["vertebrae"]) == ["L1", "L2", "L3", "L4", "L5"]
    assert two[UNGRADED] == {"L1": "smoothed", "L2": "smoothed", "L3": "smoothed"}
    moved = lm(["L5", "L4"])
    assert infer.merge_smoothed(moved, lm(["L5", "L4", "L3"], shift=12.0), "smoothed") is None  # 12 px of a 34 px body
    beside = lm(["L5", "L4"])
    extra = lm(["L5", "L4"])
    extra["vertebrae"]["L3"] = _contract_vertebra(-45.0)  # on the first read's L4
    assert infer.merge_smoothed(beside, extra, "smoothed") is None and list(beside["vertebrae"]) == ["L5", "L4"]


def test_the_smoothed_read_withholds_levels_beyond_a_run_of_withheld_ones():
    """``infer.smoothed_run``: walking from the anchor, the levels beyond two or more withheld levels
    in a row go (a lone "T8" across withheld T9-T11 was a wrong level, drr-b 7,200,004); one withheld
    level is crossed; from C7 the walk runs downwards."""
    def lm(levels):
        return {"vertebrae": {lv: {} for lv in levels}, infer.UNGRADED: {lv: "x" for lv in levels}}

    t8 = lm(["T8", "T12", "L1", "L2", "L3", "L4", "L5"])
    warnings: list[str] = []
    assert infer.smoothed_run(t8, warnings) == ["T8"]
    assert list(t8["vertebrae"]) == ["T12", "L1", "L2", "L3", "L4", "L5"] and "T8" not in t8[infer.UNGRADED]
    assert warnings == ["on the smoothed read, T8 lie beyond 3 withheld levels from T12: withheld"]
    one = lm(["T10", "T12", "L1", "L2", "L3", "L4", "L5"])
    assert infer.smoothed_run(one, []) == [] and len(one["vertebrae"]) == 7  # one withheld level is crossed
    top = lm(["C7", "T1", "T4", "T5"])
    assert infer.smoothed_run(top, [], from_top=True) == ["T4", "T5"]
    # the anchor's own gap counts (review): L4 and L5 withheld above S1, or C7-T2 below the top
    assert infer.smoothed_run(lm(["L1", "L2", "L3"]), []) == ["L3", "L2", "L1"]
    assert infer.smoothed_run(lm(["T8"]), []) == ["T8"]
    assert infer.smoothed_run(lm(["T3", "T4", "T5"]), [], from_top=True) == ["T3", "T4", "T5"]
    assert infer.smoothed_run(lm(["L4", "L5"]), []) == [] and infer.smoothed_run(lm(["L3", "L4"]), []) == []


def test_a_look_counted_from_a_faint_s1_gives_way_to_one_with_a_firm_s1():
    from sagittal.landmarks.infer import _look_rank

    def look(n: int, s1_score: float) -> Detections:
        bodies = [_body(lv, -40.0 * k) for k, lv in enumerate(("L5", "L4", "L3", "L2", "L1", "T12")[:n])]
        return Detections(bodies, np.array([[130.0, 150.0], [90.0, 152.0]]), s1_score, [])

    assert not _look_rank(look(6, 0.17))[0] and _look_rank(look(5, 0.36))[0]  # faint S1: looked at again
    assert _look_rank(look(5, 0.36)) > _look_rank(look(6, 0.17))  # fewer levels, but a firm anchor
    assert not _look_rank(look(2, 0.9))[0]  # too few levels: looked at again
    assert _look_rank(look(6, 0.5)) > _look_rank(look(5, 0.5))


@pytest.mark.slow
def test_an_inverted_export_is_looked_at_again(detector):
    spine, view = _lumbar_view()
    ((lm, _, warnings),) = detector.detect([view.pixels.max() - view.pixels])  # bone dark, read as bone bright
    assert {"L1", "L2", "L3", "L4", "L5"} <= set(lm["vertebrae"])
    assert any("found on an inverted version" in w for w in warnings)
    for lv, v in lm["vertebrae"].items():
        truth = view.to_px(spine.points_mm[LEVEL_INDEX[lv]])
        assert np.linalg.norm(np.array(v["anterior_superior"]) - truth[0]) < 3.0, lv


def test_the_count_across_a_withheld_body_must_fit_real_steps():
    """A false body beside a missed one (drr-a 1,000,021): the step across the withheld false
    body, per level, is 1.38× its neighbours' — inside the loose band for adjacent bodies
    (``STEP_LONG``), outside the range of real steps that a count across withheld levels needs."""
    from sagittal.landmarks.postprocess import recheck_chain

    def chain(span_ratio: float) -> Detections:
        ys = [0.0, -40.0, -80.0, -40.0 - 80.0 * span_ratio]  # L5, L4, L3 (withheld), L2 two levels above L4 …
        ys += [ys[-1] - 40.0, ys[-1] - 80.0, ys[-1] - 120.0]  # … then L1, T12, T11 40 apart again
        bodies = [_body(lv, y) for lv, y in zip(("L5", "L4", "L3", "L2", "L1", "T12", "T11"), ys, strict=True)]
        bodies[2].level = None
        return Detections(bodies, np.array([[130.0, 150.0], [90.0, 152.0]]), 0.9, [])

    out = recheck_chain(chain(1.38))
    assert [b.level for b in out.bodies] == ["L5", "L4", None, None, None, None, None]
    assert any("across the withheld ones" in w for w in out.warnings)
    ok = chain(1.2)
    assert recheck_chain(ok) is ok  # a span that fits real steps keeps the count


def test_a_body_withheld_on_its_own_does_not_break_the_chain_of_the_others():
    from sagittal.landmarks.postprocess import recheck_chain

    bodies = [_body(lv, -40.0 * k) for k, lv in enumerate(("L5", "L4", "L3", "L2", "L1", "T12"))]
    bodies[2].level = None  # L3 withheld (unstable): L2, L1, T12 keep theirs
    det = Detections(bodies, np.array([[130.0, 150.0], [90.0, 152.0]]), 0.9, [])
    out = recheck_chain(det)
    assert [b.level for b in out.bodies] == ["L5", "L4", None, "L2", "L1", "T12"]
    bodies[4].points, bodies[4].centre = bodies[3].points.copy(), bodies[3].centre.copy()  # L1 on L2's body
    out = recheck_chain(Detections(bodies, det.s1, 0.9, []))
    levels = [b.level for b in out.bodies]
    assert levels[0] == "L5" and levels[4:] == [None, None]  # two levels on one body: nothing beyond is named
    assert any("counted twice" in w for w in out.warnings)


def test_the_steps_are_checked_again_with_bodies_withheld_for_their_points():
    """``2d`` evaluation film 3,900,055: the first stage missed one of T10–T8 beside a crushed T8;
    the fine placement withheld "T10" (19 % apart) and "T9" (collapsed, 7 %), and the span from T11
    to the next labelled body across them, 1.33× per level, passed the span check (0.73–1.35×):
    T1–T8 were named one level off. Put back where they were placed, the unsteady bodies show the
    step of 1.75× where the body is missing."""
    from sagittal.landmarks.postprocess import FROM_C7, STEP, Withheld, recheck_chain, recheck_with_placed

    ys = [0.0, -40.0, -80.0, -160.0, -200.0, -240.0, -280.0, -320.0]  # a body missing between L3 and "L2"
    bodies = [_body(lv, y) for lv, y in zip(("L5", "L4", "L3", "L2", "L1", "T12", "T11", "T10"), ys, strict=True)]
    for b in bodies[3:5]:  # L2, L1 withheld for their points: placed, unsteady
        b.level, b.spread = None, 0.19
    det = Detections(bodies, np.array([[130.0, 150.0], [90.0, 152.0]]), 0.9, [])
    assert recheck_chain(det) is det  # L3 to T12 across two withheld levels: 160 px / 3 = 1.33× per level
    out = recheck_with_placed(det)
    assert [b.level for b in out.bodies] == ["L5", "L4", "L3", None, None, None, None, None]
    assert out.withheld[-1] == Withheld("T12", STEP, pytest.approx(2.0), near="L3")
    assert any("a step between L3 and L2 is 2.00×" in w and "beyond L3 are withheld" in w for w in out.warnings)
    # counted from C7 (no sacrum): the levels below the step are the ones beyond it
    top = recheck_with_placed(replace(det, s1=None, warnings=[FROM_C7]))
    assert [b.level for b in top.bodies] == [None, None, None, None, None, "T12", "T11", "T10"]
    # the same bodies evenly spaced, a stray (no place: spread 0) or one placed farther apart than a
    # stray between them: nothing new to check, the count stands
    even = [replace(b, points=BODY + [0.0, -40.0 * k], centre=(BODY + [0.0, -40.0 * k])[:4].mean(axis=0))
            for k, b in enumerate(bodies)]
    for kept in (replace(det, bodies=even),
                 replace(det, bodies=[replace(b, spread=0.0) if b.level is None else b for b in bodies]),
                 replace(det, bodies=[replace(b, spread=0.6) if b.level is None else b for b in bodies])):
        assert [b.level for b in recheck_with_placed(kept).bodies] == [b.level for b in kept.bodies]


def test_the_step_checks_walk_from_s1_when_its_endplate_was_withheld_as_unsteady():
    """``consistent`` withholds an S1 endplate whose two placements disagree but keeps the levels
    counted from it where it was seen firmly; the step checks must still walk from S1 and withhold
    the levels beyond a bad step above it, not the ones below (review, ninth session)."""
    from sagittal.landmarks.postprocess import recheck_chain, recheck_with_placed

    ys = [0.0, -40.0, -80.0, -120.0, -160.0, -200.0, -280.0, -320.0]  # a body missing between T12 and "T11"
    bodies = [_body(lv, y) for lv, y in zip(("L5", "L4", "L3", "L2", "L1", "T12", "T11", "T10"), ys, strict=True)]
    det = Detections(bodies, None, 0.0, [])  # S1 withheld after the count; no count from C7
    assert [b.level for b in recheck_chain(det).bodies] == ["L5", "L4", "L3", "L2", "L1", "T12", None, None]
    placed = [replace(b, level=None, spread=0.1) if b.level == "L2" else b for b in bodies]
    out = recheck_with_placed(Detections(placed, None, 0.0, []))
    assert [b.level for b in out.bodies] == ["L5", "L4", "L3", None, "L1", "T12", None, None]


def test_a_body_with_no_place_between_placed_ones_is_stepped_over_per_level():
    """A stray (no place) between a placed body and a labelled one: the step across it is taken per
    level, so an evenly spaced chain keeps every level, and a body missing there shows (1.5×)."""
    from sagittal.landmarks.postprocess import recheck_with_placed

    def chain(t12_y: float) -> Detections:
        ys = [0.0, -40.0, -80.0, -120.0, -160.0, t12_y, t12_y - 40.0, t12_y - 80.0]
        bodies = [_body(lv, y) for lv, y in zip(("L5", "L4", "L3", "L2", "L1", "T12", "T11", "T10"), ys, strict=True)]
        bodies[3].level, bodies[3].spread = None, 0.15  # L2 placed, unsteady
        bodies[4].level, bodies[4].spread = None, 0.0  # L1 strayed: no place
        return Detections(bodies, np.array([[130.0, 150.0], [90.0, 152.0]]), 0.9, [])

    even = chain(-200.0)
    assert [b.level for b in recheck_with_placed(even).bodies] == [b.level for b in even.bodies]
    missing = recheck_with_placed(chain(-240.0))  # L2 to "T12": 120 px over two levels, 1.5× per level
    assert [b.level for b in missing.bodies] == ["L5", "L4", "L3", None, None, None, None, None]


def test_the_radiograph_only_rules_are_off_for_the_ct_mr_plane_model():
    """Rules judged on radiographs alone stay off in the CT/MR plane detector (not measured there)."""
    from sagittal.batch.volume import load_plane_model

    det = load_plane_model(None, "cpu", 1)
    assert (det.placed_step_rule, det.zoom_out_look, det.c7_ends_rule, det.faint_s1_at_edge_rule) == (False,) * 4


def test_coarse_without_looks_reads_each_image_once_per_network(detector):
    """``coarse(..., looks=False)`` (the MR centre line's slices): an image naming no level is read
    as given only, by each coarse network once — not equalised, inverted or shrunk as well."""
    blank = np.full((400, 200), 1000.0, np.float32)
    calls: list[int] = []
    real = detector._coarse_maps

    def counting(normed, stage="coarse", zoom_out=None, windows=None):
        calls.append(len(normed))
        return real(normed, stage, zoom_out, windows)

    detector._coarse_maps = counting
    try:
        detector.coarse([blank], looks=False)
        plain = list(calls)
        calls.clear()
        detector.coarse([blank])
    finally:
        del detector._coarse_maps
    assert plain == [1] * len(plain) and len(plain) == 1 + ("coarse2" in detector.models)
    assert sum(calls) > len(plain)  # with its looks, the blank image is looked at again


def _recentred_runs(detector, family: str, seed: int) -> tuple[dict, dict, dict]:
    """An evaluation film's landmarks with the re-centred placement off and on, and the on run's
    ``last_recentred``; the eval stream's own renderer (``scripts/eval_landmarks.py``)."""
    from ..training.fixtures import eval_script

    _, view, truth = eval_script().render_case(family, seed, 0.5, False)
    found = {}
    try:
        for on in (False, True):
            detector.recentre_unsteady = on
            ((lm, _, _),) = detector.detect([view.pixels])
            found[on] = lm
    finally:
        detector.recentre_unsteady = True
    return found, dict(detector.last_recentred), {"view": view, "truth": truth}


@pytest.mark.slow
def test_an_unsteady_body_is_placed_again_from_recentred_crops(detector):
    """Held-out look (``drr-b`` evaluation film 1,000,014): T5's two placements disagree by 13 %
    of its size and it was withheld; placed again from crops centred on where they put it, the
    two agree and T5 is reported, every point within 2 mm of the truth. Switched off, it is
    withheld as before; only that body was placed again."""
    from sagittal.landmarks.infer import PLACED_AGAIN
    from sagittal.levels import UNGRADED

    found, again, film = _recentred_runs(detector, "drr-b", 1_000_014)
    off, on = found[False]["vertebrae"], found[True]["vertebrae"]
    assert "T5" not in off and set(on) == set(off) | {"T5"}
    assert again == {0: (1, again[0][1])} and found[True][UNGRADED] == {"T5": PLACED_AGAIN}
    assert UNGRADED not in found[False]
    spacing = np.array(film["view"].spacing_mm)[::-1]  # (x, y) mm per pixel
    tv = film["truth"]["landmarks"]["vertebrae"]["T5"]
    err_mm = [float(np.linalg.norm((np.array(on["T5"][k]) - tv[k]) * spacing)) for k in tv if k != "confidence"]
    assert max(err_mm) < 2.0, err_mm
    # reported with its level and points, without heights or grade
    doc = _document(film["view"], found[True], None)
    t5 = next(v for v in doc["vertebrae"] if v["level"] == "T5")
    assert t5["heights_mm"] is None and t5["genant_grade"] is None and t5["morphology"] is None
    assert t5["regional_kyphosis_deg"] is not None and doc["landmarks"][UNGRADED] == {"T5": PLACED_AGAIN}
    assert all(v["genant_grade"] is not None for v in doc["vertebrae"] if v["level"] != "T5")


@pytest.mark.slow
def test_a_body_is_not_placed_again_unless_both_neighbouring_levels_held(detector):
    """``drr-b`` 1,100,024: T10, the top of the film's chain T10–L5, did not hold (16 %); with no
    level above it that held, nothing on that side vouches for where it should be (v1, without
    this, reported such chain ends one level off): it is not placed again and stays withheld."""
    found, again, _ = _recentred_runs(detector, "drr-b", 1_100_024)
    on, off = found[True]["vertebrae"], found[False]["vertebrae"]
    assert "T10" not in on and on.keys() == off.keys() and again == {}


# ------------------------------------------------------------------ the lowest body against S1

def _stacked(levels_y: dict[str, float]) -> dict:
    from sagittal.levels import POINT_NAMES

    return {lv: {n: p for n, p in zip(POINT_NAMES, [[0, y - 12], [30, y - 12], [30, y + 12], [0, y + 12],
                                                     [15, y - 12], [15, y + 12]], strict=True)}
            for lv, y in levels_y.items()}


def test_a_radiograph_keeps_a_lone_body_that_the_ct_mr_check_withholds():
    """``withhold_if_off_s1(lone=False)`` (radiographs): a lone body beside S1 keeps its level
    (on dev films the lone-body clause withheld 4 right levels and no wrong one); the step check
    itself withholds every level where the lowest body stands a level too near S1."""
    from sagittal.landmarks.postprocess import withhold_if_off_s1

    s1 = {"anterior": [0.0, 222.0], "posterior": [30.0, 222.0]}
    lone = {"vertebrae": _stacked({"L5": 200.0}), "s1_endplate": s1}
    warnings: list[str] = []
    withhold_if_off_s1(lone, warnings, lone=False)
    assert list(lone["vertebrae"]) == ["L5"] and not warnings
    withhold_if_off_s1(lone, warnings)
    assert lone["vertebrae"] == {} and "the only body reported" in warnings[0]
    off = {"vertebrae": _stacked({"L2": 136.0, "L3": 168.0, "L4": 200.0}), "s1_endplate": s1}
    withhold_if_off_s1(off, warnings, lone=False, lowest=infer.OFF_S1_LOWEST)
    assert off["vertebrae"] == {} and "one too many next to the sacrum" in warnings[1]


def test_a_radiograph_whose_lower_lumbar_bodies_were_withheld_keeps_its_right_levels():
    """(Reviewer's case.) L2-L5 each withheld, L1 the lowest reported: the step to the next body up
    is thoracolumbar (45 px), shorter than the lumbar ones below (50 px), so a right count reads
    5.2 steps from S1 against the 4.7 its level puts it at. The distance is calibrated for L5 and
    L4 only: radiographs check no higher (``infer.OFF_S1_LOWEST``); the CT/MR call, which checks
    any level, withholds this right count (a known limit, models/README.md)."""
    from sagittal.landmarks.postprocess import withhold_if_off_s1

    s1 = {"anterior": [0.0, 420.0], "posterior": [30.0, 420.0]}  # L5 would be at 385, 0.7 lumbar steps above
    right = {"vertebrae": _stacked({"T11": 100.0, "T12": 140.0, "L1": 185.0}), "s1_endplate": s1}
    warnings: list[str] = []
    withhold_if_off_s1(right, warnings, lone=False, lowest=infer.OFF_S1_LOWEST)
    assert set(right["vertebrae"]) == {"T11", "T12", "L1"} and not warnings
    withhold_if_off_s1(right, warnings)
    assert right["vertebrae"] == {} and "(L1) is 5.2 steps" in warnings[0]


OFF_S1_SEED = 9_440_006  # drr-b dev film: L1-L5 in view; a false body between L5 and S1, withheld, took L5's name


@pytest.mark.slow
def test_a_lumbar_film_counted_through_a_false_body_above_s1_is_withheld(detector):
    """``drr-b`` 9,440,006 (a dev film): the coarse chain named a body between L5 and the sacrum
    L5 (its two placements 94 % apart, withheld), so L5-L1 were reported as L4-T12, every one a
    level too high. With the off-S1 check every level is withheld with the warning; without it the
    five wrong levels come back. The CT/MR plane detector keeps its own check (lone bodies too)."""
    import sys
    from pathlib import Path

    from sagittal.landmarks.plane_detector import PlaneDetector

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
    from eval_landmarks import render_case

    _, view, _ = render_case("drr-b", OFF_S1_SEED, 0.5, False)
    ((lm, _, warnings),) = detector.detect([view.pixels])
    assert lm["vertebrae"] == {} and lm["s1_endplate"] is not None
    assert any("(L4) is 0.9 steps" in w and "one too many next to the sacrum" in w for w in warnings)
    detector.off_s1_rule = False
    try:
        ((lm, _, _),) = detector.detect([view.pixels])
    finally:
        detector.off_s1_rule = True
    assert set(lm["vertebrae"]) == {"T12", "L1", "L2", "L3", "L4"}
    assert PlaneDetector(None, device="cpu", threads=1).off_s1_rule is False



def _box_vertebra(top: float, height: float, x: float = 100.0, depth: float = 40.0) -> dict:
    """A contract vertebra: an upright rectangle ``depth`` wide whose superior endplate is at row ``top``."""
    ys, yi = top, top + height
    return {"anterior_superior": [x + depth, ys], "posterior_superior": [x, ys], "posterior_inferior": [x, yi],
            "anterior_inferior": [x + depth, yi], "middle_superior": [x + depth / 2, ys],
            "middle_inferior": [x + depth / 2, yi]}


def test_femoral_heads_where_no_hip_lies_are_not_used():
    """``postprocess.withhold_heads_off_pelvis`` (drr-a 8,400,011, a long film: "heads" found above the sacrum
    read PI -215°): a head above the S1 endplate, or far below it, is taken out with a warning, and PI and PT
    are then null; a head where a hip lies stays; without an S1 endplate nothing is checked."""
    from sagittal.landmarks.postprocess import withhold_heads_off_pelvis

    def lm(*centres):
        return {"vertebrae": {"L4": _box_vertebra(100.0, 30.0), "L5": _box_vertebra(140.0, 30.0)},
                "s1_endplate": {"anterior": [140.0, 178.0], "posterior": [100.0, 182.0], "confidence": 0.9},
                "femoral_heads": [{"center": list(c), "radius_px": 20.0, "confidence": 0.9} for c in centres]}

    hips = lm((150.0, 280.0), (156.0, 284.0))  # 2.5 S1 widths below the S1 endplate's midpoint
    assert withhold_heads_off_pelvis(hips, []) == [] and len(hips["femoral_heads"]) == 2
    above = lm((150.0, 120.0), (156.0, 124.0))
    warnings: list[str] = []
    assert withhold_heads_off_pelvis(above, warnings) == [0, 1] and above["femoral_heads"] == []
    assert warnings[0].startswith("a femoral head was found -1.5 S1 widths below the S1 endplate")
    image = {"rows": 600, "columns": 400, "pixel_spacing_mm": [0.5, 0.5], "anterior": "right"}
    doc = analysis_document(image, above)
    assert doc["parameters"]["pelvic_incidence_deg"] is None and doc["parameters"]["pelvic_tilt_deg"] is None
    assert analysis_document(image, hips)["parameters"]["pelvic_incidence_deg"] is not None
    one_far = lm((150.0, 280.0), (150.0, 520.0))  # the second 8.5 widths away (a knee on a long film)
    assert withhold_heads_off_pelvis(one_far, []) == [1] and len(one_far["femoral_heads"]) == 1
    no_s1 = {**above, "s1_endplate": None, "femoral_heads": list(lm((150.0, 120.0))["femoral_heads"])}
    assert withhold_heads_off_pelvis(no_s1, []) == [] and len(no_s1["femoral_heads"]) == 1
    nan = lm((float("nan"), 280.0))
    assert withhold_heads_off_pelvis(nan, []) == [0]


def test_femoral_heads_are_kept_below_a_slipped_l5_and_a_high_pi():
    """``withhold_heads_off_pelvis`` on phantom truth (review: measured along the step from L5 to S1, which a
    forward slip of L5 turns backwards, it took out both true heads of grade-II slips): 0 true heads lost over
    high PI and L5 slips, and every check in the image's own downward direction."""
    from dataclasses import replace as dc_replace

    from sagittal.landmarks.postprocess import withhold_heads_off_pelvis
    from sagittal.phantom.anatomy import build_spine, sample_spec
    from sagittal.phantom.truth import landmarks as truth_landmarks

    def to_image(p):
        return np.asarray(p, float) * np.array([1.0, -1.0]) * 3.0  # 3 px/mm, rows down

    for pi, slip in ((65.0, 20.0), (75.0, 30.0), (100.0, 0.0)):
        for seed in range(6):
            spec = sample_spec(np.random.default_rng(seed), n_fractures=0, pelvic_incidence_deg=pi)
            listhesis = spec.listhesis_mm.copy()
            listhesis[-1] = slip
            lm = truth_landmarks(build_spine(dc_replace(spec, listhesis_mm=listhesis)), to_image)
            assert withhold_heads_off_pelvis(lm, []) == [], (pi, slip, seed)


def test_the_detector_sets_aside_heads_above_the_sacrum(detector):
    """``LandmarkDetector._rules`` runs ``withhold_heads_off_pelvis`` (``hips_place_rule``; review: the test of the
    function alone passed with the call removed); the CT/MR plane detector keeps it and the facing check off."""
    from sagittal.landmarks.plane_detector import PlaneDetector

    levels = ("L5", "L4", "L3", "L2")
    s1 = np.array([[130.0, 152.0], [90.0, 150.0]])
    heads = [(np.array([120.0, 60.0]), 20.0, 0.9), (np.array([126.0, 64.0]), 20.0, 0.9)]  # above the sacrum
    fine = Detections([_body(lv, -40.0 * k) for k, lv in enumerate(levels)], s1, 0.9, heads)
    box = (0.0, -400.0, 400.0, 400.0)
    _, lm, warnings = detector._rules(fine, box, frozenset())
    assert lm["femoral_heads"] == [] and any(w.startswith("a femoral head was found") for w in warnings)
    try:
        detector.hips_place_rule = False
        _, lm, _ = detector._rules(fine, box, frozenset())
        assert len(lm["femoral_heads"]) == 2
    finally:
        detector.hips_place_rule = True
    plane = PlaneDetector(None, device="cpu", threads=1)
    assert plane.hips_place_rule is False and plane.facing_check is False and plane.smoothed_look is False


def test_a_film_whose_s1_endplate_reads_upside_down_is_read_again_the_other_way_round(detector, monkeypatch):
    """``LandmarkDetector._checked_facing`` (drr-b 8,200,022: the coarse stage took the facing the wrong way
    round, every point mirrored, PI -83°): where the facing was read from the film and the S1 endplate's
    anterior corner lies above its posterior one, the film is read again with the other facing and the more
    confidently placed read kept, with a warning; a film read the right way, or whose facing was given, is
    not read again; a second read placed less confidently is not kept."""
    calls = []

    def fake(images, facing=None, batch_size=8, boxes=None):
        calls.append(list(facing or [None] * len(images)))
        out, dets = [], []
        for img, side in zip(images, facing or [None] * len(images), strict=True):
            mark = float(img[0, 0])  # 1: seen facing right, truly left; 2: right and truly right; 3: truly right, upside down S1
            seen = side or "right"
            truly = "left" if mark == 1.0 else "right"
            upright = (seen == truly) != (mark == 3.0)
            s1 = {"anterior": [140.0, 182.0 if upright else 170.0], "posterior": [100.0, 176.0], "confidence": 0.9}
            out.append(({"vertebrae": {"L5": _box_vertebra(140.0, 30.0)}, "s1_endplate": s1, "femoral_heads": []},
                        seen, []))
            conf = 0.92 if seen == truly else 0.69
            dets.append(Detections([replace(_body("L5"), point_confidence=conf)], None, 0.0, []))
        detector.last_detections, detector.last_coarse, detector.last_recentred = dets, list(dets), {}
        detector.last_timings = {"coarse": 1.0}
        return out

    monkeypatch.setattr(detector, "_detect", fake)
    monkeypatch.setattr(detector, "smoothed_look", False)
    images = [np.full((20, 20), v, np.float32) for v in (1.0, 2.0, 3.0)]
    results = detector.detect(images)
    assert [side for _, side, _ in results] == ["left", "right", "right"]
    assert calls == [[None, None, None], ["left", "left"]]  # films 1 and 3 read S1 upside down
    assert detector.last_read_again == 2
    assert results[0][2][-1].startswith("the patient's facing read from the first look (right)")
    # the other way round placed less confidently: the first read stands, with a warning to check the film
    assert results[2][2][-1].startswith("the S1 endplate reads with its anterior corner above its posterior one")
    assert detector.last_detections[0].bodies[0].point_confidence == 0.92
    assert detector.last_timings == {"coarse": 2.0}
    calls.clear()
    results = detector.detect(images[:1], facing=["right"])  # the header's facing: not second-guessed
    assert calls == [["right"]] and results[0][1] == "right"
