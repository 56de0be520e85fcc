"""De-identification rules of the research cohort, after DICOM PS3.15 Annex E.

The cohort is built from a whitelist: only numbers, controlled codes and keyed pseudonyms
ever reach an output; nothing is copied from an input as text. This module holds the
conversions that make identifying values safe, and the statement of which attributes of the
Basic Application Level Confidentiality Profile (PS3.15 Table E.1-1) the inputs can carry and
what the cohort does with each, which goes into the data dictionary.

- dates → whole days since the patient's first study (Retain Longitudinal Temporal
  Information with Modified Dates Option, the modification being an offset per patient that
  makes every patient's first study day 0);
- ages → whole years at the study, 90 and over written as 90 (the HIPAA Safe Harbor limit,
  45 CFR 164.514(b)(2)(i)(C)); sex kept as M/F/O (Retain Patient Characteristics Option);
- PatientID → keyed pseudonym, StudyInstanceUID → keyed study key (``pseudonym.py``); every
  other UID, name, ID, accession number, institution, description, path and warning text is
  dropped.
"""

from __future__ import annotations

import datetime as dt
import math
import re

__all__ = ["PS315_OPTIONS", "PS315_TREATMENT", "age_years", "clamp_age", "date_ordinal", "sex_code", "time_seconds"]

_DATE = re.compile(r"^\s*(\d{4})-?(\d{2})-?(\d{2})\s*$")
_TIME = re.compile(r"^\s*(\d{2})(?::?(\d{2}))?(?::?(\d{2}(?:\.\d*)?))?\s*$")
_AGE = re.compile(r"^\s*(\d{1,3})\s*([DWMY]?)\s*$")
_AGE_DAYS = {"D": 1.0, "W": 7.0, "M": 365.25 / 12, "Y": 365.25, "": 365.25}
#: the oldest age written; older patients are written as this age
AGE_CAP_YEARS = 90
SEXES = ("F", "M", "O")


def date_ordinal(value: object) -> int | None:
    """A DICOM DA (``YYYYMMDD``) or ISO date as a proleptic Gregorian day number, else None."""
    if isinstance(value, dt.date):
        return value.toordinal()
    if not isinstance(value, str):
        return None
    m = _DATE.match(value)
    if not m:
        return None
    try:
        return dt.date(int(m[1]), int(m[2]), int(m[3])).toordinal()
    except ValueError:
        return None


def time_seconds(value: object) -> float | None:
    """A DICOM TM (``HHMMSS.FFFFFF``, parts optional) as seconds after midnight, else None."""
    if not isinstance(value, str):
        return None
    m = _TIME.match(value)
    if not m:
        return None
    h, mi, s = int(m[1]), int(m[2] or 0), float(m[3] or 0)
    if h > 23 or mi > 59 or s >= 61:
        return None
    return h * 3600.0 + mi * 60.0 + s


def age_years(age: object, birth_date: object, study_ordinal: int | None) -> float | None:
    """Age at the study in years: a number, a DICOM AS string (``074Y``, ``018M``), or from
    the birth date and the study date; None if none of these is usable."""
    if isinstance(age, bool):
        age = None
    if isinstance(age, int | float) and math.isfinite(age) and 0 <= age < 150:
        return float(age)
    if isinstance(age, str):
        m = _AGE.match(age.upper())
        if m:
            return int(m[1]) * _AGE_DAYS[m[2]] / 365.25
    born = date_ordinal(birth_date)
    if born is not None and study_ordinal is not None and study_ordinal >= born:
        b, s = dt.date.fromordinal(born), dt.date.fromordinal(study_ordinal)
        return float(s.year - b.year - ((s.month, s.day) < (b.month, b.day)))
    return None


def clamp_age(years: float | None) -> int | None:
    """Whole years, 90 and over as 90."""
    if years is None or not math.isfinite(years) or years < 0:
        return None
    return min(int(years), AGE_CAP_YEARS)


def sex_code(value: object) -> str | None:
    """DICOM PatientSex (M, F, O); anything else unknown."""
    if isinstance(value, str) and value.strip().upper() in SEXES:
        return value.strip().upper()
    return None


#: PS3.15 Annex E options applied, as the data dictionary states them
PS315_OPTIONS: tuple[dict[str, str], ...] = (
    {"option": "Basic Application Level Confidentiality Profile", "applied": "yes",
     "how": "every attribute of Table E.1-1 that an analysis document or the clinical CSV can carry is removed or "
            "replaced (see 'attributes'); the tables are built from a whitelist of measurements and codes"},
    {"option": "Retain Longitudinal Temporal Information with Modified Dates Option", "applied": "yes",
     "how": "dates become whole days since the patient's first study (an offset per patient); no date or time of "
            "day is written"},
    {"option": "Retain Patient Characteristics Option", "applied": "yes",
     "how": "age in whole years at the study (90 and over as 90) and sex (M/F/O); no birth date"},
    {"option": "Retain UIDs Option", "applied": "no",
     "how": "StudyInstanceUID is replaced by a keyed study key (HMAC-SHA-256); series and SOP instance UIDs are dropped"},
    {"option": "Retain Device Identity Option", "applied": "no", "how": "no device attribute is written"},
    {"option": "Retain Institution Identity Option", "applied": "no", "how": "no institution attribute is written"},
    {"option": "Clean Descriptors Option", "applied": "no",
     "how": "descriptions and other free text are not cleaned but dropped: no text from the inputs is written"},
    {"option": "Retain Safe Private Option", "applied": "no", "how": "no private attribute is read"},
)

#: what the inputs may hold that PS3.15 Table E.1-1 lists, and what the cohort does with it
PS315_TREATMENT: tuple[dict[str, str], ...] = (
    {"attribute": "Patient ID (0010,0020)", "input": "source.patient_id; clinical CSV patient_id",
     "action": "replaced by the keyed pseudonym (column pseudonym)"},
    {"attribute": "Study Instance UID (0020,000D)", "input": "source.study_instance_uid",
     "action": "replaced by the keyed study key (column study_key)"},
    {"attribute": "Series Instance UID (0020,000E), SOP Instance UID (0008,0018), other UIDs",
     "input": "source.series_instance_uid, source.sop_instance_uids, source.related_series", "action": "removed"},
    {"attribute": "Study Date (0008,0020), Study Time (0008,0030)", "input": "source.study_date, source.study_time",
     "action": "replaced by days since the patient's first study (column days_since_first_study); time used for "
               "ordering only"},
    {"attribute": "Patient's Birth Date (0010,0030)", "input": "source.patient_birth_date (if present)",
     "action": "used to compute the age at the study, then removed"},
    {"attribute": "Patient's Age (0010,1010)", "input": "source.patient_age_years or source.patient_age",
     "action": "kept as whole years, 90 and over as 90 (Retain Patient Characteristics Option)"},
    {"attribute": "Patient's Sex (0010,0040)", "input": "source.patient_sex",
     "action": "kept as M/F/O (Retain Patient Characteristics Option)"},
    {"attribute": "Patient's Name (0010,0010), Accession Number (0008,0050), Study ID (0020,0010), Institution "
                  "Name (0008,0080), Referring Physician's Name (0008,0090), Study/Series Description "
                  "(0008,1030/0008,103E)",
     "input": "any field of a document beyond those read (they are never read)", "action": "removed"},
    {"attribute": "file paths, warnings and other free text", "input": "source.path, warnings",
     "action": "removed (paths of analysis folders name pseudonyms and UIDs)"},
    {"attribute": "clinical dates (augmentation_date, followup_date)", "input": "clinical CSV",
     "action": "replaced by days since the patient's first study"},
)
