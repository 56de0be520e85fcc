"""A model failure on a chunk that holds a single image (the last image of a batch) is that
image's failure: it goes to errors.csv and the run goes on (issue 10's crash: the whole
``analyze`` run used to stop, losing the rest of the batch)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from sagittal.cli import main
from sagittal.io.series import scan_export
from sagittal.landmarks import infer
from sagittal.phantom import build_spine, render_radiograph, sample_spec
from sagittal.phantom.dicom import StudyInfo, radiograph_dataset, write_dataset


def _five_radiographs(folder, seed, key, patient):
    """Five lumbar CRs of one spine, each of its own size (so each is its own model input)."""
    spine = build_spine(sample_spec(np.random.default_rng(seed)))
    info = StudyInfo.make(f"{key}/1", patient)
    for k, spacing in enumerate((1.0, 1.05, 1.1, 1.15, 1.2)):
        rg = render_radiograph(spine, np.random.default_rng(k), pixel_spacing_mm=spacing, field_of_view="lumbar",
                               modality="CR")
        write_dataset(radiograph_dataset(rg, info, f"{key}/{k}"), folder / f"im{k}", "explicit")


@pytest.mark.slow
def test_model_failure_on_a_lone_image_does_not_stop_the_run(tmp_path, monkeypatch):
    # five radiographs, each of its own size: with four images per model batch the last one
    # planned sits alone in its chunk
    _five_radiographs(tmp_path / "in", 11, "crash", "CRASH")
    last = scan_export([tmp_path / "in"], decode_pixels=False).series[-1].headers[-1]
    bad_shape = (last.rows, last.columns)

    real_detect = infer.LandmarkDetector.detect

    def detect(self, images, *args, **kwargs):
        if any(img.shape == bad_shape for img in images):
            raise RuntimeError("model exploded")
        return real_detect(self, images, *args, **kwargs)

    monkeypatch.setattr(infer.LandmarkDetector, "detect", detect)
    out = tmp_path / "out"
    assert main(["analyze", str(tmp_path / "in"), "-o", str(out), "--device", "cpu"]) == 0
    with open(out / "errors.csv", newline="") as fh:
        errors = list(csv.DictReader(fh))
    assert [(r["path"], r["stage"]) for r in errors] == [(last.path, "analyse")]
    assert "model exploded" in errors[0]["reason"]
    docs = [json.loads(p.read_text()) for p in out.rglob("*.json")]
    analysed = sorted(d["source"]["path"] for d in docs if d.get("schema") == "sagittal.analysis/1")
    assert len(analysed) == 4 and last.path not in analysed
    with open(out / "summary.csv", newline="") as fh:
        assert len(list(csv.DictReader(fh))) == 4


KILLER = '''
import os, signal

def _install():
    bad = tuple(int(x) for x in os.environ["SAGITTAL_TEST_KILL_SHAPE"].split(","))
    from sagittal.landmarks import infer
    real = infer.LandmarkDetector.detect

    def detect(self, images, *args, **kwargs):
        if any(tuple(img.shape) == bad for img in images):
            os.kill(os.getpid(), signal.SIGKILL)  # as the kernel's OOM killer or a crashing decoder would
        return real(self, images, *args, **kwargs)

    infer.LandmarkDetector.detect = detect

_install()
'''


@pytest.mark.slow
def test_a_unit_that_kills_its_worker_process_costs_only_itself(tmp_path, monkeypatch):
    """--workers: the worker process analysing one image dies (SIGKILL) every time; the pool is
    restarted, the rest of the batch is analysed and that image alone is recorded as failed."""
    _five_radiographs(tmp_path / "in", 12, "kill", "KILL")
    victim = scan_export([tmp_path / "in"], decode_pixels=False).series[1].headers[0]
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(KILLER)  # loaded by every spawned worker process
    monkeypatch.setenv("PYTHONPATH", str(tmp_path / "site"))
    monkeypatch.setenv("SAGITTAL_TEST_KILL_SHAPE", f"{victim.rows},{victim.columns}")
    out = tmp_path / "out"
    assert main(["analyze", str(tmp_path / "in"), "-o", str(out), "--device", "cpu", "--workers", "2",
                 "--batch-size", "2"]) == 0
    with open(out / "errors.csv", newline="") as fh:
        errors = list(csv.DictReader(fh))
    assert [(r["path"], r["stage"]) for r in errors] == [(victim.path, "analyse")], errors
    assert "died while analysing it alone" in errors[0]["reason"]
    docs = [json.loads(p.read_text()) for p in out.rglob("*.json")]
    analysed = sorted(d["source"]["path"] for d in docs if d.get("schema") == "sagittal.analysis/1")
    assert len(analysed) == 4 and victim.path not in analysed
