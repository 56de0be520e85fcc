"""Longitudinal linking on hand-made documents: study order, baselines, days, rates, new
fractures, treatment, nulls; and the de-identification helpers."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pytest

from sagittal.cohort.deid import age_years, clamp_age, date_ordinal, sex_code, time_seconds
from sagittal.cohort.export import to_arrow
from sagittal.cohort.read import read_documents
from sagittal.cohort.tables import build_tables
from sagittal.findings.clinical import ClinicalInputs

KEY = b"k" * 32


def _doc(pid: str, study: str | None, date: str | None, losses: dict[str, float], *, status: str = "ok",
         time: str | None = None, pi: float | None = 50.0, sva: float | None = 10.0) -> dict:
    grade = lambda x: 0 if x < 20 else 1 if x <= 25 else 2 if x <= 40 else 3  # noqa: E731
    params = {"pelvic_incidence_deg": pi, "pelvic_tilt_deg": 12.0, "sacral_slope_deg": 38.0,
              "lumbar_lordosis_deg": 55.0, "thoracic_kyphosis_deg": 40.0, "sagittal_vertical_axis_mm": sva,
              "pi_ll_mismatch_deg": None if pi is None else pi - 55.0, "t1_pelvic_angle_deg": None}
    verts = [{"level": lv, "heights_mm": {"anterior": 20.0, "middle": 21.0, "posterior": 22.0}, "height_loss_pct": x,
              "genant_grade": grade(x), "morphology": "wedge" if x >= 20 else "normal", "regional_kyphosis_deg": 8.0 + x / 4,
              "vertebral_kyphosis_deg": 3.0} for lv, x in losses.items()]
    return {"schema": "sagittal.analysis/1", "status": status,
            "source": {"path": "x", "modality": "DX", "study_instance_uid": study, "series_instance_uid": None,
                       "sop_instance_uids": [], "patient_id": pid, "study_date": date, "study_time": time},
            "image": {"spacing_source": "PixelSpacing"}, "parameters": params, "vertebrae": verts, "warnings": []}


def _tables(tmp_path: Path, docs: list[dict], clinical: dict[str, ClinicalInputs] | None = None) -> dict:
    for i, d in enumerate(docs):
        (tmp_path / f"d{i:03d}.json").write_text(json.dumps(d))
    t = build_tables(read_documents([tmp_path]), clinical or {}, KEY)
    return {name: to_arrow(name, table).to_pylist() for name, table in t.items()} | {"warnings": t.warnings}


def test_baseline_is_the_first_dated_study_measuring_the_level(tmp_path):
    t = _tables(tmp_path, [
        _doc("A", "1.1", "20240301", {"T12": 10.0, "L1": 22.0}),
        _doc("A", "1.2", "20240101", {"T12": 5.0}),               # first study: L1 not in view
        _doc("A", "1.3", "20240601", {"T12": 24.0, "L1": 30.0}),
        _doc("A", "1.4", None, {"T12": 50.0, "L1": 50.0}),         # no date: never in progression
    ])
    studies = sorted(t["studies"], key=lambda r: r["study_index"])
    assert [r["days_since_first_study"] for r in studies] == [0, 60, 152, None]
    prog = {(r["level"], r["later_day"]): r for r in t["progression"]}
    assert set(prog) == {("T12", 60), ("T12", 152), ("L1", 152)}
    l1 = prog[("L1", 152)]
    assert (l1["baseline_day"], l1["days_between"], l1["height_loss_change_pts"]) == (60, 92, 8.0)
    assert l1["height_loss_rate_pts_per_month"] == pytest.approx(8.0 / (92 / (365.25 / 12)), abs=1e-4)
    assert (l1["baseline_grade"], l1["later_grade"], l1["grade_change"], l1["new_fracture"]) == (1, 2, 1, False)
    t12 = prog[("T12", 152)]
    assert (t12["baseline_height_loss_pct"], t12["new_fracture"], t12["grade_change"]) == (5.0, True, 1)
    assert l1["thoracolumbar"] and l1["baseline_regional_kyphosis_deg"] == pytest.approx(8.0 + 22.0 / 4)
    assert any("without a usable study date" in w for w in t["warnings"])


def test_same_day_studies_grade_down_and_nulls(tmp_path):
    t = _tables(tmp_path, [
        _doc("B", "2.1", "20240101", {"L2": 30.0}, time="080000"),
        _doc("B", "2.2", "20240101", {"L2": 22.0}, time="170000", pi=None, sva=None),
    ])
    (r,) = t["progression"]
    assert (r["days_between"], r["height_loss_rate_pts_per_month"]) == (0, None)  # no rate over zero days
    assert r["grade_change"] == -1 and r["height_loss_change_pts"] == -8.0  # -1 is a value, not null
    assert r["baseline_pelvic_incidence_deg"] == 50.0  # from the baseline (morning) study
    later = [s for s in t["studies"] if s["study_index"] == 1][0]
    assert later["pelvic_incidence_deg"] is None and later["sagittal_vertical_axis_mm"] is None


def test_images_of_one_study_and_studies_without_uid(tmp_path):
    t = _tables(tmp_path, [
        _doc("C", "3.1", "20240101", {"L1": 26.0}, status="partial", pi=None),
        _doc("C", "3.1", "20240101", {"L1": 27.0, "L2": 3.0}),   # the ok document wins
        _doc("C", None, "20240401", {"L1": 35.0}),
        _doc("C", None, "20240401", {"L2": 4.0}),                  # same date: the same UID-less study
    ])
    assert len(t["studies"]) == 2
    first = [s for s in t["studies"] if s["study_index"] == 0][0]
    assert (first["n_images"], first["status"], first["pelvic_incidence_deg"], first["n_grade2"]) == (2, "ok", 50.0, 1)
    l1 = [v for v in t["vertebrae"] if v["level"] == "L1" and v["study_index"] == 0][0]
    assert (l1["height_loss_pct"], l1["n_images"]) == (27.0, 2)
    assert {(r["level"], r["later_day"]) for r in t["progression"]} == {("L1", 91), ("L2", 91)}


def test_treatment_from_the_clinical_csv(tmp_path):
    docs = [_doc("D", "4.1", "20240110", {"L1": 30.0, "L2": 2.0}), _doc("D", "4.2", "20240710", {"L1": 31.0, "L2": 2.0}),
            _doc("E", "5.1", "20240110", {"T11": 28.0}), _doc("E", "5.2", "20240310", {"T11": 35.0})]
    clinical = {
        "D": ClinicalInputs("D", augmentation="kyphoplasty", augmentation_levels=frozenset({"L1"}),
                            augmentation_date=dt.date(2024, 1, 20), followup_vas=2.0, followup_date=dt.date(2024, 1, 5)),
        "E": ClinicalInputs("E", augmentation="vertebroplasty"),  # levels not given
        "F": ClinicalInputs("F"),
    }
    t = _tables(tmp_path, docs, clinical)
    by = {r["level"]: r for r in t["progression"]}
    assert (by["L1"]["treatment"], by["L1"]["augmentation_day"], by["L1"]["augmented_between"]) == ("kyphoplasty", 10, True)
    assert (by["L2"]["treatment"], by["L2"]["level_augmented"]) == ("conservative", False)
    assert by["L1"]["followup_day"] == -5  # before the first study: a negative day, not null
    assert (by["T11"]["augmentation"], by["T11"]["level_augmented"], by["T11"]["treatment"]) == ("vertebroplasty", None, None)
    assert any("1 clinical CSV row(s) match no" in w for w in t["warnings"])


@pytest.mark.parametrize(("age", "birth", "study", "expected"), [
    pytest.param(74, None, None, 74, id="number"),
    pytest.param("074Y", None, None, 74, id="AS years"),
    pytest.param("018M", None, None, 1, id="AS months"),
    pytest.param(None, "19300611", "20240101", 90, id="93 from birth date written as 90"),
    pytest.param(None, "19490921", "20240920", 74, id="day before the birthday"),
    pytest.param(None, "19490921", "20240921", 75, id="on the birthday"),
    pytest.param("abc", None, None, None, id="unreadable"),
    pytest.param(True, None, None, None, id="a bool is no age"),
])
def test_age(age, birth, study, expected):
    assert clamp_age(age_years(age, birth, date_ordinal(study))) == expected


def test_dates_times_sex():
    assert date_ordinal("20240229") == dt.date(2024, 2, 29).toordinal()
    assert date_ordinal("2024-02-30") is None and date_ordinal("") is None and date_ordinal(20240101) is None
    assert time_seconds("101502.5") == pytest.approx(36902.5) and time_seconds("10") == 36000.0
    assert time_seconds("256000") is None
    assert [sex_code(x) for x in ("F", "m ", "O", "X", None)] == ["F", "M", "O", None, None]


def test_trajectories_of_fractured_levels_coloured_by_treatment(tmp_path):
    from sagittal.cohort.figures import _trajectories

    for i, d in enumerate([_doc("G", "7.1", "20240101", {"L1": 22.0, "L2": 3.0, "L3": 26.0}),
                           _doc("G", "7.2", "20240301", {"L1": 30.0, "L2": 4.0, "L3": 27.0}),
                           _doc("G", "7.3", "20240601", {"L1": 33.0}),
                           _doc("H", "8.1", "20240101", {"T12": 35.0})]):  # one study only: no line
        (tmp_path / f"d{i}.json").write_text(json.dumps(d))
    clinical = {"G": ClinicalInputs("G", augmentation="vertebroplasty", augmentation_levels=frozenset({"L3"}))}
    lines, colours = _trajectories(build_tables(read_documents([tmp_path]), clinical, KEY))
    by_colour = dict(zip(colours, lines, strict=True))
    assert sorted(colours) == ["conservative", "vertebroplasty"]  # L1 (not augmented) and L3; L2 never fractured
    l1 = by_colour["conservative"]
    months = [(dt.date(2024, m, 1) - dt.date(2024, 1, 1)).days / (365.25 / 12) for m in (1, 3, 6)]
    assert l1[:, 0].tolist() == pytest.approx(months) and l1[:, 1].tolist() == [22.0, 30.0, 33.0]
    assert by_colour["vertebroplasty"][:, 1].tolist() == [26.0, 27.0]


def test_reading_in_processes_gives_the_same_tables(truth_docs):
    one = build_tables(read_documents([truth_docs]), {}, KEY)
    two = build_tables(read_documents([truth_docs], workers=2, chunk=2), {}, KEY)
    for (name, a), (_, b) in zip(one.items(), two.items(), strict=True):
        assert to_arrow(name, a).equals(to_arrow(name, b)), name


def test_a_level_measured_but_not_graded_is_null_not_grade_0(tmp_path):
    """A CT too coarse along the spine to grade keeps its loss but no grade: the vertebrae table's grade and
    'fractured' are null (not 0, which an int32 column once wrapped the null to), the study counts it measured
    but not graded, a graded document of the same study is preferred for the level, and the progression's
    baseline grade and grade change are null."""
    coarse = _doc("A", "1.1", "20240101", {"L1": 38.0, "L2": 5.0})
    for v in coarse["vertebrae"]:
        v["genant_grade"], v["morphology"] = None, None
    later = _doc("A", "1.2", "20240601", {"L1": 45.0, "L2": 6.0})
    thin = _doc("A", "1.1", "20240101", {"L1": 38.0})  # the same study graded from another series
    t = _tables(tmp_path, [coarse, later])
    v = {(r["study_index"], r["level"]): r for r in t["vertebrae"]}
    assert v[(0, "L1")]["genant_grade"] is None and v[(0, "L1")]["fractured"] is None
    assert v[(0, "L1")]["height_loss_pct"] == 38.0 and v[(1, "L1")]["genant_grade"] == 3
    s0 = min(t["studies"], key=lambda r: r["study_index"])
    assert (s0["n_levels_measured"], s0["n_levels_graded"], s0["n_fractures"]) == (2, 0, 0)
    p = {r["level"]: r for r in t["progression"]}["L1"]
    assert (p["baseline_grade"], p["later_grade"], p["grade_change"]) == (None, 3, None)
    assert p["height_loss_change_pts"] == 7.0
    for order in ([coarse, thin], [thin, coarse]):  # the graded row wins for the level, whichever is read first
        for f in tmp_path.glob("*.json"):
            f.unlink()
        t = _tables(tmp_path, order)
        row = {r["level"]: r for r in t["vertebrae"]}["L1"]
        assert row["genant_grade"] == 2 and t["studies"][0]["n_fractures"] == 1


def test_oedema_comes_from_the_document_that_read_it(tmp_path):
    """One study, an MR that read L1's oedema but could not grade it and a film that graded it: the level's
    grade is the film's, its oedema the MR's (review R15b: the graded row carried everything, oedema lost)."""
    mr = _doc("A", "1.1", "20240101", {"L1": 28.0})
    mr["source"]["modality"] = "MR"
    mr["vertebrae"][0].update(genant_grade=None, morphology=None, height_loss_pct=None, heights_mm=None,
                              oedema={"present": True, "extent_pct": 30.0, "source": "mr"})
    film = _doc("A", "1.1", "20240101", {"L1": 28.0})
    for order in ([mr, film], [film, mr]):
        for f in tmp_path.glob("*.json"):
            f.unlink()
        row = {r["level"]: r for r in _tables(tmp_path, order)["vertebrae"]}["L1"]
        assert row["genant_grade"] == 2 and row["n_images"] == 2
        assert (row["oedema_present"], row["oedema_extent_pct"], row["oedema_source"]) == (True, 30.0, "mr")
    later = _doc("A", "1.2", "20240601", {"L1": 35.0})  # the progression's baseline oedema too (review R15c)
    for f in tmp_path.glob("*.json"):
        f.unlink()
    (prog,) = [r for r in _tables(tmp_path, [mr, film, later])["progression"] if r["level"] == "L1"]
    assert prog["baseline_oedema_present"] is True and prog["baseline_grade"] == 2


def _ct(pid: str, study: str, date: str, losses: dict[str, float], axis_mm: object, *, graded: bool) -> dict:
    """A CT document sampling the spine's axis every ``axis_mm``; ``graded=False``: too coarse to grade (the
    analysis keeps heights and loss, grade and morphology null)."""
    d = _doc(pid, study, date, losses)
    d["source"]["modality"] = "CT"
    d["image"] = {"spacing_source": "PixelSpacing", "axis_sampling_mm": axis_mm}
    if not graded:
        for v in d["vertebrae"]:
            v["genant_grade"], v["morphology"] = None, None
    return d


def test_axis_sampling_of_ct_and_radiographs(tmp_path):
    """A 5-mm CT (losses, no grades) and radiographs in one cohort: studies, vertebrae and progression say how
    finely the series sampled the spine (5.0, 1.0) and null for a radiograph; the baseline's and the later
    study's are told apart."""
    t = _tables(tmp_path, [
        _ct("A", "1.1", "20240101", {"L1": 30.0, "L2": 5.0}, 5, graded=False),   # an int in the document: 5.0
        _ct("A", "1.2", "20240601", {"L1": 36.0}, 1.0, graded=True),
        _doc("B", "2.1", "20240101", {"L1": 22.0}),                               # radiographs: no such key
        _doc("B", "2.2", "20240301", {"L1": 25.0}),
    ])
    studies = {(s["pseudonym"], s["study_index"]): s for s in t["studies"]}
    pa, pb = (next(p for (p, _), s in studies.items() if s["modality"] == m) for m in ("CT", "DX"))
    assert [studies[(pa, i)]["axis_sampling_mm"] for i in (0, 1)] == [5.0, 1.0]
    assert [studies[(pb, i)]["axis_sampling_mm"] for i in (0, 1)] == [None, None]
    v = {(r["pseudonym"], r["study_index"], r["level"]): r for r in t["vertebrae"]}
    assert (v[(pa, 0, "L1")]["axis_sampling_mm"], v[(pa, 0, "L1")]["height_loss_pct"]) == (5.0, 30.0)
    assert v[(pa, 0, "L1")]["genant_grade"] is None and v[(pa, 0, "L2")]["axis_sampling_mm"] == 5.0
    assert v[(pa, 1, "L1")]["axis_sampling_mm"] == 1.0
    assert v[(pb, 0, "L1")]["axis_sampling_mm"] is None and v[(pb, 1, "L1")]["axis_sampling_mm"] is None
    prog = {(r["pseudonym"], r["level"]): r for r in t["progression"]}
    pl1 = prog[(pa, "L1")]
    assert (pl1["baseline_axis_sampling_mm"], pl1["later_axis_sampling_mm"], pl1["height_loss_change_pts"]) == (
        5.0, 1.0, 6.0)
    assert (prog[(pb, "L1")]["baseline_axis_sampling_mm"], prog[(pb, "L1")]["later_axis_sampling_mm"]) == (None, None)


def test_axis_sampling_of_a_level_graded_in_a_thin_series(tmp_path):
    """One study, a 5-mm CT that measured L1-L3 (the primary document: most vertebrae) and a 1.25-mm one that
    graded L1: L1's row takes the thin series' loss, grade and sampling, L2 the coarse one's; the study's
    sampling is its primary document's."""
    coarse = _ct("A", "1.1", "20240101", {"L1": 33.0, "L2": 5.0, "L3": 4.0}, 5.0, graded=False)
    thin = _ct("A", "1.1", "20240101", {"L1": 38.0}, 1.25, graded=True)
    for order in ([coarse, thin], [thin, coarse]):
        for f in tmp_path.glob("*.json"):
            f.unlink()
        t = _tables(tmp_path, order)
        rows = {r["level"]: r for r in t["vertebrae"]}
        assert (rows["L1"]["axis_sampling_mm"], rows["L1"]["height_loss_pct"], rows["L1"]["genant_grade"]) == (
            1.25, 38.0, 2)
        assert (rows["L2"]["axis_sampling_mm"], rows["L2"]["genant_grade"]) == (5.0, None)
        (study,) = t["studies"]
        assert study["axis_sampling_mm"] == 5.0 and study["n_images"] == 2


@pytest.mark.parametrize("value", ["5 mm", True, 0, -1.5, float("nan"), float("inf"), [5.0]])
def test_a_malformed_axis_sampling_is_refused_naming_the_file(tmp_path, value):
    good = _ct("A", "1.1", "20240101", {"L1": 30.0}, None, graded=True)  # null: read as null
    bad = _ct("A", "1.2", "20240601", {"L1": 31.0}, value, graded=False)
    (tmp_path / "good.json").write_text(json.dumps(good))
    (tmp_path / "bad.json").write_text(json.dumps(bad))  # NaN and Infinity as json writes (and reads) them
    c = read_documents([tmp_path])
    assert c.n_docs == 1 and np.isnan(c.doc["axis_mm"]).all()
    ((where, why),) = c.errors
    assert where == str(tmp_path / "bad.json")
    assert why == f"image.axis_sampling_mm must be a positive number of millimetres or null, not {value!r}"


def test_a_level_at_a_gap_carries_the_gap_step(tmp_path):
    """A 2-mm CT with slices missing at L1's endplates (``landmarks.axis_sampling_mm``: L1 8 mm, not graded):
    L1's row carries 8.0, L2's the series' 2.0, the study the series'; and a later thin CT's progression row
    tells the baseline's 8.0 from the later 1.0."""
    gapped = _ct("A", "1.1", "20240101", {"L1": 24.0, "L2": 3.0}, 2.0, graded=True)
    gapped["vertebrae"][0].update(genant_grade=None, morphology=None)
    gapped["landmarks"] = {"axis_sampling_mm": {"L1": 8.0}}
    later = _ct("A", "1.2", "20240601", {"L1": 30.0, "L2": 4.0}, 1.0, graded=True)
    t = _tables(tmp_path, [gapped, later])
    v = {(r["study_index"], r["level"]): r for r in t["vertebrae"]}
    assert (v[(0, "L1")]["axis_sampling_mm"], v[(0, "L1")]["genant_grade"]) == (8.0, None)
    assert v[(0, "L2")]["axis_sampling_mm"] == 2.0 and v[(1, "L1")]["axis_sampling_mm"] == 1.0
    assert [s["axis_sampling_mm"] for s in sorted(t["studies"], key=lambda s: s["study_index"])] == [2.0, 1.0]
    prog = {r["level"]: r for r in t["progression"]}
    assert (prog["L1"]["baseline_axis_sampling_mm"], prog["L1"]["later_axis_sampling_mm"]) == (8.0, 1.0)
    assert (prog["L2"]["baseline_axis_sampling_mm"], prog["L2"]["later_axis_sampling_mm"]) == (2.0, 1.0)


@pytest.mark.parametrize("value", [{"L1": "8"}, {"L1": 0}, {"S1": 8.0}, [8.0]])
def test_a_malformed_level_axis_sampling_is_refused_naming_the_file(tmp_path, value):
    bad = _ct("A", "1.2", "20240601", {"L1": 31.0}, 2.0, graded=True)
    bad["landmarks"] = {"axis_sampling_mm": value}
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    c = read_documents([tmp_path])
    assert c.n_docs == 0
    ((where, why),) = c.errors
    assert where == str(tmp_path / "bad.json") and why.startswith("landmarks.axis_sampling_mm must map vertebral levels")
