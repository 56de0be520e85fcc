"""Pixel data to numbers: pydicom with the pylibjpeg / pyjpegls plugins first, SimpleITK
(GDCM) when pydicom cannot; then the modality LUT (rescale to HU and the like), a VOI LUT
where a radiograph carries one, MONOCHROME1 turned bone-bright, colour radiographs to grey.
The decoder that ran is recorded, because their failures differ.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset

from ..errors import DicomReadError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Decoded:
    """Decoded pixels ``(frames, rows, cols)`` float32, bone-bright for radiographs."""

    pixels: np.ndarray
    decoder: str  # "pydicom", "simpleitk" or "openjpeg-reduced"
    photometric: str  # as stored
    dataset: Dataset  # the full header (pixel data released)
    notes: tuple[str, ...] = ()


def _modality_lut(arr: np.ndarray, ds: Dataset) -> np.ndarray:
    from pydicom.pixels.processing import apply_modality_lut

    if "RescaleSlope" in ds or "ModalityLUTSequence" in ds:
        return apply_modality_lut(arr, ds).astype(np.float32, copy=False)
    # enhanced multi-frame: rescale in the functional groups
    for fg_name in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
        fg = ds.get(fg_name)
        if fg:
            pvt = fg[0].get("PixelValueTransformationSequence")
            if pvt:
                slope = float(pvt[0].get("RescaleSlope", 1.0))
                intercept = float(pvt[0].get("RescaleIntercept", 0.0))
                return (arr.astype(np.float32) * np.float32(slope) + np.float32(intercept)).astype(np.float32)
    return arr.astype(np.float32, copy=False)


def _stored_range(ds: Dataset) -> tuple[float, float]:
    bits = int(ds.get("BitsStored", ds.get("BitsAllocated", 16)))
    if int(ds.get("PixelRepresentation", 0)) == 1:
        return -(2.0 ** (bits - 1)), 2.0 ** (bits - 1) - 1
    return 0.0, 2.0**bits - 1


def _to_grey(arr: np.ndarray, ds: Dataset, notes: list[str]) -> np.ndarray:
    """Colour (RGB, YBR, palette) to luminance; ``arr`` has a trailing sample axis or is indexed."""
    from pydicom.pixels.processing import apply_color_lut, convert_color_space

    pi = str(ds.get("PhotometricInterpretation", "")).upper()
    if pi == "PALETTE COLOR":
        arr = apply_color_lut(arr, ds)
    elif pi.startswith("YBR") and pi not in ("YBR_ICT", "YBR_RCT"):
        arr = convert_color_space(arr, pi, "RGB")
    arr = arr.astype(np.float32)
    notes.append(f"colour image ({pi}) converted to luminance")
    return 0.299 * arr[..., 0] + 0.587 * arr[..., 1] + 0.114 * arr[..., 2]


def read_dataset(path: str | os.PathLike[str]) -> Dataset:
    """The whole dataset of one file; raises ``DicomReadError`` naming the file."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return pydicom.dcmread(path, force=True)
    except Exception as exc:
        raise DicomReadError(f"{path}: cannot read the DICOM dataset ({type(exc).__name__}: {exc})") from exc


def decode(path: str | os.PathLike[str], *, radiograph: bool = False) -> Decoded:
    """Decode one file. Raises ``DicomReadError`` naming the file when no decoder succeeds."""
    decoded = decode_dataset(read_dataset(path), str(path), radiograph=radiograph)
    del decoded.dataset.PixelData  # keep the header, release the bytes
    return decoded


def _check_pixels(ds: Dataset, name: str) -> tuple[str, int, bool]:
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        raise DicomReadError(f"{name}: no pixel data in the file (truncated, or not an image)")
    photometric = str(ds.get("PhotometricInterpretation", "")).upper()
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    colour = int(ds.get("SamplesPerPixel", 1)) > 1 or photometric == "PALETTE COLOR"
    return photometric, frames, colour


def _grey_values(arr: np.ndarray, ds: Dataset, *, radiograph: bool, notes: list[str]) -> np.ndarray:
    """Stored greyscale values → float32 after the modality LUT, a radiograph's VOI LUT and
    MONOCHROME1 inversion (bone-bright)."""
    arr = _modality_lut(arr, ds)
    if radiograph and "VOILUTSequence" in ds:
        from pydicom.pixels.processing import apply_voi_lut

        integral = np.array_equal(arr, np.rint(arr))
        arr = apply_voi_lut(np.rint(arr).astype(np.int64) if integral else arr, ds, prefer_lut=True)
        arr = arr.astype(np.float32)
        notes.append("VOI LUT applied")
    if str(ds.get("PhotometricInterpretation", "")).upper() == "MONOCHROME1":
        lo, hi = _stored_range(ds)
        ends = _modality_lut(np.array([lo, hi]), ds)
        arr = (ends.min() + ends.max()) - arr
        notes.append("MONOCHROME1 inverted to bone-bright")
    return np.asarray(arr, dtype=np.float32)


def _pydicom_pixels(ds: Dataset, frames: int, rgb: bool) -> tuple[np.ndarray | None, str | None]:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            arr: np.ndarray = ds.pixel_array
        expected = int(ds.Rows) * int(ds.Columns) * frames * (3 if rgb else 1)
        if arr.size != expected:
            raise ValueError(f"decoded {arr.size} values, expected {expected}")
        return arr, None
    except Exception as exc:  # the plugins raise many kinds
        return None, f"{type(exc).__name__}: {exc}"


def _simpleitk_pixels(path: str | None, name: str, pyd_error: str) -> np.ndarray:
    try:
        if path is None:
            raise DicomReadError("no file to hand to SimpleITK")
        import SimpleITK as sitk

        return np.asarray(sitk.GetArrayFromImage(sitk.ReadImage(str(path))))
    except Exception as exc:
        raise DicomReadError(
            f"{name}: pixel data cannot be decoded (pydicom: {pyd_error}; SimpleITK: {exc}). "
            "The file may be truncated or use an unsupported compression."
        ) from exc


def _as_read_error(name: str, exc: Exception) -> DicomReadError:
    return exc if isinstance(exc, DicomReadError) else DicomReadError(
        f"{name}: the pixel description cannot be read ({type(exc).__name__}: {exc})")


def decode_dataset(ds: Dataset, path: str | None = None, *, radiograph: bool = False) -> Decoded:
    """Decode the pixels of a dataset already read (``path`` names it in errors and lets
    SimpleITK try when pydicom cannot). The dataset keeps its pixel data. Raises only
    ``DicomReadError`` (a corrupted header's values included)."""
    try:
        return _decode_dataset(ds, path, radiograph=radiograph)
    except Exception as exc:
        raise _as_read_error(path or "<dataset>", exc) from exc


def _decode_dataset(ds: Dataset, path: str | None, *, radiograph: bool) -> Decoded:
    name = path or "<dataset>"
    notes: list[str] = []
    photometric, frames, colour = _check_pixels(ds, name)
    decoder = "pydicom"
    arr, pyd_error = _pydicom_pixels(ds, frames, colour and photometric != "PALETTE COLOR")
    if arr is None:
        arr = _simpleitk_pixels(path, name, pyd_error or "")
        decoder = "simpleitk"
        notes.append(f"pydicom could not decode ({(pyd_error or '')[:120]}); SimpleITK/GDCM did")
    if decoder == "pydicom":
        if colour:
            if not radiograph:
                raise DicomReadError(f"{name}: colour image ({photometric}); sagittal reads greyscale images only")
            arr = _to_grey(arr, ds, notes)
        else:
            arr = _grey_values(arr, ds, radiograph=radiograph, notes=notes)
    else:
        arr = arr.astype(np.float32)
        if arr.ndim == 4:  # colour through GDCM
            if not radiograph:
                raise DicomReadError(f"{name}: colour image ({photometric}); sagittal reads greyscale images only")
            arr = 0.299 * arr[..., 0] + 0.587 * arr[..., 1] + 0.114 * arr[..., 2]
        if photometric == "MONOCHROME1":
            notes.append("MONOCHROME1 inverted by GDCM")
    arr = np.asarray(arr, dtype=np.float32)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise DicomReadError(f"{name}: unexpected pixel array shape {arr.shape}")
    return Decoded(pixels=arr, decoder=decoder, photometric=photometric, dataset=ds, notes=tuple(notes))


# --- analysis resolution ------------------------------------------------------------------

#: The landmark model's finest need: its refinement crops sample about 0.6 mm per crop pixel
#: for the smallest bodies (C7: 64 px over 2.4 × ~16 mm) and ~1.3 mm for lumbar ones, and it was
#: trained on images of 0.3–0.9 mm (sagittal.training.data). Pixels finer than this are decoded
#: only to be averaged away; scripts/eval_reduced_decode.py measures what the choice costs.
DEFAULT_MAX_SPACING_MM = 0.6
#: never reduce an image below this many pixels on its short side
MIN_SIDE_PX = 256
_J2K_SYNTAXES = frozenset({"1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91", "1.2.840.10008.1.2.4.201",
                           "1.2.840.10008.1.2.4.202", "1.2.840.10008.1.2.4.203"})


@dataclass(frozen=True)
class ForAnalysis:
    """Pixels for the landmark model, at no finer than the requested pixel size.

    ``decoded.pixels`` ``(1, rows', cols')`` float32 bone-bright; analysis pixel ``i`` (each axis) is
    centred on stored pixel ``i * factor + offset_px`` (``(0, 0)`` = centre of the top-left
    pixel, docs/contract.md): ``offset_px`` is 0 for JPEG 2000 resolution levels (their lowpass
    samples sit on the even samples, T.800 Annex F), as for ``lowpass`` decimation, and
    ``(factor - 1) / 2`` for block averages.
    """

    decoded: Decoded
    factor: int
    offset_px: float
    source_shape: tuple[int, int]  # (rows, cols) of the stored pixel array
    method: str  # "full", "jpeg2000-reduced", "lowpass" or "block-mean"

    def to_source(self, xy: np.ndarray) -> np.ndarray:
        """Analysis pixels ``(..., 2)`` ``[x, y]`` → stored pixels."""
        return np.asarray(xy, dtype=float) * self.factor + self.offset_px

    def to_analysis(self, xy: np.ndarray) -> np.ndarray:
        """Stored pixels ``(..., 2)`` → analysis pixels."""
        return (np.asarray(xy, dtype=float) - self.offset_px) / self.factor

    def landmarks_to_source(self, landmarks: dict[str, Any]) -> dict[str, Any]:
        """The contract's ``landmarks`` object found on these pixels, in stored-image pixels."""
        return _map_landmarks(landmarks, self.to_source, float(self.factor))

    def landmarks_to_analysis(self, landmarks: dict[str, Any]) -> dict[str, Any]:
        """The reverse of ``landmarks_to_source`` (e.g. to draw an overlay on these pixels)."""
        return _map_landmarks(landmarks, self.to_analysis, 1.0 / self.factor)


def _map_landmarks(lm: dict[str, Any], fn: Callable[[np.ndarray], np.ndarray], scale: float) -> dict[str, Any]:
    def pt(xy: list[float]) -> list[float]:
        x, y = fn(np.asarray(xy, dtype=float))
        return [round(float(x), 3), round(float(y), 3)]

    out = dict(lm)
    out["vertebrae"] = {lv: {k: (v if k == "confidence" else pt(v)) for k, v in pts.items()}
                        for lv, pts in (lm.get("vertebrae") or {}).items()}
    s1 = lm.get("s1_endplate")
    out["s1_endplate"] = None if s1 is None else {k: (v if k == "confidence" else pt(v)) for k, v in s1.items()}
    out["femoral_heads"] = [dict(h, center=pt(h["center"]),
                                 **({"radius_px": round(float(h["radius_px"]) * scale, 3)} if "radius_px" in h else {}))
                            for h in (lm.get("femoral_heads") or [])]
    return out


def _header_spacing(ds: Dataset) -> tuple[float, float] | None:
    for key in ("PixelSpacing", "ImagerPixelSpacing"):
        try:
            v = [float(x) for x in ds.get(key) or ()]
        except (TypeError, ValueError):
            continue
        if len(v) == 2 and all(np.isfinite(v)) and min(v) > 0:
            return v[0], v[1]
    return None


def analysis_levels(shape: tuple[int, int], spacing_mm: tuple[float, float] | None, max_spacing_mm: float) -> int:
    """How many halvings (each axis) keep pixels no coarser than ``max_spacing_mm`` and the short
    side at least ``MIN_SIDE_PX``; 0 without a spacing (nothing is assumed)."""
    if spacing_mm is None or not max_spacing_mm > 0:
        return 0
    r = 0
    while (max(spacing_mm) * 2 ** (r + 1) <= max_spacing_mm * (1 + 1e-9)
           and -(-min(shape) // 2 ** (r + 1)) >= MIN_SIDE_PX and r < 6):
        r += 1
    return r


def _reduced_jpeg2000(ds: Dataset, levels: int, name: str) -> tuple[np.ndarray, int]:
    """Stored values at ``2^-levels`` (or fewer, as the codestream allows) and the levels used."""
    from pydicom.encaps import generate_frames

    from . import j2k

    codestream = next(generate_frames(ds.PixelData, number_of_frames=1))
    head = j2k.main_header(codestream)
    bits, signed = int(ds.get("BitsStored", 0) or 0), int(ds.get("PixelRepresentation", 0) or 0) == 1
    if head.components != 1 or head.precision != bits or head.signed != signed:
        # pydicom reconciles such disagreements; the full decoder does it here
        raise ValueError(f"{name}: the codestream ({head.components} component(s), {head.precision} bits, "
                         f"signed={head.signed}) disagrees with the header ({bits} bits, signed={signed})")
    levels = min(levels, head.levels)
    arr = j2k.decode_reduced(codestream, levels)
    f = 2**levels
    rows, cols = int(ds.Rows), int(ds.Columns)
    if arr.shape != (-(-rows // f), -(-cols // f)):
        raise ValueError(f"{name}: reduced JPEG 2000 is {arr.shape}, expected {rows}x{cols} / {f}")
    return arr, levels


def _block_mean(arr: np.ndarray, f: int) -> np.ndarray:
    """Mean of each ``f × f`` block (trailing rows/columns that fill no block are dropped)."""
    import cv2

    rows, cols = (arr.shape[0] // f) * f, (arr.shape[1] // f) * f
    a = arr[:rows, :cols]
    if a.dtype in (np.uint8, np.uint16, np.int16, np.float32):  # cv2's INTER_AREA at an integer ratio is a box mean
        out: np.ndarray = cv2.resize(np.ascontiguousarray(a), (cols // f, rows // f), interpolation=cv2.INTER_AREA)
        return out
    mean: np.ndarray = a.reshape(rows // f, f, cols // f, f).mean(axis=(1, 3))
    return mean


#: lowpass analysis filter of the reversible 5/3 wavelet (T.800 Annex F), centred on even samples
_LOWPASS_53 = np.array([-1.0, 2.0, 6.0, 2.0, -1.0], np.float32) / 8


def _lowpass_decimate(arr: np.ndarray, levels: int) -> np.ndarray:
    """What a JPEG 2000 resolution level holds, from decoded pixels: ``levels`` times the 5/3
    lowpass (symmetric extension) and every even sample; ``ceil(N / 2^levels)`` per axis."""
    import cv2

    out: np.ndarray = np.asarray(arr, np.float32)
    for _ in range(levels):
        out = cv2.sepFilter2D(out, -1, _LOWPASS_53, _LOWPASS_53, borderType=cv2.BORDER_REFLECT_101)[::2, ::2]
    return np.ascontiguousarray(out)


def load_for_analysis(source: str | os.PathLike[str] | Dataset, *, spacing_mm: tuple[float, float] | None = None,
                      max_spacing_mm: float = DEFAULT_MAX_SPACING_MM, other_syntaxes: str = "full") -> ForAnalysis:
    """Decode a radiograph at no finer than ``max_spacing_mm`` for the landmark model.

    ``spacing_mm`` (row, col) is the calibration's; without it the header's PixelSpacing or
    ImagerPixelSpacing decides (only how finely to decode: nothing is measured with it), and
    without any the image is decoded in full. JPEG 2000 is decoded at a lower resolution level
    directly (several times less work); other syntaxes are decoded in full and kept so
    (``other_syntaxes="full"``), or brought to the same resolution by the 5/3 lowpass
    (``"lowpass"``: the pixels a JPEG 2000 level would hold) or by block means (``"block-mean"``).
    Raises only ``DicomReadError``, naming the file.
    """
    if other_syntaxes not in ("full", "lowpass", "block-mean"):
        raise ValueError(f"other_syntaxes: 'full', 'lowpass' or 'block-mean', not {other_syntaxes!r}")
    path = None if isinstance(source, Dataset) else str(source)
    ds = source if isinstance(source, Dataset) else read_dataset(source)
    try:
        return _load_for_analysis(ds, path, spacing_mm, max_spacing_mm, other_syntaxes)
    except Exception as exc:
        raise _as_read_error(path or "<dataset>", exc) from exc


def _load_for_analysis(ds: Dataset, path: str | None, spacing_mm: tuple[float, float] | None, max_spacing_mm: float,
                       other_syntaxes: str) -> ForAnalysis:
    name = path or "<dataset>"
    photometric, frames, colour = _check_pixels(ds, name)
    shape = (int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0))
    levels = analysis_levels(shape, spacing_mm or _header_spacing(ds), max_spacing_mm) if min(shape) > 0 else 0
    ts = str(getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "") or "")
    if levels and ts in _J2K_SYNTAXES and frames == 1 and not colour:
        try:
            arr, levels = _reduced_jpeg2000(ds, levels, name)
        except Exception as exc:  # any trouble: the full decoder below decides
            log.debug("reduced JPEG 2000 decoding failed, decoding in full: %s", exc)
        else:
            notes: list[str] = []
            pixels = _grey_values(arr, ds, radiograph=True, notes=notes)[None]
            if path is not None:
                del ds.PixelData
            return ForAnalysis(Decoded(pixels, "openjpeg-reduced", photometric, ds, tuple(notes)), 2**levels, 0.0,
                               shape, "jpeg2000-reduced")
    decoded = decode_dataset(ds, path, radiograph=True)
    if path is not None:
        del ds.PixelData
    shape = decoded.pixels.shape[1:3]
    if other_syntaxes == "full" or not levels or decoded.pixels.shape[0] != 1:
        return ForAnalysis(decoded, 1, 0.0, shape, "full")
    f = 2**levels
    if other_syntaxes == "lowpass":
        small, offset = _lowpass_decimate(decoded.pixels[0], levels), 0.0
    else:
        small, offset = _block_mean(decoded.pixels[0], f), (f - 1) / 2
    return ForAnalysis(Decoded(small[None], decoded.decoder, photometric, ds, decoded.notes), f, offset, shape,
                       other_syntaxes)
