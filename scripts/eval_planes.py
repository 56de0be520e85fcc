#!/usr/bin/env python3
"""Evaluate CT and MR analysis on fresh phantom volumes the plane model never saw.

    nice -n 10 .venv/bin/python scripts/eval_planes.py [--n-ct 30] [--n-mr 30] [--first-seed 0]
        [--weights src/sagittal/weights/landmarks_planes.pt [OTHER.pt ...]] [--json FILE]

Each case is a phantom spine (seeded by ``default_rng([EVAL_STREAM, seed])``, a stream no
training set draws from; a third of the spines drawn with 1–3 fractures, the rest by
``phantom.sample_spec``'s own draw, 55 % of them with 1–5) rendered as a full volume with
randomised acquisition — CT: axial, in-plane 1.0–2.0 mm, slices 1.5–5 mm (``--ct-pixel-mm``,
``--ct-slice-mm``: other ranges, e.g. coarse series), field of 280–380 mm,
from T8–T12 to the hips, sometimes with its sagittal reformat as a second series; MR: T1 + T2 +
STIR (sometimes T1 + STIR), in-plane 0.8–1.5 mm, slices 3–4.5 mm, lumbar or whole-spine field —
half of them scoliotic; since the twelfth session with a bony pelvis and proximal femora around
the femoral heads (``phantom.volume.pelvis_of``; ``--no-pelvis``: the heads alone, as before, the rest
of every case the same). (Ranges kept modest so that the evaluation runs on two shared CPU cores.)
Every case is written as DICOM and read back through ``io`` and the ``volume`` kind of ``sagittal
analyze`` (plan, prepare, the plane model, finish): the same path as a clinical series.

Reported per modality: the fraction of units analysed (ok or partial); vertebrae in view (truth
wholly inside the plane's field) found with the right level (centroid within 5 mm); landmark
error in the plane (mm: the predicted pixel against the truth point projected onto the plane);
heights MAE (anterior, middle, posterior); Genant grade exact on fractured vertebrae and grade 0
on normal ones; the signed height-loss bias on fractured and normal bodies (our loss minus the
loss the true points give on our plane with our neighbours: the points' share of a grade error);
PI MAE (where PI was measured, against the phantom's own PI); every femoral head reported against the
nearest true head projected onto the plane (``femoral_heads``: centre error in the plane, radius error,
and how many lie over ``HEAD_OFF_MM`` from every true head: another bone; the same in 3-D from the
centre as found, before the projection: ``off_3d``, ``centre_err_3d_mm_*``); the studies warned that the
spine curves out of the plane (``curve_warned``) and the largest ``lateral_deviation_mm``, also on the straight
spines alone (``curve_warned_straight``: false warnings); the MAE and count of every angle the
document reports (``angles``: PI, PT, SS, LL, TK, PI-LL, regional and vertebral kyphosis) against the
same measure (``report.analysis_document``) of the phantom's TRUE points mapped to our plane, the
femoral heads projected from 3-D, counted only where the document reports the angle (every level it
is measured from reported) and those levels are in view; the same for the documents measured again with
every angle from every point (``angles_all_points``: as before an ungraded body's endplate angles were
withheld), split into the angles measured from an ungraded body's points (``..._from_ungraded``; those
from a crushed body kept between its neighbours, ``..._from_kept_crushed``) and the rest, and the
document's angles at ungraded levels (``angles_at_ungraded_levels``); the analysis time per unit.
Fractured bodies in view (``fractured_in_view``): graded, withheld, missing, exact among the graded and
over all in view (a withheld grade counts as not exact there), our loss against the phantom's. Each
unit's sampling along the spine's axis (``axis_sampling_mm``: an axial CT's slice spacing, a sagittal
series' row spacing, from the geometry the pipeline reads) and the figures split by it
(``by_axis_sampling``, ``--sampling-edges``); with ``--ct-thickness-ratio`` (each CT slice the mean of a slab
thicker than its spacing) also by the CT's slice thickness (``by_slice_thickness``, the same edges).
``--grade-axis both`` scores each detector with the rule
that a series sampled 4 mm or more apart is not graded (``report.analysis.GRADE_AXIS_SAMPLING_MAX_MM``)
off and on, on the same detections.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from sagittal.batch import volume as kind
from sagittal.io.series import scan_export
from sagittal.io.volume import CURVE_WARNING_START
from sagittal.levels import LEVELS, POINT_NAMES, UNGRADED
from sagittal.phantom import build_spine, sample_spec
from sagittal.phantom.dicom import StudyInfo
from sagittal.phantom.generate import write_volume
from sagittal.phantom.volume import _HIP_HALF_MM, reformat_ct, render_ct, render_mr, scoliosis_curve
from sagittal.report.analysis import GRADE_AXIS_SAMPLING_MAX_MM

EVAL_STREAM = 7_100_099


#: the CT's in-plane pixel and slice spacing are drawn from these ranges (mm; ``--ct-pixel-mm``, ``--ct-slice-mm``)
CT_PIXEL_MM = (1.0, 2.0)
CT_SLICE_MM = (1.5, 5.0)


def _case(modality: str, seed: int, root: Path, fracture_rate: float = 0.33, mr_wide: float = 0.0,
          pelvis: bool = True, ct_pixel_mm: tuple[float, float] = CT_PIXEL_MM,
          ct_slice_mm: tuple[float, float] = CT_SLICE_MM,
          ct_thickness: tuple[float, float] | None = None,
          ct_tilt: tuple[float, float] | None = None, ct_drop: int = 0,
          ct_aorta: str | None = None) -> tuple[Any, list[Any], tuple[float, float] | None]:
    """Render and write one case; return its spine and volumes. ``fracture_rate``: the share of
    spines drawn with 1–3 fractures; ``mr_wide``: the share of MR studies whose sagittal slab
    spans ±125 mm (the femoral heads in view); the defaults keep the stream's cases as they were.
    ``pelvis``: the phantom's bony pelvis and proximal femora around the heads (``phantom.volume.
    pelvis_of``; off: the heads alone, the phantom before the twelfth session - same cases otherwise).
    ``ct_pixel_mm`` / ``ct_slice_mm``: the ranges the CT's pixel and slice spacing are drawn from (the
    same draws: other ranges give the same spines and fields at other voxels; coarse series: (3, 3), (5, 5)).
    ``ct_thickness``: each CT slice averages a slab this many times its spacing thick (drawn from the range,
    from a stream of its own: the same spines and noise, the field within a fraction of a millimetre; an
    overlapping reconstruction), ``None``:
    each slice is its centre's section. ``ct_tilt``: a gantry tilt of that many degrees (drawn from the range,
    either sign, from a stream of its own; ``io.volume.deshear`` undoes it), ``None``: none. ``ct_drop``: that
    many consecutive axial slice files deleted (files lost from an export: a gap), where from a stream of its own,
    within the reported spine's span (its in-view bodies' centres); the third value returned is the gap's LPS z
    range, between the slices kept on either side of it (``None`` without one). ``ct_aorta``: the CT drawn with
    an aorta in front of the spine (``_aorta``: 'contrast' or 'calcified'; from a stream of its own, the same spines
    and noise); ``None``: none, as the phantom has always been drawn."""
    rng = np.random.default_rng([EVAL_STREAM, 1 if modality == "CT" else 2, seed])
    n_fx = int(rng.integers(1, 4)) if rng.random() < fracture_rate else None
    spine = build_spine(sample_spec(rng, n_fractures=n_fx))
    curve = scoliosis_curve(spine, rng) if rng.random() < 0.5 else None
    pid = f"EV{modality}{seed:04d}"
    info = StudyInfo.make(f"eval/{modality}/{seed}", pid)
    key = f"eval/{modality}/{seed}"
    vols = []
    if modality == "CT":
        sp = float(rng.uniform(*ct_pixel_mm))
        fov = float(rng.uniform(280, 380))
        top = str(rng.choice(["T8", "T10", "T11", "T12"]))
        slice_mm = float(rng.uniform(*ct_slice_mm))
        thick = (slice_mm * float(np.random.default_rng([EVAL_STREAM, 3, seed]).uniform(*ct_thickness))
                 if ct_thickness else None)
        tilt_rng = np.random.default_rng([EVAL_STREAM, 4, seed])
        tilt = float(tilt_rng.uniform(*ct_tilt) * tilt_rng.choice([-1.0, 1.0])) if ct_tilt else 0.0
        ct = render_ct(spine, rng, pixel_spacing_mm=sp, slice_mm=slice_mm, matrix=int(fov / sp) // 2 * 2,
                       top_level=top, scoliosis=curve, pelvis=pelvis, thickness_mm=thick, gantry_tilt_deg=tilt,
                       aorta=_aorta(ct_aorta, seed) if ct_aorta else None)
        write_volume(ct, spine, root, f"{pid}/ct", info, key, frame_key=key)
        vols.append(ct)
        gap = _drop_files(root / f"{pid}/ct", ct, spine, ct_drop, seed) if ct_drop else None
        if rng.random() < 0.3 and not tilt and not ct_drop:  # (the phantom's console reformats an untilted axial series only)
            write_volume(reformat_ct(ct), spine, root, f"{pid}/ct_sag", info, f"{key}/sag", series_number=2, frame_key=key)
    else:
        sp = float(rng.uniform(0.8, 1.5))
        whole = rng.random() < 0.3
        top = "C7" if whole else str(rng.choice(["T8", "T9", "T10", "T11"]))
        span: float = 760 if whole else 430
        seqs = ("T1", "T2", "STIR") if rng.random() < 0.7 else ("T1", "STIR")
        origin = np.array([rng.uniform(-5, 5), rng.uniform(40, 80), rng.uniform(-900, -700)])
        thick = float(rng.uniform(3.0, 4.5))
        n_sl = int(np.ceil((60 if curve is not None else 44) / thick)) | 1
        if mr_wide > 0 and rng.random() < mr_wide:  # a slab wide enough for the femoral heads (±85 mm), field to the hips
            n_sl = int(np.ceil(250 / thick)) | 1
            bottom = float((spine.femoral_centers_mm[:, 1] - spine.femoral_radii_mm).min() - 30)
            span = max(span, float(spine.points_mm[LEVELS.index(top), :, 1].max()) + 20 - bottom + 40)
        for s, seq in enumerate(seqs):
            mr = render_mr(spine, rng, seq, pixel_spacing_mm=sp, slice_mm=thick, n_slices=n_sl, matrix=int(span / sp),
                           top_level=top, origin_lps=origin, scoliosis=curve, pelvis=pelvis)
            write_volume(mr, spine, root, f"{pid}/mr_{seq.lower()}", info, f"{key}/{seq}", series_number=s + 1,
                         frame_key=key)
            vols.append(mr)
        gap = None
    return spine, vols, gap


#: ``--ct-aorta``: the aorta's look (``phantom.volume.Aorta``), each value drawn from its range per case
AORTA_LOOKS = {"contrast": {"lumen_hu": (150.0, 450.0)},
               "calcified": {"lumen_hu": (30.0, 50.0), "wall_hu": (500.0, 1000.0)}}


def _aorta(look: str, seed: int) -> Any:
    """The aorta of ``look`` (``AORTA_LOOKS``) for case ``seed``, drawn from stream ``[EVAL_STREAM, 6, seed]``:
    radius 9-13 mm, its centre 8-25 mm to the left of the spine's midline, its back (its wall's, where drawn)
    1-5 mm in front of the spine's anterior outline."""
    from sagittal.phantom.volume import Aorta

    rng = np.random.default_rng([EVAL_STREAM, 6, seed])
    drawn = {k: float(rng.uniform(*r)) for k, r in AORTA_LOOKS[look].items()}
    return Aorta(radius_mm=float(rng.uniform(9, 13)), lateral_mm=float(rng.uniform(8, 25)),
                 gap_mm=float(rng.uniform(1, 5)), **drawn)


def _drop_files(series_dir: Path, ct: Any, spine: Any, k: int, seed: int) -> tuple[float, float]:
    """Delete ``k`` consecutive slice files of the axial CT in ``series_dir`` (``_case``'s ``ct_drop``), centred
    at a height drawn (stream ``[EVAL_STREAM, 5, seed]``) between the highest and lowest vertebral body centres
    in the field; the LPS z of the slices kept just below and above the gap."""
    import pydicom

    files = sorted(series_dir.rglob("*.dcm"),
                   key=lambda f: float(pydicom.dcmread(f, stop_before_pixels=True).ImagePositionPatient[2]))
    z = np.array([float(pydicom.dcmread(f, stop_before_pixels=True).ImagePositionPatient[2]) for f in files])
    centres = ct.sagittal_to_lps(spine.points_mm[:, :4].mean(axis=1))[:, 2]
    centres = centres[(centres > z[0] + 10) & (centres < z[-1] - 10)]
    at = float(np.random.default_rng([EVAL_STREAM, 5, seed]).uniform(centres.min(), centres.max()))
    first = int(np.clip(np.argmin(np.abs(z - at)) - k // 2, 1, len(z) - k - 1))
    for f in files[first:first + k]:
        f.unlink()
    return float(z[first - 1]), float(z[first + k])


def _gap_levels(spine: Any, vol: Any, gap: tuple[float, float] | None, step_mm: float) -> set[str]:
    """The levels whose true six points come within half a slice step of the gap's interior (LPS z): the
    bodies a gap makes too coarse to grade (``batch.volume.level_axis_sampling_mm`` reads it from the points
    found)."""
    if gap is None:
        return set()
    z = vol.sagittal_to_lps(spine.points_mm.reshape(-1, 2)).reshape(len(LEVELS), 6, 3)[..., 2]
    near = ((z > gap[0] - step_mm / 2) & (z < gap[1] + step_mm / 2)).any(axis=1)
    return {LEVELS[i] for i in np.nonzero(near)[0]}


def _why_missed(level: str, truth_px: np.ndarray, sp: float, doc: dict, prep: Any) -> str:
    """Why a vertebra in view is not in the document: the stage that lost it (``--diagnose``)."""
    det = prep.extra.get("last_detection")
    coarse = prep.extra.get("coarse_detection")
    centre = truth_px[:4].mean(0)
    size = float(np.linalg.norm(truth_px[1] - truth_px[2]))

    def near(bodies: list) -> Any:
        best = min(bodies, key=lambda b: float(np.linalg.norm(b.centre - centre)), default=None)
        return best if best is not None and np.linalg.norm(best.centre - centre) < 0.5 * size else None

    said = [w for w in doc["warnings"] if w.startswith(f"{level}:") or f" {level} " in w or f"{level} is" in w]
    c = near(coarse.bodies) if coarse is not None else None
    f = near(det.bodies) if det is not None else None
    if c is None:
        stage = "coarse: no body"
    elif c.level is None:
        stage = f"coarse: found (conf {c.confidence:.2f}) but not named"
    elif c.level != level:
        stage = f"coarse: named {c.level}"
    elif f is None or f.level is None:
        stage = "refine/post: withheld"
    else:
        stage = f"final: named {f.level}"
    anchor = "S1" if (coarse is not None and coarse.s1 is not None) else "no S1"
    return f"{level} ({size * sp:.0f} mm, {anchor}): {stage}; " + (" | ".join(said)[:300] if said else "-")


def _in_view(truth_px: np.ndarray, img: np.ndarray) -> bool:
    """Whether a body's true points ``(6, 2)`` (plane pixels) are in view: inside the plane by
    3 px and within the volume's own field (outside it the plane is filled with the minimum)."""
    rows, cols = img.shape
    inside = ((truth_px[:, 0] > 2) & (truth_px[:, 0] < cols - 3) & (truth_px[:, 1] > 2) & (truth_px[:, 1] < rows - 3)).all()
    lo = float(img.min())
    return bool(inside) and not any(img[int(round(y)), int(round(x))] <= lo for x, y in truth_px)


#: a femoral head reported further than this (mm, in the plane) from every true head counts as off (another bone)
HEAD_OFF_MM = 10.0

#: in the reason ``plane_detector.keep_crushed_between`` gives a crushed body it keeps between its neighbours
KEPT_BETWEEN = "between its reported neighbours"


def _score_angles(spine: Any, vol: Any, plane: Any, img: np.ndarray, doc: dict, acc: dict, key: str) -> None:
    """``_angle_errors`` of ``doc`` into ``acc['angles']`` and of ``_all_points(doc)`` into
    ``acc['angles_all_points']``; ``acc['from_ungraded']`` / ``acc['ungraded_own']``: the (angle,
    where) measured from an ungraded body's points / at an ungraded level; ``acc['from_kept']``: from a
    crushed body kept between its neighbours (``KEPT_BETWEEN``), ungraded."""
    ungraded = set(doc["landmarks"].get(UNGRADED) or {})
    kept = {lv for lv, why in (doc["landmarks"].get(UNGRADED) or {}).items() if KEPT_BETWEEN in why}
    for which, d in (("angles", doc), ("angles_all_points", _all_points(doc))):
        for name, (errs, possible) in _angle_errors(spine, vol, plane, img, d).items():
            got = acc.setdefault(which, {}).setdefault(name, {"err": {}, "possible": 0})
            got["err"].update({f"{key}/{where}": e for where, e in errs.items()})
            got["possible"] += possible
            acc.setdefault("from_ungraded", set()).update((name, f"{key}/{where}") for where in errs
                                                          if _uses(name, where) & ungraded)
            acc.setdefault("ungraded_own", set()).update((name, f"{key}/{where}") for where in errs if where in ungraded)
            acc.setdefault("from_kept", set()).update((name, f"{key}/{where}") for where in errs if _uses(name, where) & kept)


def _score(spine: Any, vol: Any, prep: Any, doc: dict, acc: dict, diagnose: list[str] | None = None,
           key: str = "") -> None:
    plane = prep.extra["plane"]
    sp = plane.spacing_mm
    lm = doc["landmarks"]["vertebrae"]
    by_level = {v["level"]: v for v in doc["vertebrae"]}
    for i, level in enumerate(LEVELS):
        truth_px = plane.from_lps(vol.sagittal_to_lps(spine.points_mm[i]))
        if not _in_view(truth_px, prep.image):
            continue
        acc["in_view"] += 1
        p = lm.get(level)
        if p is None:
            if diagnose is not None:
                diagnose.append(_why_missed(level, truth_px, sp, doc, prep))
            continue
        pred = np.array([p[n] for n in POINT_NAMES], float)
        if np.linalg.norm((pred[:4].mean(0) - truth_px[:4].mean(0)) * sp) > 5.0:
            acc["wrong"] += 1
            if diagnose is not None:
                off = float(np.linalg.norm((pred[:4].mean(0) - truth_px[:4].mean(0)) * sp))
                diagnose.append(f"{level}: WRONG, reported {off:.1f} mm from its true centre; "
                                + " | ".join(w for w in doc["warnings"] if w.startswith(f"{level}:"))[:200])
            continue
        acc["found"] += 1
        acc["point_err"] += list(np.linalg.norm((pred - truth_px) * sp, axis=1))
        v = by_level.get(level)
        if v and v["heights_mm"]:
            acc["height_err"] += [abs(v["heights_mm"][k] - spine.heights_mm[i, j])
                                  for j, k in enumerate(("anterior", "middle", "posterior"))]
        if v and v["genant_grade"] is not None:
            acc["grades"].append((int(spine.grade[i]), int(v["genant_grade"])))
    acc.setdefault("loss_err", []).extend(_loss_bias(spine, vol, plane, prep.image, doc))
    _score_angles(spine, vol, plane, prep.image, doc, acc, key)
    fracture_lines = _fracture_lines(spine, vol, plane, prep.image, doc, acc)  # fills acc['fx_rows'] always
    if diagnose is not None:
        diagnose += fracture_lines
    pi = doc["parameters"]["pelvic_incidence_deg"]
    if pi is not None:
        acc["pi_err"].append(abs(pi - spine.parameters["pelvic_incidence_deg"]))
        acc["heads"].append(len(doc["landmarks"]["femoral_heads"]))
    _score_heads(spine, vol, plane, doc, acc, diagnose, prep.extra["heads_lps"])
    # the plane's curve where the spine is reported, and the studies warned of it (io.volume.curve_warning)
    acc.setdefault("curve", []).append((float(doc["image"].get("lateral_deviation_mm") or 0.0),
                                        any(w.startswith(CURVE_WARNING_START) for w in doc["warnings"]),
                                        vol.lateral is None))  # a straight spine: no curve to warn of
    _score_kept_crushed(spine, vol, plane, prep.image, doc, acc, diagnose)


def _score_kept_crushed(spine: Any, vol: Any, plane: Any, img: np.ndarray, doc: dict, acc: dict,
                        diagnose: list[str] | None) -> None:
    """Crushed bodies kept between their neighbours (``KEPT_BETWEEN``): how many, and how many of them
    are not wholly in the plane's own field (``postprocess.wholly_inside`` of ``volume_field_box``, the
    check radiographs make with ``box=``) or not in view by the truth (``_in_view``)."""
    from sagittal.landmarks.plane_detector import volume_field_box
    from sagittal.landmarks.postprocess import wholly_inside

    box = volume_field_box(img)
    for lv_, why in (doc["landmarks"].get(UNGRADED) or {}).items():
        if KEPT_BETWEEN not in why or lv_ not in doc["landmarks"]["vertebrae"]:
            continue
        p = doc["landmarks"]["vertebrae"][lv_]
        pts = np.array([p[n] for n in POINT_NAMES], float)
        truth_px = plane.from_lps(vol.sagittal_to_lps(spine.points_mm[LEVELS.index(lv_)]))
        row = (lv_, bool(wholly_inside(pts, box)), _in_view(truth_px, img))
        acc.setdefault("kept_crushed", []).append(row)
        if diagnose is not None and not (row[1] and row[2]):
            diagnose.append(f"kept crushed: {lv_} kept between its neighbours, wholly in the field {row[1]}, "
                            f"in view {row[2]}")


def _score_heads(spine: Any, vol: Any, plane: Any, doc: dict, acc: dict, diagnose: list[str] | None,
                 heads_lps: list[np.ndarray]) -> None:
    """Every head reported: the in-plane distance of its centre to the nearest true head projected onto
    the plane (mm) and its radius against that head's, into ``acc['head_err']`` (a head taken from
    another bone lies far off); and the 3-D distance of its centre as found (``heads_lps``, before the
    projection) to the nearest true centre, into ``acc['head_err_3d']`` (a bone off to the side that
    projects onto a true head is off there, not in the plane)."""
    sp = plane.spacing_mm
    true_lps = [vol.sagittal_to_lps(c, side * _HIP_HALF_MM) for c, side
                in zip(spine.femoral_centers_mm, (1.0, -1.0), strict=True)]
    for c in heads_lps:
        d3 = min(float(np.linalg.norm(np.asarray(c, float) - np.asarray(t, float))) for t in true_lps)
        acc.setdefault("head_err_3d", []).append(d3)
        if diagnose is not None and d3 > HEAD_OFF_MM:
            diagnose.append(f"femoral head {d3:.1f} mm from the nearest true head in 3-D")
    true_heads = [(plane.from_lps(t), r) for t, r in zip(true_lps, spine.femoral_radii_mm, strict=True)]
    for h in doc["landmarks"]["femoral_heads"]:
        d, r = min(((float(np.linalg.norm((np.asarray(h["center"]) - c) * sp)), r) for c, r in true_heads),
                   key=lambda t: t[0])
        acc.setdefault("head_err", []).append((d, float(h["radius_px"]) * sp - float(r)))
        if diagnose is not None and d > HEAD_OFF_MM:
            diagnose.append(f"femoral head {d:.1f} mm from the nearest true head (radius {float(h['radius_px']) * sp:.1f} "
                            f"against {float(r):.1f} mm)")


def _neighbours_as_ours(doc: dict) -> np.ndarray:
    """``(len(LEVELS),)`` bool: the levels whose points grade their neighbours in ``doc`` — reported
    and not ungraded (``report.analysis_document`` leaves an ungraded body out of its neighbours'
    expected heights, so the true-point reference must too)."""
    ungraded = doc["landmarks"].get(UNGRADED) or {}
    return np.array([lv in doc["landmarks"]["vertebrae"] and lv not in ungraded for lv in LEVELS])


def _loss_bias(spine: Any, vol: Any, plane: Any, img: np.ndarray, doc: dict) -> list[tuple[int, float]]:
    """Per graded body in view and at its true place (within 5 mm, as ``_score``), ``(the phantom's
    grade, our height loss minus the loss the phantom's TRUE points give mapped to our plane with our
    reported levels as neighbours)``: the points' share of a grade error, the plane and the
    neighbours being the same on both sides."""
    from sagittal.geometry.morphometry import morphometry

    truth_px = np.stack([plane.from_lps(vol.sagittal_to_lps(spine.points_mm[i])) for i in range(len(LEVELS))])
    reported = _neighbours_as_ours(doc)
    as_ours = morphometry(np.where(reported[:, None, None], truth_px * plane.spacing_mm, np.nan))
    out = []
    for v in doc["vertebrae"]:
        i, p = LEVELS.index(v["level"]), doc["landmarks"]["vertebrae"].get(v["level"])
        if p is None:
            continue
        pred = np.array([p[n] for n in POINT_NAMES[:4]], float)
        at_place = np.linalg.norm((pred.mean(0) - truth_px[i][:4].mean(0)) * plane.spacing_mm) <= 5.0
        if v["genant_grade"] is not None and v["height_loss_pct"] is not None and _in_view(truth_px[i], img) \
                and at_place and np.isfinite(as_ours["height_loss_pct"][i]):
            out.append((int(spine.grade[i]), float(v["height_loss_pct"] - as_ours["height_loss_pct"][i])))
    return out


#: the angles a CT/MR document reports (SVA and T1PA are null there: not standing), scored by
#: ``_angle_errors``: the document's parameters, then its per-vertebra angles
ANGLE_PARAMETERS = ("pelvic_incidence_deg", "pelvic_tilt_deg", "sacral_slope_deg", "lumbar_lordosis_deg",
                    "thoracic_kyphosis_deg", "pi_ll_mismatch_deg")
ANGLE_PER_VERTEBRA = ("regional_kyphosis_deg", "vertebral_kyphosis_deg")
#: the vertebrae each parameter is measured from (``geometry.spinopelvic``), beside the S1 endplate
#: (all but TK) and the femoral heads (PI, PT, PI-LL)
ANGLE_LEVELS = {"lumbar_lordosis_deg": ("L1",), "thoracic_kyphosis_deg": ("T4", "T12"), "pi_ll_mismatch_deg": ("L1",)}
ANGLE_RULE = ("an angle counts where the document reports it (every level it is measured from reported) and those "
              "levels (and the S1 endplate) are in view on the plane; truth: report.analysis_document of the phantom's "
              "true points mapped to our plane, both femoral heads projected from 3-D; a level reported at a wrong "
              "place counts with its points; 'possible': the angles whose levels are in view (PI, PT, PI-LL: whether "
              "or not a head is in the field)")


def _truth_on_plane(spine: Any, vol: Any, plane: Any, doc: dict) -> tuple[dict, np.ndarray, np.ndarray]:
    """``(document, vertebrae px (L, 6, 2), S1 px (2, 2))``: the phantom's TRUE points mapped to our
    plane (as ``_score`` maps them) and measured by ``report.analysis_document`` with our image's
    spacing and facing: the same measure as ours, on the same plane. The femoral heads are the
    phantom's spheres (``_HIP_HALF_MM`` either side of the midline) projected onto the plane, as
    ``landmarks.volume._head_landmarks`` projects the heads found in 3-D."""
    from sagittal.report.analysis import analysis_document

    def to_plane(p: np.ndarray, lateral_mm: float | None = None) -> np.ndarray:
        return np.asarray(plane.from_lps(vol.sagittal_to_lps(p, lateral_mm) if lateral_mm is not None
                                         else vol.sagittal_to_lps(p)), float)

    truth_px = np.stack([to_plane(spine.points_mm[i]) for i in range(len(LEVELS))])
    s1_px = to_plane(spine.s1_mm)
    heads = [{"center": to_plane(c, side * _HIP_HALF_MM).tolist(), "radius_px": float(r / plane.spacing_mm)}
             for c, r, side in zip(spine.femoral_centers_mm, spine.femoral_radii_mm, (1.0, -1.0), strict=True)]
    lm = {"vertebrae": {lv: {n: truth_px[i, k].tolist() for k, n in enumerate(POINT_NAMES)} for i, lv in enumerate(LEVELS)},
          "s1_endplate": {"anterior": s1_px[0].tolist(), "posterior": s1_px[1].tolist()}, "femoral_heads": heads}
    image = {k: doc["image"][k] for k in ("rows", "columns", "pixel_spacing_mm", "spacing_source", "anterior")}
    return analysis_document(image, lm), truth_px, s1_px


def _uses(name: str, where: str) -> set[str]:
    """The levels whose points the angle ``name`` at ``where`` (a level, or the parameter's own name)
    is measured from (``geometry.spinopelvic``): a vertebra's own endplates for its vertebral kyphosis,
    the vertebra above's and below's for its regional kyphosis."""
    if name in ANGLE_PARAMETERS:
        return set(ANGLE_LEVELS.get(name, ()))
    if name == "vertebral_kyphosis_deg":
        return {where}
    i = LEVELS.index(where)
    return {LEVELS[j] for j in (i - 1, i + 1) if 0 <= j < len(LEVELS)}


def _all_points(doc: dict) -> dict:
    """``doc`` measured again with every angle from every point (no ``UNGRADED`` map: its angles are
    those of the code before ungraded bodies' endplate angles were withheld; heights and grades
    differ, only its angles are read)."""
    from sagittal.report.analysis import analysis_document

    image = {k: doc["image"][k] for k in ("rows", "columns", "pixel_spacing_mm", "spacing_source", "anterior",
                                          "axis_sampling_mm") if k in doc["image"]}  # (a gap's level map needs it)
    return analysis_document(image, {k: v for k, v in doc["landmarks"].items() if k != UNGRADED})


def _angle_errors(spine: Any, vol: Any, plane: Any, img: np.ndarray, doc: dict) -> dict[str, tuple[dict[str, float], int]]:
    """Per angle of ``ANGLE_PARAMETERS`` + ``ANGLE_PER_VERTEBRA``: ``({where: |ours - truth| deg},
    possible)`` — ``where`` is the parameter's name or the vertebra's level; ours counts only where
    the document reports it and the levels it is measured from are in view (``ANGLE_RULE``), and
    ``possible`` counts the angles whose levels are in view, reported or not."""
    truth, truth_px, s1_px = _truth_on_plane(spine, vol, plane, doc)
    inside = {lv: _in_view(truth_px[i], img) for i, lv in enumerate(LEVELS)}
    inside["S1"] = _in_view(s1_px, img)
    out: dict[str, tuple[dict[str, float], int]] = {}
    for name in ANGLE_PARAMETERS:
        needs = ANGLE_LEVELS.get(name, ()) + (() if name == "thoracic_kyphosis_deg" else ("S1",))
        ours, true = doc["parameters"].get(name), truth["parameters"].get(name)
        seen = all(inside[lv] for lv in needs) and true is not None
        out[name] = ({name: abs(float(ours) - float(true))} if seen and ours is not None else {}, int(seen))
    t_by = {v["level"]: v for v in truth["vertebrae"]}
    for name in ANGLE_PER_VERTEBRA:
        errs, possible = {}, 0
        for i, lv in enumerate(LEVELS):
            # regional: the vertebra above's superior and the one below's inferior endplate (L5: S1's;
            # none at the top level); the document lists a vertebra only where its own points are reported
            parts = [lv] if name == "vertebral_kyphosis_deg" else [LEVELS[i - 1], lv, [*LEVELS, "S1"][i + 1]]
            true = t_by[lv][name]
            if true is None or not all(inside[x] for x in parts):
                continue
            possible += 1
            ours = next((v[name] for v in doc["vertebrae"] if v["level"] == lv), None)
            if ours is not None:
                errs[lv] = abs(float(ours) - float(true))
        out[name] = (errs, possible)
    return out


def _fracture_lines(spine: Any, vol: Any, plane: Any, img: np.ndarray, doc: dict, acc: dict) -> list[str]:
    """``--diagnose``: every fractured body in view — the phantom's grade and loss against ours,
    and the loss measured from the phantom's TRUE six points (a) in its own sagittal plane, all
    levels (the grade's definition against ``geometry.morphometry``), (b) mapped to our plane,
    all levels in view (the plane), (c) mapped to our plane, only the levels we reported as
    neighbours (the neighbours' effect); the rest is the model's points. Also counted in
    ``acc['fx_rows']``: (truth grade, ours or -1 withheld or -2 missing, grade from (b), from (c))."""
    from sagittal.geometry.morphometry import morphometry

    sp = plane.spacing_mm
    truth_px = np.stack([plane.from_lps(vol.sagittal_to_lps(spine.points_mm[i])) for i in range(len(LEVELS))])
    inside = np.array([_in_view(t, img) for t in truth_px])  # as ``_score`` counts them
    lm = doc["landmarks"]["vertebrae"]
    by_level = {v["level"]: v for v in doc["vertebrae"]}
    own = morphometry(spine.points_mm)
    in_plane = morphometry(np.where(inside[:, None, None], truth_px * sp, np.nan))
    reported = _neighbours_as_ours(doc)
    as_ours = morphometry(np.where(reported[:, None, None], truth_px * sp, np.nan))
    out = []
    for i in np.nonzero(spine.grade > 0)[0]:
        if not inside[i]:
            continue
        lv = LEVELS[i]
        v = by_level.get(lv)
        loss = float("nan")
        if lv not in lm:
            ours, what = -2, "missing"
        elif v is None or v["genant_grade"] is None:
            ours, what = -1, "withheld (ungraded)"
        else:
            ours, what = int(v["genant_grade"]), f"graded {v['genant_grade']} (loss {v['height_loss_pct']:.1f} %)"
            loss = float(v["height_loss_pct"])
        g_b, g_c = int(in_plane["genant_grade"][i]), int(as_ours["genant_grade"][i]) if reported[i] else -1
        # (truth grade, ours or -1 withheld or -2 missing, grade (b), grade (c), the phantom's loss, ours or nan)
        acc.setdefault("fx_rows", []).append((int(spine.grade[i]), ours, g_b, g_c, float(spine.loss_pct[i]), loss))
        mark = "" if ours == spine.grade[i] else ("  <-- WRONG" if ours >= 0 else "")
        out.append(f"{lv} fracture: truth grade {spine.grade[i]} {spine.morphology[i]} loss {spine.loss_pct[i]:.1f} %; "
                   f"ours {what}; true points: own plane {own['height_loss_pct'][i]:.1f} % (g{own['genant_grade'][i]}), "
                   f"our plane {in_plane['height_loss_pct'][i]:.1f} % (g{g_b}), our plane + our neighbours "
                   + (f"{as_ours['height_loss_pct'][i]:.1f} % (g{g_c})" if reported[i] else "-") + mark)
    return out


#: the bins of the series' sampling along the spine's axis (``batch.volume.axis_sampling_mm``) that the
#: figures are also split by (``by_axis_sampling``; ``--sampling-edges``), mm
SAMPLING_EDGES = (2.0, 3.0, 3.5, 4.0, 4.5)


def _new_acc() -> dict[str, Any]:
    return {"in_view": 0, "found": 0, "wrong": 0, "point_err": [], "height_err": [], "grades": [], "pi_err": [],
            "heads": [], "status": [], "seconds": [], "units": 0}


def _sampling_bin(mm: float, edges: tuple[float, ...]) -> str:
    """The label of the bin of ``edges`` (mm) that ``mm`` falls in: '<E0', 'E0-E1', ..., '>=En'."""
    k = int(np.searchsorted(np.asarray(edges, float), mm, side="right"))
    if k == 0:
        return f"<{edges[0]:g}"
    return f">={edges[-1]:g}" if k == len(edges) else f"{edges[k - 1]:g}-{edges[k]:g}"


def _compact(fig: dict[str, Any]) -> dict[str, Any]:
    """The figures a split by sampling reports (``by_axis_sampling``): levels, points, heights, grades, angles."""
    fx = fig.get("fractured_in_view") or {}
    ang = fig["angles"]
    return {"units": fig["units"], "vertebrae_in_view": fig["vertebrae_in_view"],
            "right_level": round(fig["right_level_fraction"] * fig["vertebrae_in_view"]),
            "wrong": fig["misplaced_or_mislabelled"], "landmark_median_mm": round(fig["landmark_error_mm"]["median"], 4),
            "height_mae_mm": None if fig["height_mae_mm"] is None else round(fig["height_mae_mm"], 4),
            "fractured": {k: fx.get(k) for k in ("in_view", "graded", "withheld", "missing", "graded_exact",
                                                 "exact_of_graded", "exact_of_in_view", "graded_under", "graded_over",
                                                 "loss_err_pct_mean", "loss_err_pct_median", "under_read_over_5pt",
                                                 "true_points_our_plane_exact")},
            "normals": {"graded": fig["normal_vertebrae"], "graded_0": fig["normal_graded_0"],
                        "graded_above_0": fig["normal_vertebrae"] - fig["normal_graded_0"]},
            "height_loss_bias_pct": fig["height_loss_bias_pct"],
            "angles_mae_deg": {k: (ang[k]["mae_deg"], ang[k]["n"]) for k in
                               ("pelvic_incidence_deg", "sacral_slope_deg", "lumbar_lordosis_deg",
                                "regional_kyphosis_deg", "vertebral_kyphosis_deg")}}


#: the splits ``_score_splits`` fills and the figures' names for them
SPLITS = {"by_sampling": "by_axis_sampling", "by_thickness": "by_slice_thickness"}


def _score_splits(acc: dict[str, Any], splits: dict[str, float], edges: tuple[float, ...], spine: Any, vol: Any,
                  prep: Any, doc: dict[str, Any], key: str) -> None:
    """Score the unit once more into each split's bin (split name -> its millimetres; ``_sampling_bin``)."""
    for split, mm in splits.items():
        part = acc.setdefault(split, {}).setdefault(_sampling_bin(mm, edges), _new_acc())
        part["units"] += 1
        part["status"].append(doc["status"])
        _score(spine, vol, prep, doc, part, None, key=key)


def _split_figures(parts: dict[str, Any]) -> dict[str, Any]:
    """Each bin's figures (``_compact``), the bins in order of their millimetres."""
    return {b: _compact(_figures(parts[b], parts[b]["units"])) for b in sorted(parts, key=_bin_order)}


def _bin_order(label: str) -> tuple[float, int]:
    """``_sampling_bin``'s labels in order: '<E0' before 'E0-E1' before ... before '>=En'."""
    first = float(label.lstrip("<>=").split("-")[0])
    return first, -1 if label.startswith("<") else (1 if label.startswith(">") else 0)


def evaluate(modality: str, n: int, first: int, detector: Any, root: Path, diagnose: bool = False,
             fracture_rate: float = 0.33, mr_wide: float = 0.0, pelvis: bool = True,
             ct_pixel_mm: tuple[float, float] = CT_PIXEL_MM, ct_slice_mm: tuple[float, float] = CT_SLICE_MM,
             sampling_edges: tuple[float, ...] = SAMPLING_EDGES, grade_axis: list[float | None] | None = None,
             ct_thickness: tuple[float, float] | None = None, ct_tilt: tuple[float, float] | None = None,
             ct_drop: int = 0, ct_aorta: str | None = None) -> Any:
    """Score ``detector`` on ``n`` cases from seed ``first``; ``detector`` may be a list of
    detectors (several weights), which are then scored on the same cases, rendered once, and a
    list of figures comes back in the same order. Each unit is also scored into the bin of its
    series' sampling along the spine's axis (``sampling_edges``; figures ``by_axis_sampling``).
    ``grade_axis``: per detector, ``batch.volume.finish``'s ``grade_axis_max_mm`` (default: the
    runtime's); the same detector object listed twice is run once per unit and finished once per entry."""
    dets = list(detector) if isinstance(detector, (list, tuple)) else [detector]
    rules = list(grade_axis) if grade_axis is not None else [GRADE_AXIS_SAMPLING_MAX_MM] * len(dets)
    accs: list[dict[str, Any]] = [_new_acc() for _ in dets]
    ran: dict[tuple[int, int], Any] = {}  # (id(detector), unit) -> (prep, detection) of this case
    for seed in range(first, first + n):
        case_dir = root / f"{modality}{seed}"
        spine, vols, gap = _case(modality, seed, case_dir, fracture_rate, mr_wide, pelvis, ct_pixel_mm, ct_slice_mm,
                                 ct_thickness, ct_tilt, ct_drop, ct_aorta)
        export = scan_export([case_dir], decode_pixels=False)
        units, _ = kind.plan(export.series)
        ran.clear()
        for j, (det_j, acc) in enumerate(zip(dets, accs, strict=True)):
            tag = f"[{j}] " if len(dets) > 1 else ""
            acc["units"] += len(units)
            for k_unit, u in enumerate(units):
                t = time.perf_counter()
                try:
                    if (id(det_j), k_unit) in ran:  # the same detector finished by another rule: its detection again
                        prep, det, looks, look_s = ran[(id(det_j), k_unit)]
                    else:
                        prep = kind.prepare(u, det_j)
                        (det,) = det_j.detect([prep.image], facing=[prep.facing_hint])
                        looks = dict((getattr(det_j, "last_looks", None) or [{}])[0])
                        look_s = float(getattr(det_j, "last_look_seconds", 0.0))
                        if diagnose:
                            prep.extra["last_detection"] = det_j.last_detections[0]
                            prep.extra["coarse_detection"] = det_j.coarse([prep.image])[0][0]
                        ran[(id(det_j), k_unit)] = (prep, det, looks, look_s)
                    for name, how in looks.items():
                        acc.setdefault("looks", {}).setdefault(f"{name} {how}", 0)
                        acc["looks"][f"{name} {how}"] += 1
                    acc.setdefault("look_seconds", []).append(look_s)
                    doc = kind.finish(prep, det, grade_axis_max_mm=rules[j])
                except Exception as exc:  # counted as not analysed, with the reason
                    print(f"{tag}{modality} seed {seed}: {type(exc).__name__}: {exc}", flush=True)
                    acc["status"].append("failed")
                    continue
                acc["seconds"].append(time.perf_counter() - t)
                acc["status"].append(doc["status"])
                why: list[str] = []
                _score(spine, vols[0], prep, doc, acc, why if diagnose else None, key=f"{seed}/{k_unit}")
                if gap is not None:
                    _score_gap(spine, vols[0], gap, prep, doc, acc)
                axis_mm = float(prep.image_info["axis_sampling_mm"])  # as the document has it
                acc.setdefault("axis_sampling", []).append((seed, round(axis_mm, 3)))
                # slabs thicker than their spacing: also by the CT's SliceThickness
                splits = {"by_sampling": axis_mm, **({"by_thickness": float(vols[0].slice_thickness_mm)}
                                                     if ct_thickness and modality == "CT" else {})}
                _score_splits(acc, splits, sampling_edges, spine, vols[0], prep, doc, f"{seed}/{k_unit}")
                print(f"  {tag}{modality} {seed} unit {k_unit}: axis sampled every {axis_mm:.2f} mm", flush=True)
                for line in why:
                    plain = " fracture: " in line or line.startswith(("femoral head", "kept crushed"))
                    print(f"  {tag}{modality} {seed} " + ("" if plain else "missed ") + line, flush=True)
            print(f"{tag}{modality} {seed}: {acc['found']}/{acc['in_view']} found, statuses {acc['status'][-len(units):]}",
                  flush=True)
    out = [_figures(acc, n) for acc in accs]
    for fig, acc in zip(out, accs, strict=True):
        fig["axis_sampling_mm"] = acc.get("axis_sampling", [])
        fig.update({name: _split_figures(acc.get(split, {})) for split, name in SPLITS.items()
                    if split in acc or split == "by_sampling"})
    if len(accs) > 1:
        _paired_angles(out, accs)
    return out if isinstance(detector, (list, tuple)) else out[0]


def _angle_figures(acc: dict[str, Any], which: str = "angles", only: str | None = None,
                   but: str | None = None) -> dict[str, Any]:
    """Per angle: MAE (deg), n counted, the largest error and the angles possible (``ANGLE_RULE``);
    ``which``: the document's angles or ``angles_all_points``; ``only`` / ``but``: only the angles in,
    or all but those in, that set of ``acc`` (``from_ungraded``: measured from an ungraded body's
    points; ``ungraded_own``: at an ungraded level)."""
    out: dict[str, Any] = {}
    for name in (*ANGLE_PARAMETERS, *ANGLE_PER_VERTEBRA):
        got = acc.get(which, {}).get(name, {"err": {}, "possible": 0})
        e = [v for w, v in got["err"].items() if (only is None or (name, w) in acc.get(only, set()))
             and (but is None or (name, w) not in acc.get(but, set()))]
        out[name] = {"mae_deg": round(float(np.mean(e)), 4) if e else None, "n": len(e),
                     "max_deg": round(float(np.max(e)), 4) if e else None, "possible": got["possible"]}
    return out


def _paired_angles(figures: list[dict], accs: list[dict[str, Any]]) -> None:
    """Several runs on the same cases: each angle's MAE also over the angles every run counted
    (``angles_paired``): a run that reports one level more adds angles to its plain MAE."""
    for name in (*ANGLE_PARAMETERS, *ANGLE_PER_VERTEBRA):
        errs = [acc.get("angles", {}).get(name, {"err": {}})["err"] for acc in accs]
        common = set.intersection(*(set(e) for e in errs))
        for fig, e in zip(figures, errs, strict=True):
            fig.setdefault("angles_paired", {})[name] = {
                "mae_deg": round(float(np.mean([e[w] for w in common])), 4) if common else None, "n": len(common)}


def _score_gap(spine: Any, vol: Any, gap: tuple[float, float], prep: Any, doc: dict, acc: dict) -> None:
    """``--ct-drop-files``: per reported level, whether its true endplates lie at the gap (``_gap_levels``), the
    phantom's grade and ours (-1: withheld), into ``acc['gap_rows']``."""
    near = _gap_levels(spine, vol, gap, float(prep.extra["geometry"].slice_spacing_mm))
    for v in doc["vertebrae"]:
        ours = -1 if v["genant_grade"] is None else int(v["genant_grade"])
        acc.setdefault("gap_rows", []).append((v["level"] in near, int(spine.grade[LEVELS.index(v["level"])]), ours))


def _gap_figures(rows: list[tuple[bool, int, int]]) -> dict[str, Any]:
    """``_score_gap``'s rows: for the levels at the gap and elsewhere, how many reported, graded, and the
    fractured / normal ones graded and graded right."""
    r = np.array(rows, int).reshape(-1, 3)
    out = {}
    for name, sel in (("at_gap", r[:, 0] == 1), ("elsewhere", r[:, 0] == 0)):
        t, o = r[sel, 1], r[sel, 2]
        out[name] = {"reported": int(sel.sum()), "graded": int((o >= 0).sum()),
                     "fractured_graded": int(((t > 0) & (o >= 0)).sum()), "fractured_exact": int(((t > 0) & (o == t)).sum()),
                     "normals_graded": int(((t == 0) & (o >= 0)).sum()), "normals_graded_0": int(((t == 0) & (o == 0)).sum())}
    return out


def _figures(acc: dict[str, Any], n: int) -> dict:
    g = np.array(acc["grades"]) if acc["grades"] else np.zeros((0, 2), int)
    fx, nm = g[:, 0] > 0, g[:, 0] == 0
    pe = np.array(acc["point_err"]) if acc["point_err"] else np.array([np.nan])
    return {
        "cases": n, "units": acc["units"],
        "analysed_fraction": float(np.mean([s in ("ok", "partial") for s in acc["status"]])) if acc["status"] else None,
        "status_counts": {s: acc["status"].count(s) for s in ("ok", "partial", "rejected", "failed")},
        "vertebrae_in_view": acc["in_view"],
        "right_level_fraction": acc["found"] / max(acc["in_view"], 1),
        "misplaced_or_mislabelled": acc["wrong"],
        "landmark_error_mm": {"median": float(np.median(pe)), "mean": float(np.mean(pe)), "p90": float(np.percentile(pe, 90))},
        "height_mae_mm": float(np.mean(acc["height_err"])) if acc["height_err"] else None,
        "genant_exact_fractured": float(np.mean(g[fx, 1] == g[fx, 0])) if fx.any() else None,
        "genant_zero_normal": float(np.mean(g[nm, 1] == 0)) if nm.any() else None,
        "fractured_vertebrae": int(fx.sum()), "normal_vertebrae": int(nm.sum()),
        "normal_graded_0": int((g[nm, 1] == 0).sum()), "fractured_graded_exact": int((g[fx, 1] == g[fx, 0]).sum()),
        # signed, points: our loss minus the true points' on our plane with our neighbours (``_loss_bias``)
        "height_loss_bias_pct": {k: (round(float(np.mean(e)), 4) if (e := [d for g_, d in acc.get("loss_err", [])
                                                                             if (g_ > 0) == (k == "fractured")]) else None)
                                 for k in ("fractured", "normal")},
        **({"fractured_in_view": _fracture_summary(acc["fx_rows"])} if acc.get("fx_rows") else {}),
        "pi_mae_deg": float(np.mean(acc["pi_err"])) if acc["pi_err"] else None, "pi_n": len(acc["pi_err"]),
        # every angle of the document against the same measure of the true points on our plane
        "angles": _angle_figures(acc), "angles_rule": ANGLE_RULE,
        # the same documents with every angle from every point (as before ungraded bodies' endplate
        # angles were withheld), split: those measured from an ungraded body's points, the rest; and
        # the document's angles at an ungraded level (its regional kyphosis: its neighbours' endplates)
        "angles_all_points": _angle_figures(acc, "angles_all_points"),
        "angles_all_points_from_ungraded": _angle_figures(acc, "angles_all_points", only="from_ungraded"),
        "angles_all_points_rest": _angle_figures(acc, "angles_all_points", but="from_ungraded"),
        "angles_all_points_from_kept_crushed": _angle_figures(acc, "angles_all_points", only="from_kept"),
        "angles_at_ungraded_levels": _angle_figures(acc, only="ungraded_own"),
        "pi_heads_found": acc["heads"],
        "curve_warned": sum(w for _, w, _ in acc.get("curve", [])),
        "lateral_deviation_mm_max": max((d for d, _, _ in acc.get("curve", [])), default=None),
        # the same on the straight spines (the phantom drawn without a sideways curve): every warning there is false
        "curve_warned_straight": sum(w for _, w, s in acc.get("curve", []) if s),
        "straight_spines": sum(s for _, _, s in acc.get("curve", [])),
        "lateral_deviation_mm_straight_max": max((d for d, _, s in acc.get("curve", []) if s), default=None),
        "lateral_deviation_mm_straight_mean": round(float(np.mean(ds)), 4) if (ds := [
            d for d, _, s in acc.get("curve", []) if s]) else None,
        # the femoral heads reported (any study, with or without PI): in-plane centre error against the
        # nearest true head (mm), radius error (mm), and how many lie over HEAD_OFF_MM from every true head
        "femoral_heads": _head_figures(acc.get("head_err", []), acc.get("head_err_3d", [])),
        # crushed bodies kept between their neighbours: how many, how many not wholly in the plane's field
        # (the radiographs' box= check) and not in view by the truth
        "kept_crushed_between": {"kept": len(kc := acc.get("kept_crushed", [])),
                                 "not_wholly_in_field": sum(not r[1] for r in kc),
                                 "not_in_view": sum(not r[2] for r in kc)},
        "seconds_per_unit_median": float(np.median(acc["seconds"])) if acc["seconds"] else None,
        # the plane detector's second looks: units where each ran ("run": not kept) or was kept, and
        # the wall seconds spent in them per unit (where any ran; all units)
        "second_looks": {"units": dict(sorted(acc.get("looks", {}).items())),
                         "seconds_when_run_median": float(np.median(ran)) if (ran := [t for t in acc.get(
                             "look_seconds", []) if t > 1e-3]) else None,
                         "seconds_per_unit_mean": float(np.mean(acc["look_seconds"])) if acc.get("look_seconds") else None},
        # --ct-drop-files: the levels at the gap (their true endplates within half a step of it) and the rest
        **({"gap": _gap_figures(acc["gap_rows"])} if acc.get("gap_rows") else {}),
    }


def _head_figures(errs: list[tuple[float, float]], errs_3d: list[float]) -> dict[str, Any]:
    e, e3 = np.array(errs, float).reshape(-1, 2), np.array(errs_3d, float)
    return {"reported": len(e), "off": int((e[:, 0] > HEAD_OFF_MM).sum()),
            "centre_err_mm_median": round(float(np.median(e[:, 0])), 3) if len(e) else None,
            "centre_err_mm_max": round(float(e[:, 0].max()), 3) if len(e) else None,
            "radius_err_mm_mean": round(float(e[:, 1].mean()), 3) if len(e) else None,
            "off_3d": int((e3 > HEAD_OFF_MM).sum()),
            "centre_err_3d_mm_median": round(float(np.median(e3)), 3) if len(e3) else None,
            "centre_err_3d_mm_max": round(float(e3.max()), 3) if len(e3) else None}


def _fracture_summary(rows: list[tuple[int, int, int, int]]) -> dict[str, Any]:
    """``--diagnose``: fractured bodies in view — how many graded, withheld, missing; exact among
    the graded; and the grades the true points would give on our plane (all levels in view / our
    neighbours only) for the same graded bodies."""
    r = np.array(rows, float).reshape(len(rows), -1)
    graded = r[:, 1] >= 0
    exact = int((r[graded, 1] == r[graded, 0]).sum())
    # our loss minus the phantom's (points of loss), over the graded fractured bodies (rows with both losses)
    d = (r[:, 5] - r[:, 4])[graded] if r.shape[1] >= 6 else np.zeros(0)
    return {"in_view": len(r), "graded": int(graded.sum()), "withheld": int((r[:, 1] == -1).sum()),
            "missing": int((r[:, 1] == -2).sum()), "graded_exact": exact,
            # exact among the graded, and over every fractured body in view (a withheld or missing body counts as not exact)
            "exact_of_graded": round(exact / graded.sum(), 4) if graded.any() else None,
            "exact_of_in_view": round(exact / len(r), 4) if len(r) else None,
            "graded_under": int((r[graded, 1] < r[graded, 0]).sum()), "graded_over": int((r[graded, 1] > r[graded, 0]).sum()),
            "loss_err_pct_mean": round(float(np.mean(d)), 3) if len(d) else None,
            "loss_err_pct_median": round(float(np.median(d)), 3) if len(d) else None,
            "under_read_over_5pt": int((d < -5).sum()),
            "true_points_our_plane_exact": int((r[graded, 2] == r[graded, 0]).sum()),
            "true_points_our_neighbours_exact": int((r[graded, 3] == r[graded, 0]).sum()),
            "true_points_our_plane_exact_all_in_view": int((r[:, 2] == r[:, 0]).sum())}


#: PlaneDetector's switchable second looks (``--without``); ``crushed_step``: ``bridge_retry`` asks for a
#: body from its old step (``plane_detector.RETRY_STEP``, 1.48) instead of ``RETRY_STEP_CRUSHED`` (1.42);
#: ``crushed_between`` is no second look but a rule after them (``plane_detector.keep_crushed_between``);
#: ``centreline_plain``: the MR centre line's coarse pass without infer.coarse's other looks of a weak
#: slice (``landmarks.volume._coarse_slices``; off = with them, as before the ninth session); ``stray_drop``:
#: the look without a named coarse body no fine placement held where the count is in doubt (``stray_plan``);
#: ``gross_gap``: no look but a rule, a body withheld with its placements far apart counting as two in a gap
SECOND_LOOKS = ("bridge_retry", "crushed_bridge_retry", "break_retry", "crushed_step", "break_drop", "unbridge",
                "crushed_between", "centreline_plain", "stray_drop", "gross_gap")


def _switch_off(detector: Any, name: str) -> None:
    """Turn one of ``SECOND_LOOKS`` off on a ``PlaneDetector``."""
    if name == "crushed_step":
        from sagittal.landmarks.plane_detector import RETRY_STEP

        detector.retry_step = RETRY_STEP
    else:
        setattr(detector, name, False)


def _is_off(detector: Any, name: str) -> bool:
    if name == "crushed_step":
        from sagittal.landmarks.plane_detector import RETRY_STEP

        return tuple(getattr(detector, "retry_step", ())) == RETRY_STEP
    return not getattr(detector, name, True)


def _range_error(args: argparse.Namespace) -> str | None:
    """What is wrong with ``--ct-pixel-mm`` / ``--ct-slice-mm`` (ranges the spacings are drawn from), if anything."""
    for flag, (lo, hi) in (("--ct-pixel-mm", args.ct_pixel_mm), ("--ct-slice-mm", args.ct_slice_mm)):
        if not (0.0 < lo <= hi) or not np.isfinite(hi):
            return f"{flag} {lo:g} {hi:g}: expected 0 < LO <= HI (mm), a range the spacing is drawn from"
    if not 0 <= args.ct_drop_files <= 8:
        return f"--ct-drop-files {args.ct_drop_files}: expected 0-8 files"
    if args.ct_drop_files and args.ct_tilt_deg and args.ct_tilt_deg[1] > 0:
        # review R17a: the gap and its levels are placed by LPS z, which a tilted slice's depth is not
        return "--ct-drop-files with --ct-tilt-deg: the gap is placed by height (z), not along a tilted slice's normal"
    tilt = args.ct_tilt_deg
    if tilt and not (0.0 <= tilt[0] <= tilt[1] <= 30.0):
        return f"--ct-tilt-deg {tilt[0]:g} {tilt[1]:g}: expected 0 <= LO <= HI <= 30 (deg)"
    if tilt and args.ct_thickness_ratio:
        return "--ct-tilt-deg with --ct-thickness-ratio: the phantom draws a tilted slab as a point sample only"
    if args.ct_thickness_ratio:
        lo, hi = args.ct_thickness_ratio
        if not (1.0 <= lo <= hi <= 4.0):
            return f"--ct-thickness-ratio {lo:g} {hi:g}: expected 1 <= LO <= HI <= 4 (times the slice spacing)"
        if hi * args.ct_slice_mm[1] > 20.0:
            return (f"--ct-thickness-ratio {lo:g} {hi:g} with --ct-slice-mm up to {args.ct_slice_mm[1]:g}: slices up to "
                    f"{hi * args.ct_slice_mm[1]:g} mm thick; the phantom draws at most 20 mm")
    return None


def _detectors(args: argparse.Namespace, ap: argparse.ArgumentParser) -> tuple[list[Any], list[float | None]]:
    """The detectors to score (``--weights``, then one per ``--without``; each twice with ``--grade-axis both``)
    and, per detector, ``batch.volume.finish``'s ``grade_axis_max_mm``."""
    detectors = [kind.load_plane_model(w, "cpu", 1) for w in args.weights]
    for names in args.without:  # NAME or NAME,NAME,...: one run with each of them off
        if not set(names.split(",")) <= set(SECOND_LOOKS):
            ap.error(f"--without {names}: choose from {', '.join(SECOND_LOOKS)} (comma-joined for one run)")
        detectors.append(kind.load_plane_model(args.weights[0], "cpu", 1))
        for name in names.split(","):
            _switch_off(detectors[-1], name)
    grade_axis: list[float | None] = [None if args.grade_axis == "off" else GRADE_AXIS_SAMPLING_MAX_MM] * len(detectors)
    if args.grade_axis == "both":
        detectors = [d for d in detectors for _ in (0, 1)]
        grade_axis = [None, GRADE_AXIS_SAMPLING_MAX_MM] * (len(detectors) // 2)
    for detector in detectors:
        if args.radiograph_limits:
            detector.consistency_limits = {}
        if args.consistency != "default":
            detector.consistency = args.consistency == "on"
    return detectors, grade_axis


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-ct", type=int, default=30)
    ap.add_argument("--n-mr", type=int, default=30)
    ap.add_argument("--first-seed", type=int, default=0)
    ap.add_argument("--weights", nargs="+", default=[None],
                    help="plane model weights (default: the packaged landmarks_planes.pt); several are scored on "
                         "the same cases, rendered once, and reported under 'runs' in the given order")
    ap.add_argument("--json", help="also write the figures here")
    ap.add_argument("--fracture-rate", type=float, default=0.33,
                    help="share of spines drawn with 1-3 fractures (default 0.33; 1.0 scores grading on many fractured bodies)")
    ap.add_argument("--mr-wide", type=float, default=0.0,
                    help="share of MR studies with a slab wide enough for the femoral heads (default 0: none; PI on MR)")
    ap.add_argument("--no-pelvis", action="store_true",
                    help="the phantom without its bony pelvis and proximal femora (the femoral heads alone, as before "
                         "the twelfth session); figures with and without are on different phantoms")
    ap.add_argument("--ct-pixel-mm", type=float, nargs=2, default=CT_PIXEL_MM, metavar=("LO", "HI"),
                    help="the CT's in-plane pixel spacing is drawn from this range (default 1.0 2.0; e.g. 3 3: coarse "
                         "series, outside the evaluated range; the same draws, so the same spines and fields)")
    ap.add_argument("--ct-thickness-ratio", type=float, nargs=2, default=None, metavar=("LO", "HI"),
                    help="each CT slice averages a slab this many times its spacing thick, drawn from this range "
                         "(an overlapping reconstruction, SliceThickness above the spacing; default: each slice is "
                         "its centre's section, as before the sixteenth session; the same spines and noise)")
    ap.add_argument("--ct-tilt-deg", type=float, nargs=2, default=None, metavar=("LO", "HI"),
                    help="each CT taken with a gantry tilt of LO-HI deg, either sign (the same spines and noise; "
                         "the pipeline de-shears it, io.volume.deshear); default none")
    ap.add_argument("--ct-drop-files", type=int, default=0, metavar="K",
                    help="delete K consecutive axial CT slice files in each case (files lost from an export: a gap), "
                         "at a height drawn between the bodies in view; figures 'gap': the levels at it and elsewhere")
    ap.add_argument("--ct-aorta", choices=tuple(AORTA_LOOKS), default=None,
                    help="each CT drawn with an aorta and iliac arteries in front of the spine, a look the plane model "
                         "never trained on: contrast (lumen 150-450 HU) or calcified (plaques of 500-1000 HU in its "
                         "wall); the same spines and noise; default none")
    ap.add_argument("--ct-slice-mm", type=float, nargs=2, default=CT_SLICE_MM, metavar=("LO", "HI"),
                    help="the CT's slice spacing is drawn from this range (default 1.5 5.0)")
    ap.add_argument("--sampling-edges", type=float, nargs="+", default=SAMPLING_EDGES, metavar="MM",
                    help="the figures are also split by the series' sampling along the spine's axis (an axial CT's slice "
                         "spacing, a sagittal series' row spacing) into bins with these edges (mm; by_axis_sampling)")
    ap.add_argument("--grade-axis", choices=("on", "off", "both"), default="on",
                    help="the rule that a series sampling the spine's axis GRADE_AXIS_SAMPLING_MAX_MM or more apart is "
                         "not graded (report.analysis, image.axis_sampling_mm): on (the runtime), off, or both (each detector "
                         "scored off then on, on the same detections; 'runs' in that order)")
    ap.add_argument("--diagnose", action="store_true",
                    help="print, for every vertebra in view that is missing, the stage that lost it")
    ap.add_argument("--consistency", choices=("default", "on", "off"), default="default",
                    help="the refinement's two-look stability check (default: as the runtime runs it)")
    ap.add_argument("--radiograph-limits", action="store_true",
                    help="withhold levels at the radiograph model's consistency limits (the plane model's before its own)")
    ap.add_argument("--without", action="append", default=[], metavar="|".join(SECOND_LOOKS),
                    help="also score the first weights with this second look of PlaneDetector off (one more run on "
                         "the same cases, after the others; repeatable; comma-joined names: one run with all of them off)")
    args = ap.parse_args(argv)
    if why := _range_error(args):
        ap.error(why)
    detectors, grade_axis = _detectors(args, ap)
    reports: list[dict[str, Any]] = [
        {"weights": str(d.weights), "first_seed": args.first_seed, "stream": EVAL_STREAM,
         "fracture_rate": args.fracture_rate, "mr_wide": args.mr_wide, "pelvis": not args.no_pelvis,
         "ct_pixel_mm": list(args.ct_pixel_mm), "ct_slice_mm": list(args.ct_slice_mm),
         "ct_thickness_ratio": args.ct_thickness_ratio, "ct_tilt_deg": args.ct_tilt_deg, "ct_drop_files": args.ct_drop_files,
         "ct_aorta": args.ct_aorta,
         "consistency_check": bool(d.consistency),
         "consistency_limits": dict(d.consistency_limits),
         "second_looks_off": [n for n in SECOND_LOOKS if _is_off(d, n)], "grade_axis_max_mm": g}
        for d, g in zip(detectors, grade_axis, strict=True)]
    with tempfile.TemporaryDirectory(prefix="sagittal-eval-planes-") as tmp:
        for modality, n in (("CT", args.n_ct), ("MR", args.n_mr)):
            if n:
                figures = evaluate(modality, n, args.first_seed, detectors, Path(tmp), args.diagnose,
                                   args.fracture_rate, args.mr_wide, not args.no_pelvis,
                                   tuple(args.ct_pixel_mm), tuple(args.ct_slice_mm), tuple(sorted(args.sampling_edges)),
                                   grade_axis, ct_thickness=tuple(args.ct_thickness_ratio) if args.ct_thickness_ratio else None,
                                   ct_tilt=tuple(args.ct_tilt_deg) if args.ct_tilt_deg else None,
                                   ct_drop=args.ct_drop_files, ct_aorta=args.ct_aorta)
                for report, fig in zip(reports, figures, strict=True):
                    report[modality] = fig
    report = reports[0] if len(reports) == 1 else {"runs": reports}
    print(json.dumps(report, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
