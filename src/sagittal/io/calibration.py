"""Calibration: the only place where pixels become millimetres and the image meets the
patient frame (docs/architecture.md). Never a default: missing, zero or negative spacing is ``none``.

Radiographs (PS3.3 C.8.11.7 and the IHE/AAPM Report 190 guidance on magnification):

1. ``PixelSpacing`` present and valid → spacing at the patient, source ``PixelSpacing``;
2. else ``ImagerPixelSpacing`` ÷ ``EstimatedRadiographicMagnificationFactor`` → source
   ``ImagerPixelSpacing/ERMF``;
3. else ``ImagerPixelSpacing`` alone → used, source ``ImagerPixelSpacing``, with a warning
   that distances at the patient are overstated by the (unknown) magnification;
4. else ``none``: millimetre values are null, and a warning says why.

Spacing stays ``[row, column]`` as DICOM stores it, non-square pixels included.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .discover import Header

#: where a pixel spacing came from (docs/contract.md, "image"), said once
SPACING_SOURCES = ("PixelSpacing", "ImagerPixelSpacing/ERMF", "ImagerPixelSpacing", "volume", "supplied", "none")


@dataclass(frozen=True)
class Calibration:
    """Pixel spacing and where it came from, and the side the patient faces.

    ``pixel_spacing_mm`` is ``(row, col)`` in mm at the patient, or ``None`` with source
    ``none``. ``anterior`` is the image side the patient faces (``left``/``right``) or
    ``None`` when unknown. ``slice_spacing_mm`` is set for volumes only.
    """

    pixel_spacing_mm: tuple[float, float] | None
    source: str
    anterior: str | None = None
    slice_spacing_mm: float | None = None
    warnings: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if self.source not in SPACING_SOURCES:
            raise ValueError(f"calibration source must be one of {SPACING_SOURCES}, not {self.source!r}")
        if (self.pixel_spacing_mm is None) != (self.source == "none"):
            raise ValueError("a calibration has a spacing exactly when its source is not 'none'")

    def to_json(self) -> dict[str, Any]:
        return {
            "pixel_spacing_mm": None if self.pixel_spacing_mm is None else list(self.pixel_spacing_mm),
            "spacing_source": self.source,
            "anterior": self.anterior,
            "slice_spacing_mm": self.slice_spacing_mm,
            "warnings": list(self.warnings),
        }


def parse_spacing(values: Iterable[Any] | None) -> tuple[float, float] | None:
    """Two finite positive numbers, or ``None`` (a single value is not a spacing)."""
    if not values:
        return None
    try:
        nums = [float(v) for v in values]
    except (TypeError, ValueError):
        return None
    if len(nums) != 2 or not all(math.isfinite(v) and v > 0 for v in nums):
        return None
    return nums[0], nums[1]


def facing_from_orientation(orientation: tuple[str, ...]) -> str | None:
    """The image side the patient faces from PatientOrientation's row direction.

    The first value names the patient direction of increasing column: ``A`` means anterior
    lies to the right of the image, ``P`` to the left.
    """
    if not orientation or not orientation[0]:
        return None
    first = orientation[0][0]
    return {"A": "right", "P": "left"}.get(first)


def radiograph_calibration(h: Header, view_notes: list[str] | None = None) -> Calibration:
    """Spacing and facing of a projection radiograph from its header (rules above)."""
    warnings: list[str] = []
    ps = parse_spacing(h.pixel_spacing)
    ips = parse_spacing(h.imager_pixel_spacing)
    if h.pixel_spacing and ps is None:
        warnings.append(f"PixelSpacing {'/'.join(h.pixel_spacing)} is not a usable spacing (zero, negative or malformed)")
    if h.imager_pixel_spacing and ips is None:
        warnings.append(f"ImagerPixelSpacing {'/'.join(h.imager_pixel_spacing)} is not a usable spacing")
    ermf = None
    if h.magnification:
        try:
            ermf = float(h.magnification)
        except ValueError:
            ermf = None
        if ermf is None or not (math.isfinite(ermf) and 1.0 <= ermf <= 3.0):
            warnings.append(f"EstimatedRadiographicMagnificationFactor {h.magnification!r} is implausible; ignored")
            ermf = None
    if ps is not None:
        spacing, source = ps, "PixelSpacing"
    elif ips is not None and ermf is not None:
        spacing, source = (ips[0] / ermf, ips[1] / ermf), "ImagerPixelSpacing/ERMF"
    elif ips is not None:
        spacing, source = ips, "ImagerPixelSpacing"
        warnings.append("spacing is ImagerPixelSpacing at the detector, uncorrected for magnification: "
                        "distances at the patient are overstated (typically by 10-20 %)")
    else:
        spacing, source = None, "none"
        warnings.append("no usable pixel spacing: millimetre values will be null")
    anterior = facing_from_orientation(h.patient_orientation)
    if view_notes and any("PatientOrientation" in n for n in view_notes):
        anterior = None  # contradictory orientation: let the image content decide later
    return Calibration(pixel_spacing_mm=spacing, source=source, anterior=anterior, warnings=tuple(warnings))
