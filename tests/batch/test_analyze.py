"""``sagittal analyze`` end to end on small phantom files: contract-valid documents, overlays,
summary and error ledgers, MONOCHROME1 / facing left / uncalibrated handled as the contract
says, resumption and exit codes. Accuracy is the evaluation script's business, not this one's."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import jsonschema
import numpy as np
import pydicom
import pytest

from sagittal.api import Analyzer
from sagittal.cli import main
from sagittal.phantom import build_spine, render_ct, render_radiograph, sample_spec
from sagittal.phantom.dicom import StudyInfo, radiograph_dataset, volume_datasets, write_dataset
from sagittal.phantom.truth import radiograph_truth
from sagittal.report.analysis import load_schema


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    spine = build_spine(sample_spec(np.random.default_rng(77), n_fractures=1))
    info = StudyInfo.make("an/1", "PHAN")
    cases = {
        "mono1": dict(modality="DX", photometric="MONOCHROME1", facing="right", calibration="both"),
        "left": dict(modality="CR", photometric="MONOCHROME2", facing="left", calibration="PixelSpacing"),
        "uncal": dict(modality="CR", photometric="MONOCHROME2", facing="right", calibration="none"),
    }
    truths = {}
    for name, style in cases.items():
        rg = render_radiograph(spine, np.random.default_rng(len(name)), pixel_spacing_mm=0.8, **style)
        write_dataset(radiograph_dataset(rg, info, f"an/{name}"), root / name, "jpeg2000")
        truths[name] = radiograph_truth(spine, rg)["landmarks"]
    (root.parent / f"{root.name}_truth.json").write_text(json.dumps(truths))
    ds = pydicom.dcmread(root / "left")
    ds.SOPInstanceUID = pydicom.uid.generate_uid()
    ds.SeriesInstanceUID = pydicom.uid.generate_uid()
    ds.ViewPosition, ds.SeriesDescription, ds.ProtocolName = "AP", "L-SPINE AP", "L-SPINE AP"
    ds.save_as(root / "frontal")
    ct = render_ct(spine, np.random.default_rng(3), matrix=32, pixel_spacing_mm=10.0, slice_mm=40.0)
    for k, d in enumerate(volume_datasets(ct, info, "an/ct")):
        write_dataset(d, root / "ct" / f"{k}", "explicit")
    (root / "notes.txt").write_text("not DICOM")
    return root


@pytest.fixture(scope="module")
def run(export, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    assert main(["analyze", str(export), "-o", str(out), "--device", "cpu"]) == 0
    return out


def _docs(out: Path, modalities: tuple[str, ...] = ("DX", "CR")) -> dict[str, dict]:
    """The analysis documents under ``out`` of these modalities, by source file name."""
    docs = {}
    for p in out.rglob("*.json"):
        d = json.loads(p.read_text())
        if d.get("schema") == "sagittal.analysis/1" and d["source"]["modality"] in modalities:
            docs[Path(d["source"]["path"]).name] = d | {"_path": str(p)}
    return docs


def test_documents_are_contract_valid_with_overlays(run, export):
    docs = _docs(run)
    assert set(docs) == {"mono1", "left", "uncal"}
    ct = _docs(run, ("CT",))  # the CT series is one unit of work: one document
    assert len(ct) == 1 and len(_docs(run, ("DX", "CR", "CT", "MR"))) == 4
    assert len(next(iter(ct.values()))["source"]["sop_instance_uids"]) >= 1
    schema = load_schema()
    for d in [*docs.values(), *ct.values()]:
        jsonschema.validate({k: v for k, v in d.items() if k != "_path"}, schema)
        assert Path(d["_path"]).with_suffix(".png").is_file()
        assert d["source"]["patient_id"] == "PHAN" and d["source"]["modality"] in ("DX", "CR", "CT")
        assert d["status"] in ("ok", "partial", "rejected")
        if d["status"] == "rejected":
            assert d["warnings"]


def test_contract_cases(run):
    docs = _docs(run)
    assert docs["left"]["image"]["anterior"] == "left" and docs["left"]["image"]["spacing_source"] == "PixelSpacing"
    assert docs["mono1"]["image"]["spacing_source"] == "PixelSpacing"
    u = docs["uncal"]
    assert u["image"]["spacing_source"] == "none" and u["image"]["pixel_spacing_mm"] is None
    assert u["parameters"]["sagittal_vertical_axis_mm"] is None
    assert all(v["heights_mm"] is None for v in u["vertebrae"])
    assert any("spacing" in w for w in u["warnings"])


def test_ledgers(run, export):
    with open(run / "errors.csv", newline="") as fh:
        errors = {Path(r["path"]).name: r for r in csv.DictReader(fh)}
    assert errors["notes.txt"]["stage"] == "read"
    assert "not a lateral view" in errors["frontal"]["reason"]
    assert not [k for k in errors if k.isdigit()]  # the CT files went into the CT series' document
    assert set(errors) == {"notes.txt", "frontal"}
    with open(run / "summary.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 4 and {r["status"] for r in rows} <= {"ok", "partial", "rejected"}
    assert sorted(r["modality"] for r in rows) == ["CR", "CR", "CT", "DX"]
    assert all(r["patient"].startswith("patient-") for r in rows)  # no identifier in the table


def test_rerun_resumes(run, export, capsys):
    capsys.readouterr()
    assert main(["analyze", str(export), "-o", str(run), "--device", "cpu"]) == 0
    assert "analysed 0 image(s) (4 already done)" in capsys.readouterr().out


def test_exit_codes(tmp_path, capsys):
    assert main(["analyze", str(tmp_path / "nothing"), "-o", str(tmp_path / "o")]) == 2
    assert "no files found" in capsys.readouterr().err
    import torch

    if not torch.cuda.is_available():
        (tmp_path / "x.txt").write_text("x")
        assert main(["analyze", str(tmp_path / "x.txt"), "-o", str(tmp_path / "o2"), "--device", "cuda"]) == 2
        assert "no CUDA device" in capsys.readouterr().err


def test_unusable_weights_stop_the_run(export, tmp_path, capsys):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    assert main(["analyze", str(export / "left"), "-o", str(tmp_path / "o"), "--device", "cpu", "--weights", str(bad)]) != 0
    assert "bad.pt" in capsys.readouterr().err
    assert main(["analyze", str(export / "left"), "-o", str(tmp_path / "o"), "--weights", str(tmp_path / "none.pt")]) == 2
    assert "weights not found" in capsys.readouterr().err


def test_workers_give_the_same_documents(run, export, tmp_path):
    out = tmp_path / "w2"
    assert main(["analyze", str(export), "-o", str(out), "--device", "cpu", "--workers", "2"]) == 0
    one, two = _docs(run), _docs(out)
    assert set(one) == set(two)
    for name in one:
        a, b = one[name]["landmarks"], two[name]["landmarks"]
        assert a.keys() == b.keys() and list(a["vertebrae"]) == list(b["vertebrae"])
        for lv in a["vertebrae"]:
            np.testing.assert_allclose(a["vertebrae"][lv]["anterior_superior"], b["vertebrae"][lv]["anterior_superior"],
                                       atol=0.05)


def test_landmarks_land_on_the_bodies(run, export):
    """Not an accuracy figure (that is scripts/eval_landmarks.py): a MONOCHROME1 image, a patient
    facing left and an uncalibrated image all get their bodies found where they are."""
    truths = json.loads((export.parent / f"{export.name}_truth.json").read_text())
    corners = ("anterior_superior", "posterior_superior", "posterior_inferior", "anterior_inferior")
    for name, d in _docs(run).items():
        found, truth = d["landmarks"]["vertebrae"], truths[name]["vertebrae"]
        assert len(found) >= 0.7 * len(truth), name
        for lv, pts in found.items():
            assert lv in truth, (name, lv)
            c = np.mean([pts[k] for k in corners], axis=0)
            t = np.mean([truth[lv][k] for k in corners], axis=0)
            assert np.linalg.norm(c - t) < 4.0, (name, lv)  # pixels of 0.8 mm


def test_a_failure_inside_a_batch_is_one_files_failure(export, tmp_path, monkeypatch):
    """The model fails on the batch: the batch is redone one image at a time, and only the image
    it fails on is set aside, with the reason; the others' documents are written."""
    from sagittal.batch.units import Failure, plan_units
    from sagittal.landmarks import infer

    class Flaky:
        calls = 0
        device = "cpu"
        last_timings: dict = {}

        def __init__(self, *args, **kwargs):
            pass

        def detect(self, images, facing=None, batch_size=8):
            Flaky.calls += 1
            if len(images) > 1 or Flaky.calls == 3:
                raise RuntimeError("model exploded")
            return [({"vertebrae": {}, "s1_endplate": None, "femoral_heads": []}, None, [])]

    monkeypatch.setattr(infer, "LandmarkDetector", Flaky)
    units = [u for u in plan_units([export])[0] if u.kind == "radiograph"]
    results = Analyzer(device="cpu").analyze_many(units)
    assert len(results) == len(units) == 3
    failed = [r for r in results if isinstance(r, Failure)]
    assert len(failed) == 1 and "model exploded" in failed[0].reason and failed[0].stage == "analyse"
    assert failed[0].files == units[results.index(failed[0])].files
    docs = [r for r in results if not isinstance(r, Failure)]
    assert len(docs) == 2 and all(d.status == "rejected" for d in docs)
    Flaky.calls = 0
    out = tmp_path / "out"
    # the radiographs alone, so that the same model calls fail (the export's CT would call the
    # plane model, also replaced by Flaky, and shift the count), in one chunk as analyze_many had them
    assert main(["analyze", *[f for u in units for f in u.files], "-o", str(out), "--device", "cpu",
                 "--batch-size", "4"]) == 0
    for unit, result in zip(units, results, strict=True):
        assert (out / unit.relpath()).is_file() == (not isinstance(result, Failure))
    with open(out / "errors.csv", newline="") as fh:
        radiographs = {p for u in units for p in u.files}
        rows = [r for r in csv.DictReader(fh) if r["stage"] == "analyse" and r["path"] in radiographs]
    assert [r["path"] for r in rows] == list(failed[0].files) and "model exploded" in rows[0]["reason"]


@pytest.mark.slow
def test_unusable_weights_stop_a_parallel_run(export, tmp_path, capsys):
    """With worker processes the driver does not load the model: the workers' first answer stops the run."""
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    out = tmp_path / "o"
    assert main(["analyze", str(export), "-o", str(out), "--device", "cpu", "--workers", "2", "--batch-size", "1",
                 "--weights", str(bad)]) == 2
    assert "bad.pt" in capsys.readouterr().err
    assert not list(out.rglob("*.json"))


def test_executor_options_are_checked(export, tmp_path, capsys):
    out = str(tmp_path / "o")
    assert main(["analyze", str(export), "-o", out, "--workers", "2", "--dask", "local"]) == 2
    assert "cannot be combined" in capsys.readouterr().err
    for bad in ("bogus", "local:0", "local:x"):
        assert main(["analyze", str(export), "-o", out, "--device", "cpu", "--dask", bad]) == 2
        assert f"--dask {bad}: expected" in capsys.readouterr().err
    assert main(["analyze", str(export), "-o", out, "--device", "cpu", "--mixed-precision"]) == 2
    assert "mixed precision runs on CUDA only" in capsys.readouterr().err
    assert not list((tmp_path / "o").rglob("*.json"))


@pytest.mark.slow
def test_a_key_file_keys_the_pseudonyms(export, run, tmp_path):
    """--key: folders and summary.csv carry the keyed pseudonym (as sagittal cohort --key), never the unkeyed one."""
    from sagittal.cohort.pseudonym import load_or_create_key
    from sagittal.io.series import pseudonym

    key = tmp_path / "secret.key"
    out = tmp_path / "keyed"
    assert main(["analyze", str(export), "-o", str(out), "--device", "cpu", "--key", str(key)]) == 0
    keyed, plain = pseudonym("PHAN", load_or_create_key(key)), pseudonym("PHAN")
    assert keyed != plain and (out / keyed).is_dir() and not (out / plain).exists() and (run / plain).is_dir()
    with open(out / "summary.csv", newline="") as fh:
        assert {r["patient"] for r in csv.DictReader(fh)} == {keyed}
    assert _docs(out).keys() == _docs(run).keys()


def test_a_failing_extra_output_costs_only_itself(export, tmp_path):
    """An extra output (``register_output``, e.g. the SR) that raises: the analysis document is
    written with a warning, and errors.csv names the output's failure."""
    from sagittal.batch import units as u
    from sagittal.batch.analyze import run_analyze

    def boom(analysis, unit):
        raise RuntimeError("cannot build it")

    u.register_output("boom", boom)
    out = tmp_path / "o"
    run_analyze([export / "left"], out, device="cpu", outputs=("boom",), progress=False)
    (doc,) = _docs(out).values()
    assert any("boom output was not written" in w and "cannot build it" in w for w in doc["warnings"])
    with open(out / "errors.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [(Path(r["path"]).name, r["stage"]) for r in rows] == [("left", "boom")]
