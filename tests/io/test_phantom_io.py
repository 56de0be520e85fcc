"""Phantom studies through ingestion: every transfer syntax gives identical pixels and the
truth's calibration; volumes get their true geometry; mangled files only raise SagittalError."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sagittal.cli import main
from sagittal.errors import SagittalError
from sagittal.io import load_radiographs, load_volume, scan_export
from sagittal.io.decode import decode
from sagittal.phantom import build_spine, render_ct, render_mr, render_radiograph, sample_spec
from sagittal.phantom.dicom import TRANSFER_SYNTAXES, StudyInfo, radiograph_dataset, volume_datasets, write_dataset
from sagittal.phantom.truth import radiograph_truth


@pytest.fixture(scope="module")
def spine():
    return build_spine(sample_spec(np.random.default_rng(31), n_fractures=1))


@pytest.mark.parametrize(
    "modality, calibration, photometric, facing",
    [("DX", "ImagerPixelSpacing/ERMF", "MONOCHROME1", "left"), ("DX", "both", "MONOCHROME2", "right"),
     ("CR", "PixelSpacing", "MONOCHROME1", "right"), ("CR", "ImagerPixelSpacing", "MONOCHROME2", "left"),
     ("CR", "none", "MONOCHROME1", "left")],
)
def test_transfer_syntaxes_identical_and_calibrated(tmp_path, spine, modality, calibration, photometric, facing):
    rg = render_radiograph(spine, np.random.default_rng(5), modality=modality, calibration=calibration,
                           photometric=photometric, facing=facing, pixel_spacing_mm=1.2)
    truth = radiograph_truth(spine, rg)
    info = StudyInfo.make("io", "PHIO")
    for ts in TRANSFER_SYNTAXES:
        write_dataset(radiograph_dataset(rg, info, f"io/{ts}"), tmp_path / ts / "img", ts)
    export = scan_export([tmp_path])
    assert len(export.series) == 4 and not export.set_aside
    images = [load_radiographs(s)[0] for s in export.series]
    maxval = (1 << rg.bits_stored) - 1
    bone_bright = rg.pixels.astype(np.float32) if photometric == "MONOCHROME2" else maxval - rg.pixels.astype(np.float32)
    for img in images:
        np.testing.assert_array_equal(img.pixels, bone_bright)
        cal = img.calibration
        assert cal.source == truth["image"]["spacing_source"]
        if truth["image"]["pixel_spacing_mm"] is None:
            assert cal.pixel_spacing_mm is None
        else:
            np.testing.assert_allclose(cal.pixel_spacing_mm, truth["image"]["pixel_spacing_mm"], rtol=1e-5)
        assert cal.anterior == facing
    assert {s.view for s in export.series} == {"lateral"}


def test_ct_and_mr_volumes_get_their_true_geometry(tmp_path, spine):
    info = StudyInfo.make("vol", "PHVOL")
    ct = render_ct(spine, np.random.default_rng(2), matrix=96, pixel_spacing_mm=4.0, slice_mm=5.0)
    for k, ds in enumerate(volume_datasets(ct, info, "ct")):
        write_dataset(ds, tmp_path / "ct" / f"{k:04d}", "jpegls")
    mr = render_mr(spine, np.random.default_rng(3), "STIR", matrix=96, pixel_spacing_mm=3.0, n_slices=7)
    for k, ds in enumerate(volume_datasets(mr, info, "mr")):
        write_dataset(ds, tmp_path / "mr" / f"{k:04d}", "rle")
    export = scan_export([tmp_path])
    by = {s.modality: s for s in export.series}
    assert by["CT"].orientation == "axial" and by["MR"].orientation == "sagittal" and by["MR"].weighting == "STIR"
    assert by["CT"].calibration.slice_spacing_mm == pytest.approx(5.0)
    assert by["MR"].calibration.slice_spacing_mm == pytest.approx(4.0)
    vol = load_volume(by["CT"])
    hu = ct.stored.astype(np.float32) - 1024
    np.testing.assert_array_equal(vol.voxels, hu[::-1])  # written head first, sorted feet first
    # a truth landmark maps to the same LPS point through the loaded geometry
    p = ct.sagittal_to_lps(spine.points_mm[15, 0])
    k, i, j = np.linalg.solve(vol.geometry.affine()[:3, :3], p - vol.geometry.positions[0])
    assert 0 <= k < vol.voxels.shape[0] and 0 <= i < 96 and 0 <= j < 96
    plane = vol.sagittal(slab_mm=0.0, lateral_lps=float(ct.origin_lps[0]))
    xy = np.linalg.lstsq(np.stack([plane.col_axis, plane.row_axis], 1) * plane.calibration.pixel_spacing_mm[0],
                         p - plane.origin_lps, rcond=None)[0]
    np.testing.assert_allclose(plane.to_lps(xy), p, atol=1e-6)
    # bone is bright at that landmark's neighbourhood in the reformatted plane
    body = spine.body_polygon_mm(15).mean(axis=0)
    c = np.linalg.lstsq(np.stack([plane.col_axis, plane.row_axis], 1) * plane.calibration.pixel_spacing_mm[0],
                        ct.sagittal_to_lps(body) - plane.origin_lps, rcond=None)[0]
    assert plane.image[int(round(c[1])), int(round(c[0]))] > 60  # trabecular bone in HU


def test_inspect_writes_errors_csv(tmp_path, capsys):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "notes.txt").write_text("not dicom")
    (tmp_path / "in" / "empty.dcm").write_bytes(b"")
    assert main(["inspect", str(tmp_path / "in"), "--errors", str(tmp_path / "errors.csv")]) == 0
    with open(tmp_path / "errors.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert {r["path"].rsplit("/", 1)[-1] for r in rows} == {"notes.txt", "empty.dcm"}
    assert all(r["stage"] == "read" and r["reason"] for r in rows)
    assert "2 file(s) set aside" in capsys.readouterr().out


@pytest.fixture(scope="module")
def pristine(tmp_path_factory, spine):
    out = tmp_path_factory.mktemp("fuzz")
    rg = render_radiograph(spine, np.random.default_rng(9), modality="CR", pixel_spacing_mm=3.0)
    info = StudyInfo.make("fuzz", "PHFZ")
    files = {}
    for ts in TRANSFER_SYNTAXES:
        files[ts] = write_dataset(radiograph_dataset(rg, info, f"fz/{ts}"), out / f"{ts}.dcm", ts).read_bytes()
    return files


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ts=st.sampled_from(list(TRANSFER_SYNTAXES)), data=st.data())
@pytest.mark.timeout(120)
def test_fuzzed_files_only_raise_sagittal_errors(tmp_path, pristine, ts, data):
    raw = bytearray(pristine[ts])
    action = data.draw(st.sampled_from(["flip", "truncate", "both"]))
    if action in ("flip", "both"):
        header_end = raw.find(b"\xe0\x7f\x10\x00")  # the PixelData tag
        hi = header_end if header_end > 132 else len(raw)
        for _ in range(data.draw(st.integers(1, 12))):
            pos = data.draw(st.integers(128, max(129, hi - 1)))
            raw[pos] = data.draw(st.integers(0, 255))
    if action in ("truncate", "both"):
        raw = raw[: data.draw(st.integers(0, len(raw)))]
    path = tmp_path / f"fuzz_{ts}.dcm"
    path.write_bytes(bytes(raw))
    export = scan_export([path])  # never raises
    assert [f for s in export.series for f in s.files] + [a.path for a in export.set_aside] == [str(path)]
    for s in export.series:
        try:
            load_radiographs(s) if s.kind == "radiograph" else load_volume(s)
        except SagittalError:
            pass
    try:
        decode(str(path), radiograph=True)
    except SagittalError:
        pass
