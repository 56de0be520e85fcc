"""Many units of work: planning (``plan_units``), the kinds of unit (``register_kind``), a pure
worker, executors (serial, local processes, Dask) and the driver ``run_analyze`` that alone
writes the outputs, atomically, and resumes by their presence; ``errors.csv`` via the ledger."""

from typing import Any

__all__ = ["ERRORS_HEADER", "write_errors_csv", "Failure", "Outcome", "Prepared", "Unit", "UnitKind", "plan_units",
           "register_kind", "register_output", "run_analyze", "RunConfig"]


_WHERE = {"ERRORS_HEADER": "ledger", "write_errors_csv": "ledger", "run_analyze": "analyze", "RunConfig": "worker",
          **{name: "units" for name in ("Failure", "Outcome", "Prepared", "Unit", "UnitKind", "plan_units", "register_kind",
                                        "register_output")}}


def __getattr__(name: str) -> Any:
    """Every name imported on first use: importing ``sagittal.batch.forkserver`` (the first thing
    ``sagittal analyze --workers`` does) must not wait for pydicom, nor the driver for torch."""
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
