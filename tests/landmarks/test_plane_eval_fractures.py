"""``scripts/eval_planes.py --diagnose``'s per-fracture lines: the grade the phantom's true points
give on our plane against ours, so that a wrong grade is put on the points, the plane or the grade's
definition (the true points stand in for the model here, and an identity plane for the reformat)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from sagittal.geometry.morphometry import morphometry
from sagittal.levels import LEVELS, POINT_NAMES
from sagittal.phantom import build_spine, sample_spec
from tests.training.fixtures import script


def _doc(spine, grades: dict[str, int | None], reported: list[str]) -> dict:
    px = spine.points_mm - spine.points_mm.min(axis=(0, 1)) + 10.0  # an identity plane, 1 mm pixels
    m = morphometry(px)
    verts = {lv: {n: px[LEVELS.index(lv), k].tolist() for k, n in enumerate(POINT_NAMES)} for lv in reported}
    rows = [{"level": lv, "genant_grade": grades.get(lv, int(m["genant_grade"][LEVELS.index(lv)])),
             "height_loss_pct": float(m["height_loss_pct"][LEVELS.index(lv)])} for lv in reported]
    return {"landmarks": {"vertebrae": verts}, "vertebrae": rows}


def _plane_and_volume(spine):
    off = spine.points_mm.min(axis=(0, 1)) - 10.0
    plane = SimpleNamespace(spacing_mm=1.0, image=np.zeros((4000, 4000)), from_lps=lambda p: np.asarray(p)[..., :2] - off)
    return plane, SimpleNamespace(sagittal_to_lps=lambda p: np.asarray(p, float))


def test_fracture_lines_say_which_grades_the_true_points_would_give():
    spine = build_spine(sample_spec(np.random.default_rng(5), n_fractures=2))
    fx = [LEVELS[i] for i in np.nonzero(spine.grade > 0)[0]]
    assert len(fx) == 2
    plane, vol = _plane_and_volume(spine)
    ev = script("eval_planes")
    wrong = fx[0]
    truth = int(spine.grade[LEVELS.index(wrong)])
    missing = fx[1]
    reported = [lv for lv in LEVELS if lv != missing]
    acc: dict = {}
    img = np.ones((4000, 4000))
    img[0, 0] = 0.0  # the volume's field: everything but one corner pixel
    doc = _doc(spine, {wrong: (truth + 1) % 4}, reported)
    lines = ev._fracture_lines(spine, vol, plane, img, doc, acc)
    assert len(lines) == 2
    by = {ln.split(" ")[0]: ln for ln in lines}
    assert "WRONG" in by[wrong] and f"truth grade {truth}" in by[wrong]
    assert "ours missing" in by[missing] and "WRONG" not in by[missing]
    summary = ev._fracture_summary(acc["fx_rows"])
    assert summary["in_view"] == 2 and summary["graded"] == 1 and summary["missing"] == 1
    assert summary["graded_exact"] == 0 and summary["true_points_our_plane_exact"] == 1
    # a body outside the volume's own field (the plane there filled with the minimum) is not in
    # view, for these lines as for the score (``_in_view``)
    pts = plane.from_lps(vol.sagittal_to_lps(spine.points_mm[LEVELS.index(missing)]))
    img[int(pts[:, 1].min()) - 2:int(pts[:, 1].max()) + 3, int(pts[:, 0].min()) - 2:int(pts[:, 0].max()) + 3] = 0.0
    acc = {}
    lines = ev._fracture_lines(spine, vol, plane, img, doc, acc)
    assert [ln.split(" ")[0] for ln in lines] == [wrong]
    assert not ev._in_view(pts, img) and ev._in_view(plane.from_lps(vol.sagittal_to_lps(
        spine.points_mm[LEVELS.index(wrong)])), img)


def _exact_case():
    """A two-fracture spine on an identity plane, every level reported with its true points, and
    the volume's field everything but one corner pixel: ``(spine, plane, vol, eval_planes, img, doc)``."""
    spine = build_spine(sample_spec(np.random.default_rng(5), n_fractures=2))
    plane, vol = _plane_and_volume(spine)
    img = np.ones((4000, 4000))
    img[0, 0] = 0.0
    return spine, plane, vol, script("eval_planes"), img, _doc(spine, {}, list(LEVELS))


def test_the_height_loss_bias_is_zero_for_the_true_points_and_signed_for_a_milder_read():
    """``_loss_bias`` compares our loss with the loss the true points give on our plane with our
    neighbours: the true points give 0 everywhere; one fracture read 5 points milder gives -5 for
    that body only, and the figure is its share of the fractured bodies graded."""
    spine, plane, vol, ev, img, doc = _exact_case()
    exact = ev._loss_bias(spine, vol, plane, img, doc)
    assert len(exact) == len(LEVELS) and all(d == pytest.approx(0.0, abs=1e-9) for _, d in exact)
    fx = LEVELS[int(np.nonzero(spine.grade > 0)[0][0])]
    for row in doc["vertebrae"]:
        if row["level"] == fx:
            row["height_loss_pct"] -= 5.0
    milder = ev._loss_bias(spine, vol, plane, img, doc)
    moved = [(g, d) for g, d in milder if abs(d) > 1e-9]
    assert len(moved) == 1 and moved[0][0] > 0 and moved[0][1] == pytest.approx(-5.0)
    acc = {"in_view": 0, "found": 0, "wrong": 0, "point_err": [], "height_err": [], "grades": [], "pi_err": [],
           "heads": [], "status": [], "seconds": [], "units": 0, "loss_err": milder}
    bias = ev._figures(acc, 1)["height_loss_bias_pct"]
    assert bias["fractured"] == pytest.approx(-5.0 / sum(g > 0 for g, _ in milder), abs=1e-4)
    assert bias["normal"] == pytest.approx(0.0, abs=1e-9)
    # a body reported away from its true place (a wrong level) is not compared with another's truth
    for n in POINT_NAMES:
        doc["landmarks"]["vertebrae"][fx][n] = [x + 30.0 for x in doc["landmarks"]["vertebrae"][fx][n]]
    assert len(ev._loss_bias(spine, vol, plane, img, doc)) == len(LEVELS) - 1


def test_eval_planes_scores_the_second_looks_off_as_more_runs(tmp_path, monkeypatch):
    """``--without NAME``: the first weights once more with that second look off, reported as a
    run of its own (nothing rendered here: no cases, only the runs' set-up)."""
    import json
    import sys

    ev = script("eval_planes")
    out = tmp_path / "r.json"
    monkeypatch.setattr(sys, "argv", ["eval_planes.py", "--n-ct", "0", "--n-mr", "0", "--without", "bridge_retry",
                                      "--without", "crushed_bridge_retry", "--without", "break_retry,crushed_step",
                                      "--without", "crushed_between", "--json", str(out)])
    ev.main()
    runs = json.loads(out.read_text())["runs"]
    assert [r["second_looks_off"] for r in runs] == [[], ["bridge_retry"], ["crushed_bridge_retry"],
                                                     ["break_retry", "crushed_step"], ["crushed_between"]]
    monkeypatch.setattr(sys, "argv", ["eval_planes.py", "--n-ct", "0", "--n-mr", "0", "--without", "bridge_retry,nope"])
    with pytest.raises(SystemExit):
        ev.main()


def test_the_height_loss_bias_leaves_an_ungraded_body_out_of_its_neighbours_as_the_report_does():
    """``report.analysis_document`` grades the neighbours of an ungraded body as if it were absent;
    the true-point reference of ``_loss_bias`` must leave it out too, or a neighbour read exactly
    shows a bias that is only the reference's."""
    from sagittal.levels import UNGRADED

    spine, plane, vol, ev, img, doc = _exact_case()
    gone = "L2"
    px = spine.points_mm - spine.points_mm.min(axis=(0, 1)) + 10.0
    without = morphometry(np.where((np.array(LEVELS) == gone)[:, None, None], np.nan, px))
    changed = [lv for lv in LEVELS if lv != gone and abs(without["height_loss_pct"][LEVELS.index(lv)]
                                                           - doc["vertebrae"][LEVELS.index(lv)]["height_loss_pct"]) > 0.1]
    assert changed  # leaving L2 out moves some neighbour's loss, so the check below can fail
    doc["vertebrae"] = [{**row, "height_loss_pct": float(without["height_loss_pct"][LEVELS.index(row["level"])])}
                        for row in doc["vertebrae"] if row["level"] != gone]
    doc["landmarks"][UNGRADED] = {gone: "placed again"}
    rows = ev._loss_bias(spine, vol, plane, img, doc)
    assert len(rows) == len(LEVELS) - 1 and all(d == pytest.approx(0.0, abs=1e-9) for _, d in rows)


def test_fractured_exact_is_also_counted_over_every_fractured_body_in_view():
    """``_fracture_summary``: a body whose grade is withheld (null) counts in the fractured bodies in
    view but not among the graded: exact among the graded and over all in view are both reported, and
    our loss against the phantom's over the graded; ``_sampling_bin`` names the bins of the split by
    the series' sampling along the spine."""
    spine = build_spine(sample_spec(np.random.default_rng(5), n_fractures=2))
    fx = [LEVELS[i] for i in np.nonzero(spine.grade > 0)[0]]
    plane, vol = _plane_and_volume(spine)
    ev = script("eval_planes")
    img = np.ones((4000, 4000))
    img[0, 0] = 0.0
    doc = _doc(spine, {fx[1]: None}, list(LEVELS))
    acc: dict = {}
    ev._fracture_lines(spine, vol, plane, img, doc, acc)
    s = ev._fracture_summary(acc["fx_rows"])
    assert s["in_view"] == 2 and s["graded"] == 1 and s["withheld"] == 1 and s["graded_exact"] == 1
    assert s["exact_of_graded"] == 1.0 and s["exact_of_in_view"] == 0.5
    i = LEVELS.index(fx[0])
    assert s["loss_err_pct_mean"] == pytest.approx(float(morphometry(spine.points_mm)["height_loss_pct"][i])
                                                   - float(spine.loss_pct[i]), abs=1e-3)
    edges = (2.0, 3.0, 4.0)
    assert [ev._sampling_bin(mm, edges) for mm in (1.0, 2.0, 3.5, 4.0, 5.0)] == ["<2", "2-3", "3-4", ">=4", ">=4"]
