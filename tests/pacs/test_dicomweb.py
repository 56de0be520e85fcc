"""DICOMweb transfer: credentials from the environment only, and the round trip against a
real Orthanc — push a phantom study, pull it, analyse it, push the SR and Secondary
Captures, find them with QIDO-RS and read the SR's values back over WADO-RS."""

from __future__ import annotations

import json
from pathlib import Path

import pydicom
import pytest

from sagittal.cli import main
from sagittal.pacs import PacsError, session_from_env

REPO = Path(__file__).resolve().parents[2]
PHB = REPO / "sample_dicom" / "PHB"


@pytest.mark.parametrize("env, expect", [
    pytest.param({}, (None, None), id="anonymous"),
    pytest.param({"SAGITTAL_DICOMWEB_TOKEN": "tok"}, (None, "Bearer tok"), id="bearer"),
    pytest.param({"SAGITTAL_DICOMWEB_USER": "u", "SAGITTAL_DICOMWEB_PASSWORD": "p"}, (("u", "p"), None), id="basic"),
])
def test_credentials_come_from_the_environment(env, expect):
    s = session_from_env(env)
    assert (s.auth, s.headers.get("Authorization")) == expect
    assert s.verify is True


@pytest.mark.parametrize("env, message", [
    pytest.param({"SAGITTAL_DICOMWEB_USER": "u"}, "go together", id="user-without-password"),
    pytest.param({"SAGITTAL_DICOMWEB_TOKEN": "t", "SAGITTAL_DICOMWEB_USER": "u", "SAGITTAL_DICOMWEB_PASSWORD": "p"},
                 "not both", id="token-and-user"),
])
def test_ambiguous_credentials_are_refused(env, message):
    with pytest.raises(PacsError, match=message):
        session_from_env(env)


def test_pull_and_push_take_no_credentials_on_the_command_line(capsys):
    with pytest.raises(SystemExit):
        main(["pull", "http://127.0.0.1:9/dicom-web", "--study", "1.2", "-o", "x", "--password", "secret"])
    assert main(["pull", "http://127.0.0.1:9/dicom-web", "-o", "x"]) == 2
    assert "--study UID and/or --query" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["pull", "http://127.0.0.1:9/dicom-web", "--query", "PatientID", "-o", "x"])


@pytest.mark.slow
def test_round_trip_with_orthanc(orthanc, tmp_path):
    # 1. push the phantom study (truth.json beside it is not DICOM: listed, not stored)
    res = orthanc.sagittal("push", orthanc.url, str(PHB))
    assert res.returncode == 0, res.stderr
    assert "stored 2 instance(s); 1 file(s) not stored" in res.stdout
    assert "truth.json" in res.stderr

    # no credentials: refused with a message naming the variables
    res = orthanc.sagittal("pull", orthanc.url, "--query", "PatientID=PHB", "-o", str(tmp_path / "x"), auth=False)
    assert res.returncode == 2 and "SAGITTAL_DICOMWEB_USER" in res.stderr and "401" in res.stderr

    # 2. pull it back by a QIDO-RS query: the files as stored (JPEG 2000 / JPEG-LS, not transcoded)
    pulled = tmp_path / "pulled"
    res = orthanc.sagittal("pull", orthanc.url, "--query", "PatientID=PHB", "-o", str(pulled))
    assert res.returncode == 0, res.stderr
    files = sorted(p for p in pulled.rglob("*.dcm"))
    assert len(files) == 2
    originals = {str(d.SOPInstanceUID): d for d in (pydicom.dcmread(p) for p in sorted((PHB / "study1").iterdir()))}
    for f in files:
        got = pydicom.dcmread(f)
        want = originals[str(got.SOPInstanceUID)]
        assert got.file_meta.TransferSyntaxUID == want.file_meta.TransferSyntaxUID
        assert got.PixelData == want.PixelData
    res = orthanc.sagittal("pull", orthanc.url, "--query", "PatientID=PHB", "-o", str(pulled))
    assert "pulled 0 file(s) (2 already there)" in res.stdout  # a rerun resumes

    # 3. analyse the pulled files with --sr, then 4. push the SR and SC written beside each document
    out = tmp_path / "analysis"
    assert main(["analyze", str(pulled), "-o", str(out), "--device", "cpu", "--sr"]) == 0
    docs = [p for p in out.rglob("*.json") if json.loads(p.read_text()).get("schema") == "sagittal.analysis/1"]
    assert len(docs) == 2
    written = sorted(out.rglob("*.dcm"))
    assert sorted(p.name for p in written) == sorted(p.with_suffix(s).name for p in docs for s in (".sr.dcm", ".sc.dcm"))
    res = orthanc.sagittal("push", orthanc.url, str(out))  # a folder: the JSON, PNG and CSV files are not DICOM
    assert res.returncode == 0 and "stored 4 instance(s)" in res.stdout, res.stdout + res.stderr

    # 5. find them with QIDO-RS and read the SRs back over WADO-RS
    study = str(pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)
    back = orthanc.python(f"""
import json
from sagittal.pacs import connect
from sagittal.pacs.dicomweb import find_series
from sagittal.report.sr import read_sr
c = connect({orthanc.url!r})
sr = find_series(c, {study!r}, {{"Modality": "SR"}})
sc = find_series(c, {study!r}, {{"Modality": "OT"}})
values = {{}}
for s in sr:
    for ds in c.retrieve_series({study!r}, s["series_instance_uid"]):
        r = read_sr(ds)
        values[str(ds.SOPInstanceUID)] = r["parameters"]
print(json.dumps({{"sr": sr, "sc": sc, "values": values}}))
""")
    assert len(back["sr"]) == 2 and {s["series_description"] for s in back["sr"]} == {"sagittal measurements (SR)"}
    assert len(back["sc"]) == 2
    wanted = sorted(json.dumps({k: round(v, 4) for k, v in json.loads(p.read_text())["parameters"].items()
                                if k.endswith(("_deg", "_mm")) and v is not None}, sort_keys=True) for p in docs)
    got = sorted(json.dumps({k: round(v, 4) for k, v in vals.items()}, sort_keys=True) for vals in back["values"].values())
    assert got == wanted


def test_an_unreachable_pacs_is_a_clear_error(tmp_path, capsys):
    from sagittal.pacs import PacsUnreachableError, push

    dcm = next(p for p in sorted((PHB / "study1").iterdir()))
    with pytest.raises(PacsUnreachableError, match="cannot connect"):
        push("http://127.0.0.1:9/dicom-web", [dcm], environ={})  # port 9 (discard): nothing listens
    assert main(["pull", "http://127.0.0.1:9/dicom-web", "--study", "1.2.3", "-o", str(tmp_path)]) == 2
    assert "cannot connect" in capsys.readouterr().err
