"""The synthetic spine: ground-truth landmarks and parameters, rendered as DX/CR
radiographs (two renderers: painted sagittal outlines, ``render_radiograph``, and a cone-beam
projection of a 3-D phantom, ``render_drr``), CT and MR series and written as valid DICOM.

It feeds the tests, the landmark model's training data, ``sample_dicom/`` and the
benchmarks. Truth is constructive (see ``anatomy``): never computed by ``sagittal.geometry``.
"""

from .anatomy import Fracture, Spine, SpineSpec, build_spine, sample_fractures, sample_spec, with_progression
from .drr import DRR_FIELDS, FAMILIES, render_drr, sample_drr_spec, sample_drr_style
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
    "render_drr",
    "sample_drr_style",
    "sample_drr_spec",
    "FAMILIES",
    "DRR_FIELDS",
    "Volume",
    "render_ct",
    "render_mr",
]
