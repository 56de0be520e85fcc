"""The plane model's two-tier consistency check (``landmarks.plane_detector``): a body whose two
placements disagree a little keeps its level but is not graded; the limits that withhold a level
are the detector's own, looser than the radiograph model's."""

from __future__ import annotations

import numpy as np

from sagittal.landmarks import plane_detector as pd
from sagittal.landmarks.postprocess import CONSISTENCY_MAX, Body, Detections


def _body(level: str, spread: float, collapsed: bool = False, point_confidence: float = 0.9) -> Body:
    # anterior-superior, posterior-superior, posterior-inferior, anterior-inferior, mid-superior, mid-inferior
    h_ant = 12.0 if collapsed else 25.0
    pts = np.array([[0, 0], [30, 0], [30, 25], [0, h_ant], [15, 0], [15, 25]], float)
    return Body(pts, 0.9, pts[:4].mean(0), level, point_confidence=point_confidence, spread=spread)


def test_grading_needs_steadier_points_than_the_level():
    assert pd.LEVEL_LIMITS["max_spread"] > CONSISTENCY_MAX >= pd.GRADE_SPREAD_MAX
    assert pd.why_ungraded(_body("L1", 0.05)) is None
    assert "disagree by 20 %" in (pd.why_ungraded(_body("L1", 0.20)) or "")
    assert pd.why_ungraded(_body("L1", pd.GRADE_COLLAPSED_MAX + 0.01, collapsed=True)) is not None  # a false fracture
    assert pd.why_ungraded(_body("L1", pd.GRADE_COLLAPSED_MAX - 0.01, collapsed=True)) is None
    assert "not confident" in (pd.why_ungraded(_body("L1", 0.02, point_confidence=0.2)) or "")


def test_mark_ungraded_lists_only_reported_levels_with_a_warning():
    bodies = [_body("L1", 0.02), _body("L2", 0.2), _body("L3", 0.3)]
    lm = {"vertebrae": {"L1": {}, "L2": {}}, "s1_endplate": None, "femoral_heads": []}  # L3 withheld upstream
    warnings: list[str] = []
    pd.mark_ungraded(lm, warnings, Detections(bodies, None, 0.0, []))
    assert set(lm[pd.UNGRADED]) == {"L2"}
    assert len(warnings) == 1 and warnings[0].startswith("L2:") and "heights and grade are not" in warnings[0]


def test_levels_beyond_a_grossly_unsteady_body_are_withheld():
    """Counting from S1 (image rows grow caudally): a body withheld for a gross disagreement at
    row 100 leaves the levels below it (nearer S1) and withholds those above it."""
    def at(level: str | None, row: float, spread: float = 0.02) -> Body:
        b = _body(level or "L1", spread)
        shift = np.array([0.0, row]) - b.centre
        return Body(b.points + shift, 0.9, b.centre + shift, level, spread=spread)

    bodies = [at("T12", 40), at("L1", 70), at(None, 100, spread=0.8), at("L3", 130), at("L4", 160)]
    lm = {"vertebrae": {lv: {} for lv in ("T12", "L1", "L3", "L4")}, "s1_endplate": {}, "femoral_heads": []}
    warnings: list[str] = []
    s1 = np.array([[0.0, 200.0], [30.0, 200.0]])
    pd.withhold_beyond_gross(lm, warnings, Detections(bodies, s1, 0.9, []), pd.LEVEL_LIMITS["max_spread"])
    assert set(lm["vertebrae"]) == {"L3", "L4"}
    assert len(warnings) == 1 and "T12, L1" in warnings[0] and "not trusted" in warnings[0]
    # a modest disagreement (under the level limit) does not break the count
    lm = {"vertebrae": {lv: {} for lv in ("T12", "L1", "L3", "L4")}, "s1_endplate": {}, "femoral_heads": []}
    bodies[2] = at(None, 100, spread=0.2)
    pd.withhold_beyond_gross(lm, [], Detections(bodies, s1, 0.9, []), pd.LEVEL_LIMITS["max_spread"])
    assert len(lm["vertebrae"]) == 4


def test_counting_from_c7_withholds_below_the_gross_body():
    """Counted from C7 (no sacrum): the levels below a grossly unsteady body go, those above stay."""
    def at(level: str | None, row: float, spread: float = 0.02) -> Body:
        b = _body(level or "T1", spread)
        shift = np.array([0.0, row]) - b.centre
        return Body(b.points + shift, 0.9, b.centre + shift, level, spread=spread)

    bodies = [at("C7", 10), at("T1", 30), at(None, 50, spread=0.9), at("T3", 70), at("T4", 90)]
    lm = {"vertebrae": {lv: {} for lv in ("C7", "T1", "T3", "T4")}, "s1_endplate": None, "femoral_heads": []}
    warnings: list[str] = []
    note = pd.C7_NOTE + " at the top of the image"
    pd.withhold_beyond_gross(lm, warnings, Detections(bodies, None, 0.0, [], [note]), pd.LEVEL_LIMITS["max_spread"])
    assert set(lm["vertebrae"]) == {"C7", "T1"} and "C7 and T3, T4" in warnings[0]
    # the note is postprocess.label_levels' own words: a rewording there must be followed here
    import inspect

    from sagittal.landmarks import postprocess

    assert pd.C7_NOTE in inspect.getsource(postprocess.label_levels)
