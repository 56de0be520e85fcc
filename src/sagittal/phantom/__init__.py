"""The synthetic spine: ground-truth landmarks and parameters, rendered as DX/CR
radiographs, CT and MR series and written as valid DICOM.

It feeds the tests, the landmark model's training data, ``sample_dicom/`` and the
benchmarks. Truth is constructive (see ``anatomy``): never computed by ``sagittal.geometry``.
"""

from .anatomy import Fracture, Spine, SpineSpec, build_spine, sample_fractures, sample_spec, with_progression
from .generate import generate
from .radiograph import Radiograph, render_radiograph, sample_style
from .volume import Volume, render_ct, render_mr

__all__ = [
    "Fracture",
    "Spine",
    "SpineSpec",
    "build_spine",
    "sample_fractures",
    "sample_spec",
    "with_progression",
    "generate",
    "Radiograph",
    "render_radiograph",
    "sample_style",
    "Volume",
    "render_ct",
    "render_mr",
]
