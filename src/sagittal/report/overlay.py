"""The overlay PNG: where every number came from — vertebral outlines and labels, endplate
lines, the C7 plumb line and the S1 corner (SVA), the PI/PT/SS construction at the hip axis
(the S1 endplate and its horizontal, the vertical through the hip axis, the line to the
endplate's midpoint and the endplate's perpendicular there), and the values."""

from __future__ import annotations

import cv2
import numpy as np

from ..levels import POINT_NAMES

MAX_ROWS = 1400


def _pt(p, s):
    return int(round(p[0] * s)), int(round(p[1] * s))


def render_overlay(image: np.ndarray, doc: dict, px_scale: float = 1.0) -> np.ndarray:
    """BGR uint8 overlay of ``doc`` (an analysis document) on the bone-bright ``image``.

    ``px_scale``: pixels of ``image`` per pixel of the stored image the landmarks refer to
    (less than 1 for an image decoded at reduced resolution)."""
    img = np.asarray(image, np.float32)
    lo, hi = np.percentile(img[:: max(1, img.shape[0] // 300), :: max(1, img.shape[1] // 300)], (1, 99.5))
    grey = np.clip((img - lo) / max(hi - lo, 1e-6) * 255, 0, 255).astype(np.uint8)
    s = min(1.0, MAX_ROWS / grey.shape[0])
    if s < 1:
        grey = cv2.resize(grey, (int(grey.shape[1] * s), int(grey.shape[0] * s)), interpolation=cv2.INTER_AREA)
    out = cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR)
    s *= px_scale  # landmark pixels -> overlay pixels
    lm = doc["landmarks"]
    th = max(1, int(round(out.shape[0] / 700)))
    font = 0.35 * max(1.0, out.shape[0] / 900)
    for level, v in lm["vertebrae"].items():
        p = {k: np.asarray(v[k], float) for k in POINT_NAMES}
        outline = [p["anterior_inferior"], p["middle_inferior"], p["posterior_inferior"], p["posterior_superior"],
                   p["middle_superior"], p["anterior_superior"]]
        cv2.polylines(out, [np.array([_pt(q, s) for q in outline], np.int32)], True, (0, 200, 255), th, cv2.LINE_AA)
        for a, b in (("posterior_superior", "anterior_superior"), ("posterior_inferior", "anterior_inferior")):
            d = p[b] - p[a]
            cv2.line(out, _pt(p[a] - 0.3 * d, s), _pt(p[b] + 0.3 * d, s), (80, 255, 80), th, cv2.LINE_AA)
        c = np.mean([p[k] for k in POINT_NAMES[:4]], axis=0)
        cv2.putText(out, level, _pt(c, s), cv2.FONT_HERSHEY_SIMPLEX, font, (255, 255, 0), th, cv2.LINE_AA)
    s1 = lm.get("s1_endplate")
    if s1:
        ant, post = np.asarray(s1["anterior"], float), np.asarray(s1["posterior"], float)
        d = ant - post
        cv2.line(out, _pt(post - 0.4 * d, s), _pt(ant + 0.4 * d, s), (80, 255, 80), th, cv2.LINE_AA)
        cv2.circle(out, _pt(post, s), 3 * th, (0, 0, 255), -1)  # posterosuperior S1 corner (SVA)
        reach = 0.9 * abs(d[0]) + 10
        cv2.line(out, _pt(post - [np.sign(d[0]) * 10, 0], s), _pt(post + [np.sign(d[0]) * reach, 0], s), (200, 200, 200),
                 th, cv2.LINE_AA)  # the horizontal of the sacral slope
        mid = (ant + post) / 2
        heads = lm.get("femoral_heads") or []
        if heads:
            hip = np.mean([np.asarray(h["center"], float) for h in heads], axis=0)
            for h in heads:
                cv2.circle(out, _pt(h["center"], s), int(h.get("radius_px", 10) * s), (255, 120, 0), th, cv2.LINE_AA)
            cv2.line(out, _pt(hip, s), _pt(mid, s), (255, 0, 255), th, cv2.LINE_AA)  # PT / PI arm
            cv2.line(out, _pt(hip, s), _pt(hip - np.array([0, np.linalg.norm(mid - hip)]), s), (200, 200, 200), th)
            n = np.array([-d[1], d[0]]) / max(np.linalg.norm(d), 1e-6)
            n = n if n[1] > 0 else -n  # into the sacrum (image rows grow downwards)
            cv2.line(out, _pt(mid, s), _pt(mid + n * np.linalg.norm(mid - hip), s), (255, 0, 255), th, cv2.LINE_AA)
    c7 = lm["vertebrae"].get("C7")
    if c7:
        c = np.mean([np.asarray(c7[k], float) for k in POINT_NAMES[:4]], axis=0)
        cv2.line(out, _pt(c, s), (_pt(c, s)[0], out.shape[0] - 1), (0, 0, 255), th, cv2.LINE_AA)  # plumb line
    p = doc["parameters"]
    lines = [f"{k.replace('_deg', ' deg').replace('_mm', ' mm')}: {'—' if p.get(k) is None else round(p[k], 1)}"
             for k in ("pelvic_incidence_deg", "pelvic_tilt_deg", "sacral_slope_deg", "lumbar_lordosis_deg",
                       "thoracic_kyphosis_deg", "sagittal_vertical_axis_mm", "pi_ll_mismatch_deg")]
    for v in doc.get("vertebrae", []):
        if (v.get("genant_grade") or 0) > 0:
            lines.append(f"{v['level']}: Genant {v['genant_grade']} {v['morphology']} {v['height_loss_pct']:.0f}%")
    ungraded = [v["level"] for v in doc.get("vertebrae", []) if v.get("genant_grade") is None]
    if ungraded:  # not "no fracture": the warnings say why
        lines.append(f"no grade: {', '.join(ungraded)}")
    y = int(18 * font / 0.35)
    for line in [f"status: {doc['status']}"] + lines:
        cv2.putText(out, line, (5, y), cv2.FONT_HERSHEY_SIMPLEX, font, (0, 0, 0), 3 * th, cv2.LINE_AA)
        cv2.putText(out, line, (5, y), cv2.FONT_HERSHEY_SIMPLEX, font, (255, 255, 255), th, cv2.LINE_AA)
        y += int(16 * font / 0.35)
    return out
