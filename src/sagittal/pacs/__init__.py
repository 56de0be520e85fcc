"""DICOM in and out of a PACS over DICOMweb: QIDO-RS search, WADO-RS retrieve, STOW-RS store.

Needs the ``dicomweb`` extra (``pip install sagittal[dicomweb]``). Credentials come from the
environment only (``SAGITTAL_DICOMWEB_TOKEN``, or ``SAGITTAL_DICOMWEB_USER`` and
``SAGITTAL_DICOMWEB_PASSWORD``); TLS certificates are verified (``REQUESTS_CA_BUNDLE`` names
a private CA).
"""

from .dicomweb import (
    PacsAuthError,
    PacsError,
    PacsUnreachableError,
    PullResult,
    PushResult,
    connect,
    find_studies,
    pull,
    push,
    session_from_env,
)

__all__ = ["PacsAuthError", "PacsError", "PacsUnreachableError", "PullResult", "PushResult", "connect", "find_studies",
           "pull", "push", "session_from_env"]
