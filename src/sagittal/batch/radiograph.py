"""The ``radiograph`` kind of unit: one lateral DX/CR image → one analysis document.

Planning takes every radiograph series (frontal and oblique views set aside); preparing
decodes and calibrates one image (a file, a pydicom Dataset or an array given to the API);
finishing turns the landmark model's output into the document (``report.analysis``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InputError
from ..io.discover import SetAside, source_demographics
from .units import Detection, Prepared, Unit, UnitKind, register_kind, register_model

KIND = "radiograph"


@dataclass(frozen=True)
class RadiographInput:
    """In-memory input given to the API, and a spacing the caller supplies (``None``: none)."""

    pixels: np.ndarray | None = None
    dataset: Any = None  # pydicom Dataset
    pixel_spacing_mm: tuple[float, float] | None = None


def check_spacing(pixel_spacing_mm: Any, where: str) -> tuple[float, float] | None:
    """``None`` or two finite positive numbers ``(row, col)`` in mm; ``InputError`` otherwise."""
    if pixel_spacing_mm is None:
        return None
    values = np.atleast_1d(np.asarray(pixel_spacing_mm, dtype=float))
    if values.shape == (1,):
        values = np.repeat(values, 2)
    if values.shape != (2,) or not all(math.isfinite(v) and v > 0 for v in values):
        raise InputError(f"{where}: pixel_spacing_mm must be a positive number or two [row, col] in mm, "
                         f"not {pixel_spacing_mm!r}")
    return float(values[0]), float(values[1])


def check_pixels(pixels: Any) -> np.ndarray:
    """A 2-D finite numeric image as float32; ``InputError`` saying what is wrong otherwise."""
    a = np.asarray(pixels)
    if a.ndim != 2 or min(a.shape) < 8 or not (np.issubdtype(a.dtype, np.number) or a.dtype == bool):
        raise InputError(f"array source: expected a 2-D numeric image (rows, columns) of at least 8 x 8 pixels, "
                         f"got shape {a.shape} of {a.dtype}")
    a = a.astype(np.float32)
    if not np.isfinite(a).all():
        raise InputError("array source: the image holds NaN or infinite values")
    return a


def plan(series: Sequence[Any]) -> tuple[list[Unit], list[SetAside]]:
    """One unit per lateral (or not clearly frontal) radiograph; frontal and oblique views set aside."""
    units: list[Unit] = []
    set_aside: list[SetAside] = []
    for s in series:
        if s.kind != "radiograph":
            continue
        if s.view in ("frontal", "oblique"):
            set_aside += [SetAside(p, "classify", f"not a lateral view ({s.view})") for p in s.files]
            continue
        for h in s.headers:
            units.append(Unit(KIND, (h.path,), h.patient_id, h.study_uid or None, h.sop_instance_uid or h.path,
                              headers=(h,)))
    return units, set_aside


def _array_prepared(inp: RadiographInput) -> Prepared:
    image = check_pixels(inp.pixels)
    spacing = inp.pixel_spacing_mm
    warnings = [] if spacing is not None else ["no pixel spacing was supplied with the array: millimetre values are null"]
    info = {"rows": int(image.shape[0]), "columns": int(image.shape[1]),
            "pixel_spacing_mm": None if spacing is None else list(spacing),
            "spacing_source": "supplied" if spacing is not None else "none", "anterior": None}
    return Prepared(image, info, None, warnings, extra={"view": "lateral"})


def prepare(unit: Unit) -> Prepared:
    """Decode and calibrate one radiograph (no model)."""
    from ..io.calibration import radiograph_calibration
    from ..io.classify import radiograph_view
    from ..io.decode import load_for_analysis

    inp = unit.data if isinstance(unit.data, RadiographInput) else RadiographInput()
    if inp.pixels is not None:
        return _array_prepared(inp)
    h = unit.headers[0]
    view, notes = radiograph_view(h)
    cal = radiograph_calibration(h, notes)
    # decoded no finer than the model needs (JPEG 2000 at a reduced resolution level)
    fa = load_for_analysis(inp.dataset if inp.dataset is not None else h.path,
                           spacing_mm=inp.pixel_spacing_mm or cal.pixel_spacing_mm)
    decoded = fa.decoded
    image = decoded.pixels[0]
    warnings = list(notes) + list(cal.warnings) + list(decoded.notes)
    spacing, source_name = cal.pixel_spacing_mm, cal.source
    if inp.pixel_spacing_mm is not None:
        warnings = list(notes) + list(decoded.notes)  # the header's calibration warnings no longer apply
        warnings.append(f"pixel spacing supplied by the caller ({inp.pixel_spacing_mm[0]:g} x {inp.pixel_spacing_mm[1]:g} mm) "
                        f"replaces the header's ({source_name})")
        spacing, source_name = inp.pixel_spacing_mm, "supplied"
    info = {"rows": int(fa.source_shape[0]), "columns": int(fa.source_shape[1]),
            "pixel_spacing_mm": None if spacing is None else list(spacing), "spacing_source": source_name,
            "anterior": cal.anterior}
    source = {"path": h.path, "modality": h.modality, "study_instance_uid": h.study_uid or None,
              "series_instance_uid": h.series_uid or None, "sop_instance_uids": [h.sop_instance_uid],
              "patient_id": h.patient_id or None, "study_date": h.study_key[0] or None,
              **source_demographics(h)}  # study_time, patient_sex, patient_age_years (the research cohort)
    return Prepared(image, info, source, warnings, facing_hint=cal.anterior, extra={"view": view},
                    to_source=fa.landmarks_to_source if fa.factor != 1 else None, pixel_scale=1.0 / fa.factor)


def finish(prep: Prepared, detection: Detection) -> dict[str, Any]:
    """The analysis document from the model's landmarks (header facing wins over the image's)."""
    from ..report.analysis import analysis_document

    lm, facing, lm_warnings = detection
    if prep.to_source is not None:
        lm = prep.to_source(lm)
    warnings = list(prep.warnings) + list(lm_warnings)
    anterior = prep.image_info.get("anterior")
    if facing and anterior and facing != anterior:
        warnings.append(f"PatientOrientation says the patient faces {anterior} but the landmarks point "
                        f"{facing}: the header is followed; check the image")
    anterior = anterior or facing  # the header when it says, else the image content
    if (prep.extra or {}).get("view") == "unknown":
        warnings.append("the view could not be confirmed as lateral from the header")
    doc = analysis_document(dict(prep.image_info, anterior=anterior), lm, source=prep.source, warnings=warnings)
    if not lm["vertebrae"] and not lm["s1_endplate"]:
        doc["status"] = "rejected"
        doc["warnings"].append("no spine found: nothing is reported")
    return doc


def load_detector(weights: Any, device: str, threads: int | None) -> Any:
    """The radiograph landmark model (``landmarks.infer.LandmarkDetector``)."""
    from ..landmarks import infer

    return infer.LandmarkDetector(weights, device=device, threads=threads)


register_model(KIND, load_detector)
register_kind(UnitKind(KIND, plan, prepare, finish))
