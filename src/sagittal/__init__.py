"""sagittal: spinal sagittal balance and vertebral-fracture analysis.

Importing the package is cheap: torch, SimpleITK and the decoders load only in the stages
that need them.
"""

import logging

__version__ = "0.1.0"
__all__ = ["__version__"]

logging.getLogger(__name__).addHandler(logging.NullHandler())
