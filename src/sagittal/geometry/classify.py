"""Classifications used in reports, vectorised.

- SRS-Schwab sagittal modifiers (Schwab et al., Spine 2012;37:1077-1082), thresholds as in
  docs/clinical.md: PI−LL < 10° / 10–20° / > 20°; PT < 20° / 20–30° / > 30°;
  SVA < 40 mm / 40–95 mm / > 95 mm → ``"0"``, ``"+"``, ``"++"``.
- Roussouly type (Roussouly et al., Spine 2005;30:346-353): sacral slope < 35° gives type 1
  (lordosis apex low, at L5 or the L5/S1 disc) or type 2 (apex higher: a flat, hypolordotic
  spine); 35–45° type 3; > 45° type 4. The apex is the most anterior body centroid of L1–L5
  in the standing (gravity) frame.
- The GAP score (Yilgor et al., JBJS 2017) is **not** implemented: its exact formulas and
  point tables could not be confirmed from the original paper here, and a guessed score would
  be worse than none.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from ..levels import LEVEL_INDEX

SCHWAB_PI_LL_DEG = (10.0, 20.0)
SCHWAB_PT_DEG = (20.0, 30.0)
SCHWAB_SVA_MM = (40.0, 95.0)
ROUSSOULY_SS_DEG = (35.0, 45.0)

_CODES = np.array(["0", "+", "++"], dtype=object)


def _modifier(value: ArrayLike, cuts: tuple[float, float]) -> np.ndarray:
    v = np.asarray(value, dtype=float)
    idx = (v >= cuts[0]).astype(int) + (v > cuts[1]).astype(int)
    codes = np.array(_CODES[idx], dtype=object)
    codes[np.isnan(v)] = None
    return codes


def schwab_modifiers(pi_ll_deg: ArrayLike, pt_deg: ArrayLike, sva_mm: ArrayLike) -> dict[str, np.ndarray]:
    """SRS-Schwab modifiers ``{"pi_ll": …, "pt": …, "sva": …}``; ``None`` where unmeasured."""
    return {
        "pi_ll": _modifier(pi_ll_deg, SCHWAB_PI_LL_DEG),
        "pt": _modifier(pt_deg, SCHWAB_PT_DEG),
        "sva": _modifier(sva_mm, SCHWAB_SVA_MM),
    }


def roussouly_type(points_mm: ArrayLike, ss_deg: ArrayLike) -> np.ndarray:
    """Roussouly type 1–4 ``(...)`` (0 where not measurable) from ``points_mm : (..., 18, 6, 2)``."""
    p = np.asarray(points_mm, dtype=float)
    ss = np.asarray(ss_deg, dtype=float)
    lumbar = p[..., LEVEL_INDEX["L1"]:LEVEL_INDEX["L5"] + 1, :4, :].mean(axis=-2)  # (..., 5, 2)
    x = lumbar[..., 0]
    ok = np.isfinite(x).all(axis=-1)
    apex = np.argmax(np.where(np.isfinite(x), x, -np.inf), axis=-1)  # 0 = L1 … 4 = L5
    low_apex = apex >= 4
    t = np.where(ss > ROUSSOULY_SS_DEG[1], 4, np.where(ss >= ROUSSOULY_SS_DEG[0], 3, np.where(low_apex, 1, 2)))
    t = np.where(np.isnan(ss), 0, t)
    t = np.where((t <= 2) & ~ok & (t > 0), 0, t)
    return t.astype(np.int8)
