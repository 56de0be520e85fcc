"""The research cohort: de-identified, longitudinal tables from analysis documents.

``sagittal cohort ANALYSIS_DIR... -o OUTDIR --key KEYFILE [--clinical FILE]`` (see
``docs/cohort.md``): ``studies``, ``vertebrae`` and ``progression`` tables (Parquet with CSV
twins), ``data_dictionary.json`` / ``.md`` and ``figures/``.

Modules: ``pseudonym`` (keyed pseudonyms and the key file; stdlib only), ``deid`` (dates,
ages and what DICOM PS3.15 Annex E calls identifying), ``read`` (streams documents into
compact columns), ``tables`` (linking and the three tables), ``dictionary`` (every column's
type, unit, definition and source), ``figures`` (matplotlib, Agg). pyarrow and matplotlib
come with the optional extra ``cohort`` and are imported only when a table is built.
"""

from __future__ import annotations

__all__: list[str] = []
