"""``sagittal cohort``: de-identification, keyed pseudonyms, longitudinal linking, the data
dictionary and bad input, on the sample patients' documents (phantom truth)."""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import json
import stat
import zlib
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import sagittal
from sagittal.cli import main
from sagittal.cohort.pseudonym import keyed_pseudonym, load_or_create_key
from sagittal.io.series import pseudonym

from .conftest import SAMPLES

OUTPUT_FILES = {"studies.parquet", "studies.csv", "vertebrae.parquet", "vertebrae.csv", "progression.parquet",
                "progression.csv", "data_dictionary.json", "data_dictionary.md", "cohort.json",
                "figures/height_loss_trajectories.png", "figures/baseline_distributions.png"}


def _run(docs: Path | list[Path], out: Path, key: Path, clinical: Path | None = None) -> int:
    args = [str(d) for d in (docs if isinstance(docs, list) else [docs])] + ["-o", str(out), "--key", str(key)]
    return main(["cohort", *args, *(["--clinical", str(clinical)] if clinical else [])])


def _rows(out: Path, table: str) -> list[dict]:
    return pq.read_table(out / f"{table}.parquet").to_pylist()


def _png_texts(data: bytes) -> list[bytes]:
    """The decoded text chunks of a PNG (tEXt, zTXt, iTXt), which a raw scan could miss."""
    out, pos = [], 8
    while pos + 8 <= len(data):
        n = int.from_bytes(data[pos:pos + 4], "big")
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + n]
        if kind == b"tEXt":
            out.append(body)
        elif kind == b"zTXt":
            name, _, rest = body.partition(b"\x00")
            out.append(name + b" " + zlib.decompress(rest[1:]))
        elif kind == b"iTXt":
            name, _, rest = body.partition(b"\x00")
            flag, text = rest[0], rest[2:].split(b"\x00", 2)[-1]
            out.append(name + b" " + (zlib.decompress(text) if flag else text))
        pos += 12 + n
    return out


def _views(path: Path) -> list[bytes]:
    """Every byte of an output file, plus its decoded content where it is compressed."""
    data = path.read_bytes()
    views = [data]
    if path.suffix == ".parquet":
        t = pq.read_table(path)
        views.append(json.dumps(t.to_pylist(), default=str).encode())
        views.append(str(pq.read_metadata(path).metadata).encode())
    elif path.suffix == ".png":
        assert data.startswith(b"\x89PNG")
        views += _png_texts(data)
    return views


@pytest.fixture(scope="module")
def cohort(dressed, tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("cohort")
    key = root / "secret" / "cohort.key"
    out = root / "out"
    assert _run(dressed["docs"], out, key, dressed["clinical"]) == 0
    return {"out": out, "key": key, **dressed}


def test_every_output_is_written(cohort):
    files = {str(p.relative_to(cohort["out"])) for p in cohort["out"].rglob("*") if p.is_file()}
    assert files == OUTPUT_FILES  # no temporary file left behind


def test_no_output_byte_holds_an_identifying_input_value(cohort):
    key = load_or_create_key(cohort["key"])
    forbidden = [s.encode() for s in cohort["secrets"]]
    forbidden += [key, bytes.fromhex(key.decode())]  # the key, as text and as bytes
    for pid in cohort["patient_ids"]:  # the old, unkeyed pseudonym and plain hashes of the IDs
        forbidden += [pseudonym(pid).encode(), hashlib.sha256(pid.encode()).hexdigest()[:16].encode()]
    assert len(forbidden) > 40
    for path in sorted(p for p in cohort["out"].rglob("*") if p.is_file()):
        for view in _views(path):
            low = view.lower()
            leaks = [f.decode(errors="replace") for f in forbidden if f.lower() in low]
            assert not leaks, f"{path.name} holds {leaks}"


def test_key_file_is_0600_and_stays_out_of_the_outputs(cohort, dressed, tmp_path):
    assert stat.S_IMODE(cohort["key"].stat().st_mode) == 0o600
    inside = tmp_path / "out"
    assert _run(dressed["docs"], inside, inside / "cohort.key") == 2  # a key inside OUTDIR is refused
    assert not inside.exists()  # and neither created nor anything written


def test_same_key_same_pseudonyms_another_key_others(cohort, dressed, tmp_path):
    again, other = tmp_path / "again", tmp_path / "other"
    assert _run(dressed["docs"], again, cohort["key"], dressed["clinical"]) == 0
    assert _run(dressed["docs"], other, tmp_path / "other.key", dressed["clinical"]) == 0
    for table in ("studies", "vertebrae", "progression"):
        assert (again / f"{table}.csv").read_bytes() == (cohort["out"] / f"{table}.csv").read_bytes()
    first = {r["pseudonym"] for r in _rows(cohort["out"], "studies")}
    assert first == {keyed_pseudonym(p, load_or_create_key(cohort["key"])) for p in cohort["patient_ids"]}
    assert not first & {r["pseudonym"] for r in _rows(other, "studies")}
    keys = {r["study_key"] for r in _rows(cohort["out"], "studies")}
    assert len(keys) == 4 and not keys & {r["study_key"] for r in _rows(other, "studies")}
    # everything but the pseudonyms and keys is the same under another key
    strip = [{k: v for k, v in r.items() if k not in ("pseudonym", "study_key")} for r in _rows(other, "vertebrae")]
    mine = [{k: v for k, v in r.items() if k not in ("pseudonym", "study_key")} for r in _rows(cohort["out"], "vertebrae")]
    assert sorted(map(str, strip)) == sorted(map(str, mine))


def test_studies_dates_ages_and_sex(cohort):
    key = load_or_create_key(cohort["key"])
    by = {(r["pseudonym"], r["study_index"]): r for r in _rows(cohort["out"], "studies")}
    pha, phb, phc = (keyed_pseudonym(p, key) for p in cohort["patient_ids"])
    assert by[(pha, 0)]["age_years"] == 83 and by[(pha, 0)]["sex"] == "F"
    assert by[(phb, 0)]["age_years"] == 90  # 93 written as 90
    assert by[(phc, 0)]["age_years"] == 74  # from the birth date 1949-09-21 at 2024-02-03
    assert by[(phc, 1)]["days_since_first_study"] == (dt.date(2024, 7, 13) - dt.date(2024, 2, 3)).days
    assert all(r["days_since_first_study"] == 0 for (p, i), r in by.items() if i == 0)
    # PHA's study has a whole-spine DX (ok) and a lumbar CR (partial): the DX gives the parameters
    assert by[(pha, 0)]["n_images"] == 2 and by[(pha, 0)]["status"] == "ok" and by[(pha, 0)]["modality"] == "DX"
    assert by[(phb, 0)]["n_fractures"] == 1 and by[(phb, 0)]["n_grade2"] == 1
    assert by[(pha, 0)]["software_version"] == "0.1.0" and by[(pha, 0)]["model_version"] == "landmarks-v2"
    assert by[(phb, 0)]["model_version"] is None  # the label held the PatientID


def test_treatment_and_outcome_from_the_clinical_csv(cohort):
    key = load_or_create_key(cohort["key"])
    rows = {r["level"]: r for r in _rows(cohort["out"], "progression")
            if r["pseudonym"] == keyed_pseudonym("HOSP-MRN-5520195", key)}
    assert set(rows) == {"L1", "L2", "L3", "L4", "L5"}  # the follow-up CR shows L1-L5
    l1, l2 = rows["L1"], rows["L2"]
    assert (l1["augmentation"], l1["level_augmented"], l1["treatment"]) == ("vertebroplasty", True, "vertebroplasty")
    assert l1["augmentation_day"] == 17 and l1["augmented_between"] is True
    assert (l2["level_augmented"], l2["treatment"], l2["augmented_between"]) == (False, "conservative", False)
    assert l1["followup_vas"] == 3 and l1["clinical_vas"] == 8
    assert l1["followup_day"] == (dt.date(2024, 8, 1) - dt.date(2024, 2, 3)).days
    assert l1["thoracolumbar"] is True and rows["L3"]["thoracolumbar"] is False


def test_data_dictionary_covers_every_column(cohort):
    d = json.loads((cohort["out"] / "data_dictionary.json").read_text())
    md = (cohort["out"] / "data_dictionary.md").read_text()
    for table in ("studies", "vertebrae", "progression"):
        schema = pq.read_schema(cohort["out"] / f"{table}.parquet")
        cols = d["tables"][table]["columns"]
        assert [c["name"] for c in cols] == schema.names
        for c in cols:
            expected = {"bool": pa.bool_(), "string": pa.string()}.get(c["type"]) or getattr(pa, c["type"])()
            assert schema.field(c["name"]).type == expected, c["name"]
            assert c["definition"] and c["source"], c["name"]
            assert f"| `{c['name']}` |" in md
        with open(cohort["out"] / f"{table}.csv", newline="") as fh:
            assert next(csv.reader(fh)) == schema.names
    options = {o["option"]: o["applied"] for o in d["deidentification"]["options"]}
    assert options["Retain Longitudinal Temporal Information with Modified Dates Option"] == "yes"
    assert options["Retain Patient Characteristics Option"] == "yes"
    assert options["Retain UIDs Option"] == "no"


def _truth_loss(patient: str, level: str) -> list[float]:
    truth = json.loads((SAMPLES / patient / "truth.json").read_text())
    return [next(v["height_loss_pct"] for v in s["spine"]["vertebrae"] if v["level"] == level) for s in truth["studies"]]


def _check_phc_l1(out: Path, tolerance_pts: float) -> dict:
    rows = [r for r in _rows(out, "progression") if r["level"] == "L1"]
    assert len(rows) == 1
    r = rows[0]
    before, after = _truth_loss("PHC", "L1")  # 30 % then 44 %
    assert r["days_between"] == (dt.date(2025, 9, 5) - dt.date(2025, 4, 2)).days
    assert r["baseline_height_loss_pct"] == pytest.approx(before, abs=tolerance_pts)
    assert r["later_height_loss_pct"] == pytest.approx(after, abs=tolerance_pts)
    assert r["height_loss_change_pts"] > 0
    assert r["height_loss_change_pts"] == pytest.approx(after - before, abs=tolerance_pts)
    months = r["days_between"] / (365.25 / 12)
    assert r["height_loss_rate_pts_per_month"] == pytest.approx(r["height_loss_change_pts"] / months, abs=1e-3)
    assert r["new_fracture"] is False and r["baseline_fractured"] is True
    return r


def test_sample_follow_up_progression_equals_the_truth(truth_docs, tmp_path):
    """PHC: L1 loses height between the two studies. From true landmarks the only error is the
    expected-height estimate (about 1–2 points, scripts/eval_genant.py): 3 points allowed."""
    assert _run(truth_docs, tmp_path / "out", tmp_path / "k.key", SAMPLES / "clinical.csv") == 0
    r = _check_phc_l1(tmp_path / "out", 3.0)
    assert (r["baseline_grade"], r["later_grade"], r["grade_change"]) == (2, 3, 1)
    assert r["treatment"] is None  # the sample clinical CSV says nothing of augmentation
    others = [x for x in _rows(tmp_path / "out", "progression") if x["level"] != "L1"]
    assert others and all(abs(x["height_loss_change_pts"]) < 1.0 for x in others)  # unfractured levels stay put


@pytest.mark.slow
def test_sample_follow_up_progression_from_analyze(tmp_path):
    """The same from ``sagittal analyze`` on the two PHC radiographs. The model's landmark error
    (90th percentile 0.47 mm, models/README.md) moves a loss by up to about 3 points per study:
    5 points allowed on each figure, and L1 must rise."""
    analysed, key = tmp_path / "analyze", tmp_path / "secret" / "k.key"
    assert main(["analyze", str(SAMPLES / "PHC" / "study1" / "whole_spine_dx"), str(SAMPLES / "PHC" / "study2"),
                 "-o", str(analysed), "--device", "cpu", "--key", str(key)]) == 0
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert _run(analysed, tmp_path / "out", key) == 0
    _check_phc_l1(tmp_path / "out", 5.0)
    # analyze's patient folder is the cohort's pseudonym: one keyed name for the patient everywhere
    folders = {p.name for p in analysed.iterdir() if p.is_dir() and p.name.startswith("patient-")}
    assert folders == {r["pseudonym"] for r in _rows(tmp_path / "out", "studies")}
    assert folders == {keyed_pseudonym("PHC", load_or_create_key(key))} != {pseudonym("PHC")}
    # age and sex reach the documents from the DICOM header (PatientBirthDate 1951-04-01, study 2025-04-02)
    studies = _rows(tmp_path / "out", "studies")
    assert [(s["age_years"], s["sex"]) for s in sorted(studies, key=lambda r: r["study_index"])] == [(74, "F"), (74, "F")]
    assert {(s["software_version"], s["model_version"]) for s in studies} == {(sagittal.__version__, "landmarks.pt")}
    import jsonschema

    from sagittal.report.analysis import load_schema

    for doc in analysed.rglob("*.json"):
        jsonschema.validate(json.loads(doc.read_text()), load_schema())


def test_malformed_documents_are_skipped_with_the_file_named(truth_docs, tmp_path, capsys):
    bad = tmp_path / "bad"
    bad.mkdir()
    good = json.loads(next(truth_docs.glob("PHC_study2*.json")).read_text())
    (bad / "truncated.json").write_text(json.dumps(good)[:500])
    wrong_level = json.loads(json.dumps(good))
    wrong_level["vertebrae"][0]["level"] = "L9"
    (bad / "wrong_level.json").write_text(json.dumps(wrong_level))
    text_loss = json.loads(json.dumps(good))
    text_loss["vertebrae"][1]["height_loss_pct"] = "12 %"
    (bad / "text_loss.json").write_text(json.dumps(text_loss))
    no_source = dict(good, source=None)
    (bad / "measure.jsonl").write_text(json.dumps(good) + "\n" + json.dumps(no_source) + "\n")
    (bad / "truth.json").write_text(json.dumps({"schema": "sagittal.phantom-truth/1"}))  # another schema: passed over
    assert _run([truth_docs, bad], tmp_path / "out", tmp_path / "k.key") == 0
    err = capsys.readouterr().err
    assert f"{bad / 'truncated.json'}: not valid JSON" in err
    assert f"{bad / 'wrong_level.json'}: vertebrae[0]: unknown level 'L9'" in err
    assert f"{bad / 'text_loss.json'}: vertebrae[1]: height_loss_pct must be a number" in err
    assert f"{bad / 'measure.jsonl'}, line 2: source is null" in err
    assert "truth.json" not in err
    summary = json.loads((tmp_path / "out" / "cohort.json").read_text())
    assert summary["documents"] == 7 and summary["documents_skipped"] == 4  # 6 good + the good .jsonl line
    assert len(_rows(tmp_path / "out", "studies")) == 4


def test_nothing_readable_is_an_error(tmp_path, capsys):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "x.json").write_text('{"schema": "sagittal.analysis/1", ')
    assert _run(tmp_path / "docs", tmp_path / "out", tmp_path / "k.key") == 1
    err = capsys.readouterr().err
    assert "not valid JSON" in err and "no usable analysis document" in err
    (tmp_path / "empty").mkdir()
    assert _run(tmp_path / "empty", tmp_path / "out2", tmp_path / "k.key") == 1
