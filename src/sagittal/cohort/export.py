"""``sagittal cohort``: analysis documents (+ clinical CSV) → the de-identified research tables.

Writes into OUTDIR, each file atomically (``sagittal.fsio``): ``studies``, ``vertebrae`` and
``progression`` as ``.parquet`` and ``.csv``, ``data_dictionary.json`` and ``.md``,
``figures/*.png`` and ``cohort.json`` (counts only). Documents that cannot be used are
reported by the caller (file and reason) and never written into OUTDIR: their paths name
patients and UIDs. See ``docs/cohort.md``.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..errors import InputError
from ..findings.clinical import ClinicalInputs, read_clinical_csv
from ..fsio import atomic_path, atomic_write_text
from .dictionary import TABLES, dictionary_markdown, dictionary_text
from .pseudonym import load_or_create_key
from .read import read_documents
from .tables import NULL_INT, Coded, CohortTables, Table, build_tables

__all__ = ["CohortResult", "run_cohort", "to_arrow"]


@dataclass
class CohortResult:
    outdir: Path
    rows: dict[str, int]
    n_documents: int
    n_files: int
    errors: list[tuple[str, str]]  # (file, reason): for the operator's console, never for OUTDIR
    warnings: list[str]
    files: list[Path] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)


def _arrow_column(values: np.ndarray | Coded, type_name: str) -> Any:
    import pyarrow as pa

    if isinstance(values, Coded):
        codes = values.codes.astype(np.int32)
        valid = codes >= 0
        idx = pa.array(np.where(valid, codes, 0), mask=~valid)
        vocab = pa.array(list(values.vocabulary) or [""], type=pa.string())
        return pa.DictionaryArray.from_arrays(idx, vocab).cast(pa.string())
    if type_name == "bool":
        v = np.asarray(values)
        return pa.array(v == 1, mask=v < 0, type=pa.bool_())
    if type_name.startswith("int"):
        v = np.asarray(values, dtype=np.int64)
        null = v == NULL_INT
        return pa.array(np.where(null, 0, v), mask=null).cast(getattr(pa, type_name)())
    v = np.asarray(values, dtype=np.float64)
    return pa.array(v, mask=~np.isfinite(v), type=pa.float64())


def to_arrow(name: str, table: Table) -> Any:
    """One cohort table as a ``pyarrow.Table`` with the data dictionary's types."""
    import pyarrow as pa

    cols = TABLES[name][1]
    arrays = [_arrow_column(table[c.name], c.type) for c in cols]
    return pa.Table.from_arrays(arrays, schema=pa.schema([pa.field(c.name, a.type) for c, a in zip(cols, arrays,
                                                                                                     strict=True)]))


def _write_table(outdir: Path, name: str, table: Table) -> list[Path]:
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    t = to_arrow(name, table)
    pq_path, csv_path = outdir / f"{name}.parquet", outdir / f"{name}.csv"
    with atomic_path(pq_path) as tmp:
        pq.write_table(t, tmp, compression="zstd")
    with atomic_path(csv_path) as tmp:
        pcsv.write_csv(t, str(tmp))  # streamed to the file, never whole in memory
    return [pq_path, csv_path]


def run_cohort(inputs: Iterable[str | os.PathLike[str]], outdir: str | os.PathLike[str], key_path: str | os.PathLike[str],
               clinical_path: str | os.PathLike[str] | None = None, *, workers: int = 1,
               figures: bool = True) -> CohortResult:
    """Build and write the cohort. Raises ``InputError`` for a bad key file or clinical CSV."""
    inputs = list(inputs)
    out = Path(outdir)
    if Path(key_path).resolve().is_relative_to(out.resolve()):
        raise InputError(f"{key_path}: the key file must not lie inside the output folder {outdir}")
    key = load_or_create_key(key_path)
    clinical: dict[str, ClinicalInputs] = read_clinical_csv(clinical_path) if clinical_path else {}
    clock = {"start": time.perf_counter()}
    cols = read_documents(inputs, workers=workers)
    clock["read"] = time.perf_counter()
    tables = build_tables(cols, clinical, key)
    n_docs, n_files, errors = cols.n_docs, cols.n_files, cols.errors
    del cols  # the tables hold copies: free the document columns before writing
    clock["link"] = time.perf_counter()
    files = _write_all(out, tables, figures)
    clock["write"] = time.perf_counter()
    rows = {name: _n_rows(t) for name, t in tables.items()}
    summary = {"schema": "sagittal.cohort/1", "software": {"sagittal": __version__}, "documents": n_docs,
               "documents_skipped": len(errors), "rows": rows}
    files.append(atomic_write_text(out / "cohort.json", json.dumps(summary, indent=1) + "\n"))
    seconds = {"read": clock["read"] - clock["start"], "link": clock["link"] - clock["read"],
               "write": clock["write"] - clock["link"]}
    return CohortResult(out, rows, n_docs, n_files, errors, tables.warnings, files, seconds)


def _n_rows(table: Table) -> int:
    first = next(iter(table.values()))
    return len(first.codes if isinstance(first, Coded) else first)


def _write_all(out: Path, tables: CohortTables, figures: bool) -> list[Path]:
    files: list[Path] = []
    for name, table in tables.items():
        files += _write_table(out, name, table)
    files.append(atomic_write_text(out / "data_dictionary.json", dictionary_text(__version__)))
    files.append(atomic_write_text(out / "data_dictionary.md", dictionary_markdown(__version__)))
    if figures:
        from .figures import write_figures

        files += write_figures(tables, out / "figures")
    return files
