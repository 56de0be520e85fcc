"""``errors.csv``: every input that was not analysed, with the stage and the reason.

Written atomically (``sagittal.fsio``) so that a killed run never leaves half a ledger.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..fsio import atomic_path

ERRORS_HEADER = ("path", "stage", "reason")


def write_errors_csv(rows: Iterable[Any], path: str | os.PathLike[str]) -> Path:
    """Write ``rows`` (objects with ``path``, ``stage``, ``reason``) to ``path`` atomically."""
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(ERRORS_HEADER)
        for r in rows:
            w.writerow([r.path, r.stage, " ".join(str(r.reason).split())])
    return path
