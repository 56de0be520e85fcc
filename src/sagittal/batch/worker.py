"""The worker side of a batch: a pure function from units of work to values.

``run_chunk`` analyses a chunk of units with the process's own ``Analyzer`` (the model loaded
once per process and configuration) and returns one ``Outcome`` per unit: its document and the
bytes of its overlay PNG (and any registered extra output), or a ``Failure``. It writes
nothing and never raises: the driver alone writes outputs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from ..errors import SagittalError
from .units import Failure, Outcome, Unit, output_maker

_ANALYZERS: dict[RunConfig, Any] = {}


@dataclass(frozen=True)
class RunConfig:
    """What every worker needs to analyse alike (hashable, picklable)."""

    weights: str | None = None
    device: str = "cpu"
    batch_size: int | None = None
    threads: int | None = None
    mixed_precision: bool = False
    outputs: tuple[str, ...] = ()  # extra outputs by registered name (e.g. "sr")


def analyzer_for(config: RunConfig) -> Any:
    """This process's ``Analyzer`` for ``config``, made (and its model loaded) on first use."""
    if config not in _ANALYZERS:
        from ..api import Analyzer

        _ANALYZERS.clear()  # one model per process
        _ANALYZERS[config] = Analyzer(config.device, config.weights, batch_size=config.batch_size,
                                      threads=config.threads, mixed_precision=config.mixed_precision).load()
    return _ANALYZERS[config]


def _encode_png(rgb: Any) -> bytes:
    import cv2

    ok, png = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise RuntimeError("the overlay could not be encoded as PNG")
    return bytes(png.tobytes())


def run_chunk(chunk: list[tuple[int, Unit]], config: RunConfig, timings: dict[str, float] | None = None) -> list[Outcome]:
    """Analyse ``chunk`` (``(index, unit)`` pairs); one ``Outcome`` per pair, in order, never raising.

    ``timings``, when given, receives the seconds of each stage summed over the chunk."""
    try:
        analyzer = analyzer_for(config)
    except Exception as exc:  # the model cannot be loaded here: stage "model" (the driver stops the run)
        reason = str(exc) if isinstance(exc, SagittalError) else f"{type(exc).__name__}: {exc}"
        return [Outcome(i, failure=Failure(u.files, "model", reason)) for i, u in chunk]
    try:
        before = dict(analyzer.timings)
        results = analyzer.analyze_many([u for _, u in chunk])
    except Exception as exc:  # analyze_many returns failures; this is a last resort
        reason = f"{type(exc).__name__}: {exc}"
        return [Outcome(i, failure=Failure(u.files, "analyse", reason)) for i, u in chunk]
    outcomes = []
    t = time.perf_counter()
    for (i, unit), result in zip(chunk, results, strict=True):
        if isinstance(result, Failure):
            outcomes.append(Outcome(i, failure=result))
            continue
        where = unit.files[0] if unit.files else unit.name
        try:
            files = {"png": _encode_png(result.overlay()), **result.extra_files}
            doc = result.to_json()
        except Exception as exc:
            outcomes.append(Outcome(i, failure=Failure(unit.files, "outputs", f"{where}: {type(exc).__name__}: {exc}")))
            continue
        failed = []
        for name in config.outputs:  # an extra output that fails costs only itself: the document stands
            try:
                files.update(output_maker(name)(result, unit))
            except Exception as exc:
                reason = f"{where}: the {name} output was not written: {type(exc).__name__}: {exc}"
                failed.append(Failure(unit.files, name, reason))
                doc["warnings"].append(reason)
        outcomes.append(Outcome(i, document=doc, files=files, output_failures=failed))
    if timings is not None:
        for k, v in analyzer.timings.items():
            timings[k] = timings.get(k, 0.0) + v - before.get(k, 0.0)
        timings["outputs"] = timings.get("outputs", 0.0) + time.perf_counter() - t
    return outcomes


def run_chunk_timed(chunk: list[tuple[int, Unit]], config: RunConfig) -> tuple[list[Outcome], dict[str, float]]:
    """``run_chunk`` with its stage timings, for executors in other processes; the heap's free
    pages are given back after it (``release_free_memory``)."""
    timings: dict[str, float] = {}
    outcomes = run_chunk(chunk, config, timings)
    release_free_memory()
    return outcomes, timings


_TRIM: Any = None


def release_free_memory() -> None:
    """Return the C heap's free pages to the system (glibc's ``malloc_trim``; nothing elsewhere).

    Without it a worker's resident memory keeps the high-water mark of every image's
    temporaries: ~100 MB of free heap after a few dozen small radiographs, and creeping up
    over a long batch (``benchmarks/analyze_batch.py --memory 100 1000``)."""
    global _TRIM
    if _TRIM is None:
        import ctypes
        import sys

        try:
            _TRIM = ctypes.CDLL("libc.so.6").malloc_trim if sys.platform.startswith("linux") else False
        except (OSError, AttributeError):  # not glibc
            _TRIM = False
    if _TRIM:
        _TRIM(0)
