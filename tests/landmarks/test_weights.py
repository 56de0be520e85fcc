"""The landmark weights ship inside the package and are checked against their SHA-256 before use."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import sagittal
from sagittal.errors import InputError
from sagittal.landmarks import weights as w


def test_packaged_weights_live_in_the_package_and_match_their_checksum():
    path = w.packaged()
    assert path.is_file() and Path(sagittal.__file__).parent in path.parents
    assert w.sidecar(path).is_file()
    w.verify(path, required=True)  # raises on a mismatch
    assert w.weights_path() == path or w.weights_path().is_file()  # SAGITTAL_WEIGHTS may override


def test_packaged_weights_load_all_three_networks():
    from sagittal.landmarks.model import load_models

    models = load_models(w.packaged())
    assert set(models) == {"coarse", "coarse2", "refine"}  # two coarse networks (models/README.md)


def test_a_corrupted_copy_is_refused_naming_the_file(tmp_path):
    from sagittal.landmarks.model import load_models

    copy = tmp_path / "landmarks.pt"
    shutil.copy(w.packaged(), copy)
    shutil.copy(w.sidecar(w.packaged()), w.sidecar(copy))
    data = bytearray(copy.read_bytes())
    data[len(data) // 2] ^= 0xFF
    copy.write_bytes(bytes(data))
    with pytest.raises(InputError, match=r"landmarks\.pt: SHA-256 .* does not match landmarks\.pt\.sha256"):
        load_models(copy)


def test_packaged_weights_without_their_checksum_are_refused(tmp_path, monkeypatch):
    from sagittal.landmarks.model import load_models

    copy = tmp_path / "landmarks.pt"
    shutil.copy(w.packaged(), copy)
    monkeypatch.setattr(w, "packaged", lambda name=w.LANDMARKS: copy)
    with pytest.raises(InputError, match="checksum file landmarks.pt.sha256 is missing"):
        load_models(copy)
    w.write_checksum(copy)
    assert set(load_models(copy)) == {"coarse", "coarse2", "refine"}


def test_weights_override_by_argument_and_environment(tmp_path, monkeypatch):
    other = tmp_path / "mine.pt"
    other.write_bytes(b"x")
    monkeypatch.setenv("SAGITTAL_WEIGHTS", str(other))
    assert w.weights_path() == other
    monkeypatch.delenv("SAGITTAL_WEIGHTS")
    assert w.weights_path() == w.packaged()
    with pytest.raises(InputError, match="not found"):
        w.weights_path(tmp_path / "absent.pt")
