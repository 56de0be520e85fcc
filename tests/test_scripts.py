"""The training and evaluation scripts run: a few iterations of each training stage write a
weights file that the detector loads, and the evaluation reports every figure the model card
quotes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

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

    models = load_models(out)
    assert set(models) == {"coarse", "refine"}
    import torch

    meta = torch.load(out, weights_only=True)["refine"]["meta"]
    assert meta["iterations"] >= 1 and "0..1" in meta["train_seeds"]


@pytest.mark.slow
def test_evaluation_reports_the_model_card_figures(tmp_path):
    report = tmp_path / "eval.json"
    _run("scripts/eval_landmarks.py", "--n", "2", "--json", str(report))
    r = json.loads(report.read_text())
    for key in ("landmark_error_mm", "detection_rate", "detection_rate_per_level", "parameter_mae",
                "genant_exact_fractured", "genant_zero_normal", "fracture_sensitivity",
                "fracture_false_positive_rate", "analysed_fraction"):
        assert key in r
    assert set(r["parameter_mae"]) >= {"pelvic_incidence_deg", "pelvic_tilt_deg", "sacral_slope_deg",
                                       "lumbar_lordosis_deg", "regional_kyphosis_deg"}
    assert 0 <= r["analysed_fraction"] <= 1 and r["images"] == 2
