"""sagittal.fsio: atomic replacement, permissions, nothing left behind on failure."""

from __future__ import annotations

import stat

import pytest

from sagittal.fsio import atomic_path, atomic_write_bytes, atomic_write_text


def test_written_files_are_readable_by_others_unless_asked(tmp_path):
    p = atomic_write_text(tmp_path / "a" / "doc.json", "{}")
    assert p.read_text() == "{}" and stat.S_IMODE(p.stat().st_mode) == 0o644
    with atomic_path(tmp_path / "secret", mode=0o600) as tmp:
        tmp.write_bytes(b"k")
    assert stat.S_IMODE((tmp_path / "secret").stat().st_mode) == 0o600


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    dest = atomic_write_bytes(tmp_path / "x.bin", b"old")
    with pytest.raises(RuntimeError), atomic_path(dest) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("killed")
    assert dest.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.bin"]
