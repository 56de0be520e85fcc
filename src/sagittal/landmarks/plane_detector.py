"""The CT/MR plane model's detector: the radiograph detector (``infer.LandmarkDetector``) with
the consistency check split in two tiers, calibrated on phantom CT/MR planes of seeds the
evaluation does not use (``scripts/eval_planes.py --first-seed 100``; figures in
models/README.md, plane model section).

The check refines every body twice (``postprocess.alternate_frames``) and measures how far the
two placements of its points disagree (``spread``, over the body's size). On reformatted planes
the refinement is less steady than on radiographs, and at the radiograph's limits a third of the
bodies in view were withheld although their level was right (the level comes from the coarse
chain, checked again on the refined bodies). So:

- a **level** (and its points) is withheld only where the placements disagree grossly
  (``LEVEL_LIMITS``: the refinement has latched onto something else);
- a body is **graded** (heights, height loss, Genant grade, morphology) only where they agree
  as well as the radiograph model requires (``GRADE_SPREAD_MAX``, ``GRADE_COLLAPSED_MAX`` for a
  body that looks collapsed, ``GRADE_MIN_POINT_CONFIDENCE``): a height loss from unsteady points
  is not reported. Such levels are listed under ``landmarks["ungraded"]`` (level → reason),
  which ``batch.volume.finish`` takes out of the landmarks and applies to the document.

The weights file may hold a third stage, ``refine_ct`` (``REFINE_CT``): the refinement that CT
planes use (round 3's, trained on axial CT sampled at its slices as a reformat is), while MR
planes, and any image whose modality is not known, use ``refine``. Which one an image gets comes
from ``modalities`` given to ``detect``, else from the image itself (``batch.volume.prepare``
hands the model a ``landmarks.volume.PlaneImage``, tagged with its modality); a file without
``refine_ct`` refines every plane with ``refine``, as before. ``model.load_models`` loads every
stage the file holds, once, from the one checksum-checked file.

Where the chain re-check after fine placement withholds the levels beyond a step with room for
one more body (on MR mostly a crushed body the coarse stage missed), the image is looked at once
more with a body placed in that gap (``bridge_retry``), and the second look is kept only where the
fine placement finds the body there and the chain then holds (``PlaneDetector.bridge_retry``; MR
right level 88.3 -> 90.3 % over twelve phantom sets, no more wrong levels: models/README.md).
Where a body bridged that way was found but withheld only for looking collapsed with its two
placements 6-15 % apart (a crushed body's on MR), the image is looked at once more with the
collapsed-look limit at ``BRIDGED_COLLAPSED_MAX`` for it alone (``crushed_bridge``).
Where the coarse chain itself broke at a step (``postprocess.label_levels``: on MR mostly beside a
crushed body, missed or found off its centre, the step 1.42-1.5x its neighbours', under the 1.5
that bridges a gap), the image is looked at once more per reading of the break, counted through
it as is and, for a long step, with a body bridged in it (``break_plans``); a reading stands only
where the chain then holds after fine placement and the other reading does not (both holding, the
count is unknown). Where the fine placement did not confirm a body the coarse chain had bridged
across a gap (``postprocess.confirm_bridges``; MR 1205, 1904: the gap held no body), the image is
looked at once more counting without that bridge (``unbridge_plan``), kept only where the chain then
holds after fine placement with more levels (``PlaneDetector.unbridge``). The second looks read
what ``postprocess`` withheld from its ``Withheld`` records, not from the warnings' text. After
them, a crushed body withheld alone for looking collapsed with its placements 6-15 % apart is
reported, ungraded, where both its neighbours are reported and steady and it lies between them
(``keep_crushed_between``): its level changes no other.

Importing this module imports torch (through ``infer``); ``import sagittal`` does not.
"""

from __future__ import annotations

import time
from dataclasses import replace
from functools import partial
from typing import Any

import numpy as np

from ..levels import LEVEL_INDEX, LEVELS, UNGRADED
from .infer import OFF_S1_LOWEST, LandmarkDetector
from .postprocess import (
    BRIDGE_NO_BODY,
    CHECKED_CHAIN_MIN,
    COLLAPSED_RATIO,
    COLLAPSED_UNSTEADY,
    STEP,
    STEP_LONG,
    STEP_SHORT,
    UNCONFIRMED_BRIDGE,
    Body,
    Detections,
    Withheld,
    _height_ratio,
    _name_chain,
    _relative_steps,
    _step_ratio,
    withhold_if_off_s1,
)
from .postprocess import keep_crushed_between as _keep_crushed_between

#: ``postprocess.consistent``'s limits for the plane model: what withholds a level. A body that
#: looks collapsed must be steadier (the collapsed-look limit, the same as for grading): a chain
#: miscounted by one level puts a body's points across a disc, where it looks collapsed. (15 %
#: kept real crushed bodies on MR, 7–11 % unsteady, but gave 8 wrong levels on the blind MR
#: 1506: models/README.md)
LEVEL_LIMITS = {"max_spread": 0.35, "collapsed_max": 0.06, "min_point_confidence": 0.15}
#: what a body's points must meet to be graded: the radiograph model's limits (a false fracture
#: is worse than a missed one)
GRADE_SPREAD_MAX = 0.10
GRADE_COLLAPSED_MAX = 0.04
GRADE_MIN_POINT_CONFIDENCE = 0.4
#: the weights file's optional stage that refines CT planes (module docstring)
REFINE_CT = "refine_ct"
#: how ``postprocess.label_levels`` says the levels were counted from C7 (the sacrum out of view)
C7_NOTE = "the sacrum is out of view: levels are counted from C7"


def why_ungraded(body: Body) -> str | None:
    """Why a labelled body's points are too unsteady to grade it, or ``None`` when they are not."""
    if body.spread > GRADE_SPREAD_MAX:
        return f"two placements of its points disagree by {100 * body.spread:.0f} % of its size"
    if body.spread > GRADE_COLLAPSED_MAX and _height_ratio(body.points) < COLLAPSED_RATIO:
        return f"it looks collapsed but two placements of its points disagree by {100 * body.spread:.0f} % of its size"
    if body.point_confidence < GRADE_MIN_POINT_CONFIDENCE:
        return f"its points are not confident ({body.point_confidence:.2f})"
    return None


def mark_ungraded(landmarks: dict[str, Any], warnings: list[str], fine: Detections) -> None:
    """Add ``landmarks["ungraded"]`` (level → reason) and a warning per such level, in place."""
    ungraded: dict[str, str] = {}
    for b in fine.bodies:
        if b.level and b.level in landmarks["vertebrae"]:
            why = why_ungraded(b)
            if why is not None:
                ungraded[b.level] = why
                warnings.append(f"{b.level}: {why}: its level and points are reported, its heights and grade are not")
    landmarks.setdefault(UNGRADED, {}).update(ungraded)


#: a body withheld with its two placements this far apart (of its size) counts as two bodies in
#: ``withhold_beyond_gross``'s gap: placements that far apart fall on two bodies, and a crushed body the
#: coarse stage missed can hide beside it (blind MR 6072: a grade-3 T12 missed under a grade-2 T11 placed
#: 91 % apart; the levels above were counted one off, the step across the two crushed bodies as long as
#: two lumbar steps, so ``postprocess.recheck_chain`` passed it; blind MR 6153, a grade-3 L2 missed beside an
#: L1 placed 140 % apart: 15 levels one off). Judged on blind MR 6100-6129 (all fractured) and 6140-6169:
#: wrong levels 16 -> 1, right levels 633 -> 633 (fourteenth session)
GAP_GROSS_SPREAD = 0.6


def withhold_beyond_gross(landmarks: dict[str, Any], warnings: list[str], fine: Detections, max_spread: float,
                          gross_spread: float | None = None) -> None:
    """Walking the chain from the anchor (S1, else C7): where two or more neighbouring bodies of
    the chain were withheld (unsteady, strayed, or placed across a gap and not confirmed: the
    coarse body there may be two bodies or a disc), every level beyond that gap is taken out of
    ``landmarks["vertebrae"]`` with a warning, in place. ``max_spread`` names the level limit in
    the warning.

    Why two: ``postprocess.recheck_chain`` checks the step between the reported levels on either
    side of a gap per level spanned; across one missing level a body missed or counted twice makes
    that step 1.5 or 0.5 × its neighbours' (outside ``STEP_SHORT``–``STEP_LONG``), across two or
    more it does not (4/3, 3/4…), so the count through such a gap cannot be checked.
    ``gross_spread``: a body withheld with a spread over it counts as two (``GAP_GROSS_SPREAD``)."""
    from_s1 = not any(w.startswith(C7_NOTE) for w in fine.warnings)
    # image rows grow caudally: from S1 the walk goes up the image, from C7 down
    order = sorted(fine.bodies, key=lambda b: -float(b.centre[1]) if from_s1 else float(b.centre[1]))
    gap: list[Body] = []
    cut: list[str] = []
    for b in order:
        named = bool(b.level) and b.level in landmarks["vertebrae"]
        if cut and named:
            cut.append(str(b.level))
        elif named:
            if len(gap) + sum(gross_spread is not None and g.spread > gross_spread for g in gap) >= 2:
                cut.append(str(b.level))
            gap = []
        else:
            gap.append(b)
    if not cut:
        return
    cut.sort(key=lambda lv: LEVEL_INDEX[lv])
    for lv in cut:
        del landmarks["vertebrae"][lv]
    anchor = "S1" if from_s1 else "C7"
    what = "two or more neighbouring bodies were withheld"
    if gross_spread is not None:
        what += f", or one whose two placements fell over {100 * gross_spread:.0f} % of its size apart"
    warnings.append(f"between {anchor} and {', '.join(cut)} {what} (points "
                    f"unsteady by up to {100 * max_spread:.0f} % of a body's size or worse, or not confirmed): the count "
                    "across that gap cannot be checked, so the levels beyond it are withheld")


#: a body's shorter endplate against its longer (depths, pixels): a vertebral body keeps its
#: endplates' depth even when crushed (a wedge loses height, not depth); four points whose one
#: endplate is under half the other are not a body (a sacral segment read as one)
MIN_ENDPLATE_RATIO = 0.5


def withhold_if_anchor_body_malformed(landmarks: dict[str, Any], warnings: list[str], fine: Detections) -> None:
    """Where the reported body nearest the anchor (the lowest from S1, the top from C7) is not
    shaped like a vertebral body (``MIN_ENDPLATE_RATIO``), every level is taken out of
    ``landmarks["vertebrae"]`` with a warning, in place: the count starts from that body, and if it
    is not a vertebra (a whole-spine MR's S1 segment read as L5, its endplate placed inside the
    sacrum) every level is one off."""
    if not landmarks["vertebrae"]:
        return
    from_s1 = not any(w.startswith(C7_NOTE) for w in fine.warnings)
    named = [b for b in fine.bodies if b.level and b.level in landmarks["vertebrae"]]
    if not named:
        return
    first = max(named, key=lambda b: float(b.centre[1])) if from_s1 else min(named, key=lambda b: float(b.centre[1]))
    p = np.asarray(first.points, float)
    superior, inferior = float(np.linalg.norm(p[0] - p[1])), float(np.linalg.norm(p[3] - p[2]))
    if min(superior, inferior) >= MIN_ENDPLATE_RATIO * max(superior, inferior, 1e-6):
        return
    landmarks["vertebrae"].clear()
    warnings.append(f"the body counted first from {'S1' if from_s1 else 'C7'} ({first.level}) is not shaped like a "
                    f"vertebral body (one endplate {100 * min(superior, inferior) / max(superior, inferior):.0f} % of "
                    "the other): the count starts from it, so the levels are withheld")


def _withheld(fine: Detections, reason: str) -> list[Withheld]:
    """``fine``'s records (``postprocess.Withheld``) of what was withheld for ``reason``: the second
    looks read these fields, never the warnings' text (which is written from them)."""
    return [r for r in fine.withheld if r.reason == reason]


#: a step between neighbouring levels this many times the steps around it leaves room for one body
#: (``postprocess``: one missing 1.48–2.6; a crushed body missed by the coarse stage 1.6–1.8 on MR)
RETRY_STEP = (1.48, 2.6)
#: ... and, for a crushed body (half its neighbours' height or less), from ``postprocess.STEP_LONG``:
#: the steps across MR 1600's crushed L1 and MR 1900's crushed L2 were 1.47 and 1.48
RETRY_STEP_CRUSHED = (STEP_LONG, RETRY_STEP[1])


def bridge_retry(coarse: Detections | None, fine: Detections | None,
                 step: tuple[float, float] = RETRY_STEP) -> tuple[Detections, str] | None:
    """Where the chain re-check after fine placement withheld the levels beyond a step between two
    neighbouring levels long enough for one more body (``RETRY_STEP``: on MR planes mostly a crushed
    body the coarse stage missed), the coarse detections with a body placed halfway across that
    gap, marked bridged (``postprocess.confirm_bridges`` then requires the fine placement to find a
    body there as large as its neighbours) and every level beyond it one further from the anchor,
    and the level of the body placed; ``None`` when there is no such step (``step``: the range)."""
    if coarse is None or fine is None:
        return None
    hits = _withheld(fine, STEP)  # ``postprocess.recheck_chain``'s record of the step
    if len(hits) != 1:
        return None
    a, b, ratio = hits[0].near, hits[0].level, hits[0].value
    if a is None or a not in LEVEL_INDEX or b not in LEVEL_INDEX or abs(LEVEL_INDEX[a] - LEVEL_INDEX[b]) != 1 \
            or not step[0] <= ratio <= step[1]:
        return None
    by_level = {x.level: x for x in coarse.bodies if x.level}
    near, far = by_level.get(a), by_level.get(b)
    if near is None or far is None or far.bridged or near.bridged:
        return None
    shift = LEVEL_INDEX[b] - LEVEL_INDEX[a]  # away from the anchor

    def moved(level: str | None) -> str | None:
        if not level or level == "?" or (LEVEL_INDEX[level] - LEVEL_INDEX[a]) * shift <= 0:
            return level
        j = LEVEL_INDEX[level] + shift
        return LEVELS[j] if 0 <= j < len(LEVELS) else None

    bodies = []
    pts = (near.points + far.points) / 2
    for x in coarse.bodies:
        if x is far:
            bodies.append(Body(pts, 0.0, pts[:4].mean(axis=0), b, bridged=b))
        bodies.append(replace(x, level=moved(x.level), bridged=moved(x.bridged)))
    return replace(coarse, bodies=bodies, warnings=list(coarse.warnings)), b


def unbridge_plan(coarse: Detections | None, fine: Detections | None) -> tuple[Detections, str] | None:
    """Where ``postprocess.confirm_bridges`` withheld a body the COARSE chain bridged across a gap
    (``postprocess._bridge_gaps``: a step long enough for a missed body) because the fine placement
    found no body there, both its neighbours standing (the record's cause ``BRIDGE_NO_BODY``; MR 1205
    and 1904: the gap held no body, the step was the bodies' own), the coarse detections without
    that body, every level beyond it one nearer S1, and the level it had; ``None`` where no such
    bridge was lost; where the bridge was lost otherwise — a body found there but withheld (unsteady,
    not confident; a crushed body's is ``crushed_bridge``'s case) or out of size, or a neighbour
    withheld (a real, often crushed, body may be there, and counting the gap as none would renumber
    every level beyond it with only the step checks to guard it); or where the levels were counted
    from C7 (a body fewer would renumber the whole chain unchecked). The chain re-check after fine
    placement (``postprocess.recheck_chain``) then sees the step across the gap unbridged: a body
    really missed there leaves it long, and the look does not stand (``_retry_went_well``) —
    provided that step was tested at all (``_gap_tested``: both bodies at it stand, in a chain long
    enough)."""
    if coarse is None or fine is None or coarse.s1 is None:
        return None
    lost = _withheld(fine, UNCONFIRMED_BRIDGE)
    if len(lost) != 1 or lost[0].level not in LEVEL_INDEX or lost[0].cause != BRIDGE_NO_BODY:
        return None
    level = lost[0].level
    if any(r.level == level for r in _withheld(fine, COLLAPSED_UNSTEADY)):
        return None
    bridged = [b for b in coarse.bodies if b.bridged == level and b.level == level]
    if len(bridged) != 1:
        return None
    at = LEVEL_INDEX[level]

    def moved(lv: str | None) -> str | None:  # from S1 the levels beyond the bridge are the cranial ones
        if not lv or lv == "?" or LEVEL_INDEX[lv] >= at:
            return lv
        return LEVELS[LEVEL_INDEX[lv] + 1]

    bodies = [replace(x, level=moved(x.level), bridged=moved(x.bridged)) for x in coarse.bodies if x is not bridged[0]]
    return replace(coarse, bodies=bodies, warnings=list(coarse.warnings)), level


#: a body the coarse chain named whose two fine placements disagree by more than this share of its
#: size was found on no body a refinement can hold (dev MR 5009: a sacral segment named L5, 72 %;
#: MR 5026: a disc between L4 and L5 named L4, 59 %; real bodies there 1-6 %)
STRAY_SPREAD = 0.4


def _off_s1(landmarks: dict[str, Any]) -> int:
    """How many levels ``withhold_if_off_s1`` would leave of ``landmarks`` (not changed)."""
    trial = {**landmarks, "vertebrae": dict(landmarks["vertebrae"])}
    withhold_if_off_s1(trial, [], lowest=OFF_S1_LOWEST)
    return len(trial["vertebrae"])


def volume_field_box(image: Any) -> tuple[float, float, float, float]:
    """``(x0, y0, x1, y1)`` pixels: the bounding box of the plane's pixels above its minimum. A
    plane is filled with the minimum outside the volume's own field (and a CT's air is clipped to
    it, ``volume.plane_input``), so a body touching that box's edge is cut by the field; the
    plane's soft tissue, however flat, is inside it. The whole plane where nothing is above."""
    img = np.asarray(image, np.float32)
    rows, cols = img.shape
    above = img > float(img.min())
    r, c = np.flatnonzero(above.any(axis=1)), np.flatnonzero(above.any(axis=0))
    if not r.size:
        return 0.0, 0.0, float(cols - 1), float(rows - 1)
    return float(c[0]), float(r[0]), float(c[-1]), float(r[-1])


def stray_plan(coarse: Detections | None, fine: Detections | None, landmarks: dict[str, Any]
               ) -> tuple[Detections, str, float] | None:
    """Where the count from S1 is in doubt after the first look — the chain re-check withheld levels
    (``STEP``) or the lowest body reported stands off the S1 endplate (``withhold_if_off_s1`` would
    withhold every level) — and exactly one body lost its level with its two fine placements more
    than ``STRAY_SPREAD`` of its size apart: the coarse detections without the named body it was
    placed from (the nearest), every level beyond it (cranial) one nearer S1; with that level and
    the spread. A body too many in the chain (a disc or a sacral segment read as a body) numbers
    every level above it one too high; were the body real, the step across its place is about two
    bodies' and the chain re-check withholds the look (``_retry_went_well``, where it tested that
    step: ``_gap_tested``), or, at the bottom (L5), the lowest body stands a body too far from S1.
    ``None`` otherwise, where that body lies over half the chain's median step from every named
    one, or counted from C7."""
    if coarse is None or fine is None or coarse.s1 is None:
        return None
    if not _withheld(fine, STEP) and _off_s1(landmarks) == len(landmarks["vertebrae"]):
        return None
    strays = [b for b in fine.bodies if not b.level and b.spread > STRAY_SPREAD]
    named = sorted((b for b in coarse.bodies if b.level in LEVEL_INDEX), key=lambda b: LEVEL_INDEX[str(b.level)])
    if len(strays) != 1 or len(named) < 2:
        return None
    stray = min(named, key=lambda b: float(np.linalg.norm(b.centre - strays[0].centre)))
    step = float(np.median([np.linalg.norm(a.centre - b.centre) for a, b in zip(named, named[1:], strict=False)]))
    if np.linalg.norm(stray.centre - strays[0].centre) > 0.5 * step:
        return None  # the body no placement held is not where a named body was found
    level = str(stray.level)
    at = LEVEL_INDEX[level]

    def moved(lv: str | None) -> str | None:  # from S1 the levels beyond the stray are the cranial ones
        if not lv or lv == "?" or LEVEL_INDEX[lv] >= at:
            return lv
        return LEVELS[LEVEL_INDEX[lv] + 1]

    bodies = [replace(x, level=moved(x.level), bridged=moved(x.bridged)) for x in coarse.bodies if x is not stray]
    return replace(coarse, bodies=bodies, warnings=list(coarse.warnings)), level, float(strays[0].spread)


#: the collapsed-look level limit for a body bridged across a one-body gap (``crushed_bridge``): a
#: crushed body's two placements on MR planes disagree by 7–11 %; the gap vouches for a body there
BRIDGED_COLLAPSED_MAX = 0.15
#: ``postprocess.keep_crushed_between`` with the plane model's limits: a crushed body kept up to
#: ``BRIDGED_COLLAPSED_MAX`` apart, its points as confident as the level limit asks
keep_crushed_between = partial(_keep_crushed_between, limit=BRIDGED_COLLAPSED_MAX,
                               min_confidence=LEVEL_LIMITS["min_point_confidence"])


def crushed_bridge(fine: Detections | None, collapsed_max: float) -> str | None:
    """The level of a bridged body that the fine placement found but withheld only because it looks
    collapsed and its two placements disagree by more than ``collapsed_max`` and at most
    ``BRIDGED_COLLAPSED_MAX`` (so the bridge was not confirmed and the levels beyond it went);
    ``None`` otherwise."""
    if fine is None:
        return None
    unconfirmed = [r.level for r in _withheld(fine, UNCONFIRMED_BRIDGE)]  # ``postprocess.confirm_bridges``'
    if len(unconfirmed) != 1:
        return None
    level = unconfirmed[0]
    spreads = [r.value for r in _withheld(fine, COLLAPSED_UNSTEADY) if r.level == level]  # ``postprocess.consistent``'s
    return level if spreads and collapsed_max < spreads[0] <= BRIDGED_COLLAPSED_MAX else None


def break_plans(coarse: Detections | None, drop: bool = True) -> list[tuple[Detections, str | None, str]]:
    """Where ``postprocess.label_levels`` broke the coarse chain (named from the anchor, S1 else
    C7, up to a step out of proportion, the bodies beyond it unnamed; on MR mostly at a crushed
    body, missed, or found with its centre off), the coarse detections named again through that
    step: as they are (the step is the bodies' own: no body missed), and, where the step is long
    (``postprocess.STEP_LONG`` up to ``RETRY_STEP``'s top over the steps around it), with a body
    placed halfway across it and marked bridged (one body missed: ``postprocess.confirm_bridges``
    then requires the fine placement to find it), and, where the step is short (under
    ``postprocess.STEP_SHORT``: one body too many, MR 905's three peaks in 26 px at a crushed L1-L2),
    without the less confident of the two bodies at it (``drop``). Each with the bridged level (or ``None``)
    and the reading ("through", "bridge", "drop"); the chain beyond is named as ``label_levels``
    names it, up to its next break. ``[]`` when the chain did not break so."""
    if coarse is None or coarse.s1 is None and not any(b.level == "C7" for b in coarse.bodies):
        return []  # levels from S1, or from C7 at the top: otherwise nothing was named
    from_s1 = coarse.s1 is not None
    order = sorted(coarse.bodies, key=lambda b: -float(b.centre[1]) if from_s1 else float(b.centre[1]))
    names = list(reversed(LEVELS)) if from_s1 else list(LEVELS)
    k = next((i for i, b in enumerate(order) if not b.level), len(order))
    if not 0 < k < min(len(order), len(names)) or [b.level for b in order[:k]] != names[:k] \
            or any(b.level for b in order[k:]):
        return []
    rel = _relative_steps(order)[k - 1]
    if rel > RETRY_STEP[1]:
        return []
    plans: list[tuple[Detections, str | None, str]] = []
    # counted from C7 the chain must be the whole C7-L5: a body more or less would renumber it unchecked
    readings = ["through"] + (["bridge"] if from_s1 and rel >= STEP_LONG else []) \
        + (["drop"] if from_s1 and drop and rel <= STEP_SHORT else [])
    for reading in readings:
        chain = [replace(b, level=None) for b in order]
        if reading == "bridge":
            pts = (chain[k - 1].points + chain[k].points) / 2
            chain.insert(k, Body(pts, 0.0, pts[:4].mean(axis=0), None, bridged="?"))
        elif reading == "drop":  # one body too many: the less confident of the two at the break goes
            chain.pop(k if k == 1 or chain[k].confidence <= chain[k - 1].confidence else k - 1)
        ratios = [_step_ratio(chain[i], chain[i + 1]) for i in range(len(chain) - 1)]
        rels = _relative_steps(chain)
        if reading == "through":  # the step at the break is taken as the bodies' own
            ratios[k - 1] = rels[k - 1] = 1.0
        warnings: list[str] = []
        _name_chain(chain, names, ratios, rels, warnings)
        bridge = reading == "bridge"
        if sum(bool(b.level) for b in chain) <= k + bridge:
            continue
        placed = chain[k].level if bridge else None
        for b in chain:
            if b.bridged:
                b.bridged = b.level
        # the first look's note of the break no longer holds (a note only: nothing reads it)
        kept = [w for w in coarse.warnings if not w.startswith("the chain of bodies breaks")]
        bodies = chain if from_s1 else list(reversed(chain))
        plans.append((replace(coarse, bodies=bodies, warnings=kept + warnings), placed, reading))
    return plans


def _crushed_went_well(level: str, fine: Detections | None, collapsed_max: float, before: int, after: int) -> bool:
    """The look at the looser limit stands where the bridged body is confirmed, no other body that
    looks collapsed kept its level above ``collapsed_max``, the chain held, and more levels are reported."""
    if fine is None or after <= before or not any(x.level == level for x in fine.bodies):
        return False
    others = [x for x in fine.bodies if x.level and x.level != level and x.spread > collapsed_max
              and _height_ratio(x.points) < COLLAPSED_RATIO]
    return not others and not _withheld(fine, STEP) and not _withheld(fine, UNCONFIRMED_BRIDGE)


def _retry_went_well(level: str | None, fine: Detections | None, before: int, after: int) -> bool:
    """The second look stands where the body placed in the gap (``level``, if any) was found (its
    level kept), the chain held after fine placement, and more levels are reported than the first time."""
    return (fine is not None and after > before and (level is None or any(x.level == level for x in fine.bodies))
            and not _withheld(fine, STEP) and not _withheld(fine, UNCONFIRMED_BRIDGE))




def _gap_tested(fine: Detections | None, level: str) -> bool:
    """Whether, counted without the bridge once at ``level``, the step across the old gap was
    tested after fine placement: the bodies on both sides of it (now ``level`` and the level below)
    stand, in a chain of at least ``CHECKED_CHAIN_MIN`` labelled levels, so that the chain re-check
    compared that step with its neighbours' (a body really missed there leaves it long)."""
    i = LEVEL_INDEX[level]
    held = {b.level for b in (fine.bodies if fine is not None else []) if b.level}
    return i + 1 < len(LEVELS) and level in held and LEVELS[i + 1] in held and len(held) >= CHECKED_CHAIN_MIN


def _mark(looks: list[dict[str, str]], idx: Any, name: str) -> None:
    """Record that the second look ``name`` ran on the images ``idx`` (``PlaneDetector.last_looks``)."""
    for i in idx:
        looks[i][name] = "run"


def fold_batch_norms(net: Any) -> Any:
    """``net`` (an eval-mode ``model.UNet``) with every convolution followed by a batch norm
    folded into one convolution (the norm replaced by an identity), in place: the same function up
    to float rounding (logits within about 1e-4), one pass over the activations fewer."""
    from torch import nn
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    for seq in [m for m in net.modules() if isinstance(m, nn.Sequential)]:
        for i in range(len(seq) - 1):
            conv, norm = seq[i], seq[i + 1]
            if isinstance(conv, nn.Conv2d) and isinstance(norm, nn.BatchNorm2d):
                seq[i] = fuse_conv_bn_eval(conv, norm)
                seq[i + 1] = nn.Identity()
    return net


class PlaneDetector(LandmarkDetector):
    """``LandmarkDetector`` with the plane model's two-tier consistency check (module docstring).

    On the CPU both networks run with their batch norms folded into the convolutions and in
    channels-last memory order (``fold_batch_norms``): the refinement of a CT's ~40 crops
    takes half the time (0.21 -> 0.11 s on one thread), the logits differ from the plain
    networks' by ~2e-5 (scored the same on ``scripts/eval_planes.py``: models/README.md).

    CT planes are refined by the file's ``refine_ct`` stage when it has one (module docstring)."""

    def __init__(self, weights: Any = None, device: str = "auto", threads: int | None = None, consistency: bool = True):
        super().__init__(weights, device=device, threads=threads, consistency=consistency)
        self.consistency_limits = dict(LEVEL_LIMITS)
        self.second_look_on_faint_s1 = False  # the radiographs' rule (infer.coarse); not measured on CT/MR
        self.zoom_out_look = False  # the radiographs' look (infer._coarse_looks); not measured on CT/MR
        self.zoom_in_look = False  # the radiographs' look (infer._coarse_looks); not measured on CT/MR
        self.off_s1_rule = False  # detect() below runs withhold_if_off_s1 itself, a lone body withheld too
        self.faint_s1_at_edge_rule = False  # the radiographs' rule (infer.detect); not measured on CT/MR
        self.c7_ends_rule = False  # the radiographs' rule (infer.detect); not measured on CT/MR
        self.placed_step_rule = False  # the radiographs' rule (infer.detect); not measured on CT/MR
        self.recentre_unsteady = False  # the radiographs' rule (infer.detect); not measured on CT/MR
        self.crushed_between_rule = False  # detect() below runs keep_crushed_between itself, with its limits
        self.smoothed_look = False  # radiographs' grain; a plane is sampled from a volume
        self.hips_place_rule = False  # the radiographs' rule (infer._rules); the 3-D head search checks its own
        self.facing_check = False  # the radiographs' rule (infer.detect); a plane's facing comes from the volume
        #: a body withheld with its placements over GAP_GROSS_SPREAD apart counts as two in withhold_beyond_gross
        self.gross_gap = True
        self._refine_stage = "refine"  # the network ``_run("refine")`` runs: set per group of images by ``detect``
        #: look again where the fine placement finds one body missing from the chain (``bridge_retry``)
        self.bridge_retry = True
        #: the step (over its neighbours') that asks ``bridge_retry`` for a body in the gap
        self.retry_step = RETRY_STEP_CRUSHED
        #: look again where the coarse chain broke, counting through the break (``break_plans``)
        self.break_retry = True
        #: ... and, at a step too short, without one of the two bodies there (``break_plans``' ``drop``)
        self.break_drop = True
        #: look again at a looser collapsed-look limit where a bridged crushed body lost its level (``crushed_bridge``)
        self.crushed_bridge_retry = True
        #: look again without a coarse body no fine placement could hold where the count is in doubt (``stray_plan``)
        self.stray_drop = True
        #: look again without a coarse bridge the fine placement found no body in (``unbridge_plan``)
        self.unbridge = True
        #: report a crushed body withheld as collapsed-unsteady where its neighbours vouch for it (``keep_crushed_between``)
        self.crushed_between = True
        #: the MR centre line's coarse pass takes each slice as given, without infer.coarse's other looks
        #: of a slice naming few levels (``landmarks.volume._coarse_slices``; ninth session: models/README.md)
        self.centreline_plain = True
        self._coarse_override: dict[int, Detections] = {}
        self._coarse_seen: list[Detections] | None = None
        if self.device == "cpu":
            import torch

            self.models = {k: fold_batch_norms(m.eval()).to(memory_format=torch.channels_last)
                           for k, m in self.models.items()}

    def refine_stage(self, modality: str | None) -> str:
        """The stage that refines a plane of ``modality``: ``refine_ct`` for CT when the file has it."""
        return REFINE_CT if modality == "CT" and REFINE_CT in self.models else "refine"

    def _run(self, stage: str, x: np.ndarray) -> np.ndarray:
        if stage == "refine":
            stage = self._refine_stage
        if self.device != "cpu":
            return super()._run(stage, x)
        import torch

        with torch.inference_mode():
            t = torch.from_numpy(x)[:, None].contiguous(memory_format=torch.channels_last)
            return np.ascontiguousarray(self.models[stage](t).float().numpy())

    def coarse(self, images: list[np.ndarray], looks: bool = True) -> tuple[list[Detections], list[Any], list[np.ndarray]]:
        """``LandmarkDetector.coarse``; inside ``detect`` it also records each image's coarse
        detections, and takes an image's from ``_coarse_override`` (by identity) when given there
        (``bridge_retry``)."""
        dets, boxes, normed = super().coarse(images, looks)
        if self._coarse_override:
            dets = [self._coarse_override.get(id(im), d) for im, d in zip(images, dets, strict=True)]
        if self._coarse_seen is not None:
            self._coarse_seen.extend(dets)
        return dets, boxes, normed

    def _detect_by_stage(self, images: list[Any], given: list[str | None], stages: list[str], batch_size: int
                         ) -> tuple[list[Any], list[Any], list[Any], dict[str, float]]:
        """``LandmarkDetector.detect`` over each refine stage's images together, in their order:
        per image its result, fine and coarse detections; the stage timings summed."""
        n = len(images)
        out: list[Any] = [({}, None, [])] * n
        fines: list[Any] = [None] * n
        coarse: list[Any] = [None] * n
        timings: dict[str, float] = {}
        for stage in dict.fromkeys(stages) or ["refine"]:
            idx = [i for i, s in enumerate(stages) if s == stage]
            self._refine_stage, self._coarse_seen = stage, []
            try:
                found = super().detect([images[i] for i in idx], facing=[given[i] for i in idx], batch_size=batch_size)
                seen: list[Detections | None] = list(self._coarse_seen)
            finally:
                self._refine_stage, self._coarse_seen = "refine", None
            if len(seen) != len(idx):  # a coarse pass not seen (a stand-in detect): no second look for these
                seen = [None] * len(idx)
            for i, r, fine, c in zip(idx, found, self.last_detections, seen, strict=True):
                out[i], fines[i], coarse[i] = r, fine, c
            for k, v in self.last_timings.items():
                timings[k] = timings.get(k, 0.0) + v
        return out, fines, coarse, timings

    def _rerun(self, images: list[Any], given: list[str | None], stages: list[str], batch_size: int,
               coarse: dict[int, Detections | None], timings: dict[str, float],
               limits: dict[str, float] | None = None) -> tuple[list[Any], list[Any]]:
        """``_detect_by_stage`` over the images ``coarse`` names (in its key order), each from the
        coarse detections given for it (its own coarse pass where ``None``), with the consistency
        ``limits`` given (else the detector's); results and fine detections, the stage times added
        to ``timings``."""
        idx = list(coarse)
        self._coarse_override = {id(images[i]): d for i, d in coarse.items() if d is not None}
        kept = self.consistency_limits
        self.consistency_limits = limits if limits is not None else kept
        try:
            out, fines, _, spent = self._detect_by_stage([images[i] for i in idx], [given[i] for i in idx],
                                                         [stages[i] for i in idx], batch_size)
        finally:
            self._coarse_override, self.consistency_limits = {}, kept
        for k, v in spent.items():
            timings[k] = timings.get(k, 0.0) + v
        return out, fines

    def _break_looks(self, images: list[Any], given: list[str | None], stages: list[str], batch_size: int,
                     out: list[Any], fines: list[Any], coarse: list[Any], timings: dict[str, float],
                     looks: list[dict[str, str]]) -> None:
        """Where the coarse chain broke, each image once more per ``break_plans``' reading of the
        break (counted through it, and with a body in it where the step is long); a reading is kept
        where it went well (``_retry_went_well``) and the other did not: where both hold, the count
        across the break is not known and the first look stands. In place."""
        plans = {i: p for i in range(len(images)) if (p := break_plans(coarse[i], self.break_drop))}
        _mark(looks, plans, "break")
        good: dict[int, list[tuple[Any, Any, Detections, str | None, str]]] = {}
        for h in (0, 1):
            idx = sorted(i for i, p in plans.items() if len(p) > h)
            if not idx:
                continue
            out2, fines2 = self._rerun(images, given, stages, batch_size, {i: plans[i][h][0] for i in idx}, timings)
            for i, r, fine in zip(idx, out2, fines2, strict=True):
                det, placed, reading = plans[i][h]
                if _retry_went_well(placed, fine, len(out[i][0]["vertebrae"]), len(r[0]["vertebrae"])):
                    good.setdefault(i, []).append((r, fine, det, placed, reading))
        for i, held in good.items():
            if len(held) != 1:
                continue
            r, fine, det, placed, reading = held[0]
            how = {"bridge": f", with a body placed in the gap ({placed}), found there",
                   "drop": ", without the less confident of the two bodies at a step too short for a disc"}
            r[2].append("the chain of bodies broke after the first stage; looked again counting through the break"
                        + how.get(reading, "") + ": the chain held after fine placement")
            out[i], fines[i], coarse[i] = r, fine, det
            looks[i]["break"] = "kept"

    def _stray_looks(self, images: list[Any], given: list[str | None], stages: list[str], batch_size: int,
                     out: list[Any], fines: list[Any], coarse: list[Any], timings: dict[str, float],
                     looks: list[dict[str, str]]) -> None:
        """Where the count from S1 is in doubt and one named body could not be placed (``stray_plan``),
        each image once more without it; kept where it went well (``_retry_went_well``, counting the
        levels ``withhold_if_off_s1`` leaves of each look: the first look's are those it would report)
        and the step across the dropped body's place was tested (``_gap_tested``; at L5 the S1 check).
        In place; only with the consistency check on (``stray_drop``), and not on an image another
        look was kept for (its coarse detections are not always the ones its result came from)."""
        if not (self.stray_drop and self.consistency):
            return
        plans = {i: p for i in range(len(images)) if "kept" not in looks[i].values()
                 and (p := stray_plan(coarse[i], fines[i], out[i][0])) is not None}
        if not plans:
            return
        idx = sorted(plans)
        _mark(looks, idx, "stray")
        out2, fines2 = self._rerun(images, given, stages, batch_size, {i: plans[i][0] for i in idx}, timings)
        for i, r, fine in zip(idx, out2, fines2, strict=True):
            det, level, spread = plans[i]
            if _retry_went_well(None, fine, _off_s1(out[i][0]), _off_s1(r[0])) \
                    and (level == LEVELS[-1] or _gap_tested(fine, level)):
                r[2].append(f"{level}: the first stage named a body {level} whose two fine placements disagreed by "
                            f"{100 * spread:.0f} % of its size (no body: a disc or a sacral segment); looked again "
                            "without it, every level above it one nearer S1: the chain held after fine placement")
                out[i], fines[i], coarse[i] = r, fine, det
                looks[i]["stray"] = "kept"

    def _unbridge_looks(self, images: list[Any], given: list[str | None], stages: list[str], batch_size: int,
                        out: list[Any], fines: list[Any], coarse: list[Any], timings: dict[str, float],
                        looks: list[dict[str, str]], skip: set[int]) -> set[int]:
        """Where the fine placement did not confirm a body the coarse chain bridged, each image (but
        ``skip``'s) once more without that bridge (``unbridge_plan``); kept where it went well
        (``_retry_went_well``: the first look, with the bridge, did not). In place; the images kept."""
        plans = {i: d for i in range(len(images)) if i not in skip and (d := unbridge_plan(coarse[i], fines[i])) is not None}
        kept: set[int] = set()
        if not plans:
            return kept
        idx = sorted(plans)
        _mark(looks, idx, "unbridge")
        out2, fines2 = self._rerun(images, given, stages, batch_size, {i: plans[i][0] for i in idx}, timings)
        for i, r, fine in zip(idx, out2, fines2, strict=True):
            if _retry_went_well(None, fine, len(out[i][0]["vertebrae"]), len(r[0]["vertebrae"])) \
                    and _gap_tested(fine, plans[i][1]):
                r[2].append(f"{plans[i][1]}: the first stage bridged a gap in the chain and the fine placement found no "
                            "body there; looked again counting the gap as no missing body: the chain held after fine "
                            "placement")
                out[i], fines[i], coarse[i] = r, fine, plans[i][0]
                kept.add(i)
                looks[i]["unbridge"] = "kept"
        return kept

    def field_box(self, image: Any) -> tuple[float, float, float, float]:
        """The volume's own field on the plane (``volume_field_box``), not a radiograph's exposed
        field: a plane's soft tissue can be flat enough (a phantom's, or a CT clipped to its window)
        that ``preprocess.exposed_box`` takes whole columns of it for padding and withholds bodies
        beside them as cut (eval CT 4506: L3 and L4, then T11-L2 across them)."""
        return volume_field_box(image)

    def detect(self, images: list[Any], facing: list[str | None] | None = None,
               batch_size: int = 8, modalities: list[str | None] | None = None) -> list[tuple[dict, str | None, list[str]]]:
        """``infer.LandmarkDetector.detect`` with each image refined by its modality's stage
        (``modalities``, else each image's own ``modality`` tag: ``landmarks.volume.PlaneImage``);
        where the fine placement found one body missing from the chain (``bridge_retry``), that
        image once more with a body placed in the gap; then the plane model's withholding rules."""
        mods = list(modalities) if modalities is not None else [getattr(im, "modality", None) for im in images]
        stages = [self.refine_stage(m) for m in mods]
        given: list[str | None] = list(facing) if facing is not None else [None] * len(images)
        out, fines, coarse, timings = self._detect_by_stage(images, given, stages, batch_size)
        started = time.perf_counter()
        #: per image of the last call, the second looks run ("run") or kept ("kept") (diagnostics)
        self.last_looks: list[dict[str, str]] = [{} for _ in images]
        looks = self.last_looks
        if self.break_retry:
            self._break_looks(images, given, stages, batch_size, out, fines, coarse, timings, looks)
        retry = {i: d for i in range(len(images))
                 if self.bridge_retry and (d := bridge_retry(coarse[i], fines[i], self.retry_step)) is not None}
        retried: set[int] = set()
        if retry:
            idx = sorted(retry)
            _mark(looks, idx, "bridge")
            out2, fines2 = self._rerun(images, given, stages, batch_size, {i: retry[i][0] for i in idx}, timings)
            for i, r, fine in zip(idx, out2, fines2, strict=True):
                if _retry_went_well(retry[i][1], fine, len(out[i][0]["vertebrae"]), len(r[0]["vertebrae"])):
                    r[2].append(f"{retry[i][1]}: a long step in the chain (one body missing) was found after "
                                "fine placement; looked again with a body placed in the gap, found there")
                    out[i], fines[i] = r, fine
                    retried.add(i)
                    looks[i]["bridge"] = "kept"
        if self.unbridge:
            retried |= self._unbridge_looks(images, given, stages, batch_size, out, fines, coarse, timings, looks, retried)
        base = float(self.consistency_limits.get("collapsed_max", np.inf))
        crushed = {i: lv for i in range(len(images)) if self.crushed_bridge_retry and self.consistency
                   and i not in retried and (lv := crushed_bridge(fines[i], base)) is not None}
        if crushed:
            idx = sorted(crushed)
            _mark(looks, idx, "crushed")
            # from the coarse detections that stood (a break reading kept above replaced them)
            out2, fines2 = self._rerun(images, given, stages, batch_size, {i: coarse[i] for i in idx}, timings,
                                       {**self.consistency_limits, "collapsed_max": BRIDGED_COLLAPSED_MAX})
            for i, r, fine in zip(idx, out2, fines2, strict=True):
                if _crushed_went_well(crushed[i], fine, base, len(out[i][0]["vertebrae"]), len(r[0]["vertebrae"])):
                    r[2].append(f"{crushed[i]}: bridged across a one-body gap and found, but looking collapsed with its "
                                f"placements over {100 * base:.0f} % apart; kept (limit {100 * BRIDGED_COLLAPSED_MAX:.0f} % "
                                "for a body the gap vouches for), ungraded")
                    out[i], fines[i] = r, fine
                    looks[i]["crushed"] = "kept"
        self._stray_looks(images, given, stages, batch_size, out, fines, coarse, timings, looks)
        #: wall seconds the last call spent in second looks (all images together; diagnostics)
        self.last_look_seconds = time.perf_counter() - started
        self.last_detections = list(fines)
        self.last_timings = timings
        for (lm, _, warnings), fine in zip(out, self.last_detections, strict=True):
            withhold_if_anchor_body_malformed(lm, warnings, fine)
            withhold_if_off_s1(lm, warnings, lowest=OFF_S1_LOWEST)
            if self.consistency:
                withhold_beyond_gross(lm, warnings, fine, float(self.consistency_limits.get("max_spread", np.inf)),
                                      GAP_GROSS_SPREAD if self.gross_gap else None)
                mark_ungraded(lm, warnings, fine)
                if self.crushed_between:
                    keep_crushed_between(lm, warnings, fine, min_confidence=float(
                        self.consistency_limits.get("min_point_confidence", LEVEL_LIMITS["min_point_confidence"])))
            else:
                lm[UNGRADED] = {}
        return out
