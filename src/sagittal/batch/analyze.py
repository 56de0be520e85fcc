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
import time
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


_DETECTORS: dict = {}


def _detector(weights, device, threads):
    """One detector per process and (weights, device), loaded on first use."""
    key = (str(weights), device)
    if key not in _DETECTORS:
        from ..landmarks.infer import LandmarkDetector

        _DETECTORS.clear()
        _DETECTORS[key] = LandmarkDetector(weights, device=device, threads=threads)
    return _DETECTORS[key]


@dataclass
class _Loaded:
    task: Task
    view: str
    notes: list
    cal: object
    decoded: object


def _failure(path: str, exc: Exception) -> SetAside:
    if isinstance(exc, SagittalError):
        return SetAside(path, "decode" if "decode" in str(exc) or "read" in str(exc) else "analyse", str(exc))
    log.exception("unexpected failure on one file")
    return SetAside(path, "analyse", f"{type(exc).__name__}: {exc}")


def _load(task: Task) -> _Loaded:
    from ..io.calibration import radiograph_calibration
    from ..io.classify import radiograph_view
    from ..io.decode import decode

    view, notes = radiograph_view(task.header)
    cal = radiograph_calibration(task.header, notes)
    return _Loaded(task, view, list(notes), cal, decode(task.header.path, radiograph=True))


def _finish(item: _Loaded, lm: dict, facing: str | None, lm_warnings: list[str], clock: "_Clock") -> dict:
    """The analysis document of one image from its landmarks, written with its overlay."""
    from ..report.analysis import analysis_document
    from ..report.overlay import render_overlay

    h, cal, image = item.task.header, item.cal, item.decoded.pixels[0]
    warnings = item.notes + list(cal.warnings) + list(item.decoded.notes) + lm_warnings
    anterior = cal.anterior
    if facing and anterior and facing != anterior:
        warnings.append(f"PatientOrientation says the patient faces {anterior} but the landmarks point "
                        f"{facing}: the header is followed; check the image")
    anterior = anterior or facing  # the header when it says, else the image content
    if item.view == "unknown":
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
    clock.lap("geometry")
    out = Path(item.task.out_json)
    out.parent.mkdir(parents=True, exist_ok=True)
    import cv2

    ok, png = cv2.imencode(".png", render_overlay(image, doc))
    if ok:  # the overlay first: a document on disk means its image is done
        tmp = out.with_name(f".{out.stem}.png.tmp")
        tmp.write_bytes(png.tobytes())
        os.replace(tmp, out.with_suffix(".png"))
    _write_atomic(out, json.dumps(doc, indent=1) + "\n")
    clock.lap("outputs")
    return doc


def analyse_batch(tasks: list[Task], weights=None, device: str = "cpu", threads: int | None = None,
                  timings: dict[str, float] | None = None) -> list[tuple[dict | None, SetAside | None]]:
    """Analyse radiographs, the landmark model batched over them; per task ``(document, None)``
    or ``(None, SetAside)`` — a failure is never raised, and one file's failure is its own.

    ``timings``, when given, receives the seconds of each stage (``decode``, the detector's
    ``coarse`` / ``crops`` / ``refine`` / ``postprocess``, ``geometry``, ``outputs``)."""
    clock = _Clock(timings)
    results: list = [None] * len(tasks)
    loaded: list[tuple[int, _Loaded]] = []
    for i, task in enumerate(tasks):
        try:
            loaded.append((i, _load(task)))
        except Exception as exc:
            results[i] = (None, _failure(task.header.path, exc))
    clock.lap("decode")
    if loaded:
        try:
            detector = _detector(weights, device, threads)
            found = detector.detect([it.decoded.pixels[0] for _, it in loaded], facing=[it.cal.anterior for _, it in loaded])
            clock.add(detector.last_timings)
        except Exception:
            if len(loaded) == 1:
                raise
            found = None  # find the culprit: one image at a time
        for k, (i, item) in enumerate(loaded):
            try:
                if found is None:
                    (lm, facing, warn), = _detector(weights, device, threads).detect([item.decoded.pixels[0]],
                                                                                      facing=[item.cal.anterior])
                else:
                    lm, facing, warn = found[k]
                results[i] = (_finish(item, lm, facing, warn, clock), None)
            except Exception as exc:
                results[i] = (None, _failure(item.task.header.path, exc))
    return results


def analyse_one(task: Task, weights=None, device: str = "cpu", threads: int | None = None,
                timings: dict[str, float] | None = None) -> tuple[dict | None, SetAside | None]:
    """Analyse one radiograph (``analyse_batch`` of one)."""
    try:
        return analyse_batch([task], weights, device, threads, timings)[0]
    except Exception as exc:  # a batch never stops for one file
        return None, _failure(task.header.path, exc)


class _Clock:
    """Stage timer writing into an optional dict (no-op without one)."""

    def __init__(self, into: dict[str, float] | None):
        self.into, self.t = into, time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        if self.into is not None:
            self.into[stage] = self.into.get(stage, 0.0) + now - self.t
        self.t = now

    def add(self, stages: dict[str, float]) -> None:
        if self.into is not None:
            for k, v in stages.items():
                self.into[k] = self.into.get(k, 0.0) + v
        self.t = time.perf_counter()


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
                clinical: str | None = None, batch_size: int = 4) -> dict:
    """The whole batch. Returns counts; raises ``InputError`` only when nothing could run.

    One process runs the landmark model over ``batch_size`` images at a time; ``workers`` > 1
    starts that many processes, one image each at a time."""
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
    if todo:
        _detector(weights, device, None)  # unusable weights stop the run here, not once per file
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
        for start in range(0, len(todo), batch_size):
            chunk = todo[start:start + batch_size]
            for task, (doc, err) in zip(chunk, analyse_batch(chunk, weights, device)):
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
