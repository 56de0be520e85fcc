"""``errors.csv``: every input that was not analysed, with the stage and the reason.

Written atomically (a temporary file renamed into place) so that a killed run never leaves
half a ledger.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable
from pathlib import Path

ERRORS_HEADER = ("path", "stage", "reason")


def write_errors_csv(rows: Iterable, path: str | os.PathLike) -> Path:
    """Write ``rows`` (objects with ``path``, ``stage``, ``reason``) to ``path`` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(ERRORS_HEADER)
        for r in rows:
            w.writerow([r.path, r.stage, " ".join(str(r.reason).split())])
    os.replace(tmp, path)
    return path
