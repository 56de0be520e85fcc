"""The clinical CSV: one row per patient, keyed by ``patient_id`` (the DICOM PatientID).

Columns (all optional but ``patient_id``): ``age, vas, pain_weeks, hospitalised, bed_bound,
analgesic_failure, neuro_deficit, instability, malignancy_suspected, pulmonary_dysfunction,
frail`` (yes/no), ``mri_oedema_levels, cleft_levels`` (levels as ``T12;L1``, ``none`` when an
MRI showed none). An empty cell is unknown. A bad cell is an error naming its row and column.

Treatment and outcome, for the research cohort (``docs/cohort.md``): ``augmentation``
(``vertebroplasty``, ``kyphoplasty`` or ``none``), ``augmentation_date`` and
``followup_date`` (``YYYY-MM-DD`` or ``YYYYMMDD``; the cohort turns them into days since the
patient's first study and never writes the dates), ``augmentation_levels`` (levels as
``T12;L1``), ``followup_vas`` (pain 0–10 at follow-up).
"""

from __future__ import annotations

import csv
import datetime as dt
import os
from dataclasses import dataclass, field
from typing import Any

from ..errors import InputError
from ..levels import LEVELS

YES_NO = ("hospitalised", "bed_bound", "analgesic_failure", "neuro_deficit", "instability", "malignancy_suspected",
          "pulmonary_dysfunction", "frail")
NUMBERS = {"age": (0, 130), "vas": (0, 10), "pain_weeks": (0, 10000), "followup_vas": (0, 10)}
LEVEL_LISTS = ("mri_oedema_levels", "cleft_levels", "augmentation_levels")
CHOICES = {"augmentation": ("vertebroplasty", "kyphoplasty", "none")}
DATES = ("augmentation_date", "followup_date")
COLUMNS = ("patient_id", *NUMBERS, *YES_NO, *LEVEL_LISTS, *CHOICES, *DATES)
_TRUE = {"yes", "y", "true", "1"}
_FALSE = {"no", "n", "false", "0"}


@dataclass(frozen=True)
class ClinicalInputs:
    """One patient's clinical picture; ``None`` means unknown."""

    patient_id: str
    age: float | None = None
    vas: float | None = None
    pain_weeks: float | None = None
    hospitalised: bool | None = None
    bed_bound: bool | None = None
    analgesic_failure: bool | None = None
    neuro_deficit: bool | None = None
    instability: bool | None = None
    malignancy_suspected: bool | None = None
    pulmonary_dysfunction: bool | None = None
    frail: bool | None = None
    mri_oedema_levels: frozenset[str] | None = None  # empty set: an MRI showed no oedema
    cleft_levels: frozenset[str] | None = None
    augmentation: str | None = None  # vertebroplasty | kyphoplasty | none
    augmentation_date: dt.date | None = None
    augmentation_levels: frozenset[str] | None = None
    followup_vas: float | None = None
    followup_date: dt.date | None = None
    extra: dict[str, object] = field(default_factory=dict)


def _parse(column: str, raw: str, where: str) -> Any:  # float | bool | frozenset[str] | str | date | None
    text = raw.strip()
    if text == "":
        return None
    if column in NUMBERS:
        try:
            value = float(text)
        except ValueError:
            raise InputError(f"{where}, column {column!r}: {text!r} is not a number") from None
        lo, hi = NUMBERS[column]
        if not lo <= value <= hi:
            raise InputError(f"{where}, column {column!r}: {value:g} is outside {lo}–{hi}")
        return value
    if column in YES_NO:
        low = text.lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        raise InputError(f"{where}, column {column!r}: {text!r} is not yes or no (leave it empty if unknown)")
    if column in LEVEL_LISTS:
        if text.lower() == "none":
            return frozenset()
        levels = [p.strip().upper() for p in text.replace(",", ";").split(";") if p.strip()]
        bad = [lv for lv in levels if lv not in LEVELS and lv != "S1"]
        if bad:
            raise InputError(f"{where}, column {column!r}: unknown level(s) {', '.join(bad)}; write levels as T12;L1 "
                             "or 'none'")
        return frozenset(levels)
    if column in CHOICES or column in DATES:
        return _choice_or_date(column, text, where)
    return text


def _choice_or_date(column: str, text: str, where: str) -> str | dt.date:
    if column in CHOICES:
        if text.lower() not in CHOICES[column]:
            raise InputError(f"{where}, column {column!r}: {text!r} is not one of {', '.join(CHOICES[column])}")
        return text.lower()
    for fmt in ("%Y-%m-%d", "%Y%m%d"):
        try:
            return dt.datetime.strptime(text, fmt).date()
        except ValueError:
            continue
    raise InputError(f"{where}, column {column!r}: {text!r} is not a date (write YYYY-MM-DD)")


def read_clinical_csv(path: str | os.PathLike[str]) -> dict[str, ClinicalInputs]:
    """Parse the clinical CSV. Raises ``InputError`` naming the file, row and column."""
    try:
        fh = open(path, newline="", encoding="utf-8-sig")
    except OSError as exc:
        raise InputError(f"{path}: cannot open the clinical CSV ({exc.strerror})") from None
    with fh:
        reader = csv.DictReader(fh)
        if not reader.fieldnames or "patient_id" not in [f.strip() for f in reader.fieldnames]:
            raise InputError(f"{path}: the clinical CSV needs a 'patient_id' column (found: "
                             f"{', '.join(reader.fieldnames or []) or 'no header'})")
        unknown = [f for f in reader.fieldnames if f.strip() not in COLUMNS]
        if unknown:
            raise InputError(f"{path}: unknown column(s) {', '.join(unknown)}; expected some of {', '.join(COLUMNS)}")
        out: dict[str, ClinicalInputs] = {}
        for n, row in enumerate(reader, start=2):
            where = f"{path}, row {n}"
            pid = (row.get("patient_id") or "").strip()
            if not pid:
                raise InputError(f"{where}, column 'patient_id': empty")
            if pid in out:
                raise InputError(f"{where}, column 'patient_id': {pid!r} appears twice")
            values = {k.strip(): _parse(k.strip(), v or "", where) for k, v in row.items() if k and k.strip() != "patient_id"}
            out[pid] = ClinicalInputs(patient_id=pid, **values)
        return out
