"""Every real DICOM file the tests hold (tests/data/__init__.py) is accounted for: it loads with the right shape,
spacing and calibration source, or it is set aside with a stage and a reason."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from sagittal.errors import SagittalError
from sagittal.io import discover, load_radiographs, load_volume, scan_export
from sagittal.io.decode import decode
from tests.data import PYDICOM_TEST_FILES, REAL_DICOM_ROOTS, real_dicom_files, relative_name

ALL_FILES = real_dicom_files()


@pytest.fixture(scope="module")
def export():
    return scan_export(list(REAL_DICOM_ROOTS))


def test_every_file_appears_exactly_once(export):
    in_series = [f for s in export.series for f in s.files]
    aside = [a.path for a in export.set_aside]
    listed = [os.path.realpath(p) for p in in_series + aside]
    assert len(listed) == len(set(listed)), "a file is listed twice"
    assert set(listed) == {os.path.realpath(p) for p in ALL_FILES}
    for a in export.set_aside:
        assert a.stage in ("discover", "read", "classify", "decode", "calibrate", "group") and a.reason


@pytest.mark.parametrize("path", ALL_FILES, ids=relative_name)
def test_each_file_alone(path):
    """Scanned on its own, each file is analysable (with shape and calibration) or set aside."""
    e = scan_export([path])
    files = [f for s in e.series for f in s.files] + [a.path for a in e.set_aside]
    if Path(path).name.upper().startswith("DICOMDIR"):
        assert path in files  # a DICOMDIR brings the files it references with it
        return
    assert files == [path]
    for s in e.series:
        assert s.calibration is not None and s.calibration.source in ("PixelSpacing", "ImagerPixelSpacing/ERMF",
                                                                        "ImagerPixelSpacing", "volume", "none")
        assert s.decoders and s.headers[0].rows > 0
        if s.kind == "radiograph":
            (img,) = load_radiographs(s)
            assert img.pixels.shape == (s.headers[0].rows, s.headers[0].columns)
            assert np.isfinite(img.pixels).all()
    for a in e.set_aside:
        assert a.reason


def _series_of(export, name):
    hits = [s for s in export.series if any(name in f for f in s.files)]
    assert len(hits) == 1, f"{name}: {len(hits)} series"
    return hits[0]


def test_totalsegmentator_ct_is_one_series_spaced_2mm(export):
    s = _series_of(export, "totalsegmentator-ct")
    assert len(s.files) == 20 and s.kind == "volume" and s.orientation == "axial"
    assert s.headers[0].slice_thickness == pytest.approx(3.0)
    assert s.calibration.slice_spacing_mm == pytest.approx(2.0, abs=1e-3)
    assert s.study_uid is None and s.series_uid is None
    assert any("without StudyInstanceUID" in w for w in export.warnings)
    vol = load_volume(s)
    assert vol.voxels.shape == (20, 512, 512)
    assert -1100 < vol.voxels.min() < -900 and vol.voxels.max() > 500  # Hounsfield units
    z = vol.geometry.positions[:, 2]
    assert np.all(np.diff(z) > 0)  # sorted along the normal, not by InstanceNumber (starts at 267)
    plane = vol.sagittal(slab_mm=4.0)
    assert plane.image.shape[0] == pytest.approx(20 * 2.0 / plane.calibration.pixel_spacing_mm[0], abs=2)
    assert plane.calibration.source == "volume" and plane.calibration.anterior == "left"


def test_zero_spacing_gives_calibration_none(export):
    s = _series_of(export, "RG1_J2KI")
    assert s.calibration.source == "none" and s.calibration.pixel_spacing_mm is None
    assert any("0" in w and "PixelSpacing" in w for w in s.calibration.warnings)


def test_enhanced_ct_spacing_from_functional_groups(export):
    s = _series_of(export, "eCT_Supplemental")
    assert s.headers[0].pixel_spacing is None  # not in the top-level header
    assert s.calibration.pixel_spacing_mm == pytest.approx((0.388672, 0.388672))
    assert s.calibration.source == "volume" and s.calibration.slice_spacing_mm == pytest.approx(10.0)
    vol = load_volume(s)
    assert vol.voxels.shape == (2, 512, 512)


def test_lateral_cervical_cr(export):
    s = _series_of(export, "77654033/CR1")
    assert s.kind == "radiograph" and s.view == "lateral"
    assert s.calibration.source == "ImagerPixelSpacing" and s.calibration.pixel_spacing_mm == (0.1, 0.1)
    assert any("uncorrected for magnification" in w for w in s.calibration.warnings)
    assert any("contradicts" in w for w in s.warnings)  # PatientOrientation L\\F
    assert s.calibration.anterior is None
    for other in ("77654033/CR2", "77654033/CR3"):
        assert _series_of(export, other).view == "oblique"


@pytest.mark.parametrize("name", ["highdicom-test-files/dx_image.dcm", "pydicom-data/RG1_J2KI.dcm",
                                  "pydicom-data/RG3_J2KR.dcm", "dicomdirtests/77654033/CR1/6154"])
def test_monochrome1_comes_out_bone_bright(name):
    import pydicom

    path = next(p for p in ALL_FILES if p.endswith(name))
    stored = pydicom.dcmread(path).pixel_array.astype(np.float64)
    d = decode(path, radiograph=True)
    assert d.photometric == "MONOCHROME1" and "bone-bright" in " ".join(d.notes)
    out = d.pixels[0].astype(np.float64)
    # an exact inversion: decoded values fall as stored values rise
    assert np.corrcoef(stored.ravel(), out.ravel())[0, 1] == pytest.approx(-1.0, abs=1e-6)


def test_dicomdir_is_followed():
    dicomdir = PYDICOM_TEST_FILES / "dicomdirtests" / "DICOMDIR"
    headers, aside = discover([dicomdir])
    found = {Path(h.path).parent.name for h in headers}
    assert {"CR1", "CT2", "MR1"} <= found
    assert any(a.path == str(dicomdir) and "DICOMDIR" in a.reason for a in aside)


def test_decoder_fallback_is_recorded():
    path = next(p for p in ALL_FILES if p.endswith("JPEG-lossy.dcm"))
    d = decode(path)
    assert d.decoder in ("pydicom", "simpleitk")
    if d.decoder == "simpleitk":
        assert "SimpleITK/GDCM did" in " ".join(d.notes)


@pytest.mark.parametrize("name", ["MR_truncated.dcm", "emri_small_jpeg_2k_lossless_too_short.dcm"])
def test_truncated_pixel_data_is_a_typed_error(name):
    path = next(p for p in ALL_FILES if p.endswith(name))
    with pytest.raises(SagittalError) as info:
        decode(path)
    assert name in str(info.value)
    assert isinstance(info.value, OSError)


def test_signedness_trap_gives_plausible_hu():
    path = next(p for p in ALL_FILES if p.endswith("J2K_pixelrep_mismatch.dcm"))
    d = decode(path)
    assert d.pixels.min() >= -3000 and d.pixels.max() <= 4000
    assert (d.pixels < -500).mean() > 0.1  # air around the patient stays air


def test_inspect_json_covers_every_file(capsys):
    import json

    from sagittal.cli import main

    sub = PYDICOM_TEST_FILES / "dicomdirtests"
    assert main(["inspect", str(sub), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    listed = [f for s in doc["series"] for f in s["files"]] + [a["path"] for a in doc["set_aside"]]
    assert sorted(map(os.path.realpath, listed)) == sorted(os.path.realpath(p) for p in sub.rglob("*") if p.is_file())
    text = json.dumps(doc)
    import pydicom

    for p in sub.rglob("*"):
        if p.is_file():
            try:
                name = str(pydicom.dcmread(p, stop_before_pixels=True, force=True).get("PatientName", "") or "")
            except Exception:
                continue
            if len(name) > 3:
                assert name not in text, "a patient name leaked into inspect's output"
