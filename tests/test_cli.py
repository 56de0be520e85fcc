"""``sagittal phantom`` and the package surface."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pydicom
import pytest

from sagittal.cli import main


def test_phantom_writes_dicom_and_truth(tmp_path, capsys):
    assert main(["phantom", str(tmp_path), "--n", "2", "--modality", "cr", "--seed", "5", "--pixel-spacing", "1.0",
                 "--transfer-syntax", "rle", "--calibration", "none", "--facing", "left"]) == 0
    assert "wrote 2 CR case(s)" in capsys.readouterr().out
    truth = json.loads((tmp_path / "truth.json").read_text())
    assert truth["schema"] == "sagittal.phantom-truth/1" and len(truth["cases"]) == 2
    for case in truth["cases"]:
        (img,) = case["images"]
        ds = pydicom.dcmread(tmp_path / img["files"][0])
        assert ds.Modality == "CR" and "PixelSpacing" not in ds
        assert ds.pixel_array.shape == (img["image"]["rows"], img["image"]["columns"])
        assert img["image"]["spacing_source"] == "none" and img["image"]["anterior"] == "left"
        assert ds.PatientID == case["patient_id"]
        lm = img["landmarks"]
        assert set(lm) == {"vertebrae", "s1_endplate", "femoral_heads"}
        for pts in lm["vertebrae"].values():
            assert len(pts) == 6


def test_phantom_is_deterministic(tmp_path):
    for d in ("a", "b"):
        assert main(["phantom", str(tmp_path / d), "--seed", "3", "--pixel-spacing", "1.5"]) == 0
    a = pydicom.dcmread(next((tmp_path / "a").rglob("*.dcm")))
    b = pydicom.dcmread(next((tmp_path / "b").rglob("*.dcm")))
    np.testing.assert_array_equal(a.pixel_array, b.pixel_array)
    assert a.SOPInstanceUID == b.SOPInstanceUID
    assert (tmp_path / "a" / "truth.json").read_text() == (tmp_path / "b" / "truth.json").read_text()


@pytest.mark.parametrize("modality, n_files", [("ct", None), ("mr", 33)])
def test_phantom_volumes(tmp_path, modality, n_files):
    assert main(["phantom", str(tmp_path), "--modality", modality, "--transfer-syntax", "jpegls"]) == 0
    truth = json.loads((tmp_path / "truth.json").read_text())
    files = [f for img in truth["cases"][0]["images"] for f in img["files"]]
    assert len(list(tmp_path.rglob("*.dcm"))) == len(files)
    if n_files:
        assert len(files) == n_files
    assert all(img["image"]["spacing_source"] == "volume" for img in truth["cases"][0]["images"])


@pytest.mark.parametrize(
    "argv, message",
    [(["phantom", "OUT", "--modality", "dx", "--calibration", "none"], "DX image always carries ImagerPixelSpacing"),
     (["phantom", "OUT", "--n", "0"], "must be at least 1"),
     (["phantom", "OUT", "--modality", "us"], "invalid choice")],
)
def test_phantom_usage_errors(tmp_path, capsys, argv, message):
    argv = [a.replace("OUT", str(tmp_path / "o")) for a in argv]
    try:
        rc = main(argv)
    except SystemExit as exc:  # argparse usage errors
        rc = exc.code
    assert rc == 2
    assert message in capsys.readouterr().err


def test_only_working_subcommands_are_registered(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "phantom" in out
    for missing in ("dask-run",):
        assert missing not in out.split("positional arguments")[1].split("options")[0]


def test_import_does_not_load_torch():
    code = "import sys, sagittal, sagittal.phantom, sagittal.cli; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
