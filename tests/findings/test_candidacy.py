"""Candidacy rules, table-driven: every category, precedence, unknowns, multiple fractures,
progression, factors, bad clinical CSVs, the HTML report and ``sagittal report``."""

from __future__ import annotations

import csv
import json
from html.parser import HTMLParser

import pytest

from sagittal.cli import main
from sagittal.errors import InputError
from sagittal.findings.candidacy import evaluate_patient
from sagittal.findings.clinical import ClinicalInputs, read_clinical_csv
from sagittal.report.candidacy import patient_facts


def vert(level, grade=0, loss=5.0, rk=8.0, oedema=None, cleft=None):
    v = {"level": level, "heights_mm": {"anterior": 20, "middle": 19, "posterior": 21}, "height_loss_pct": loss,
         "genant_grade": grade, "morphology": "normal" if grade == 0 else "wedge", "regional_kyphosis_deg": rk,
         "vertebral_kyphosis_deg": 3.0}
    if oedema is not None:
        v["oedema"] = {"present": oedema, "extent_pct": 60.0 if oedema else None, "source": "mr"}
    if cleft is not None:
        v["cleft"] = {"present": bool(cleft), "content": cleft or None, "source": "ct"}
    return v


def doc(pid="P1", vertebrae=(), date="20250101", study="1.2.3", status="ok", params=None):
    p = {"pelvic_incidence_deg": 55.0, "pelvic_tilt_deg": 22.0, "sacral_slope_deg": 33.0, "lumbar_lordosis_deg": 40.0,
         "thoracic_kyphosis_deg": 50.0, "sagittal_vertical_axis_mm": 60.0, "pi_ll_mismatch_deg": 15.0,
         "srs_schwab_pi_ll": "+", "srs_schwab_pt": "+", "srs_schwab_sva": "+"}
    p.update(params or {})
    return {"schema": "sagittal.analysis/1", "status": status,
            "source": {"path": f"/x/{pid}/{study}", "modality": "DX", "study_instance_uid": study,
                       "series_instance_uid": study + ".1", "sop_instance_uids": [], "patient_id": pid,
                       "study_date": date},
            "image": {"rows": 10, "columns": 10, "pixel_spacing_mm": [0.2, 0.2], "spacing_source": "PixelSpacing",
                      "anterior": "left"},
            "landmarks": {"vertebrae": {}, "s1_endplate": None, "femoral_heads": []},
            "parameters": p, "vertebrae": list(vertebrae), "warnings": []}


NORMAL = [vert(lv) for lv in ("T11", "T12", "L1", "L2", "L3")]


def with_fx(level="L1", **kw):
    return [vert(v["level"], **({"grade": 2, "loss": 32.0, "rk": 15.0} | kw if v["level"] == level else {}))
            for v in NORMAL]


SEVERE = dict(vas=8, pain_weeks=4, analgesic_failure=True, hospitalised=False, bed_bound=False)


def run(docs, **clinical):
    c = ClinicalInputs(patient_id="P1", **clinical) if clinical else None
    levels, params, analysable = patient_facts([(f"d{i}.json", d) for i, d in enumerate(docs)], c)
    return evaluate_patient("P1", levels, c, params, analysable)


@pytest.mark.parametrize(
    "docs, clinical, category",
    [
        pytest.param([doc(vertebrae=with_fx(oedema=True))], SEVERE | {"neuro_deficit": True},
                     "urgent-surgical-referral", id="neuro-deficit-beats-all"),
        pytest.param([doc(vertebrae=NORMAL)], {"instability": True}, "urgent-surgical-referral", id="instability"),
        pytest.param([doc(vertebrae=with_fx(oedema=True))], SEVERE | {"malignancy_suspected": True},
                     "red-flags-multidisciplinary", id="malignancy"),
        pytest.param([doc(vertebrae=NORMAL)], {"malignancy_suspected": True, "neuro_deficit": True},
                     "urgent-surgical-referral", id="urgent-precedes-red-flags"),
        pytest.param([doc(vertebrae=NORMAL)], SEVERE, "augmentation-not-indicated", id="no-fracture"),
        pytest.param([doc(vertebrae=with_fx(oedema=False))], SEVERE, "augmentation-not-indicated",
                     id="fracture-without-oedema"),
        pytest.param([doc(vertebrae=with_fx())], SEVERE, "mri-needed", id="oedema-unknown"),
        pytest.param([doc(vertebrae=with_fx())], SEVERE | {"mri_oedema_levels": frozenset({"L1"})},
                     "consider-augmentation", id="manual-oedema-severe-refractory"),
        pytest.param([doc(vertebrae=with_fx(oedema=True))], dict(vas=9, pain_weeks=1, analgesic_failure=True,
                                                                  hospitalised=True),
                     "consider-augmentation", id="hospitalised-before-3-weeks"),
        pytest.param([doc(vertebrae=with_fx(oedema=True))], SEVERE | {"vas": 3}, "conservative-care",
                     id="pain-not-severe"),
        pytest.param([doc(vertebrae=with_fx(oedema=True))], SEVERE | {"pain_weeks": 2, "hospitalised": False},
                     "conservative-care", id="not-yet-3-weeks"),
        pytest.param([doc(vertebrae=with_fx(cleft="gas"))], dict(vas=8, hospitalised=True), "consider-augmentation",
                     id="cleft-is-non-union"),
        pytest.param([doc(vertebrae=with_fx(oedema=True))], {"vas": 2, "pulmonary_dysfunction": True},
                     "consider-augmentation", id="pulmonary-dysfunction"),
        pytest.param([doc(vertebrae=with_fx(oedema=True))], {}, "conservative-care", id="no-clinical-data"),
        pytest.param([doc(status="rejected")], SEVERE, "insufficient-data", id="nothing-analysable"),
        pytest.param([], {"neuro_deficit": True}, "urgent-surgical-referral", id="clinical-only-urgent"),
        pytest.param([doc(vertebrae=[vert("T12", 2, 30, oedema=False), vert("L1", 2, 30)])], SEVERE, "mri-needed",
                     id="two-fractures-one-unknown"),
        pytest.param([doc(vertebrae=[vert("T12", 2, 30, oedema=False), vert("L1", 2, 30, oedema=True)])], SEVERE,
                     "consider-augmentation", id="two-fractures-one-active"),
        pytest.param([doc(vertebrae=with_fx(loss=25.0), date="20250101", study="a"),
                      doc(vertebrae=with_fx(loss=36.0), date="20250601", study="b")],
                     {"vas": 2, "mri_oedema_levels": frozenset({"L1"})}, "consider-augmentation",
                     id="progressive-deformity"),
        pytest.param([doc(vertebrae=with_fx(loss=25.0), date="20250101", study="a"),
                      doc(vertebrae=with_fx(loss=27.0), date="20250601", study="b")],
                     {"vas": 2, "mri_oedema_levels": frozenset({"L1"})}, "conservative-care", id="stable-deformity"),
        pytest.param([doc(vertebrae=with_fx())], SEVERE | {"mri_oedema_levels": frozenset()},
                     "augmentation-not-indicated", id="mri-showed-none"),
    ],
)
def test_categories(docs, clinical, category):
    r = run(docs, **clinical)
    assert r["category"] == category
    assert r["schema"] == "sagittal.candidacy/1"
    assert any("anti-osteoporotic" in x for x in r["reminders"])
    assert "sham" in r["evidence"] and "Decision support" in r["disclaimer"]


def test_criteria_carry_values_status_and_source():
    r = run([doc(vertebrae=with_fx(oedema=True))], vas=7, pain_weeks=None, analgesic_failure=True)
    (lv,) = r["levels"]
    crit = {c["id"]: c for c in lv["criteria"]}
    assert crit["severe-pain"]["status"] == "met" and crit["severe-pain"]["values"]["vas"] == 7
    assert crit["refractory-pain"]["status"] == "unknown"  # weeks unknown: not "no"
    assert crit["mri-oedema"]["values"]["source"] == "mr"
    assert all(c["source"] and c["version"] for c in lv["criteria"])
    assert r["category"] == "conservative-care"


def test_factors_sandwich_cascade_adjacent_oedema():
    vs = [vert("T11", 2, 30), vert("T12"), vert("L1", 2, 30), vert("L2", oedema=True), vert("L3")]
    r = run([doc(vertebrae=vs)], age=55)
    f = {x["id"]: x for x in r["factors"]}
    assert f["sandwich"]["status"] == "met" and f["sandwich"]["values"]["levels"] == ["T12"]
    assert f["adjacent-oedema"]["status"] == "met" and f["adjacent-oedema"]["values"]["levels"] == ["L2"]
    assert f["cascade"]["status"] == "not met" and f["age-under-60"]["status"] == "met"
    assert f["thoracolumbar-L1"]["status"] == "met"
    cascade = run([doc(vertebrae=[vert(lv, 2, 30) for lv in ("T9", "T10", "T11", "T12", "L1")])])
    assert {x["id"]: x for x in cascade["factors"]}["cascade"]["status"] == "met"
    b = r["baseline"]
    assert b["regional_kyphosis_deg"] == {"T11": 8.0, "L1": 8.0} and b["srs_schwab_sva"] == "+"
    assert {x["id"]: x for x in r["factors"]}["sagittal-imbalance"]["status"] == "not met"  # PT 22 < 27


CSV_HEADER = "patient_id,age,vas,pain_weeks,hospitalised,bed_bound,analgesic_failure,neuro_deficit,instability," \
             "malignancy_suspected,pulmonary_dysfunction,frail,mri_oedema_levels,cleft_levels\n"


def test_clinical_csv_parses_and_keeps_unknowns(tmp_path):
    p = tmp_path / "c.csv"
    p.write_text(CSV_HEADER + "P1,72,8,4,yes,no,yes,no,no,no,,yes,T12;L1,none\nP2,,,,,,,,,,,,,\n")
    c = read_clinical_csv(p)
    assert c["P1"].vas == 8 and c["P1"].hospitalised is True and c["P1"].pulmonary_dysfunction is None
    assert c["P1"].mri_oedema_levels == frozenset({"T12", "L1"}) and c["P1"].cleft_levels == frozenset()
    assert c["P2"].age is None and c["P2"].mri_oedema_levels is None
    q = tmp_path / "partial.csv"
    q.write_text("patient_id,vas\nP3,6\n")  # missing columns are unknown, not an error
    assert read_clinical_csv(q)["P3"].analgesic_failure is None


@pytest.mark.parametrize(
    "body, message",
    [
        ("P1,72,8,4,maybe,no,yes,no,no,no,,,,\n", "row 2, column 'hospitalised': 'maybe' is not yes or no"),
        ("P1,72,eleven,4,,,,,,,,,,\n", "row 2, column 'vas': 'eleven' is not a number"),
        ("P1,72,12,4,,,,,,,,,,\n", "row 2, column 'vas': 12 is outside 0–10"),
        ("P1,72,8,4,,,,,,,,,L9,\n", "row 2, column 'mri_oedema_levels': unknown level(s) L9"),
        ("P1,,,,,,,,,,,,,\nP1,,,,,,,,,,,,,\n", "row 3, column 'patient_id': 'P1' appears twice"),
        (",70,,,,,,,,,,,,\n", "row 2, column 'patient_id': empty"),
    ],
)
def test_bad_clinical_csv_names_row_and_column(tmp_path, body, message):
    p = tmp_path / "bad.csv"
    p.write_text(CSV_HEADER + body)
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        read_clinical_csv(p)


@pytest.mark.parametrize("header, message", [("id,age\n", "needs a 'patient_id' column"),
                                             ("patient_id,weight\n", "unknown column")])
def test_bad_clinical_header(tmp_path, header, message):
    p = tmp_path / "bad.csv"
    p.write_text(header + "P1,1\n")
    with pytest.raises(InputError, match=message):
        read_clinical_csv(p)


class _Collector(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.ids, self.urls = [], set(), []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        a = dict(attrs)
        if "id" in a:
            self.ids.add(a["id"])
        for k in ("src", "href"):
            if k in a:
                self.urls.append(a[k])


def test_report_cli_html_csv(tmp_path, capsys):
    docs_dir = tmp_path / "docs"
    docs_dir.mkdir()
    (docs_dir / "a.json").write_text(json.dumps(doc("PA", NORMAL)))
    d = doc("PB", with_fx(oedema=True))
    (docs_dir / "b.json").write_text(json.dumps(d))
    (docs_dir / "b.png").write_bytes(b"\x89PNG\r\n\x1a\nfake")  # an overlay beside the document
    (tmp_path / "more.jsonl").write_text(json.dumps(doc("PC", with_fx())) + "\n")
    (docs_dir / "junk.json").write_text("{not json")
    (docs_dir / "d.json").write_text(json.dumps(_ungraded_doc(pid="PD", vertebrae=NORMAL)))  # T12 ungraded
    clin = tmp_path / "c.csv"
    clin.write_text(CSV_HEADER + "PB,80,9,5,yes,,yes,no,no,no,,no,,\nPX,50,,,,,,,,,,,,\nPD,70,,,,,,,,,,,,\n")
    assert main(["report", str(docs_dir), str(tmp_path / "more.jsonl"), "--clinical", str(clin),
                 "-o", str(tmp_path / "out")]) == 0
    cap = capsys.readouterr()
    assert "PB" in cap.out and "consider-augmentation" in cap.out
    assert "junk.json" in cap.err and "no row in the clinical CSV" in cap.err
    with open(tmp_path / "out" / "candidacy.csv", newline="") as fh:
        rows = {r["patient_id"]: r for r in csv.DictReader(fh)}
    assert rows["PA"]["category"] == "augmentation-not-indicated"
    assert rows["PB"]["category"] == "consider-augmentation"
    assert rows["PC"]["category"] == "mri-needed"
    assert rows["PX"]["category"] == "insufficient-data"
    assert rows["PD"]["category"] == "insufficient-data" and rows["PD"]["ungraded_levels"] == "T12"
    assert rows["PA"]["ungraded_levels"] == rows["PX"]["ungraded_levels"] == ""
    reports = sorted((tmp_path / "out" / "patients").glob("*/candidacy.json"))
    assert len(reports) == 5
    html_text = (tmp_path / "out" / rows["PB"]["report"]).read_text()
    parser = _Collector()
    parser.feed(html_text)
    assert {"disclaimer", "summary", "patient-criteria", "levels", "factors", "baseline", "reminders",
            "evidence", "images"} <= parser.ids
    assert "script" not in parser.tags and "link" not in parser.tags
    assert parser.urls and all(u.startswith("data:image/png;base64,") for u in parser.urls)
    assert "Decision support" in html_text and "anti-osteoporotic" in html_text and "@media print" in html_text


def test_report_without_documents_is_a_usage_error(tmp_path, capsys):
    assert main(["report", str(tmp_path), "-o", str(tmp_path / "o")]) == 2
    assert "no analysis documents" in capsys.readouterr().err


def _ungraded_doc(level="T12", reason="it looks collapsed, but its two placements disagree by 7 % of its size", **kw):
    """A document reporting ``level`` with its level and points but no grade (``landmarks.ungraded``)."""
    d = doc(**kw)
    d["vertebrae"] = [v for v in d["vertebrae"] if v["level"] != level] + [
        {**vert(level), "heights_mm": None, "height_loss_pct": None, "genant_grade": None, "morphology": None}]
    d["landmarks"]["ungraded"] = {level: reason}
    return d


def test_a_vertebra_reported_ungraded_is_not_read_as_unfractured():
    """A vertebra the detector reports without a grade (its points not steady enough: it may look
    collapsed) leaves "no fracture" unknown: with no other fracture the category is
    ``insufficient-data``, not ``augmentation-not-indicated``, and the level is listed with its
    reason (JSON and HTML); a fracture elsewhere decides as before, the level still listed; a later
    study that grades it settles it."""
    from sagittal.report.html import candidacy_html

    r = run([_ungraded_doc(vertebrae=NORMAL)], **SEVERE)
    assert r["category"] == "insufficient-data"
    assert r["ungraded_levels"] == [{"level": "T12", "reason": "it looks collapsed, but its two placements disagree "
                                                               "by 7 % of its size"}]
    assert "T12 was found but not graded: it looks collapsed" in candidacy_html(r, [])
    r = run([_ungraded_doc(vertebrae=with_fx(oedema=True))], **SEVERE)
    assert r["category"] == "consider-augmentation" and [u["level"] for u in r["ungraded_levels"]] == ["T12"]
    r = run([_ungraded_doc(vertebrae=with_fx(oedema=False))], **SEVERE)
    assert r["category"] == "insufficient-data"  # the graded fracture is not indicated; T12 is unknown
    later = doc(vertebrae=NORMAL, date="20250301", study="1.2.4")
    r = run([_ungraded_doc(vertebrae=NORMAL), later], **SEVERE)
    assert r["category"] == "augmentation-not-indicated" and r["ungraded_levels"] == []
    assert run([doc(vertebrae=NORMAL)], **SEVERE)["ungraded_levels"] == []
    # review: an earlier study's grade does not hide a later study's ungraded vertebra (a new collapse)
    earlier = doc(vertebrae=NORMAL, date="20240101", study="1.2.0")
    r = run([earlier, _ungraded_doc(vertebrae=NORMAL)], **SEVERE)
    assert r["category"] == "insufficient-data" and [u["level"] for u in r["ungraded_levels"]] == ["T12"]
    # ... but a grade from the same study (another modality) stands
    mr = doc(vertebrae=NORMAL)
    mr["source"]["modality"] = "MR"
    assert run([mr, _ungraded_doc(vertebrae=NORMAL)], **SEVERE)["category"] == "augmentation-not-indicated"
    # the contract's other spellings: a list of levels, a reason left empty
    for spelled in (["T12"], {"T12": ""}, {"T12": None}):
        d = _ungraded_doc(vertebrae=NORMAL)
        d["landmarks"]["ungraded"] = spelled
        r = run([d], **SEVERE)
        assert r["category"] == "insufficient-data" and r["ungraded_levels"][0]["reason"].startswith("reported without")


def test_a_malformed_ungraded_map_is_an_error_naming_the_document():
    """``landmarks.ungraded`` naming something that is not a level is refused as the analysis
    refuses it (``levels.ungraded_reasons``), with the document's path."""
    d = _ungraded_doc(vertebrae=NORMAL)
    d["landmarks"]["ungraded"] = {"T13": "x"}
    with pytest.raises(InputError, match=r"d0\.json: landmarks\.ungraded must map vertebral levels"):
        run([d], **SEVERE)


def test_a_vertebra_without_a_grade_is_not_read_as_unfractured_whatever_the_reason():
    """A reported vertebra whose grade is null although ``landmarks.ungraded`` does not name it (heights
    measured, the grade withheld for another reason the document's warnings give: a CT sampled too
    coarsely along the spine to grade) leaves "no fracture" unknown as an ungraded one does; the
    reason is the document's own warning."""
    d = doc(vertebrae=NORMAL)
    why = "Genant grade and morphology withheld: the series samples the spine's axis every 5.0 mm"
    d["vertebrae"] = [{**v, "genant_grade": None, "morphology": None} if v["level"] == "T12" else v
                      for v in d["vertebrae"]]
    # another level's warning first (its points not steady), then the document's own for T12 among others
    d["warnings"] = [*d.get("warnings", []), "L4: two placements of its points disagree by 30 % of its size (points "
                     "not stable): withheld, no height or grade", f"T11, T12, L1: {why}"]
    r = run([d], **SEVERE)
    assert r["category"] == "insufficient-data"
    assert r["ungraded_levels"] == [{"level": "T12", "reason": why}]
    d["warnings"] = [*d["warnings"][:-1], "T12: grade withheld, heights kept (coarse series)"]
    assert run([d], **SEVERE)["ungraded_levels"] == [{"level": "T12", "reason": "grade withheld, heights kept (coarse series)"}]
    d["warnings"] = d["warnings"][:-1]  # only L4's: not borrowed
    assert run([d], **SEVERE)["ungraded_levels"][0]["reason"].startswith("reported without a Genant grade")
    later = doc(vertebrae=NORMAL, date="20250301", study="1.2.4")  # a later study that grades it settles it
    assert run([d, later], **SEVERE)["category"] == "augmentation-not-indicated"


def test_factors_read_a_level_without_a_grade_as_unknown():
    """A level reported without a grade may be fractured (review R15b): the fracture count with none graded
    fractured, a cascade it could complete and a sandwich it sits in are unknown, not 'not met'."""
    def ungraded(lv):
        return {**vert(lv), "genant_grade": None, "morphology": None}

    coarse = run([doc(vertebrae=[ungraded(lv) for lv in ("T11", "T12", "L1", "L2", "L3")])])
    f = {x["id"]: x for x in coarse["factors"]}
    assert f["fracture-count"]["status"] == "unknown" and f["cascade"]["status"] == "unknown"
    assert f["fracture-count"]["values"]["ungraded_levels"] == ["T11", "T12", "L1", "L2", "L3"]
    mid = run([doc(vertebrae=[vert("T12", 2, 30), ungraded("L1"), vert("L2", 2, 30), vert("L3")])])
    f = {x["id"]: x for x in mid["factors"]}
    assert f["sandwich"]["status"] == "unknown" and f["sandwich"]["values"]["levels"] == []  # L1 not known intact
    assert f["fracture-count"]["status"] == "met" and f["cascade"]["status"] == "not met"  # 2 + 1 <= 3
    graded = run([doc(vertebrae=[vert("T12", 2, 30), vert("L1"), vert("L2", 2, 30), ungraded("L3")])])
    assert {x["id"]: x for x in graded["factors"]}["sandwich"]["status"] == "met"
    # review R15c: a later study that does not grade a level makes it unknown, whatever an earlier one said
    first = doc(vertebrae=[vert("T12", 2, 30), vert("L1"), vert("L2", 2, 30)], date="20240101", study="1.1")
    later = doc(vertebrae=[vert("T12", 2, 30), ungraded("L1"), vert("L2", 2, 30)], date="20250101", study="1.2")
    f = {x["id"]: x for x in run([first, later])["factors"]}
    assert f["sandwich"]["status"] == "unknown" and f["cascade"]["values"]["ungraded_levels"] == ["L1"]
    normal = doc(vertebrae=NORMAL, date="20240101", study="1.1")
    coarse_later = doc(vertebrae=[ungraded(lv) for lv in ("T11", "T12", "L1", "L2", "L3")], date="20250101", study="1.2")
    f = {x["id"]: x for x in run([normal, coarse_later])["factors"]}
    assert f["fracture-count"]["status"] == "unknown" and len(f["fracture-count"]["values"]["ungraded_levels"]) == 5
    # a level only the clinical CSV names (never imaged) is not 'ungraded'; fully graded patients read as before
    f = {x["id"]: x for x in run([doc(vertebrae=NORMAL)], mri_oedema_levels=frozenset({"T9"}))["factors"]}
    assert f["fracture-count"]["status"] == "not met" and "ungraded_levels" not in f["fracture-count"]["values"]
