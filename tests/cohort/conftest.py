"""Inputs for the cohort tests: the sample patients' analysis documents from the phantom's
true landmarks, and a copy of them dressed with every PS3.15 Basic Profile value a PACS
export could carry (names, IDs, birth dates, dates, UIDs, accession numbers, institution,
descriptions) in the documents, their paths and the clinical CSV."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sagittal.phantom.samples import truth_analysis_documents

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "sample_dicom"

#: sample patient → identifiers of a made-up hospital patient
PATIENTS = {
    "PHA": {"patient_id": "HOSP-MRN-5520193", "patient_name": "DOE^JANE^MARIE", "patient_birth_date": "19410317",
            "patient_age": "083Y", "patient_sex": "F", "dates": ["20240115"], "accession": ["ACC-99182736"]},
    "PHB": {"patient_id": "HOSP-MRN-5520194", "patient_name": "ROE^RICHARD", "patient_birth_date": "19300611",
            "patient_age": "093Y", "patient_sex": "M", "dates": ["20231201"], "accession": ["ACC-99182799"]},
    "PHC": {"patient_id": "HOSP-MRN-5520195", "patient_name": "SMITH^ALICE^B", "patient_birth_date": "19490921",
            "patient_age": None, "patient_sex": "F", "dates": ["20240203", "20240713"],
            "accession": ["ACC-99183004", "ACC-99190412"]},
}
INSTITUTION = "SAINT EXAMPLE GENERAL HOSPITAL"
OTHER_TEXT = ["LUMBAR SPINE STANDING LAT", "WHOLE SPINE EOS LATERAL", "HOUSE^GREGORY", "STUDYID-4471-Q",
              "Dr Quinn orthopaedic ward 7", "ROOM-3B-BED-12"]
#: the dressed patients' clinical CSV: PHC's L1 was cemented between the two studies
CLINICAL = """patient_id,age,vas,pain_weeks,augmentation,augmentation_date,augmentation_levels,followup_vas,followup_date
HOSP-MRN-5520193,82,3,10,none,,,2,2024-03-01
HOSP-MRN-5520194,93,6,20,,,,,
HOSP-MRN-5520195,74,8,4,vertebroplasty,2024-02-20,L1,3,20240801
"""
CLINICAL_DATES = ["2024-03-01", "2024-02-20", "20240801", "20240301", "20240220", "2024-08-01"]


@pytest.fixture(scope="session")
def truth_docs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample radiographs' documents from the phantom's true landmarks (sample identifiers)."""
    out = tmp_path_factory.mktemp("truth_docs")
    truth_analysis_documents(SAMPLES, out)
    return out


def _iso(d: str) -> str:
    return f"{d[:4]}-{d[4:6]}-{d[6:]}"


@pytest.fixture(scope="session")
def dressed(truth_docs: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """The same documents under folders named by PatientID and StudyInstanceUID, with every
    identifying attribute filled in, and the clinical CSV; ``secrets`` lists every value that
    must never reach an output."""
    root = tmp_path_factory.mktemp("dressed")
    docs_dir = root / "export"
    secrets: set[str] = {INSTITUTION, *OTHER_TEXT, *CLINICAL_DATES}
    study_no: dict[str, list[str]] = {}
    for path in sorted(truth_docs.glob("*.json")):
        doc = json.loads(path.read_text())
        src = doc["source"]
        sample = src["patient_id"]
        p = PATIENTS[sample]
        uids = study_no.setdefault(sample, [])
        if src["study_instance_uid"] not in uids:
            uids.append(src["study_instance_uid"])
        k = uids.index(src["study_instance_uid"])
        date = p["dates"][k]
        secrets.update({src["study_instance_uid"], src["series_instance_uid"], *src["sop_instance_uids"],
                        sample + "/", src["path"], p["patient_id"], p["patient_name"], p["patient_birth_date"],
                        _iso(p["patient_birth_date"]), date, _iso(date), p["accession"][k]})
        src.update({
            "patient_id": p["patient_id"], "study_date": date, "study_time": "101502.123",
            "patient_sex": p["patient_sex"], "patient_birth_date": p["patient_birth_date"],
            "patient_name": p["patient_name"], "accession_number": p["accession"][k], "institution_name": INSTITUTION,
            "study_description": OTHER_TEXT[0], "series_description": OTHER_TEXT[1],
            "referring_physician_name": OTHER_TEXT[2], "study_id": OTHER_TEXT[3],
            "path": f"/pacs/{p['patient_id']}/{src['study_instance_uid']}/{Path(src['path']).name}",
        })
        if p["patient_age"]:
            src["patient_age"] = p["patient_age"]
        doc["warnings"].append(f"{OTHER_TEXT[4]}: {p['patient_name']} {OTHER_TEXT[5]}")
        # a label is kept only if it holds no identifier (PHB's writer put the PatientID in it)
        doc["software"] = {"sagittal": "0.1.0", "model": "landmarks-v2" if sample != "PHB" else f"v2-{p['patient_id']}"}
        dest = docs_dir / p["patient_id"] / src["study_instance_uid"] / f"{src['sop_instance_uids'][0]}.json"
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(json.dumps(doc, indent=1))
    (root / "clinical.csv").write_text(CLINICAL)
    return {"docs": docs_dir, "clinical": root / "clinical.csv", "secrets": sorted(secrets),
            "patient_ids": [p["patient_id"] for p in PATIENTS.values()]}
