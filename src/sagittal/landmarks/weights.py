"""Where the landmark weights come from, and a checksum check before they are trusted.

The default weights ship inside the package (``sagittal/weights/landmarks.pt``, found through
``importlib.resources`` so that a wheel install works); ``--weights PATH`` or the environment
variable ``SAGITTAL_WEIGHTS`` override them. A weights file with a ``NAME.sha256`` sidecar
(``<hex digest>  NAME``, as ``sha256sum`` writes it) must match it; the packaged file always has
one. Nothing is ever downloaded.
"""

from __future__ import annotations

import hashlib
import os
from importlib import resources
from pathlib import Path

from ..errors import InputError

PACKAGE = "sagittal.weights"
LANDMARKS = "landmarks.pt"


def packaged(name: str = LANDMARKS) -> Path:
    """Path of a weights file shipped in ``sagittal.weights`` (it need not exist yet)."""
    return Path(str(resources.files(PACKAGE).joinpath(name)))


def sha256_file(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def sidecar(path: str | os.PathLike[str]) -> Path:
    p = Path(path)
    return p.with_name(p.name + ".sha256")


def write_checksum(path: str | os.PathLike[str]) -> Path:
    """Write ``path``'s SHA-256 sidecar (atomically) and return its path."""
    from ..fsio import atomic_write_text

    side = sidecar(path)
    atomic_write_text(side, f"{sha256_file(path)}  {Path(path).name}\n")
    return side


def verify(path: str | os.PathLike[str], required: bool = False) -> None:
    """Check ``path`` against its ``.sha256`` sidecar; raise ``InputError`` naming the file on a
    mismatch, or when ``required`` and the sidecar is missing."""
    side = sidecar(path)
    if not side.is_file():
        if required:
            raise InputError(f"{path}: its checksum file {side.name} is missing; the packaged weights cannot be "
                             "verified (reinstall sagittal)")
        return
    text = side.read_text().split()
    expected = text[0].lower() if text else ""
    actual = sha256_file(path)
    if actual != expected:
        raise InputError(f"{path}: SHA-256 {actual[:16]}… does not match {side.name} ({expected[:16]}…): the weights "
                         "file is corrupted or was replaced; reinstall sagittal or pass --weights with a good file")


def weights_path(path: str | os.PathLike[str] | None = None) -> Path:
    """The weights to use: ``path``, else ``$SAGITTAL_WEIGHTS``, else the packaged file."""
    p = Path(path or os.environ.get("SAGITTAL_WEIGHTS") or packaged())
    if not p.is_file():
        raise InputError(f"landmark weights not found at {p}; pass --weights or set SAGITTAL_WEIGHTS "
                         "(train them with scripts/train_landmarks.py)")
    return p
