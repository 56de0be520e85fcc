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


def _with_sequences(path, stored: np.ndarray, syntax, **extra) -> str:
    """A slice with an undefined-length sequence (items of defined and undefined length, one
    nested) and a private element before the pixel data, as scanners write them."""
    p = _write(path, stored, syntax=syntax)
    ds = pydicom.dcmread(p)
    inner = pydicom.Dataset()
    inner.CodeValue, inner.CodingSchemeDesignator = "113691", "DCM"
    item = pydicom.Dataset()
    item.ReferencedSOPInstanceUID = generate_uid()
    item.PurposeOfReferenceCodeSequence = [inner]
    item["PurposeOfReferenceCodeSequence"].is_undefined_length = True
    plain = pydicom.Dataset()
    plain.ReferencedSOPInstanceUID = generate_uid()
    plain.is_undefined_length_sequence_item = True
    ds.ReferencedImageSequence = [item, plain]
    ds["ReferencedImageSequence"].is_undefined_length = True
    ds.add_new(0x00091010, "LO", "private")
    for k, v in extra.items():
        setattr(ds, k, v)
    ds.save_as(p, implicit_vr=syntax == ImplicitVRLittleEndian, little_endian=True, enforce_file_format=True)
    return p


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
def test_header_scan_reads_what_pydicom_reads(tmp_path, syntax):
    """The header walk (``_scan_header``, without pydicom) gives the elements pydicom parses,
    across undefined-length sequences and private elements; the stack equals pixel_array."""
    from sagittal.io.volume import _scan_header

    rng = np.random.default_rng(3)
    paths = [_with_sequences(tmp_path / f"{k}.dcm", rng.integers(0, 4096, SHAPE), syntax) for k in range(3)]
    for p in paths:
        with open(p, "rb") as fh:
            scanned = _scan_header(fh)
        ds = pydicom.dcmread(p, stop_before_pixels=True)
        assert scanned is not None
        this, got_syntax, pos = scanned[:3]
        assert this == (6, 7, 16, 12, 0, 1.0, -1024.0) and got_syntax == str(syntax)
        with open(p, "rb") as fh:
            pydicom.dcmread(fh, stop_before_pixels=True)
            assert pos == fh.tell()  # where pydicom stops: the PixelData element
        assert ds.Rows == 6
    got = read_slices_fast(paths)
    assert got is not None and got.dtype == np.int16
    np.testing.assert_array_equal(got, _expected(paths))


def test_header_scan_leaves_the_unusual_to_pydicom(tmp_path):
    """Multi-valued rescale, several frames, a modality LUT, another photometric: the walk gives
    ``None`` and pydicom's parse decides, as before (the stack is refused or read the careful way)."""
    from sagittal.io.volume import _scan_header

    rng = np.random.default_rng(4)
    lut = pydicom.Dataset()
    lut.LUTDescriptor, lut.ModalityLUTType = [2, 0, 16], "HU"
    odd = {"multi": {"RescaleSlope": ["1", "1"]}, "frames": {"NumberOfFrames": "2"},
           "lut": {"ModalityLUTSequence": [lut]}, "mono1": {"PhotometricInterpretation": "MONOCHROME1"}}
    for name, extra in odd.items():
        p = _with_sequences(tmp_path / f"{name}.dcm", rng.integers(0, 4096, SHAPE), ExplicitVRLittleEndian, **extra)
        with open(p, "rb") as fh:
            assert _scan_header(fh) is None, name
    plain = _with_sequences(tmp_path / "plain.dcm", rng.integers(0, 4096, SHAPE), ExplicitVRLittleEndian)
    lutted = str(tmp_path / "lut.dcm")
    assert read_slices_fast([plain, lutted]) is None


def test_header_scan_past_the_first_read(tmp_path):
    """A header longer than the first read (a large private element) is walked on the whole file."""
    from sagittal.io.volume import _HEAD_BYTES, _scan_header

    p = _write(tmp_path / "long.dcm", np.random.default_rng(5).integers(0, 4096, SHAPE))
    ds = pydicom.dcmread(p)
    ds.add_new(0x00091020, "OB", bytes(2 * _HEAD_BYTES))
    ds.save_as(p, enforce_file_format=True)
    with open(p, "rb") as fh:
        scanned = _scan_header(fh)
    assert scanned is not None and scanned[0][:2] == SHAPE and scanned[2] > 2 * _HEAD_BYTES
    np.testing.assert_array_equal(read_slices_fast([p]), _expected([p]))


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
def test_a_truncated_slice_is_never_read_as_a_stack(tmp_path, syntax):
    """A slice cut short inside its pixel data must not come back as part of a stack (its tail
    would be whatever the preallocated stack held): the fast reader raises or declines, and the
    careful path (``io.series.load_volume``) then names the file."""
    rng = np.random.default_rng(1)
    paths = [_write(tmp_path / f"{k}.dcm", rng.integers(0, 4096, SHAPE), syntax=syntax) for k in range(3)]
    cut = tmp_path / "1.dcm"
    cut.write_bytes(cut.read_bytes()[:-20])  # the last 10 pixels lost
    try:
        got = read_slices_fast(paths)
    except Exception:
        return
    assert got is None
