"""Candidacy reports from analysis documents: group per patient, merge what the documents
and the clinical CSV say about each vertebra, evaluate the rules, write JSON, HTML and CSV.
"""

from __future__ import annotations

import base64
import csv
import json
import logging
import os
from collections import defaultdict
from pathlib import Path

from ..errors import InputError
from ..findings.candidacy import evaluate_patient
from ..findings.clinical import ClinicalInputs
from ..findings.patient import patient_facts
from ..findings.patient import study_date as _date
from ..io.series import pseudonym
from .analysis import SCHEMA_ID
from .html import candidacy_html

log = logging.getLogger(__name__)
UNASSIGNED = "(no patient_id)"


def load_documents(inputs) -> tuple[list[tuple[str, dict]], list[str]]:
    """Analysis documents from files (.json, .jsonl) and folders; unreadable ones become warnings."""
    paths: list[Path] = []
    warnings: list[str] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            paths += sorted(x for x in p.rglob("*") if x.suffix in (".json", ".jsonl") and x.is_file())
        elif p.is_file():
            paths.append(p)
        else:
            warnings.append(f"{p}: no such file or folder")
    docs: list[tuple[str, dict]] = []
    for p in paths:
        try:
            text = p.read_text(encoding="utf-8")
            objs = [json.loads(line) for line in text.splitlines() if line.strip()] if p.suffix == ".jsonl" \
                else [json.loads(text)]
        except (OSError, ValueError) as exc:
            warnings.append(f"{p}: not readable as JSON ({exc})")
            continue
        for obj in objs:
            if isinstance(obj, dict) and obj.get("schema") == SCHEMA_ID:
                docs.append((str(p), obj))
    return docs, warnings


def build_reports(docs: list[tuple[str, dict]], clinical: dict[str, ClinicalInputs], outdir: str | os.PathLike,
                  warnings: list[str] | None = None, key: bytes | None = None) -> list[dict]:
    """Write ``candidacy.json`` and ``candidacy.html`` per patient and ``candidacy.csv``; return the reports.

    Patient folders and warnings name patients by pseudonym, keyed with ``key`` when given (the
    same key as ``sagittal analyze --key`` gives the same folder names as the analysis)."""
    outdir = Path(outdir)
    warnings = warnings if warnings is not None else []
    by_patient: dict[str, list[tuple[str, dict]]] = defaultdict(list)
    for path, doc in docs:
        pid = (doc.get("source") or {}).get("patient_id") or UNASSIGNED
        by_patient[pid].append((path, doc))
    if UNASSIGNED in by_patient:
        warnings.append(f"{len(by_patient[UNASSIGNED])} document(s) without source.patient_id are reported together "
                        f"as {UNASSIGNED!r}")
    for pid in sorted(set(clinical) - set(by_patient)):
        warnings.append(f"clinical row for a patient with no analysis document ({pseudonym(pid, key)}); reported on "
                        "clinical data alone")
        by_patient[pid] = []
    reports = []
    for pid in sorted(by_patient):
        pdocs = by_patient[pid]
        if pid not in clinical and pid != UNASSIGNED:
            warnings.append(f"{pseudonym(pid, key)}: no row in the clinical CSV; clinical criteria are unknown")
        levels, params, analysable = patient_facts(pdocs, clinical.get(pid))
        report = evaluate_patient(pid, levels, clinical.get(pid), params, analysable)
        report["documents"] = [p for p, _ in pdocs]
        folder = outdir / "patients" / (pseudonym(pid, key) if pid != UNASSIGNED else "unassigned")
        _write_atomic(folder / "candidacy.json", json.dumps(report, indent=1) + "\n")
        _write_atomic(folder / "candidacy.html", candidacy_html(report, _overlays(pdocs)))
        report["_folder"] = str(folder)
        reports.append(report)
    _write_csv(outdir / "candidacy.csv", reports)
    return reports


_MODALITY_TEXT = {"DX": "lateral radiograph (DX)", "CR": "lateral radiograph (CR)", "CT": "CT, sagittal plane",
                  "MR": "MRI, sagittal plane"}
#: per-sequence overlays an MR (or CT) document may have beside it: ``<doc stem>.<sequence>.png``
_SEQUENCE_TEXT = {"stir": "STIR — oedema outlined", "t2fs": "fat-suppressed T2 — oedema outlined", "t1": "T1",
                  "t2": "T2", "ct": "CT"}


def _overlays(pdocs: list[tuple[str, dict]]) -> list[tuple[str, str]]:
    """(caption, base64 PNG) for the overlays written beside the documents, oldest study first:
    ``<doc>.png`` and, for MR and CT, one ``<doc>.<sequence>.png`` per sequence (STIR, T1 …)."""
    from .html import format_date

    out = []
    for path, doc in sorted(pdocs, key=lambda d: _date(d[1])):
        src = doc.get("source") or {}
        modality = str(src.get("modality") or "")
        what = f"{_MODALITY_TEXT.get(modality, modality or 'image')}, {format_date(src.get('study_date'))}"
        main = Path(path).with_suffix(".png")
        pngs = [(what, main)] if main.is_file() else []
        for seq_png in sorted(main.parent.glob(f"{main.stem}.*.png")):
            seq = seq_png.name[len(main.stem) + 1:-len(".png")].lower()
            pngs.append((f"{what}: {_SEQUENCE_TEXT.get(seq, seq.upper())}", seq_png))
        out += [(caption, base64.b64encode(p.read_bytes()).decode("ascii")) for caption, p in pngs]
    return out


def _write_atomic(path: Path, text: str) -> None:
    from ..fsio import atomic_write_text

    atomic_write_text(path, text)


def _write_csv(path: Path, reports: list[dict]) -> None:
    from ..fsio import atomic_path

    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["patient_id", "category", "fractured_levels", "level_categories", "ungraded_levels",
                    "sagittal_vertical_axis_mm", "pelvic_incidence_deg", "pelvic_tilt_deg", "pi_ll_mismatch_deg", "report"])
        for r in reports:
            b = r["baseline"]
            w.writerow([r["patient_id"], r["category"], ";".join(x["level"] for x in r["levels"]),
                        ";".join(f"{x['level']}:{x['category']}" for x in r["levels"]),
                        ";".join(x["level"] for x in r.get("ungraded_levels") or []),
                        b.get("sagittal_vertical_axis_mm"), b.get("pelvic_incidence_deg"), b.get("pelvic_tilt_deg"),
                        b.get("pi_ll_mismatch_deg"), os.path.relpath(Path(r["_folder"]) / "candidacy.html", path.parent)])


def check_inputs(docs, warnings) -> None:
    if not docs:
        raise InputError("no analysis documents (schema sagittal.analysis/1) found in the inputs"
                         + (f"; {warnings[0]}" if warnings else ""))
