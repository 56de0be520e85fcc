"""Running the pipeline over many studies: the error ledger today; the runner with
resumption, workers and Dask arrives with ``sagittal analyze``."""

from .ledger import ERRORS_HEADER, write_errors_csv

__all__ = ["ERRORS_HEADER", "write_errors_csv"]
