"""Longitudinal linking, column-wise: documents → studies → vertebrae → progression.

Everything here works on whole columns (numpy), never row by row, so 10^5 documents and
2·10^6 vertebrae link in seconds. Identifiers enter only as integer codes; the one place
they are turned into output text is ``pseudonym.keyed_pseudonym`` / ``study_key``.

- A study is a patient's StudyInstanceUID (a study without one: the patient's date and
  time). Its parameters come from its *primary* document: status ok first, then the most
  required parameters measured, then the most vertebrae, then file order.
- A level of a study takes its heights and grade from a document that graded it (a series too
  coarse to grade, or points not steady, leave a level ungraded), then from one that measured its
  height loss, the best-ranked first (else the best-ranked that shows it), and that document's
  ``axis_sampling_mm`` (a coarse CT/MR's loss reads milder); its oedema and cleft from the
  best-ranked document that read them.
- A patient's studies are ordered by date, time and study key; days count from the
  patient's first dated study.
- Progression: per patient and level, the first dated study that measured the level's height
  loss is the baseline; every later dated study that measured it gives one row.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from ..findings.clinical import ClinicalInputs
from ..geometry.morphometry import MORPHOLOGIES
from ..levels import LEVELS, THORACOLUMBAR
from .deid import AGE_CAP_YEARS
from .dictionary import DAYS_PER_MONTH, TABLES
from .pseudonym import keyed_pseudonym, study_key
from .read import (
    CLEFT_CONTENTS,
    FINDING_SOURCES,
    MODALITIES,
    PARAMETERS,
    POSTURES,
    SCHWAB,
    SCHWAB_CODES,
    SEXES,
    SPACING_SOURCES,
    STATUSES,
    Columns,
)

__all__ = ["NULL_INT", "Coded", "CohortTables", "build_tables"]

_NO = -1  # null of a code (Coded) and of a bool column (int8)
#: null of an integer column (days and grade changes can be negative, so -1 cannot be null)
NULL_INT = np.iinfo(np.int64).min
_BIG = np.iinfo(np.int64).max // 4
_TREATMENTS = ("vertebroplasty", "kyphoplasty", "conservative")
_AUGMENTATIONS = ("vertebroplasty", "kyphoplasty", "none")


@dataclass(frozen=True)
class Coded:
    """A string column as integer codes (-1: null) into ``vocabulary``."""

    codes: np.ndarray
    vocabulary: tuple[str, ...]


Column = np.ndarray | Coded
#: one table: column name → values (null: float NaN, int NULL_INT, bool as int8 -1, code -1)
Table = dict[str, Column]


@dataclass
class CohortTables:
    studies: Table
    vertebrae: Table
    progression: Table
    warnings: list[str]

    def items(self) -> list[tuple[str, Table]]:
        return [("studies", self.studies), ("vertebrae", self.vertebrae), ("progression", self.progression)]


def _group_starts(*keys: np.ndarray) -> np.ndarray:
    """Boolean (N,): True where a row starts a new group of equal keys (rows already sorted)."""
    n = len(keys[0])
    start = np.zeros(n, dtype=bool)
    if n:
        start[0] = True
        for k in keys:
            start[1:] |= k[1:] != k[:-1]
    return start


def _first_of_group(start: np.ndarray) -> np.ndarray:
    """For each row of sorted groups, the index of its group's first row."""
    idx = np.where(start, np.arange(len(start)), 0)
    return np.maximum.accumulate(idx) if len(idx) else idx


def _ints(values: np.ndarray, ok: np.ndarray) -> np.ndarray:
    # int64 before the null: an int32 column would squeeze NULL_INT into its own type (numpy 2), and wrap to 0
    return np.where(ok, np.asarray(values, np.int64), NULL_INT)


def _bool_col(values: np.ndarray, ok: np.ndarray | None = None) -> np.ndarray:
    """int8: 1 true, 0 false, -1 null."""
    out = np.asarray(values, dtype=np.int8)
    return out if ok is None else np.where(ok, out, np.int8(_NO)).astype(np.int8)


def _studies(c: Columns) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(study index per document, patient per study, primary document per study, doc rank)."""
    n_studies_raw = max(len(c.study_uids), 1)
    pair = c.doc_patient * n_studies_raw + c.doc_study
    uniq, sidx = np.unique(pair, return_inverse=True)
    status_rank = np.where(c.doc["status"] < 0, 9, c.doc["status"])
    order = np.lexsort((c.doc["order"], -c.doc["n_levels"], -c.doc["n_required"], status_rank, sidx))
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    first = _group_starts(sidx[order])
    primary = order[first]
    return sidx, uniq // n_studies_raw, primary, rank


def _study_dates(c: Columns, sidx: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    date = np.full(n, _BIG, dtype=np.int64)
    d = c.doc["date"]
    ok = d >= 0
    np.minimum.at(date, sidx[ok], d[ok])
    time = np.full(n, np.inf)
    t = c.doc["time_s"]
    okt = np.isfinite(t)
    np.minimum.at(time, sidx[okt], t[okt])
    return date, time


def build_tables(c: Columns, clinical: Mapping[str, ClinicalInputs], key: bytes) -> CohortTables:
    """The three tables from the documents' columns, the clinical CSV (keyed by PatientID) and the key."""
    warnings: list[str] = []
    sidx, s_patient, primary, rank = _studies(c)
    n_st = len(primary)
    pseudo = tuple(keyed_pseudonym(p, key) for p in c.patient_ids)
    s_date, s_time = _study_dates(c, sidx, n_st)
    # study keys: HMAC of the StudyInstanceUID of the study's primary document
    skeys = tuple(study_key(c.study_uids[i], key) for i in c.doc_study[primary])
    dated = s_date < _BIG
    n_pat = len(c.patient_ids)
    first_date = np.full(max(n_pat, 1), _BIG, dtype=np.int64)
    np.minimum.at(first_date, s_patient[dated], s_date[dated])
    days = _ints(s_date - first_date[s_patient], dated)
    skey_rank = np.argsort(np.argsort(np.asarray(skeys, dtype=object))) if n_st else np.zeros(0, dtype=np.int64)
    s_order = np.lexsort((skey_rank, s_time, s_date, s_patient))
    s_index = np.empty(n_st, dtype=np.int64)
    s_index[s_order] = np.arange(n_st) - _first_of_group(_group_starts(s_patient[s_order]))
    if int((~dated).sum()):
        warnings.append(f"{int((~dated).sum())} study(ies) without a usable study date: days are null and they are "
                        "left out of the progression table")

    studies = _studies_table(c, sidx, s_patient, primary, pseudo, skeys, s_index, days)
    vert, v_rows = _vertebrae_table(c, sidx, rank, s_patient, pseudo, skeys, s_index, days)
    # fracture counts per study from the chosen vertebra rows
    v_study = sidx[c.vert["doc"][v_rows]]
    grade = c.vert["grade"][v_rows]
    for k in (1, 2, 3):
        studies[f"n_grade{k}"] = np.bincount(v_study, weights=grade == k, minlength=n_st).astype(np.int64)
    studies["n_fractures"] = np.bincount(v_study, weights=grade >= 1, minlength=n_st).astype(np.int64)
    studies["n_levels_measured"] = np.bincount(v_study, weights=np.isfinite(c.vert["loss"][v_rows]),
                                               minlength=n_st).astype(np.int64)
    studies["n_levels_graded"] = np.bincount(v_study, weights=grade >= 0, minlength=n_st).astype(np.int64)
    s_age = studies["age_years"]
    assert isinstance(s_age, np.ndarray)
    oedema = vert["oedema_present"]  # per vertebrae row, from the document that read it (not the graded one)
    assert isinstance(oedema, np.ndarray)
    prog = _progression_table(c, v_rows, v_study, s_patient, primary, pseudo, skeys, days, s_age,
                              clinical, first_date, warnings, oedema)
    used = set(c.patient_ids)
    unmatched = sum(1 for p in clinical if p not in used)
    if unmatched:
        warnings.append(f"{unmatched} clinical CSV row(s) match no analysis document's patient and are not used")
    tables = CohortTables(studies, vert, prog, warnings)
    for name, table in tables.items():
        expected = [col.name for col in TABLES[name][1]]
        if list(table) != expected:
            raise AssertionError(f"{name}: columns {list(table)} differ from the data dictionary {expected}")
    return tables


def _studies_table(c: Columns, sidx: np.ndarray, s_patient: np.ndarray, primary: np.ndarray, pseudo: tuple[str, ...],
                   skeys: tuple[str, ...], s_index: np.ndarray, days: np.ndarray) -> Table:
    n_st = len(primary)
    d = {k: v[primary] for k, v in c.doc.items()}
    age = np.full(n_st, np.nan)
    np.fmax.at(age, sidx, c.doc["age_years"])
    sex = np.full(n_st, _NO, dtype=np.int64)
    np.maximum.at(sex, sidx, c.doc["sex"])
    age_int = _ints(np.minimum(np.floor(np.nan_to_num(age)), AGE_CAP_YEARS), np.isfinite(age) & (age >= 0))
    t: Table = {
        "pseudonym": Coded(s_patient, pseudo),
        "study_key": Coded(np.arange(n_st), skeys),
        "study_index": s_index,
        "days_since_first_study": days,
        "age_years": age_int,
        "sex": Coded(sex, SEXES),
        "n_images": np.bincount(sidx, minlength=n_st).astype(np.int64),
        "modality": Coded(d["modality"], MODALITIES),
        "posture": Coded(d["posture"], POSTURES),
        "spacing_source": Coded(d["spacing"], SPACING_SOURCES),
        "axis_sampling_mm": d["axis_mm"],
        "status": Coded(d["status"], STATUSES),
    }
    for k in PARAMETERS:
        t[k] = d[k]
    for k in SCHWAB:
        t[k] = Coded(d[k], SCHWAB_CODES)
    t["roussouly_type"] = _ints(d["roussouly"], d["roussouly"] >= 0)
    for k in ("n_levels_measured", "n_levels_graded", "n_fractures", "n_grade1", "n_grade2", "n_grade3"):
        t[k] = np.zeros(n_st, dtype=np.int64)  # filled from the vertebrae table
    t["n_warnings"] = d["n_warnings"]
    labels = tuple(c.labels)
    t["software_version"] = Coded(d["software"], labels)
    t["model_version"] = Coded(d["model"], labels)
    return t


def _vertebrae_table(c: Columns, sidx: np.ndarray, rank: np.ndarray, s_patient: np.ndarray, pseudo: tuple[str, ...],
                     skeys: tuple[str, ...], s_index: np.ndarray, days: np.ndarray) -> tuple[Table, np.ndarray]:
    v = c.vert
    v_study = sidx[v["doc"]]
    no_loss = ~np.isfinite(v["loss"])
    # per (study, level): a graded row first (a series too coarse to grade keeps a loss but no grade), then one
    # with a loss, then the document's rank
    no_grade = v["grade"] < 0
    order = np.lexsort((rank[v["doc"]], no_loss, no_grade, v["level"], s_index[v_study], s_patient[v_study]))
    start = _group_starts(v_study[order], v["level"][order])
    rows = order[start]
    group = np.cumsum(start) - 1
    n_images = np.bincount(group, minlength=len(rows)).astype(np.int64)
    st = v_study[rows]
    level = v["level"][rows]
    tl = np.asarray([lv in THORACOLUMBAR for lv in LEVELS])
    grade = v["grade"][rows]

    def read_first(unread: np.ndarray) -> np.ndarray:
        """Per (study, level), in the groups' order above, the best-ranked row that read a finding (oedema,
        cleft): the MR that read it, whichever document gave the level's heights and grade."""
        o = np.lexsort((rank[v["doc"]], unread, v["level"], s_index[v_study], s_patient[v_study]))
        return o[_group_starts(v_study[o], v["level"][o])]

    o_rows, c_rows = read_first(v["oedema"] < 0), read_first(v["cleft"] < 0)
    t: Table = {
        "pseudonym": Coded(s_patient[st], pseudo),
        "study_key": Coded(st, skeys),
        "study_index": s_index[st],
        "days_since_first_study": days[st],
        "level": Coded(level, LEVELS),
        "thoracolumbar": _bool_col(tl[level]),
        "n_images": n_images,
        "axis_sampling_mm": v["axis_mm"][rows],  # of the document the heights and loss come from, at this level
        "height_anterior_mm": v["h_anterior"][rows],
        "height_middle_mm": v["h_middle"][rows],
        "height_posterior_mm": v["h_posterior"][rows],
        "height_loss_pct": v["loss"][rows],
        "genant_grade": _ints(grade, grade >= 0),
        "fractured": _bool_col(grade >= 1, grade >= 0),
        "morphology": Coded(v["morph"][rows], MORPHOLOGIES),
        "regional_kyphosis_deg": v["rk"][rows],
        "vertebral_kyphosis_deg": v["vk"][rows],
        "oedema_present": v["oedema"][o_rows].astype(np.int8),
        "oedema_extent_pct": v["oedema_extent"][o_rows],
        "oedema_source": Coded(v["oedema_src"][o_rows], FINDING_SOURCES),
        "cleft_present": v["cleft"][c_rows].astype(np.int8),
        "cleft_content": Coded(v["cleft_content"][c_rows], CLEFT_CONTENTS),
        "cleft_source": Coded(v["cleft_src"][c_rows], FINDING_SOURCES),
    }
    return t, rows


def _clinical_columns(c: Columns, clinical: Mapping[str, ClinicalInputs], first_date: np.ndarray,
                      warnings: list[str]) -> dict[str, np.ndarray]:
    """Per patient (index of c.patient_ids): augmentation code, augmented-level mask, days, VAS."""
    n = len(c.patient_ids)
    out = {"aug": np.full(n, _NO, dtype=np.int64), "aug_day": np.full(n, NULL_INT, dtype=np.int64),
           "levels_known": np.zeros(n, dtype=bool), "levels": np.zeros((n, len(LEVELS)), dtype=bool),
           "vas": np.full(n, np.nan), "fu_vas": np.full(n, np.nan), "fu_day": np.full(n, NULL_INT, dtype=np.int64)}
    if not clinical:
        return out
    stripped = {k.strip(): v for k, v in clinical.items()}
    undated = 0
    for i, pid in enumerate(c.patient_ids):
        row = stripped.get(pid.strip())
        if row is None:
            continue
        if row.augmentation is not None:
            out["aug"][i] = _AUGMENTATIONS.index(row.augmentation)
        if row.augmentation_levels is not None:
            out["levels_known"][i] = True
            for lv in row.augmentation_levels:
                if lv in LEVELS:
                    out["levels"][i, LEVELS.index(lv)] = True
        out["vas"][i] = math.nan if row.vas is None else row.vas
        out["fu_vas"][i] = math.nan if row.followup_vas is None else row.followup_vas
        base = int(first_date[i])
        for date, col in ((row.augmentation_date, "aug_day"), (row.followup_date, "fu_day")):
            if date is None:
                continue
            if base >= _BIG:
                undated += 1
                continue
            out[col][i] = dt.date.toordinal(date) - base
    if undated:
        warnings.append(f"{undated} clinical date(s) of patients without a dated study cannot be turned into days and "
                        "are left null")
    return out


def _progression_table(c: Columns, v_rows: np.ndarray, v_study: np.ndarray, s_patient: np.ndarray, primary: np.ndarray,
                       pseudo: tuple[str, ...], skeys: tuple[str, ...], days: np.ndarray, s_age: np.ndarray,
                       clinical: Mapping[str, ClinicalInputs], first_date: np.ndarray, warnings: list[str],
                       oedema: np.ndarray) -> Table:
    """``oedema``: the vertebrae table's ``oedema_present``, one per ``v_rows`` row."""
    v = c.vert
    loss = v["loss"][v_rows]
    ok = np.isfinite(loss) & (days[v_study] != NULL_INT)
    rows, st, oed = v_rows[ok], v_study[ok], oedema[ok]
    pat, level, day = s_patient[st], v["level"][rows], days[st]
    # rows arrive ordered by patient, study order, level: reorder by patient, level, study order
    order = np.lexsort((np.arange(len(rows)), level, pat))
    rows, st, pat, level, day, oed = rows[order], st[order], pat[order], level[order], day[order], oed[order]
    start = _group_starts(pat, level)
    base = _first_of_group(start)
    later = ~start
    b, lt = base[later], np.flatnonzero(later)
    br, lr = rows[b], rows[lt]
    bst, lst = st[b], st[lt]
    p = pat[lt]
    lv = level[lt]
    days_between = day[lt] - day[b]
    change = v["loss"][lr] - v["loss"][br]
    months = days_between / DAYS_PER_MONTH
    rate = np.round(np.divide(change, months, out=np.full(len(change), np.nan), where=days_between > 0), 4)
    change = np.round(change, 4)  # the documents' precision
    bg, lg = v["grade"][br], v["grade"][lr]
    graded = (bg >= 0) & (lg >= 0)
    tl = np.asarray([x in THORACOLUMBAR for x in LEVELS])
    bdoc = primary[bst]
    cl = _clinical_columns(c, clinical, first_date, warnings)
    aug = cl["aug"][p]
    in_list = cl["levels"][p, lv]
    level_aug = np.where(aug == 2, 0, np.where(cl["levels_known"][p] & (aug >= 0), in_list, _NO)).astype(np.int8)
    aug_day = cl["aug_day"][p]
    between = (level_aug == 1) & (aug_day != NULL_INT) & (aug_day >= day[b]) & (aug_day <= day[lt])
    between_known = (level_aug == 0) | ((level_aug == 1) & (aug_day != NULL_INT))
    treatment = np.where(level_aug == 1, aug, np.where(level_aug == 0, 2, _NO))
    return {
        "pseudonym": Coded(p, pseudo),
        "level": Coded(lv, LEVELS),
        "thoracolumbar": _bool_col(tl[lv]),
        "baseline_study_key": Coded(bst, skeys),
        "later_study_key": Coded(lst, skeys),
        "baseline_day": day[b],
        "later_day": day[lt],
        "days_between": days_between,
        "baseline_height_loss_pct": v["loss"][br],
        "later_height_loss_pct": v["loss"][lr],
        "height_loss_change_pts": change,
        "height_loss_rate_pts_per_month": rate,
        "baseline_axis_sampling_mm": v["axis_mm"][br],
        "later_axis_sampling_mm": v["axis_mm"][lr],
        "baseline_grade": _ints(bg, bg >= 0),
        "later_grade": _ints(lg, lg >= 0),
        "grade_change": _ints(lg - bg, graded),
        "baseline_fractured": _bool_col(bg >= 1, bg >= 0),
        "new_fracture": _bool_col((bg == 0) & (lg >= 1), graded),
        "baseline_morphology": Coded(v["morph"][br], MORPHOLOGIES),
        "later_morphology": Coded(v["morph"][lr], MORPHOLOGIES),
        "baseline_regional_kyphosis_deg": v["rk"][br],
        "baseline_sagittal_vertical_axis_mm": c.doc["sagittal_vertical_axis_mm"][bdoc],
        "baseline_pelvic_incidence_deg": c.doc["pelvic_incidence_deg"][bdoc],
        "baseline_pelvic_tilt_deg": c.doc["pelvic_tilt_deg"][bdoc],
        "baseline_pi_ll_mismatch_deg": c.doc["pi_ll_mismatch_deg"][bdoc],
        "baseline_oedema_present": oed[b].astype(np.int8),
        "baseline_age_years": s_age[bst],
        "augmentation": Coded(aug, _AUGMENTATIONS),
        "level_augmented": level_aug,
        "augmentation_day": aug_day,
        "augmented_between": _bool_col(between, between_known),
        "treatment": Coded(treatment, _TREATMENTS),
        "clinical_vas": cl["vas"][p],
        "followup_vas": cl["fu_vas"][p],
        "followup_day": cl["fu_day"][p],
    }
