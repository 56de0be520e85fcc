"""DICOM Structured Report of an analysis document: a Comprehensive SR holding the TID 1500
Measurement Report (highdicom), so the results sit in the PACS beside the images.

Content (docs/dicom.md lists every code):

- one measurement group per vertebra (TID 1501): anterior / middle / posterior heights,
  height loss, regional and vertebral kyphosis, each with the landmarks it came from as
  spatial coordinates, and as qualitative evaluations the Genant grade, the morphology,
  oedema and cleft where known. A vertebra whose points are steady (not ``landmarks.ungraded``)
  but whose grade is null (a CT/MR series too coarse along the spine's axis at that level, or no
  reference left for its expected height: see ``report.analysis``) gets the Genant evaluation
  ``GENANT-NG`` (grade withheld), so the withholding is explicit; a CT/MR
  document's vertebrae carry how finely the series sampled the spine's axis there (``AXS``,
  mm: the level's own ``landmarks.axis_sampling_mm`` where listed, else
  ``image.axis_sampling_mm``);
- one group for the spinopelvic parameters (TID 1501), each parameter with its landmarks.

Coordinates. The analysis document's image points are ``[x, y] = [column, row]`` with
``(0, 0)`` the centre of the top-left pixel. DICOM SCOORD puts ``(0.0, 0.0)`` at the top-left
*corner* of the top-left pixel (PS3.3 C.18.6.1.2), so 0.5 is added on the way out and taken
off on the way back. A CT or MR document's points lie on a reformatted sagittal plane, not
on a stored image: they go out as SCOORD3D in the source's frame of reference, mapped with
``image.plane`` (position of pixel (0, 0)'s centre, row and column direction cosines, LPS mm).

UIDs are derived (``2.25.`` + a name-based UUID, PS3.5 B.2) from the source SOP Instance
UIDs, so a rerun on the same image gives the same series and tracking UIDs, and the same SOP
Instance UID as long as the content is unchanged.

Codes: SNOMED CT, DCM and UCUM where pydicom's code dictionary has a fitting concept;
otherwise the private coding scheme ``99SAGITTAL`` (documented in docs/dicom.md), never an
invented code in a standard scheme.
"""

from __future__ import annotations

import hashlib
import json
import math
import uuid
from collections.abc import Sequence
from typing import Any

import numpy as np
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes

from .. import __version__
from ..levels import LEVEL_AXIS_SAMPLING, LEVELS, POINT_NAMES, UNGRADED, level_axis_sampling, ungraded_reasons

__all__ = ["PRIVATE_SCHEME", "derived_uid", "read_sr", "reportable", "sr_dataset"]

PRIVATE_SCHEME = "99SAGITTAL"
SR_SERIES_NUMBER = 7701
SR_SERIES_DESCRIPTION = "sagittal measurements (SR)"
MANUFACTURER = "sagittal"
ALGORITHM_NAME = "sagittal landmarks and geometry"


def _private(value: str, meaning: str) -> Any:
    from highdicom.sr import CodedConcept

    return CodedConcept(value=value, scheme_designator=PRIVATE_SCHEME, meaning=meaning)


def _code(c: Any) -> Any:
    from highdicom.sr import CodedConcept

    return CodedConcept(value=c.value, scheme_designator=c.scheme_designator, meaning=c.meaning)


# ---------------------------------------------------------------------------------------------
# Concepts: analysis-document key -> (code, meaning[, unit])

UNIT_DEG, UNIT_MM, UNIT_PCT = codes.UCUM.Degree, codes.UCUM.Millimeter, codes.UCUM.Percent

PARAMETERS: dict[str, tuple[str, str, Any]] = {
    # key: (private code value, meaning, unit); no SNOMED CT / LOINC / DCM concept exists in
    # pydicom's dictionary for these spinopelvic parameters (checked), hence the private scheme.
    "pelvic_incidence_deg": ("PI", "Pelvic incidence", UNIT_DEG),
    "pelvic_tilt_deg": ("PT", "Pelvic tilt", UNIT_DEG),
    "sacral_slope_deg": ("SS", "Sacral slope", UNIT_DEG),
    "lumbar_lordosis_deg": ("LL", "Lumbar lordosis (L1-S1 Cobb)", UNIT_DEG),
    "thoracic_kyphosis_deg": ("TK", "Thoracic kyphosis (T4-T12 Cobb)", UNIT_DEG),
    "sagittal_vertical_axis_mm": ("SVA", "Sagittal vertical axis (C7 plumb line to S1)", UNIT_MM),
    "pi_ll_mismatch_deg": ("PI-LL", "Pelvic incidence minus lumbar lordosis", UNIT_DEG),
    "t1_pelvic_angle_deg": ("TPA", "T1 pelvic angle", UNIT_DEG),
}
VERTEBRA_ANGLES: dict[str, tuple[str, str]] = {
    "regional_kyphosis_deg": ("RK", "Regional kyphosis angle"),
    "vertebral_kyphosis_deg": ("VK", "Vertebral kyphosis angle"),
}
HEIGHT_LOSS = ("VHL", "Vertebral height loss (Genant)")
OEDEMA_EXTENT = ("OEDEXT", "Bone marrow oedema extent")
GENANT = ("GENANT", "Genant semiquantitative fracture grade")
GENANT_GRADES = {g: (f"GENANT-{g}", f"Genant grade {g}") for g in range(4)}
#: the Genant value of a vertebra whose points are steady but whose grade is null: withheld on purpose (a series
#: too coarse along the spine's axis at that level, report.analysis.GRADE_AXIS_SAMPLING_MAX_MM; no reference left
#: for its expected height)
GENANT_WITHHELD = ("GENANT-NG", "Genant grade withheld")
#: how finely a CT/MR series sampled the spine's axis at a vertebra (mm)
AXIS_SAMPLING = ("AXS", "Sampling of the spine's axis")
MORPHOLOGY = ("VMORPH", "Vertebral body deformity type")
CLEFT = ("CLEFT", "Intravertebral cleft")
CLEFT_CONTENT = ("CLEFTCONT", "Intravertebral cleft content")
PRIVATE_MORPHOLOGY = {"normal": ("MORPH-NORMAL", "No vertebral deformity"),
                      "biconcave": ("MORPH-BICONCAVE", "Biconcave deformity"),
                      "crush": ("MORPH-CRUSH", "Crush deformity")}
HEIGHT_SIDES = {"anterior": codes.SCT.Anterior, "middle": codes.SCT.Central, "posterior": codes.SCT.Posterior}


def _vertebra_code(level: str) -> Any:
    return getattr(codes.SCT, f"{level}Vertebra")


def _morphology_code(m: str) -> Any:
    if m == "wedge":
        return _code(codes.SCT.WedgeShaped)
    return _private(*PRIVATE_MORPHOLOGY[m])


def _procedure(modality: str | None) -> Any:
    # no generic "magnetic resonance imaging" procedure in pydicom's dictionary: MR gets "Imaging procedure"
    return {"CT": codes.SCT.ComputedTomography, "MR": codes.SCT.ImagingProcedure}.get(
        (modality or "").upper(), codes.SCT.PlainRadiography)


# ---------------------------------------------------------------------------------------------
# UIDs


#: namespace of sagittal's name-based UUIDs
UID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:sagittal:dicom")


def derived_uid(*parts: str) -> str:
    """A ``2.25.`` UID (PS3.5 B.2) from the name-based (SHA-1, RFC 4122 version 5) UUID of
    ``parts``: the same parts give the same UID. (pydicom's ``generate_uid(prefix=None)``
    returns a random UUID whatever its entropy sources, so it cannot serve here.)"""
    return f"2.25.{uuid.uuid5(UID_NAMESPACE, chr(31).join(str(p) for p in parts)).int}"


#: what ``sr_dataset`` writes for a CT/MR document (one with ``image.axis_sampling_mm``), by version: bumped when it
#: writes something new for the same document, so that the SR's SOP Instance UID changes with its content (a PACS
#: keeps the first instance of a UID and may ignore a changed one). 2 (seventeenth session): AXS on every
#: vertebra and GENANT-NG for a measured vertebra not graded. Radiograph SRs are not re-versioned (version 1, not
#: hashed): a radiograph document whose steady level has a null grade (no reference left, new this session; or a
#: document written without its landmarks.ungraded map, 2026-12-06 19:42-20:18) gets GENANT-NG under its old UID
VOLUME_SR_ENCODING = 2


def content_hash(document: dict, model_sha256: str | None) -> str:
    """SHA-256 of the document's canonical JSON, the model checksum and sagittal's version (and, for a CT/MR
    document, ``VOLUME_SR_ENCODING``)."""
    text = json.dumps(document, sort_keys=True, separators=(",", ":"), default=str)
    image = document.get("image") if isinstance(document.get("image"), dict) else {}
    encoding = f"|sr{VOLUME_SR_ENCODING}" if isinstance(image, dict) and image.get("axis_sampling_mm") is not None else ""
    return hashlib.sha256(f"{text}|{model_sha256}|{__version__}{encoding}".encode()).hexdigest()


def model_checksum(document: dict, model_sha256: str | None = None) -> str | None:
    """The weights' SHA-256 as given, or as the document records it (``software.model_sha256``)."""
    if model_sha256:
        return model_sha256
    sw = document.get("software")
    if isinstance(sw, dict):
        for key in ("model_sha256", "weights_sha256"):
            if isinstance(sw.get(key), str):
                return str(sw[key])
    return None


# ---------------------------------------------------------------------------------------------
# Geometry: document pixels -> SCOORD / SCOORD3D


class _Frame:
    """Maps document image points (``[x, y]``, centre-of-pixel origin) to SR coordinates."""

    def __init__(self, document: dict, sources: Sequence[Dataset]) -> None:
        from highdicom.sr import SourceImageForRegion

        image = document.get("image") or {}
        self.plane = image.get("plane")
        sop_uids = list((document.get("source") or {}).get("sop_instance_uids") or [])
        if self.plane is None:
            ref = next((d for d in sources if str(getattr(d, "SOPInstanceUID", "")) in sop_uids), sources[0])
            self.source_image = SourceImageForRegion(str(ref.SOPClassUID), str(ref.SOPInstanceUID))
            self.frame_uid: str = ""
        else:
            spacing = image.get("pixel_spacing_mm")
            if not spacing:
                raise ValueError("a CT/MR document without pixel_spacing_mm cannot be mapped to the patient frame")
            frame_uids = {str(d.FrameOfReferenceUID) for d in sources if "FrameOfReferenceUID" in d}
            if len(frame_uids) != 1:
                raise ValueError(f"the source datasets hold {len(frame_uids)} frames of reference, need exactly one "
                                 "for SCOORD3D")
            self.frame_uid = frame_uids.pop()
            iop = np.asarray(self.plane["image_orientation_patient"], float)
            self.origin = np.asarray(self.plane["image_position_patient"], float)
            # x (column index) runs along the row direction with the column spacing, y along the column direction
            self.step_x = iop[:3] * float(spacing[1])
            self.step_y = iop[3:] * float(spacing[0])

    @property
    def three_d(self) -> bool:
        return self.plane is not None

    def coords(self, points_xy: np.ndarray) -> np.ndarray:
        """``(K, 2)`` document points -> ``(K, 2)`` SCOORD or ``(K, 3)`` SCOORD3D (float32)."""
        p = np.asarray(points_xy, float).reshape(-1, 2)
        if self.plane is None:
            return (p + 0.5).astype(np.float32)
        return (self.origin + p[:, :1] * self.step_x + p[:, 1:] * self.step_y).astype(np.float32)

    def region(self, points_xy: np.ndarray) -> Any:
        from highdicom.sr import ImageRegion, ImageRegion3D

        closed = np.vstack([points_xy, points_xy[:1]])
        if self.three_d:
            return ImageRegion3D("POLYGON", self.coords(closed), self.frame_uid)
        return ImageRegion("POLYLINE", self.coords(closed), self.source_image)

    def measurement_coords(self, points_xy: np.ndarray, graphic: str = "POLYLINE") -> Any:
        from highdicom.sr import CoordinatesForMeasurement, CoordinatesForMeasurement3D

        pts = np.asarray(points_xy, float).reshape(-1, 2)
        if len(pts) == 1:
            graphic = "POINT"
        if self.three_d:
            return CoordinatesForMeasurement3D(graphic, self.coords(pts), self.frame_uid)
        return CoordinatesForMeasurement(graphic, self.coords(pts), self.source_image)

    def points_back(self, graphic_data: np.ndarray) -> np.ndarray:
        """SR coordinates -> document points ``(K, 2)``."""
        g = np.asarray(graphic_data, float)
        if self.plane is None:
            return g.reshape(-1, 2) - 0.5
        m = np.stack([self.step_x, self.step_y], axis=1)  # (3, 2)
        sol, *_ = np.linalg.lstsq(m, (g.reshape(-1, 3) - self.origin).T, rcond=None)
        return np.asarray(sol.T)


# ---------------------------------------------------------------------------------------------
# Landmarks behind each parameter


def _vpts(landmarks: dict, level: str) -> dict[str, np.ndarray] | None:
    v = (landmarks.get("vertebrae") or {}).get(level)
    if not v:
        return None
    return {k: np.asarray(v[k], float) for k in POINT_NAMES if k in v}


def _centroid(p: dict[str, np.ndarray]) -> np.ndarray:
    return np.mean([p[k] for k in POINT_NAMES[:4]], axis=0)


def _hip_axis(landmarks: dict) -> np.ndarray | None:
    heads = landmarks.get("femoral_heads") or []
    if not heads:
        return None
    return np.asarray(np.mean([np.asarray(h["center"], float) for h in heads], axis=0))


def _s1(landmarks: dict) -> tuple[np.ndarray, np.ndarray] | None:
    s1 = landmarks.get("s1_endplate")
    if not s1:
        return None
    return np.asarray(s1["anterior"], float), np.asarray(s1["posterior"], float)


def parameter_points(key: str, landmarks: dict) -> tuple[np.ndarray, str] | None:
    """The landmarks a parameter is measured from: ``(points (K, 2), graphic type)``."""
    s1, hip = _s1(landmarks), _hip_axis(landmarks)
    if key == "sacral_slope_deg" and s1:
        return np.array(s1), "POLYLINE"
    if key in ("pelvic_tilt_deg", "pelvic_incidence_deg") and s1 and hip is not None:
        return np.array([hip, (s1[0] + s1[1]) / 2, s1[0], s1[1]]), "MULTIPOINT"
    if key in ("lumbar_lordosis_deg", "pi_ll_mismatch_deg") and s1:
        l1 = _vpts(landmarks, "L1")
        if l1:
            pts = [l1["anterior_superior"], l1["posterior_superior"], s1[0], s1[1]]
            if key == "pi_ll_mismatch_deg" and hip is not None:
                pts.append(hip)
            return np.array(pts), "MULTIPOINT"
    if key == "thoracic_kyphosis_deg":
        t4, t12 = _vpts(landmarks, "T4"), _vpts(landmarks, "T12")
        if t4 and t12:
            return np.array([t4["anterior_superior"], t4["posterior_superior"], t12["anterior_inferior"],
                             t12["posterior_inferior"]]), "MULTIPOINT"
    if key == "sagittal_vertical_axis_mm" and s1:
        c7 = _vpts(landmarks, "C7")
        if c7:
            return np.array([_centroid(c7), s1[1]]), "MULTIPOINT"
    if key == "t1_pelvic_angle_deg" and s1 and hip is not None:
        t1 = _vpts(landmarks, "T1")
        if t1:
            return np.array([_centroid(t1), hip, (s1[0] + s1[1]) / 2]), "POLYLINE"
    return None


def _angle_points(key: str, level: str, landmarks: dict) -> np.ndarray | None:
    """Endplate corners behind a vertebra's regional or vertebral kyphosis."""
    own = _vpts(landmarks, level)
    if own is None:
        return None
    if key == "vertebral_kyphosis_deg":
        return np.array([own[k] for k in POINT_NAMES[:4]])
    i = LEVELS.index(level)
    above = _vpts(landmarks, LEVELS[i - 1]) if i > 0 else None
    below = _vpts(landmarks, LEVELS[i + 1]) if i + 1 < len(LEVELS) else None
    if above is None:
        return None
    if below is not None:
        return np.array([above["anterior_superior"], above["posterior_superior"], below["anterior_inferior"],
                         below["posterior_inferior"]])
    s1 = _s1(landmarks)
    if level == "L5" and s1:
        return np.array([above["anterior_superior"], above["posterior_superior"], s1[0], s1[1]])
    return None


# ---------------------------------------------------------------------------------------------
# The report


def _num(x: Any) -> float | None:
    if x is None or isinstance(x, bool):
        return None
    try:
        f = float(x)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _measurement(name: Any, value: float, unit: Any, frame: _Frame, points: np.ndarray | None,
                 graphic: str = "POLYLINE", sites: Sequence[Any] | None = None) -> Any:
    from highdicom.sr import Measurement

    coords = None if points is None else [frame.measurement_coords(points, graphic)]
    return Measurement(name=name, value=round(value, 6), unit=_code(unit), finding_sites=sites,
                       referenced_coordinates=coords)


def _qualitative(name: tuple[str, str] | Any, value: Any) -> Any:
    from highdicom.sr import QualitativeEvaluation

    concept = _code(name) if hasattr(name, "scheme_designator") else _private(*name)
    return QualitativeEvaluation(concept, value)


def _vertebra_evaluations(v: dict, measured: bool) -> list[Any]:
    """A vertebra's qualitative evaluations: Genant grade (``GENANT_WITHHELD`` where ``measured``, its points
    steady, but the grade is null), morphology, oedema, cleft and its content, where the document gives them."""
    oed: dict[str, Any] = v["oedema"] if isinstance(v.get("oedema"), dict) else {}
    evaluations: list[Any] = []
    if isinstance(v.get("genant_grade"), int) and v["genant_grade"] in GENANT_GRADES:
        evaluations.append(_qualitative(GENANT, _private(*GENANT_GRADES[v["genant_grade"]])))
    elif v.get("genant_grade") is None and measured:
        # measured but not graded: say so, rather than leave a reader with a loss and no grade
        evaluations.append(_qualitative(GENANT, _private(*GENANT_WITHHELD)))
    if v.get("morphology") in ("normal", "wedge", "biconcave", "crush"):
        evaluations.append(_qualitative(MORPHOLOGY, _morphology_code(v["morphology"])))
    if isinstance(oed.get("present"), bool):
        evaluations.append(_qualitative(codes.SCT.Edema, _code(codes.SCT.Present if oed["present"] else codes.SCT.Absent)))
    cl: dict[str, Any] = v["cleft"] if isinstance(v.get("cleft"), dict) else {}
    if isinstance(cl.get("present"), bool):
        evaluations.append(_qualitative(CLEFT, _code(codes.SCT.Present if cl["present"] else codes.SCT.Absent)))
        content = {"gas": codes.SCT.Gas, "fluid": codes.SCT.BodyFluid}.get(cl.get("content") or "")
        if content is not None:
            evaluations.append(_qualitative(CLEFT_CONTENT, _code(content)))
    return evaluations


def _vertebra_group(v: dict, landmarks: dict, frame: _Frame, algorithm: Any, uid_parts: list[str],
                    axis_mm: float | None = None) -> Any:
    from highdicom.sr import FindingSite, MeasurementsAndQualitativeEvaluations, TrackingIdentifier

    level = v["level"]
    site_code = _code(_vertebra_code(level))
    pts = _vpts(landmarks, level)
    measurements = []
    heights = v.get("heights_mm") or {}
    ends = {"anterior": ("anterior_superior", "anterior_inferior"), "middle": ("middle_superior", "middle_inferior"),
            "posterior": ("posterior_superior", "posterior_inferior")}
    for side, modifier in HEIGHT_SIDES.items():
        h = _num(heights.get(side))
        if h is None:
            continue
        seg = None if pts is None else np.array([pts[ends[side][0]], pts[ends[side][1]]])
        measurements.append(_measurement(_code(codes.DCM.Height), h, UNIT_MM, frame, seg,
                                         sites=[FindingSite(site_code, topographical_modifier=_code(modifier))]))
    loss = _num(v.get("height_loss_pct"))
    if loss is not None:
        outline = None if pts is None else np.array([pts[k] for k in POINT_NAMES])
        measurements.append(_measurement(_private(*HEIGHT_LOSS), loss, UNIT_PCT, frame, outline, "MULTIPOINT"))
    for key, (code, meaning) in VERTEBRA_ANGLES.items():
        a = _num(v.get(key))
        if a is not None:
            measurements.append(_measurement(_private(code, meaning), a, UNIT_DEG, frame,
                                             _angle_points(key, level, landmarks), "MULTIPOINT"))
    oed: dict[str, Any] = v["oedema"] if isinstance(v.get("oedema"), dict) else {}
    ext = _num(oed.get("extent_pct"))
    if ext is not None:
        measurements.append(_measurement(_private(*OEDEMA_EXTENT), ext, UNIT_PCT, frame, None))
    if axis_mm is not None:
        measurements.append(_measurement(_private(*AXIS_SAMPLING), axis_mm, UNIT_MM, frame, None))
    # measured: its points steady (not in landmarks.ungraded), so a null grade was withheld for another reason (a
    # coarse series, a gap, no reference for its expected height; review R17d: heights are null without a spacing)
    evaluations = _vertebra_evaluations(v, measured=level not in ungraded_reasons(landmarks.get(UNGRADED)))
    tracking = TrackingIdentifier(uid=derived_uid("sagittal-tracking", *uid_parts, level), identifier=f"vertebra {level}")
    # TID 1501 rather than 1410: TID 1410 forbids coordinates on its measurements, and here every
    # number carries the landmarks it came from (the outline: the six points of the height loss)
    return MeasurementsAndQualitativeEvaluations(
        tracking_identifier=tracking, finding_type=_code(codes.SCT.Vertebra), algorithm_id=algorithm,
        finding_sites=[FindingSite(site_code)], measurements=measurements or None,
        qualitative_evaluations=evaluations or None)


def _spinopelvic_group(document: dict, frame: _Frame, algorithm: Any, uid_parts: list[str]) -> Any | None:
    from highdicom.sr import FindingSite, MeasurementsAndQualitativeEvaluations, TrackingIdentifier

    params = document.get("parameters") or {}
    landmarks = document.get("landmarks") or {}
    measurements = []
    for key, (code, meaning, unit) in PARAMETERS.items():
        value = _num(params.get(key))
        if value is None:
            continue
        found = parameter_points(key, landmarks)
        pts, graphic = (None, "POLYLINE") if found is None else found
        measurements.append(_measurement(_private(code, meaning), value, unit, frame, pts, graphic))
    if not measurements:
        return None
    tracking = TrackingIdentifier(uid=derived_uid("sagittal-tracking", *uid_parts, "spinopelvic"),
                                  identifier="spinopelvic parameters")
    return MeasurementsAndQualitativeEvaluations(
        tracking_identifier=tracking, finding_type=_code(codes.SCT.Spine), algorithm_id=algorithm,
        finding_sites=[FindingSite(_code(codes.SCT.Spine))], measurements=measurements)


def reportable(document: dict) -> bool:
    """Whether ``document`` has anything for an SR: an analysed status and a vertebra or a value."""
    if document.get("status") not in ("ok", "partial"):
        return False
    params = document.get("parameters") or {}
    return bool(document.get("vertebrae")) or any(_num(params.get(k)) is not None for k in PARAMETERS)


def sr_dataset(document: dict, source_datasets: Sequence[Dataset], *, model_sha256: str | None = None) -> Dataset:
    """The Comprehensive SR (TID 1500 Measurement Report) of one analysis document.

    ``source_datasets`` are the headers of the document's source instances (pixel data not
    needed): they give patient, study and the evidence; the SR goes into the source's study
    as a new series. A CT/MR document (``image.plane``) gives a Comprehensive 3D SR with
    SCOORD3D; a radiograph a Comprehensive SR with SCOORD on the source image. Raises
    ``ValueError`` for a rejected document, sources that do not match it, or a malformed
    ``landmarks.axis_sampling_mm`` (``InputError``).
    """
    from highdicom.sr import (
        AlgorithmIdentification,
        Comprehensive3DSR,
        ComprehensiveSR,
        DeviceObserverIdentifyingAttributes,
        MeasurementReport,
        ObservationContext,
        ObserverContext,
    )

    if document.get("status") not in ("ok", "partial"):
        raise ValueError(f"document status is {document.get('status')!r}: nothing to report in an SR")
    if not source_datasets:
        raise ValueError("no source datasets: an SR needs the images it describes as evidence")
    src = document.get("source") or {}
    sop_uids = [str(u) for u in src.get("sop_instance_uids") or []]
    have = {str(getattr(d, "SOPInstanceUID", "")) for d in source_datasets}
    missing = [u for u in sop_uids if u not in have]
    if missing or not sop_uids:
        raise ValueError(f"the source datasets do not include the document's instances ({len(missing)} missing)"
                         if sop_uids else "the document names no source SOP Instance UIDs")
    study_uids = {str(d.StudyInstanceUID) for d in source_datasets}
    if len(study_uids) != 1:
        raise ValueError(f"the source datasets span {len(study_uids)} studies; an SR belongs to one")
    checksum = model_checksum(document, model_sha256)
    frame = _Frame(document, source_datasets)
    algorithm = AlgorithmIdentification(
        name=ALGORITHM_NAME, version=__version__,
        parameters=[f"model_sha256={checksum or 'not recorded'}"])
    observer = ObserverContext(
        observer_type=_code(codes.DCM.Device),
        observer_identifying_attributes=DeviceObserverIdentifyingAttributes(
            uid=derived_uid("sagittal-device", __version__), name="sagittal", manufacturer_name=MANUFACTURER,
            model_name=ALGORITHM_NAME, serial_number=(checksum or "unknown")[:64]))
    groups: list[Any] = []
    landmarks = document.get("landmarks") or {}
    # CT/MR: the series' sampling of the spine's axis, a level's own where slices are missing at its endplates
    series_axis_mm = _num((document.get("image") or {}).get("axis_sampling_mm"))
    # the levels' own only with the series' (as report.analysis requires): a radiograph gets no AXS
    level_axis_mm = level_axis_sampling(landmarks.get(LEVEL_AXIS_SAMPLING)) if series_axis_mm is not None else {}
    for v in document.get("vertebrae") or []:
        if v.get("level") in LEVELS:
            groups.append(_vertebra_group(v, landmarks, frame, algorithm, sop_uids,
                                          level_axis_mm.get(v["level"], series_axis_mm)))
    spinopelvic = _spinopelvic_group(document, frame, algorithm, sop_uids)
    if spinopelvic is not None:
        groups.append(spinopelvic)
    if not groups:
        raise ValueError("the document holds no measurement and no vertebra: nothing to report in an SR")
    report = MeasurementReport(
        observation_context=ObservationContext(observer_device_context=observer),
        procedure_reported=_code(_procedure(src.get("modality"))),
        imaging_measurements=groups,
        title=_code(codes.DCM.ImagingMeasurementReport))
    cls = Comprehensive3DSR if frame.three_d else ComprehensiveSR
    evidence = sorted(source_datasets, key=lambda d: str(d.SOPInstanceUID))
    sr = cls(
        evidence=evidence, content=report[0],
        series_instance_uid=derived_uid("sagittal-sr-series", *sop_uids),
        series_number=SR_SERIES_NUMBER,
        sop_instance_uid=derived_uid("sagittal-sr", *sop_uids, content_hash(document, checksum)),
        instance_number=1, manufacturer=MANUFACTURER, is_complete=True,
        series_description=SR_SERIES_DESCRIPTION)
    scheme = Dataset()
    scheme.CodingSchemeDesignator = PRIVATE_SCHEME
    scheme.CodingSchemeName = "sagittal private codes (docs/dicom.md)"
    scheme.CodingSchemeResponsibleOrganization = "the sagittal project"
    sr.CodingSchemeIdentificationSequence = [scheme]
    return sr


# ---------------------------------------------------------------------------------------------
# Reading back


def _concept_key(c: Any) -> tuple[str, str]:
    """(scheme, code) of a Code, a CodedConcept or a code sequence item."""
    if hasattr(c, "CodeValue"):
        return str(c.CodingSchemeDesignator), str(c.CodeValue)
    return str(c.scheme_designator), str(c.value)


def _points_back(item: Any, frame: _Frame | None) -> np.ndarray | None:
    g = np.asarray(item.value, float)
    if g.shape[-1] == 2:
        return g.reshape(-1, 2) - 0.5
    return None if frame is None else frame.points_back(g)


def _algorithm(group: Any) -> dict[str, Any] | None:
    """Algorithm name, version and parameters (TID 4019) of a measurement group."""
    names = {_concept_key(codes.DCM.AlgorithmName): "name", _concept_key(codes.DCM.AlgorithmVersion): "version",
             _concept_key(codes.DCM.AlgorithmParameters): "parameters"}
    found: dict[str, Any] = {}
    for item in group[0].ContentSequence:
        key = names.get(_concept_key(item.ConceptNameCodeSequence[0]))
        if key == "parameters":
            found.setdefault("parameters", []).append(str(item.TextValue))
        elif key:
            found[key] = str(item.TextValue)
    return found or None


def _plane_frame(plane: dict, pixel_spacing_mm: Sequence[float]) -> _Frame:
    frame = _Frame.__new__(_Frame)
    frame.plane = plane
    iop = np.asarray(plane["image_orientation_patient"], float)
    frame.origin = np.asarray(plane["image_position_patient"], float)
    frame.step_x, frame.step_y = iop[:3] * float(pixel_spacing_mm[1]), iop[3:] * float(pixel_spacing_mm[0])
    return frame


def _read_vertebra_measurements(group: Any, v: dict[str, Any], frame: _Frame | None) -> dict[str, list[float]] | None:
    """Fill ``v`` from a vertebra group's measurements; return its six points when present."""
    by_code_angle = {(PRIVATE_SCHEME, code): key for key, (code, _) in VERTEBRA_ANGLES.items()}
    side_by_code = {_concept_key(c): side for side, c in HEIGHT_SIDES.items()}
    points = None
    for m in group.get_measurements():
        ck = _concept_key(m.name)
        if ck == _concept_key(codes.DCM.Height):
            mod = m.finding_sites[0].topographical_modifier if m.finding_sites else None  # a CodedConcept
            if mod is not None:
                v["heights_mm"][side_by_code[_concept_key(mod)]] = float(m.value)
        elif ck == (PRIVATE_SCHEME, HEIGHT_LOSS[0]):
            v["height_loss_pct"] = float(m.value)
            for c in m.referenced_coordinates or []:
                pts = _points_back(c, frame)
                if pts is not None:
                    points = dict(zip(POINT_NAMES, pts.tolist(), strict=False))
        elif ck == (PRIVATE_SCHEME, OEDEMA_EXTENT[0]):
            v.setdefault("oedema", {})["extent_pct"] = float(m.value)
        elif ck == (PRIVATE_SCHEME, AXIS_SAMPLING[0]):
            v["axis_sampling_mm"] = float(m.value)
        elif ck in by_code_angle:
            v[by_code_angle[ck]] = float(m.value)
    return points


def _read_vertebra_evaluations(group: Any, v: dict[str, Any]) -> None:
    grade_by_code: dict[tuple[str, str], int | None] = {(PRIVATE_SCHEME, c): g for g, (c, _) in GENANT_GRADES.items()}
    grade_by_code[(PRIVATE_SCHEME, GENANT_WITHHELD[0])] = None  # measured, grade withheld
    morph_by_code = {(PRIVATE_SCHEME, c): m for m, (c, _) in PRIVATE_MORPHOLOGY.items()}
    morph_by_code[_concept_key(codes.SCT.WedgeShaped)] = "wedge"
    present = _concept_key(codes.SCT.Present)
    for q in group.get_qualitative_evaluations():
        ck, val = _concept_key(q.name), _concept_key(q.value)
        if ck == (PRIVATE_SCHEME, GENANT[0]):
            v["genant_grade"] = grade_by_code[val]
        elif ck == (PRIVATE_SCHEME, MORPHOLOGY[0]):
            v["morphology"] = morph_by_code[val]
        elif ck == _concept_key(codes.SCT.Edema):
            v.setdefault("oedema", {})["present"] = val == present
        elif ck == (PRIVATE_SCHEME, CLEFT[0]):
            v.setdefault("cleft", {})["present"] = val == present
        elif ck == (PRIVATE_SCHEME, CLEFT_CONTENT[0]):
            v.setdefault("cleft", {})["content"] = "gas" if val == _concept_key(codes.SCT.Gas) else "fluid"


def read_sr(dataset: Dataset, plane: dict | None = None, pixel_spacing_mm: Sequence[float] | None = None) -> dict:
    """The values of an SR written by :func:`sr_dataset`, in the analysis document's shapes:
    ``{"parameters", "vertebrae", "points_px", "algorithm"}`` (SCOORD3D points are mapped
    back to the plane when ``plane`` and ``pixel_spacing_mm`` are given). A vertebra's dict
    holds only what the SR carries; ``genant_grade`` is ``None`` (present) where the SR says the
    grade was withheld (``GENANT-NG``), absent where it says nothing; a CT/MR SR's vertebrae
    also hold ``axis_sampling_mm``: how finely the series sampled the spine's axis at that
    level (mm; not a key of the document's vertebrae, which keeps it in ``image`` and
    ``landmarks``)."""
    from highdicom.sr import Comprehensive3DSR, ComprehensiveSR
    from pydicom.uid import Comprehensive3DSRStorage

    cls = Comprehensive3DSR if dataset.SOPClassUID == Comprehensive3DSRStorage else ComprehensiveSR
    sr: Any = cls.from_dataset(dataset)  # its .content is then the MeasurementReport
    by_code_param = {(PRIVATE_SCHEME, code): key for key, (code, _, _) in PARAMETERS.items()}
    level_by_code = {_concept_key(_vertebra_code(lv)): lv for lv in LEVELS}
    out: dict[str, Any] = {"parameters": {}, "vertebrae": [], "points_px": {}, "algorithm": None}
    frame = _plane_frame(plane, pixel_spacing_mm) if plane is not None and pixel_spacing_mm is not None else None
    for group in sr.content.get_image_measurement_groups():
        if out["algorithm"] is None:
            out["algorithm"] = _algorithm(group)
        level = next((lv for s in group.finding_sites if (lv := level_by_code.get(_concept_key(s.value)))), None)
        if level is None:
            for m in group.get_measurements():
                key = by_code_param.get(_concept_key(m.name))
                if key:
                    out["parameters"][key] = float(m.value)
            continue
        v: dict[str, Any] = {"level": level, "heights_mm": {}}
        points = _read_vertebra_measurements(group, v, frame)
        if points is not None:
            out["points_px"][level] = points
        _read_vertebra_evaluations(group, v)
        out["vertebrae"].append(v)
    return out
