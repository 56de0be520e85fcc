"""Vertebral levels and the contract's landmark names, said once.

Levels run cranial to caudal: ``C7, T1 … T12, L1 … L5``; the sacrum (S1) is described by its
superior endplate alone.
"""

from __future__ import annotations

import math
from typing import Any

from .errors import InputError

LEVELS: tuple[str, ...] = ("C7", *(f"T{i}" for i in range(1, 13)), *(f"L{i}" for i in range(1, 6)))
LEVEL_INDEX: dict[str, int] = {name: i for i, name in enumerate(LEVELS)}

#: The six morphometry points of one vertebral body, in the contract's order.
#: Index into the ``6`` axis of ``points : (..., 6, 2)`` arrays.
POINT_NAMES: tuple[str, ...] = (
    "anterior_superior",
    "posterior_superior",
    "posterior_inferior",
    "anterior_inferior",
    "middle_superior",
    "middle_inferior",
)
AS, PS, PI, AI, MS, MI = range(6)

#: Levels of the thoracolumbar junction, where osteoporotic fractures are most frequent
#: (docs/clinical.md).
THORACOLUMBAR: frozenset[str] = frozenset({"T10", "T11", "T12", "L1", "L2"})

#: The key of a landmarks dict's optional map of levels reported (level and points) but not graded
#: — no heights, height loss, grade or morphology — to the reason (``report.analysis_document``).
UNGRADED = "ungraded"

#: the reason of a level a landmarks dict lists as ungraded without one (a list of levels is taken too)
UNGRADED_NO_REASON = "reported without a grade: its points were not steady enough to grade it"


#: The key of a landmarks dict's optional map of levels to how finely the series sampled the spine's
#: axis at their endplates (mm), where that differs from ``image.axis_sampling_mm`` (a CT with a gap of
#: missing slices): ``report.analysis_document`` grades each such level by its own sampling.
LEVEL_AXIS_SAMPLING = "axis_sampling_mm"


def level_axis_sampling(value: Any) -> dict[str, float]:
    """A landmarks dict's ``LEVEL_AXIS_SAMPLING`` value as level → mm; ``InputError`` for anything but a
    map of levels to positive finite numbers."""
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(
            isinstance(k, str) and k in LEVELS and isinstance(v, (int, float)) and not isinstance(v, bool)
            and math.isfinite(v) and v > 0 for k, v in value.items()):
        raise InputError(f"landmarks.{LEVEL_AXIS_SAMPLING} must map vertebral levels ({LEVELS[0]}…{LEVELS[-1]}) to "
                         f"positive millimetres, not {value!r}")
    return {k: float(v) for k, v in value.items()}


def ungraded_reasons(value: Any) -> dict[str, str]:
    """A landmarks dict's ``UNGRADED`` value (level → reason; a list of levels is taken too) as
    level → reason (``UNGRADED_NO_REASON`` where none is given); ``InputError`` for anything else
    or a name that is not a level."""
    if value is None:
        return {}
    if not isinstance(value, (dict, list, tuple)) or not all(isinstance(k, str) and k in LEVELS for k in value):
        raise InputError(f"landmarks.{UNGRADED} must map vertebral levels ({LEVELS[0]}…{LEVELS[-1]}) to reasons, "
                         f"not {value!r}")
    reasons = value if isinstance(value, dict) else dict.fromkeys(value)
    return {lv: str(why) if why else UNGRADED_NO_REASON for lv, why in reasons.items()}

__all__ = [
    "LEVEL_AXIS_SAMPLING",
    "level_axis_sampling",
    "UNGRADED",
    "UNGRADED_NO_REASON",
    "ungraded_reasons",
    "LEVELS",
    "LEVEL_INDEX",
    "POINT_NAMES",
    "AS",
    "PS",
    "PI",
    "AI",
    "MS",
    "MI",
    "THORACOLUMBAR",
]
