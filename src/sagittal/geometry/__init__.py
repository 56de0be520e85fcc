"""Pure, vectorised geometry over landmark arrays: no I/O, no DICOM, no torch.

Frame (docs/architecture.md): millimetres, +x anterior, +y superior. Arrays carry leading batch
dimensions: ``points_mm : (..., L, 6, 2)`` per level in ``levels.LEVELS`` order with the six
points in ``levels.POINT_NAMES`` order, ``s1_mm : (..., 2, 2)`` (anterior, posterior corner),
``hip_mm : (..., 2)``. A NaN input gives a NaN output; nothing raises on missing data.
"""

from .angles import endplate_angle_deg, wrap_deg
from .batch import FIELDS, measure
from .frame import pixels_to_patient
from .spinopelvic import (
    lumbar_lordosis_deg,
    pelvic_incidence_deg,
    pelvic_tilt_deg,
    regional_kyphosis_deg,
    sacral_slope_deg,
    sagittal_vertical_axis_mm,
    t1_pelvic_angle_deg,
    thoracic_kyphosis_deg,
    vertebral_kyphosis_deg,
)

__all__ = [
    "measure",
    "FIELDS",
    "endplate_angle_deg",
    "wrap_deg",
    "pixels_to_patient",
    "sacral_slope_deg",
    "pelvic_tilt_deg",
    "pelvic_incidence_deg",
    "lumbar_lordosis_deg",
    "thoracic_kyphosis_deg",
    "sagittal_vertical_axis_mm",
    "t1_pelvic_angle_deg",
    "regional_kyphosis_deg",
    "vertebral_kyphosis_deg",
]
