"""The fused kernel behind ``batch.measure``: every field for a block of spines in one pass.

It computes what ``batch.measure_all`` composes from ``spinopelvic``, ``morphometry`` and
``classify`` (those stay the readable reference; ``tests/geometry/test_kernel.py`` holds the two
together within 1e-9, in practice within 1e-14 degrees), but level-major: every point coordinate
of one level is a contiguous row over the block's spines (``(18, 6, 2, n)``), and the per-level
outputs are written as rows of level-major storage, so that every numpy operation runs over long
contiguous rows. Each endplate direction is taken once and reused, as ``arctan(dy / dx)`` where
``dx > 0`` (within an ulp of the reference's arctan2 at half its cost); arithmetic is in place.
"""

from __future__ import annotations

import numpy as np

from ..levels import AI, AS, LEVEL_INDEX, MI, MS, PI, PS
from .classify import ROUSSOULY_SS_DEG, SCHWAB_PI_LL_DEG, SCHWAB_PT_DEG, SCHWAB_SVA_MM
from .morphometry import GENANT_THRESHOLDS_PCT, NORMAL_ANTERIOR_RATIO, NORMAL_MIDDLE_RATIO, NORMAL_POSTERIOR_MM

_L1, _L5, _T4, _T12, _C7, _T1 = (LEVEL_INDEX[k] for k in ("L1", "L5", "T4", "T12", "C7", "T1"))
#: level-major columns (levels, 1): the reference tables broadcast over a block's spines
_NEIGHBOUR_RATIOS = {off: (NORMAL_POSTERIOR_MM[max(0, -off):18 - max(0, off)]
                           / NORMAL_POSTERIOR_MM[max(0, off):18 + min(0, off)])[:, None] for off in (-2, -1, 1, 2)}
_ANTERIOR, _MIDDLE = NORMAL_ANTERIOR_RATIO[:, None], NORMAL_MIDDLE_RATIO[:, None]
_G1, _G2, _G3 = GENANT_THRESHOLDS_PCT


def _wrap(a: np.ndarray) -> np.ndarray:
    """``angles.wrap_deg`` in place, for differences of two directions (|a| < 540); the masked
    passes run only when some value needs them (rare for the angles of one spine)."""
    high = a > 180.0
    if high.any():
        np.subtract(a, 360.0, out=a, where=high)
    low = np.less_equal(a, -180.0, out=high)
    if low.any():
        np.add(a, 360.0, out=a, where=low)
    return a


def _direction_deg(dy: np.ndarray, dx: np.ndarray) -> np.ndarray:
    """``degrees(arctan2(dy, dx))`` as a fresh array: ``arctan(dy / dx)`` where ``dx > 0`` (every
    endplate of a spine facing +x: half the cost of arctan2, within an ulp of it), arctan2 for
    the rest (NaN, vertical or backward-pointing directions)."""
    out: np.ndarray = np.divide(dy, dx)
    np.arctan(out, out=out)
    other = ~(dx > 0)  # few: NaN, dx <= 0
    if other.any():
        out[other] = np.arctan2(dy[other], dx[other])
    np.degrees(out, out=out)
    return out


def _code(value: np.ndarray, cuts: tuple[float, float], out: np.ndarray) -> None:
    """SRS-Schwab code 0 / 1 / 2, -1 for NaN, into the int8 ``out``."""
    out[...] = value >= cuts[0]
    out += value > cuts[1]
    out[np.isnan(value)] = -1


def measure_block(b: np.ndarray, s1: np.ndarray, hip: np.ndarray, out: dict[str, np.ndarray]) -> None:
    """All fields for ``n`` spines into ``out`` (arrays of ``batch.FIELDS`` shapes with leading ``n``;
    the per-level ones fastest as views of level-major storage, ``batch.empty_fields``).

    ``b : (18, 6, 2, n)`` float64 level-major points: ``b[l, k, 0]`` the x of point ``k`` at level
    ``l`` for every spine, best C-contiguous (``batch.level_major``), so that every operation runs
    over long contiguous rows; ``s1 : (n, 2, 2)``, ``hip : (n, 2)``. Non-finite input gives NaN
    (or the integer fields' unknown code) silently.
    """
    with np.errstate(all="ignore"):  # x, y : (6, 18, n) views, point first
        _measure_block(b[:, :, 0].swapaxes(0, 1), b[:, :, 1].swapaxes(0, 1), s1, hip, out)


def _measure_block(x: np.ndarray, y: np.ndarray, s1: np.ndarray, hip: np.ndarray, out: dict[str, np.ndarray]) -> None:
    sup = _direction_deg(y[AS] - y[PS], x[AS] - x[PS])  # (18, n)
    inf = _direction_deg(y[AI] - y[PI], x[AI] - x[PI])
    ax, ay, px, py = s1[:, 0, 0], s1[:, 0, 1], s1[:, 1, 0], s1[:, 1, 1]
    s1phi = _direction_deg(ay - py, ax - px)
    midx, midy = (ax + px) / 2, (ay + py) / 2
    hx, hy = hip[:, 0], hip[:, 1]

    ss = out["sacral_slope_deg"]
    np.negative(_wrap(s1phi.copy()), out=ss)
    np.degrees(np.arctan2(-(midx - hx), midy - hy), out=out["pelvic_tilt_deg"])
    pi = out["pelvic_incidence_deg"]
    np.subtract(_direction_deg(hy - midy, hx - midx), s1phi - 90.0, out=pi)
    _wrap(pi)
    ll = out["lumbar_lordosis_deg"]
    _wrap(np.subtract(sup[_L1], s1phi, out=ll))
    _wrap(np.subtract(inf[_T12], sup[_T4], out=out["thoracic_kyphosis_deg"]))
    c7 = ((x[0, _C7] + x[1, _C7]) + x[2, _C7]) + x[3, _C7]
    np.subtract(c7 / 4, px, out=out["sagittal_vertical_axis_mm"])
    np.subtract(pi, ll, out=out["pi_ll_mismatch_deg"])
    t1x = (((x[0, _T1] + x[1, _T1]) + x[2, _T1]) + x[3, _T1]) / 4 - hx
    t1y = (((y[0, _T1] + y[1, _T1]) + y[2, _T1]) + y[3, _T1]) / 4 - hy
    t1pa = out["t1_pelvic_angle_deg"]
    np.subtract(np.arctan2(t1x, t1y), np.arctan2(midx - hx, midy - hy), out=t1pa)
    _wrap(np.degrees(t1pa, out=t1pa))
    reg = _levels_first(out["regional_kyphosis_deg"])
    reg[0] = np.nan
    np.subtract(inf[2:], sup[:16], out=reg[1:17])
    np.subtract(s1phi, sup[16], out=reg[17])
    _wrap(reg)
    _wrap(np.subtract(inf, sup, out=_levels_first(out["vertebral_kyphosis_deg"])))
    _morphometry(x, y, out)
    _code(out["pi_ll_mismatch_deg"], SCHWAB_PI_LL_DEG, out["srs_schwab_pi_ll"])
    _code(out["pelvic_tilt_deg"], SCHWAB_PT_DEG, out["srs_schwab_pt"])
    _code(out["sagittal_vertical_axis_mm"], SCHWAB_SVA_MM, out["srs_schwab_sva"])
    _roussouly(x, ss, out["roussouly_type"])


def _levels_first(a: np.ndarray) -> np.ndarray:
    """A per-level output ``(n, 18[, 3])`` seen levels first, ``(18[, 3], n)`` (a view)."""
    return np.moveaxis(a, 0, -1)


def _height(x: np.ndarray, y: np.ndarray, a: int, b: int, out: np.ndarray) -> np.ndarray:
    dx = np.subtract(x[a], x[b], out=out)
    dy = y[a] - y[b]
    dx *= dx
    dy *= dy
    dx += dy
    np.sqrt(dx, out=dx)
    return out


def _expected_posterior(hp: np.ndarray) -> np.ndarray:
    """``morphometry.expected_posterior_mm`` over all 18 levels, ``hp : (18, n)`` (same arithmetic, same order)."""
    if np.isfinite(hp).all():  # every neighbour known: counts are 2, 3, 4 … 4, 3, 2 by position
        return _expected_posterior_complete(hp)
    total = np.zeros_like(hp)
    count = np.zeros(hp.shape, np.int8)
    lo = np.full_like(hp, np.inf)
    hi = np.full_like(hp, -np.inf)
    for off in (-2, -1, 1, 2):
        src = slice(max(0, off), 18 + min(0, off))
        dst = slice(max(0, -off), 18 - max(0, off))
        v = hp[src] * _NEIGHBOUR_RATIOS[off]
        ok = np.isfinite(v)
        np.add(total[dst], v, out=total[dst], where=ok)
        count[dst] += ok
        np.fmin(lo[dst], v, out=lo[dst])
        np.fmax(hi[dst], v, out=hi[dst])
    trimmed = count >= 3
    np.subtract(total, lo, out=total, where=trimmed)
    np.subtract(total, hi, out=total, where=trimmed)
    divisor = np.where(count == 4, 2, np.where(count == 3, 1, count)).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        total /= divisor
    total[count == 0] = np.nan
    return total


def _expected_posterior_complete(hp: np.ndarray) -> np.ndarray:
    """``_expected_posterior`` when every level is known: the neighbours two above, one above,
    one below and two below, summed in that order as the reference does, extremes dropped."""
    a = hp[0:16] * _NEIGHBOUR_RATIOS[-2]  # for levels 2 … 17
    b = hp[0:17] * _NEIGHBOUR_RATIOS[-1]  # 1 … 17
    c = hp[1:18] * _NEIGHBOUR_RATIOS[1]  # 0 … 16
    d = hp[2:18] * _NEIGHBOUR_RATIOS[2]  # 0 … 15
    out = np.empty_like(hp)
    ai, bi, ci, di = a[:14], b[1:15], c[2:16], d[2:16]  # levels 2 … 15: four neighbours
    t = out[2:16]
    np.add(ai, bi, out=t)
    t += ci
    t += di
    lo, lo2 = np.fmin(ai, bi), np.fmin(ci, di)
    t -= np.fmin(lo, lo2, out=lo)
    np.fmax(ai, bi, out=lo)
    t -= np.fmax(lo, np.fmax(ci, di, out=lo2), out=lo)
    t /= 2
    for level, (p, q, r) in ((1, (b[0], c[1], d[1])), (16, (a[14], b[15], c[16]))):
        out[level] = ((p + q) + r - np.fmin(np.fmin(p, q), r)) - np.fmax(np.fmax(p, q), r)  # the middle one
    out[0] = (c[0] + d[0]) / 2
    out[17] = (a[15] + b[16]) / 2
    return out


def _morphometry(x: np.ndarray, y: np.ndarray, out: dict[str, np.ndarray]) -> None:
    """``morphometry.morphometry`` over all 18 levels into ``out``; ``x, y : (6, 18, n)``."""
    hs = _levels_first(out["heights_mm"])  # anterior, middle, posterior heights (18, 3, n)
    ha, hm, hp = (_height(x, y, a, b, hs[:, i]) for i, (a, b) in enumerate(((AS, AI), (MS, MI), (PS, PI))))
    complete = bool(np.isfinite(hp).all())  # the usual case: no level missing in the block
    hp_exp = _expected_posterior_complete(hp) if complete else _expected_posterior(hp)
    with np.errstate(all="ignore"):
        if complete:
            loss_p = np.divide(hp, hp_exp)
            np.subtract(1.0, loss_p, out=loss_p)
        else:
            loss_p = np.zeros_like(hp)
            np.subtract(1.0, hp / hp_exp, out=loss_p, where=np.isfinite(hp_exp))
        crushed = loss_p >= _G1 / 100.0
        any_crushed = bool(crushed.any())
        base_a = np.multiply(hp, _ANTERIOR)
        base_m = np.fmax(np.fmax(hp, ha / _ANTERIOR), hp_exp)
        if any_crushed:  # a collapsed posterior wall: judge against the neighbours
            np.copyto(base_a, hp_exp * _ANTERIOR, where=crushed)
            np.copyto(base_m, hp_exp, where=crushed)
        loss_a = np.subtract(1.0, np.divide(ha, base_a, out=base_a), out=base_a)
        base_m *= _MIDDLE
        loss_m = np.subtract(1.0, np.divide(hm, base_m, out=base_m), out=base_m)
    if not complete:
        loss_p[~np.isfinite(hp)] = np.nan
    pct = _levels_first(out["height_loss_pct"])
    np.fmax(np.fmax(loss_a, loss_m, out=pct), loss_p, out=pct)  # NaN only where all three are
    np.clip(np.multiply(pct, 100.0, out=pct), 0.0, None, out=pct)
    grade = _levels_first(out["genant_grade"])  # 20–25 % grade 1, 25–40 % grade 2, above 40 % grade 3
    np.greater_equal(pct, _G1, out=grade.view(np.bool_))  # booleans seen as int8: no casting pass
    grade += (pct > _G2).view(np.int8)
    grade += (pct > _G3).view(np.int8)
    morph = _levels_first(out["morphology_index"])
    morph[...] = 0
    if not complete:
        unknown = np.isnan(pct)
        grade[unknown] = -1
        morph[unknown] = -1
    graded = np.nonzero(grade > 0)  # few: name the height that lost most
    la, lm, lp = loss_a[graded], loss_m[graded], loss_p[graded]
    morph[graded] = np.where((la >= lm) & (la >= lp), 1, np.where(lm >= lp, 2, 3))


def _roussouly(x: np.ndarray, ss: np.ndarray, out: np.ndarray) -> None:
    """``classify.roussouly_type`` into the int8 ``out``; ``x : (6, 18, n)``."""
    lx = x[0, _L1:_L5 + 1] + x[1, _L1:_L5 + 1]
    lx += x[2, _L1:_L5 + 1]
    lx += x[3, _L1:_L5 + 1]
    lx /= 4
    finite = np.isfinite(lx)
    ok = finite.all(axis=0)
    apex = np.argmax(np.where(finite, lx, -np.inf), axis=0)
    t = np.where(ss > ROUSSOULY_SS_DEG[1], 4, np.where(ss >= ROUSSOULY_SS_DEG[0], 3, np.where(apex >= 4, 1, 2)))
    t[np.isnan(ss)] = 0
    t[(t <= 2) & ~ok] = 0
    out[...] = t
