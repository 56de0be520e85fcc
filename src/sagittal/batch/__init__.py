"""Many units of work: planning (``plan_units``), the kinds of unit (``register_kind``), a pure
worker, executors (serial, local processes, Dask) and the driver ``run_analyze`` that alone
writes the outputs, atomically, and resumes by their presence; ``errors.csv`` via the ledger."""

from typing import Any

from .ledger import ERRORS_HEADER, write_errors_csv
from .units import Failure, Outcome, Prepared, Unit, UnitKind, plan_units, register_kind, register_output

__all__ = ["ERRORS_HEADER", "write_errors_csv", "Failure", "Outcome", "Prepared", "Unit", "UnitKind", "plan_units",
           "register_kind", "register_output", "run_analyze", "RunConfig"]


def __getattr__(name: str) -> Any:  # the driver and worker load torch-side code lazily
    if name == "run_analyze":
        from .analyze import run_analyze

        return run_analyze
    if name == "RunConfig":
        from .worker import RunConfig

        return RunConfig
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
