"""The ``volume`` kind of unit: one CT series or one MR study's sagittal series → one
analysis document on the spine's plane.

Planning groups series with ``io.units.plan_volumes`` (a study's axial CT and its sagittal
reformat are analysed once, from the axial; an MR study's T1/T2/STIR of one frame of reference
together). Preparing loads the landmark series' volume, finds the spine's centre line (CT: bone;
MR: the plane model's coarse stage on every slice), and reformats the curved mid-sagittal plane
(``io.volume.spine_plane``); the other MR sequences are sampled on the same grid. Finishing
finds the femoral heads in 3-D (CT), builds the document (``report.analysis``) with ``image.plane``,
``image.patient_position`` and ``source.related_series``, and applies the posture rule: SVA
and T1PA are null unless standing.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..io.discover import SetAside, source_demographics
from ..io.volume import GAP_FACTOR, RESAMPLED_NOTE, TILT_NOTE  # a gap; how a regridded or de-sheared series is told
from ..levels import LEVEL_AXIS_SAMPLING, POINT_NAMES, UNGRADED  # the levels' own sampling; those not graded
from ..report.analysis import GRADE_AXIS_SAMPLING_MAX_MM  # a series this coarse along the spine is not graded
from .units import Detection, Prepared, Unit, UnitKind, register_kind, register_model

KIND = "volume"
MODEL = "planes"
#: parameters measured only standing (CONTRACT: null with a warning unless standing)
STANDING_ONLY = ("sagittal_vertical_axis_mm", "t1_pelvic_angle_deg")
#: seconds of this kind's own stages for the last unit prepared and finished in this process
#: (decode, centreline, reformat, femoral_heads), for benchmarks
LAST_TIMINGS: dict[str, float] = {}



def load_plane_model(weights: Any = None, device: str = "cpu", threads: int | None = None) -> Any:
    """The plane model's detector (``landmarks.volume.planes_weights_path``: ``weights``, else
    ``$SAGITTAL_PLANES_WEIGHTS``, else the packaged ``landmarks_planes.pt``), with the plane
    model's two-tier consistency check (``landmarks.plane_detector``)."""
    from ..landmarks.plane_detector import PlaneDetector
    from ..landmarks.volume import planes_weights_path

    return PlaneDetector(planes_weights_path(weights), device=device, threads=threads)


def plan(series: Sequence[Any]) -> tuple[list[Unit], list[SetAside]]:
    """One unit per CT frame of reference and per MR study's sagittal set (``io.units``)."""
    from ..io.units import plan_volumes

    vunits, aside = plan_volumes(list(series))
    units = [Unit(KIND, tuple(v.files), v.patient_id, v.study_uid, v.name, data=v) for v in vunits]
    return units, aside


def _source(v: Any) -> dict[str, Any]:
    s = v.series[0]
    h = s.headers[0]
    return {"path": h.path, "modality": v.modality, "study_instance_uid": v.study_uid,
            "series_instance_uid": s.series_uid,
            "sop_instance_uids": [x.sop_instance_uid for ser in v.series for x in ser.headers],
            "patient_id": h.patient_id or None, "study_date": h.study_key[0] or None,
            "related_series": v.related_series(),
            **source_demographics(h)}  # study_time, patient_sex, patient_age_years (the research cohort)


def _load(series: Any) -> Any:
    """A series' volume: the fast path (``io.volume.read_slices_fast``) when its slices allow it,
    else ``io.series.load_volume`` slice by slice (every transfer syntax and oddity)."""
    from ..io.series import LoadedVolume, load_volume
    from ..io.volume import deshear, even_slices, read_slices_fast, slice_geometry

    hs = series.headers
    loaded = None
    if len(hs) > 1 and all(h.frames == 1 for h in hs):
        geom = slice_geometry([h.position for h in hs], [h.orientation for h in hs], [h.pixel_spacing for h in hs],
                              hs[0].path)
        try:
            voxels = read_slices_fast([hs[k].path for k in geom.order])
        except Exception:  # anything unusual: the careful path below names the file and the reason
            voxels = None
        if voxels is not None:
            loaded = LoadedVolume(voxels, geom, "pydicom")
    loaded = loaded or load_volume(series)
    # a gantry tilt, then a gap or mixed steps: the grid the affine assumes
    voxels, geom = deshear(loaded.voxels, loaded.geometry, str(hs[0].path) if hs else "series")
    voxels, geom = even_slices(voxels, geom, str(hs[0].path) if hs else "series")
    return loaded if geom is loaded.geometry else LoadedVolume(voxels, geom, loaded.decoder)


def axis_sampling_mm(geom: Any) -> float:
    """How finely the series samples the spine's axis (mm): the spacing of the volume's axis that runs
    closest to the patient's superior-inferior (``io.volume._axes_by_anatomy``) - an axial series' slice
    spacing (the even grid's where it was resampled over a gap or thick and thin parts: those parts are
    judged per level, ``level_axis_sampling_mm``), a sagittal or coronal series' row spacing - over that
    axis's cosine with superior-inferior (a tilted gantry's slices lie further apart along the body than
    along their normal)."""
    from ..io.volume import _axes_by_anatomy

    si = _axes_by_anatomy(geom)[0]
    step = (geom.slice_spacing_mm or 0.0, *geom.pixel_spacing_mm)[si]
    return float(step) / _along_axis(geom, si)


def _along_axis(geom: Any, axis: int) -> float:
    """The cosine of the volume's ``axis`` (0 slices, 1 rows, 2 columns) with superior-inferior (LPS z)."""
    return max(abs(float((geom.normal, geom.col_dir, geom.row_dir)[axis][2])), 1e-6)


def level_axis_sampling_mm(geom: Any, plane: Any, vertebrae_px: dict[str, np.ndarray]) -> dict[str, float]:
    """Per reported level (``vertebrae_px``: level → its six points ``(6, 2)`` on ``plane``'s image), the
    coarsest step between the series' own slices within half a grid step of any of its points, along the
    spine's axis (as ``axis_sampling_mm``), where that is coarser than the series' grid: the levels whose
    endplates lie in a gap of missing slices, or in the thick part of a series with thick and thin parts
    (``io.volume.even_slices`` keeps the slices' own depths, ``source_depths_mm``; within 5 % of the grid is
    rounding, unless it reaches ``GRADE_AXIS_SAMPLING_MAX_MM`` where the grid does not). A gap elsewhere (across
    a body's middle, or between bodies) leaves a level as it is. ``{}`` for an evenly spaced series, or one
    whose rows, not its slices, run along the spine."""
    from ..io.volume import _axes_by_anatomy

    depths, grid = geom.source_depths_mm, geom.slice_spacing_mm
    if depths is None or not grid or _axes_by_anatomy(geom)[0] != 0 or not vertebrae_px:
        return {}
    d = np.asarray(depths, float)
    steps = np.diff(d)
    out: dict[str, float] = {}
    for level, px in vertebrae_px.items():
        z = plane.to_lps_sampled(np.asarray(px, float)) @ np.asarray(geom.normal, float)  # (6,) along the normal
        # the steps [d[k], d[k+1]] that meet [z - grid/2, z + grid/2]
        first = np.clip(np.searchsorted(d, z - grid / 2, side="right") - 1, 0, len(steps) - 1)
        last = np.clip(np.searchsorted(d, z + grid / 2, side="left") - 1, first, len(steps) - 1)
        worst = max(float(steps[a:b + 1].max()) for a, b in zip(first, last, strict=True))
        along = worst / _along_axis(geom, 0)
        # as even_slices: within 5 % is the series' own step - unless that crosses the grading limit (review
        # R17a: parts 3.8 and 4.15 mm apart, a 3.98-mm grid: the 4.15-mm part's levels must be listed)
        if worst > 1.05 * grid or along >= GRADE_AXIS_SAMPLING_MAX_MM > grid / _along_axis(geom, 0):
            out[level] = round(along, 3)
    return out


def prepare(unit: Unit, detector: Any = None) -> Prepared:
    """Load the unit's volumes and reformat the spine's plane (the MR centre line runs the plane
    model's coarse stage: ``detector``, else one loaded here)."""
    from ..io.units import posture
    from ..io.volume import MR_SNAP_DEG, SNAP_DEG, ct_centreline, spine_plane
    from ..landmarks.volume import PlaneImage, plane_input, slice_centreline

    v = unit.data
    t = time.perf_counter()
    timings: dict[str, float] = {}
    loaded = [_load(s) for s in v.series]
    timings["decode"] = time.perf_counter() - t
    t = time.perf_counter()
    main = loaded[0]
    modality = v.modality
    if modality == "CT":
        line = ct_centreline(main.voxels, main.geometry)
    else:
        line = slice_centreline(detector or load_plane_model(), main.voxels, main.geometry, modality)
    timings["centreline"] = time.perf_counter() - t
    t = time.perf_counter()
    # an MR's sagittal series keeps its own plane (io.volume.MR_SNAP_DEG), the rows following the line
    plane = spine_plane(main.voxels, main.geometry, line, snap_deg=SNAP_DEG if modality == "CT" else MR_SNAP_DEG)
    planes = {v.roles[0]: plane.image}
    for role, other in zip(v.roles[1:], loaded[1:], strict=True):
        planes[role] = plane.sample(other.voxels, other.geometry)
    timings["reformat"] = time.perf_counter() - t
    rows, cols = plane.image.shape
    info = {"rows": int(rows), "columns": int(cols), "pixel_spacing_mm": [plane.spacing_mm, plane.spacing_mm],
            "spacing_source": "volume", "anterior": plane.anterior, "plane": plane.plane_json(),
            # how finely the series samples the spine's axis: too coarse, no grades (report.analysis)
            "axis_sampling_mm": round(axis_sampling_mm(main.geometry), 3),
            "patient_position": posture(v.patient_position)}
    warnings = list(v.notes) + list(plane.warnings)
    for s in v.series:
        warnings += [w for w in s.warnings if w not in warnings]
    # a de-sheared series is named (io.volume.deshear)
    tilted = {w: [r for r, s in zip(v.roles, v.series, strict=True) if w in s.warnings] for w in warnings
              if w.startswith(TILT_NOTE)}
    warnings = [f"{', '.join(tilted[w])} series: {w}" if tilted.get(w) else w for w in warnings]
    # a series put on an even grid (io.volume.even_slices) is named; one with a gap (a step over GAP_FACTOR of its
    # spacing: files missing, not positions rounded in the header) is not read for marrow findings (_marrow_findings)
    regridded = [(role, lv.geometry) for role, lv in zip(v.roles, loaded, strict=True)
                 if lv.geometry.largest_step_mm is not None]
    warnings += [f"{role} series: {w}" for role, g in regridded for w in g.warnings if w.startswith(RESAMPLED_NOTE)]
    resampled = [role for role, g in regridded if g.largest_step_mm > GAP_FACTOR * (g.slice_spacing_mm or 0.0)]
    if info["patient_position"] == "unknown":
        warnings.append(f"PatientPosition {v.patient_position or '(absent)'}: the posture is unknown")
    LAST_TIMINGS.clear()
    LAST_TIMINGS.update(timings)
    extra = {"plane": plane, "modality": modality, "planes": planes, "timings": timings, "resampled": resampled,
             "volume": main.voxels if modality == "CT" else None, "geometry": main.geometry,
             # MR: every sequence's volume, for the femoral heads (searched on T1 first)
             "volumes": {role: (lv.voxels, lv.geometry) for role, lv in zip(v.roles, loaded, strict=True)}
             if modality != "CT" else {}}
    # the plane tagged with its modality: CT planes get the plane model's CT refinement (plane_detector.REFINE_CT)
    return Prepared(PlaneImage(plane_input(plane.image, modality), modality), info, _source(v), warnings,
                    facing_hint=plane.anterior, extra=extra)


def finish(prep: Prepared, detection: Detection, grade_axis_max_mm: float | None = GRADE_AXIS_SAMPLING_MAX_MM) -> dict[str, Any]:
    """The analysis document of a CT series or MR study from the plane model's landmarks.
    ``grade_axis_max_mm``: a series sampling the spine's axis that coarsely or worse (``image.axis_sampling_mm``)
    is not graded (``report.analysis.GRADE_AXIS_SAMPLING_MAX_MM`` by default; ``None``: graded whatever its
    sampling, as before the fifteenth session)."""
    from ..io.volume import CURVE_WARNING_START, curve_warning
    from ..landmarks.volume import _head_landmarks
    from ..report.analysis import REQUIRED_PARAMETERS, analysis_document

    lm, _, lm_warnings = detection
    # levels whose points are too unsteady to grade (landmarks.plane_detector): analysis_document
    # reports them ungraded and grades their neighbours without them; an empty map is left out
    lm = {k: v for k, v in lm.items() if k != UNGRADED or v}
    x = prep.extra
    plane = x["plane"]
    # levels whose endplates lie where the series' own slices are further apart than its grid (a gap):
    # graded by their own sampling (report.analysis), the others by the series'
    by_level = level_axis_sampling_mm(x["geometry"], plane, {lv: np.array([p[n] for n in POINT_NAMES], float)
                                                              for lv, p in lm["vertebrae"].items()})
    if by_level:
        lm[LEVEL_AXIS_SAMPLING] = by_level
    # the plane's curve where the spine is reported: below S1 its centre line follows the pelvis
    dev = _spine_deviation_mm(plane, lm)
    warnings = [w for w in prep.warnings if not w.startswith(CURVE_WARNING_START)]
    warnings += [w for w in (curve_warning(dev),) if w] + list(lm_warnings)
    t = time.perf_counter()
    heads = _femoral_heads(lm, x, warnings)
    x["timings"]["femoral_heads"] = LAST_TIMINGS["femoral_heads"] = time.perf_counter() - t
    x["heads_lps"] = [np.asarray(h.centre_lps, float) for h in heads]  # 3-D centres, for scripts/eval_planes.py
    lm = dict(lm, femoral_heads=_head_landmarks(plane, heads))
    info = dict(prep.image_info)
    doc = analysis_document({k: info[k] for k in ("rows", "columns", "pixel_spacing_mm", "spacing_source", "anterior",
                                                  "axis_sampling_mm") if k in info},
                            lm, source=prep.source, warnings=warnings,
                            grade_axis_max_mm=grade_axis_max_mm)
    doc["image"].update(plane=info["plane"], patient_position=info["patient_position"])
    if info["patient_position"] != "standing":
        for key in STANDING_ONLY:
            if doc["parameters"].get(key) is not None:
                doc["parameters"][key] = None
            doc["warnings"] = [w for w in doc["warnings"] if not w.startswith(f"{key} is null")]
            doc["warnings"].append(f"{key} is null: the {x['modality']} was not taken standing "
                                   f"({info['patient_position']}); it is defined for a standing patient only")
        doc["parameters"]["srs_schwab_sva"] = None
    if not lm["vertebrae"] and not lm["s1_endplate"]:
        doc["status"] = "rejected"
        doc["warnings"].append("no spine found: nothing is reported")
    elif doc["status"] != "rejected":
        measurable = [k for k in REQUIRED_PARAMETERS if k not in STANDING_ONLY or info["patient_position"] == "standing"]
        doc["status"] = "ok" if all(doc["parameters"].get(k) is not None for k in measurable) else "partial"
    doc["image"]["lateral_deviation_mm"] = round(dev, 2)
    _marrow_findings(doc, lm, x)
    return doc


def _spine_deviation_mm(plane: Any, lm: dict[str, Any]) -> float:
    """The plane's largest lateral offset (mm) over the rows from the highest reported point to the
    lowest (bodies and S1 endplate); the whole plane's where nothing is reported."""
    ys = [float(p[n][1]) for p in lm["vertebrae"].values() for n in POINT_NAMES]
    if lm.get("s1_endplate"):
        ys += [float(lm["s1_endplate"][k][1]) for k in ("anterior", "posterior")]
    if not ys:
        return float(plane.max_lateral_deviation_mm)
    return float(plane.lateral_deviation_between_mm(min(ys), max(ys)))


def _femoral_heads(lm: dict[str, Any], x: dict[str, Any], warnings: list[str]) -> list[Any]:
    """The femoral heads found in 3-D caudal to the S1 endplate (``landmarks.volume``): on CT by
    bone, on MR by marrow like the bodies' on the first sequence of ``MR_HEAD_SEQUENCES``; where fewer
    than two are found, a warning per side says why (``landmarks.volume.HEAD_WHY``)."""
    from ..landmarks.volume import MR_HEAD_SEQUENCES, ct_femoral_heads, marrow_reference, mr_femoral_heads
    what = "CT" if x["modality"] == "CT" else "MR"
    if not lm.get("s1_endplate"):
        warnings.append(f"the S1 endplate was not found: the femoral heads were not searched in the {what}")
        return []
    plane = x["plane"]
    s1 = np.array([lm["s1_endplate"]["anterior"], lm["s1_endplate"]["posterior"]], float)
    s1_mid = plane.to_lps_sampled(s1.mean(axis=0))
    why: list[str] = []  # per side without a head, the reason (``landmarks.volume.HEAD_WHY``)
    if what == "CT":
        heads = ct_femoral_heads(x["volume"], x["geometry"], plane, s1_mid, why=why)
    else:
        role = next((r for r in MR_HEAD_SEQUENCES if r in x["volumes"]), None)
        pts = {lv: np.array([v[k] for k in POINT_NAMES], float) for lv, v in lm["vertebrae"].items()}
        marrow = marrow_reference(x["planes"][role], pts) if role is not None else None
        if role is None or marrow is None or marrow <= 0:
            warnings.append("the femoral heads were not searched on the MR: no vertebral marrow to compare them with")
            return []
        vox, geom = x["volumes"][role]
        heads = mr_femoral_heads(vox, geom, plane, s1_mid, marrow, why=why)
        if heads:
            warnings.append(f"the femoral heads were found on the {role.upper()} as marrow like the vertebral bodies' "
                            "(models/README.md: less accurate than on CT); check them on the overlay before using PI")
    if not heads:
        warnings.append(f"no femoral head found in the {what}'s field caudal to S1" + (
            "" if what == "CT" else f" ({str(role).upper()}; a sagittal slab reaches them only when it spans about 85 mm "
                                    "either side of the midline)"))
    if len(heads) < 2:
        warnings += [f"{reason} ({what})" for reason in why]
    return heads


def _marrow_findings(doc: dict[str, Any], lm: dict[str, Any], x: dict[str, Any]) -> None:
    """Oedema and clefts per body (findings.oedema) from the planes of every sequence, into the
    document's vertebrae; the oedema masks stay in ``x`` for the overlays."""
    from ..findings.oedema import MR_SEQUENCES, assess_ct_clefts, assess_mr
    pts = {lv: np.array([v[k] for k in POINT_NAMES], float) for lv, v in lm["vertebrae"].items()}
    by_level = {v["level"]: v for v in doc["vertebrae"]}
    pts = {lv: p for lv, p in pts.items() if lv in by_level}
    if not pts:
        return
    spacing = (float(doc["image"]["pixel_spacing_mm"][0]), float(doc["image"]["pixel_spacing_mm"][1]))
    if x.get("resampled"):
        # interpolated slices read a bright or dark signal milder: "no oedema" or "no cleft" would be made up
        doc["warnings"].append(f"slices missing from the {', '.join(x['resampled'])} series (resampled over the gap): "
                               "marrow oedema and clefts not judged")
        return
    if x["modality"] == "CT":
        # the main series' plane, whatever its role (an axial "ct", or a sagittal/coronal/oblique series)
        for lv, cleft in assess_ct_clefts(x["plane"].image, pts, spacing).items():
            if cleft is not None:
                by_level[lv]["cleft"] = cleft
        return
    planes = {role.upper(): img for role, img in x["planes"].items() if role.upper() in MR_SEQUENCES}
    if not planes:
        doc["warnings"].append("no T1, T2, STIR or fat-suppressed T2 series: marrow oedema and clefts not judged")
        return
    found = assess_mr(planes, pts, spacing)
    masks = {}
    for lv, body in found.bodies.items():
        if body.oedema is not None:
            by_level[lv]["oedema"] = body.oedema
        if body.cleft is not None:
            by_level[lv]["cleft"] = body.cleft
        if body.oedema_mask is not None:
            masks[lv] = body.oedema_mask
        doc["warnings"].extend(body.warnings)
    doc["warnings"].extend(found.warnings)
    x["oedema_masks"] = masks


#: overlays of planes with fewer rows are drawn on the plane enlarged by a whole factor
OVERLAY_MIN_ROWS = 640


def sequence_overlays(prep: Prepared, doc: dict[str, Any]) -> dict[str, bytes]:
    """One overlay PNG per MR sequence used (``{"<role>.png": bytes}``), all on the same grid."""
    import cv2

    from ..report.overlay import render_overlay

    out: dict[str, bytes] = {}
    if prep.extra.get("modality") != "MR":
        return out
    masks = prep.extra.get("oedema_masks") or {}
    for role, img in prep.extra["planes"].items():
        up = max(1, int(np.ceil(OVERLAY_MIN_ROWS / img.shape[0])))  # small MR planes: draw at a legible size
        big = cv2.resize(np.asarray(img, np.float32), None, fx=up, fy=up, interpolation=cv2.INTER_CUBIC) if up > 1 else img
        picture = render_overlay(big, doc, px_scale=float(up))
        if masks:  # the oedematous region of each body, outlined in magenta
            union = np.any(np.stack(list(masks.values())), axis=0).astype(np.uint8)
            union = cv2.resize(union, (picture.shape[1], picture.shape[0]), interpolation=cv2.INTER_NEAREST)
            contours, _ = cv2.findContours(union, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
            cv2.drawContours(picture, contours, -1, (255, 0, 255), 1, cv2.LINE_AA)
        ok, png = cv2.imencode(".png", picture)
        if ok:
            out[f"{role}.png"] = bytes(png.tobytes())
    return out


register_model(MODEL, load_plane_model)
register_kind(UnitKind(KIND, plan, prepare, finish, model=MODEL, needs_detector=True, extra_files=sequence_overlays))
