"""MR-derived oedema and clefts drive the candidacy rules; the clinical CSV only fills what the
images cannot say, and a disagreement between them is shown."""

from __future__ import annotations

from tests.findings.test_candidacy import SEVERE, doc, run, vert, with_fx


def _crit(report, level, cid):
    (lv,) = [x for x in report["levels"] if x["level"] == level]
    return {c["id"]: c for c in lv["criteria"]}[cid]


def test_mr_oedema_reaches_the_category_without_a_manual_entry():
    r = run([doc(vertebrae=with_fx(oedema=True))], **SEVERE)
    assert r["category"] == "consider-augmentation"
    c = _crit(r, "L1", "mri-oedema")
    assert c["status"] == "met" and c["values"]["source"] == "mr" and "disagreement" not in c["values"]


def test_mr_oedema_against_a_csv_that_lists_none_is_shown_and_mr_is_used():
    r = run([doc(vertebrae=with_fx(oedema=True))], **SEVERE, mri_oedema_levels=frozenset())
    assert r["category"] == "consider-augmentation"
    c = _crit(r, "L1", "mri-oedema")
    assert c["values"]["manual_entry"] is False
    assert "MR shows oedema at L1" in c["values"]["disagreement"] and "does not list" in c["values"]["disagreement"]


def test_mr_without_oedema_against_a_csv_that_lists_it():
    r = run([doc(vertebrae=with_fx(oedema=False))], **SEVERE, mri_oedema_levels=frozenset({"L1"}))
    assert r["category"] == "augmentation-not-indicated"
    c = _crit(r, "L1", "mri-oedema")
    assert c["status"] == "not met" and c["values"]["manual_entry"] is True
    assert "does not show oedema" in c["values"]["disagreement"]


def test_manual_entry_fills_a_level_the_mr_did_not_judge():
    vs = [vert("T12", 2, 30), vert("L1", 2, 30, oedema=True)]
    r = run([doc(vertebrae=vs)], **SEVERE, mri_oedema_levels=frozenset({"T12", "L1"}))
    t12 = _crit(r, "T12", "mri-oedema")
    assert t12["values"]["source"] == "manual" and t12["status"] == "met" and "disagreement" not in t12["values"]


def test_ct_without_gas_does_not_erase_the_mr_fluid_cleft_of_the_same_study():
    mr = dict(vert("L1", 2, 32.0), cleft={"present": True, "content": "fluid", "source": "mr"})
    ct = dict(vert("L1", 2, 32.0), cleft={"present": False, "content": None, "source": "ct"})
    r = run([doc(vertebrae=[mr], study="s1"), doc(vertebrae=[ct], study="s1")], vas=8, hospitalised=True)
    c = _crit(r, "L1", "cleft")
    assert c["status"] == "met" and c["values"]["content"] == "fluid" and c["values"]["source"] == "mr"
    assert r["category"] == "consider-augmentation"
    later = doc(vertebrae=[dict(ct, cleft={"present": False, "content": None, "source": "mr"})], study="s2",
                date="20260101")
    assert _crit(run([doc(vertebrae=[mr], study="s1"), later]), "L1", "cleft")["status"] == "not met"


def test_within_a_study_the_radiograph_grade_stands_over_the_mr_and_the_mr_oedema_stays():
    dx = doc(vertebrae=[vert("L1", 2, 32.0)], study="s1")
    mr = doc(vertebrae=[vert("L1", 0, 8.0, oedema=True)], study="s1")
    mr["source"]["modality"] = "MR"
    for order in ([dx, mr], [mr, dx]):
        r = run(order, **SEVERE)
        c = {x["id"]: x for x in _levels(r)["L1"]["criteria"]}
        assert c["fracture"]["status"] == "met" and c["fracture"]["values"]["genant_grade"] == 2
        assert c["mri-oedema"]["status"] == "met"
        assert r["category"] == "consider-augmentation"


def _levels(report):
    return {x["level"]: x for x in report["levels"]}
