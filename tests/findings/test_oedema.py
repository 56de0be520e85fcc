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
