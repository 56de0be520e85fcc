"""Keyed pseudonyms and the key file (sagittal.cohort.pseudonym, io.series.pseudonym)."""

from __future__ import annotations

import hashlib
import os
import stat

import pytest

from sagittal.cohort.pseudonym import keyed_pseudonym, load_or_create_key, study_key
from sagittal.errors import InputError
from sagittal.io.series import pseudonym

IDS = [f"MRN{n:07d}" for n in range(2000)]


def test_key_file_created_0600_and_reused(tmp_path):
    path = tmp_path / "keys" / "cohort.key"
    old = os.umask(0)  # even a permissive umask gives 0600
    try:
        key = load_or_create_key(path)
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(key) == 64 and int(key, 16) >= 0
    assert load_or_create_key(path) == key
    other = load_or_create_key(tmp_path / "other.key")
    assert other != key


def test_key_file_readable_by_others_or_too_short_is_refused(tmp_path):
    p = tmp_path / "k"
    p.write_bytes(b"0123456789abcdef0123456789abcdef")
    p.chmod(0o644)
    with pytest.raises(InputError, match="readable by others"):
        load_or_create_key(p)
    p.chmod(0o600)
    assert load_or_create_key(p) == b"0123456789abcdef0123456789abcdef"
    p.write_bytes(b"short\n")
    with pytest.raises(InputError, match="fewer than 16"):
        load_or_create_key(p)


def test_same_key_same_pseudonyms_other_key_others(tmp_path):
    k1 = load_or_create_key(tmp_path / "a.key")
    k2 = load_or_create_key(tmp_path / "b.key")
    a = [keyed_pseudonym(i, k1) for i in IDS]
    assert a == [keyed_pseudonym(i, k1) for i in IDS]
    assert len(set(a)) == len(IDS)
    b = [keyed_pseudonym(i, k2) for i in IDS]
    assert not set(a) & set(b)
    assert pseudonym(IDS[0], k1) == a[0]
    assert keyed_pseudonym(" MRN0000001 ", k1) == a[1]  # DICOM padding ignored
    # study keys live in another HMAC domain: the same string never gives the same digits
    assert study_key(IDS[0], k1)[len("study-"):] != a[0][len("patient-"):]


def test_without_the_key_pseudonyms_do_not_link_to_ids(tmp_path):
    key = load_or_create_key(tmp_path / "k.key")
    keyed = {keyed_pseudonym(i, key)[len("patient-"):] for i in IDS}
    guesses = set()
    for i in IDS:  # the old scheme, plain sha256 and an empty key: none finds a patient
        guesses.add(pseudonym(i)[len("patient-"):])
        for data in (i, "sagittal:" + i, "patient\x00" + i):
            h = hashlib.sha256(data.encode()).hexdigest()
            guesses.update({h[:10], h[:16]})
        guesses.add(keyed_pseudonym(i, b"")[len("patient-"):])
    assert not keyed & guesses
