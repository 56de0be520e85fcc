"""Stream analysis documents into compact columns: nothing but numbers and codes is kept.

Documents are found under the given folders by their ``schema`` key (``sagittal.analysis/1``),
never by path: every ``.json`` file (one document) and ``.jsonl`` file (one per line) is
read, and those of another schema are passed over. A document that claims the schema but
cannot be read (bad JSON, wrong types, unknown level, no patient) is skipped with an error
naming the file; the batch goes on.

Memory is bounded by the columns: per document a handful of numbers, per vertebra eleven,
the patients' IDs and study UIDs once each (in memory only, never written). Files are read in
chunks, by ``workers`` processes when asked.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..geometry.morphometry import MORPHOLOGIES
from ..io.calibration import SPACING_SOURCES
from ..levels import LEVEL_AXIS_SAMPLING, LEVEL_INDEX, LEVELS, level_axis_sampling
from .deid import age_years, date_ordinal, sex_code, time_seconds

__all__ = ["Columns", "ReadError", "find_documents", "read_documents"]

SCHEMA_ID = "sagittal.analysis/1"
_SCHEMA_BYTES = SCHEMA_ID.encode()
#: numeric parameters of a document, in the order of the studies table
PARAMETERS = ("pelvic_incidence_deg", "pelvic_tilt_deg", "sacral_slope_deg", "lumbar_lordosis_deg",
              "thoracic_kyphosis_deg", "sagittal_vertical_axis_mm", "pi_ll_mismatch_deg", "t1_pelvic_angle_deg")
REQUIRED = PARAMETERS[:7]
SCHWAB = ("srs_schwab_pi_ll", "srs_schwab_pt", "srs_schwab_sva")
SCHWAB_CODES = ("0", "+", "++")
STATUSES = ("ok", "partial", "rejected")
POSTURES = ("standing", "supine", "prone", "unknown")
SEXES = ("F", "M", "O")
CLEFT_CONTENTS = ("gas", "fluid")
FINDING_SOURCES = ("mr", "ct", "dx", "manual")
MODALITIES = ("DX", "CR", "CT", "MR", "RF", "XA", "OT")
#: software and model labels are kept only when they look like version labels, never free text
_LABEL_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._+-:")

#: ``axis_mm``: ``image.axis_sampling_mm`` (CT, MR: how far apart the series samples the spine's axis; NaN: none)
DOC_FLOATS = ("time_s", "age_years", "axis_mm", *PARAMETERS)
DOC_INTS = ("date", "status", "posture", "spacing", "sex", "modality", "roussouly", *SCHWAB, "n_warnings",
            "n_levels", "n_required", "software", "model", "order")
#: one vertebra's values, in the order ``_vertebra`` returns them, then its ``axis_mm`` (the level's own sampling
#: of the spine's axis where the document lists one, ``landmarks.axis_sampling_mm``: a gap at its endplates; else
#: the document's) and the document's index
VERT_FIELDS = ("level", "h_anterior", "h_middle", "h_posterior", "loss", "grade", "morph", "rk", "vk", "oedema",
               "oedema_extent", "oedema_src", "cleft", "cleft_content", "cleft_src", "axis_mm", "doc")
VERT_FLOATS = ("h_anterior", "h_middle", "h_posterior", "loss", "rk", "vk", "oedema_extent", "axis_mm")
VERT_INTS = tuple(k for k in VERT_FIELDS if k not in VERT_FLOATS)
_NO = -1
_NAN = math.nan


class ReadError(ValueError):
    """A document that claims ``sagittal.analysis/1`` but cannot be used; ``str`` names why."""


@dataclass
class Columns:
    """Documents and vertebrae as typed arrays; codes index the tuples above (-1: null).

    ``doc_patient`` / ``doc_study`` index ``patient_ids`` / ``study_uids`` (identifiers,
    kept in memory only); ``vert_doc`` indexes the documents.
    """

    doc: dict[str, np.ndarray]
    vert: dict[str, np.ndarray]
    doc_patient: np.ndarray
    doc_study: np.ndarray
    patient_ids: list[str]
    study_uids: list[str]
    labels: list[str]  # software / model labels, indexed by doc["software"], doc["model"]
    errors: list[tuple[str, str]] = field(default_factory=list)  # (file, reason)
    n_files: int = 0
    n_other: int = 0  # JSON of another schema, passed over
    cpu_s: float = 0.0  # CPU seconds spent reading, summed over the reading processes (benchmarks)
    peak_rss_mb: float = 0.0  # the largest reading process's peak RSS (0 where unknown)

    @property
    def n_docs(self) -> int:
        return len(self.doc_patient)


def find_documents(inputs: Iterable[str | os.PathLike[str]]) -> tuple[list[str], list[tuple[str, str]]]:
    """Every ``.json`` / ``.jsonl`` file under ``inputs`` (sorted), and inputs that do not exist."""
    files: list[str] = []
    missing: list[tuple[str, str]] = []
    for item in inputs:
        p = Path(item)
        if p.is_file():
            files.append(str(p))
        elif p.is_dir():
            for root, dirs, names in os.walk(p):
                dirs.sort()
                files += [os.path.join(root, n) for n in sorted(names) if n.endswith((".json", ".jsonl"))]
        else:
            missing.append((str(p), "no such file or folder"))
    return files, missing


class _Builder:
    """Accumulates one chunk of documents as Python lists of numbers (then arrays)."""

    def __init__(self) -> None:
        self.doc: dict[str, list[float] | list[int]] = {k: [] for k in (*DOC_FLOATS, *DOC_INTS)}
        self.vert: list[tuple[float, ...]] = []  # one tuple per vertebra, VERT_FIELDS order
        self.patient: list[int] = []
        self.study: list[int] = []
        self.patient_ids: dict[str, int] = {}
        self.study_uids: dict[str, int] = {}
        self.labels: dict[str, int] = {}
        self.errors: list[tuple[str, str]] = []
        self.n_files = 0
        self.n_other = 0

    def _code(self, table: dict[str, int], value: str) -> int:
        return table.setdefault(value, len(table))

    def add(self, doc: object, where: str, order: int) -> None:
        """Validate and extract one document; raises ReadError, leaving no partial row."""
        row, verts, pid, suid = _extract(doc, where)
        n = len(self.patient)
        for k in ("software", "model"):
            label = row[k]
            row[k] = _NO if label is None else self._code(self.labels, str(label))
        row["order"] = order
        for k, v in row.items():
            self.doc[k].append(v)  # type: ignore[arg-type]
        self.patient.append(self._code(self.patient_ids, pid))
        self.study.append(self._code(self.study_uids, suid))
        self.vert += [(*v, n) for v in verts]

    def columns(self) -> Columns:
        doc = {k: np.asarray(self.doc[k], dtype=np.float64 if k in DOC_FLOATS else np.int64) for k in self.doc}
        table = np.asarray(self.vert, dtype=np.float64).reshape(-1, len(VERT_FIELDS))
        vert = {k: table[:, i].copy() if k in VERT_FLOATS else table[:, i].astype(np.int32)
                for i, k in enumerate(VERT_FIELDS)}
        return Columns(doc, vert, np.asarray(self.patient, dtype=np.int64), np.asarray(self.study, dtype=np.int64),
                       list(self.patient_ids), list(self.study_uids), list(self.labels), self.errors, self.n_files,
                       self.n_other)


def _num(obj: dict[str, object], key: str, where: str) -> float:
    v = obj.get(key)
    t = type(v)
    if t is float:
        return v  # type: ignore[return-value]
    if v is None:
        return _NAN
    if t is not int:  # bool and text are refused
        raise ReadError(f"{where}: {key} must be a number or null, not {t.__name__}")
    return float(v)  # type: ignore[arg-type]


def _code(value: object, choices: tuple[str, ...], what: str, where: str) -> int:
    if value is None:
        return _NO
    if not isinstance(value, str) or value not in choices:
        raise ReadError(f"{where}: {what} must be one of {', '.join(choices)} or null, not {value!r}")
    return choices.index(value)


def _label(value: object, source: dict[str, object]) -> str | None:
    """A version label, or None: short, of version characters, and holding no value of the
    document's ``source`` (IDs, UIDs, names… wherever a writer put them)."""
    if not (isinstance(value, str) and 0 < len(value) <= 64 and set(value) <= _LABEL_CHARS):
        return None
    low = value.lower()
    for v in source.values():
        for text in v if isinstance(v, list) else [v]:
            if isinstance(text, str) and len(text.strip()) >= 3 and text.strip().lower() in low:
                return None
    return value


def _dict(obj: object, what: str, where: str) -> dict[str, object]:
    if not isinstance(obj, dict):
        raise ReadError(f"{where}: {what} must be an object, not {type(obj).__name__}")
    return obj


def _extract(doc: object, where: str) -> tuple[dict[str, object], list[tuple[float, ...]], str, str]:
    d = _dict(doc, "the document", where)
    src = d.get("source")
    if src is None:
        raise ReadError(f"{where}: source is null (e.g. 'sagittal measure' output): no patient to link the study to")
    src = _dict(src, "source", where)
    pid = src.get("patient_id")
    if not isinstance(pid, str) or not pid.strip():
        raise ReadError(f"{where}: source.patient_id is missing or empty: the study cannot be linked to a patient")
    date = date_ordinal(src.get("study_date"))
    suid = src.get("study_instance_uid")
    if not isinstance(suid, str) or not suid.strip():
        # the study is then this patient's date and time (io.series groups files the same way)
        suid = "\x00no-uid\x00" + pid + "\x00" + str(src.get("study_date")) + "\x00" + str(src.get("study_time"))
    image = _dict(d.get("image") or {}, "image", where)
    params = _dict(d.get("parameters") or {}, "parameters", where)
    software = d.get("software") if isinstance(d.get("software"), dict) else {}
    assert isinstance(software, dict)
    modality = src.get("modality")
    age = age_years(src.get("patient_age_years", src.get("patient_age")), src.get("patient_birth_date"), date)
    time_s = time_seconds(src.get("study_time"))
    row: dict[str, object] = {
        "date": _NO if date is None else date,
        "time_s": math.nan if time_s is None else time_s,
        "age_years": math.nan if age is None else age,
        "status": _code(d.get("status"), STATUSES, "status", where),
        "posture": _code(image.get("patient_position"), POSTURES, "image.patient_position", where),
        "spacing": _code(image.get("spacing_source"), SPACING_SOURCES, "image.spacing_source", where),
        "sex": _code(sex_code(src.get("patient_sex")), SEXES, "source.patient_sex", where),
        "modality": MODALITIES.index(modality) if modality in MODALITIES else _NO,
        "roussouly": _NO if params.get("roussouly_type") is None else int(_num(params, "roussouly_type", where)),
        "axis_mm": _axis_sampling(image, where),
        "software": _label(software.get("sagittal"), src),
        "model": _label(software.get("model"), src),
    }
    if row["status"] == _NO:
        raise ReadError(f"{where}: status is missing")
    for k in PARAMETERS:
        row[k] = _num(params, k, where)
    for k in SCHWAB:
        row[k] = _code(params.get(k), SCHWAB_CODES, f"parameters.{k}", where)
    row["n_required"] = sum(not math.isnan(row[k]) for k in REQUIRED)  # type: ignore[arg-type]
    warnings = d.get("warnings") or []
    row["n_warnings"] = len(warnings) if isinstance(warnings, list) else 0
    verts_in = d.get("vertebrae") or []
    if not isinstance(verts_in, list):
        raise ReadError(f"{where}: vertebrae must be a list")
    try:
        verts = [_vertebra(v, "") for v in verts_in]
    except ReadError:  # again, to name the vertebra (messages are built only for bad documents)
        verts = [_vertebra(v, f"{where}: vertebrae[{i}]") for i, v in enumerate(verts_in)]
    row["n_levels"] = len(verts)
    if len({v[0] for v in verts}) != len(verts):
        raise ReadError(f"{where}: a level appears twice in vertebrae")
    own = _level_axis_sampling(d.get("landmarks"), where)
    return row, [(*v, own.get(LEVELS[int(v[0])], row["axis_mm"])) for v in verts], pid, suid  # type: ignore[arg-type]


def _level_axis_sampling(landmarks: object, where: str) -> dict[str, float]:
    """``landmarks.axis_sampling_mm`` (level → mm: the levels a CT's gap leaves more coarsely sampled than the
    series), checked as ``report.analysis`` checks it; ``{}`` where absent."""
    if not isinstance(landmarks, dict):
        return {}
    try:
        return level_axis_sampling(landmarks.get(LEVEL_AXIS_SAMPLING))
    except InputError as exc:
        raise ReadError(f"{where}: {exc}") from None


def _axis_sampling(image: dict[str, object], where: str) -> float:
    """``image.axis_sampling_mm`` (CT, MR; a radiograph has none): a positive, finite number of millimetres,
    NaN where absent or null; anything else (text, a bool, zero, negative, NaN, infinite) is refused."""
    v = image.get("axis_sampling_mm")
    if v is None:
        return _NAN
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not (v > 0 and math.isfinite(v)):
        raise ReadError(f"{where}: image.axis_sampling_mm must be a positive number of millimetres or null, not {v!r}")
    return float(v)


_NO_FINDING = (_NO, _NAN, _NO)


def _vertebra(v: object, where: str) -> tuple[float, ...]:
    """One vertebra as a tuple in ``VERT_FIELDS`` order (without the document index)."""
    v = _dict(v, "a vertebra", where)
    name = v.get("level")
    level = LEVEL_INDEX.get(name) if isinstance(name, str) else None
    if level is None:
        raise ReadError(f"{where}: unknown level {name!r}")
    h = v.get("heights_mm")
    if h is None:
        heights: tuple[float, ...] = (_NAN, _NAN, _NAN)
    else:
        h = _dict(h, "heights_mm", where)
        heights = (_num(h, "anterior", where), _num(h, "middle", where), _num(h, "posterior", where))
    grade = v.get("genant_grade")
    if grade is not None and (type(grade) is not int or not 0 <= grade <= 3):
        raise ReadError(f"{where}: genant_grade must be 0-3 or null, not {grade!r}")
    oedema, cleft = v.get("oedema"), v.get("cleft")
    if oedema is None:
        oe: tuple[float, ...] = _NO_FINDING
    else:
        o = _dict(oedema, "oedema", where)
        oe = (_bool(o.get("present"), "oedema.present", where), _num(o, "extent_pct", where),
              _code(o.get("source"), FINDING_SOURCES, "oedema.source", where))
    if cleft is None:
        cl: tuple[float, ...] = (_NO, _NO, _NO)
    else:
        c = _dict(cleft, "cleft", where)
        cl = (_bool(c.get("present"), "cleft.present", where),
              _code(c.get("content"), CLEFT_CONTENTS, "cleft.content", where),
              _code(c.get("source"), FINDING_SOURCES, "cleft.source", where))
    return (level, *heights, _num(v, "height_loss_pct", where), _NO if grade is None else grade,
            _code(v.get("morphology"), MORPHOLOGIES, "morphology", where), _num(v, "regional_kyphosis_deg", where),
            _num(v, "vertebral_kyphosis_deg", where), *oe, *cl)


def _bool(value: object, what: str, where: str) -> int:
    if value is None:
        return _NO
    if not isinstance(value, bool):
        raise ReadError(f"{where}: {what} must be true, false or null")
    return int(value)


def _peak_rss_mb() -> float:
    try:
        import resource
    except ImportError:  # not on Windows
        return 0.0
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def _read_chunk(paths: list[tuple[int, str]]) -> Columns:
    cpu0 = time.process_time()
    b = _Builder()
    for order, path in paths:
        b.n_files += 1
        try:
            with open(path, "rb") as fh:
                data = fh.read()
        except OSError as exc:
            b.errors.append((path, f"cannot read ({exc.strerror})"))
            continue
        if _SCHEMA_BYTES not in data:
            b.n_other += 1
            continue
        lines = data.splitlines() if path.endswith(".jsonl") else [data]
        for i, text in enumerate(lines):
            where = f"{path}, line {i + 1}" if len(lines) > 1 else path
            if not text.strip():
                continue
            try:
                obj = json.loads(text)
            except ValueError as exc:
                b.errors.append((where, f"not valid JSON ({exc})"))
                continue
            if not isinstance(obj, dict) or obj.get("schema") != SCHEMA_ID:
                b.n_other += 1
                continue
            try:
                b.add(obj, where, order * 1_000_000 + i)
            except ReadError as exc:
                b.errors.append((where, str(exc).removeprefix(where + ": ")))
    out = b.columns()
    out.cpu_s, out.peak_rss_mb = time.process_time() - cpu0, _peak_rss_mb()
    return out


def _chunks(files: list[str], size: int) -> Iterator[list[tuple[int, str]]]:
    for start in range(0, len(files), size):
        yield [(start + i, p) for i, p in enumerate(files[start:start + size])]


def _merge(parts: list[Columns]) -> Columns:
    pids: dict[str, int] = {}
    suids: dict[str, int] = {}
    labels: dict[str, int] = {}
    doc_patient, doc_study, docs, verts = [], [], [], []
    errors: list[tuple[str, str]] = []
    offset = 0
    for c in parts:
        pmap = np.asarray([pids.setdefault(x, len(pids)) for x in c.patient_ids] or [0], dtype=np.int64)
        smap = np.asarray([suids.setdefault(x, len(suids)) for x in c.study_uids] or [0], dtype=np.int64)
        lmap = np.asarray([labels.setdefault(x, len(labels)) for x in c.labels] + [_NO], dtype=np.int64)
        doc_patient.append(pmap[c.doc_patient])
        doc_study.append(smap[c.doc_study])
        d = dict(c.doc)
        d["software"], d["model"] = lmap[d["software"]], lmap[d["model"]]  # -1 maps to the appended -1
        docs.append(d)
        v = dict(c.vert)
        v["doc"] = v["doc"] + offset
        verts.append(v)
        offset += c.n_docs
        errors += c.errors
    doc = {k: np.concatenate([d[k] for d in docs]) for k in (*DOC_FLOATS, *DOC_INTS)}
    vert = {k: np.concatenate([v[k] for v in verts]) for k in (*VERT_FLOATS, *VERT_INTS)}
    return Columns(doc, vert, np.concatenate(doc_patient), np.concatenate(doc_study), list(pids), list(suids),
                   list(labels), errors, sum(c.n_files for c in parts), sum(c.n_other for c in parts),
                   sum(c.cpu_s for c in parts), max(c.peak_rss_mb for c in parts))


def read_documents(inputs: Iterable[str | os.PathLike[str]], *, workers: int = 1, chunk: int = 2000) -> Columns:
    """Every analysis document under ``inputs`` as columns; unusable ones in ``errors``.

    ``workers`` > 1 reads chunks of ``chunk`` files in that many processes; the result is
    the same, in file order.
    """
    files, missing = find_documents(inputs)
    parts: list[Columns] = [_Builder().columns()]
    if workers > 1 and len(files) > chunk:
        import multiprocessing as mp

        # forkserver (spawn where there is none): no fork of a process that may run threads
        method = "forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn"
        with mp.get_context(method).Pool(workers) as pool:
            parts += pool.imap(_read_chunk, _chunks(files, chunk))
    else:
        parts += map(_read_chunk, _chunks(files, chunk))
    out = _merge(parts)
    out.errors = missing + out.errors
    return out
