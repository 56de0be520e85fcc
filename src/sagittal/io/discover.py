"""Find DICOM files in a PACS export and read their headers, fast and without failing.

``discover(inputs)`` walks files and folders (recursively, sorted, so results are
deterministic), follows DICOMDIR records, reads each file's header only
(``stop_before_pixels`` and the tags sagittal needs) and sorts every path into a ``Header``
or a ``SetAside`` with the stage and reason. Nothing here raises for a bad file.
"""

from __future__ import annotations

import functools
import logging
import os
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydicom
from pydicom.datadict import tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

log = logging.getLogger(__name__)

#: SOP classes that hold no image sagittal can use, by UID prefix → what they are
NON_IMAGE_SOP_PREFIXES: dict[str, str] = {
    "1.2.840.10008.5.1.4.1.1.88.": "structured report (SR)",
    "1.2.840.10008.5.1.4.1.1.11.": "presentation state (PR)",
    "1.2.840.10008.5.1.4.1.1.481.": "radiotherapy object (RT)",
    "1.2.840.10008.5.1.4.1.1.66": "segmentation or registration object",
    "1.2.840.10008.5.1.4.1.1.104.": "encapsulated document",
    "1.2.840.10008.5.1.4.1.1.9.": "waveform",
    "1.2.840.10008.5.1.4.1.1.30": "parametric map",
    "1.2.840.10008.1.3.10": "media directory (DICOMDIR)",
}
KEY_OBJECT_SOP = "1.2.840.10008.5.1.4.1.1.88.59"

#: header tags read during discovery (keywords); everything else waits for the full read
HEADER_TAGS = (
    "SOPClassUID", "SOPInstanceUID", "Modality", "PatientID", "StudyInstanceUID", "SeriesInstanceUID",
    "StudyDate", "StudyTime", "StudyID", "AccessionNumber", "SeriesNumber", "SeriesDescription", "ProtocolName",
    "InstanceNumber", "AcquisitionNumber", "Rows", "Columns", "NumberOfFrames", "PhotometricInterpretation",
    "SamplesPerPixel", "BitsStored", "PixelRepresentation", "ImageType", "ViewPosition", "PatientOrientation",
    "ImageLaterality", "BodyPartExamined", "ImageOrientationPatient", "ImagePositionPatient", "PixelSpacing",
    "ImagerPixelSpacing", "EstimatedRadiographicMagnificationFactor", "ScanningSequence", "SequenceVariant",
    "InversionTime", "EchoTime", "RepetitionTime", "SliceThickness", "SequenceName", "FrameOfReferenceUID",
    "DirectoryRecordSequence", "PresentationIntentType", "PatientSex", "PatientAge", "PatientBirthDate",
)


@dataclass(frozen=True)
class SetAside:
    """A file that will not be analysed, and why."""

    path: str
    stage: str  # discover | read | classify | decode | calibrate | group
    reason: str


@dataclass(frozen=True)
class Header:
    """What discovery learnt of one DICOM image file (no pixel data read)."""

    path: str
    sop_class_uid: str
    sop_instance_uid: str
    modality: str
    patient_id: str
    study_uid: str
    series_uid: str
    study_key: tuple[str, str, str, str]  # StudyDate, StudyTime, StudyID, AccessionNumber: fallbacks when UIDs are missing
    series_number: int | None
    series_description: str
    protocol_name: str
    instance_number: int | None
    rows: int
    columns: int
    frames: int
    photometric: str
    samples_per_pixel: int
    image_type: tuple[str, ...]
    view_position: str
    patient_orientation: tuple[str, ...]
    image_laterality: str
    body_part: str
    orientation: tuple[float, ...] | None  # ImageOrientationPatient
    position: tuple[float, ...] | None  # ImagePositionPatient
    pixel_spacing: tuple[str, ...] | None  # as written, validated later
    imager_pixel_spacing: tuple[str, ...] | None
    magnification: str | None
    scanning_sequence: tuple[str, ...]
    sequence_variant: tuple[str, ...]
    scan_options: tuple[str, ...]  # ScanOptions, e.g. FS (fat saturation)
    inversion_time: float | None
    echo_time: float | None
    repetition_time: float | None
    slice_thickness: float | None
    sequence_name: str
    transfer_syntax: str
    forced: bool  # read without a valid file meta header / preamble
    # for the research cohort's age and sex (see source_demographics); empty when absent
    patient_sex: str = ""
    patient_age: str = ""  # DICOM AS, e.g. 074Y
    patient_birth_date: str = ""


@functools.cache
def _tag(kw: str) -> int:
    """The tag of a DICOM keyword (cached: discovery asks for the same few thousands of times)."""
    tag = tag_for_keyword(kw)
    if tag is None:
        raise KeyError(f"{kw!r} is not a DICOM keyword")
    return tag


_BINARY_US = {_tag(k) for k in ("Rows", "Columns", "SamplesPerPixel", "BitsStored", "PixelRepresentation")}


def _raw(ds: Dataset, kw: str) -> Any:
    """An element's value without pydicom's conversion machinery (discovery reads thousands
    of headers): text VRs as ``str``, the binary US tags as ``int``; ``None`` if absent."""
    tag = _tag(kw)
    try:
        elem = ds.get_item(tag)
    except Exception:
        return None
    if elem is None:
        return None
    if isinstance(elem, RawDataElement):
        value = elem.value
        if value is None:
            return None
        if tag in _BINARY_US:
            if len(value) < 2:
                return None
            return int.from_bytes(value[:2], "little" if ds.is_little_endian in (True, None) else "big")
        return value.decode("latin-1").strip(" \x00")
    value = elem.value
    if isinstance(value, (list, tuple, pydicom.multival.MultiValue)):
        return "\\".join(str(v) for v in value)
    return value


def _text(ds: Dataset, kw: str) -> str:
    v = _raw(ds, kw)
    return "" if v is None else str(v).strip()


def _multi(ds: Dataset, kw: str) -> tuple[str, ...]:
    v = _raw(ds, kw)
    if v is None or v == "":
        return ()
    return tuple(p.strip() for p in str(v).split("\\") if p.strip())


def _float(ds: Dataset, kw: str) -> float | None:
    v = _multi(ds, kw)
    try:
        return float(v[0]) if v else None
    except ValueError:
        return None


def _int(ds: Dataset, kw: str) -> int | None:
    v = _raw(ds, kw)
    if isinstance(v, int):
        return v
    try:
        return int(float(str(v).split("\\")[0])) if v not in (None, "") else None
    except ValueError:
        return None


def _floats(ds: Dataset, kw: str, n: int) -> tuple[float, ...] | None:
    v = _multi(ds, kw)
    try:
        vals = tuple(float(x) for x in v)
    except ValueError:
        return None
    return vals if len(vals) == n else None


def walk(inputs: Iterable[str | os.PathLike[str]], set_aside: list[SetAside]) -> Iterator[Path]:
    """Every file under ``inputs`` once, DICOMDIR references included, in a stable order."""
    seen: set[str] = set()

    def emit(p: Path) -> Iterator[Path]:
        key = os.path.realpath(p)
        if key not in seen:
            seen.add(key)
            yield p

    for item in inputs:
        p = Path(item)
        if p.is_dir():
            for root, dirs, files in os.walk(p):
                dirs.sort()
                for name in sorted(files):
                    yield from emit(Path(root) / name)
        elif p.is_file():
            yield from emit(p)
        else:
            set_aside.append(SetAside(str(p), "discover", "no such file or folder"))


def dicomdir_references(path: Path) -> list[Path]:
    """Files referenced by the records of a DICOMDIR, relative to its folder."""
    ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
    out: list[Path] = []
    for rec in ds.get("DirectoryRecordSequence", []):
        ref = rec.get("ReferencedFileID")
        if ref:
            parts = [ref] if isinstance(ref, str) else list(ref)
            out.append(path.parent.joinpath(*parts))
    return out


def read_header(path: Path) -> Header | SetAside:
    """Read one file's header; a ``SetAside`` for anything that is not an image sagittal reads."""
    p = str(path)
    forced = False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                ds = pydicom.dcmread(path, stop_before_pixels=True)
            except InvalidDicomError:
                ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
                forced = True
                if "SOPClassUID" not in ds and "Modality" not in ds and "Rows" not in ds:
                    return SetAside(p, "read", "not a DICOM file (no DICOM preamble or header)")
    except Exception as exc:  # pydicom raises many kinds on corrupt headers
        return SetAside(p, "read", f"unreadable DICOM header: {type(exc).__name__}: {exc}"[:300])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # vendors' VR violations are common and not our concern here
        return _header_from(ds, p, forced)


def _header_from(ds: Dataset, p: str, forced: bool) -> Header | SetAside:
    try:
        meta = getattr(ds, "file_meta", None)
        sop_class = _text(ds, "SOPClassUID") or (_text(meta, "MediaStorageSOPClassUID") if meta is not None else "")
        if _tag("DirectoryRecordSequence") in ds or sop_class == "1.2.840.10008.1.3.10":
            return SetAside(p, "discover", "a DICOMDIR (media directory), not an image: the files it lists are read")
        if sop_class == KEY_OBJECT_SOP:
            return SetAside(p, "discover", "not an image: key object selection (KO)")
        for prefix, what in NON_IMAGE_SOP_PREFIXES.items():
            if sop_class.startswith(prefix):
                return SetAside(p, "discover", f"not an image: {what}")
        rows, cols = _int(ds, "Rows"), _int(ds, "Columns")
        if not rows or not cols:
            return SetAside(p, "discover", "not an image: no Rows/Columns (no pixel data)")
        ts = ""
        if meta is not None and "TransferSyntaxUID" in meta:
            ts = str(meta.TransferSyntaxUID)
        return Header(
            path=p,
            sop_class_uid=sop_class,
            sop_instance_uid=_text(ds, "SOPInstanceUID"),
            modality=_text(ds, "Modality").upper(),
            patient_id=_text(ds, "PatientID"),
            study_uid=_text(ds, "StudyInstanceUID"),
            series_uid=_text(ds, "SeriesInstanceUID"),
            study_key=(_text(ds, "StudyDate"), _text(ds, "StudyTime"), _text(ds, "StudyID"), _text(ds, "AccessionNumber")),
            series_number=_int(ds, "SeriesNumber"),
            series_description=_text(ds, "SeriesDescription"),
            protocol_name=_text(ds, "ProtocolName"),
            instance_number=_int(ds, "InstanceNumber"),
            rows=rows,
            columns=cols,
            frames=_int(ds, "NumberOfFrames") or 1,
            photometric=_text(ds, "PhotometricInterpretation").upper(),
            samples_per_pixel=_int(ds, "SamplesPerPixel") or 1,
            image_type=tuple(x.upper() for x in _multi(ds, "ImageType")),
            view_position=_text(ds, "ViewPosition").upper(),
            patient_orientation=tuple(x.upper() for x in _multi(ds, "PatientOrientation")),
            image_laterality=_text(ds, "ImageLaterality").upper(),
            body_part=_text(ds, "BodyPartExamined").upper(),
            orientation=_floats(ds, "ImageOrientationPatient", 6),
            position=_floats(ds, "ImagePositionPatient", 3),
            pixel_spacing=_multi(ds, "PixelSpacing") or None,
            imager_pixel_spacing=_multi(ds, "ImagerPixelSpacing") or None,
            magnification=_text(ds, "EstimatedRadiographicMagnificationFactor") or None,
            scanning_sequence=tuple(x.upper() for x in _multi(ds, "ScanningSequence")),
            sequence_variant=tuple(x.upper() for x in _multi(ds, "SequenceVariant")),
            scan_options=tuple(x.upper() for x in _multi(ds, "ScanOptions")),
            inversion_time=_float(ds, "InversionTime"),
            echo_time=_float(ds, "EchoTime"),
            repetition_time=_float(ds, "RepetitionTime"),
            slice_thickness=_float(ds, "SliceThickness"),
            sequence_name=_text(ds, "SequenceName"),
            transfer_syntax=ts,
            forced=forced,
            patient_sex=_text(ds, "PatientSex").upper(),
            patient_age=_text(ds, "PatientAge"),
            patient_birth_date=_text(ds, "PatientBirthDate"),
        )
    except Exception as exc:
        return SetAside(p, "read", f"malformed DICOM header: {type(exc).__name__}: {exc}"[:300])


def _read_all(paths: list[Path], workers: int) -> list[Header | SetAside]:
    if workers <= 1 or len(paths) < 400:
        return [read_header(p) for p in paths]
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(read_header, paths, chunksize=128))


def discover(inputs: Iterable[str | os.PathLike[str]], workers: int | None = None) -> tuple[list[Header], list[SetAside]]:
    """Headers of every image file under ``inputs`` and every other file set aside with a reason.

    Headers are read by ``workers`` processes (default: every core) once there are enough
    files to pay for starting them; the order of the results follows the walk.
    """
    set_aside: list[SetAside] = []
    pending = list(walk(inputs, set_aside))
    seen = {os.path.realpath(p) for p in pending}
    for path in list(pending):
        if not path.name.upper().startswith("DICOMDIR"):
            continue
        try:
            refs = dicomdir_references(path)
        except Exception as exc:
            set_aside.append(SetAside(str(path), "read", f"unreadable DICOMDIR: {exc}"[:300]))
            pending.remove(path)
            continue
        for ref in refs:
            key = os.path.realpath(ref)
            if key in seen:
                continue
            seen.add(key)
            if ref.is_file():
                pending.append(ref)
            else:
                set_aside.append(SetAside(str(ref), "discover", f"listed in {path} but missing"))
    headers: list[Header] = []
    for r in _read_all(pending, workers or os.cpu_count() or 1):
        if isinstance(r, Header):
            headers.append(r)
        else:
            set_aside.append(r)
    return headers, set_aside


def source_demographics(h: Header) -> dict[str, str | int | None]:
    """Optional ``source`` fields of an analysis document for the research cohort.

    ``study_time`` (DICOM TM as written), ``patient_sex`` (M, F or O) and ``patient_age_years``
    (whole years from PatientAge, else from PatientBirthDate at StudyDate; None if neither).
    The birth date itself is not returned: documents carry the age only.
    """
    from ..cohort.deid import age_years, date_ordinal, sex_code

    years = age_years(h.patient_age or None, h.patient_birth_date or None, date_ordinal(h.study_key[0]))
    return {"study_time": h.study_key[1] or None, "patient_sex": sex_code(h.patient_sex),
            "patient_age_years": None if years is None else int(years)}
