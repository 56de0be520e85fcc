"""MRI oedema and clefts (findings/oedema.py) on phantom planes whose truth is known."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from sagittal.findings.oedema import assess_ct_clefts, assess_mr
from sagittal.phantom import build_spine, sample_spec
from sagittal.phantom.anatomy import Fracture, Modic
from sagittal.phantom.marrow import ct_plane_case, mr_plane_case


def _spine(seed: int, fractures: tuple[Fracture, ...] = (), modic: tuple[Modic, ...] = ()):
    spec = sample_spec(np.random.default_rng([31, seed]), n_fractures=0)
    return build_spine(replace(spec, fractures=fractures, modic=modic))


def _case(spine, seqs=("T1", "STIR"), scale=1.0, seed=0):
    return mr_plane_case(spine, np.random.default_rng([32, seed]), seqs, scale=scale)


@pytest.mark.parametrize("pattern", ["band", "diffuse", "patchy"])
def test_oedema_found_with_its_extent_and_normal_bodies_clear(pattern):
    spine = _spine(1, (Fracture("L1", 2, 32.0, "wedge", oedema_pct=60.0, oedema_pattern=pattern),))
    case = _case(spine)
    got = assess_mr(case.planes, case.points_px, case.spacing_mm)
    l1 = got.bodies["L1"].oedema
    assert l1 is not None and l1["present"] is True and l1["source"] == "mr"
    assert abs(l1["extent_pct"] - case.truth["L1"]["oedema_pct"]) <= 15.0
    assert got.bodies["L1"].oedema_mask is not None and got.bodies["L1"].oedema_mask.any()
    for lv, body in got.bodies.items():
        if lv != "L1":
            assert body.oedema == {"present": False, "extent_pct": 0.0, "source": "mr"}, lv


def test_same_findings_on_two_scanners_intensity_scales():
    spine = _spine(2, (Fracture("T12", 3, 45.0, "crush", oedema_pct=80.0, oedema_pattern="diffuse"),
                       Fracture("L2", 1, 22.0, "biconcave", oedema_pct=35.0)))
    a = assess_mr(*_unpack(_case(spine, scale=0.25, seed=3)))
    b = assess_mr(*_unpack(_case(spine, scale=3.7, seed=4)))
    for lv in a.bodies:
        oa, ob = a.bodies[lv].oedema, b.bodies[lv].oedema
        assert oa is not None and ob is not None
        assert oa["present"] == ob["present"], lv
        assert abs(oa["extent_pct"] - ob["extent_pct"]) <= 6.0, lv
    assert a.bodies["T12"].oedema["present"] and a.bodies["L2"].oedema["present"]


def _unpack(case):
    return case.planes, case.points_px, case.spacing_mm


def test_without_stir_or_fat_suppressed_t2_oedema_is_null_with_the_reason():
    spine = _spine(3, (Fracture("L1", 2, 30.0, "wedge", oedema_pct=70.0),))
    got = assess_mr(*_unpack(_case(spine, seqs=("T1", "T2"))))
    assert all(b.oedema is None for b in got.bodies.values())
    assert any("no STIR or fat-suppressed T2" in w for w in got.warnings)


def test_fat_suppressed_t2_stands_in_for_stir():
    spine = _spine(3, (Fracture("L1", 2, 30.0, "wedge", oedema_pct=70.0),))
    got = assess_mr(*_unpack(_case(spine, seqs=("T1", "T2FS"))))
    assert got.bodies["L1"].oedema["present"] is True
    assert got.bodies["L3"].oedema["present"] is False


@pytest.mark.parametrize("modic_type", [1, 2])
def test_modic_change_is_not_oedema_of_the_body(modic_type):
    spine = _spine(4, modic=(Modic("L3", type=modic_type, thickness_pct=15.0),))
    case = _case(spine, seqs=("T1", "T2", "STIR"))
    assert case.truth["L3"]["modic"] and case.truth["L4"]["modic"]
    got = assess_mr(*_unpack(case))
    for lv in ("L3", "L4"):
        assert got.bodies[lv].oedema["present"] is False, lv
    if modic_type == 1:  # oedema-like signal, recognised by its mirrored endplate bands
        assert any("Modic" in w for w in got.bodies["L3"].warnings)


@pytest.mark.parametrize("content", ["fluid", "gas"])
def test_clefts_on_mr_with_their_content(content):
    spine = _spine(5, (Fracture("T12", 2, 35.0, "wedge", oedema_pct=40.0, cleft=content),))
    got = assess_mr(*_unpack(_case(spine, seqs=("T1", "T2", "STIR"))))
    assert got.bodies["T12"].cleft == {"present": True, "content": content, "source": "mr"}
    assert all(b.cleft["present"] is False for lv, b in got.bodies.items() if lv != "T12")


def test_gas_cleft_on_ct_and_none_elsewhere():
    spine = _spine(6, (Fracture("L1", 3, 45.0, "wedge", oedema_pct=None, cleft="gas"),))
    case = ct_plane_case(spine, np.random.default_rng(7))
    got = assess_ct_clefts(case.planes["CT"], case.points_px, case.spacing_mm)
    assert got["L1"] == {"present": True, "content": "gas", "source": "ct"}
    assert all(v is not None and v["present"] is False for lv, v in got.items() if lv != "L1")


def test_body_cut_by_the_field_is_not_judged():
    spine = _spine(7, (Fracture("L1", 2, 30.0, "wedge", oedema_pct=70.0),))
    case = _case(spine)
    planes = {k: v[40:] for k, v in case.planes.items()}  # cut the top 40 rows off
    points = {lv: p - np.array([0.0, 40.0]) for lv, p in case.points_px.items()}
    cut = [lv for lv, p in points.items() if p[:, 1].min() < 0]
    assert cut
    got = assess_mr(planes, points, case.spacing_mm)
    for lv in cut:
        assert got.bodies[lv].oedema is None and got.bodies[lv].cleft is None
        assert any("cut by the field" in w for w in got.bodies[lv].warnings)


def test_bad_planes_are_refused_with_the_reason():
    spine = _spine(8)
    case = _case(spine)
    with pytest.raises(ValueError, match="one pixel grid"):
        assess_mr({"T1": case.planes["T1"], "STIR": case.planes["STIR"][:-1]}, case.points_px, case.spacing_mm)
    with pytest.raises(ValueError, match="unknown MR sequence"):
        assess_mr({"FLAIR": case.planes["T1"]}, case.points_px, case.spacing_mm)


def _strip_planes(oedema_above: bool):
    """T1 + STIR planes at 1.6 mm (PHC's MR) of five bodies T12-L4 (22 x 16 px, 5-px discs, CSF
    behind them); L1 holds a fluid cleft (its rows 6-7) with a 3-row strip of oedema under it
    (rows 8-10) and, when ``oedema_above``, a band of oedema above it (rows 0-5)."""
    from sagittal.levels import AI, AS, MI, MS, PI, PS

    rng = np.random.default_rng(0)
    t1, stir = np.full((130, 70), 150.0), np.full((130, 70), 60.0)  # soft tissue
    stir[:, 44:52], t1[:, 44:52] = 330.0, 60.0  # CSF in the canal, 4-13 mm behind the walls
    points = {}
    for k, lv in enumerate(("T12", "L1", "L2", "L3", "L4")):
        top, bot, a, p = 8 + 21 * k, 23 + 21 * k, 10, 31
        t1[top:bot + 1, a:p + 1], stir[top:bot + 1, a:p + 1] = 400.0, 100.0  # marrow
        pts = np.zeros((6, 2))
        pts[AS], pts[PS], pts[PI], pts[AI], pts[MS], pts[MI] = (a, top), (p, top), (p, bot), (a, bot), (20.5, top), (20.5, bot)
        points[lv] = pts
    top, cols = 29, slice(10, 32)  # L1
    stir[top + 6:top + 8, cols], t1[top + 6:top + 8, cols] = 320.0, 70.0  # the fluid cleft
    stir[top + 8:top + 11, cols], t1[top + 8:top + 11, cols] = 250.0, 150.0  # oedema under it
    if oedema_above:
        stir[top:top + 6, cols], t1[top:top + 6, cols] = 250.0, 150.0
    planes = {"T1": t1 + rng.normal(0, 3, t1.shape), "STIR": stir + rng.normal(0, 3, t1.shape)}
    return {k: v.astype(np.float32) for k, v in planes.items()}, points, (1.6, 1.6)


def test_oedema_strip_beside_a_cleft_is_counted():
    """The strip of oedema left beside a cleft once the cleft's zone (its rows +-1) is cut out is
    2 pixels thick here, as at PHC's 1.6 mm: the speck-removing opening used to erase it (27.8 %
    measured, the band above the cleft only); in a body with oedema it is counted."""
    planes, points, spacing = _strip_planes(oedema_above=True)
    got = assess_mr(planes, points, spacing)
    l1 = got.bodies["L1"]
    assert l1.cleft == {"present": True, "content": "fluid", "source": "mr"}
    assert l1.oedema is not None and l1.oedema["present"] is True
    rows = set((np.nonzero(l1.oedema_mask)[0] - 29).tolist())
    assert {9, 10} <= rows  # the strip under the cleft's zone
    assert not rows & {6, 7}  # the cleft itself is not oedema
    assert l1.oedema["extent_pct"] > 40.0  # 9 of 16 rows drawn, the zone's two not counted
    assert all(b.oedema["present"] is False for lv, b in got.bodies.items() if lv != "L1")


def test_a_cleft_with_only_a_strip_beside_it_is_not_oedema():
    """Without oedema elsewhere in the body, a thin bright strip beside a fluid cleft looks like the
    cleft's partial-volume rim: the body is not called oedematous for it."""
    planes, points, spacing = _strip_planes(oedema_above=False)
    got = assess_mr(planes, points, spacing)
    assert got.bodies["L1"].cleft["content"] == "fluid"
    assert got.bodies["L1"].oedema == {"present": False, "extent_pct": 0.0, "source": "mr"}
