"""The overlay as a DICOM Secondary Capture (highdicom), in the source's study, new series,
so the picture of where every number came from sits in the PACS beside the image.

UIDs are derived from the source SOP Instance UIDs (series) and from them plus the pixels
(instance), so a rerun gives the same UIDs (content date and time are those of the run).
Patient and study come from the source dataset; the overlay's orientation is the source's
(``PatientOrientation``, or for a CT/MR plane the letters of its direction cosines).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import RLELossless

from .sr import MANUFACTURER, derived_uid

__all__ = ["SC_SERIES_NUMBER", "orientation_letters", "read_sources", "secondary_capture", "write_sr_and_sc"]

SC_SERIES_NUMBER = 7702
SC_SERIES_DESCRIPTION = "sagittal overlay (secondary capture)"


def _letters(cosines: np.ndarray) -> str:
    """Patient-orientation letters of one direction (LPS: +x L, +y P, +z H), strongest first."""
    names = (("R", "L"), ("A", "P"), ("F", "H"))
    order = np.argsort(-np.abs(cosines))
    return "".join(names[i][int(cosines[i] > 0)] for i in order if abs(cosines[i]) > 0.25)[:3]


def orientation_letters(document: dict, source: Dataset) -> tuple[str, str]:
    """(row direction, column direction) letters for the overlay of ``document``."""
    plane = (document.get("image") or {}).get("plane")
    if plane is not None:
        iop = np.asarray(plane["image_orientation_patient"], float)
        return _letters(iop[:3]), _letters(iop[3:])
    po = source.get("PatientOrientation")
    if po is not None and len(po) == 2 and all(str(x) for x in po):
        return str(po[0]), str(po[1])
    anterior = (document.get("image") or {}).get("anterior")
    if anterior in ("left", "right"):
        # a standing lateral radiograph: rows run to the feet; columns away from the face
        return ("P" if anterior == "left" else "A"), "F"
    raise ValueError("the overlay's orientation is unknown (no PatientOrientation, plane or facing): "
                     "a Secondary Capture in the patient frame needs it")


def secondary_capture(document: dict, overlay_rgb: np.ndarray, source_dataset: Dataset) -> Dataset:
    """The overlay ``(H, W, 3) uint8`` RGB as a Secondary Capture Image in ``source_dataset``'s
    study, in a new series; it references the source image and says that text is burned in."""
    from highdicom.sc import SCImage

    rgb = np.ascontiguousarray(overlay_rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"overlay must be an (H, W, 3) uint8 RGB array, not {rgb.shape} {rgb.dtype}")
    src = document.get("source") or {}
    sop_uids = [str(u) for u in src.get("sop_instance_uids") or []] or [str(source_dataset.SOPInstanceUID)]
    pixels_sha = hashlib.sha256(rgb.tobytes() + str(rgb.shape).encode()).hexdigest()
    sc = SCImage.from_ref_dataset(
        ref_dataset=source_dataset, pixel_array=rgb, photometric_interpretation="RGB", bits_allocated=8,
        coordinate_system="PATIENT", series_instance_uid=derived_uid("sagittal-sc-series", *sop_uids),
        series_number=SC_SERIES_NUMBER, sop_instance_uid=derived_uid("sagittal-sc", *sop_uids, pixels_sha),
        instance_number=1, manufacturer=MANUFACTURER,
        patient_orientation=orientation_letters(document, source_dataset), transfer_syntax_uid=RLELossless,
)
    sc.SeriesDescription = SC_SERIES_DESCRIPTION
    sc.BurnedInAnnotation = "YES"
    # the spine is unpaired: Laterality (Type 2C) is then absent, which the validator accepts once
    # the body part is named
    sc.BodyPartExamined = str(source_dataset.get("BodyPartExamined") or "SPINE")
    sc.ImageType = ["DERIVED", "SECONDARY"]
    sc.DerivationDescription = "sagittal overlay: landmarks, endplates and spinopelvic constructions drawn on the image"
    ref = Dataset()
    ref.ReferencedSOPClassUID = source_dataset.SOPClassUID
    ref.ReferencedSOPInstanceUID = source_dataset.SOPInstanceUID
    sc.SourceImageSequence = [ref]
    return sc


def write_sr_and_sc(document_path: str | os.PathLike[str], document: dict, overlay_rgb: np.ndarray | None,
                    source_datasets: Sequence[Dataset], *, model_sha256: str | None = None) -> list[Path]:
    """Write ``<doc>.sr.dcm`` (and ``<doc>.sc.dcm`` when an overlay is given) beside the
    analysis document, atomically; return the paths written. ``source_datasets`` are the
    headers of the document's source instances (:func:`read_sources` reads them)."""
    from ..fsio import atomic_path
    from .sr import sr_dataset

    base = Path(document_path)
    stem = base.with_suffix("") if base.suffix == ".json" else base
    written = []
    sr = sr_dataset(document, source_datasets, model_sha256=model_sha256)
    out = stem.with_name(stem.name + ".sr.dcm")
    with atomic_path(out) as tmp:
        sr.save_as(tmp, enforce_file_format=True)
    written.append(out)
    if overlay_rgb is not None:
        sop_uids = set((document.get("source") or {}).get("sop_instance_uids") or [])
        ref = next((d for d in source_datasets if str(d.SOPInstanceUID) in sop_uids), source_datasets[0])
        sc = secondary_capture(document, overlay_rgb, ref)
        out = stem.with_name(stem.name + ".sc.dcm")
        with atomic_path(out) as tmp:
            sc.save_as(tmp, enforce_file_format=True)
        written.append(out)
    return written


def read_sources(paths: Sequence[str | os.PathLike[str]]) -> list[Dataset]:
    """Headers (no pixel data) of the source files: every DICOM file under the paths."""
    import pydicom

    files: list[Path] = []
    for p in map(Path, paths):
        files += sorted(x for x in p.rglob("*") if x.is_file()) if p.is_dir() else [p]
    out: list[Dataset] = []
    for f in files:
        try:
            out.append(pydicom.dcmread(f, stop_before_pixels=True))
        except (OSError, pydicom.errors.InvalidDicomError) as exc:
            raise ValueError(f"{f}: not readable as DICOM ({exc})") from exc
    return out
