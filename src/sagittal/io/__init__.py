"""DICOM ingestion: discover, group, classify, decode, calibrate (docs/architecture.md's ``io`` stage).

The only package that reads DICOM tags; everything downstream receives arrays and a
``Calibration``.
"""

from .calibration import Calibration, radiograph_calibration
from .discover import Header, SetAside, discover
from .series import Export, LoadedRadiograph, LoadedVolume, Series, load_radiographs, load_volume, scan_export

__all__ = [
    "Calibration",
    "radiograph_calibration",
    "Header",
    "SetAside",
    "discover",
    "Export",
    "Series",
    "LoadedRadiograph",
    "LoadedVolume",
    "load_radiographs",
    "load_volume",
    "scan_export",
]
