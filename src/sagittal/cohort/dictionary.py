"""The data dictionary: every column of every cohort table, with its type, unit, definition
and source. The tables are built from these specifications (``tables.py`` refuses to write a
column that is not here), so the dictionary covers every column by construction.

Types are Arrow type names (``string``, ``int16``, ``int32``, ``float64``, ``bool``); every
column may be null where the value is unknown or was not measurable.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from ..report.analysis import GRADE_AXIS_SAMPLING_MAX_MM
from .deid import AGE_CAP_YEARS, PS315_OPTIONS, PS315_TREATMENT

__all__ = ["Column", "TABLES", "dictionary_json", "dictionary_markdown"]

DOC = "analysis document"  # the source of a column read from sagittal.analysis/1
DAYS_PER_MONTH = 365.25 / 12


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    unit: str
    definition: str
    source: str


def _c(name: str, type_: str, unit: str, definition: str, source: str) -> Column:
    return Column(name, type_, unit, definition, source)


_PSEUDONYM = _c("pseudonym", "string", "", "keyed pseudonym of the patient: 'patient-' + the first 16 hex digits of "
                "HMAC-SHA-256(key, 'patient' NUL PatientID); the same key gives the same pseudonym on every run",
                f"{DOC}: source.patient_id; clinical CSV: patient_id (keyed; the ID itself is never written)")
_STUDY_KEY = _c("study_key", "string", "", "keyed study key: 'study-' + the first 16 hex digits of "
                "HMAC-SHA-256(key, 'study' NUL StudyInstanceUID)", f"{DOC}: source.study_instance_uid (keyed)")
_STUDY_INDEX = _c("study_index", "int16", "", "rank of the study among the patient's studies ordered by date and time "
                  "(0 = first study)", f"{DOC}: source.study_date, source.study_time")
_DAYS = _c("days_since_first_study", "int32", "days", "whole days from the patient's first study to this study "
           "(null when the study date is unknown)", f"{DOC}: source.study_date (the date itself is never written)")
_LEVEL = _c("level", "string", "", "vertebral level, C7, T1…T12, L1…L5", f"{DOC}: vertebrae[].level")
#: what a coarse sampling along the spine does to a document's vertebrae (the sampling columns' definitions)
_AXIS_COARSE = (f"at {GRADE_AXIS_SAMPLING_MAX_MM:g} mm or more the document's vertebrae keep heights and height loss but "
                "no Genant grade or morphology: their endplates fall between samples and a fracture reads milder "
                "(on phantom CT a fractured body's loss read 3.8–5.7 points lower on average); null for radiographs and "
                "documents without it")
_AXIS_SOURCE = f"{DOC}: image.axis_sampling_mm"
_TL = _c("thoracolumbar", "bool", "", "the level is in the thoracolumbar junction T10–L2, where osteoporotic fractures "
         "are most frequent (docs/clinical.md)", "derived from level")

_PARAMS = (
    ("pelvic_incidence_deg", "deg", "pelvic incidence: angle between the perpendicular to the S1 endplate at its midpoint "
     "and the line to the hip axis (adult normal about 52 ± 10°)"),
    ("pelvic_tilt_deg", "deg", "pelvic tilt: angle between the vertical through the hip axis and the line to the S1 "
     "endplate midpoint (adult normal about 13 ± 6°)"),
    ("sacral_slope_deg", "deg", "sacral slope: angle between the S1 superior endplate and the horizontal"),
    ("lumbar_lordosis_deg", "deg", "lumbar lordosis: Cobb angle L1 superior to S1 superior endplate, lordosis positive"),
    ("thoracic_kyphosis_deg", "deg", "thoracic kyphosis: Cobb angle T4 superior to T12 inferior endplate, kyphosis positive"),
    ("sagittal_vertical_axis_mm", "mm", "sagittal vertical axis: horizontal distance from the C7 plumb line to the "
     "posterosuperior corner of S1, positive anterior (adult normal about 0 ± 25 mm)"),
    ("pi_ll_mismatch_deg", "deg", "PI − LL"),
    ("t1_pelvic_angle_deg", "deg", "T1 pelvic angle"),
)

STUDIES: tuple[Column, ...] = (
    _PSEUDONYM, _STUDY_KEY, _STUDY_INDEX, _DAYS,
    _c("age_years", "int16", "years", f"age at the study in whole years, {AGE_CAP_YEARS} and over written as "
       f"{AGE_CAP_YEARS}", f"{DOC}: source.patient_age_years, source.patient_age (DICOM AS) or source.patient_birth_date "
       "with source.study_date (the birth date is never written)"),
    _c("sex", "string", "", "M, F or O", f"{DOC}: source.patient_sex (DICOM PatientSex)"),
    _c("n_images", "int16", "", "analysis documents (images or series) of this study", "count of documents"),
    _c("modality", "string", "", "DICOM modality of the primary document (DX, CR, CT, MR…)", f"{DOC}: source.modality"),
    _c("posture", "string", "", "standing, supine, prone or unknown (null for radiographs without it)",
       f"{DOC}: image.patient_position"),
    _c("spacing_source", "string", "", "where the primary document's pixel spacing came from (docs/contract.md)",
       f"{DOC}: image.spacing_source"),
    _c("axis_sampling_mm", "float64", "mm", "CT/MR: how far apart the primary document's series samples the spine's "
       "head-foot axis (an axial series' slice spacing, a sagittal one's row spacing); " + _AXIS_COARSE, _AXIS_SOURCE),
    _c("status", "string", "", "ok, partial or rejected: the primary document's status", f"{DOC}: status"),
    *(_c(k, "float64", u, d + "; from the primary document (the study's document with status ok first, then the most "
         "measured parameters, then the most vertebrae)", f"{DOC}: parameters.{k}") for k, u, d in _PARAMS),
    _c("srs_schwab_pi_ll", "string", "", "SRS-Schwab PI−LL modifier: 0 (< 10°), + (10–20°), ++ (> 20°)",
       f"{DOC}: parameters.srs_schwab_pi_ll"),
    _c("srs_schwab_pt", "string", "", "SRS-Schwab PT modifier: 0 (< 20°), + (20–30°), ++ (> 30°)",
       f"{DOC}: parameters.srs_schwab_pt"),
    _c("srs_schwab_sva", "string", "", "SRS-Schwab SVA modifier: 0 (< 40 mm), + (40–95 mm), ++ (> 95 mm)",
       f"{DOC}: parameters.srs_schwab_sva"),
    _c("roussouly_type", "int16", "", "Roussouly sagittal type 1–4", f"{DOC}: parameters.roussouly_type"),
    _c("n_levels_measured", "int16", "", "levels with a height loss in any document of the study",
       "derived from the vertebrae table"),
    _c("n_levels_graded", "int16", "", "levels with a Genant grade (a level measured but not graded - its points "
       "not steady, or a CT/MR series too coarse along the spine - is not 'no fracture')",
       "derived from the vertebrae table"),
    _c("n_fractures", "int16", "", "levels with Genant grade 1–3 (of n_levels_graded)", "derived from the vertebrae table"),
    _c("n_grade1", "int16", "", "levels with Genant grade 1 (20–25 % loss)", "derived from the vertebrae table"),
    _c("n_grade2", "int16", "", "levels with Genant grade 2 (25–40 % loss)", "derived from the vertebrae table"),
    _c("n_grade3", "int16", "", "levels with Genant grade 3 (> 40 % loss)", "derived from the vertebrae table"),
    _c("n_warnings", "int32", "", "warnings of the primary document (their text is not written: it may name files)",
       f"{DOC}: warnings (count only)"),
    _c("software_version", "string", "", "sagittal version that wrote the primary document",
       f"{DOC}: software.sagittal (kept only if it looks like a version label)"),
    _c("model_version", "string", "", "landmark model label of the primary document",
       f"{DOC}: software.model (kept only if it looks like a version label)"),
)

VERTEBRAE: tuple[Column, ...] = (
    _PSEUDONYM, _STUDY_KEY, _STUDY_INDEX, _DAYS, _LEVEL, _TL,
    _c("n_images", "int16", "", "documents of the study that show this level; heights and grade come from one that "
       "graded it, then the best-ranked (as for the studies table) that measured its height loss; oedema and cleft "
       "from the best-ranked that read them", "count of documents"),
    _c("axis_sampling_mm", "float64", "mm", "CT/MR: how far apart the series of the document this row's heights, "
       "height loss and grade come from samples the spine's head-foot axis at this level (slice or row spacing; "
       "where slices are missing at the level's endplates, the step across the gap); " + _AXIS_COARSE,
       f"{DOC}: landmarks.axis_sampling_mm[level], else image.axis_sampling_mm"),
    _c("height_anterior_mm", "float64", "mm", "anterior body height (anterior superior to anterior inferior corner)",
       f"{DOC}: vertebrae[].heights_mm.anterior"),
    _c("height_middle_mm", "float64", "mm", "middle body height (endplate midpoints)", f"{DOC}: vertebrae[].heights_mm.middle"),
    _c("height_posterior_mm", "float64", "mm", "posterior body height", f"{DOC}: vertebrae[].heights_mm.posterior"),
    _c("height_loss_pct", "float64", "%", "largest relative loss of anterior, middle or posterior height against the "
       "height expected for the vertebra (Genant semi-quantitative)", f"{DOC}: vertebrae[].height_loss_pct"),
    _c("genant_grade", "int16", "", "0 below 20 %, 1 for 20–25 %, 2 for 25–40 %, 3 above 40 % height loss",
       f"{DOC}: vertebrae[].genant_grade"),
    _c("fractured", "bool", "", "Genant grade 1–3", "derived from genant_grade"),
    _c("morphology", "string", "", "normal, wedge, biconcave or crush", f"{DOC}: vertebrae[].morphology"),
    _c("regional_kyphosis_deg", "float64", "deg", "Cobb angle from the superior endplate of the vertebra above to the "
       "inferior endplate of the vertebra below (L5: to S1), kyphosis positive", f"{DOC}: vertebrae[].regional_kyphosis_deg"),
    _c("vertebral_kyphosis_deg", "float64", "deg", "the vertebra's own superior to inferior endplate angle, kyphosis "
       "positive", f"{DOC}: vertebrae[].vertebral_kyphosis_deg"),
    _c("oedema_present", "bool", "", "bone-marrow oedema (null: not judged, e.g. no MRI)", f"{DOC}: vertebrae[].oedema.present"),
    _c("oedema_extent_pct", "float64", "%", "share of the body's mid-sagittal section with oedema signal",
       f"{DOC}: vertebrae[].oedema.extent_pct"),
    _c("oedema_source", "string", "", "mr or manual", f"{DOC}: vertebrae[].oedema.source"),
    _c("cleft_present", "bool", "", "intravertebral cleft (Kümmell's sign; null: not judged)",
       f"{DOC}: vertebrae[].cleft.present"),
    _c("cleft_content", "string", "", "gas or fluid", f"{DOC}: vertebrae[].cleft.content"),
    _c("cleft_source", "string", "", "ct, mr, dx or manual", f"{DOC}: vertebrae[].cleft.source"),
)

_CSV = "clinical CSV"
PROGRESSION: tuple[Column, ...] = (
    _PSEUDONYM, _LEVEL, _TL,
    _c("baseline_study_key", "string", "", "study key of the baseline: the patient's first dated study that measured "
       "this level's height loss", f"{DOC}: source.study_instance_uid (keyed)"),
    _c("later_study_key", "string", "", "study key of the later study compared with the baseline",
       f"{DOC}: source.study_instance_uid (keyed)"),
    _c("baseline_day", "int32", "days", "days from the patient's first study to the baseline", f"{DOC}: source.study_date"),
    _c("later_day", "int32", "days", "days from the patient's first study to the later study", f"{DOC}: source.study_date"),
    _c("days_between", "int32", "days", "later_day − baseline_day", "derived"),
    _c("baseline_height_loss_pct", "float64", "%", "height loss at the baseline", "vertebrae table"),
    _c("later_height_loss_pct", "float64", "%", "height loss at the later study", "vertebrae table"),
    _c("height_loss_change_pts", "float64", "percentage points", "later − baseline height loss (positive: further "
       "collapse)", "derived"),
    _c("height_loss_rate_pts_per_month", "float64", "percentage points / month", "height_loss_change_pts divided by "
       f"days_between / {DAYS_PER_MONTH:.4f} (null when both studies fall on one day)", "derived"),
    _c("baseline_axis_sampling_mm", "float64", "mm", "axis_sampling_mm of the baseline's height loss (CT/MR; null for a "
       f"radiograph): at {GRADE_AXIS_SAMPLING_MAX_MM:g} mm or more that loss reads milder, so part of a change "
       "between a coarse and a thin series is the sampling's", "vertebrae table"),
    _c("later_axis_sampling_mm", "float64", "mm", "axis_sampling_mm of the later study's height loss (CT/MR; null for a "
       "radiograph)", "vertebrae table"),
    _c("baseline_grade", "int16", "", "Genant grade at the baseline", "vertebrae table"),
    _c("later_grade", "int16", "", "Genant grade at the later study", "vertebrae table"),
    _c("grade_change", "int16", "", "later_grade − baseline_grade", "derived"),
    _c("baseline_fractured", "bool", "", "Genant grade 1–3 at the baseline", "derived"),
    _c("new_fracture", "bool", "", "grade 0 at the baseline and 1–3 at the later study", "derived"),
    _c("baseline_morphology", "string", "", "morphology at the baseline", "vertebrae table"),
    _c("later_morphology", "string", "", "morphology at the later study", "vertebrae table"),
    _c("baseline_regional_kyphosis_deg", "float64", "deg", "regional (segmental) kyphosis of this level at the baseline; "
       "thresholds of interest 11° (adjacent-fracture risk) and 20° (outcome of augmentation)", "vertebrae table"),
    _c("baseline_sagittal_vertical_axis_mm", "float64", "mm", "SVA of the baseline study", "studies table"),
    _c("baseline_pelvic_incidence_deg", "float64", "deg", "PI of the baseline study", "studies table"),
    _c("baseline_pelvic_tilt_deg", "float64", "deg", "PT of the baseline study", "studies table"),
    _c("baseline_pi_ll_mismatch_deg", "float64", "deg", "PI − LL of the baseline study", "studies table"),
    _c("baseline_oedema_present", "bool", "", "oedema of this level at the baseline (null: not judged)", "vertebrae table"),
    _c("baseline_age_years", "int16", "years", f"age at the baseline study ({AGE_CAP_YEARS} and over as "
       f"{AGE_CAP_YEARS})", "studies table"),
    _c("augmentation", "string", "", "the patient's vertebral augmentation: vertebroplasty, kyphoplasty or none",
       f"{_CSV}: augmentation"),
    _c("level_augmented", "bool", "", "this level was augmented (false when augmentation is none or the level is not "
       "listed; null when the levels are not given)", f"{_CSV}: augmentation, augmentation_levels"),
    _c("augmentation_day", "int32", "days", "days from the patient's first study to the augmentation",
       f"{_CSV}: augmentation_date (the date itself is never written)"),
    _c("augmented_between", "bool", "", "this level was augmented on or after the baseline day and on or before the "
       "later day", "derived"),
    _c("treatment", "string", "", "for this level: vertebroplasty or kyphoplasty if augmented, conservative if not, "
       "null if unknown", f"{_CSV}: augmentation, augmentation_levels"),
    _c("clinical_vas", "float64", "0–10", "pain VAS at assessment", f"{_CSV}: vas"),
    _c("followup_vas", "float64", "0–10", "pain VAS at follow-up", f"{_CSV}: followup_vas"),
    _c("followup_day", "int32", "days", "days from the patient's first study to the follow-up pain score",
       f"{_CSV}: followup_date (the date itself is never written)"),
)

TABLES: dict[str, tuple[str, tuple[Column, ...]]] = {
    "studies": ("one row per patient × study", STUDIES),
    "vertebrae": ("one row per patient × study × level seen", VERTEBRAE),
    "progression": ("one row per patient × level × (baseline study, later study): each later study that measured the "
                    "level against the first that did", PROGRESSION),
}


def dictionary_json(software_version: str) -> dict[str, object]:
    """The data dictionary as a JSON-able object (``data_dictionary.json``)."""
    return {
        "schema": "sagittal.cohort_dictionary/1",
        "software": {"sagittal": software_version},
        "tables": {name: {"rows": rows, "files": [f"{name}.parquet", f"{name}.csv"],
                          "columns": [c.__dict__ for c in cols]} for name, (rows, cols) in TABLES.items()},
        "deidentification": {
            "standard": "DICOM PS3.15 Annex E, Basic Application Level Confidentiality Profile (Table E.1-1)",
            "pseudonyms": "HMAC-SHA-256 (RFC 2104) under a secret key held in the key file given with --key; the key is "
                          "never written to an output; without it a pseudonym cannot be computed or tested",
            "options": list(PS315_OPTIONS),
            "attributes": list(PS315_TREATMENT),
        },
    }


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def dictionary_markdown(software_version: str) -> str:
    """The same dictionary as Markdown (``data_dictionary.md``)."""
    lines = ["# Data dictionary of the sagittal research cohort", "",
             f"Written by sagittal {software_version}. Every column may be null where the value is unknown or was not "
             "measurable. Types are Arrow types; the CSV files are the Parquet tables' twins.", ""]
    for name, (rows, cols) in TABLES.items():
        lines += [f"## `{name}` — {rows}", "", "| column | type | unit | definition | source |", "|---|---|---|---|---|"]
        lines += [f"| `{c.name}` | {c.type} | {_md_escape(c.unit)} | {_md_escape(c.definition)} | {_md_escape(c.source)} |"
                  for c in cols]
        lines.append("")
    lines += ["## De-identification (DICOM PS3.15 Annex E)", "",
              "Basic Application Level Confidentiality Profile; pseudonyms and study keys are HMAC-SHA-256 under the "
              "secret key of the key file, which is never written to an output.", "",
              "| option | applied | how |", "|---|---|---|"]
    lines += [f"| {o['option']} | {o['applied']} | {_md_escape(o['how'])} |" for o in PS315_OPTIONS]
    lines += ["", "| attribute | in the inputs | action |", "|---|---|---|"]
    lines += [f"| {_md_escape(a['attribute'])} | {_md_escape(a['input'])} | {_md_escape(a['action'])} |"
              for a in PS315_TREATMENT]
    return "\n".join(lines) + "\n"


def dictionary_text(software_version: str) -> str:
    return json.dumps(dictionary_json(software_version), indent=1, ensure_ascii=False) + "\n"
