"""Vertebral levels and the contract's landmark names, said once.

Levels run cranial to caudal: ``C7, T1 … T12, L1 … L5``; the sacrum (S1) is described by its
superior endplate alone.
"""

from __future__ import annotations

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

__all__ = [
    "UNGRADED",
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
