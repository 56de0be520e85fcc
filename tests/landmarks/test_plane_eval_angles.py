"""``scripts/eval_planes.py``'s angles: every angle a CT/MR document reports (PI, PT, SS, LL, TK,
PI-LL, regional and vertebral kyphosis) against the same measure of the phantom's TRUE points on our
plane. A real ``io.volume.SpinePlane`` (sagittal, the patient facing the image's right) stands in for
the reformat, and the phantom's own sagittal frame for the volume."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from sagittal.io.volume import SpinePlane
from sagittal.levels import LEVELS
from sagittal.phantom import build_spine, sample_spec
from tests.training.fixtures import script

SPACING = 0.8


def _case(seed: int = 5):
    """``(spine, plane, vol, eval_planes, img)``: a phantom spine, a sagittal plane through it (pixel x
    anterior, y caudal, 0.8 mm), the volume's frame as ``phantom.volume.Volume.sagittal_to_lps``
    with origin 0 and no curve, and a plane image whose field is everything but one corner pixel."""
    spine = build_spine(sample_spec(np.random.default_rng(seed), n_fractures=2))

    def sagittal_to_lps(p, lateral_mm=None):
        p = np.asarray(p, float)
        lat = np.zeros(p.shape[:-1]) if lateral_mm is None else np.full(p.shape[:-1], lateral_mm)
        return np.stack([lat, -p[..., 0], p[..., 1]], -1)

    rows, cols = int(700 / SPACING), int(300 / SPACING)
    img = np.ones((rows, cols), np.float32)
    img[0, 0] = 0.0
    plane = SpinePlane(image=img, origin_lps=np.array([0.0, 150.0, 650.0]), col_axis=np.array([0.0, -1.0, 0.0]),
                       row_axis=np.array([0.0, 0.0, -1.0]), normal=np.array([1.0, 0.0, 0.0]), spacing_mm=SPACING,
                       lateral_mm=np.zeros(rows), anterior="right", snapped=True)
    return spine, plane, SimpleNamespace(sagittal_to_lps=sagittal_to_lps), script("eval_planes"), img


def _doc(ev, spine, plane, vol, levels=LEVELS, heads=True) -> dict:
    """Our document if the model had placed ``levels`` exactly on their true points (the heads found)."""
    from sagittal.report.analysis import analysis_document

    image = {"rows": plane.image.shape[0], "columns": plane.image.shape[1], "pixel_spacing_mm": [SPACING, SPACING],
             "spacing_source": "volume", "anterior": plane.anterior}
    truth, _, _ = ev._truth_on_plane(spine, vol, plane, {"image": image})
    lm = {"vertebrae": {lv: p for lv, p in truth["landmarks"]["vertebrae"].items() if lv in levels},
          "s1_endplate": truth["landmarks"]["s1_endplate"],
          "femoral_heads": truth["landmarks"]["femoral_heads"] if heads else []}
    return analysis_document(image, lm)


def test_the_true_angles_on_a_sagittal_plane_are_the_phantom_spines_own():
    """On a sagittal plane the true points measure the phantom's own angles: LL, TK, SS, PT, PI
    (the heads projected from ±85 mm) and every regional kyphosis as the phantom builds it
    (``eval_landmarks.regional_truth_deg``, from the endplates' construction angles)."""
    spine, plane, vol, ev, img = _case()
    doc = _doc(ev, spine, plane, vol)
    truth, truth_px, _ = ev._truth_on_plane(spine, vol, plane, doc)
    assert np.all(truth_px > 0) and np.all(truth_px[..., 0] < img.shape[1]) and np.all(truth_px[..., 1] < img.shape[0])
    for k in ("lumbar_lordosis_deg", "thoracic_kyphosis_deg", "sacral_slope_deg", "pelvic_tilt_deg",
              "pelvic_incidence_deg", "pi_ll_mismatch_deg"):
        assert truth["parameters"][k] == pytest.approx(spine.parameters[k], abs=0.01), k
    assert spine.parameters["lumbar_lordosis_deg"] > 20 and spine.parameters["thoracic_kyphosis_deg"] > 20
    rk = script("eval_landmarks").regional_truth_deg(spine)
    by = {v["level"]: v for v in truth["vertebrae"]}
    for lv in LEVELS[1:]:
        assert by[lv]["regional_kyphosis_deg"] == pytest.approx(rk[lv], abs=0.01), lv
    # and our document, placed on those points, has no error in any angle
    for name, (errs, possible) in ev._angle_errors(spine, vol, plane, img, doc).items():
        assert possible > 0 and len(errs) == possible and max(errs.values()) == pytest.approx(0.0, abs=1e-3), name


def test_one_angle_off_by_a_known_amount_gives_that_mae_and_only_reported_levels_count():
    spine, plane, vol, ev, img = _case()
    doc = _doc(ev, spine, plane, vol)
    doc["parameters"]["lumbar_lordosis_deg"] -= 4.0
    by = {v["level"]: v for v in doc["vertebrae"]}
    by["L2"]["regional_kyphosis_deg"] -= 3.0
    acc: dict = {}
    for name, (errs, possible) in ev._angle_errors(spine, vol, plane, img, doc).items():
        got = acc.setdefault("angles", {}).setdefault(name, {"err": {}, "possible": 0})
        got["err"].update({f"0/0/{w}": e for w, e in errs.items()})
        got["possible"] += possible
    fig = ev._angle_figures(acc)
    assert fig["lumbar_lordosis_deg"]["mae_deg"] == pytest.approx(4.0, abs=1e-3) and fig["lumbar_lordosis_deg"]["n"] == 1
    n_rk = len(LEVELS) - 1  # C7 has no vertebra above: no regional kyphosis
    assert fig["regional_kyphosis_deg"]["n"] == n_rk
    assert fig["regional_kyphosis_deg"]["mae_deg"] == pytest.approx(3.0 / n_rk, abs=1e-3)
    assert fig["regional_kyphosis_deg"]["max_deg"] == pytest.approx(3.0, abs=1e-3)
    assert fig["thoracic_kyphosis_deg"]["mae_deg"] == pytest.approx(0.0, abs=1e-3)

    # T4 not reported: TK and the regional kyphosis of T3, T4 and T5 are not ours to count, though possible
    doc = _doc(ev, spine, plane, vol, levels=[lv for lv in LEVELS if lv != "T4"], heads=False)
    errs = ev._angle_errors(spine, vol, plane, img, doc)
    assert errs["thoracic_kyphosis_deg"] == ({}, 1)
    assert {"T3", "T4", "T5"}.isdisjoint(errs["regional_kyphosis_deg"][0])
    assert len(errs["regional_kyphosis_deg"][0]) == n_rk - 3 and errs["regional_kyphosis_deg"][1] == n_rk
    # no femoral head found: PI, PT and PI-LL not counted; SS and LL still
    assert errs["pelvic_incidence_deg"] == ({}, 1) and errs["pi_ll_mismatch_deg"] == ({}, 1)
    assert len(errs["sacral_slope_deg"][0]) == 1 and len(errs["lumbar_lordosis_deg"][0]) == 1

    # a level out of the volume's field (the plane filled with its minimum there) is not possible either
    _, truth_px, _ = ev._truth_on_plane(spine, vol, plane, doc)
    t12 = truth_px[LEVELS.index("T12")]
    img[np.round(t12[:, 1]).astype(int), np.round(t12[:, 0]).astype(int)] = 0.0  # T12's own points only
    errs = ev._angle_errors(spine, vol, plane, img, _doc(ev, spine, plane, vol))
    assert errs["thoracic_kyphosis_deg"] == ({}, 0)
    assert errs["regional_kyphosis_deg"][1] == n_rk - 3  # T11, T12, L1 need T12's endplates
    assert errs["vertebral_kyphosis_deg"][1] == len(LEVELS) - 1 and "T12" not in errs["vertebral_kyphosis_deg"][0]


def test_paired_angles_compare_runs_on_the_angles_both_counted():
    ev = script("eval_planes")
    accs = [{"angles": {"lumbar_lordosis_deg": {"err": {"1/0/lumbar_lordosis_deg": 2.0}, "possible": 2}}},
            {"angles": {"lumbar_lordosis_deg": {"err": {"1/0/lumbar_lordosis_deg": 1.0, "2/0/lumbar_lordosis_deg": 9.0},
                                                "possible": 2}}}]
    figs = [{"angles": ev._angle_figures(a)} for a in accs]
    ev._paired_angles(figs, accs)
    assert figs[1]["angles"]["lumbar_lordosis_deg"] == {"mae_deg": 5.0, "n": 2, "max_deg": 9.0, "possible": 2}
    assert figs[1]["angles_paired"]["lumbar_lordosis_deg"] == {"mae_deg": 1.0, "n": 1}
    assert figs[0]["angles_paired"]["lumbar_lordosis_deg"] == {"mae_deg": 2.0, "n": 1}
    assert figs[0]["angles_paired"]["thoracic_kyphosis_deg"] == {"mae_deg": None, "n": 0}



def test_angles_from_an_ungraded_body_are_withheld_and_scored_apart():
    """A crushed body kept between its neighbours (ungraded, ``keep_crushed_between``'s reason) with
    both endplates tilted: the document withholds the angles from its endplates (its vertebral
    kyphosis, T12's and L2's regional kyphosis, LL and PI-LL at L1) and keeps its own regional kyphosis
    (T12's and L2's endplates); ``_score_angles`` scores the document and, apart, the same points
    measured as before (``angles_all_points``), whose angles from L1's points are the split
    ``from_ungraded`` / ``from_kept`` and carry the whole error."""
    from sagittal.levels import UNGRADED

    spine, plane, vol, ev, img = _case()
    doc = _doc(ev, spine, plane, vol)
    lm = doc["landmarks"]
    l1 = lm["vertebrae"]["L1"]
    for name, dy in (("anterior_superior", 4.0), ("anterior_inferior", -4.0)):  # a wedge: both endplates ~6 deg off
        l1[name] = [l1[name][0], l1[name][1] + dy]
    lm[UNGRADED] = {"L1": "it looks collapsed ...; its level is the one between its reported neighbours T12 and L2"}
    from sagittal.report.analysis import analysis_document

    doc = analysis_document(doc["image"], lm)
    acc: dict = {}
    ev._score_angles(spine, vol, plane, img, doc, acc, "0/0")
    withheld = {("lumbar_lordosis_deg", "0/0/lumbar_lordosis_deg"), ("pi_ll_mismatch_deg", "0/0/pi_ll_mismatch_deg"),
                ("regional_kyphosis_deg", "0/0/T12"), ("regional_kyphosis_deg", "0/0/L2"),
                ("vertebral_kyphosis_deg", "0/0/L1")}
    assert acc["from_ungraded"] == acc["from_kept"] == withheld
    for name, where in withheld:
        assert where not in acc["angles"][name]["err"] and acc["angles_all_points"][name]["err"][where] > 1.0
    assert acc["angles"]["regional_kyphosis_deg"]["err"]["0/0/L1"] == pytest.approx(0.0, abs=1e-3)
    assert ("regional_kyphosis_deg", "0/0/L1") in acc["ungraded_own"]
    rest = ev._angle_figures(acc, "angles_all_points", but="from_ungraded")
    assert rest == ev._angle_figures(acc)  # the document = every angle but those from L1's points
    apart = ev._angle_figures(acc, "angles_all_points", only="from_ungraded")
    assert apart["vertebral_kyphosis_deg"]["n"] == 1 and apart["regional_kyphosis_deg"]["n"] == 2
    assert apart["thoracic_kyphosis_deg"]["n"] == 0 and apart["sacral_slope_deg"]["n"] == 0
    assert ev._angle_figures(acc)["sacral_slope_deg"]["n"] == 1
