"""Units of work and the kinds that plan, prepare and finish them.

A *unit of work* is what one analysis document comes from: a lateral radiograph today, a CT
series or an MR study's set of sagittal series next. Every kind is a ``UnitKind`` registered
here with three plain functions:

- ``plan(series) -> (units, set_aside)``: the units it makes from the scanned series (and the
  files it refuses, with the reason); series no kind claims are set aside as not analysed yet;
- ``prepare(unit) -> Prepared``: decode and calibrate, no model (runs in a worker);
- ``finish(prepared, detection) -> document``: geometry, findings and the analysis document
  from the landmark model's output for the prepared image.

Between ``prepare`` and ``finish`` the ``Analyzer`` (``sagittal.api``) runs the landmark model
over the prepared images of many units at once. Adding a kind is one module that calls
``register_kind`` and one line in ``KIND_MODULES``. Extra per-document outputs (DICOM SR and
Secondary Capture) are registered the same way with ``register_output``; the worker makes their
bytes, the driver alone writes them.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..io.discover import Header, SetAside

#: modules whose import registers a kind (add yours here)
KIND_MODULES: list[str] = ["sagittal.batch.radiograph", "sagittal.batch.volume"]
#: modules whose import registers an extra output (``--sr`` and the like)
OUTPUT_MODULES: list[str] = ["sagittal.report.sr_output"]

#: the landmark model's answer for one prepared image: (landmarks, side faced, warnings)
Detection = tuple[dict[str, Any], str | None, list[str]]


def safe_name(name: str) -> str:
    """A file-name-safe version of a UID or file name (at most 120 characters)."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)[:120] or "unnamed"


@dataclass(frozen=True)
class Unit:
    """One unit of work: everything a worker needs to analyse it (picklable).

    ``files`` are the input files it reads (each gets a row in ``errors.csv`` if it fails);
    ``name`` is the stem of its document, unique within the study (the SOPInstanceUID of a
    radiograph, the SeriesInstanceUID of a CT series …); ``data`` carries in-memory input
    (an array or a pydicom Dataset given to the API) or kind-specific planning results.
    """

    kind: str
    files: tuple[str, ...]
    patient_id: str
    study_uid: str | None
    name: str
    headers: tuple[Header, ...] = ()
    data: Any = None

    def relpath(self, key: bytes | None = None) -> Path:
        """Where its document goes under OUTDIR: ``<patient pseudonym>/<study>/<name>.json``
        (the pseudonym keyed with ``key``, the secret of a key file, when given)."""
        from ..io.series import pseudonym

        return (Path(pseudonym(self.patient_id, key)) / safe_name(self.study_uid or "no-study-uid")
                / f"{safe_name(self.name)}.json")


@dataclass
class Prepared:
    """A unit decoded and calibrated, ready for the landmark model.

    ``image``: the 2-D float32 bone-bright image the model reads; ``image_info``: the document's
    ``image`` object (``rows``, ``columns`` of the stored image, ``pixel_spacing_mm``,
    ``spacing_source``, ``anterior`` and, for volumes, ``plane`` and ``patient_position``);
    ``source``: the document's ``source`` (``None`` for an array); ``warnings`` so far;
    ``facing_hint``: the side the header says the patient faces (``None`` when it does not say);
    ``to_source``: maps the model's landmarks (in ``image`` pixels) to stored-image pixels when
    ``image`` was decoded at reduced resolution; ``pixel_scale``: ``image`` pixels per stored
    pixel (for overlays); ``extra``: anything else the kind's ``finish`` needs.
    """

    image: np.ndarray
    image_info: dict[str, Any]
    source: dict[str, Any] | None
    warnings: list[str]
    facing_hint: str | None = None
    to_source: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    pixel_scale: float = 1.0
    extra: Any = None


@dataclass(frozen=True)
class Failure:
    """A unit that could not be analysed: the stage and the reason, for each of its files."""

    files: tuple[str, ...]
    stage: str
    reason: str

    def rows(self) -> list[SetAside]:
        """``errors.csv`` rows, one per file (one row named after the unit when it has no file)."""
        return [SetAside(p, self.stage, self.reason) for p in (self.files or ("(in memory)",))]


@dataclass(frozen=True)
class UnitKind:
    """How one kind of unit is planned, prepared and finished (see the module's docstring)."""

    name: str
    plan: Callable[[Sequence[Any]], tuple[list[Unit], list[SetAside]]]
    prepare: Callable[..., Prepared]  # prepare(unit), or prepare(unit, detector) with needs_detector
    finish: Callable[[Prepared, Detection], dict[str, Any]]
    model: str = "radiograph"  # which landmark model (``register_model``) reads the prepared images
    needs_detector: bool = False  # prepare also gets the model's detector (e.g. to find the spine in a volume)
    #: more files beside the document, made with the finished document: {suffix: bytes}, e.g.
    #: one overlay per MR sequence ({"stir.png": ...} is written as ``<name>.stir.png``)
    extra_files: Callable[[Prepared, dict[str, Any]], dict[str, bytes]] | None = None


#: an extra output: (analysis, unit) -> {suffix: bytes}; ``analysis`` is the ``sagittal.Analysis``
#: (``to_json()``, ``pixels``, ``overlay()``); each ``<name>.<suffix>`` is written beside the document
OutputMaker = Callable[[Any, Unit], dict[str, bytes]]

#: a landmark model: (weights or None for its default, device, threads) -> detector with
#: ``detect(images, facing=, batch_size=) -> list[Detection]``, ``device`` and ``last_timings``
ModelLoader = Callable[[Any, str, int | None], Any]

_KINDS: dict[str, UnitKind] = {}
_MODELS: dict[str, ModelLoader] = {}
_OUTPUTS: dict[str, OutputMaker] = {}
_loaded: set[str] = set()


def register_kind(kind: UnitKind) -> None:
    """Make ``kind`` known to planning and workers (call it when your module is imported)."""
    _KINDS[kind.name] = kind


def register_model(name: str, loader: ModelLoader) -> None:
    """Make a landmark model known by ``name`` (a ``UnitKind.model``); the ``Analyzer`` loads it
    on first use, once per process, with its ``weights`` for the ``radiograph`` model only."""
    _MODELS[name] = loader


def model_loader(name: str) -> ModelLoader:
    """The registered loader of model ``name``; ``InputError`` when there is none."""
    _import_all()
    if name not in _MODELS:
        from ..errors import InputError

        raise InputError(f"no landmark model {name!r} is registered (known: {', '.join(sorted(_MODELS)) or 'none'})")
    return _MODELS[name]


def register_output(name: str, maker: OutputMaker) -> None:
    """Register an extra output ``name`` (e.g. ``"sr"``): ``maker`` returns ``{suffix: bytes}``."""
    _OUTPUTS[name] = maker


def _import_all() -> None:
    for module in (*KIND_MODULES, *OUTPUT_MODULES):
        if module not in _loaded:
            importlib.import_module(module)
            _loaded.add(module)


def kinds() -> dict[str, UnitKind]:
    """Every registered kind by name."""
    _import_all()
    return dict(_KINDS)


def output_maker(name: str) -> OutputMaker:
    """The registered extra output ``name``; ``InputError`` when there is none."""
    _import_all()
    if name not in _OUTPUTS:
        from ..errors import InputError

        raise InputError(f"no output {name!r} is registered (known: {', '.join(sorted(_OUTPUTS)) or 'none'})")
    return _OUTPUTS[name]


def plan_units(inputs: Sequence[Any]) -> tuple[list[Unit], list[SetAside], int]:
    """Every unit of work under ``inputs`` (files and folders), every file set aside with its
    reason, and how many files were found at all. Headers only: nothing is decoded here."""
    from ..io.series import scan_export

    export = scan_export(inputs, decode_pixels=False)
    set_aside = list(export.set_aside)
    units: list[Unit] = []
    for kind in kinds().values():
        planned, refused = kind.plan(export.series)
        units += planned
        set_aside += refused
    covered = {p for u in units for p in u.files} | {a.path for a in set_aside}
    for s in export.series:
        what = f"{s.modality} {s.orientation or ''}".strip()
        set_aside += [SetAside(p, "classify", f"{what} series: no analysis for this kind of series yet "
                                              "(lateral radiographs only)")
                      for p in s.files if p not in covered]
    missing = {str(Path(p)) for p in inputs if not Path(p).exists()}  # inputs that are not there at all
    n_found = sum(len(s.files) for s in export.series) + sum(a.path not in missing for a in export.set_aside)
    return units, set_aside, n_found


@dataclass
class Outcome:
    """What a worker returns for one unit: its document and output bytes, or its failure."""

    index: int
    document: dict[str, Any] | None = None
    files: dict[str, bytes] = field(default_factory=dict)  # suffix ("png", "sr.dcm" …) -> bytes
    failure: Failure | None = None
    #: extra outputs (``register_output``) that failed while the document stands: errors.csv rows
    output_failures: list[Failure] = field(default_factory=list)
