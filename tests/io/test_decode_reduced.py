"""Decoding for analysis: JPEG 2000 at reduced resolution and block means map back to stored
pixels exactly; values, photometry and fallbacks match the full decoder."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import generate_frames
from pydicom.uid import JPEG2000Lossless, generate_uid

from sagittal.errors import DicomReadError
from sagittal.io import decode as decode_module
from sagittal.io import j2k
from sagittal.io.decode import ForAnalysis, analysis_levels, decode, decode_dataset, load_for_analysis

ROWS, COLS = 1001, 803
#: blob centres [x, y] in stored pixels, off the reduced grids on purpose
BLOBS = np.array([[100.3, 200.7], [400.0, 333.5], [640.25, 850.6], [255.5, 577.1]])
BACKGROUND = 1000.0


def _pattern() -> np.ndarray:
    yy, xx = np.mgrid[0:ROWS, 0:COLS].astype(float)
    img = np.full((ROWS, COLS), BACKGROUND)
    for x, y in BLOBS:
        img += 3000 * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * 14.0**2))
    return img.astype(np.uint16)


def _dataset(pixels: np.ndarray, *, j2k_syntax: bool, photometric: str = "MONOCHROME2",
             spacing: tuple[float, float] | None = (0.15, 0.15)) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.1"
    ds.SOPClassUID, ds.SOPInstanceUID = "1.2.840.10008.5.1.4.1.1.1.1", generate_uid()
    ds.Modality = "DX"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    if spacing is not None:
        ds.PixelSpacing = list(spacing)
    ds.PixelData = pixels.tobytes()
    if j2k_syntax:
        ds.compress(JPEG2000Lossless, encoding_plugin="pylibjpeg")
    return ds


def _centroids(img: np.ndarray, approx_xy: np.ndarray, radius: float) -> np.ndarray:
    """Background-subtracted intensity centroids ``[x, y]`` of the blobs near ``approx_xy``."""
    out = []
    for x, y in approx_xy:
        ix, iy, w = int(round(x)), int(round(y)), int(np.ceil(radius))
        sub = img[iy - w:iy + w + 1, ix - w:ix + w + 1].astype(float) - BACKGROUND
        gy, gx = np.mgrid[iy - w:iy + w + 1, ix - w:ix + w + 1]
        out.append([(sub * gx).sum() / sub.sum(), (sub * gy).sum() / sub.sum()])
    return np.array(out)


pytestmark = pytest.mark.skipif(not j2k.available(), reason="OpenJPEG symbols not exported by pylibjpeg-openjpeg here")


@pytest.fixture(scope="module")
def pattern() -> np.ndarray:
    return _pattern()


@pytest.fixture(autouse=True)
def small_images_reduce(request, monkeypatch):
    """The test pattern is small: let it be reduced below the production floor of 256 px."""
    if request.node.name != "test_analysis_levels":
        monkeypatch.setattr(decode_module, "MIN_SIDE_PX", 64)


@pytest.mark.parametrize("levels", [1, 2, 3])
def test_jpeg2000_levels_map_back_within_a_tenth_of_a_pixel(pattern, levels):
    ds = _dataset(pattern, j2k_syntax=True)
    fa = load_for_analysis(ds, spacing_mm=(0.15, 0.15), max_spacing_mm=0.15 * 2**levels)
    f = 2**levels
    assert (fa.method, fa.factor, fa.offset_px) == ("jpeg2000-reduced", f, 0.0)
    assert fa.source_shape == (ROWS, COLS)
    assert fa.decoded.pixels.shape == (1, -(-ROWS // f), -(-COLS // f))
    found = fa.to_source(_centroids(fa.decoded.pixels[0], fa.to_analysis(BLOBS), 45.0 / f))
    assert np.abs(found - _centroids(pattern, BLOBS, 45.0)).max() < 0.1
    # and the simple area convention (i + 0.5) f - 0.5 would be wrong by (f - 1) / 2 px
    assert np.abs(found + (f - 1) / 2 - BLOBS).max() > 0.4


def test_block_mean_maps_back_within_a_tenth_of_a_pixel(pattern):
    ds = _dataset(pattern, j2k_syntax=False)
    fa = load_for_analysis(ds, spacing_mm=(0.15, 0.15), max_spacing_mm=0.6, other_syntaxes="block-mean")
    assert (fa.method, fa.factor, fa.offset_px) == ("block-mean", 4, 1.5)
    assert fa.decoded.pixels.shape == (1, ROWS // 4, COLS // 4)
    found = fa.to_source(_centroids(fa.decoded.pixels[0], fa.to_analysis(BLOBS), 45.0 / 4))
    assert np.abs(found - _centroids(pattern, BLOBS, 45.0)).max() < 0.1
    # by default, uncompressed images are decoded in full, as before
    full = load_for_analysis(_dataset(pattern, j2k_syntax=False), spacing_mm=(0.15, 0.15))
    assert (full.method, full.factor) == ("full", 1)
    np.testing.assert_array_equal(full.decoded.pixels[0], pattern.astype(np.float32))


@pytest.mark.parametrize("levels", [1, 2])
def test_lowpass_equals_the_jpeg2000_level_and_maps_back(pattern, levels):
    kw = {"spacing_mm": (0.15, 0.15), "max_spacing_mm": 0.15 * 2**levels}
    low = load_for_analysis(_dataset(pattern, j2k_syntax=False), other_syntaxes="lowpass", **kw)
    red = load_for_analysis(_dataset(pattern, j2k_syntax=True), **kw)
    assert (low.method, low.factor, low.offset_px) == ("lowpass", 2**levels, 0.0)
    assert low.decoded.pixels.shape == red.decoded.pixels.shape
    # the reversible lifting rounds to integers at each step (T.800 F.3.8); the float filter does not
    np.testing.assert_allclose(low.decoded.pixels, red.decoded.pixels, atol=2.0 * levels)
    f = 2**levels
    found = low.to_source(_centroids(low.decoded.pixels[0], low.to_analysis(BLOBS), 45.0 / f))
    assert np.abs(found - _centroids(pattern, BLOBS, 45.0)).max() < 0.1


def test_reduced_values_and_monochrome1_match_the_full_decoder(pattern, tmp_path):
    ds = _dataset(pattern, j2k_syntax=True, photometric="MONOCHROME1")
    path = tmp_path / "IM1"
    ds.save_as(path, enforce_file_format=True)
    full = decode(str(path), radiograph=True).pixels[0]
    fa = load_for_analysis(str(path), spacing_mm=(0.15, 0.15), max_spacing_mm=0.6)
    assert fa.method == "jpeg2000-reduced" and fa.factor == 4
    assert fa.decoded.notes == ("MONOCHROME1 inverted to bone-bright",)
    red = fa.decoded.pixels[0]
    # the lowpass image holds the same values as the full image where it is flat, and tracks
    # it (bone-bright, inverted alike) where it is not
    np.testing.assert_allclose(red[:10, :10], full[0, 0], atol=0.5)
    sampled = full[::4, ::4]
    assert np.corrcoef(red.ravel(), sampled.ravel())[0, 1] > 0.999
    assert "PixelData" not in fa.decoded.dataset  # a file's bytes are released once decoded


def test_header_spacing_without_calibration_and_no_spacing_at_all(pattern):
    fa = load_for_analysis(_dataset(pattern, j2k_syntax=True, spacing=(0.3, 0.3)), max_spacing_mm=0.6)
    assert fa.factor == 2  # only the decode's resolution comes from the header
    fa = load_for_analysis(_dataset(pattern, j2k_syntax=True, spacing=None), max_spacing_mm=0.6)
    assert (fa.method, fa.factor) == ("full", 1)  # nothing assumed


def test_failed_reduced_decode_falls_back_to_the_full_decoder(pattern, monkeypatch):
    def broken(*_a, **_k):
        raise RuntimeError("OpenJPEG decode failed")

    monkeypatch.setattr(j2k, "decode_reduced", broken)
    fa = load_for_analysis(_dataset(pattern, j2k_syntax=True), spacing_mm=(0.15, 0.15), max_spacing_mm=0.6)
    assert (fa.method, fa.factor, fa.decoded.decoder) == ("full", 1, "pydicom")
    np.testing.assert_array_equal(fa.decoded.pixels[0], pattern.astype(np.float32))


def test_decomposition_levels_and_reduce_limit(pattern):
    import openjpeg.utils

    cs = openjpeg.utils.encode_array(np.ascontiguousarray(pattern[:300, :300]), bits_stored=16)
    assert j2k.decomposition_levels(cs) == 5  # OpenJPEG's default: six resolutions
    assert j2k.decode_reduced(cs, 5).shape == (-(-300 // 32), -(-300 // 32))
    with pytest.raises(RuntimeError, match="OpenJPEG"):
        j2k.decode_reduced(cs, 6)
    with pytest.raises(RuntimeError, match="OpenJPEG"):
        j2k.decode_reduced(cs[: len(cs) // 3], 1)


def test_analysis_levels():
    assert analysis_levels((5000, 2000), (0.15, 0.15), 0.6) == 2
    assert analysis_levels((5000, 2000), (0.15, 0.16), 0.6) == 1  # the coarser axis decides
    assert analysis_levels((5000, 2000), None, 0.6) == 0
    assert analysis_levels((5000, 2000), (0.15, 0.15), 0.0) == 0
    assert analysis_levels((600, 2000), (0.15, 0.15), 0.6) == 1  # the short side stays >= 256 px


def test_landmarks_round_trip():
    fa = ForAnalysis(decoded=None, factor=4, offset_px=0.0, source_shape=(100, 100), method="jpeg2000-reduced")  # type: ignore[arg-type]
    lm = {"vertebrae": {"L1": {"anterior_superior": [10.0, 20.0], "confidence": 0.9}},
          "s1_endplate": {"anterior": [1.5, 2.25], "posterior": [0.0, 3.0], "confidence": 0.8},
          "femoral_heads": [{"center": [5.0, 6.0], "radius_px": 7.0, "confidence": 0.7}]}
    src = fa.landmarks_to_source(lm)
    assert src["vertebrae"]["L1"] == {"anterior_superior": [40.0, 80.0], "confidence": 0.9}
    assert src["s1_endplate"]["anterior"] == [6.0, 9.0]
    assert src["femoral_heads"][0] == {"center": [20.0, 24.0], "radius_px": 28.0, "confidence": 0.7}
    assert fa.landmarks_to_analysis(src) == lm
    assert fa.landmarks_to_source({"vertebrae": {}, "s1_endplate": None, "femoral_heads": []})["s1_endplate"] is None


def test_phantom_file_through_the_reduced_path(tmp_path):
    """A phantom whole-spine file: the reduced image is the full one's lowpass at the right place."""
    from sagittal.phantom import build_spine, render_radiograph, sample_spec
    from sagittal.phantom.dicom import StudyInfo, radiograph_dataset, write_dataset

    rng = np.random.default_rng(7)
    rg = render_radiograph(build_spine(sample_spec(rng)), rng, pixel_spacing_mm=0.6, field_of_view="whole")
    path = write_dataset(radiograph_dataset(rg, StudyInfo.make("t", "T1"), "t/dx"), tmp_path / "IM", "jpeg2000")
    full = decode(str(path), radiograph=True).pixels[0]
    fa = load_for_analysis(str(path), spacing_mm=tuple(rg.spacing_mm), max_spacing_mm=1.2)
    assert fa.factor == 2 and fa.source_shape == full.shape
    assert pydicom.dcmread(path).file_meta.TransferSyntaxUID == JPEG2000Lossless
    red = fa.decoded.pixels[0]
    assert np.corrcoef(red.ravel(), full[::2, ::2].ravel())[0, 1] > 0.99


def test_area_decoding_is_a_window_of_the_whole(pattern):
    import openjpeg.utils

    cs = openjpeg.utils.encode_array(np.ascontiguousarray(pattern), bits_stored=16)
    whole = j2k.decode_reduced(cs, 2)
    part = j2k.decode_reduced(cs, 2, area=(200, 100, 600, 900))
    np.testing.assert_array_equal(part, whole[25:225, 50:150])


def test_a_codestream_disagreeing_with_the_header_goes_to_the_full_decoder(pattern):
    ds = _dataset(pattern, j2k_syntax=True)
    head = j2k.main_header(next(generate_frames(ds.PixelData, number_of_frames=1)))
    assert (head.components, head.precision, head.signed) == (1, 16, False)
    ds.BitsStored, ds.HighBit = 14, 13  # the header now says 14 bits; the codestream says 16
    fa = load_for_analysis(ds, spacing_mm=(0.15, 0.15), max_spacing_mm=0.6)
    assert fa.method == "full" and fa.factor == 1


@pytest.mark.slow
def test_landmarks_found_on_a_reduced_decode_land_on_the_stored_image(tmp_path):
    """The model on a whole-spine DX at 0.15 mm decoded at 0.6 mm: its landmarks, mapped back,
    sit on the phantom's true points in the stored pixel array (contract frame), where the model
    puts them on the full-resolution decode."""
    from sagittal.landmarks.infer import LandmarkDetector
    from sagittal.phantom import build_spine, render_radiograph, sample_spec
    from sagittal.phantom.dicom import StudyInfo, radiograph_dataset, write_dataset
    from sagittal.phantom.truth import radiograph_truth

    rng = np.random.default_rng([2_000_002])
    spine = build_spine(sample_spec(rng))
    rg = render_radiograph(spine, rng, pixel_spacing_mm=0.15, field_of_view="whole", modality="DX")
    truth = radiograph_truth(spine, rg)["landmarks"]["vertebrae"]
    path = write_dataset(radiograph_dataset(rg, StudyInfo.make("t", "T2"), "t/dx"), tmp_path / "IM", "jpeg2000")
    detector = LandmarkDetector(device="cpu", threads=1)
    found = {}
    for max_spacing in (0.0, 0.6):
        fa = load_for_analysis(str(path), spacing_mm=tuple(rg.spacing_mm), max_spacing_mm=max_spacing)
        assert fa.factor == (4 if max_spacing else 1)
        (lm, _, _), = detector.detect([fa.decoded.pixels[0]])
        found[max_spacing] = fa.landmarks_to_source(lm)["vertebrae"]
    reduced, full = found[0.6], found[0.0]
    to_truth = np.array([np.subtract(v[k], truth[lv][k]) for lv, v in reduced.items() for k in v if k != "confidence"])
    assert len(to_truth) >= 6 * 12  # most levels found
    assert np.median(np.linalg.norm(to_truth, axis=1)) * 0.15 < 0.4  # mm
    to_full = np.array([np.subtract(v[k], full[lv][k]) for lv, v in reduced.items() if lv in full
                        for k in v if k != "confidence"])
    # the same places as at full resolution, with no shift: a frame error (the area convention's
    # (f - 1) / 2 = 1.5 px) would show in the mean on both axes
    assert np.median(np.linalg.norm(to_full, axis=1)) < 1.0
    assert np.abs(to_full.mean(axis=0)).max() < 0.3, to_full.mean(axis=0)


def test_corrupted_pixel_description_is_a_read_error(pattern):
    for tag, value in (("SamplesPerPixel", b"\x01x"), ("Rows", b"zz")):
        ds = _dataset(pattern, j2k_syntax=True)
        elem = ds[tag]
        ds[tag] = pydicom.dataelem.RawDataElement(elem.tag, "IS", len(value), value, 0, True, True)
        with pytest.raises(DicomReadError, match="<dataset>"):
            load_for_analysis(ds, spacing_mm=(0.15, 0.15))
        with pytest.raises(DicomReadError):
            decode_dataset(ds, radiograph=True)
