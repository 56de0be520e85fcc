"""The Python API: one unit of work in, one typed ``Analysis`` out.

    import sagittal
    result = sagittal.analyze("study/IM0001.dcm")
    result.parameters["pelvic_incidence_deg"], result.to_json(), result.overlay()

``analyze`` loads the landmark model for one call; ``Analyzer`` keeps it loaded and batches
the images of many units through it (``analyze_many``). The CLI (``sagittal analyze``) and the
batch runner (``sagittal.batch``) call exactly these. A source is a DICOM file, a folder holding
one unit of work, a pydicom ``Dataset``, or a 2-D array with ``pixel_spacing_mm`` (``None``:
millimetre values are null with a warning, never an assumed spacing). Bad input raises a
``SagittalError`` subclass naming the input and the reason.
"""

from __future__ import annotations

import copy
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .batch.units import Detection, Failure, Prepared, Unit, kinds
from .errors import AnalysisError, CalibrationError, DicomReadError, InputError, SagittalError

__all__ = ["Analysis", "Analyzer", "analyze", "unit_of"]

#: images per landmark-model batch by device: the GPU amortises its launches over more; on CPU one
#: image at a time is cheapest (0.42 vs 0.54 CPU-s per whole-spine radiograph with 4: a batch's
#: refinement crops, ~40 per image, outgrow the caches; benchmarks/analyze_batch.py)
DEFAULT_BATCH = {"cpu": 1, "cuda": 16}


@dataclass(frozen=True)
class Analysis:
    """One analysis document (``sagittal.analysis/1``) as a typed value.

    The fields are the document's; ``pixels`` is the decoded image the landmarks were placed
    on (kept for ``overlay()``, never serialised) and ``pixel_scale`` its pixels per stored
    pixel (less than 1 when it was decoded at reduced resolution).
    """

    status: str
    image: dict[str, Any]
    landmarks: dict[str, Any]
    parameters: dict[str, Any]
    vertebrae: list[dict[str, Any]]
    warnings: tuple[str, ...]
    source: dict[str, Any] | None
    software: dict[str, Any] | None = None  # sagittal's version, the model's file name and SHA-256
    pixels: np.ndarray | None = field(default=None, repr=False, compare=False)
    pixel_scale: float = field(default=1.0, repr=False, compare=False)
    #: more files the unit's kind made beside the document ({suffix: bytes}, e.g. "stir.png")
    extra_files: dict[str, bytes] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_document(cls, doc: dict[str, Any], pixels: np.ndarray | None = None, pixel_scale: float = 1.0,
                      extra_files: dict[str, bytes] | None = None) -> Analysis:
        """The ``Analysis`` of an analysis document (a deep copy of it)."""
        d = copy.deepcopy(doc)
        return cls(d["status"], d["image"], d["landmarks"], d["parameters"], d["vertebrae"], tuple(d["warnings"]),
                   d.get("source"), d.get("software"), pixels, pixel_scale, dict(extra_files or {}))

    def to_json(self) -> dict[str, Any]:
        """The analysis document, valid against the contract's schema (a fresh copy)."""
        from .report.analysis import SCHEMA_ID

        doc = {"schema": SCHEMA_ID, "status": self.status, "source": self.source, "image": self.image,
               "landmarks": self.landmarks, "parameters": self.parameters, "vertebrae": self.vertebrae,
               "warnings": list(self.warnings)}
        if self.software is not None:
            doc["software"] = self.software
        return copy.deepcopy(doc)

    def overlay(self) -> np.ndarray:
        """The overlay picture ``(rows, cols, 3)`` RGB uint8: landmarks, lines and values on the image."""
        import cv2

        from .report.overlay import render_overlay

        if self.pixels is None:
            raise InputError("this Analysis holds no image (made from a document alone): nothing to draw on")
        bgr = render_overlay(self.pixels, self.to_json(), px_scale=self.pixel_scale)
        return np.ascontiguousarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))


def _dataset_unit(ds: Any, spacing: tuple[float, float] | None) -> Unit:
    from .batch.radiograph import KIND, RadiographInput
    from .io.classify import radiograph_view, series_kind
    from .io.discover import SetAside
    from .io.discover import _header_from as header_from_dataset  # the header discovery reads, from a Dataset

    name = ds.filename if isinstance(getattr(ds, "filename", None), str) and ds.filename else "<dataset>"
    h = header_from_dataset(ds, name, False)
    if isinstance(h, SetAside):
        raise DicomReadError(f"{name}: {h.reason}") if h.stage == "read" else InputError(f"{name}: {h.reason}")
    kind, why = series_kind(h)
    if kind != "radiograph":
        raise InputError(f"{name}: {why or f'{h.modality} image: only lateral radiographs can be given as a Dataset'}")
    view, _ = radiograph_view(h)
    if view in ("frontal", "oblique"):
        raise InputError(f"{name}: not a lateral view ({view})")
    return Unit(KIND, (name,), h.patient_id, h.study_uid or None, h.sop_instance_uid or name, headers=(h,),
                data=RadiographInput(dataset=ds, pixel_spacing_mm=spacing))


def _raise_set_aside(where: str, reasons: list[Any]) -> None:
    a = reasons[0]
    text = f"{a.path}: {a.reason.removeprefix(f'{a.path}: ')}"  # name the file once
    if len(reasons) > 1:
        text += f" (and {len(reasons) - 1} more file(s) set aside)"
    if a.stage in ("read", "decode"):
        raise DicomReadError(text)
    raise InputError(text if a.path == where else f"{where}: nothing to analyse; {text}")


def unit_of(source: Any, pixel_spacing_mm: Any = None) -> Unit:
    """The one unit of work a source describes; ``SagittalError`` naming it when there is none."""
    from .batch.radiograph import KIND, RadiographInput, check_pixels, check_spacing

    if isinstance(source, Unit):
        return source
    spacing = check_spacing(pixel_spacing_mm, "pixel_spacing_mm")
    if isinstance(source, np.ndarray):
        return Unit(KIND, (), "", None, "array", data=RadiographInput(pixels=check_pixels(source), pixel_spacing_mm=spacing))
    if type(source).__name__ in ("Dataset", "FileDataset"):
        return _dataset_unit(source, spacing)
    if not isinstance(source, str | os.PathLike):
        raise InputError(f"cannot analyse a {type(source).__name__}: give a DICOM file or folder path, a pydicom "
                         "Dataset, or a 2-D array with pixel_spacing_mm")
    from .batch.units import plan_units

    path = Path(source)
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    units, set_aside, _ = plan_units([path])
    if not units:
        if not set_aside:
            raise InputError(f"{path}: no DICOM image found")
        _raise_set_aside(str(path), set_aside)
    if len(units) > 1:
        raise InputError(f"{path}: holds {len(units)} units of work (images or series), not one; analyse them with "
                         "`sagittal analyze` or Analyzer.analyze_many(sagittal.batch.plan_units([...])[0])")
    unit = units[0]
    if spacing is not None:
        if unit.kind != KIND:
            raise InputError(f"{path}: pixel_spacing_mm can be supplied for radiographs only (this is a {unit.kind})")
        unit = Unit(unit.kind, unit.files, unit.patient_id, unit.study_uid, unit.name, unit.headers,
                    RadiographInput(pixel_spacing_mm=spacing))
    return unit


def _failure(unit: Unit, stage: str, exc: BaseException) -> Failure:
    text = str(exc) or type(exc).__name__
    if not isinstance(exc, SagittalError):
        text = f"{type(exc).__name__}: {text}"
    if isinstance(exc, DicomReadError):
        stage = "decode"
    elif isinstance(exc, CalibrationError):
        stage = "calibrate"
    where = unit.files[0] if unit.files else "array"
    if len(unit.files) <= 1 and not text.startswith(where):
        text = f"{where}: {text}"
    return Failure(unit.files, stage, text)


class Analyzer:
    """The landmark model loaded once, for many analyses.

    ``device``: ``auto`` (CUDA when torch sees one), ``cpu`` or ``cuda``; ``weights``: a weights
    file (default: the packaged model); ``batch_size``: images per model batch (default 1 on
    CPU, 16 on CUDA); ``threads``: torch CPU threads (default 1: the same document from every run,
    serial or parallel, since float sums depend on the thread count; use processes for more
    cores — torch's thread count is process-wide); ``mixed_precision``:
    run the networks under ``torch.autocast`` float16 (CUDA only; off by default: its accuracy
    has not been measured).
    """

    def __init__(self, device: str = "auto", weights: str | os.PathLike[str] | None = None, *,
                 batch_size: int | None = None, threads: int | None = None, mixed_precision: bool = False):
        self.device_request = device
        self.weights = weights
        self.threads = threads
        self.mixed_precision = mixed_precision
        self._batch_size = batch_size
        self._detectors: dict[str, Any] = {}  # landmark model name -> its detector
        self._software: dict[str, dict[str, Any]] = {}
        self.timings: dict[str, float] = {}  # seconds per stage, summed over every call

    def detector_for(self, model: str = "radiograph") -> Any:
        """The detector of landmark model ``model``, loaded on first use (``InputError`` for unusable
        weights). ``weights`` applies to the radiograph model; others load their own default."""
        if model not in self._detectors:
            from .batch.units import model_loader
            from .landmarks.infer import resolve_device

            weights = self.weights if model == "radiograph" else None
            device = resolve_device(self.device_request)
            threads = self.threads if self.threads is not None else (1 if device == "cpu" else None)
            try:
                detector = model_loader(model)(weights, device, threads)
            except SagittalError:
                raise
            except Exception as exc:
                raise InputError(f"landmark weights {weights or '(packaged)'} cannot be loaded: "
                                 f"{type(exc).__name__}: {exc}") from exc
            if self.mixed_precision and detector.device != "cuda":
                raise InputError("mixed precision runs on CUDA only; use --device cuda or leave it off")
            self._detectors[model] = detector
        return self._detectors[model]

    @property
    def detector(self) -> Any:
        """The radiograph landmark detector (``detector_for("radiograph")``)."""
        return self.detector_for("radiograph")

    def software(self, model: str = "radiograph") -> dict[str, Any]:
        """What produces this analyzer's documents: sagittal's version and the model file's name and SHA-256."""
        if model not in self._software:
            from . import __version__
            from .landmarks.weights import sha256_file

            path = getattr(self.detector_for(model), "weights", None)
            self._software[model] = {"sagittal": __version__, "model": Path(path).name if path else None,
                                     "model_sha256": sha256_file(path) if path and Path(path).is_file() else None}
        return dict(self._software[model])

    def load(self) -> Analyzer:
        """Load the model now (so that unusable weights fail here, not on the first image)."""
        _ = self.detector
        return self

    @property
    def batch_size(self) -> int:
        return self._batch_size or DEFAULT_BATCH.get(self.detector.device, 1)

    def _lap(self, stage: str, t0: float) -> float:
        now = time.perf_counter()
        self.timings[stage] = self.timings.get(stage, 0.0) + now - t0
        return now

    def _detect(self, model: str, images: list[np.ndarray], facing: list[str | None]) -> list[Detection]:
        det = self.detector_for(model)
        if self.mixed_precision:
            import torch

            with torch.autocast(device_type="cuda", dtype=torch.float16):
                found = det.detect(images, facing=facing, batch_size=self.batch_size)
        else:
            found = det.detect(images, facing=facing, batch_size=self.batch_size)
        for k, v in (getattr(det, "last_timings", None) or {}).items():
            self.timings[k] = self.timings.get(k, 0.0) + v
        return list(found)

    def _detect_each(self, model: str, prepared: list[Prepared]) -> list[Detection | BaseException]:
        """The model over every prepared image at once; when the batch fails, image by image, so
        that a failure (even of a batch of one) is that image's alone and never raised."""
        try:
            return list(self._detect(model, [p.image for p in prepared], [p.facing_hint for p in prepared]))
        except Exception as exc:
            if len(prepared) == 1:
                return [exc]
        out: list[Detection | BaseException] = []
        for p in prepared:
            try:
                out.append(self._detect(model, [p.image], [p.facing_hint])[0])
            except Exception as exc:
                out.append(exc)
        return out

    def analyze_many(self, units: Sequence[Any]) -> list[Analysis | Failure]:
        """Analyse many units (or sources), the model batched over their images; per unit an
        ``Analysis`` or a ``Failure`` (stage and reason): nothing is raised for one unit's fault."""
        registry = kinds()
        results: list[Analysis | Failure | None] = [None] * len(units)
        ready: dict[str, list[tuple[int, Unit, Prepared]]] = {}
        t = time.perf_counter()
        for i, item in enumerate(units):
            unit: Unit | None = None
            try:
                unit = unit_of(item)
                kind = registry[unit.kind]
                prep = kind.prepare(unit, self.detector_for(kind.model)) if kind.needs_detector else kind.prepare(unit)
                ready.setdefault(kind.model, []).append((i, unit, prep))
            except Exception as exc:
                results[i] = _failure(unit, "decode", exc) if unit is not None else \
                    Failure((str(item),) if isinstance(item, str | os.PathLike) else (), "read", str(exc))
        t = self._lap("decode", t)
        for model, batch in ready.items():
            found = self._detect_each(model, [p for _, _, p in batch])
            t = time.perf_counter()
            for (i, unit, prep), det in zip(batch, found, strict=True):
                if isinstance(det, BaseException):
                    results[i] = _failure(unit, "analyse", det)
                    continue
                try:
                    kind = registry[unit.kind]
                    doc = kind.finish(prep, det)
                    doc.setdefault("software", self.software(model))
                    extra = kind.extra_files(prep, doc) if kind.extra_files is not None else None
                    results[i] = Analysis.from_document(doc, prep.image, prep.pixel_scale, extra)
                except Exception as exc:
                    results[i] = _failure(unit, "analyse", exc)
            t = self._lap("geometry", t)
        return [r if r is not None else Failure((), "analyse", "not analysed") for r in results]

    def analyze(self, source: Any, *, pixel_spacing_mm: Any = None) -> Analysis:
        """Analyse one source; a ``SagittalError`` naming it and the reason when that fails."""
        (result,) = self.analyze_many([unit_of(source, pixel_spacing_mm)])
        if isinstance(result, Failure):
            error = {"read": DicomReadError, "decode": DicomReadError, "calibrate": CalibrationError}.get(
                result.stage, AnalysisError)
            raise error(result.reason)
        return result


def analyze(source: Any, *, device: str = "auto", weights: str | os.PathLike[str] | None = None,
            pixel_spacing_mm: Any = None) -> Analysis:
    """Analyse one unit of work (see the module's docstring) with a model loaded for this call."""
    unit = unit_of(source, pixel_spacing_mm)
    return Analyzer(device=device, weights=weights).analyze(unit)
