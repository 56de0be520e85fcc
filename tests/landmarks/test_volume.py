"""CT/MR analysis around the plane model: the femoral heads found in 3-D and projected onto the
spine's plane (one head in the field: PI from it, with the warning), the posture rule, and the
document against the schema — with the phantom's true landmarks standing in for the model, so
that these tests check the geometry, not the model's accuracy (``scripts/eval_planes.py`` does)."""

from __future__ import annotations

import jsonschema
import numpy as np
import pytest

from sagittal.batch import volume as kind
from sagittal.io.series import scan_export
from sagittal.landmarks.volume import ct_femoral_heads
from sagittal.levels import LEVELS, POINT_NAMES
from sagittal.phantom import build_spine, sample_spec
from sagittal.phantom.dicom import StudyInfo
from sagittal.phantom.generate import write_volume
from sagittal.phantom.volume import render_ct
from sagittal.report.analysis import load_schema


@pytest.fixture(scope="module")
def spine():
    return build_spine(sample_spec(np.random.default_rng(31), n_fractures=0))


def _unit(tmp_path, spine, **render):
    ct = render_ct(spine, np.random.default_rng(4), pixel_spacing_mm=2.5, slice_mm=4.0, noise_hu=8.0, top_level="T11",
                   **render)
    write_volume(ct, spine, tmp_path, "ct", StudyInfo.make("heads", "PHHEAD"), "heads", frame_key="heads")
    (unit,), _ = kind.plan(scan_export([tmp_path], decode_pixels=False).series)
    return ct, unit


def _true_detection(ct, spine, plane) -> tuple[dict, str, list[str]]:
    """The phantom's landmarks on the plane, as the model would report them (no femoral heads:
    the plane model does not see them; ``finish`` finds them in 3-D)."""
    verts = {}
    for i, level in enumerate(LEVELS):
        xy = plane.from_lps(ct.sagittal_to_lps(spine.points_mm[i]))
        if (xy[:, 1] > 2).all() and (xy[:, 1] < plane.image.shape[0] - 3).all():
            verts[level] = {n: [float(v) for v in xy[k]] for k, n in enumerate(POINT_NAMES)}
    s1 = plane.from_lps(ct.sagittal_to_lps(spine.s1_mm))
    return ({"vertebrae": verts, "s1_endplate": {"anterior": list(map(float, s1[0])), "posterior": list(map(float, s1[1]))},
             "femoral_heads": []}, plane.anterior, [])


@pytest.mark.slow
def test_both_heads_found_in_3d_and_pi_from_their_projection(tmp_path, spine):
    ct, unit = _unit(tmp_path, spine, matrix=160)
    prep = kind.prepare(unit)
    assert prep.image.modality == "CT"  # the plane model refines it with its CT stage (plane_detector.REFINE_CT)
    doc = kind.finish(prep, _true_detection(ct, spine, prep.extra["plane"]))
    jsonschema.validate(doc, load_schema())
    assert len(doc["landmarks"]["femoral_heads"]) == 2
    # their 3-D centres as found, kept for scripts/eval_planes.py, each at a true head
    truth = [ct.sagittal_to_lps(spine.femoral_centers_mm[k], lateral_mm=s * 85.0) for k, s in enumerate((1.0, -1.0))]
    assert len(prep.extra["heads_lps"]) == 2
    assert all(min(np.linalg.norm(c - t) for t in truth) < 2.5 for c in prep.extra["heads_lps"])
    # a straight spine: below the sacrum the bone nearest the midline is the pelvis's, which is no curve of the
    # spine: the centre line stops at the sacrum (io.volume._spine_run), so no row strays, and neither the warning
    # nor the deviation would count rows below S1
    plane = prep.extra["plane"]
    assert plane.max_lateral_deviation_mm <= 1.5
    assert doc["image"]["lateral_deviation_mm"] <= 1.0
    assert not any(w.startswith("the spine curves") for w in doc["warnings"])
    assert doc["parameters"]["pelvic_incidence_deg"] == pytest.approx(spine.parameters["pelvic_incidence_deg"], abs=2.0)
    assert doc["parameters"]["sacral_slope_deg"] == pytest.approx(spine.parameters["sacral_slope_deg"], abs=1.0)
    # supine: SVA and T1PA null with the reason; the rest measured for the posture
    assert doc["image"]["patient_position"] == "supine" and doc["image"]["plane"]["image_orientation_patient"]
    assert doc["parameters"]["sagittal_vertical_axis_mm"] is None
    assert any(w.startswith("sagittal_vertical_axis_mm is null") and "standing" in w for w in doc["warnings"])
    assert doc["source"]["modality"] == "CT" and len(doc["source"]["sop_instance_uids"]) == len(unit.files)


@pytest.mark.slow
def test_one_head_in_the_field_gives_pi_with_the_warning(tmp_path, spine):
    # a narrow field moved to the patient's left: the right femoral head (85 mm to the right) is out
    ct, unit = _unit(tmp_path, spine, matrix=64, lateral_centre_mm=40.0)
    prep = kind.prepare(unit)
    plane = prep.extra["plane"]
    s1_mid = ct.sagittal_to_lps(spine.s1_mm.mean(axis=0))
    heads = ct_femoral_heads(prep.extra["volume"], prep.extra["geometry"], plane, s1_mid)
    assert len(heads) == 1
    left = ct.sagittal_to_lps(spine.femoral_centers_mm[0], lateral_mm=85.0)  # the head on the patient's left (+X)
    assert np.linalg.norm(heads[0].centre_lps - left) < 2.5
    assert heads[0].radius_mm == pytest.approx(spine.femoral_radii_mm[0], abs=2.5)
    doc = kind.finish(prep, _true_detection(ct, spine, plane))
    jsonschema.validate(doc, load_schema())
    assert len(doc["landmarks"]["femoral_heads"]) == 1
    assert doc["parameters"]["pelvic_incidence_deg"] is not None
    assert any("one femoral head" in w for w in doc["warnings"])
    # and why the other is missing, per side (landmarks.volume.HEAD_WHY, through batch.volume._femoral_heads)
    assert any(w.startswith("no right femoral head: ") and w.endswith("(CT)") for w in doc["warnings"])
    # one head instead of the axis between two: PI is off by the heads' separation in the plane only
    assert doc["parameters"]["pelvic_incidence_deg"] == pytest.approx(spine.parameters["pelvic_incidence_deg"], abs=6.0)


@pytest.mark.slow
def test_sample_patient_ct_and_mr_are_analysed(tmp_path):
    """``sagittal analyze`` on PHC (acute L1 fracture: DX, axial CT, sagittal MR T1 + STIR): its CT
    and MR get analysis documents on their spine planes, valid against the schema."""
    import json
    from pathlib import Path

    from sagittal.cli import main

    sample = Path(__file__).resolve().parents[2] / "sample_dicom" / "PHC" / "study1"
    assert main(["analyze", str(sample), "-o", str(tmp_path / "out")]) == 0
    docs = [json.loads(p.read_text()) for p in (tmp_path / "out").rglob("*.json")]
    docs = [d for d in docs if d.get("schema") == "sagittal.analysis/1"]
    by = {}
    for d in docs:
        jsonschema.validate(d, load_schema())
        by.setdefault(d["source"]["modality"], []).append(d)
    assert set(by) >= {"DX", "CT", "MR"}
    for d in by["CT"] + by["MR"]:
        assert d["status"] in ("ok", "partial") and d["image"]["plane"] and d["image"]["patient_position"] == "supine"
        assert d["image"]["spacing_source"] == "volume" and d["parameters"]["sagittal_vertical_axis_mm"] is None
        assert len(d["landmarks"]["vertebrae"]) >= 3
    (ct,) = by["CT"]
    assert ct["parameters"]["pelvic_incidence_deg"] is not None  # both femoral heads found in 3-D
    truth = json.loads((sample.parent / "truth.json").read_text())
    pi = truth["studies"][0]["spine"]["parameters"]["pelvic_incidence_deg"]
    assert abs(ct["parameters"]["pelvic_incidence_deg"] - pi) < 5.0


@pytest.mark.slow
def test_ungraded_levels_keep_their_points_but_no_heights_or_grade(tmp_path, spine):
    """A level the plane detector marks ungraded (points unsteady) is in the document with its
    points and its own regional kyphosis (its neighbours' endplates), its heights, loss, grade,
    morphology and vertebral kyphosis null; its points size no neighbour's expected height (L1 and
    L3 are graded as with L2 left out) nor their regional kyphosis (null, with a warning naming
    L2); the map stays in the document's landmarks (``report.analysis_document``)."""
    ct, unit = _unit(tmp_path, spine, matrix=120)
    prep = kind.prepare(unit)
    lm, anterior, warnings = _true_detection(ct, spine, prep.extra["plane"])
    assert {"L2", "L3"} <= set(lm["vertebrae"])
    # its 4-mm slices are at the coarse-axis limit (no grades: test_volume_sampling.py): graded here, the
    # ungraded map alone under test
    doc = kind.finish(prep, (dict(lm, ungraded={"L2": "unsteady"}), anterior, warnings), grade_axis_max_mm=None)
    jsonschema.validate(doc, load_schema())
    assert doc["landmarks"]["ungraded"] == {"L2": "unsteady"} and "L2" in doc["landmarks"]["vertebrae"]
    by = {v["level"]: v for v in doc["vertebrae"]}
    without = kind.finish(prep, (dict(lm, vertebrae={k: p for k, p in lm["vertebrae"].items() if k != "L2"}),
                                 anterior, warnings), grade_axis_max_mm=None)
    alone = {v["level"]: v for v in without["vertebrae"]}
    for level in ("L1", "L3"):
        assert {k: by[level][k] for k in ("heights_mm", "height_loss_pct", "genant_grade")} == \
            {k: alone[level][k] for k in ("heights_mm", "height_loss_pct", "genant_grade")}
    assert by["L2"]["heights_mm"] is None and by["L2"]["genant_grade"] is None and by["L2"]["height_loss_pct"] is None
    assert by["L2"]["morphology"] is None and by["L2"]["vertebral_kyphosis_deg"] is None
    assert by["L2"]["regional_kyphosis_deg"] is not None and by["L1"]["vertebral_kyphosis_deg"] is not None
    assert by["L1"]["regional_kyphosis_deg"] is None and by["L3"]["regional_kyphosis_deg"] is None
    assert any(w.startswith("L2: its vertebral kyphosis, the regional kyphosis of L1 and L3 null") for w in doc["warnings"])
    assert by["L3"]["heights_mm"] is not None and by["L3"]["genant_grade"] == 0


def _mr_unit(tmp_path, spine, n_slices: int, pelvis: bool = True):
    from sagittal.phantom.volume import render_mr

    rng = np.random.default_rng(8)
    origin = np.array([0.0, 60.0, -800.0])
    info = StudyInfo.make("mrheads", "PHMRHEAD")
    vols = []
    for k, seq in enumerate(("T1", "STIR")):
        mr = render_mr(spine, rng, seq, pixel_spacing_mm=2.5, slice_mm=4.0, n_slices=n_slices, matrix=160,
                       top_level="T11", origin_lps=origin, pelvis=pelvis)
        write_volume(mr, spine, tmp_path, f"mr_{seq.lower()}", info, f"mrheads/{seq}", series_number=k + 1,
                     frame_key="mrheads")
        vols.append(mr)
    (unit,), _ = kind.plan(scan_export([tmp_path], decode_pixels=False).series)
    return vols[0], unit


@pytest.mark.slow
@pytest.mark.parametrize(("n_slices", "heads"), [(57, 2), (13, 0)])
def test_mr_femoral_heads_in_a_wide_slab_give_pi(tmp_path, spine, n_slices, heads):
    """On MR the heads are searched in 3-D on T1 as marrow like the bodies': a slab spanning
    ±112 mm shows both (PI measured), an ordinary ±24 mm slab neither (PI null with the reason)."""
    mr, unit = _mr_unit(tmp_path, spine, n_slices)
    prep = kind.prepare(unit, kind.load_plane_model(threads=1))
    assert prep.image.modality == "MR"
    doc = kind.finish(prep, _true_detection(mr, spine, prep.extra["plane"]))
    jsonschema.validate(doc, load_schema())
    assert len(doc["landmarks"]["femoral_heads"]) == heads
    if heads:
        assert doc["parameters"]["pelvic_incidence_deg"] == pytest.approx(spine.parameters["pelvic_incidence_deg"], abs=3.0)
        plane = prep.extra["plane"]
        for h in doc["landmarks"]["femoral_heads"]:
            assert h["radius_px"] * plane.spacing_mm == pytest.approx(float(np.mean(spine.femoral_radii_mm)), abs=3.0)
    else:
        assert doc["parameters"]["pelvic_incidence_deg"] is None
        assert any("no femoral head found in the MR's field" in w for w in doc["warnings"])


@pytest.fixture(scope="module")
def wide_mr(tmp_path_factory, spine):
    mr, unit = _mr_unit(tmp_path_factory.mktemp("wide_mr"), spine, 57)
    prep = kind.prepare(unit, kind.load_plane_model(threads=1))
    return mr, prep


@pytest.fixture(scope="module")
def wide_mr_no_pelvis(tmp_path_factory, spine):
    mr, unit = _mr_unit(tmp_path_factory.mktemp("wide_mr_np"), spine, 57, pelvis=False)
    prep = kind.prepare(unit, kind.load_plane_model(threads=1))
    return mr, prep


@pytest.mark.slow
@pytest.mark.parametrize("muscle", [0.66, 0.74])
def test_mr_femoral_heads_with_muscle_near_the_marrow_band(spine, wide_mr_no_pelvis, muscle):
    """A coil brighter over the pelvis than over the lumbar bodies puts the muscle around the
    heads at ~0.66-0.75 of the bodies' marrow on T1 (eval MR seed 300, wide slab): inside the
    marrow band's 0.7 edge, so the muscle read as marrow and the heads came out ~50-110 mm off (or
    none). The band's lower edge halfway from the region's soft tissue to the marrow finds them.
    The coil is played by the marrow value alone (the volume keeps no gain): at 0.74 the heads'
    marrow reads 1.48 of it, over the band, and they are found as the band's rim filled. On the
    phantom without its pelvis: with it the cup's marrow touches that rim and no head is found (the
    bias-scaled band, ``MR_HEAD_BIAS_REFERENCE_MM``, is what meets a real gain: the coil tests
    below, with the pelvis)."""
    from sagittal.landmarks import volume as lv
    from sagittal.phantom.volume import MR_SIGNAL, MUSCLE

    mr, prep = wide_mr_no_pelvis
    vox, geom = prep.extra["volumes"]["t1"]
    s1_mid = mr.sagittal_to_lps(spine.s1_mm.mean(axis=0))
    marrow = float(MR_SIGNAL["T1"][MUSCLE]) / muscle  # the bodies' marrow as if the muscle read at `muscle` of it
    heads = lv.mr_femoral_heads(vox, geom, prep.extra["plane"], s1_mid, marrow)
    truth = [mr.sagittal_to_lps(spine.femoral_centers_mm[k], lateral_mm=s * 85.0) for k, s in enumerate((1.0, -1.0))]
    assert len(heads) == 2
    for h, t in zip(sorted(heads, key=lambda h: -h.centre_lps[0]), truth, strict=True):
        assert np.linalg.norm(h.centre_lps - t) < 2.0


def _coil_gain(vox: np.ndarray, geom, plane, s1_mid: np.ndarray, per_100mm: float) -> np.ndarray:
    """``vox`` under a coil gain changing linearly head to foot (as the phantom's bias field can,
    up to about 0.37 per 100 mm on a 400-mm field): 1 at the S1 endplate, ``1 + per_100mm`` 100 mm
    below it (the femoral heads' height)."""
    rows = np.stack([np.zeros(vox.shape[1]), np.arange(vox.shape[1]), np.zeros(vox.shape[1]), np.ones(vox.shape[1])], 1)
    caudal = ((rows @ geom.affine().T)[:, :3] - s1_mid) @ plane.row_axis
    assert abs(caudal[1] - caudal[0]) > 0.9 * geom.pixel_spacing_mm[0]  # the volume's rows run head to foot
    return np.asarray(vox * np.clip(1.0 + per_100mm * caudal / 100.0, 0.3, 2.0)[None, :, None], np.float32)


@pytest.mark.slow
@pytest.mark.parametrize("per_100mm", [-0.17, -0.12, 0.25])
def test_mr_femoral_heads_under_a_coil_darker_or_brighter_over_the_hips(spine, wide_mr, per_100mm):
    """The coil's bias field scales every tissue: darker over the hips than over the bodies it put
    the heads' marrow at 0.69-0.77 of the bodies' (eval MR 5201: no head found, 5205: one), under
    the marrow band's lower edge. The bodies' marrow scaled by the soft tissue's level around the
    heads against the same box above S1 (``MR_HEAD_BIAS_REFERENCE_MM``) finds both, darker or
    brighter: here the heads read 0.67, 0.74 and 1.6 of the bodies' marrow, where the band unscaled
    found none, one, and one 35 mm off."""
    from sagittal.landmarks import volume as lv

    mr, prep = wide_mr
    plane = prep.extra["plane"]
    vox, geom = prep.extra["volumes"]["t1"]
    s1_mid = mr.sagittal_to_lps(spine.s1_mm.mean(axis=0))
    vox = _coil_gain(vox, geom, plane, s1_mid, per_100mm)
    pts = {lvl: np.array([p[n] for n in POINT_NAMES], float)
           for lvl, p in _true_detection(mr, spine, plane)[0]["vertebrae"].items()}
    marrow = lv.marrow_reference(plane.sample(vox, geom), pts)
    assert marrow is not None
    heads = lv.mr_femoral_heads(vox, geom, plane, s1_mid, marrow)
    truth = [mr.sagittal_to_lps(spine.femoral_centers_mm[k], lateral_mm=s * 85.0) for k, s in enumerate((1.0, -1.0))]
    assert len(heads) == 2
    for h, t in zip(sorted(heads, key=lambda h: -h.centre_lps[0]), truth, strict=True):
        assert np.linalg.norm(h.centre_lps - t) < 2.0


def test_mr_sagittal_series_keeps_its_own_plane_against_a_yawed_fit():
    """A scoliotic lumbar centre line (its lateral curve against the lordosis) gave the fitted plane
    a yaw of 32 deg on MR 3903 (a wide slab), past the 30 deg an MR series was kept within: S1 was
    read on an oblique cut (SS 37.5 against 46.9 deg), one femoral head came 46 mm from the plane
    and was missed, PI 21.9 against 55.9 deg. A sagittal series is within 20 deg of the patient's
    sagittal plane, so an MR study's keeps its own plane at any angle to the fit."""
    from sagittal.io.volume import MR_SNAP_DEG, Centreline, fit_plane, slice_geometry, spine_plane

    n = 21
    geom = slice_geometry([(x, -100.0, 100.0) for x in np.arange(n) * 4.0 - 40.0], [(0, 1, 0, 0, 0, -1)] * n,
                          [(2.0, 2.0)] * n)
    z = np.linspace(80.0, -180.0, 14)
    y = 50.0 + 15.0 * np.sin(np.linspace(0.0, np.pi, 14))  # the bodies' antero-posterior course (lordosis)
    x = 0.62 * (y - y.mean()) + np.random.default_rng(0).normal(0.0, 0.3, 14)  # the lateral curve along it
    line = Centreline(np.stack([x, y, z], 1), np.ones(14))
    _, fitted = fit_plane(line)
    yaw = float(np.degrees(np.arccos(abs(fitted @ geom.normal))))
    assert 30.0 < yaw < 35.0  # the fit's own yaw, as on MR 3903
    plane = spine_plane(np.zeros((n, 150, 150), np.float32), geom, line, snap_deg=MR_SNAP_DEG)
    assert plane.snapped and abs(plane.normal @ geom.normal) == pytest.approx(1.0)
    assert plane.spacing_mm == pytest.approx(2.0)
