"""DICOMweb transfer (PS3.18): ``pull`` finds studies with QIDO-RS and retrieves them with
WADO-RS, ``push`` stores files with STOW-RS. Built on dicomweb-client and requests.

Authentication is read from the environment, never from the command line (where it would
show in ``ps`` and shell history): ``SAGITTAL_DICOMWEB_TOKEN`` (HTTP bearer) or
``SAGITTAL_DICOMWEB_USER`` + ``SAGITTAL_DICOMWEB_PASSWORD`` (HTTP basic). TLS certificates
are always verified; ``REQUESTS_CA_BUNDLE`` points requests at a hospital's own CA.
Log lines name counts and UIDs' series, never patient identifiers.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset

from ..errors import SagittalError

log = logging.getLogger(__name__)

ENV_TOKEN = "SAGITTAL_DICOMWEB_TOKEN"
ENV_USER = "SAGITTAL_DICOMWEB_USER"
ENV_PASSWORD = "SAGITTAL_DICOMWEB_PASSWORD"
STOW_BATCH = 16  # instances per STOW-RS request
RETRY_ATTEMPTS, RETRY_WAIT_MS = 3, 500


class PacsError(SagittalError, OSError):
    """The PACS could not be reached, refused the credentials, or refused a request."""


class PacsAuthError(PacsError):
    """The PACS refused the credentials (HTTP 401 / 403): nothing else will work either."""


class PacsUnreachableError(PacsError):
    """No connection to the PACS (refused, timed out, TLS not trusted)."""


@dataclass
class PullResult:
    studies: list[str] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    skipped_existing: int = 0


@dataclass
class PushResult:
    stored: list[str] = field(default_factory=list)  # SOP Instance UIDs the PACS accepted
    failed: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)


def session_from_env(environ: Mapping[str, str] | None = None) -> Any:
    """A ``requests.Session`` carrying the credentials from the environment, TLS verified."""
    import requests

    env = os.environ if environ is None else environ
    token, user, password = env.get(ENV_TOKEN), env.get(ENV_USER), env.get(ENV_PASSWORD)
    session = requests.Session()
    session.verify = True
    if token and (user or password):
        raise PacsError(f"set either {ENV_TOKEN} or {ENV_USER}/{ENV_PASSWORD}, not both")
    if token:
        session.headers["Authorization"] = f"Bearer {token}"
    elif user or password:
        if not (user and password):
            raise PacsError(f"{ENV_USER} and {ENV_PASSWORD} go together: set both (or {ENV_TOKEN} instead)")
        session.auth = (user, password)
    return session


def connect(url: str, environ: Mapping[str, str] | None = None) -> Any:
    """A ``DICOMwebClient`` for the service root ``url`` with credentials from the environment."""
    try:
        from dicomweb_client.api import DICOMwebClient
    except ImportError as exc:  # pragma: no cover - the extra is part of dev
        raise PacsError("DICOMweb needs the 'dicomweb' extra: pip install 'sagittal[dicomweb]'") from exc
    if not url.startswith(("http://", "https://")):
        raise PacsError(f"{url}: a DICOMweb service URL starts with http:// or https://")
    client = DICOMwebClient(url=url.rstrip("/"), session=session_from_env(environ))
    # busy servers (429, 503, 504) and dropped connections get three tries over ~3 s, not five over ~30 s
    client.set_http_retry_params(retry=True, max_attempts=RETRY_ATTEMPTS, wait_exponential_multiplier=RETRY_WAIT_MS)
    return client


def _explain(exc: Exception, url: str, what: str) -> PacsError:
    """A ``PacsError`` that says what failed and what to do."""
    import requests

    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        code = exc.response.status_code
        if code in (401, 403):
            return PacsAuthError(f"{url}: {what} refused ({code}): check the credentials in {ENV_USER}/{ENV_PASSWORD} "
                             f"or {ENV_TOKEN}")
        if code == 404:
            return PacsError(f"{url}: {what}: not found (404) — is the URL the DICOMweb root, and does it exist?")
        return PacsError(f"{url}: {what} failed with HTTP {code}")
    if isinstance(exc, requests.exceptions.SSLError):
        return PacsUnreachableError(f"{url}: TLS certificate not trusted ({exc}); set REQUESTS_CA_BUNDLE to your CA bundle")
    if isinstance(exc, requests.ConnectionError | requests.Timeout):
        return PacsUnreachableError(f"{url}: cannot connect ({type(exc).__name__})")
    return PacsError(f"{url}: {what} failed: {exc}")


def _tag_value(result: dict[str, Any], tag: str) -> str | None:
    value = (result.get(tag) or {}).get("Value") or []
    return str(value[0]) if value else None


def find_studies(client: Any, query: Mapping[str, str]) -> list[str]:
    """Study Instance UIDs matching a QIDO-RS query (DICOM keywords or tags as keys)."""
    try:
        found = client.search_for_studies(search_filters=dict(query), get_remaining=True)
    except Exception as exc:
        raise _explain(exc, client.base_url, "QIDO-RS study search") from exc
    return [uid for r in found if (uid := _tag_value(r, "0020000D"))]


def find_series(client: Any, study_uid: str, query: Mapping[str, str] | None = None) -> list[dict[str, str | None]]:
    """The series of a study (QIDO-RS): ``[{series_instance_uid, modality, series_description}]``."""
    try:
        found = client.search_for_series(study_uid, search_filters=dict(query or {}), get_remaining=True)
    except Exception as exc:
        raise _explain(exc, client.base_url, "QIDO-RS series search") from exc
    return [{"series_instance_uid": _tag_value(r, "0020000E"), "modality": _tag_value(r, "00080060"),
             "series_description": _tag_value(r, "0008103E")} for r in found]


def _safe(uid: str) -> str:
    """A UID as a file name (UIDs are digits and dots; anything else becomes ``_``)."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", uid)[:120] or "unnamed"


def pull(url: str, outdir: str | os.PathLike[str], study_uids: Sequence[str] = (),
         query: Mapping[str, str] | None = None, environ: Mapping[str, str] | None = None) -> PullResult:
    """Retrieve studies (WADO-RS) named by UID and/or found by ``query`` (QIDO-RS) into
    ``outdir/<study>/<series>/<sop>.dcm``, each file written atomically; files already there
    are kept (a rerun resumes)."""
    from ..fsio import atomic_path

    client = connect(url, environ)
    studies = list(dict.fromkeys([*study_uids, *(find_studies(client, query) if query else [])]))
    if not studies:
        raise PacsError(f"{url}: no study to pull" + (f" (the query {dict(query)} matched none)" if query else ""))
    result = PullResult(studies=studies)
    out = Path(outdir)
    for study in studies:
        try:
            # transfer-syntax=*: the files as stored (JPEG 2000 …), never transcoded by the server
            for ds in client.iter_study(study, media_types=(("application/dicom", "*"),)):
                dest = out / _safe(study) / _safe(str(ds.SeriesInstanceUID)) / f"{_safe(str(ds.SOPInstanceUID))}.dcm"
                if dest.is_file():
                    result.skipped_existing += 1
                    continue
                with atomic_path(dest) as tmp:
                    ds.save_as(tmp, enforce_file_format=True)
                result.files.append(dest)
        except PacsError:
            raise
        except Exception as exc:
            raise _explain(exc, url, f"WADO-RS retrieve of a study ({len(result.files)} file(s) saved so far)") from exc
    log.info("pulled %d file(s) from %d study(ies)", len(result.files), len(studies))
    return result


def dicom_files(paths: Iterable[str | os.PathLike[str]]) -> tuple[list[tuple[Path, str, str]], list[tuple[str, str]]]:
    """``(path, StudyInstanceUID, SOPInstanceUID)`` of every DICOM file under ``paths``
    (folders searched recursively; headers only) and ``(path, reason)`` for the others."""
    import pydicom

    found: list[Path] = []
    bad: list[tuple[str, str]] = []
    for p in map(Path, paths):
        if p.is_dir():
            found += sorted(x for x in p.rglob("*") if x.is_file() and not x.name.startswith("."))
        elif p.is_file():
            found.append(p)
        else:
            bad.append((str(p), "no such file or folder"))
    out: list[tuple[Path, str, str]] = []
    for f in found:
        try:
            ds = pydicom.dcmread(f, stop_before_pixels=True, specific_tags=["StudyInstanceUID", "SOPInstanceUID"])
        except (OSError, pydicom.errors.InvalidDicomError) as exc:
            bad.append((str(f), f"not a DICOM file ({exc})"))
            continue
        if "SOPInstanceUID" not in ds:
            bad.append((str(f), "not a DICOM instance (no SOPInstanceUID)"))
            continue
        out.append((f, str(ds.get("StudyInstanceUID", "")), str(ds.SOPInstanceUID)))
    return out, bad


def push(url: str, paths: Iterable[str | os.PathLike[str]], environ: Mapping[str, str] | None = None,
         batch: int = STOW_BATCH) -> PushResult:
    """Store every DICOM file under ``paths`` with STOW-RS (``batch`` instances per request,
    grouped by study; only one batch in memory at a time). Files that are not DICOM or that
    the PACS refuses are listed in ``failed`` with the reason, the others' SOP Instance UIDs
    in ``stored``. Unreachable service or refused credentials raise ``PacsError``."""
    import pydicom

    client = connect(url, environ)
    files, failed = dicom_files(paths)
    result = PushResult(failed=failed)
    by_study: dict[str, list[Path]] = {}
    for f, study, _ in files:
        by_study.setdefault(study, []).append(f)
    for study, items in by_study.items():
        for start in range(0, len(items), batch):
            chunk = [(f, pydicom.dcmread(f)) for f in items[start:start + batch]]
            try:
                response = client.store_instances([ds for _, ds in chunk], study_instance_uid=study or None)
            except Exception as exc:
                err = _explain(exc, url, "STOW-RS store")
                if isinstance(err, PacsAuthError | PacsUnreachableError):
                    raise err from exc  # every other request would fail alike
                result.failed += [(str(f), str(err)) for f, _ in chunk]
                continue
            _read_stow_response(response, chunk, result)
    log.info("stored %d instance(s); %d file(s) not stored", len(result.stored), len(result.failed))
    return result


def _read_stow_response(response: Dataset | None, chunk: Sequence[tuple[Path, Dataset]], result: PushResult) -> None:
    """Sort a chunk into stored / failed from the STOW-RS response (PS3.18 10.5.3)."""
    failed = {}
    for item in getattr(response, "FailedSOPSequence", None) or []:
        reason = f"refused by the PACS (failure reason {item.get('FailureReason', '?')})"
        failed[str(item.ReferencedSOPInstanceUID)] = reason
    for f, ds in chunk:
        uid = str(ds.SOPInstanceUID)
        if uid in failed:
            result.failed.append((str(f), failed[uid]))
        else:
            result.stored.append(uid)
