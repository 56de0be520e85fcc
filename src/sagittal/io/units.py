"""CT series and MR studies as units of work: which series are analysed together, which one
holds the landmarks, and which are set aside because another reconstruction covers them.

- CT: every frame of reference (``FrameOfReferenceUID``; the study when it is missing) of a
  study gives one unit. Its landmark series is an axial series when there is one (reformatted
  to the spine's plane, and the whole field is there for the femoral heads), else a sagittal
  one, else any other orientation; among several, the finest slice spacing, then the most
  slices. Every other CT series of the frame (a sagittal reformat of the same acquisition,
  another kernel) is set aside with a reason naming the series used.
- MR: every frame of reference of a study gives one unit of its sagittal series (T1, T2, STIR,
  fat-suppressed T2 …; one per weighting, the one with the most slices). The landmark series is
  T1, else T2, T2FS, STIR, other. Axial and coronal MR series are set aside: the analysis is
  sagittal.
- A single-slice series (a localiser) is set aside.

``related_series`` roles (CONTRACT): ``ct``, ``ct_sagittal``, ``ct_coronal``, ``ct_oblique``,
``t1``, ``t2``, ``t2fs``, ``stir``, ``mr_other``.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from .discover import SetAside
from .series import Series

#: landmark-series preference by weighting (first wins)
MR_PREFERENCE = ("T1", "T2", "T2FS", "STIR", "other")
_MR_ROLE = {"T1": "t1", "T2": "t2", "T2FS": "t2fs", "STIR": "stir"}
_CT_ORDER = ("axial", "sagittal", "coronal", "oblique", "unknown")
#: DICOM PatientPosition → the posture the image was taken in (PS3.3 C.7.3.1.1.2)
POSTURE = {"HFS": "supine", "FFS": "supine", "HFP": "prone", "FFP": "prone", "HFDR": "decubitus", "HFDL": "decubitus",
           "FFDR": "decubitus", "FFDL": "decubitus", "AFDR": "decubitus", "AFDL": "decubitus", "PFDR": "decubitus",
           "PFDL": "decubitus"}


@dataclass(frozen=True)
class SeriesFacts:
    """Header values of a series' first file that grouping needs (``discover`` does not keep them)."""

    frame_of_reference_uid: str | None
    patient_position: str | None


def series_facts(s: Series) -> SeriesFacts:
    """``FrameOfReferenceUID`` and ``PatientPosition`` of ``s`` (read from its first file only)."""
    import pydicom

    try:
        ds = pydicom.dcmread(s.files[0], stop_before_pixels=True, force=True,
                             specific_tags=["FrameOfReferenceUID", "PatientPosition", "SharedFunctionalGroupsSequence"])
    except Exception:  # unreadable here means: nothing to group by; the load stage reports the file
        return SeriesFacts(None, None)
    frame = str(ds.get("FrameOfReferenceUID", "") or "") or None
    position = str(ds.get("PatientPosition", "") or "").strip().upper() or None
    return SeriesFacts(frame, position)


def posture(patient_position: str | None) -> str:
    """``supine``, ``prone``, ``standing`` or ``unknown`` (decubitus and missing are ``unknown``:
    the contract has no word for lying on one side)."""
    p = POSTURE.get((patient_position or "").upper())
    return p if p in ("supine", "prone") else "unknown"


@dataclass
class VolumeUnit:
    """One CT series or MR study to analyse: ``series[0]`` holds the landmarks."""

    modality: str  # CT or MR
    series: list[Series]
    roles: list[str]
    patient_id: str
    study_uid: str | None
    frame_of_reference_uid: str | None
    patient_position: str | None
    notes: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        s = self.series[0]
        return s.series_uid or f"{self.modality}-{s.headers[0].series_number or 0}"

    @property
    def files(self) -> list[str]:
        return [p for s in self.series for p in s.files]

    def related_series(self) -> list[dict[str, str | None]]:
        return [{"series_instance_uid": s.series_uid, "role": r} for s, r in zip(self.series[1:], self.roles[1:], strict=True)]


def _ct_role(s: Series) -> str:
    return "ct" if s.orientation == "axial" else f"ct_{s.orientation or 'oblique'}"


def _describe(s: Series) -> str:
    return f"{s.modality} series {s.series_uid or s.headers[0].series_description or '?'} ({s.orientation or 'unknown'})"


def _spacing(s: Series) -> float:
    cal = s.calibration
    return float(cal.slice_spacing_mm) if cal is not None and cal.slice_spacing_mm else float("inf")


def _n_slices(s: Series) -> int:
    return sum(h.frames for h in s.headers)


def plan_volumes(series: list[Series], facts: dict[int, SeriesFacts] | None = None) -> tuple[list[VolumeUnit], list[SetAside]]:
    """Group the CT and MR ``series`` of an export into units of work; the rest are ignored here.

    ``facts`` (by ``id(series)``) saves reading headers again (tests pass them)."""
    units: list[VolumeUnit] = []
    aside: list[SetAside] = []
    groups: dict[tuple[str, str, str | None, str | None], list[tuple[Series, SeriesFacts]]] = defaultdict(list)
    for s in series:
        if s.kind != "volume" or s.modality not in ("CT", "MR"):
            continue
        if _n_slices(s) < 2:
            aside += [SetAside(p, "plan", f"{_describe(s)}: a single slice (a localiser?), not a volume") for p in s.files]
            continue
        f = (facts or {}).get(id(s)) or series_facts(s)
        groups[(s.modality, s.headers[0].patient_id, s.study_uid, f.frame_of_reference_uid)].append((s, f))
    for (modality, patient, study, frame), members in sorted(groups.items(), key=lambda kv: str(kv[0])):
        unit, more = (_ct_unit if modality == "CT" else _mr_unit)(members, patient, study, frame)
        aside += more
        if unit is not None:
            units.append(unit)
    return units, aside


_Members = list[tuple[Series, SeriesFacts]]


def _ct_unit(members: _Members, patient: str, study: str | None,
             frame: str | None) -> tuple[VolumeUnit | None, list[SetAside]]:
    members = sorted(members, key=lambda m: (_CT_ORDER.index(m[0].orientation or "unknown")
                                             if (m[0].orientation or "unknown") in _CT_ORDER else 9,
                                             _spacing(m[0]), -_n_slices(m[0])))
    used, f = members[0]
    unit = VolumeUnit("CT", [used], [_ct_role(used)], patient, study, frame, f.patient_position)
    aside = []
    for other, _ in members[1:]:
        why = (f"analysed once, from {_describe(used)} of the same frame of reference "
               f"({'its sagittal reformat' if other.orientation == 'sagittal' else 'another reconstruction'})")
        unit.notes.append(f"{_describe(other)} not used: {why}")
        aside += [SetAside(p, "plan", f"{_describe(other)}: {why}") for p in other.files]
    return unit, aside


def _mr_unit(members: _Members, patient: str, study: str | None,
             frame: str | None) -> tuple[VolumeUnit | None, list[SetAside]]:
    aside = []
    for s, _ in members:
        if s.orientation != "sagittal":
            aside += [SetAside(p, "plan", f"{_describe(s)}: only sagittal MR series are analysed") for p in s.files]
    sagittal = [(s, f) for s, f in members if s.orientation == "sagittal"]
    if not sagittal:
        return None, aside
    by_weight: dict[str, tuple[Series, SeriesFacts]] = {}
    extra: list[Series] = []
    for s, f in sorted(sagittal, key=lambda m: -_n_slices(m[0])):
        w = s.weighting if s.weighting in MR_PREFERENCE else "other"
        if w in by_weight:
            extra.append(s)
        else:
            by_weight[w] = (s, f)
    order = [w for w in MR_PREFERENCE if w in by_weight]
    unit = VolumeUnit("MR", [by_weight[w][0] for w in order], [_MR_ROLE.get(w, "mr_other") for w in order], patient,
                      study, frame, by_weight[order[0]][1].patient_position)
    for s in extra:
        why = f"another {s.weighting} series of the same study and frame of reference was used"
        unit.notes.append(f"{_describe(s)} not used: {why}")
        aside += [SetAside(p, "plan", f"{_describe(s)}: {why}") for p in s.files]
    return unit, aside
