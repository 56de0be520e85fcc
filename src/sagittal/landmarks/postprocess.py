"""From the networks' maps to the contract's landmarks (pure numpy, no torch).

1. Coarse (``decode``): vertebral bodies are the peaks of the centre heatmap, each with its six
   points from the regressed offsets; the S1 corners and the femoral heads are the strongest
   peaks of their maps. Positions are in model-input pixels.
2. Levels (``label_levels``) are counted from S1 upwards (L5 first) or, with the sacrum out of
   view, from the top (C7). The chain is checked — count, spacing between neighbours — and a
   chain that breaks is cut at the break: what lies beyond it is withheld with a warning, never
   renumbered.
3. Fine (``crop_frames``, ``refine``): each structure is cropped from the full-resolution image
   (``crops``) and its points are placed by the refinement maps: the spatial-softmax peak,
   sub-pixel by the probability-weighted centroid about it; the mass there is the confidence.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import cv2
import numpy as np

from ..levels import LEVEL_INDEX, LEVELS, POINT_NAMES, UNGRADED
from .crops import CropFrame, hips_frame, s1_frame, vertebra_frame, vertebra_size
from .layout import C_CENTRE, C_HEAD, C_OFFSETS, C_RADIUS, C_S1, OFFSET_UNIT, R_HEADS, R_S1, R_VERTEBRA, RADIUS_UNIT, to_input

CENTRE_THRESHOLD = 0.3  # a body on its own
WEAK_THRESHOLD = 0.1  # a body where the chain of the others wants one
#: a step between neighbouring bodies against the median of the steps around it: over 400
#: phantom spines (0–3 fractures) 0.73–1.35, and 1.48–2.6 where one body is left out
STEP_SHORT, STEP_LONG = 0.6, 1.42
#: a step across levels whose bodies were withheld (strayed, unstable, cut) is counted only within
#: the range of real steps, 0.73–1.35 above: there the count rests on bodies no longer vouched for
#: (a missed body beside a false one leaves 1.38, an extra one 0.70)
SPAN_SHORT, SPAN_LONG = 0.73, 1.35
EDGE_FRACTION = 0.004
HEAD_MIN_CONFIDENCE = 0.3
S1_THRESHOLD = 0.2
#: an S1 peak this weak is taken only where the chain of bodies puts the sacrum (``_chain_s1``)
S1_WEAK_THRESHOLD = 0.05
#: the S1 endplate midpoint lies this many lowest-body heights below its centre (phantom: ~0.9)
S1_STEP = (0.4, 1.4)
#: a faintly seen S1 needs this many lowest-body heights of field below it (``withhold_faint_s1_at_edge``)
S1_FIELD_BELOW = 1.0
#: ... and on the chain's own line: the cosine between the step into the lowest body and the step
#: from it to the S1 endplate's midpoint is at least this (phantom truth, 400 spines with
#: spondylolisthesis: 0.83–1.0, median 0.98; a faint "S1" beside a thoracic body was 0.45)
S1_DIRECTION_COS = 0.7
HEAD_THRESHOLD = 0.2
GAP_FACTOR = 1.6  # a neighbour farther than this × the spacing the bodies' sizes predict breaks the chain
#: a gap this many times the spacing the bodies' sizes predict holds exactly one body the first stage
#: missed (phantom truth, 300 spines: one missing 1.67–2.44, two missing 2.51–3.57 at the 0.5th–99.5th
#: centiles): a body is placed there and must be confirmed by the fine placement (``confirm_bridges``)
BRIDGE_RANGE = (GAP_FACTOR, 2.35)
#: ... or a step this many times the steps around it (one missing: 1.48–2.6, none: 0.73–1.35, see
#: ``STEP_SHORT``) that is at least ``BRIDGE_RANGE_MIN`` by the sizes (adjacent bodies: at most 1.43)
BRIDGE_RELATIVE, BRIDGE_RANGE_MIN = (1.5, 2.4), 1.3
#: a bridged body confirmed by the fine placement is as large as its neighbours (mean edge length)
BRIDGE_SIZE = (0.7, 1.4)
DUPLICATE_FACTOR = 0.45
#: the warning of a count from C7 (``label_levels``), read by ``withhold_c7_count_without_ends``
FROM_C7 = "the sacrum is out of view: levels are counted from C7 at the top of the image"
#: without the sacrum, levels are counted from C7 only over all 18 bodies C7–L5, the three top
#: ones averaging under this fraction of the three lowest (0.48–0.63 in the phantom, C7–T2 / L3–L5)
C7_SIZE_RATIO = 0.7
#: probability mass a perfect refinement map holds in the 5 × 5 window about its peak (a
#: Gaussian of sigma 1.5 px): the refinement confidence is the mass found over this
REFINE_MASS = 0.82
#: the consistency check's second look (``alternate_frames``) and its limits (``consistent``):
#: set on phantom radiographs of the eval stream (docs in models/README.md, "Uncertainty")
TTA_SCALE, TTA_ANGLE_DEG = 1.12, 6.0
CONSISTENCY_MAX = 0.10
MIN_POINT_CONFIDENCE = 0.4
#: a body that looks collapsed (smallest height under this × its largest) must be steadier to be
#: graded: a false fracture is worse than a missed one (fractured phantom bodies: spread ≤ 0.04)
COLLAPSED_RATIO, COLLAPSED_CONSISTENCY_MAX = 0.8, 0.04
#: a body closer to the exposed field's edge than this × its height may be cut by it
EDGE_BODY_FRACTION = 0.1
#: a refined body whose centre moved more than this × its size from the coarse one has most
#: likely latched onto a neighbour: the body is withheld
REFINE_MAX_SHIFT = 0.35


@dataclass(eq=False)  # identity: points are arrays
class Body:
    points: np.ndarray  # (6, 2)
    confidence: float
    centre: np.ndarray  # (2,)
    level: str | None = None
    point_confidence: float = 1.0  # the least confident of its six refined points
    spread: float = 0.0  # the two refinements' largest disagreement over the body's size (``consistent``)
    #: the level of a body placed between two neighbours across a one-body gap (``_bridge_gaps``), not
    #: found as a peak ("?" until ``label_levels`` names the chain): kept when the body loses its label
    #: so that ``confirm_bridges`` knows what was at stake
    bridged: str | None = None


#: ``Withheld.reason`` codes: a step out of proportion after fine placement (``recheck_chain``), a
#: bridged body the fine placement did not confirm (``confirm_bridges``), a body that looks collapsed
#: withheld for its two placements' disagreement (``consistent``)
STEP, UNCONFIRMED_BRIDGE, COLLAPSED_UNSTEADY = "step", "unconfirmed_bridge", "collapsed_unsteady"
#: ``Withheld.cause`` of an ``UNCONFIRMED_BRIDGE`` (``confirm_bridges``): a neighbour of the bridged
#: body does not stand; else the fine placement strayed from the bridged place (no body found
#: there); it found a body there but withheld it (unsteady, not confident, cut by the field's edge);
#: it found one out of ``BRIDGE_SIZE``
BRIDGE_NEIGHBOUR, BRIDGE_NO_BODY, BRIDGE_WITHHELD, BRIDGE_OUT_OF_SIZE = "neighbour", "no body", "withheld", "size"


@dataclass(frozen=True)
class Withheld:
    """What a rule withheld and why, recorded beside the warning it writes from these fields (so
    that a second look can read the reason without parsing the text): ``level`` the body's level
    (for a ``STEP``, the level beyond the step), ``reason`` a code above, ``value`` the step over
    its neighbours' (``STEP``) or the body's spread over its size (``COLLAPSED_UNSTEADY``), ``near``
    the level on the anchor's side of a ``STEP``, ``cause`` why an ``UNCONFIRMED_BRIDGE`` was not
    confirmed (``BRIDGE_NO_BODY`` …)."""

    level: str
    reason: str
    value: float = 0.0
    near: str | None = None
    cause: str | None = None


@dataclass
class Detections:
    """Landmarks in one pixel frame; ``warnings`` explain anything withheld, and ``withheld``
    records some of it as fields (``Withheld``)."""

    bodies: list[Body]
    s1: np.ndarray | None  # (2, 2) anterior, posterior
    s1_confidence: float
    heads: list[tuple[np.ndarray, float, float]]  # (centre, radius, confidence)
    warnings: list[str] = field(default_factory=list)
    #: weaker S1 corner pairs ``((2, 2), score)`` the chain may confirm when ``s1`` is None
    s1_candidates: list[tuple[np.ndarray, float]] = field(default_factory=list)
    withheld: tuple[Withheld, ...] = ()

    def mapped(self, f, scale: float) -> Detections:
        """The same detections with every point through ``f`` (``(..., 2) -> (..., 2)``) and
        lengths times ``scale``."""
        bodies = [replace(b, points=f(b.points), centre=f(b.centre[None])[0]) for b in self.bodies]
        heads = [(f(c[None])[0], r * scale, conf) for c, r, conf in self.heads]
        return Detections(bodies, None if self.s1 is None else f(self.s1), self.s1_confidence, heads,
                          list(self.warnings), [(f(c), sc) for c, sc in self.s1_candidates], self.withheld)


def _peaks(heat: np.ndarray, threshold: float, min_dist: int = 1) -> list[tuple[int, int, float]]:
    k = 2 * min_dist + 1
    dil = cv2.dilate(heat, np.ones((k, k), np.uint8))
    ys, xs = np.nonzero((heat >= dil) & (heat >= threshold))
    return sorted(((int(x), int(y), float(heat[y, x])) for x, y in zip(xs, ys, strict=False)), key=lambda p: -p[2])


def _subpixel(heat: np.ndarray, x: int, y: int) -> np.ndarray:
    """Quadratic peak refinement in x and y (clamped to ±0.5 cell)."""
    h, w = heat.shape
    dx = dy = 0.0
    if 0 < x < w - 1:
        a, b, c = heat[y, x - 1], heat[y, x], heat[y, x + 1]
        den = a - 2 * b + c
        dx = 0.0 if den >= 0 else float(np.clip(0.5 * (a - c) / den, -0.5, 0.5))
    if 0 < y < h - 1:
        a, b, c = heat[y - 1, x], heat[y, x], heat[y + 1, x]
        den = a - 2 * b + c
        dy = 0.0 if den >= 0 else float(np.clip(0.5 * (a - c) / den, -0.5, 0.5))
    return np.array([x + dx, y + dy])


def decode(maps: np.ndarray) -> Detections:
    """Coarse ``maps (COARSE_CHANNELS, rows / 2, cols / 2)``, heatmaps as probabilities →
    unlabelled detections in model-input pixels."""
    bodies = []
    for x, y, score in _peaks(maps[C_CENTRE], WEAK_THRESHOLD):
        cell = to_input(np.array([x, y], float))
        pts = cell + maps[C_OFFSETS, y, x].reshape(6, 2) * OFFSET_UNIT
        bodies.append(Body(pts, score, to_input(_subpixel(maps[C_CENTRE], x, y))))
    s1, s1_conf = None, 0.0
    a = _peaks(maps[C_S1.start], S1_WEAK_THRESHOLD)[:3]
    b = _peaks(maps[C_S1.start + 1], S1_WEAK_THRESHOLD)[:3]
    pairs = sorted(((min(pa[2], pb[2]), to_input(np.array([_subpixel(maps[C_S1.start], pa[0], pa[1]),
                                                          _subpixel(maps[C_S1.start + 1], pb[0], pb[1])])))
                    for pa in a for pb in b), key=lambda t: -t[0])
    if pairs and pairs[0][0] >= S1_THRESHOLD:
        s1_conf, s1 = pairs[0]
    candidates = [] if s1 is not None else [(xy, sc) for sc, xy in pairs]
    heads = []
    for x, y, score in _peaks(maps[C_HEAD], HEAD_THRESHOLD)[:2]:
        heads.append((to_input(_subpixel(maps[C_HEAD], x, y)), float(maps[C_RADIUS, y, x] * RADIUS_UNIT), score))
    return Detections(bodies, s1, s1_conf, heads, s1_candidates=candidates)


def _dedupe(bodies: list[Body]) -> list[Body]:
    """Two detections of one body (closer than ``DUPLICATE_FACTOR`` × its height): keep the
    more confident. ``bodies`` caudal first."""
    kept: list[Body] = []
    for b in bodies:
        if kept:
            d = np.linalg.norm(b.centre - kept[-1].centre)
            size = float(np.linalg.norm(b.points[1] - b.points[2]))
            if d < DUPLICATE_FACTOR * max(size, 1.0):
                if b.confidence > kept[-1].confidence:
                    kept[-1] = b
                continue
        kept.append(b)
    return kept


def _step_ratio(a: Body, b: Body) -> float:
    """Distance between two bodies over what their sizes predict (half of each plus a disc)."""
    ha, hb = (float(np.linalg.norm(x.points[1] - x.points[2])) for x in (a, b))
    return float(np.linalg.norm(a.centre - b.centre)) / (1.25 * max(1e-6, (ha + hb) / 2))


def _fill_with_weak(strong: list[Body], weak: list[Body]) -> list[Body]:
    """Admit weak detections only where the chain of strong ones wants a body: inside a gap
    (between its two ends, near the line joining them) or one step beyond either end, in the
    chain's direction. Anything else a weak peak says is ignored. Caudal first in and out."""
    chain = list(strong)
    pool = sorted(weak, key=lambda b: -b.confidence)
    changed = True
    while changed and pool and chain:
        changed = False
        for w in list(pool):
            for i in range(len(chain) - 1):
                a, b = chain[i], chain[i + 1]
                if _step_ratio(a, b) <= GAP_FACTOR:
                    continue
                ab = b.centre - a.centre
                t = float(np.dot(w.centre - a.centre, ab) / max(np.dot(ab, ab), 1e-9))
                rel = w.centre - a.centre
                off = abs(float(ab[0] * rel[1] - ab[1] * rel[0])) / max(float(np.linalg.norm(ab)), 1e-9)
                if 0.2 < t < 0.8 and off < 0.5 * float(np.linalg.norm(w.points[1] - w.points[2])) \
                        and min(_step_ratio(a, w), _step_ratio(w, b)) > 0.6:
                    chain.insert(i + 1, w)
                    pool.remove(w)
                    changed = True
                    break
            if changed:
                break
            for end, inner, at in ((chain[0], chain[1] if len(chain) > 1 else None, 0),
                                   (chain[-1], chain[-2] if len(chain) > 1 else None, len(chain))):
                if inner is None:
                    continue
                direction = end.centre - inner.centre
                step = w.centre - end.centre
                cos = float(np.dot(direction, step) / max(np.linalg.norm(direction) * np.linalg.norm(step), 1e-9))
                if cos > 0.8 and 0.6 < _step_ratio(end, w) <= GAP_FACTOR:
                    chain.insert(at, w)
                    pool.remove(w)
                    changed = True
                    break
            if changed:
                break
    return chain


def _relative_steps(bodies: list[Body], levels_apart: list[int] | None = None) -> list[float]:
    """Each step between neighbouring bodies (per level, where ``levels_apart`` says how many
    levels each step spans) over the median of the up to four steps around it."""
    apart = levels_apart or [1] * max(len(bodies) - 1, 0)
    steps = [float(np.linalg.norm(bodies[i + 1].centre - bodies[i].centre)) / max(apart[i], 1)
             for i in range(len(bodies) - 1)]
    out = []
    for i, st in enumerate(steps):
        around = [steps[j] for j in range(max(0, i - 2), min(len(steps), i + 3)) if j != i]
        out.append(st / float(np.median(around)) if len(around) >= 2 else 1.0)
    return out


def _chain_s1(det: Detections, lowest: Body, height: float, above: Body | None = None) -> Detections:
    """Take the strongest weak S1 candidate that sits where the chain puts the sacrum: below the
    lowest body, ``S1_STEP`` of its height from its centre, as wide as its endplate (0.5–1.8×),
    and in line with the chain (``S1_DIRECTION_COS`` with the step from the body ``above``); never
    below a body that is itself a weak peak (under ``CENTRE_THRESHOLD``)."""
    if lowest.confidence < CENTRE_THRESHOLD:  # two faint findings do not anchor a spine
        return det
    width = float(np.linalg.norm(lowest.points[0] - lowest.points[1]))
    for xy, score in det.s1_candidates:
        mid = xy.mean(axis=0)
        step = float(np.linalg.norm(lowest.centre - mid)) / max(1e-6, height)
        w = float(np.linalg.norm(xy[0] - xy[1]))
        if above is not None:
            into, out = lowest.centre - above.centre, mid - lowest.centre
            cos = float(np.dot(into, out) / max(float(np.linalg.norm(into) * np.linalg.norm(out)), 1e-9))
            if cos < S1_DIRECTION_COS:
                continue
        if mid[1] > lowest.centre[1] and S1_STEP[0] <= step <= S1_STEP[1] and 0.5 * width <= w <= 1.8 * width:
            note = (f"the S1 endplate was seen only faintly (score {score:.2f}); it is used because it lies just "
                    "below the lowest body, where the chain puts the sacrum")
            return replace(det, s1=xy, s1_confidence=float(score), warnings=[*det.warnings, note], s1_candidates=[])
    return det


def _chain(found: list[Body]) -> list[Body]:
    """The chain of bodies, caudal first: strong peaks deduplicated, weak ones where they fit."""
    ordered = sorted(found, key=lambda b: -b.centre[1])
    strong = [b for b in ordered if b.confidence >= CENTRE_THRESHOLD]
    weak = [b for b in ordered if b.confidence < CENTRE_THRESHOLD]
    bodies = _dedupe(strong)
    weak = [w for w in weak if all(np.linalg.norm(w.centre - b.centre) >= DUPLICATE_FACTOR *
                                   max(float(np.linalg.norm(b.points[1] - b.points[2])), 1.0) for b in bodies)]
    return _fill_with_weak(bodies, weak) if len(bodies) > 1 else bodies


def _bridge_gaps(bodies: list[Body]) -> list[Body]:
    """Between neighbours ``BRIDGE_RANGE`` apart (one body missed by the first stage) — or, by
    their step against the steps around it, ``BRIDGE_RELATIVE`` (and at least ``BRIDGE_RANGE_MIN``
    by their sizes) — a body halfway, each point the mean of theirs, marked ``bridged``: the fine
    placement then has to find a body there (``confirm_bridges``) or every level beyond it is
    withheld. Caudal first."""
    rel = _relative_steps(bodies)
    out = list(bodies[:1])
    for i, b in enumerate(bodies[1:]):
        a = out[-1]
        size = _step_ratio(a, b)
        gap = BRIDGE_RANGE[0] < size <= BRIDGE_RANGE[1] or (
            BRIDGE_RELATIVE[0] <= rel[i] <= BRIDGE_RELATIVE[1] and BRIDGE_RANGE_MIN <= size <= BRIDGE_RANGE[1])
        if a.bridged is None and gap:
            pts = (a.points + b.points) / 2
            out.append(Body(pts, 0.0, pts[:4].mean(axis=0), bridged="?"))
        out.append(b)
    return out


def confirm_bridges(det: Detections) -> Detections:
    """After the fine placement (and the consistency check): a bridged body stands only where a
    body was found — labelled still (not strayed, stable, confident), between two neighbours that
    stand too, and as large as they are. Otherwise the count across the gap is not known, so it
    and every level beyond it (away from the anchor: S1, else C7) are withheld with a warning (and a
    ``Withheld`` record, ``UNCONFIRMED_BRIDGE``, with its ``cause``: a neighbour not standing; else
    the body unlabelled with no spread measured — ``consistent`` measures one wherever both
    placements stayed on the body, so the fine placement strayed from the bridged place in one of
    them: no body there (with the check off, a body cut by the field's edge too); unlabelled with a
    spread — found, but withheld; labelled but out of size)."""
    labelled = [b for b in det.bodies if b.level]
    bodies, warnings = list(det.bodies), list(det.warnings)
    for k, b in enumerate(det.bodies):
        if not b.bridged or b.bridged == "?":
            continue
        i = LEVELS.index(b.bridged)
        near = [x for x in labelled if x is not b and abs(LEVELS.index(x.level or "") - i) == 1]
        size = (float(vertebra_size(b.points)) / max(float(np.mean([vertebra_size(x.points) for x in near])), 1e-6)
                if near else 0.0)
        if b.level and len(near) == 2 and BRIDGE_SIZE[0] <= size <= BRIDGE_SIZE[1]:
            bodies[k] = replace(b, confidence=b.point_confidence)
            warnings.append(f"{b.level} was missed by the first stage; placed between its neighbours, it was found by "
                            "the fine placement")
            continue
        # levels were counted from S1 unless the sacrum is gone and the chain reaches C7 (counted from the top)
        from_s1 = det.s1 is not None or not any(x.level == "C7" for x in det.bodies)
        cause = (BRIDGE_NEIGHBOUR if len(near) != 2 else BRIDGE_OUT_OF_SIZE if b.level
                 else BRIDGE_NO_BODY if b.spread == 0.0 else BRIDGE_WITHHELD)
        record = Withheld(b.bridged, UNCONFIRMED_BRIDGE, cause=cause)
        warnings.append(f"{record.level} was missed by the first stage and the fine placement did not confirm a body "
                        "where it should be: it and the levels beyond it are withheld")
        bodies = [replace(x, level=None) if x.level and (LEVELS.index(x.level) <= i if from_s1 else LEVELS.index(x.level) >= i)
                  else x for x in bodies]
        return Detections(bodies, det.s1, det.s1_confidence, det.heads, warnings, withheld=(*det.withheld, record))
    return Detections(bodies, det.s1, det.s1_confidence, det.heads, warnings, withheld=det.withheld)


def _name_chain(order: list[Body], names: list[str], ratios: list[float], rel: list[float], warnings: list[str]) -> None:
    """Name ``order`` (from the anchor on) with ``names`` until the chain breaks; the rest unnamed."""
    labelled = 0
    for i, b in enumerate(order):
        if i >= len(names):
            warnings.append(f"{len(order) - len(names)} body(ies) beyond the {len(names)} levels C7–L5 withheld")
            break
        if i > 0 and ratios[i - 1] > GAP_FACTOR:
            where = "above" if names[0] == "L5" else "below"
            warnings.append(f"the chain of bodies breaks {where} {names[i - 1]} (a gap of {ratios[i - 1]:.1f}× the "
                            "spacing the bodies' sizes predict): the levels beyond it are withheld")
            break
        if i > 0 and not (STEP_SHORT < rel[i - 1] < STEP_LONG):
            where = "above" if names[0] == "L5" else "below"
            what = "longer" if rel[i - 1] >= STEP_LONG else "shorter"
            warnings.append(f"the chain of bodies breaks {where} {names[i - 1]} (a step {rel[i - 1]:.2f}× its "
                            f"neighbours', {what} than a spine allows: a body missed or one too many): the levels "
                            "beyond it are withheld")
            break
        b.level = names[i]
        labelled += 1
    for b in order[labelled:]:
        b.level = None


def label_levels(det: Detections) -> Detections:
    """Assign levels, anchored on S1 (else C7 at the top); withhold what breaks the chain.

    Bodies at or above ``CENTRE_THRESHOLD`` make the chain; weaker ones (down to
    ``WEAK_THRESHOLD``) only fill its gaps and extend its ends (``_fill_with_weak``)."""
    bodies = _bridge_gaps(_chain(det.bodies))
    warnings = list(det.warnings)
    if not bodies:
        warnings.append("no vertebral body found")
        return Detections([], det.s1, det.s1_confidence, det.heads, warnings, withheld=det.withheld)
    heights = [float(np.linalg.norm(b.points[1] - b.points[2])) for b in bodies]  # posterior walls
    # a step between neighbours is "too long" against what their own sizes predict (half of each
    # body plus a disc), so the check follows the spine from small cervical to large lumbar bodies
    ratios = [_step_ratio(bodies[i], bodies[i + 1]) for i in range(len(bodies) - 1)]
    rel = _relative_steps(bodies)
    if det.s1 is None and det.s1_candidates:
        det = _chain_s1(det, bodies[0], heights[0], bodies[1] if len(bodies) > 1 else None)
        warnings = det.warnings
    if det.s1 is not None:
        s1_mid = det.s1.mean(axis=0)
        first_step = float(np.linalg.norm(bodies[0].centre - s1_mid)) / max(1e-6, heights[0])
        if bodies[0].centre[1] > s1_mid[1] or not (S1_STEP[0] <= first_step <= S1_STEP[1]):
            warnings.append("the lowest body found is not just above the S1 endplate: levels withheld "
                            "(a missed or extra vertebra would renumber the spine)")
            for b in bodies:
                b.level = None
            return Detections(bodies, det.s1, det.s1_confidence, det.heads, warnings, withheld=det.withheld)
        order, names = bodies, list(reversed(LEVELS))  # L5 upwards
    else:
        top = min(b.centre[1] for b in bodies)
        margin = float(np.median(heights))
        # Counting down from C7 must not renumber the spine when C7 itself was missed, and body
        # sizes cannot tell C7–T2 from T1–T3 (their ratios to L3–L5 overlap: 0.48–0.63 against
        # 0.51–0.66 over 400 phantom spines). So without the sacrum the whole chain C7–L5 must be
        # there: 18 bodies whose top ones are clearly the small cervicothoracic vertebrae.
        sizes = [float(vertebra_size(b.points)) for b in bodies]  # caudal first
        small_top = len(bodies) == len(LEVELS) and np.mean(sizes[-3:]) < C7_SIZE_RATIO * np.mean(sizes[:3])
        if top < 1.0 * margin or not small_top:
            why = ("the top of the spine is cut" if top < 1.0 * margin else
                   f"{len(bodies)} bodies were found, not the whole chain C7–L5 that counting from C7 needs")
            warnings.append(f"the sacrum is out of view and {why}: levels cannot be anchored, so they are withheld")
            for b in bodies:
                b.level = None
            return Detections(bodies, det.s1, det.s1_confidence, det.heads, warnings, withheld=det.withheld)
        warnings.append(FROM_C7)
        order, names = list(reversed(bodies)), list(LEVELS)
        ratios, rel = list(reversed(ratios)), list(reversed(rel))
    _name_chain(order, names, ratios, rel, warnings)
    for b in bodies:
        if b.bridged:
            b.bridged = b.level
    return Detections(bodies, det.s1, det.s1_confidence, det.heads, warnings, withheld=det.withheld)


def crop_frames(det: Detections, mirror: bool) -> list[tuple[str, int, CropFrame]]:
    """The refinement crops of labelled detections in source pixels: ``(kind, index, frame)``
    for each labelled body (index into ``det.bodies``), the S1 endplate and the hips."""
    frames = [("vertebra", i, vertebra_frame(b.points, mirror)) for i, b in enumerate(det.bodies) if b.level]
    if det.s1 is not None:
        frames.append(("s1", 0, s1_frame(det.s1, mirror)))
    if det.heads:
        frames.append(("hips", 0, hips_frame(np.array([c for c, _, _ in det.heads]),
                                             np.array([r for _, r, _ in det.heads]), mirror)))
    return frames


def softmax_points(logits: np.ndarray, radius: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """``logits (K, H, W)`` → points ``(K, 2)`` (crop pixels) and confidences ``(K,)``.

    Each channel is a spatial softmax. The point is its peak, sub-pixel by a parabola through
    the log-probabilities about it (exact for a Gaussian peak, which a window centroid is not);
    the confidence is the mass of the ``(2 radius + 1)²`` window there over ``REFINE_MASS``.
    """
    k, h, w = logits.shape
    flat = logits.reshape(k, -1).astype(np.float64)
    logp = flat - flat.max(axis=1, keepdims=True)
    logp = (logp - np.log(np.exp(logp).sum(axis=1, keepdims=True))).reshape(k, h, w)
    pts, conf = np.zeros((k, 2)), np.zeros(k)
    for c in range(k):
        iy, ix = (int(v) for v in np.unravel_index(int(np.argmax(logp[c])), (h, w)))
        pts[c] = _subpixel(logp[c], ix, iy)
        y0, y1, x0, x1 = max(0, iy - radius), min(h, iy + radius + 1), max(0, ix - radius), min(w, ix + radius + 1)
        conf[c] = min(1.0, float(np.exp(logp[c, y0:y1, x0:x1]).sum()) / REFINE_MASS)
    return pts, conf


def refine(det: Detections, frames: list[tuple[str, int, CropFrame]], logits: np.ndarray) -> Detections:
    """Replace coarse points by the refinement maps' (``logits (len(frames), REFINE_CHANNELS,
    CROP, CROP)``), all in source pixels. Returns a new ``Detections``."""
    bodies = [replace(b) for b in det.bodies]
    s1, s1_conf, heads, warnings = det.s1, det.s1_confidence, list(det.heads), list(det.warnings)
    for (kind, i, frame), maps in zip(frames, logits, strict=False):
        if kind == "vertebra":
            q, conf = softmax_points(maps[R_VERTEBRA])
            pts = frame.to_source(q)
            b = bodies[i]
            shift = float(np.linalg.norm(pts[:4].mean(axis=0) - b.points[:4].mean(axis=0)))
            if shift > REFINE_MAX_SHIFT * float(vertebra_size(b.points)):
                warnings.append(f"{b.level}: the fine placement strayed from the body found: withheld")
                bodies[i] = replace(b, level=None, confidence=0.5 * b.confidence)
                continue
            bodies[i] = replace(b, points=pts, centre=pts[:4].mean(axis=0),
                                confidence=float(min(b.confidence, conf.mean())), point_confidence=float(conf.min()))
        elif kind == "s1":
            q, conf = softmax_points(maps[R_S1])
            s1, s1_conf = frame.to_source(q), float(min(s1_conf, conf.mean()))
        else:
            q, conf = softmax_points(maps[R_HEADS])
            c = frame.to_source(q)
            radius = float(np.mean([r for _, r, _ in det.heads]))
            score = max(sc for _, _, sc in det.heads)
            # the crop sees both heads even where the coarse stage merged them into one peak;
            # a head the refinement is unsure of is left out (the hip axis is then the one seen)
            heads = [(c[k], radius, float(min(score, conf[k]))) for k in range(2) if conf[k] >= HEAD_MIN_CONFIDENCE]
            if not heads:
                heads = [(c[int(np.argmax(conf))], radius, float(min(score, conf.max())))]
    return Detections(bodies, s1, s1_conf, heads, warnings, withheld=det.withheld)


def alternate_frames(frames: list[tuple[str, int, CropFrame]]) -> list[tuple[str, int, CropFrame]]:
    """The second look of the consistency check: every body and S1 crop ``TTA_SCALE`` larger and
    turned ``TTA_ANGLE_DEG`` (inside the jitter the refinement was trained with), hips left out."""
    return [(kind, i, replace(f, side_px=f.side_px * TTA_SCALE, angle_rad=f.angle_rad + np.radians(TTA_ANGLE_DEG)))
            for kind, i, f in frames if kind != "hips"]


def _height_ratio(points: np.ndarray) -> float:
    """Smallest of a body's anterior, middle and posterior heights over the largest (pixels)."""
    p = np.asarray(points, float)
    h = [float(np.linalg.norm(p[a] - p[b])) for a, b in ((0, 3), (4, 5), (1, 2))]
    return float(min(h) / max(max(h), 1e-6))


def consistent(first: Detections, second: Detections, max_spread: float = CONSISTENCY_MAX,
               collapsed_max: float = COLLAPSED_CONSISTENCY_MAX,
               min_point_confidence: float = MIN_POINT_CONFIDENCE) -> Detections:
    """Merge two refinements of the same detections (``refine`` over ``crop_frames`` and over
    ``alternate_frames``): each body's points become the mean of its two placements and its
    ``spread`` their largest disagreement over the body's size; a body whose spread exceeds
    ``max_spread`` (``collapsed_max`` when it looks collapsed) — or whose least confident
    point is under ``min_point_confidence`` — is withheld with a warning (the collapsed-looking
    one also with a ``Withheld`` record, ``COLLAPSED_UNSTEADY``, its spread): its points,
    and a height loss from them, are not stable. The S1 endplate likewise (over its width); when
    it was taken faintly (under ``S1_THRESHOLD``, by ``_chain_s1``) and is not stable, the levels
    counted from it are withheld too. Hips
    are the first refinement's. The limits' defaults were calibrated on radiographs (models/README.md);
    a model of another look (the CT/MR plane model) passes its own."""
    warnings = list(first.warnings) + [w for w in second.warnings if w not in first.warnings]
    withheld = list(first.withheld) + [r for r in second.withheld if r not in first.withheld]
    bodies = []
    for a, b in zip(first.bodies, second.bodies, strict=True):
        if not a.level:
            bodies.append(a)
            continue
        if not b.level:  # the second look strayed: refine() said so
            bodies.append(replace(a, level=None))
            continue
        spread = float(np.abs(a.points - b.points).max() / max(float(vertebra_size(a.points)), 1e-6))
        pts = (a.points + b.points) / 2
        merged = replace(a, points=pts, centre=pts[:4].mean(axis=0), confidence=min(a.confidence, b.confidence),
                         point_confidence=min(a.point_confidence, b.point_confidence), spread=spread)
        if spread > max_spread:
            warnings.append(f"{a.level}: two placements of its points disagree by {100 * spread:.0f} % of its size "
                            "(points not stable): withheld, no height or grade")
            merged = replace(merged, level=None)
        elif spread > collapsed_max and _height_ratio(pts) < COLLAPSED_RATIO:
            record = Withheld(a.level, COLLAPSED_UNSTEADY, spread)
            withheld.append(record)
            warnings.append(f"{record.level}: looks collapsed but two placements of its points disagree by "
                            f"{100 * record.value:.0f} % of its size, too much to grade it: withheld")
            merged = replace(merged, level=None)
        elif merged.point_confidence < min_point_confidence:
            warnings.append(f"{a.level}: its points are not confident ({merged.point_confidence:.2f}): withheld, "
                            "no height or grade")
            merged = replace(merged, level=None)
        bodies.append(merged)
    s1, s1_conf = first.s1, first.s1_confidence
    if s1 is not None and second.s1 is not None:
        width = max(float(np.linalg.norm(s1[0] - s1[1])), 1e-6)
        spread = float(np.abs(s1 - second.s1).max()) / width
        s1, s1_conf = (s1 + second.s1) / 2, min(s1_conf, second.s1_confidence)
        if spread > max_spread:
            warnings.append(f"the S1 endplate's two placements disagree by {100 * spread:.0f} % of its width "
                            "(not stable): withheld")
            s1 = None
            if s1_conf < S1_THRESHOLD and any(b.level for b in bodies):
                # a faint S1 that does not hold still is no anchor: the count from it may be one off
                warnings.append("the levels were counted from that faintly seen S1 endplate: every level is "
                                "withheld")
                bodies = [replace(b, level=None) for b in bodies]
    return Detections(bodies, s1, s1_conf, first.heads, warnings, withheld=tuple(withheld))


def wholly_inside(points: np.ndarray, box: tuple[float, float, float, float]) -> bool:
    """Whether a body's points ``(6, 2)`` lie inside ``box`` (``x0, y0, x1, y1``) by at least
    ``EDGE_FRACTION`` of its size and ``EDGE_BODY_FRACTION`` of the body's own height."""
    x0, y0, x1, y1 = box
    p = np.asarray(points, float)
    m = max(1.0, EDGE_FRACTION * max(x1 - x0, y1 - y0), EDGE_BODY_FRACTION * float(np.linalg.norm(p[1] - p[2])))
    return bool(((p[:, 0] >= x0 + m) & (p[:, 0] <= x1 - m) & (p[:, 1] >= y0 + m) & (p[:, 1] <= y1 - m)).all())


def withhold_outside(det: Detections, box: tuple[float, float, float, float]) -> Detections:
    """Unlabel bodies with a point outside ``box`` (``x0, y0, x1, y1``, the exposed field) or
    within ``EDGE_FRACTION`` of its size, or ``EDGE_BODY_FRACTION`` of the body's own height,
    from its edge: the contract reports only vertebrae wholly in view, and a body cut by the
    edge has its hidden corners guessed — a cut body read as a short one is a false fracture."""
    bodies, warnings = [], list(det.warnings)
    for b in det.bodies:
        if b.level and not wholly_inside(b.points, box):
            warnings.append(f"{b.level} is not wholly in the exposed field (cut by or touching its edge): withheld, "
                            "no height or grade")
            b = replace(b, level=None)
        bodies.append(b)
    return Detections(bodies, det.s1, det.s1_confidence, det.heads, warnings, withheld=det.withheld)


def withhold_faint_s1_at_edge(det: Detections, box: tuple[float, float, float, float]) -> Detections:
    """A faintly seen S1 endplate (under ``S1_THRESHOLD``) with less than ``S1_FIELD_BELOW``
    heights of the lowest labelled body above it of exposed field (``box``) below it is no anchor:
    at the field's bottom edge the upper endplate of a cut L5 can look like one, and every level
    counted from it would be one off. The S1 endplate (so SS, PT and PI) and every level are
    withheld, with a warning. (On the phantom films, 250 with S1 in view, a true S1 has at least
    1.1 such heights below it; a real film centred on the lumbar spine more. Not so on the held-out
    ``drr-b`` look, whose fields may end just below S1: 4 of 165 true S1 endplates of evaluation-stream
    films 9,300,000–199 lie under one height above the edge, so a firmly seen S1 there stays an anchor.)"""
    if det.s1 is None or det.s1_confidence >= S1_THRESHOLD:
        return det
    above = [b for b in det.bodies if b.level and b.centre[1] < float(det.s1[:, 1].min())]
    if not above:
        return det
    lowest = max(above, key=lambda b: b.centre[1])
    height = max(float(np.linalg.norm(lowest.points[1] - lowest.points[2])), 1e-6)
    below = (box[3] - float(det.s1[:, 1].max())) / height
    if below >= S1_FIELD_BELOW:
        return det
    where = "at the field's edge" if below <= 0 else f"{below:.1f} body heights above the field's bottom edge"
    warnings = [w for w in det.warnings if "it is used because it lies just below the lowest body" not in w]
    warnings.append(f"the S1 endplate was seen only faintly, {where}, where a cut L5 can look like the sacrum: "
                    "it is no anchor, so the S1 endplate and every level are withheld")
    return Detections([replace(b, level=None) for b in det.bodies], None, 0.0, det.heads, warnings,
                      withheld=det.withheld)


def withhold_c7_count_without_ends(det: Detections) -> Detections:
    """A count from C7 (the sacrum out of view) names the 18 bodies C7–L5 and holds only if
    both ends are vertebrae: where the fine placement withheld the body counted C7 or the one
    counted L5 (not stable, strayed, cut, or beyond a broken step — the lowest may be the sacrum's
    first segment read as a body, the top one C6 or T1), the count is not verified and every
    level is withheld, with a warning."""
    named = {b.level for b in det.bodies if b.level}
    missing = [lv for lv in ("C7", "L5") if lv not in named]
    if FROM_C7 not in det.warnings or not named or not missing:
        return det
    were = "were" if len(missing) > 1 else "was"
    warnings = [*det.warnings, f"the count from C7 rests on both ends of the chain C7–L5 and {' and '.join(missing)} "
                               f"{were} withheld: every level is withheld (a missed or extra body would renumber the spine)"]
    return Detections([replace(b, level=None) for b in det.bodies], det.s1, det.s1_confidence, det.heads, warnings,
                      withheld=det.withheld)


def recheck_chain(det: Detections) -> Detections:
    """The chain checks again on the refined bodies, which sit on real bodies where the coarse
    ones may have smoothed two into one: walking from the anchor (S1, else C7 where the chain was
    counted from it), the
    first step between neighbouring labelled levels (per level between them) that is out of
    proportion with the steps around it (or two levels on one body) withholds every level beyond
    it, with a warning and a ``Withheld`` record (``STEP``: the levels either side, the step over its
    neighbours'). A step across withheld levels must fit the narrower ``SPAN_SHORT``–``SPAN_LONG``."""
    labelled = sorted((b for b in det.bodies if b.level), key=lambda b: -LEVELS.index(b.level))  # caudal first
    if len(labelled) < 3:
        return det
    # the anchor the levels were counted from: S1 unless the chain was counted from C7 (an S1 that
    # ``consistent`` withheld as unsteady after a firm count from it leaves its levels counted from S1)
    from_top = FROM_C7 in det.warnings
    order = list(reversed(labelled)) if from_top else labelled
    # a body withheld on its own (strayed, unstable, cut) leaves a gap of known levels: steps are
    # taken per level so that it does not break the chain of the others
    idx = [LEVELS.index(b.level) for b in order if b.level]
    rel = _relative_steps(order, [abs(idx[i + 1] - idx[i]) for i in range(len(idx) - 1)])
    warnings = list(det.warnings)
    for i in range(1, len(order)):
        short, long = (STEP_SHORT, STEP_LONG) if abs(idx[i] - idx[i - 1]) == 1 else (SPAN_SHORT, SPAN_LONG)
        if not (short < rel[i - 1] < long):
            across = "" if abs(idx[i] - idx[i - 1]) == 1 else ", per level across the withheld ones"
            record = Withheld(str(order[i].level), STEP, rel[i - 1], near=order[i - 1].level)
            warnings.append(f"after fine placement the step from {record.near} to {record.level} is "
                            f"{record.value:.2f}× its neighbours'{across} (a body missed or counted twice): levels "
                            f"beyond {record.near} are withheld")
            beyond = {id(b) for b in order[i:]}
            bodies = [replace(b, level=None) if id(b) in beyond else b for b in det.bodies]
            return Detections(bodies, det.s1, det.s1_confidence, det.heads, warnings, withheld=(*det.withheld, record))
    return det


def recheck_with_placed(det: Detections) -> Detections:
    """``recheck_chain`` once more with the bodies withheld for their points, not for their absence,
    back where they were placed (``spread`` over 0, both placements on a body, and at most
    ``REFINE_MAX_SHIFT``): between two labelled neighbours whose list (caudal first) holds exactly
    one body per level between them, each placed one stands for its level. Across two or more
    withheld levels the per-level span (``SPAN_SHORT``–``SPAN_LONG``) cannot show one body more or
    fewer (4/3 and 3/4 lie inside it); the placed bodies' own steps can (models/README.md,
    "Counting across withheld levels"). Walking from the anchor, the first step out of
    ``STEP_SHORT``–``STEP_LONG`` (per level, across a body with no place: the span's range)
    withholds every labelled level beyond it, with a warning and a ``STEP`` record."""
    at = [k for k, b in enumerate(det.bodies) if b.level]
    seq: list[tuple[int, int]] = []  # (index in det.bodies, level index)
    for a, c in zip(at, at[1:], strict=False):
        ia, ic = LEVELS.index(det.bodies[a].level or ""), LEVELS.index(det.bodies[c].level or "")
        seq.append((a, ia))
        if c - a == abs(ic - ia) and ic < ia:  # one body per level between them, caudal first
            seq += [(k, ia - (k - a)) for k in range(a + 1, c) if 0.0 < det.bodies[k].spread <= REFINE_MAX_SHIFT]
    if len(at) < 3 or len(seq) + 1 == len(at):
        return det  # nothing placed between labelled levels: recheck_chain has judged these steps
    seq.append((at[-1], LEVELS.index(det.bodies[at[-1]].level or "")))
    order = list(reversed(seq)) if FROM_C7 in det.warnings else seq
    apart = [abs(order[i + 1][1] - order[i][1]) for i in range(len(order) - 1)]
    rel = _relative_steps([det.bodies[k] for k, _ in order], apart)
    for i in range(1, len(order)):
        short, long = (STEP_SHORT, STEP_LONG) if apart[i - 1] == 1 else (SPAN_SHORT, SPAN_LONG)
        if short < rel[i - 1] < long:
            continue
        beyond = [det.bodies[k] for k, _ in order[i:] if det.bodies[k].level]
        near = [det.bodies[k].level for k, _ in order[:i] if det.bodies[k].level][-1]
        if not beyond:
            return det
        record = Withheld(str(beyond[0].level), STEP, rel[i - 1], near=near)
        warnings = [*det.warnings, f"with the bodies withheld for their points put back where they were placed, a step "
                    f"between {LEVELS[order[i - 1][1]]} and {LEVELS[order[i][1]]} is {record.value:.2f}× its neighbours' (a "
                    f"body missed or counted twice): levels beyond {near} are withheld"]
        ids = {id(b) for b in beyond}
        bodies = [replace(b, level=None) if id(b) in ids else b for b in det.bodies]
        return Detections(bodies, det.s1, det.s1_confidence, det.heads, warnings, withheld=(*det.withheld, record))
    return det


def to_contract(det: Detections, to_source=lambda xy: np.asarray(xy, float)) -> dict:
    """The contract's ``landmarks`` object in source-image pixels (``to_source`` maps the
    detections' frame there); unlabelled bodies dropped."""
    verts: dict[str, dict[str, list[float] | float]] = {}
    for b in det.bodies:
        if b.level is None:
            continue
        xy = to_source(b.points)
        verts[b.level] = {name: [round(float(xy[k, 0]), 3), round(float(xy[k, 1]), 3)] for k, name in enumerate(POINT_NAMES)}
        verts[b.level]["confidence"] = round(float(np.clip(b.confidence, 0, 1)), 3)
    verts = {lv: verts[lv] for lv in LEVELS if lv in verts}
    s1 = None
    if det.s1 is not None:
        xy = to_source(det.s1)
        s1 = {"anterior": [round(float(xy[0, 0]), 3), round(float(xy[0, 1]), 3)],
              "posterior": [round(float(xy[1, 0]), 3), round(float(xy[1, 1]), 3)],
              "confidence": round(float(det.s1_confidence), 3)}
    heads = []
    for c, r, conf in det.heads:
        xy = to_source(c[None])[0]
        scale = float(np.linalg.norm(to_source(np.array([[1.0, 0.0]])) - to_source(np.array([[0.0, 0.0]]))))
        heads.append({"center": [round(float(xy[0]), 3), round(float(xy[1]), 3)], "radius_px": round(r * scale, 3),
                      "confidence": round(float(conf), 3)})
    return {"vertebrae": verts, "s1_endplate": s1, "femoral_heads": heads}


#: the S1 endplate's midpoint from the centre of the lowest body reported, in steps between that
#: body and the next one reported (per level between them): about k - 0.3 for the k-th level
#: above S1 (phantom spines: L5 0.55–0.88, L4 1.53–1.87); further than this from it, the count
#: from S1 has passed through a body that is not there
S1_STEP_TOLERANCE = 0.5


def withhold_if_off_s1(landmarks: dict, warnings: list[str], lone: bool = True,
                       lowest: tuple[str, ...] | None = None) -> None:
    """Where the levels were counted from S1 and the lowest body reported is not as far from the
    S1 endplate as its level says (``S1_STEP_TOLERANCE``), or (with ``lone``) is the only body
    reported, every level is taken out of ``landmarks["vertebrae"]`` (contract landmarks) with a
    warning, in place: a false body between L5 and the sacrum (withheld itself, too weak to be
    checked) makes L5 read as L4 and every level one too high; a lone body cannot be measured so
    (the CT/MR plane detector withholds it; on radiographs it is kept). With ``lowest``, only where
    the lowest body reported is one of those levels: the distance is calibrated for L5 and L4 (the
    step is measured to the next body up, and from L1 up that step is a thoracolumbar one, shorter
    than the lumbar steps below it, so a right count reads too far); radiographs pass
    ``("L5", "L4")`` (models/README.md, "The lowest body against S1")."""
    s1, verts = landmarks.get("s1_endplate"), landmarks["vertebrae"]
    if not s1 or not verts:
        return
    if len(verts) == 1 and not lone:
        return
    if len(verts) == 1:  # no neighbour to measure the step by: a lone body's level is not checked
        (only,) = verts
        verts.clear()
        warnings.append(f"{only} is the only body reported: with no neighbour, its distance from the S1 endplate "
                        "cannot check its level (a sacral segment read as L5 looks the same), so it is withheld")
        return
    corners = POINT_NAMES[:4]
    centres = {lv: np.mean([verts[lv][n] for n in corners], axis=0) for lv in verts}
    by_level = sorted(centres, key=lambda lv: -LEVEL_INDEX[lv])  # caudal first
    low, nxt = by_level[0], by_level[1]
    if lowest is not None and low not in lowest:
        return
    step = float(np.linalg.norm(centres[low] - centres[nxt])) / max(1, LEVEL_INDEX[low] - LEVEL_INDEX[nxt])
    s1_mid = (np.asarray(s1["anterior"], float) + np.asarray(s1["posterior"], float)) / 2
    k = len(LEVELS) - LEVEL_INDEX[low]  # L5 is the first level above S1
    ratio = float(np.linalg.norm(centres[low] - s1_mid)) / max(step, 1e-6)
    if abs(ratio - (k - 0.3)) <= S1_STEP_TOLERANCE:
        return
    verts.clear()
    warnings.append(f"the lowest body reported ({low}) is {ratio:.1f} steps between bodies from the S1 endplate, where "
                    f"its level puts it about {k - 0.3:.1f}: a body missed or one too many next to the sacrum, so the "
                    "levels are withheld")


#: labelled levels a chain needs for ``postprocess.recheck_chain`` to have compared each of its
#: steps with others (``_relative_steps``: with three, every step's ratio is 1 by construction)
CHECKED_CHAIN_MIN = 4


def _one_body_gap(verts: dict[str, Any], level: str, centre: np.ndarray) -> bool:
    """Whether a body at ``centre`` named ``level`` fits the reported chain ``verts`` (the contract's
    vertebrae) as one level: the steps from its neighbouring levels to it, each over the median of
    the up to four steps around it in the chain (per level where levels between are missing), both
    ``STEP_SHORT``-``STEP_LONG`` — the chain re-check's measure (``postprocess.recheck_chain``) as
    if it were labelled — in a chain of at least ``CHECKED_CHAIN_MIN`` levels with it (fewer: every
    step's ratio is 1 by construction, nothing is tested). Its neighbours two bodies' worth apart
    (a level missing besides it) leave each step about 1.5."""
    chain = sorted([*(lv for lv in verts if lv != level and lv in LEVEL_INDEX), level], key=LEVEL_INDEX.__getitem__)
    if len(chain) < CHECKED_CHAIN_MIN:
        return False
    centres = [np.asarray(centre, float) if lv == level else np.mean([verts[lv][n] for n in POINT_NAMES[:4]], axis=0)
               for lv in chain]
    bodies = [Body(np.zeros((6, 2)), 1.0, c, lv) for c, lv in zip(centres, chain, strict=True)]
    rel = _relative_steps(bodies, [LEVEL_INDEX[chain[k + 1]] - LEVEL_INDEX[chain[k]] for k in range(len(chain) - 1)])
    k = chain.index(level)
    return all(STEP_SHORT < rel[j] < STEP_LONG for j in (k - 1, k) if 0 <= j < len(rel))


#: a body kept between its neighbours (``keep_crushed_between``) lies near the line between their
#: centres: off it by at most this × half their distance, and along it within ``BETWEEN_ALONG`` of the
#: way (phantom spines, 7,200 bodies of 400 projection-phantom spines with spondylolisthesis and
#: fractures, truth centres: off the line 0.04 median, 0.37 at most; along it 0.41-0.57)
BETWEEN_OFF_LINE_MAX, BETWEEN_ALONG = 0.5, (0.25, 0.75)


def between(centre: np.ndarray, a: np.ndarray, c: np.ndarray) -> bool:
    """Whether ``centre`` lies where a body between centres ``a`` and ``c`` (``(2,)`` each) lies:
    within ``BETWEEN_OFF_LINE_MAX`` of half their distance off the line through them, and within
    ``BETWEEN_ALONG`` of the way from one to the other."""
    d = np.asarray(c, float) - np.asarray(a, float)
    length = max(float(np.linalg.norm(d)), 1e-6)
    u = d / length
    rel = np.asarray(centre, float) - np.asarray(a, float)
    off = abs(float(rel[0] * u[1] - rel[1] * u[0])) / (length / 2)
    along = float(rel @ u) / length
    return off <= BETWEEN_OFF_LINE_MAX and BETWEEN_ALONG[0] <= along <= BETWEEN_ALONG[1]


def keep_crushed_between(landmarks: dict[str, Any], warnings: list[str], fine: Detections, *,
                         limit: float, min_confidence: float,
                         box: tuple[float, float, float, float] | None = None) -> list[str]:
    """Report, in place, the level and points of each body withheld only for looking collapsed with
    its two placements more than the level limit and at most ``limit`` apart (``COLLAPSED_UNSTEADY``:
    on MR a crushed body's disagree by 7-11 %; on radiographs, within the limit of any body's, by
    4-10 %) where its neighbours vouch for its place: both
    neighbouring levels reported (after every other rule) and steady enough to grade, and the body
    between them where a body should be (each step to a neighbour ``STEP_SHORT``-``STEP_LONG`` of
    half theirs, and near the line between them: ``between``) and one body's step from each of them
    against the chain's own steps (``_one_body_gap``: neighbours two bodies' worth apart would give it
    one level while a level is missing; the chain re-check measures the step across it only where the
    chain is long enough).
    The levels beyond it are then already reported, so its level changes no other count. It is
    reported ungraded (``UNGRADED``): its points are not steady enough for a height.
    ``postprocess.consistent`` withholds it before the point-confidence check runs, so that check is
    made here (``min_confidence``), and, given the field ``box`` (radiographs), the edge check of
    ``withhold_outside`` (``wholly_inside``), which saw it unlabelled. Returns the levels kept so."""
    ungraded = landmarks.setdefault(UNGRADED, {})
    verts = landmarks["vertebrae"]
    kept: list[str] = []
    for rec in (r for r in fine.withheld if r.reason == COLLAPSED_UNSTEADY):
        i = LEVEL_INDEX.get(rec.level, -1)
        if not 0 < i < len(LEVELS) - 1 or rec.level in verts or rec.value > limit:
            continue
        above, below = LEVELS[i - 1], LEVELS[i + 1]
        if above not in verts or below not in verts or above in ungraded or below in ungraded:
            continue
        body = [b for b in fine.bodies if not b.level and b.spread == rec.value]
        if len(body) != 1 or body[0].point_confidence < min_confidence:
            continue
        if box is not None and not wholly_inside(body[0].points, box):
            continue  # cut by or touching the field's edge (``withhold_outside`` looks at labelled bodies only)
        a, c = (np.mean([verts[lv][n] for n in POINT_NAMES[:4]], axis=0) for lv in (above, below))
        half = float(np.linalg.norm(a - c)) / 2
        steps = [float(np.linalg.norm(body[0].centre - x)) / max(half, 1e-6) for x in (a, c)]
        if (not all(STEP_SHORT < st < STEP_LONG for st in steps) or not between(body[0].centre, a, c)
                or not _one_body_gap(verts, rec.level, body[0].centre)):
            continue
        verts[rec.level] = to_contract(replace(fine, bodies=[replace(body[0], level=rec.level)]))["vertebrae"][rec.level]
        landmarks["vertebrae"] = verts = {lv: verts[lv] for lv in LEVELS if lv in verts}
        why = (f"it looks collapsed and two placements of its points disagree by {100 * rec.value:.0f} % of its size; "
               f"its level is the one between its reported neighbours {above} and {below}")
        ungraded[rec.level] = why
        warnings.append(f"{rec.level}: {why}: its level and points are reported, its heights and grade are not")
        kept.append(rec.level)
    return kept


#: on an upright lateral film the hip axis lies below the S1 endplate's midpoint by at least this many
#: S1 widths, and within ``HIPS_MAX_WIDTHS`` of it. Below: the pelvic radius (S1 midpoint to hip axis,
#: 2.1-3.4 S1 widths on 600 phantom spines of both renderers) times the cosine of PT (-30 to 60 deg in
#: adults: at least half of it); on 3,000 phantom spines each head lies 1.76-3.51 widths below.
#: Measured down the image, not along the spine's last step, which a forward slip of L5 or a high PI
#: turns backwards (a reviewer's probe: grade-II slips lost both true heads). A long film's "heads"
#: above the sacrum read PI -215 deg (``drr-a`` 8,400,011).
HIPS_MIN_BELOW_WIDTHS, HIPS_MAX_WIDTHS = 0.5, 6.0


def withhold_heads_off_pelvis(landmarks: dict[str, Any], warnings: list[str]) -> list[int]:
    """Take out, in place, each femoral head of the contract's landmarks (an upright film's pixels) that
    is not where a hip can be against the S1 endplate: less than ``HIPS_MIN_BELOW_WIDTHS`` S1 widths
    below its midpoint, more than ``HIPS_MAX_WIDTHS`` widths from it, or not a finite point - a round
    structure found above the sacrum or far below it is not a femoral head, and PI and PT from it would
    be wrong by any amount. Returns the indices taken out. Without an S1 endplate nothing is checked (PI
    and PT need it anyway)."""
    s1, heads = landmarks.get("s1_endplate"), landmarks.get("femoral_heads") or []
    if not s1 or not heads:
        return []
    ant, post = np.asarray(s1["anterior"], float), np.asarray(s1["posterior"], float)
    mid, width = (ant + post) / 2, max(float(np.linalg.norm(ant - post)), 1e-6)
    out = []
    for k, h in enumerate(heads):
        v = np.asarray(h["center"], float) - mid
        below, away = float(v[1]) / width, float(np.linalg.norm(v)) / width
        if not (below >= HIPS_MIN_BELOW_WIDTHS and away <= HIPS_MAX_WIDTHS):  # NaN fails too
            where = (f"{away:.1f} S1 widths from the S1 endplate" if away > HIPS_MAX_WIDTHS
                     else f"{below:.1f} S1 widths below the S1 endplate")
            warnings.append(f"a femoral head was found {where}, where no hip lies: it is not used (PI and PT need "
                            "the femoral heads)")
            out.append(k)
    if out:
        landmarks["femoral_heads"] = [h for k, h in enumerate(heads) if k not in out]
    return out
