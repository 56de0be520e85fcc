"""What a series is: a lateral radiograph, another radiograph view, a CT or an MR of a given
weighting, and how its slices are oriented. Pure functions of ``Header`` values.
"""

from __future__ import annotations

import re

import numpy as np

from .discover import Header

RADIOGRAPH_MODALITIES = frozenset({"DX", "CR", "RG", "DR"})
VOLUME_MODALITIES = frozenset({"CT", "MR"})

_LATERAL_TEXT = re.compile(r"\b(LAT|LATERAL|LATERALE?|SEITL\w*|PROFIL|PROFILE|LL|RL)\b")
_FRONTAL_TEXT = re.compile(r"\b(AP|PA|FRONTAL|FRONT|A\.P\.|P\.A\.)\b")
_OBLIQUE_TEXT = re.compile(r"\b(OBL\w*)\b")
_FLEX_TEXT = re.compile(r"\b(FLEX\w*|EXT\w*|BENDING)\b")


def radiograph_view(h: Header) -> tuple[str, list[str]]:
    """``lateral``, ``frontal``, ``oblique`` or ``unknown`` for a radiograph, with notes.

    ViewPosition and the series/protocol text decide; PatientOrientation confirms or, when it
    disagrees, is reported as contradictory and ignored for the view.
    """
    notes: list[str] = []
    text = " ".join((h.series_description, h.protocol_name)).upper()
    text = re.sub(r"[_\-/]", " ", text)
    if _OBLIQUE_TEXT.search(text):
        return "oblique", notes
    by_tag = {"LL": "lateral", "RL": "lateral", "LATERAL": "lateral", "LAT": "lateral", "AP": "frontal",
              "PA": "frontal"}.get(h.view_position)
    lat, front = bool(_LATERAL_TEXT.search(text)), bool(_FRONTAL_TEXT.search(text))
    by_text = None if lat == front else ("lateral" if lat else "frontal")  # both named: the text decides nothing
    by_orient = None
    if len(h.patient_orientation) >= 1 and h.patient_orientation[0]:
        first = h.patient_orientation[0][0]
        by_orient = "lateral" if first in "AP" else ("frontal" if first in "LR" else None)
    view = by_tag or by_text or by_orient or "unknown"
    if by_tag and by_text and by_tag != by_text:
        notes.append(f"ViewPosition {h.view_position} says {by_tag} but the series text says {by_text}")
        view = by_text  # technologists fix the description more often than the tag
    if by_orient and view != "unknown" and by_orient != view:
        po = "\\".join(h.patient_orientation)
        notes.append(f"PatientOrientation {po} contradicts a {view} view; it is ignored")
    return view, notes


def orientation_name(iop: tuple[float, ...] | None, oblique_deg: float = 20.0) -> str:
    """``sagittal``, ``coronal``, ``axial``, ``oblique`` from ImageOrientationPatient, or ``unknown``."""
    if iop is None:
        return "unknown"
    r, c = np.asarray(iop[:3], float), np.asarray(iop[3:], float)
    n = np.cross(r, c)
    norm = np.linalg.norm(n)
    if not np.isfinite(norm) or norm < 1e-6:
        return "unknown"
    n = np.abs(n / norm)
    axis = int(np.argmax(n))
    if n[axis] < np.cos(np.radians(oblique_deg)):
        return "oblique"
    return ("sagittal", "coronal", "axial")[axis]


def mr_weighting(h: Header) -> str:
    """``STIR``, ``T1``, ``T2``, ``T2FS`` or ``other`` from text, sequence type, TI, TR and TE.

    STIR: inversion recovery with a short TI (< 300 ms, fat nulling) or named so; then the
    series text (T1/T2); then the timing: TR < 1000 ms and TE < 30 ms is T1-weighted,
    TR > 1500 ms and TE > 60 ms T2-weighted. A T2 with fat saturation (ScanOptions ``FS``,
    or FS/FATSAT/SPAIR/SPIR/DIXON-water in its text) is ``T2FS``: like STIR, it shows oedema.
    """
    weighting = _weighting(h)
    if weighting == "T2" and _fat_suppressed(h):
        return "T2FS"
    return weighting


_FAT_SUPPRESSION_WORDS = ("FS", "FATSAT", "FAT-SAT", "SPAIR", "SPIR", "WATER")


def _fat_suppressed(h: Header) -> bool:
    words = re.split(r"[^A-Z0-9-]+", " ".join((h.series_description, h.protocol_name, h.sequence_name)).upper())
    return "FS" in h.scan_options or "FAT_SAT" in h.scan_options or any(w in _FAT_SUPPRESSION_WORDS for w in words)


def _weighting(h: Header) -> str:
    text = " ".join((h.series_description, h.protocol_name, h.sequence_name)).upper()
    ir = "IR" in h.scanning_sequence or "IR" in text.split()
    if "STIR" in text or "TIRM" in text or (ir and h.inversion_time is not None and 50 <= h.inversion_time < 300):
        return "STIR"
    if "FLAIR" in text or (ir and h.inversion_time is not None and h.inversion_time >= 1500):
        return "other"
    t1, t2 = re.search(r"\bT1", text) is not None, re.search(r"\bT2", text) is not None
    if t1 != t2:
        return "T1" if t1 else "T2"
    tr, te = h.repetition_time, h.echo_time
    if tr is not None and te is not None:
        if tr < 1000 and te < 30:
            return "T1"
        if tr > 1500 and te > 60:
            return "T2"
    return "other"


def series_kind(h: Header) -> tuple[str | None, str]:
    """(kind, reason): kind is ``radiograph`` or ``volume``; ``None`` with a reason to set aside."""
    if h.modality in RADIOGRAPH_MODALITIES:
        return "radiograph", ""
    if h.modality in VOLUME_MODALITIES:
        return "volume", ""
    if h.modality in ("OT", "SC", "") and h.photometric.startswith("MONOCHROME") and h.samples_per_pixel == 1:
        return None, (f"secondary capture ({h.modality or 'no modality'}): not an acquired radiograph, CT or MR; "
                      "sagittal does not analyse screenshots")
    what = {"US": "ultrasound", "NM": "nuclear medicine", "PT": "PET", "XA": "angiography", "MG": "mammography",
            "OT": "secondary capture", "SC": "secondary capture", "ES": "endoscopy"}.get(h.modality)
    what = f"{what} ({h.modality})" if what else (f"modality {h.modality}" if h.modality else "no Modality")
    return None, f"{what}: not a spine radiograph, CT or MR"
