"""sagittal: spinal sagittal balance and vertebral-fracture analysis.

Importing the package is cheap: torch, SimpleITK and the decoders load only in the stages
that need them.
"""

import logging
from typing import Any

__version__ = "0.1.0"
__all__ = ["__version__", "analyze", "Analyzer", "Analysis"]
_API = frozenset({"analyze", "Analyzer", "Analysis"})


def __getattr__(name: str) -> Any:
    """``sagittal.analyze``, ``sagittal.Analyzer`` and ``sagittal.Analysis`` (``sagittal.api``), imported on first use."""
    if name in _API:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

logging.getLogger(__name__).addHandler(logging.NullHandler())
