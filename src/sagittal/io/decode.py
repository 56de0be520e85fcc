"""Pixel data to numbers: pydicom with the pylibjpeg / pyjpegls plugins first, SimpleITK
(GDCM) when pydicom cannot; then the modality LUT (rescale to HU and the like), a VOI LUT
where a radiograph carries one, MONOCHROME1 turned bone-bright, colour radiographs to grey.
The decoder that ran is recorded, because their failures differ.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass

import numpy as np
import pydicom
from pydicom.dataset import Dataset

from ..errors import DicomReadError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Decoded:
    """Decoded pixels ``(frames, rows, cols)`` float32, bone-bright for radiographs."""

    pixels: np.ndarray
    decoder: str  # "pydicom" or "simpleitk"
    photometric: str  # as stored
    dataset: Dataset  # the full header (pixel data released)
    notes: tuple[str, ...] = ()


def _modality_lut(arr: np.ndarray, ds: Dataset) -> np.ndarray:
    from pydicom.pixels import apply_modality_lut

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
    from pydicom.pixels import apply_color_lut, convert_color_space

    pi = str(ds.get("PhotometricInterpretation", "")).upper()
    if pi == "PALETTE COLOR":
        arr = apply_color_lut(arr, ds)
    elif pi.startswith("YBR") and pi not in ("YBR_ICT", "YBR_RCT"):
        arr = convert_color_space(arr, pi, "RGB")
    arr = arr.astype(np.float32)
    notes.append(f"colour image ({pi}) converted to luminance")
    return 0.299 * arr[..., 0] + 0.587 * arr[..., 1] + 0.114 * arr[..., 2]


def decode(path: str, *, radiograph: bool = False) -> Decoded:
    """Decode one file. Raises ``DicomReadError`` naming the file when no decoder succeeds."""
    notes: list[str] = []
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(path, force=True)
    except Exception as exc:
        raise DicomReadError(f"{path}: cannot read the DICOM dataset ({type(exc).__name__}: {exc})") from exc
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        raise DicomReadError(f"{path}: no pixel data in the file (truncated, or not an image)")
    photometric = str(ds.get("PhotometricInterpretation", "")).upper()
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    colour = int(ds.get("SamplesPerPixel", 1)) > 1 or photometric == "PALETTE COLOR"
    decoder = "pydicom"
    pyd_error = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            arr = ds.pixel_array
        expected = int(ds.Rows) * int(ds.Columns) * frames * (3 if colour and photometric != "PALETTE COLOR" else 1)
        if arr.size != expected:
            raise ValueError(f"decoded {arr.size} values, expected {expected}")
    except Exception as exc:  # the plugins raise many kinds
        pyd_error = f"{type(exc).__name__}: {exc}"
        arr = None
    if arr is None:
        try:
            import SimpleITK as sitk

            img = sitk.ReadImage(str(path))
            arr = sitk.GetArrayFromImage(img)
            decoder = "simpleitk"
            notes.append(f"pydicom could not decode ({pyd_error[:120]}); SimpleITK/GDCM did")
        except Exception as exc:
            raise DicomReadError(
                f"{path}: pixel data cannot be decoded (pydicom: {pyd_error}; SimpleITK: {exc}). "
                "The file may be truncated or use an unsupported compression."
            ) from exc
    if decoder == "pydicom":
        if colour:
            if not radiograph:
                raise DicomReadError(f"{path}: colour image ({photometric}); sagittal reads greyscale images only")
            arr = _to_grey(arr, ds, notes)
        else:
            arr = _modality_lut(arr, ds)
            if radiograph and "VOILUTSequence" in ds:
                from pydicom.pixels import apply_voi_lut

                integral = np.array_equal(arr, np.rint(arr))
                arr = apply_voi_lut(np.rint(arr).astype(np.int64) if integral else arr, ds, prefer_lut=True)
                arr = arr.astype(np.float32)
                notes.append("VOI LUT applied")
            if photometric == "MONOCHROME1":
                lo, hi = _stored_range(ds)
                ends = _modality_lut(np.array([lo, hi]), ds)
                arr = (ends.min() + ends.max()) - arr
                notes.append("MONOCHROME1 inverted to bone-bright")
    else:
        arr = arr.astype(np.float32)
        if arr.ndim == 4:  # colour through GDCM
            if not radiograph:
                raise DicomReadError(f"{path}: colour image ({photometric}); sagittal reads greyscale images only")
            arr = 0.299 * arr[..., 0] + 0.587 * arr[..., 1] + 0.114 * arr[..., 2]
        if photometric == "MONOCHROME1":
            notes.append("MONOCHROME1 inverted by GDCM")
    arr = np.asarray(arr, dtype=np.float32)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise DicomReadError(f"{path}: unexpected pixel array shape {arr.shape}")
    del ds.PixelData  # keep the header, release the bytes
    return Decoded(pixels=arr, decoder=decoder, photometric=photometric, dataset=ds, notes=tuple(notes))
