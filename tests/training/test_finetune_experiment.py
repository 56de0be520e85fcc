"""``scripts/finetune_experiment.py``'s one table: each row's verdict can fail, and the goal is
met only when every row holds."""

from __future__ import annotations

import copy
from typing import Any

from .fixtures import script


def _script() -> Any:
    return script("finetune_experiment")


def _eval_2d(lm_mm: float, sens: float, wrong: int) -> dict:
    return {"vertebrae_in_view": 400, "detection_rate": 0.93, "wrong_levels": wrong, "fractured_vertebrae_graded": 40,
            "normal_vertebrae_graded": 300, "landmark_error_mm": {"median": lm_mm},
            "parameter_mae": {"lumbar_lordosis_deg": 0.5, "sacral_slope_deg": 0.4, "pelvic_incidence_deg": 0.6,
                              "thoracic_kyphosis_deg": None},
            "fracture_sensitivity": sens, "fracture_false_positive_rate": 0.0}


def _report() -> dict:
    doc = {"status": "ok", "n_vertebrae": 17, "parameters": {"pelvic_incidence_deg": 50.0, "sagittal_vertical_axis_mm": 20.0,
                                                            "thoracic_kyphosis_deg": None, "roussouly_type": 3}}
    before = {"detection_rate": 0.41, "point_error_mm_median": 0.57, "lumbar_lordosis_deg_mae": 1.8}
    after = {"detection_rate": 0.60, "point_error_mm_median": 0.40, "lumbar_lordosis_deg_mae": 0.9}
    return {"label": "t", "argv": [], "family": "drr-b", "n_held_out": 50, "check_n": 30,
            "record": {"held_out_before": before, "held_out_after": after, "stages": {}},
            "eval_2d": {"shipped": _eval_2d(0.17, 0.75, 0), "finetuned": _eval_2d(0.175, 0.75, 0)},
            "sample_dicom": {"shipped": {"a.json": doc}, "finetuned": {"a.json": copy.deepcopy(doc)}}}


def test_goal_met_only_when_every_row_holds() -> None:
    table = _script().table
    text, met = table(_report())
    assert met and "goal met: YES" in text and "**no**" not in text
    for spoil in (
        lambda r: r["record"]["held_out_after"].update(detection_rate=0.40),  # (a) no gain
        lambda r: r["eval_2d"]["finetuned"]["landmark_error_mm"].update(median=0.30),  # (b) less precise
        lambda r: r["eval_2d"]["finetuned"].update(fracture_sensitivity=0.70),  # (b) two fractures missed
        lambda r: r["eval_2d"]["finetuned"].update(wrong_levels=1),
        lambda r: r["sample_dicom"]["finetuned"]["a.json"]["parameters"].update(pelvic_incidence_deg=52.5),  # (c)
        lambda r: r["sample_dicom"]["finetuned"]["a.json"]["parameters"].update(thoracic_kyphosis_deg=30.0),
        lambda r: r["sample_dicom"]["finetuned"]["a.json"].update(n_vertebrae=16),
        lambda r: r["sample_dicom"]["finetuned"]["a.json"]["parameters"].update(roussouly_type=4),
        lambda r: r["sample_dicom"]["finetuned"].clear(),
    ):
        rep = _report()
        spoil(rep)
        text, met = table(rep)
        assert not met and "goal met: NO" in text and "**no**" in text
    rep = _report()
    rep["sample_dicom"]["finetuned"]["a.json"]["parameters"].update(pelvic_incidence_deg=51.5, sagittal_vertical_axis_mm=23.0)
    assert table(rep)[1]  # within 2 degrees and 4 mm
