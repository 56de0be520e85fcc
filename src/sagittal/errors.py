"""Errors raised by sagittal. Each also inherits the matching built-in, so callers'
``except OSError`` / ``except ValueError`` handlers keep working, and each message names
the input and says what to do."""

from __future__ import annotations

__all__ = ["SagittalError", "DicomReadError", "CalibrationError", "InputError", "AnalysisError"]


class SagittalError(Exception):
    """Base class of every error sagittal raises on purpose."""


class DicomReadError(SagittalError, OSError):
    """A file could not be read or decoded as DICOM."""


class CalibrationError(SagittalError, ValueError):
    """Pixel spacing or orientation is missing or contradictory."""


class InputError(SagittalError, ValueError):
    """A user-supplied argument or file is not what the command expects."""


class AnalysisError(SagittalError, RuntimeError):
    """An input was read but could not be analysed (the landmark model or a later stage failed)."""
