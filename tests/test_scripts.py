"""The training and evaluation scripts run: a few iterations of each training stage (the thin
wrapper over ``sagittal.training.loop``) write a weights file that the detector loads, and the
evaluation reports every figure the model card quotes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from sagittal.landmarks.weights import packaged

ROOT = Path(__file__).resolve().parents[1]


def _run(*args: str) -> str:
    done = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.mark.slow
def test_training_writes_both_stages_into_one_loadable_file(tmp_path):
    out = tmp_path / "w.pt"
    for stage, n in (("coarse", "4"), ("refine", "2")):
        _run("scripts/train_landmarks.py", "--stage", stage, "--minutes", "0.05", "--n-train", n, "--workers", "1",
             "--batch", "4", "--cache", str(tmp_path / f"{stage}.npz"), "--out", str(out))
    from sagittal.landmarks.model import load_models

    assert out.with_name("w.pt.sha256").is_file()  # the checkpoint carries its checksum
    models = load_models(out)
    assert set(models) == {"coarse", "refine"}
    import torch

    meta = torch.load(out, weights_only=True)["refine"]["meta"]
    assert meta["iterations"] >= 1 and "0..1" in meta["train_seeds"]


@pytest.mark.slow
def test_evaluation_reports_the_model_card_figures(tmp_path):
    report = tmp_path / "eval.json"
    out = _run("scripts/eval_landmarks.py", "--families", "2d", "--n", "2", "--weights", "a=" + str(packaged()),
               "--json", str(report))
    r = json.loads(report.read_text())
    cell = r["results"]["a"]["2d"]
    for key in ("landmark_error_mm", "detection_rate", "detection_rate_per_level", "parameter_mae", "wrong_levels",
                "genant_exact_fractured", "fracture_sensitivity", "fracture_false_positive_rate", "analysed_fraction"):
        assert key in cell
    assert set(cell["parameter_mae"]) >= {"pelvic_incidence_deg", "pelvic_tilt_deg", "sacral_slope_deg",
                                          "lumbar_lordosis_deg", "thoracic_kyphosis_deg", "sagittal_vertical_axis_mm",
                                          "regional_kyphosis_deg"}
    assert 0 <= cell["analysed_fraction"] <= 1 and cell["images"] == 2
    assert "| radiographs analysed |" in out and "a / 2d" in out
    assert "pelvic_incidence MAE, paired" in out and "parameter_mae_paired" in cell


def test_eval_landmarks_pairs_parameter_errors_over_the_images_every_weights_measured() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("eval_landmarks", ROOT / "scripts" / "eval_landmarks.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    a, b = mod.Tally(), mod.Tally()
    a.perr_by_image["pelvic_incidence_deg"] = {0: 1.0, 1: 9.0}  # b did not measure image 1 (a hard one)
    b.perr_by_image["pelvic_incidence_deg"] = {0: 3.0}
    results: dict = {"a": {"2d": {}}, "b": {"2d": {}}}
    mod.paired(results, {"a": a, "b": b}, "2d")
    assert results["a"]["2d"]["parameter_mae_paired"]["pelvic_incidence_deg"] == 1.0
    assert results["b"]["2d"]["parameter_mae_paired"]["pelvic_incidence_deg"] == 3.0
    assert results["a"]["2d"]["parameter_n_paired"]["pelvic_incidence_deg"] == 1
    assert results["a"]["2d"]["parameter_mae_paired"]["pelvic_tilt_deg"] is None  # measured by neither


def test_eval_landmarks_height_loss_bias_is_zero_on_the_true_points_and_negative_for_a_milder_read() -> None:
    """The bias figure compares a body's loss with the loss the same measurement gives on its true
    points: the true points themselves give 0, and a fracture read towards a normal shape (its
    superior endplate's anterior and middle points lifted) gives a negative fractured bias."""
    import copy
    import importlib.util

    import numpy as np

    spec = importlib.util.spec_from_file_location("eval_landmarks", ROOT / "scripts" / "eval_landmarks.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    seed = next(s for s in range(1_000_000, 1_000_050)
                if any(v["genant_grade"] >= 2 and v["in_view"] for v in mod.render_case("2d", s, 1.0, False)[2]["vertebrae"]))
    spine, view, truth = mod.render_case("2d", seed, 1.0, False)
    exact = mod.Tally()
    exact.add(spine, view, truth, truth["landmarks"], view.facing)
    bias = exact.report()["height_loss_bias_pct"]
    assert bias["fractured"] == 0.0 and bias["normal"] == 0.0
    assert exact.report()["fractures_missed_by_true_grade"] == {"1": 0, "2": 0, "3": 0}
    exact.grades = [(2, 0), (1, 0), (1, 1), (3, 2), (0, 0), (0, 1)]  # (true, ours): a grade-2 and a grade-1 missed
    assert exact.report()["fractures_missed_by_true_grade"] == {"1": 1, "2": 1, "3": 0}
    level = next(v["level"] for v in truth["vertebrae"] if v["genant_grade"] >= 2 and v["in_view"])
    milder = copy.deepcopy(truth["landmarks"])
    pts = milder["vertebrae"][level]
    lift = np.subtract(pts["posterior_superior"], pts["posterior_inferior"])  # along the posterior wall, upwards
    for name, share in (("anterior_superior", 0.2), ("middle_superior", 0.1)):
        pts[name] = list(np.add(pts[name], share * lift))
    read = mod.Tally()
    read.add(spine, view, truth, milder, view.facing)
    moved = [(g, e) for g, e in read.loss_err if e != 0]  # only the lifted body reads differently
    assert len(moved) == 1 and moved[0][0] >= 2 and moved[0][1] < -1.0
    n_fractured = sum(g > 0 for g, _ in read.loss_err)
    bias = read.report()["height_loss_bias_pct"]
    assert bias["fractured"] == pytest.approx(moved[0][1] / n_fractured, abs=1e-4) and bias["normal"] == 0.0
    # a body reported away from its true place (a wrong level) is not compared with that level's truth
    away = copy.deepcopy(truth["landmarks"])
    away["vertebrae"][level] = {n: list(np.add(p, [0.0, 60.0 / view.spacing_mm[0]])) for n, p in pts.items()}
    off = mod.Tally()
    off.add(spine, view, truth, away, view.facing)
    assert off.wrong_level == 1 and len(off.loss_err) == len(exact.loss_err) - 1


def test_weight_interpolation_ends_at_its_two_inputs_and_is_loadable(tmp_path):
    import torch

    from sagittal.landmarks.model import load_models

    start = torch.load(packaged(), map_location="cpu", weights_only=True)
    tuned = {**start, "coarse": {**start["coarse"], "state_dict": {
        k: v + 1.0 if v.is_floating_point() else v for k, v in start["coarse"]["state_dict"].items()}}}
    torch.save(tuned, tmp_path / "tuned.pt")
    for alpha, shift in ((0.0, 0.0), (0.25, 0.25), (1.0, 1.0)):
        out = tmp_path / f"w{alpha}.pt"
        _run("scripts/interpolate_weights.py", str(packaged()), str(tmp_path / "tuned.pt"), str(out), "--alpha", str(alpha))
        got = torch.load(out, map_location="cpu", weights_only=True)
        k = next(k for k, v in start["coarse"]["state_dict"].items() if v.is_floating_point())
        torch.testing.assert_close(got["coarse"]["state_dict"][k], start["coarse"]["state_dict"][k] + shift)
        assert got["coarse"]["meta"]["wise_ft_alpha"] == alpha
    load_models(out)  # its .sha256 was written and checks


def test_calibrate_landmarks_sees_bodies_beyond_the_consistency_limits() -> None:
    """The limits are keyword defaults of ``postprocess.consistent``: the calibration must lift
    them on the detector (setting the module's constants does not), or it never sees an unstable
    body and reports that the limit catches none."""
    import importlib.util
    from dataclasses import replace

    import numpy as np

    from sagittal.landmarks.postprocess import CONSISTENCY_MAX, Body, Detections, consistent

    spec = importlib.util.spec_from_file_location("calibrate_landmarks", ROOT / "scripts" / "calibrate_landmarks.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    det = mod.open_detector(None)
    pts = np.array([[130.0, 100.0], [90.0, 98.0], [91.0, 128.0], [129.0, 131.0], [110.0, 101.0], [110.0, 127.5]])
    a = Detections([Body(pts, 0.9, pts[:4].mean(0), "L3", point_confidence=0.1)], None, 0.0, [])
    moved = pts.copy()
    moved[0] += [0.0, 3 * CONSISTENCY_MAX * 40.0]
    b = replace(a, bodies=[replace(a.bodies[0], points=moved)])
    out = consistent(a, b, **det.consistency_limits)
    assert out.bodies[0].level == "L3" and out.bodies[0].spread > CONSISTENCY_MAX
    assert consistent(a, b).bodies[0].level is None  # what the detector does with its own limits


def test_eval_landmarks_counts_a_cut_body_graded_fractured() -> None:
    """A body the field cuts, reported at its level, is not among the bodies in view, so the false
    positive rate cannot see it; when it is graded fractured (its hidden endplate guessed inside
    the field, a short body) although it is not, ``cut_bodies_false_fractures`` counts it; a cut
    body that is truly fractured is not counted."""
    import copy
    import importlib.util

    import numpy as np

    spec = importlib.util.spec_from_file_location("eval_landmarks", ROOT / "scripts" / "eval_landmarks.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    idx = mod.LEVEL_INDEX["T12"]

    def cut_t12(seed: int) -> bool:  # T12's centre in the image, the body not wholly in view
        spine, view, truth = mod.render_case("drr-a", seed, 0.0, False, "tight-lumbar")
        centre = view.to_px(spine.points_mm[idx])[:4].mean(axis=0)
        return "T12" not in truth["landmarks"]["vertebrae"] and 0 < centre[1] < view.pixels.shape[0]

    seed = next(s for s in range(9_000_000, 9_000_040) if cut_t12(s))
    spine, view, truth = mod.render_case("drr-a", seed, 0.0, False, "tight-lumbar")
    names = mod.POINT_NAMES
    true_pts = view.to_px(spine.points_mm[idx])
    lm = copy.deepcopy(truth["landmarks"])
    lm["vertebrae"]["T12"] = {n: [float(x), float(y)] for n, (x, y) in zip(names, true_pts, strict=False)}
    whole = mod.Tally()
    whole.add(spine, view, truth, lm, view.facing)  # its true (whole) shape: reported, not fractured
    assert whole.cut_reported == 1 and whole.cut_false_fractures == 0
    short = copy.deepcopy(lm)
    pts = short["vertebrae"]["T12"]
    wall = np.subtract(pts["posterior_inferior"], pts["posterior_superior"])  # downwards along the wall
    for n, share in (("anterior_superior", 0.45), ("middle_superior", 0.3)):  # the top guessed low: a wedge
        pts[n] = list(np.add(pts[n], share * wall))
    read = mod.Tally()
    read.add(spine, view, truth, short, view.facing)
    assert read.cut_reported == 1 and read.cut_false_fractures == 1
    assert read.report()["cut_bodies_false_fractures"] == 1 and read.report()["fracture_false_positive_rate"] == 0.0
    spine.grade[idx] = 2  # the same reading of a T12 that is truly fractured: no false fracture
    true = mod.Tally()
    true.add(spine, view, truth, short, view.facing)
    assert true.cut_reported == 1 and true.cut_false_fractures == 0


def test_eval_landmarks_weights_suffixes_and_framing_are_checked_before_any_work(tmp_path) -> None:
    """``PATH@plain@no-zoom-out`` sets both switches (``@no-placed-step``, ``@no-zoom-in``,
    ``@no-off-s1`` their own); a mistyped suffix names itself; a framing the 2-D renderer cannot
    draw is refused before weights are loaded or films rendered."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("eval_landmarks", ROOT / "scripts" / "eval_landmarks.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    det = mod._detector(f"{packaged()}@plain@no-zoom-out", False)
    assert det.consistency is False and det.zoom_out_look is False and det.placed_step_rule is True
    assert det.zoom_in_look is True
    det = mod._detector(f"{packaged()}@no-placed-step", False)
    assert det.consistency is True and det.zoom_out_look is True and det.placed_step_rule is False
    det = mod._detector(f"{packaged()}@no-zoom-in", False)
    assert det.zoom_in_look is False and det.zoom_out_look is True and det.placed_step_rule is True
    assert det.off_s1_rule is True
    det = mod._detector(f"{packaged()}@no-off-s1", False)
    assert det.off_s1_rule is False and det.zoom_in_look is True and det.placed_step_rule is True
    det = mod._detector(str(packaged()), False)
    assert det.consistency is True and det.zoom_out_look is True and det.placed_step_rule is True
    assert det.zoom_in_look is True
    with pytest.raises(SystemExit, match="@no-zoomout is not a suffix"):
        mod._detector(f"{packaged()}@no-zoomout", False)
    with pytest.raises(SystemExit):
        mod.main(["--framing", "tight-lumbar", "--families", "drr-a,2d", "--n", "1", "--weights", str(tmp_path / "none.pt")])


def test_train_landmarks_refuses_a_rescale_it_cannot_use() -> None:
    from sagittal.training import loop

    for argv in (["--stage", "refine", "--out", "x.pt", "--rescale", "0.5"],
                 ["--stage", "coarse", "--out", "x.pt", "--rescale", "1.5"]):
        with pytest.raises(SystemExit):
            loop.main(argv)


def test_eval_landmarks_counts_a_withheld_fracture_as_not_found() -> None:
    """``detection_rate_fractured``: of the fractured vertebrae in view, those reported at their
    level; a fracture the detector withheld (absent from the landmarks) is a missed one, which the
    sensitivity over graded bodies cannot see."""
    import copy
    import importlib.util

    spec = importlib.util.spec_from_file_location("eval_landmarks", ROOT / "scripts" / "eval_landmarks.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    spine, view, truth = mod.render_case("drr-a", 9_000_001, 1.0, False, "as-drawn")
    fractured = [lv for lv in truth["landmarks"]["vertebrae"] if spine.grade[mod.LEVEL_INDEX[lv]] > 0]
    assert fractured  # every spine is drawn fractured here
    whole = mod.Tally()
    whole.add(spine, view, truth, truth["landmarks"], view.facing)
    r = whole.report()
    assert r["vertebrae_in_view_fractured"] == len(fractured) and r["detection_rate_fractured"] == 1.0
    lm = copy.deepcopy(truth["landmarks"])
    del lm["vertebrae"][fractured[0]]  # withheld
    less = mod.Tally()
    less.add(spine, view, truth, lm, view.facing)
    assert less.report()["detection_rate_fractured"] == (len(fractured) - 1) / len(fractured)


def _eval_landmarks_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("eval_landmarks", ROOT / "scripts" / "eval_landmarks.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_eval_landmarks_draws_films_at_the_pixel_spacing_asked_for():
    """``--pixel-mm``: the same spine, style and field at the pixels asked for (real films are 0.1-0.2 mm);
    the truth follows the pixels (the same body, in millimetres, where it was)."""
    import numpy as np

    mod = _eval_landmarks_module()
    spine, view, truth = mod.render_case("drr-a", 10_770_003, 0.5, False, "as-drawn", (0.15, 0.15))
    spine0, view0, truth0 = mod.render_case("drr-a", 10_770_003, 0.5, False, "as-drawn")
    assert view.spacing_mm == (0.15, 0.15) and 0.3 <= view0.spacing_mm[0] <= 0.6
    np.testing.assert_allclose(spine.points_mm, spine0.points_mm)  # the same draws: the same spine
    assert view.pixels.shape[0] > 1.9 * view0.pixels.shape[0]  # the same field in finer pixels
    assert set(truth["landmarks"]["vertebrae"]) == set(truth0["landmarks"]["vertebrae"])
    lv = next(iter(truth["landmarks"]["vertebrae"]))
    a = np.array(truth["landmarks"]["vertebrae"][lv]["anterior_superior"]) * 0.15
    b = np.array(truth0["landmarks"]["vertebrae"][lv]["anterior_superior"]) * view0.spacing_mm[0]
    assert np.linalg.norm(a - b) < 1.0  # mm, from the field's corner in both


def test_eval_landmarks_refuses_a_pixel_range_it_cannot_draw_from(capsys):
    """A zero, negative or reversed ``--pixel-mm`` is refused, naming the option, before any weights load."""
    mod = _eval_landmarks_module()
    for argv in (["--pixel-mm", "0.6", "0.3"], ["--pixel-mm", "0", "0.2"], ["--pixel-mm", "-1", "0.2"]):
        with pytest.raises(SystemExit):
            mod.main(["--n", "1", "--weights", "/nonexistent.pt", *argv])
        assert "--pixel-mm " in capsys.readouterr().err
