"""Atomic file output: the one place in sagittal where files are written then renamed.

A killed run never leaves a half-written output: data goes to a temporary file in the
destination's folder (same file system), is flushed and fsynced, then ``os.replace``-d over
the destination, which POSIX makes atomic. Readers see the old file or the new one.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = ["DEFAULT_MODE", "atomic_path", "atomic_write_bytes", "atomic_write_text"]


#: permissions of a written file: read for all, write for the owner (as ``open`` gives under the
#: usual umask 022). ``mkstemp`` alone would leave every output owner-only (0600).
DEFAULT_MODE = 0o644


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], *, mode: int = DEFAULT_MODE) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on normal exit it replaces ``path``.

    For writers that want a file name (``dataset.save_as(tmp)``, ``plt.savefig(tmp)``,
    ``pyarrow.parquet.write_table(t, tmp)``). Parent folders are created. On an exception
    the temporary file is removed and ``path`` is left as it was. ``mode``: the file's
    permissions (``0o600`` for anything secret).
    """
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    os.fchmod(fd, mode)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; return the destination path."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike[str], text: str, *, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically (``newline`` untranslated); return the path."""
    return atomic_write_bytes(path, text.encode(encoding))
