"""Written DICOM: valid IODs (dciodvfy), every transfer syntax decodes to the same pixels
through pydicom and SimpleITK, and the calibration tags say what the truth says."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from sagittal.phantom.anatomy import build_spine, sample_spec
from sagittal.phantom.dicom import TRANSFER_SYNTAXES, StudyInfo, radiograph_dataset, volume_datasets, write_dataset
from sagittal.phantom.radiograph import render_radiograph
from sagittal.phantom.volume import render_ct, render_mr

SYNTAXES = list(TRANSFER_SYNTAXES)


@pytest.fixture(scope="module")
def spine():
    return build_spine(sample_spec(np.random.default_rng(21), n_fractures=1))


@pytest.fixture(scope="module")
def info():
    return StudyInfo.make("test/1", "PHTEST")


@pytest.fixture(scope="module")
def written(tmp_path_factory, spine, info):
    """One small file of each modality in each transfer syntax, with the arrays written."""
    out = tmp_path_factory.mktemp("dicom")
    files = {}
    rgs = {
        ("DX", "MONOCHROME1"): render_radiograph(spine, np.random.default_rng(1), modality="DX", photometric="MONOCHROME1",
                                                 calibration="both", pixel_spacing_mm=1.0),
        ("CR", "MONOCHROME2"): render_radiograph(spine, np.random.default_rng(2), modality="CR", photometric="MONOCHROME2",
                                                 calibration="none", pixel_spacing_mm=1.0),
    }
    ct = render_ct(spine, np.random.default_rng(3), matrix=48, pixel_spacing_mm=6.0, slice_mm=30.0)
    mr = render_mr(spine, np.random.default_rng(4), "STIR", matrix=48, pixel_spacing_mm=6.0, n_slices=3)
    for ts in SYNTAXES:
        for (mod, _), rg in rgs.items():
            p = write_dataset(radiograph_dataset(rg, info, f"{mod}{ts}"), out / f"{mod}_{ts}.dcm", ts)
            files[(mod, ts)] = (p, rg.pixels)
        for vol in (ct, mr):
            paths = []
            for k, ds in enumerate(volume_datasets(vol, info, f"{vol.modality}{ts}")):
                paths.append(write_dataset(ds, out / f"{vol.modality}_{ts}" / f"{k:03d}.dcm", ts))
            files[(vol.modality, ts)] = (paths, vol)
    return files


@pytest.mark.parametrize("ts", SYNTAXES)
@pytest.mark.parametrize("mod", ["DX", "CR"])
def test_radiograph_round_trip_pydicom_and_simpleitk(written, mod, ts):
    path, pixels = written[(mod, ts)]
    ds = pydicom.dcmread(path)
    assert ds.file_meta.TransferSyntaxUID == TRANSFER_SYNTAXES[ts]
    np.testing.assert_array_equal(ds.pixel_array, pixels)
    img = sitk.GetArrayFromImage(sitk.ReadImage(str(path))).reshape(pixels.shape)
    if ds.PhotometricInterpretation == "MONOCHROME1":
        # GDCM hands MONOCHROME1 back inverted (as MONOCHROME2) over the stored bit depth
        img = (1 << ds.BitsStored) - 1 - img.astype(np.int64)
    np.testing.assert_array_equal(img, pixels)


@pytest.mark.parametrize("ts", SYNTAXES)
def test_ct_series_round_trip_with_geometry(written, ts):
    paths, vol = written[("CT", ts)]
    arrays = [pydicom.dcmread(p).pixel_array for p in paths]
    np.testing.assert_array_equal(np.stack(arrays), vol.stored)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames([str(p) for p in paths])
    img = reader.Execute()
    assert img.GetSpacing()[0] == pytest.approx(6.0) and img.GetSpacing()[2] == pytest.approx(30.0)
    hu = sitk.GetArrayFromImage(img)  # rescaled by SimpleITK: HU
    np.testing.assert_allclose(np.sort(hu.ravel()), np.sort(vol.stored.astype(np.float64).ravel() - 1024))


@pytest.mark.parametrize("ts", SYNTAXES)
def test_mr_series_round_trip(written, ts):
    paths, vol = written[("MR", ts)]
    ds = [pydicom.dcmread(p) for p in paths]
    np.testing.assert_array_equal(np.stack([d.pixel_array for d in ds]), vol.stored)
    assert ds[0].SequenceName == "STIR" and float(ds[0].InversionTime) == 160.0
    assert [float(v) for v in ds[0].ImageOrientationPatient] == [0, 1, 0, 0, 0, -1]
    x = [float(d.ImagePositionPatient[0]) for d in ds]
    assert np.allclose(np.diff(x), vol.slice_thickness_mm)


def test_calibration_tags(written):
    dx = pydicom.dcmread(written[("DX", "explicit")][0], stop_before_pixels=True)
    assert "ImagerPixelSpacing" in dx and "PixelSpacing" in dx and "EstimatedRadiographicMagnificationFactor" in dx
    ratio = float(dx.ImagerPixelSpacing[0]) / float(dx.EstimatedRadiographicMagnificationFactor)
    assert ratio == pytest.approx(float(dx.PixelSpacing[0]), rel=1e-4)
    assert dx.PhotometricInterpretation == "MONOCHROME1" and dx.PresentationIntentType == "FOR PRESENTATION"
    cr = pydicom.dcmread(written[("CR", "explicit")][0], stop_before_pixels=True)
    assert "PixelSpacing" not in cr and "ImagerPixelSpacing" not in cr
    assert cr.PatientOrientation[1] == "F"


def test_uids_are_deterministic_and_distinct(spine, info):
    rg = render_radiograph(spine, np.random.default_rng(1), pixel_spacing_mm=2.0)
    a, b = radiograph_dataset(rg, info, "k"), radiograph_dataset(rg, info, "k")
    c = radiograph_dataset(rg, info, "other")
    assert a.SOPInstanceUID == b.SOPInstanceUID != c.SOPInstanceUID
    assert a.StudyInstanceUID == c.StudyInstanceUID
    assert len({a.SOPInstanceUID, a.SeriesInstanceUID, a.StudyInstanceUID}) == 3


@pytest.mark.parametrize("ts", SYNTAXES)
def test_written_files_keep_their_derived_uids(spine, info, tmp_path, ts):
    """Compression must not replace the SOP Instance UID (pydicom's compress() would, by default)."""
    rg = render_radiograph(spine, np.random.default_rng(1), pixel_spacing_mm=4.0)
    uid = radiograph_dataset(rg, info, "k").SOPInstanceUID
    back = pydicom.dcmread(write_dataset(radiograph_dataset(rg, info, "k"), tmp_path / "a.dcm", ts), stop_before_pixels=True)
    assert back.SOPInstanceUID == uid == back.file_meta.MediaStorageSOPInstanceUID


def test_unknown_transfer_syntax_is_refused(spine, info, tmp_path):
    rg = render_radiograph(spine, np.random.default_rng(1), pixel_spacing_mm=2.0)
    with pytest.raises(ValueError, match="unknown transfer syntax 'jpeg'"):
        write_dataset(radiograph_dataset(rg, info, "k"), tmp_path / "x.dcm", "jpeg")
    assert not list(tmp_path.iterdir())


def _dciodvfy_errors(exe: str, path: Path) -> list[str]:
    res = subprocess.run([exe, str(path)], capture_output=True, text=True, timeout=60)
    return [ln for ln in (res.stdout + res.stderr).splitlines() if ln.startswith("Error")]


@pytest.mark.parametrize("mod", ["DX", "CR", "CT", "MR"])
@pytest.mark.parametrize("ts", SYNTAXES)
def test_dciodvfy_finds_no_errors(dciodvfy, written, mod, ts):
    path = written[(mod, ts)][0]
    path = path[0] if isinstance(path, list) else path
    assert _dciodvfy_errors(dciodvfy, path) == []


def test_dciodvfy_would_catch_a_broken_file(dciodvfy, written, tmp_path):
    """The validator is live: removing a type 1 attribute is reported."""
    ds = pydicom.dcmread(written[("DX", "explicit")][0])
    del ds.ImagerPixelSpacing  # type 1 in the DX Detector module
    ds.save_as(tmp_path / "broken.dcm")
    assert _dciodvfy_errors(dciodvfy, tmp_path / "broken.dcm")
