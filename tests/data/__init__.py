"""Where the tests find DICOM files that nobody on this project wrote.

Two roots, both inside what a fresh clone plus ``scripts/test`` provides (nothing is
downloaded at test time):

- ``REAL_DICOM`` (``tests/data/real-dicom/``): pydicom's external test-data collection, a few of
  highdicom's test files and TotalSegmentator's example CT, each folder with its licence
  (see ``tests/data/real-dicom/README.md``).
- ``PYDICOM_TEST_FILES``: the test files the installed pydicom package ships itself
  (``pydicom/data/test_files``: DICOMDIR trees, files without a suffix, broken headers, the
  lateral cervical CR ``dicomdirtests/77654033/CR1/6154``), taken from the package rather
  than copied.
"""

from __future__ import annotations

from pathlib import Path

import pydicom.data

REAL_DICOM = Path(__file__).resolve().parent / "real-dicom"
PYDICOM_TEST_FILES = Path(pydicom.data.__file__).resolve().parent / "test_files"
REAL_DICOM_ROOTS = (REAL_DICOM, PYDICOM_TEST_FILES)


def real_dicom_files() -> list[str]:
    """Every file under both roots, sorted; fails loudly (never skips) when a root is missing."""
    for root in REAL_DICOM_ROOTS:
        if not root.is_dir():
            raise FileNotFoundError(f"{root}: real DICOM test files are missing (a broken checkout or pydicom install?)")
    return sorted(str(p) for root in REAL_DICOM_ROOTS for p in root.rglob("*") if p.is_file())


def relative_name(path: str) -> str:
    """A short test id: the path below ``tests/data/real-dicom`` or below ``pydicom-test-files/``."""
    p = Path(path)
    if p.is_relative_to(REAL_DICOM):
        return str(p.relative_to(REAL_DICOM))
    return str(Path("pydicom-test-files") / p.relative_to(PYDICOM_TEST_FILES))
