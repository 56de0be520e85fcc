"""From the network's maps to the contract's landmarks (pure numpy, no torch).

1. Vertebral bodies are the peaks of the centre heatmap; each body's six points start from the
   regressed offsets and snap to the peak of that point's own heatmap nearby (sub-pixel by a
   quadratic fit), so grouping comes from the offsets and precision from the heatmaps.
2. The S1 endplate corners and the femoral heads are the strongest peaks of their maps.
3. Levels are counted from S1 upwards (L5 first) or, with the sacrum out of view, from the top
   (C7). The chain is checked — count, spacing between neighbours — and a chain that breaks
   is cut at the break: what lies beyond it is withheld with a warning, never renumbered.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from ..levels import LEVELS, POINT_NAMES
from .targets import C_CENTRE, C_HEAD, C_OFFSETS, C_POINTS, C_RADIUS, C_S1, OFFSET_UNIT, RADIUS_UNIT

CENTRE_THRESHOLD = 0.3
POINT_THRESHOLD = 0.1
S1_THRESHOLD = 0.2
HEAD_THRESHOLD = 0.2
GAP_FACTOR = 1.6  # a neighbour farther than this × the median spacing breaks the chain
DUPLICATE_FACTOR = 0.45


@dataclass
class Body:
    points: np.ndarray  # (6, 2) model-input pixels
    confidence: float
    centre: np.ndarray  # (2,)
    level: str | None = None


@dataclass
class Detections:
    """Landmarks on the model's input grid; ``warnings`` explain anything withheld."""

    bodies: list[Body]
    s1: np.ndarray | None  # (2, 2) anterior, posterior
    s1_confidence: float
    heads: list[tuple[np.ndarray, float, float]]  # (centre, radius, confidence)
    warnings: list[str] = field(default_factory=list)


def _peaks(heat: np.ndarray, threshold: float, min_dist: int = 2) -> list[tuple[int, int, float]]:
    k = 2 * min_dist + 1
    dil = cv2.dilate(heat, np.ones((k, k), np.uint8))
    ys, xs = np.nonzero((heat >= dil) & (heat >= threshold))
    return sorted(((int(x), int(y), float(heat[y, x])) for x, y in zip(xs, ys)), key=lambda p: -p[2])


def _subpixel(heat: np.ndarray, x: int, y: int) -> np.ndarray:
    """Quadratic peak refinement in x and y (clamped to ±0.5 px)."""
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


def _snap(heat: np.ndarray, guess: np.ndarray, radius: float) -> tuple[np.ndarray, float]:
    h, w = heat.shape
    r = max(1, int(np.ceil(radius)))
    gx, gy = int(round(guess[0])), int(round(guess[1]))
    x0, x1, y0, y1 = max(0, gx - r), min(w, gx + r + 1), max(0, gy - r), min(h, gy + r + 1)
    if x0 >= x1 or y0 >= y1:
        return guess, 0.0
    win = heat[y0:y1, x0:x1]
    iy, ix = np.unravel_index(int(np.argmax(win)), win.shape)
    value = float(win[iy, ix])
    if value < POINT_THRESHOLD:
        return guess, value
    return _subpixel(heat, x0 + ix, y0 + iy), value


def decode(maps: np.ndarray) -> Detections:
    """``maps (N_CHANNELS, rows, cols)`` → unlabelled detections on the input grid."""
    centre = maps[C_CENTRE]
    bodies = []
    for x, y, score in _peaks(centre, CENTRE_THRESHOLD):
        off = maps[C_OFFSETS, y, x].reshape(6, 2) * OFFSET_UNIT
        guess = np.array([x, y], float) + off
        size = float(np.linalg.norm(guess[0] - guess[3]) + np.linalg.norm(guess[1] - guess[2])) / 2
        pts, confs = [], []
        for k in range(6):
            p, c = _snap(maps[C_POINTS.start + k], guess[k], max(1.5, 0.3 * size))
            pts.append(p)
            confs.append(c)
        pts = np.array(pts)
        conf = float(min(score, np.mean(confs)))
        bodies.append(Body(pts, conf, pts[:4].mean(axis=0)))
    s1, s1_conf = None, 0.0
    a = _peaks(maps[C_S1.start], S1_THRESHOLD)
    b = _peaks(maps[C_S1.start + 1], S1_THRESHOLD)
    if a and b:
        s1 = np.array([_subpixel(maps[C_S1.start], a[0][0], a[0][1]),
                       _subpixel(maps[C_S1.start + 1], b[0][0], b[0][1])])
        s1_conf = min(a[0][2], b[0][2])
    heads = []
    for x, y, score in _peaks(maps[C_HEAD], HEAD_THRESHOLD, min_dist=2)[:2]:
        heads.append((_subpixel(maps[C_HEAD], x, y), float(maps[C_RADIUS, y, x] * RADIUS_UNIT), score))
    return Detections(bodies, s1, s1_conf, heads)


def label_levels(det: Detections, rows: int) -> Detections:
    """Assign levels, anchored on S1 (else C7 at the top); withhold what breaks the chain."""
    bodies = sorted(det.bodies, key=lambda b: -b.centre[1])  # caudal first
    warnings = det.warnings
    # duplicates: two detections of one body
    kept: list[Body] = []
    for b in bodies:
        if kept:
            d = np.linalg.norm(b.centre - kept[-1].centre)
            size = np.linalg.norm(b.points[1] - b.points[2])
            if d < DUPLICATE_FACTOR * max(size, 1.0):
                if b.confidence > kept[-1].confidence:
                    kept[-1] = b
                continue
        kept.append(b)
    bodies = kept
    if not bodies:
        warnings.append("no vertebral body found")
        return Detections([], det.s1, det.s1_confidence, det.heads, warnings)
    heights = [float(np.linalg.norm(b.points[1] - b.points[2])) for b in bodies]  # posterior walls
    # a step between neighbours is "too long" against what their own sizes predict (half of each
    # body plus a disc), so the check follows the spine from small cervical to large lumbar bodies
    ratios = [float(np.linalg.norm(bodies[i + 1].centre - bodies[i].centre)) / (1.25 * max(1e-6, (heights[i] + heights[i + 1]) / 2))
              for i in range(len(bodies) - 1)]
    if det.s1 is not None:
        s1_mid = det.s1.mean(axis=0)
        first_step = float(np.linalg.norm(bodies[0].centre - s1_mid)) / max(1e-6, heights[0])
        if bodies[0].centre[1] > s1_mid[1] or not (0.4 <= first_step <= 1.4):
            warnings.append("the lowest body found is not just above the S1 endplate: levels withheld "
                            "(a missed or extra vertebra would renumber the spine)")
            for b in bodies:
                b.level = None
            return Detections(bodies, det.s1, det.s1_confidence, det.heads, warnings)
        order, names = bodies, list(reversed(LEVELS))  # L5 upwards
    else:
        top = min(b.centre[1] for b in bodies)
        margin = float(np.median([np.linalg.norm(b.points[1] - b.points[2]) for b in bodies]))
        if top < 1.0 * margin:
            warnings.append("the sacrum is out of view and the top of the spine is cut: levels cannot be "
                            "anchored, so they are withheld")
            for b in bodies:
                b.level = None
            return Detections(bodies, det.s1, det.s1_confidence, det.heads, warnings)
        warnings.append("the sacrum is out of view: levels are counted from C7 at the top of the image")
        order, names = list(reversed(bodies)), list(LEVELS)
        ratios = list(reversed(ratios))
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
        b.level = names[i]
        labelled += 1
    for b in order[labelled:]:
        b.level = None
    return Detections(bodies, det.s1, det.s1_confidence, det.heads, warnings)


def to_contract(det: Detections, to_source) -> dict:
    """The contract's ``landmarks`` object in source-image pixels; unlabelled bodies dropped."""
    verts = {}
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
