"""The Python API: ``sagittal.analyze`` / ``Analyzer`` / ``Analysis`` on every kind of source,
the same documents as ``sagittal analyze``, clear errors naming the input, the model loaded
once and batched, and the README's example run as written."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
from pathlib import Path

import jsonschema
import numpy as np
import pydicom
import pytest

import sagittal
from sagittal.batch.units import Failure, plan_units
from sagittal.cli import main
from sagittal.errors import DicomReadError, InputError, SagittalError
from sagittal.io.decode import decode
from sagittal.landmarks import infer
from sagittal.phantom import build_spine, render_radiograph, sample_spec
from sagittal.phantom.dicom import StudyInfo, radiograph_dataset, write_dataset
from sagittal.report.analysis import load_schema

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("api")
    spine = build_spine(sample_spec(np.random.default_rng(21), n_fractures=1))
    info = StudyInfo.make("api/1", "APIPAT")
    out = {}
    for name, style in {"a": dict(facing="right"), "b": dict(facing="left"), "c": dict(facing="right")}.items():
        rg = render_radiograph(spine, np.random.default_rng(len(out)), pixel_spacing_mm=0.8, modality="CR",
                               calibration="PixelSpacing", field_of_view="lumbar", **style)
        path = root / "export" / name
        write_dataset(radiograph_dataset(rg, info, f"api/{name}"), path, "jpeg2000")
        out[name] = path
    (root / "export" / "notes.txt").write_text("not DICOM")
    return out


@pytest.fixture(scope="module")
def analyzer() -> sagittal.Analyzer:
    return sagittal.Analyzer(device="cpu")


def test_import_does_not_load_torch():
    code = "import sys, sagittal; sagittal.Analysis; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_a_file_gives_a_frozen_contract_valid_analysis(files, analyzer):
    result = analyzer.analyze(files["a"])
    assert isinstance(result, sagittal.Analysis) and result.status in ("ok", "partial")
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.status = "ok"  # type: ignore[misc]
    doc = result.to_json()
    jsonschema.validate(doc, load_schema())
    assert doc["source"]["path"] == str(files["a"]) and doc["image"]["spacing_source"] == "PixelSpacing"
    assert "pixels" not in json.dumps(doc) and set(doc) == {"schema", "status", "source", "image", "landmarks",
                                                            "parameters", "vertebrae", "warnings", "software"}
    from sagittal.landmarks.weights import sha256_file

    assert doc["software"] == {"sagittal": sagittal.__version__, "model": Path(infer.DEFAULT_WEIGHTS).name,
                               "model_sha256": sha256_file(infer.DEFAULT_WEIGHTS)}
    doc["status"] = "changed"  # a copy: the Analysis is untouched
    assert result.to_json()["status"] == result.status
    picture = result.overlay()
    assert picture.dtype == np.uint8 and picture.ndim == 3 and picture.shape[2] == 3
    assert picture.shape[0] == min(result.image["rows"], 1400)


@pytest.mark.slow
def test_the_cli_writes_what_the_api_returns(files, analyzer, tmp_path):
    export = files["a"].parent
    assert main(["analyze", str(export), "-o", str(tmp_path), "--device", "cpu"]) == 0
    written = {json.loads(p.read_text())["source"]["path"]: json.loads(p.read_text()) for p in tmp_path.rglob("*.json")
               if json.loads(p.read_text()).get("schema") == "sagittal.analysis/1"}
    assert set(written) == {str(p) for p in files.values()}
    for path in files.values():
        assert analyzer.analyze(path).to_json() == written[str(path)]


@pytest.mark.slow
def test_a_dataset_and_a_folder_of_one(files, analyzer, tmp_path):
    by_path = analyzer.analyze(files["b"]).to_json()
    ds = pydicom.dcmread(files["b"])
    assert analyzer.analyze(ds).to_json() == by_path
    assert "PixelData" in ds  # the caller's dataset is left whole
    one = tmp_path / "one"
    one.mkdir()
    (one / "image").write_bytes(files["b"].read_bytes())
    doc = sagittal.analyze(one, device="cpu").to_json()
    assert doc["landmarks"] == by_path["landmarks"] and doc["parameters"] == by_path["parameters"]


def test_an_array_with_and_without_spacing(files, analyzer):
    from_file = analyzer.analyze(files["c"])
    image = decode(str(files["c"]), radiograph=True).pixels[0]
    with_spacing = analyzer.analyze(image, pixel_spacing_mm=0.8)
    assert with_spacing.source is None and with_spacing.image["spacing_source"] == "supplied"
    assert with_spacing.image["pixel_spacing_mm"] == [0.8, 0.8]
    assert with_spacing.landmarks == from_file.landmarks
    assert with_spacing.parameters == from_file.parameters
    bare = analyzer.analyze(image)
    assert bare.image["pixel_spacing_mm"] is None and bare.image["spacing_source"] == "none"
    assert bare.parameters["sagittal_vertical_axis_mm"] is None
    assert all(v["heights_mm"] is None for v in bare.vertebrae)
    assert any("spacing" in w for w in bare.warnings)
    jsonschema.validate(bare.to_json(), load_schema())


def test_bad_input_names_the_input_and_the_reason(files, analyzer, tmp_path):
    with pytest.raises(InputError, match="nothing-here: no such file"):
        analyzer.analyze(tmp_path / "nothing-here")
    notes = files["a"].parent / "notes.txt"
    with pytest.raises(DicomReadError, match=re.escape(str(notes)) + ".*not a DICOM file"):
        analyzer.analyze(notes)
    with pytest.raises(InputError, match="holds 3 units of work"):
        analyzer.analyze(files["a"].parent)
    with pytest.raises(InputError, match="2-D"):
        analyzer.analyze(np.zeros((4, 5, 6)))
    with pytest.raises(InputError, match="pixel_spacing_mm"):
        analyzer.analyze(np.zeros((64, 32)), pixel_spacing_mm=[0.0, 1.0])
    with pytest.raises(InputError, match="cannot analyse a dict"):
        analyzer.analyze({"image": 1})
    ds = pydicom.dcmread(files["a"])
    ds.ViewPosition, ds.SeriesDescription = "AP", "L-SPINE AP"
    with pytest.raises(InputError, match="not a lateral view"):
        analyzer.analyze(ds)
    assert issubclass(InputError, SagittalError) and issubclass(DicomReadError, OSError)


def test_analyze_many_batches_one_loaded_model(files, monkeypatch):
    calls = []
    real = infer.LandmarkDetector.detect

    def counting(self, images, *args, **kwargs):
        calls.append(len(images))
        return real(self, images, *args, **kwargs)

    monkeypatch.setattr(infer.LandmarkDetector, "detect", counting)
    an = sagittal.Analyzer(device="cpu", batch_size=4)
    units, set_aside, _ = plan_units([files["a"].parent])
    assert len(units) == 3 and [a.path for a in set_aside] == [str(files["a"].parent / "notes.txt")]
    detector = an.detector
    results = an.analyze_many([*units, files["a"].parent / "notes.txt"])
    assert calls == [3]  # the three images in one batch, through one model
    assert an.detector is detector
    assert all(isinstance(r, sagittal.Analysis) for r in results[:3])
    bad = results[3]
    assert isinstance(bad, Failure) and bad.files == (str(files["a"].parent / "notes.txt"),) and "not a DICOM" in bad.reason
    assert set(an.timings) >= {"decode", "coarse", "refine", "geometry"}


def _readme_example() -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("## Python API", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.mark.slow
def test_the_readme_example_runs():
    code = _readme_example()
    assert len([line for line in code.splitlines() if line.strip()]) <= 6  # a five-line example (and its import)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[0] in ("ok", "partial")
