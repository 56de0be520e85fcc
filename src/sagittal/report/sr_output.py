"""``sagittal analyze --sr``: the DICOM SR and the overlay's Secondary Capture of each analysed
unit, registered as the batch output ``"sr"`` (``<document>.sr.dcm`` and ``<document>.sc.dcm``
beside the analysis document, written by the batch driver atomically).
"""

from __future__ import annotations

from typing import Any

from pydicom.dataset import Dataset

from ..batch.units import Unit, register_output

__all__ = ["sr_outputs"]


def _sources(unit: Unit) -> list[Dataset]:
    """Headers of the unit's source instances (the in-memory Dataset of an API call, or its files)."""
    from .sc import read_sources

    ds = getattr(unit.data, "dataset", None)
    if isinstance(ds, Dataset):
        return [ds]
    return read_sources(list(unit.files))


def _bytes(ds: Dataset) -> bytes:
    from pydicom.filebase import DicomBytesIO

    buf = DicomBytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return bytes(buf.getvalue())


def sr_outputs(analysis: Any, unit: Unit) -> dict[str, bytes]:
    """``{"sr.dcm": ..., "sc.dcm": ...}`` for one analysed unit (``{}`` for a rejected one or one
    without a single value: an SR of nothing would say nothing)."""
    from .sc import secondary_capture
    from .sr import reportable, sr_dataset

    doc = analysis.to_json()
    if not reportable(doc):
        return {}
    sources = _sources(unit)
    out = {"sr.dcm": _bytes(sr_dataset(doc, sources))}
    if getattr(analysis, "pixels", None) is not None:
        sop = set((doc.get("source") or {}).get("sop_instance_uids") or [])
        ref = next((d for d in sources if str(d.SOPInstanceUID) in sop), sources[0])
        out["sc.dcm"] = _bytes(secondary_capture(doc, analysis.overlay(), ref))
    return out


register_output("sr", sr_outputs)
