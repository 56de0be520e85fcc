"""``sagittal analyze``: every lateral radiograph under the inputs → one analysis document
(+ overlay PNG) under OUTDIR, ``summary.csv``, ``errors.csv``; resumable, one bad file never
stops the batch, outputs written atomically.

Layout: ``OUTDIR/<patient pseudonym>/<StudyInstanceUID>/<SOPInstanceUID>.json`` (and
``.png``). A rerun skips images whose document exists.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import SagittalError
from ..io.discover import Header, SetAside
from ..io.series import pseudonym, scan_export
from .ledger import write_errors_csv

log = logging.getLogger(__name__)
SUMMARY_FIELDS = ("document", "patient", "study_instance_uid", "modality", "status", "spacing_source",
                  "pelvic_incidence_deg", "pelvic_tilt_deg", "sacral_slope_deg", "lumbar_lordosis_deg",
                  "thoracic_kyphosis_deg", "sagittal_vertical_axis_mm", "pi_ll_mismatch_deg", "levels_found",
                  "fractures", "warnings")


@dataclass(frozen=True)
class Task:
    header: Header
    out_json: str


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)[:120] or "unnamed"


def plan(inputs, outdir: Path) -> tuple[list[Task], list[SetAside], int]:
    """Which files to analyse, which are set aside, and how many files were found at all."""
    export = scan_export(inputs, decode_pixels=False)
    errors = list(export.set_aside)
    tasks = []
    for s in export.series:
        if s.kind != "radiograph":
            errors += [SetAside(p, "classify", f"{s.modality} {s.orientation or ''} series: CT/MR landmark analysis "
                                "is not implemented yet (radiographs only)") for p in s.files]
            continue
        if s.view in ("frontal", "oblique"):
            errors += [SetAside(p, "classify", f"not a lateral view ({s.view})") for p in s.files]
            continue
        for h in s.headers:
            name = _safe(h.sop_instance_uid or Path(h.path).name)
            out = outdir / pseudonym(h.patient_id) / _safe(h.study_uid or "no-study-uid") / f"{name}.json"
            tasks.append(Task(h, str(out)))
    n_found = sum(len(s.files) for s in export.series) + sum(a.reason != "no such file or folder" for a in export.set_aside)
    return tasks, errors, n_found


_DETECTOR = None


def _detector(weights, device, threads):
    global _DETECTOR
    if _DETECTOR is None:
        from ..landmarks.infer import LandmarkDetector

        _DETECTOR = LandmarkDetector(weights, device=device, threads=threads)
    return _DETECTOR


def analyse_one(task: Task, weights=None, device: str = "cpu", threads: int | None = None) -> tuple[dict | None, SetAside | None]:
    """Analyse one radiograph; a failure comes back as a ``SetAside`` (never raised)."""
    from ..io.calibration import radiograph_calibration
    from ..io.classify import radiograph_view
    from ..io.decode import decode
    from ..report.analysis import analysis_document
    from ..report.overlay import render_overlay

    h = task.header
    try:
        view, notes = radiograph_view(h)
        cal = radiograph_calibration(h, notes)
        d = decode(h.path, radiograph=True)
        image = d.pixels[0]
        (lm, facing, lm_warnings), = _detector(weights, device, threads).detect([image])
        warnings = list(notes) + list(cal.warnings) + list(d.notes) + lm_warnings
        anterior = cal.anterior
        if facing and anterior and facing != anterior:
            warnings.append(f"PatientOrientation says the patient faces {anterior} but the landmarks point "
                            f"{facing}: the header is followed; check the image")
        anterior = anterior or facing  # the header when it says, else the image content
        if view == "unknown":
            warnings.append("the view could not be confirmed as lateral from the header")
        source = {"path": h.path, "modality": h.modality, "study_instance_uid": h.study_uid or None,
                  "series_instance_uid": h.series_uid or None, "sop_instance_uids": [h.sop_instance_uid],
                  "patient_id": h.patient_id or None, "study_date": h.study_key[0] or None}
        image_info = {"rows": int(image.shape[0]), "columns": int(image.shape[1]),
                      "pixel_spacing_mm": None if cal.pixel_spacing_mm is None else list(cal.pixel_spacing_mm),
                      "spacing_source": cal.source, "anterior": anterior}
        doc = analysis_document(image_info, lm, source=source, warnings=warnings)
        if not lm["vertebrae"] and not lm["s1_endplate"]:
            doc["status"] = "rejected"
            doc["warnings"].append("no spine found: nothing is reported")
        out = Path(task.out_json)
        out.parent.mkdir(parents=True, exist_ok=True)
        _write_atomic(out, json.dumps(doc, indent=1) + "\n")
        import cv2

        ok, png = cv2.imencode(".png", render_overlay(image, doc))
        if ok:
            tmp = out.with_suffix(".png.tmp")
            tmp.write_bytes(png.tobytes())
            os.replace(tmp, out.with_suffix(".png"))
        return doc, None
    except SagittalError as exc:
        return None, SetAside(h.path, "decode" if "decode" in str(exc) or "read" in str(exc) else "analyse", str(exc))
    except Exception as exc:  # a batch never stops for one file
        log.exception("unexpected failure on one file")
        return None, SetAside(h.path, "analyse", f"{type(exc).__name__}: {exc}")


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _worker(args):
    task, weights, device = args
    return analyse_one(task, weights, device, threads=1)


def summary_row(path: str, doc: dict) -> dict:
    p, src = doc["parameters"], doc.get("source") or {}
    fx = [f"{v['level']}:{v['genant_grade']}" for v in doc["vertebrae"] if (v.get("genant_grade") or 0) > 0]
    row = {"document": path, "patient": pseudonym(src.get("patient_id") or ""), "study_instance_uid":
           src.get("study_instance_uid"), "modality": src.get("modality"), "status": doc["status"],
           "spacing_source": doc["image"]["spacing_source"], "levels_found": len(doc["landmarks"]["vertebrae"]),
           "fractures": ";".join(fx), "warnings": len(doc["warnings"])}
    for k in SUMMARY_FIELDS:
        if k.endswith(("_deg", "_mm")):
            row[k] = p.get(k)
    return row


def run_analyze(inputs, outdir, *, device: str = "auto", workers: int = 1, weights=None, progress: bool | None = None,
                clinical: str | None = None) -> dict:
    """The whole batch. Returns counts; raises ``InputError`` only when nothing could run."""
    from ..errors import InputError

    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    tasks, errors, n_found = plan(inputs, outdir)
    if n_found == 0:
        raise InputError("no files found in the inputs: " + "; ".join(f"{a.path}: {a.reason}" for a in errors[:3]))
    todo = [t for t in tasks if not Path(t.out_json).is_file()]
    skipped = len(tasks) - len(todo)
    from ..landmarks.infer import resolve_device, weights_path

    weights = str(weights_path(weights))
    device = resolve_device(device)
    docs: list[tuple[str, dict]] = []
    from tqdm import tqdm

    bar = tqdm(total=len(todo), desc="analyse", unit="image", disable=not (progress if progress is not None else sys.stderr.isatty()))
    if workers > 1 and len(todo) > 1:
        import multiprocessing as mp

        with mp.get_context("spawn").Pool(workers) as pool:
            for task, (doc, err) in zip(todo, pool.imap(_worker, [(t, weights, device) for t in todo])):
                bar.update()
                (errors.append(err) if err else docs.append((task.out_json, doc)))
    else:
        for task in todo:
            doc, err = analyse_one(task, weights, device)
            bar.update()
            (errors.append(err) if err else docs.append((task.out_json, doc)))
    bar.close()
    # the summary covers every document present, earlier runs included
    rows = []
    for t in tasks:
        if Path(t.out_json).is_file():
            rows.append(summary_row(t.out_json, json.loads(Path(t.out_json).read_text())))
    tmp = outdir / ".summary.csv.tmp"
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=SUMMARY_FIELDS)
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, outdir / "summary.csv")
    write_errors_csv(errors, outdir / "errors.csv")
    result = {"analysed": len(docs), "skipped_existing": skipped, "set_aside": len(errors), "documents": len(rows),
              "statuses": {s: sum(r["status"] == s for r in rows) for s in ("ok", "partial", "rejected")}}
    if clinical is not None:
        from ..findings.clinical import read_clinical_csv
        from ..report.candidacy import build_reports

        all_docs = [(r["document"], json.loads(Path(r["document"]).read_text())) for r in rows]
        build_reports(all_docs, read_clinical_csv(clinical), outdir / "report")
    return result
