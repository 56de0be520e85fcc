"""The two networks' output channel layouts, said once (pure numpy). The training targets
that fill them are in ``sagittal.training.targets``.

Coarse maps (stride ``COARSE_STRIDE`` on the model input; output cell ``(i, j)`` is centred on
input pixel ``[x, y] = [2 j + 0.5, 2 i + 0.5]``):

- ``C_CENTRE`` body-centre heatmap (centre = mean of the four corners);
- ``C_OFFSETS`` the six points' offsets from the cell, ``(dx, dy)`` each, in ``OFFSET_UNIT``
  input pixels, supervised on the 3 × 3 cells about each centre;
- ``C_S1`` the anterior and posterior S1 corners; ``C_HEAD`` femoral-head centres;
  ``C_RADIUS`` the head radius in ``RADIUS_UNIT`` input pixels about each head centre.

Refine maps (full crop resolution, one spatial-softmax distribution per channel):
``R_VERTEBRA`` the six points of the centred body in ``POINT_NAMES`` order, ``R_S1``
anterior and posterior S1 corners, ``R_HEADS`` the two femoral-head centres, ordered by
``head_order``.
"""

from __future__ import annotations

import numpy as np

COARSE_STRIDE = 2
OFFSET_UNIT = 16.0
RADIUS_UNIT = 32.0
C_CENTRE = 0
C_OFFSETS = slice(1, 13)
C_S1 = slice(13, 15)
C_HEAD = 15
C_RADIUS = 16
COARSE_CHANNELS = 17
COARSE_HEAT = (C_CENTRE, 13, 14, C_HEAD)

R_VERTEBRA = slice(0, 6)
R_S1 = slice(6, 8)
R_HEADS = slice(8, 10)
REFINE_CHANNELS = 10
KINDS = {"vertebra": R_VERTEBRA, "s1": R_S1, "hips": R_HEADS}


def to_cells(xy_input: np.ndarray) -> np.ndarray:
    """Model-input pixels → coarse cell coordinates (same pixel-centre convention)."""
    return (np.asarray(xy_input, float) + 0.5) / COARSE_STRIDE - 0.5


def to_input(xy_cells: np.ndarray) -> np.ndarray:
    return (np.asarray(xy_cells, float) + 0.5) * COARSE_STRIDE - 0.5
