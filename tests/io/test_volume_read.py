"""The fast slice reader (``io.volume.read_slices_fast``): uncompressed pixel data read straight
into one stack must equal pydicom's ``pixel_array`` rescaled, whatever the transfer syntax's VR
layout, garbage in the bits above BitsStored, or a rescale that does not fit int16."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid

from sagittal.io.volume import read_slices_fast

SHAPE = (6, 7)


def _write(path, stored: np.ndarray, *, syntax=ExplicitVRLittleEndian, bits_stored=12, signed=False,
           slope="1", intercept="-1024", trailer=False) -> str:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = syntax
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "CT"
    ds.Rows, ds.Columns = SHAPE
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, bits_stored, bits_stored - 1
    ds.PixelRepresentation = int(signed)
    ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
    ds.PixelData = np.ascontiguousarray(stored, "<i2" if signed else "<u2").tobytes()
    if trailer:  # an element after the pixel data (a digital signature's place)
        ds.add_new(0xFFFAFFFA, "SQ", [])
    ds.save_as(path, implicit_vr=syntax == ImplicitVRLittleEndian, little_endian=True, enforce_file_format=True)
    return str(path)


def _expected(paths: list[str]) -> np.ndarray:
    out = []
    for p in paths:
        ds = pydicom.dcmread(p)
        out.append(ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept))
    return np.stack(out)


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
def test_raw_read_equals_pixel_array_and_keeps_ct_as_int16(tmp_path, syntax):
    rng = np.random.default_rng(0)
    stored = [rng.integers(0, 4096, SHAPE) for _ in range(3)]
    stored[1][0, :3] |= 0xF000  # garbage above BitsStored: pydicom clears it
    paths = [_write(tmp_path / f"{k}.dcm", s, syntax=syntax) for k, s in enumerate(stored)]
    got = read_slices_fast(paths)
    assert got is not None and got.dtype == np.int16 and got.shape == (3, *SHAPE)
    np.testing.assert_array_equal(got, _expected(paths))
    assert got.min() >= -1024 and got.max() <= 3071


def test_signed_and_fractional_rescales(tmp_path):
    rng = np.random.default_rng(1)
    signed = [_write(tmp_path / f"s{k}.dcm", rng.integers(-2000, 3000, SHAPE), bits_stored=16, signed=True,
                     intercept="0") for k in range(2)]
    got = read_slices_fast(signed)
    assert got is not None and got.dtype == np.int16
    np.testing.assert_array_equal(got, _expected(signed))
    frac = [_write(tmp_path / f"f{k}.dcm", rng.integers(0, 4096, SHAPE), slope="0.5", intercept="-10.5") for k in range(2)]
    got = read_slices_fast(frac)
    assert got is not None and got.dtype == np.float32
    np.testing.assert_allclose(got, _expected(frac), rtol=0, atol=1e-4)
    full = [_write(tmp_path / f"u{k}.dcm", rng.integers(0, 65536, SHAPE), bits_stored=16, intercept="-1024")
            for k in range(2)]
    got = read_slices_fast(full)  # 16 stored bits less 1024 does not fit int16: float32
    assert got is not None and got.dtype == np.float32
    np.testing.assert_array_equal(got, _expected(full))


def test_mixed_rescale_or_trailing_elements(tmp_path):
    rng = np.random.default_rng(2)
    a = _write(tmp_path / "a.dcm", rng.integers(0, 4096, SHAPE))
    b = _write(tmp_path / "b.dcm", rng.integers(0, 4096, SHAPE), intercept="-1000")
    assert read_slices_fast([a, b]) is None  # the caller decodes slice by slice
    c = _write(tmp_path / "c.dcm", rng.integers(0, 4096, SHAPE), trailer=True)
    got = read_slices_fast([a, c])
    assert got is not None
    np.testing.assert_array_equal(got, _expected([a, c]))
