"""Keyed pseudonyms: HMAC-SHA-256 of an identifier under a secret key kept in a key file.

A plain hash of a PatientID is not a pseudonym: record numbers are few and guessable, so
anyone can hash the candidates and match. With a secret key (RFC 2104 HMAC over SHA-256)
nobody without the key can compute or test a pseudonym, while the key's holder gets the same
pseudonym for the same patient on every run, which is what links a patient's studies
(DICOM PS3.15 Annex E: identifiers replaced by values that are consistent within the
de-identified data set but cannot be traced back without the mapping key).

Stdlib only: importable from any stage (``io.series.pseudonym`` uses it).

- ``load_or_create_key(path)`` — the key file's secret; a new 256-bit key is created with
  mode 0600 when the file is absent. The key is never logged nor written anywhere else.
- ``keyed_pseudonym(patient_id, key)`` — ``"patient-"`` + 16 hex digits (64 bits).
- ``study_key(study_instance_uid, key)`` — ``"study-"`` + 16 hex digits; a different HMAC
  domain, so a study key never equals or reveals a patient pseudonym.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import stat
from pathlib import Path

from ..errors import InputError

__all__ = ["KEY_BYTES", "keyed_pseudonym", "load_or_create_key", "study_key"]

#: a new key holds 32 random bytes, stored as 64 hex digits and a newline
KEY_BYTES = 32
_MIN_KEY_BYTES = 16
_DIGITS = 16  # 64 bits: a collision among 10^6 patients has probability about 3e-8


def _create_key(path: Path) -> None:
    """Write a fresh key to ``path`` with mode 0600; fail if the file appeared meanwhile."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.fchmod(fd, 0o600)  # whatever the umask
        os.write(fd, (secrets.token_hex(KEY_BYTES) + "\n").encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)


def load_or_create_key(path: str | os.PathLike[str]) -> bytes:
    """The secret of the key file ``path``, creating the file (mode 0600) when absent.

    The secret is the file's content without surrounding whitespace (at least 16 bytes; a
    created key is 64 hex digits). A key file readable by group or others is refused.
    Keep the file: without it the pseudonyms of a later run will not match earlier ones.
    """
    p = Path(path)
    if not p.exists():
        try:
            _create_key(p)
        except FileExistsError:
            pass  # another process created it first: use theirs
        except OSError as exc:
            raise InputError(f"{p}: cannot create the key file ({exc.strerror})") from None
    try:
        mode = p.stat().st_mode
        data = p.read_bytes().strip()
    except OSError as exc:
        raise InputError(f"{p}: cannot read the key file ({exc.strerror})") from None
    if not stat.S_ISREG(mode):
        raise InputError(f"{p}: the key file is not a regular file")
    if mode & 0o077:
        raise InputError(f"{p}: the key file is readable by others (mode {stat.S_IMODE(mode):04o}); "
                         f"run 'chmod 600 {p}' and keep it secret")
    if len(data) < _MIN_KEY_BYTES:
        raise InputError(f"{p}: the key file holds {len(data)} bytes, fewer than {_MIN_KEY_BYTES}; "
                         "remove it to have a new key made (earlier pseudonyms will then not match)")
    return data


def _mac(key: bytes, domain: bytes, value: str) -> str:
    return hmac.new(key, domain + b"\x00" + value.strip().encode("utf-8"), hashlib.sha256).hexdigest()[:_DIGITS]


def keyed_pseudonym(patient_id: str, key: bytes) -> str:
    """``"patient-"`` + the first 16 hex digits of HMAC-SHA-256(key, "patient" NUL PatientID).

    Surrounding spaces of the ID are ignored (DICOM pads values to even length).
    """
    return "patient-" + _mac(key, b"patient", patient_id)


def study_key(study_instance_uid: str, key: bytes) -> str:
    """``"study-"`` + the first 16 hex digits of HMAC-SHA-256(key, "study" NUL StudyInstanceUID)."""
    return "study-" + _mac(key, b"study", study_instance_uid)
