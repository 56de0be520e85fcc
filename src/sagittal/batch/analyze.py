"""``sagittal analyze``, the driver: plan the units of work under the inputs, skip those whose
document exists (resume), run the rest on an executor (serial, local processes or Dask), and
write every output itself, atomically: per unit an overlay PNG (and any extra output) then its
analysis document, which marks the unit done; ``summary.csv`` and ``errors.csv`` at the end.

Layout: ``OUTDIR/<patient pseudonym>/<StudyInstanceUID>/<SOPInstanceUID>.json`` (and ``.png``).
"""

from __future__ import annotations

import csv
import json
import logging
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from ..fsio import atomic_path, atomic_write_bytes, atomic_write_text
from ..io.discover import SetAside
from ..io.series import pseudonym
from . import executors
from .ledger import write_errors_csv
from .units import Outcome, Unit, plan_units
from .worker import RunConfig

log = logging.getLogger(__name__)
SUMMARY_FIELDS = ("document", "patient", "study_instance_uid", "modality", "status", "spacing_source",
                  "pelvic_incidence_deg", "pelvic_tilt_deg", "sacral_slope_deg", "lumbar_lordosis_deg",
                  "thoracic_kyphosis_deg", "sagittal_vertical_axis_mm", "pi_ll_mismatch_deg", "levels_found",
                  "fractures", "ungraded", "warnings")


def summary_row(path: str, doc: dict[str, Any], key: bytes | None = None) -> dict[str, Any]:
    """One ``summary.csv`` row (no patient identifier: the pseudonym only, keyed with ``key`` when given)."""
    p, src = doc["parameters"], doc.get("source") or {}
    fx = [f"{v['level']}:{v['genant_grade']}" for v in doc["vertebrae"] if (v.get("genant_grade") or 0) > 0]
    row = {"document": path, "patient": pseudonym(src.get("patient_id") or "", key), "study_instance_uid":
           src.get("study_instance_uid"), "modality": src.get("modality"), "status": doc["status"],
           "spacing_source": doc["image"]["spacing_source"], "levels_found": len(doc["landmarks"]["vertebrae"]),
           "fractures": ";".join(fx), "warnings": len(doc["warnings"]),
           # reported without a grade (points not steady, or a CT/MR too coarse along the spine): not "no fracture"
           "ungraded": ";".join(v["level"] for v in doc["vertebrae"] if v.get("genant_grade") is None)}
    for k in SUMMARY_FIELDS:
        if k.endswith(("_deg", "_mm")):
            row[k] = p.get(k)
    return row


def chunked(units: Sequence[tuple[int, Unit]], size: int) -> list[list[tuple[int, Unit]]]:
    """Consecutive chunks of ``size`` (the last may be shorter)."""
    return [list(units[k:k + size]) for k in range(0, len(units), size)]


def write_outcome(outcome: Outcome, out_json: Path) -> None:
    """A unit's outputs, each atomically: extra files first, the document last (it marks it done)."""
    assert outcome.document is not None
    for suffix, data in outcome.files.items():
        atomic_write_bytes(out_json.with_suffix(f".{suffix}"), data)
    atomic_write_text(out_json, json.dumps(outcome.document, indent=1) + "\n")


def _executor(chunks: list[list[tuple[int, Unit]]], config: RunConfig, workers: int,
              dask: str | None) -> Iterator[executors.Completed]:
    if dask:
        return executors.dask(chunks, config, dask)
    if workers > 1 and len(chunks) > 1:
        return executors.processes(chunks, config, workers)
    return executors.serial(chunks, config)


def _write_summary(outdir: Path, units: list[Unit], key: bytes | None) -> list[dict[str, Any]]:
    """``summary.csv`` over every document present, earlier runs included."""
    rows = []
    for u in units:
        path = outdir / u.relpath(key)
        if path.is_file():
            rows.append(summary_row(str(path), json.loads(path.read_text(encoding="utf-8")), key))
    with atomic_path(outdir / "summary.csv") as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=SUMMARY_FIELDS)
        w.writeheader()
        w.writerows(rows)
    return rows


def _drive(completed: Iterator[executors.Completed], units: list[Unit], outdir: Path, errors: list[SetAside],
           total: int, progress: bool | None, timings: dict[str, float] | None,
           on_result: Callable[[Outcome], None] | None, key: bytes | None) -> int:
    """Consume the executor's outcomes: write each unit's outputs (or ledger its failure), once."""
    from tqdm import tqdm

    bar = tqdm(total=total, desc="analyse", unit="image",
               disable=not (progress if progress is not None else sys.stderr.isatty()))
    analysed, seen = 0, set()
    for outcomes, stage_times in completed:
        if timings is not None:
            for k, v in stage_times.items():
                timings[k] = timings.get(k, 0.0) + v
        for oc in outcomes:
            if oc.index in seen:  # a recomputed task: its first outcome stands
                continue
            seen.add(oc.index)
            unit = units[oc.index]
            if oc.failure is not None and oc.failure.stage == "model":
                bar.close()
                from ..errors import InputError

                raise InputError(oc.failure.reason)
            if oc.failure is not None:
                errors += oc.failure.rows()
            else:
                errors += [row for f in oc.output_failures for row in f.rows()]
                try:
                    write_outcome(oc, outdir / unit.relpath(key))
                    analysed += 1
                except OSError as exc:
                    errors += [SetAside(p, "outputs", f"cannot write the outputs: {exc}") for p in unit.files]
            bar.update()
            if on_result is not None:
                on_result(oc)
    bar.close()
    return analysed


def run_analyze(inputs: Sequence[Any], outdir: str | Path, *, device: str = "auto", workers: int = 1,
                dask: str | None = None, weights: str | None = None, progress: bool | None = None,
                clinical: str | None = None, batch_size: int | None = None, mixed_precision: bool = False,
                outputs: Sequence[str] = (), timings: dict[str, float] | None = None,
                on_result: Callable[[Outcome], None] | None = None, key: str | Path | None = None) -> dict[str, Any]:
    """The whole batch. Returns counts; raises ``InputError`` only when nothing could run.

    ``workers`` > 1 runs chunks of units on that many local processes, ``dask`` (``local``,
    ``local:N`` or ``tcp://host:port``) on a Dask cluster, else this process does. Each chunk
    holds ``batch_size`` units (default: the device's model batch). ``timings`` receives the
    seconds of each stage summed over the units analysed; ``on_result`` is called with each
    unit's ``Outcome`` as it arrives (after its outputs are written). ``key``: a key file
    (``sagittal.cohort.pseudonym``) whose secret keys the patient pseudonyms of folder names and
    ``summary.csv``, so that they match ``sagittal cohort --key`` and cannot be traced without it.
    """
    from ..api import DEFAULT_BATCH, Analyzer
    from ..errors import InputError

    if dask and workers > 1:
        raise InputError("--workers and --dask cannot be combined: the Dask cluster has its own workers")
    secret = None
    if key is not None:
        from ..cohort.pseudonym import load_or_create_key

        secret = load_or_create_key(key)
    if workers > 1 or (dask or "").startswith("local"):  # workers' start-up (torch) overlaps the planning
        executors.worker_context(["distributed"] if dask else [])
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    units, errors, n_found = plan_units(inputs)
    if n_found == 0:
        raise InputError("no files found in the inputs: " + "; ".join(f"{a.path}: {a.reason}" for a in errors[:3]))
    todo = [(i, u) for i, u in enumerate(units) if not (outdir / u.relpath(secret)).is_file()]
    from ..landmarks.infer import resolve_device, weights_path

    weights = str(weights_path(weights))
    device = device if device == "cpu" else resolve_device(device)  # "cpu" needs no torch in the driver
    parallel = dask is not None or workers > 1
    for name in outputs:
        from .units import output_maker

        output_maker(name)
    # the same chunks (hence the same model batches) and one torch thread per process whatever the
    # executor: float sums depend on both, and serial, process and Dask runs give identical documents
    size = batch_size or DEFAULT_BATCH.get(device, 1)
    config = RunConfig(weights, device, batch_size, None, mixed_precision, tuple(outputs))
    if todo and not parallel:  # unusable weights stop the run here, not once per unit
        from .worker import _ANALYZERS

        _ANALYZERS.clear()
        _ANALYZERS[config] = Analyzer(device, weights, batch_size=batch_size, mixed_precision=mixed_precision).load()
    elif todo:  # the workers load the model; unusable weights stop the run at their first answer
        from ..landmarks.weights import verify

        verify(weights)
    analysed = _drive(_executor(chunked(todo, size), config, workers, dask), units, outdir, errors, len(todo),
                      progress, timings, on_result, secret)
    rows = _write_summary(outdir, units, secret)
    write_errors_csv(errors, outdir / "errors.csv")
    result = {"analysed": analysed, "skipped_existing": len(units) - len(todo), "set_aside": len(errors),
              "documents": len(rows), "statuses": {s: sum(r["status"] == s for r in rows) for s in ("ok", "partial", "rejected")}}
    if clinical is not None:
        from ..findings.clinical import read_clinical_csv
        from ..report.candidacy import build_reports

        all_docs = [(r["document"], json.loads(Path(r["document"]).read_text())) for r in rows]
        build_reports(all_docs, read_clinical_csv(clinical), outdir / "report")
    return result
