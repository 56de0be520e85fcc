"""A PACS export as patients → studies → series, each classified and calibrated, and the
loaders that turn a series into an analysable image or volume.

Missing UIDs never merge unrelated files silently: a study without StudyInstanceUID is keyed
by patient, study date/time, StudyID and accession number; a series without
SeriesInstanceUID by its study, SeriesNumber, modality and description — each with a warning.
"""

from __future__ import annotations

import hashlib
import os
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..cohort.pseudonym import keyed_pseudonym
from ..errors import CalibrationError, DicomReadError
from .calibration import Calibration, parse_spacing, radiograph_calibration
from .classify import mr_weighting, orientation_name, radiograph_view, series_kind
from .decode import decode
from .discover import Header, SetAside, discover
from .volume import (
    SagittalPlane,
    VolumeGeometry,
    deshear,
    enhanced_geometry,
    reformat_sagittal,
    slice_geometry,
    volume_calibration,
)


def pseudonym(patient_id: str, key: bytes | None = None) -> str:
    """A stable label for a patient, in place of the PatientID in folder names and logs.

    With ``key`` (the secret of a key file, ``sagittal.cohort.pseudonym.load_or_create_key``)
    it is the keyed pseudonym HMAC-SHA-256(key, PatientID) that ``sagittal cohort`` uses too:
    without the key it cannot be traced back to the PatientID. Without a key it is an unkeyed
    SHA-256 of the PatientID: only a label, NOT a protection, since anyone can hash
    candidate record numbers and find the match; pass a key wherever outputs leave the
    clinical setting.
    """
    if key is not None:
        return keyed_pseudonym(patient_id, key)
    return "patient-" + hashlib.sha256(("sagittal:" + patient_id).encode()).hexdigest()[:10]


@dataclass
class Series:
    """One series of an export, classified; ``headers`` in instance order."""

    headers: list[Header]
    kind: str  # radiograph | volume
    modality: str
    study_uid: str | None
    series_uid: str | None
    view: str | None = None  # radiographs
    orientation: str | None = None  # volumes
    weighting: str | None = None  # MR
    calibration: Calibration | None = None
    decoders: set[str] = field(default_factory=set)
    warnings: list[str] = field(default_factory=list)

    @property
    def files(self) -> list[str]:
        return [h.path for h in self.headers]

    def to_json(self) -> dict[str, Any]:
        h = self.headers[0]
        return {
            "files": self.files,
            "patient": pseudonym(h.patient_id),
            "study_instance_uid": self.study_uid,
            "series_instance_uid": self.series_uid,
            "series_description": h.series_description,
            "modality": self.modality,
            "kind": self.kind,
            "view": self.view,
            "orientation": self.orientation,
            "weighting": self.weighting,
            "instances": len(self.headers),
            "rows": h.rows,
            "columns": h.columns,
            "frames": sum(x.frames for x in self.headers),
            "calibration": None if self.calibration is None else self.calibration.to_json(),
            "decoder": sorted(self.decoders),
            "transfer_syntaxes": sorted({x.transfer_syntax for x in self.headers}),
            "warnings": list(self.warnings),
        }


@dataclass
class Export:
    series: list[Series]
    set_aside: list[SetAside]
    warnings: list[str]

    def to_json(self) -> dict[str, Any]:
        return {"series": [s.to_json() for s in self.series],
                "set_aside": [{"path": a.path, "stage": a.stage, "reason": a.reason} for a in self.set_aside],
                "warnings": list(self.warnings)}


#: a study or series key: the UID, or (when it is missing) a tuple of the fallbacks
GroupKey = str | tuple[object, ...]


def _group(headers: list[Header], warnings: list[str]) -> dict[tuple[str, GroupKey, GroupKey], list[Header]]:
    groups: dict[tuple[str, GroupKey, GroupKey], list[Header]] = defaultdict(list)
    warned_study: set[GroupKey] = set()
    warned_series: set[GroupKey] = set()
    for h in headers:
        study: GroupKey = h.study_uid or ("no-study-uid", h.patient_id, *h.study_key)
        if not h.study_uid and study not in warned_study:
            warned_study.add(study)
            warnings.append(f"files without StudyInstanceUID (e.g. {h.path}) grouped by patient, study date/time, "
                            "StudyID and accession number")
        series: GroupKey = h.series_uid or ("no-series-uid", study, h.series_number, h.modality, h.series_description)
        if not h.series_uid and series not in warned_series:
            warned_series.add(series)
            warnings.append(f"files without SeriesInstanceUID (e.g. {h.path}) grouped by study, SeriesNumber, "
                            "modality and description")
        groups[(h.patient_id, study, series)].append(h)
    return groups


def _sort_key(h: Header) -> tuple[int, str]:
    return (h.instance_number if h.instance_number is not None else 1 << 30, h.path)


def scan_export(inputs: Iterable[str | os.PathLike[str]], *, decode_pixels: bool = True) -> Export:
    """Discover, group, classify and calibrate everything under ``inputs``.

    With ``decode_pixels`` every image is decoded once (files that fail are set aside at
    stage ``decode``); without it only headers are read.
    """
    headers, set_aside = discover(inputs)
    warnings: list[str] = []
    series_list: list[Series] = []
    for (_, study, series_key), hs in sorted(_group(headers, warnings).items(), key=lambda kv: str(kv[0])):
        unique = _without_duplicates(sorted(hs, key=_sort_key), set_aside)
        s = _classified(unique, study, series_key, set_aside)
        if s is not None:
            series_list.append(s)
    kept = [s for s in series_list if _decode_and_calibrate(s, decode_pixels, set_aside)]
    return Export(kept, set_aside, warnings)


def _without_duplicates(hs: list[Header], set_aside: list[SetAside]) -> list[Header]:
    """The same instance twice (e.g. exported in two transfer syntaxes): the first is kept."""
    first_by_uid: dict[str, str] = {}
    unique = []
    for h in hs:
        if h.sop_instance_uid and h.sop_instance_uid in first_by_uid:
            set_aside.append(SetAside(h.path, "group", f"duplicate of {first_by_uid[h.sop_instance_uid]} "
                                      "(same SOPInstanceUID)"))
            continue
        first_by_uid.setdefault(h.sop_instance_uid, h.path)
        unique.append(h)
    return unique


def _classified(hs: list[Header], study: GroupKey, series_key: GroupKey, set_aside: list[SetAside]) -> Series | None:
    """The series of ``hs`` (instance order) with its kind, view or orientation; ``None`` when
    it is not a kind sagittal reads (every file set aside at stage ``classify``)."""
    kind, why = series_kind(hs[0])
    if kind is None:
        set_aside += [SetAside(h.path, "classify", why) for h in hs]
        return None
    study_uid = study if isinstance(study, str) else None
    series_uid = series_key if isinstance(series_key, str) else None
    if kind == "radiograph":  # colour radiographs are converted to grey at decode
        view, notes = radiograph_view(hs[0])
        s = Series(hs, kind, hs[0].modality, study_uid, series_uid, view=view, warnings=list(notes))
        s.calibration = radiograph_calibration(hs[0], notes)
        return s
    hs = _main_orientation(hs, set_aside)
    s = Series(hs, "volume", hs[0].modality, study_uid, series_uid, orientation=orientation_name(hs[0].orientation))
    if s.modality == "MR":
        s.weighting = mr_weighting(hs[0])
    return s


def _main_orientation(hs: list[Header], set_aside: list[SetAside]) -> list[Header]:
    """Split a series by slice orientation (localisers and reformats often share a series
    UID): the largest group is the volume, the others are set aside at stage ``group``."""
    by_orient: dict[tuple[float, ...] | None, list[Header]] = defaultdict(list)
    for h in hs:
        key = tuple(float(v) for v in np.round(h.orientation, 3)) if h.orientation else None
        by_orient[key].append(h)
    main_key = max(by_orient, key=lambda k: len(by_orient[k]))
    for key, group in by_orient.items():
        if key != main_key:
            set_aside += [SetAside(h.path, "group", "slice orientation differs from the rest of its series "
                                   "(a localiser or reformat); not part of the volume") for h in group]
    return by_orient[main_key]


def _decode_and_calibrate(s: Series, decode_pixels: bool, set_aside: list[SetAside]) -> bool:
    """Decode every file of ``s`` once (unless not ``decode_pixels``) and calibrate a volume from
    its slices; files that fail are set aside. ``False`` when nothing of ``s`` is left."""
    good = [h for h in s.headers if not decode_pixels or _decoded(s, h, set_aside)]
    s.headers = good
    if not good:
        return False
    if s.kind == "volume" and s.calibration is None:
        if len(good) == 1 and good[0].frames == 1:
            ps = parse_spacing(good[0].pixel_spacing)
            s.calibration = Calibration(ps, "volume" if ps else "none",
                                        warnings=("a single slice: no slice spacing",) if ps else
                                        ("no usable PixelSpacing",))
        else:
            try:
                geom = slice_geometry([h.position for h in good], [h.orientation for h in good],
                                      [h.pixel_spacing for h in good], good[0].path)
                s.calibration = volume_calibration(geom)
            except CalibrationError as exc:
                set_aside += [SetAside(h.path, "calibrate", str(exc)) for h in good]
                return False
    if s.calibration is not None:
        s.warnings += [w for w in s.calibration.warnings if w not in s.warnings]
    return True


def _decoded(s: Series, h: Header, set_aside: list[SetAside]) -> bool:
    """Decode one file of ``s`` (an enhanced multi-frame volume also gets its calibration);
    ``False``, with the file set aside, when it cannot be decoded or calibrated."""
    try:
        d = decode(h.path, radiograph=s.kind == "radiograph")
        if s.kind == "volume" and h.frames > 1:
            if len(s.headers) > 1:
                raise CalibrationError(f"{h.path}: a multi-frame image inside a series of several files; "
                                       "sagittal reads one enhanced multi-frame file per series")
            pos, ori, sp = enhanced_geometry(d.dataset, h.path)
            s.calibration = volume_calibration(slice_geometry(pos, ori, sp, h.path))
            s.orientation = orientation_name(tuple(ori[0]) if ori[0] else None)
        s.decoders.add(d.decoder)
        return True
    except DicomReadError as exc:
        set_aside.append(SetAside(h.path, "decode", str(exc)))
    except CalibrationError as exc:
        set_aside.append(SetAside(h.path, "calibrate", str(exc)))
    return False


@dataclass(frozen=True)
class LoadedVolume:
    """A decoded volume in slice order with its geometry."""

    voxels: np.ndarray  # (k, rows, cols) float32 (HU for CT)
    geometry: VolumeGeometry
    decoder: str

    def sagittal(self, **kw: Any) -> SagittalPlane:
        threshold = kw.pop("threshold", 200.0 if kw.pop("modality", "CT") == "CT" else None)
        return reformat_sagittal(self.voxels, self.geometry, threshold=threshold, **kw)


def load_volume(series: Series) -> LoadedVolume:
    """Decode every slice of a volume series (or the frames of one enhanced file) in order."""
    if series.kind != "volume":
        raise ValueError("load_volume takes a CT or MR series")
    if len(series.headers) == 1 and series.headers[0].frames > 1:
        d = decode(series.headers[0].path)
        pos, ori, sp = enhanced_geometry(d.dataset, series.headers[0].path)
        geom = slice_geometry(pos, ori, sp, series.headers[0].path)
        return LoadedVolume(*deshear(d.pixels[geom.order], geom, str(series.headers[0].path)), d.decoder)
    geom = slice_geometry([h.position for h in series.headers], [h.orientation for h in series.headers],
                          [h.pixel_spacing for h in series.headers], series.headers[0].path)
    slices, decoders = [], set()
    for k in geom.order:
        d = decode(series.headers[k].path)
        slices.append(d.pixels[0])
        decoders.add(d.decoder)
    return LoadedVolume(*deshear(np.stack(slices), geom, str(series.headers[0].path)), "+".join(sorted(decoders)))


@dataclass(frozen=True)
class LoadedRadiograph:
    pixels: np.ndarray  # (rows, cols) float32, bone-bright
    calibration: Calibration
    header: Header
    decoder: str
    notes: tuple[str, ...]


def load_radiographs(series: Series) -> list[LoadedRadiograph]:
    """Decode each image of a radiograph series with its own calibration."""
    out = []
    for h in series.headers:
        view, notes = radiograph_view(h)
        d = decode(h.path, radiograph=True)
        out.append(LoadedRadiograph(d.pixels[0], radiograph_calibration(h, notes), h, d.decoder, d.notes))
    return out
