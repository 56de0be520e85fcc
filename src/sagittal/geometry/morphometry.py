"""Six-point vertebral morphometry: heights, height loss, Genant grade, morphology.

Method (quantitative morphometry in the spirit of Genant's semi-quantitative grading,
Genant et al., J Bone Miner Res 1993; McCloskey et al., Osteoporos Int 1993):

1. Heights of each body ``(..., L, 3)``: anterior (AS–AI), middle (MS–MI), posterior (PS–PI).
2. The posterior height expected for vertebra *i* comes from its neighbours (up to two
   above and two below that are in view): each neighbour's posterior height scaled by the
   normal size ratio between the two levels; the median resists one fractured neighbour.
3. The anterior height expected is the vertebra's own posterior height (a wedge keeps its
   posterior wall) times the level's normal anterior/posterior ratio; the middle height
   expected is the largest of three estimates of the normal posterior height — its own, its
   anterior height ÷ the normal ratio, the neighbours' — times the normal middle/posterior
   ratio, because a biconcave collapse lowers both walls a little. When the posterior wall
   itself has collapsed (≥ 20 % against the neighbours) the neighbour-based height is used.
4. Height loss is the largest of the three relative losses; Genant grade 0 below 20 %,
   1 for 20–25 %, 2 for 25–40 %, 3 above 40 % (docs/clinical.md); morphology names the height
   that lost most: wedge (anterior), biconcave (middle), crush (posterior).

The reference ratios (``NORMAL_ANTERIOR_RATIO`` …) are adult averages by level within the
ranges of normative studies (e.g. Diacinti et al., Osteoporos Int 1995); they are also the
phantom's population means. Real populations differ (sex, ethnicity, degenerative change): a
study should re-derive them from its own unfractured vertebrae.
"""

from __future__ import annotations

import numpy as np

from ..levels import AI, AS, MI, MS, PI, PS

#: normal anterior / posterior body height ratio by level, C7 … L5
NORMAL_ANTERIOR_RATIO = np.array(
    [0.96, 0.95, 0.93, 0.92, 0.91, 0.90, 0.90, 0.90, 0.91, 0.92, 0.93, 0.94, 0.95, 0.96, 0.98, 1.00, 1.02, 1.10]
)
#: normal middle / posterior ratio: the mean of the two walls less the endplates' concavity
NORMAL_MIDDLE_RATIO = (1.0 + NORMAL_ANTERIOR_RATIO) / 2.0 - 0.06
#: normal posterior body height by level relative to each other (mm, average adult)
NORMAL_POSTERIOR_MM = np.array(
    [14.0, 15.0, 16.0, 16.5, 17.0, 17.5, 18.0, 18.5, 19.0, 19.5, 20.5, 21.5, 23.0, 24.5, 25.5, 26.0, 26.0, 25.0]
)
#: Genant thresholds, % loss (docs/clinical.md)
GENANT_THRESHOLDS_PCT = (20.0, 25.0, 40.0)
#: the morphology vocabulary (docs/contract.md), said once: ``morphology_index`` indexes it
MORPHOLOGIES: tuple[str, ...] = ("normal", "wedge", "biconcave", "crush")
_MORPHOLOGY_BY_INDEX = np.array([None, *MORPHOLOGIES], dtype=object)  # index -1 (unknown) → None


def heights_mm(points_mm: np.ndarray) -> np.ndarray:
    """``points_mm : (..., L, 6, 2)`` → ``(..., L, 3)`` anterior, middle, posterior heights."""
    p = np.asarray(points_mm, dtype=float)
    pairs = ((AS, AI), (MS, MI), (PS, PI))
    out = []
    for a, b in pairs:
        dx = p[..., a, 0] - p[..., b, 0]
        dy = p[..., a, 1] - p[..., b, 1]
        dx *= dx
        dy *= dy
        dx += dy
        out.append(np.sqrt(dx, out=dx))
    return np.stack(out, axis=-1)


def expected_posterior_mm(h_post: np.ndarray, levels: slice | np.ndarray = slice(None)) -> np.ndarray:
    """Posterior height each vertebra should have, from its neighbours: ``(..., L)``.

    ``h_post : (..., L)`` with NaN where a vertebra is not in view. ``levels`` picks the rows
    of the normal-size table that the L columns stand for (all 18 by default).
    """
    ref = NORMAL_POSTERIOR_MM[levels]
    n = h_post.shape[-1]
    total = np.zeros_like(h_post)
    count = np.zeros(h_post.shape, np.int8)
    lo = np.full_like(h_post, np.inf)
    hi = np.full_like(h_post, -np.inf)
    for off in (-2, -1, 1, 2):
        src = slice(max(0, off), n + min(0, off))
        dst = slice(max(0, -off), n - max(0, off))
        v = h_post[..., src] * (ref[dst] / ref[src])
        ok = np.isfinite(v)
        total[..., dst] += np.where(ok, v, 0.0)
        count[..., dst] += ok
        lo[..., dst] = np.fmin(lo[..., dst], v)
        hi[..., dst] = np.fmax(hi[..., dst], v)
    # median of up to four values: drop the extremes when there are three or four
    with np.errstate(invalid="ignore", divide="ignore"):
        med = np.where(count >= 3, total - lo - hi, total) / np.where(count == 4, 2, np.where(count == 3, 1, count))
    return np.where(count > 0, med, np.nan)


def height_loss(points_mm: np.ndarray, levels: slice | np.ndarray = slice(None)) -> tuple[np.ndarray, np.ndarray]:
    """Relative losses ``(..., L, 3)`` (anterior, middle, posterior; fractions) and heights.

    Negative losses (a taller-than-expected height) are kept; NaN where not measurable.
    """
    h = heights_mm(points_mm)
    ha, hm, hp = h[..., 0], h[..., 1], h[..., 2]
    hp_exp = expected_posterior_mm(hp, levels)
    with np.errstate(all="ignore"):
        loss_p = np.where(np.isfinite(hp_exp), 1.0 - hp / hp_exp, 0.0)
        crushed = loss_p >= GENANT_THRESHOLDS_PCT[0] / 100.0
        ra = NORMAL_ANTERIOR_RATIO[levels]
        # a wedge keeps its posterior wall; a biconcave body loses a little of both walls, so
        # the middle is judged against the taller of the two wall-based estimates
        base_a = np.where(crushed, hp_exp, hp)
        base_m = np.where(crushed, hp_exp, np.fmax(np.fmax(hp, ha / ra), hp_exp))
        loss_a = 1.0 - ha / (base_a * ra)
        loss_m = 1.0 - hm / (base_m * NORMAL_MIDDLE_RATIO[levels])
    loss_p = np.where(np.isfinite(hp), loss_p, np.nan)
    return np.stack([loss_a, loss_m, loss_p], axis=-1), h


def genant_grade(loss_pct: np.ndarray) -> np.ndarray:
    """Genant grade 0–3 from the largest height loss in %; -1 where NaN."""
    x = np.asarray(loss_pct, dtype=float)
    g = np.searchsorted(np.array(GENANT_THRESHOLDS_PCT), x, side="right").astype(np.int8)
    # exactly 25 % or 40 % belongs to the lower band ("20–25 %", "25–40 %")
    g = np.where(np.isin(x, GENANT_THRESHOLDS_PCT[1:]), g - 1, g)
    return np.where(np.isnan(x), -1, g).astype(np.int8)


def morphometry(points_mm: np.ndarray, levels: slice | np.ndarray = slice(None)) -> dict[str, np.ndarray]:
    """Everything per vertebra: ``heights_mm (..., L, 3)``, ``height_loss_pct (..., L)``,
    ``genant_grade (..., L)`` (int8, -1 unknown) and ``morphology_index (..., L)`` (0 normal,
    1 wedge, 2 biconcave, 3 crush, -1 unknown)."""
    losses, h = height_loss(points_mm, levels)
    la, lm, lp = losses[..., 0], losses[..., 1], losses[..., 2]
    worst = np.fmax(np.fmax(la, lm), lp)  # NaN only where all three are NaN
    loss_pct = np.clip(worst * 100.0, 0.0, None)
    grade = genant_grade(loss_pct)
    which = np.where((la >= lm) & (la >= lp), 1, np.where(lm >= lp, 2, 3))
    morph = np.where(grade > 0, which, 0)
    morph = np.where(grade < 0, -1, morph).astype(np.int8)
    return {"heights_mm": h, "height_loss_pct": loss_pct, "genant_grade": grade, "morphology_index": morph}


def morphology_name(index: np.ndarray) -> np.ndarray:
    """Names for ``morphology_index`` values (``None`` for -1)."""
    out: np.ndarray = _MORPHOLOGY_BY_INDEX[np.asarray(index) + 1]
    return out
