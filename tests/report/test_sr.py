"""DICOM SR (TID 1500) and Secondary Capture of analysis documents: values read back with
highdicom equal the JSON, landmarks come back as the same image points, UIDs are stable,
and every object passes dciodvfy without errors."""

from __future__ import annotations

import copy
import json
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import Comprehensive3DSRStorage, ComprehensiveSRStorage, SecondaryCaptureImageStorage

import sagittal
from sagittal.levels import LEVELS, POINT_NAMES
from sagittal.report.sc import orientation_letters, read_sources, secondary_capture, write_sr_and_sc
from sagittal.report.sr import PRIVATE_SCHEME, content_hash, read_sr, sr_dataset

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "sample_dicom"
SHA = "0123456789abcdef" * 4


@pytest.fixture(scope="module")
def docs(tmp_path_factory) -> dict[str, dict]:
    """Analysis documents of the sample radiographs from the phantom's true landmarks, by file."""
    from sagittal.phantom.samples import truth_analysis_documents

    out = tmp_path_factory.mktemp("truth_docs")
    found = {}
    for p in truth_analysis_documents(SAMPLES, out):
        d = json.loads(p.read_text())
        found[Path(d["source"]["path"]).relative_to(SAMPLES).as_posix()] = d
    return found


@pytest.fixture(scope="module")
def phc(docs) -> dict:
    """PHC's whole-spine DX document, with L1's oedema and fluid cleft as an MR reading adds them."""
    d = copy.deepcopy(docs["PHC/study1/whole_spine_dx"])
    for v in d["vertebrae"]:
        if v["level"] == "L1":
            v["oedema"] = {"present": True, "extent_pct": 62.5, "source": "mr"}
            v["cleft"] = {"present": True, "content": "fluid", "source": "mr"}
        if v["level"] == "T12":
            v["oedema"] = {"present": False, "extent_pct": None, "source": "mr"}
            v["cleft"] = {"present": False, "content": None, "source": "mr"}
    return d


@pytest.fixture(scope="module")
def phc_sr(phc) -> pydicom.Dataset:
    """PHC's SR as written to bytes and read back by pydicom (built once: highdicom is slow)."""
    ds = sr_dataset(phc, _sources(phc), model_sha256=SHA)
    assert ds.SOPClassUID == ComprehensiveSRStorage
    return pydicom.dcmread(pydicom.filebase.DicomBytesIO(_bytes(ds)))


def _sources(doc: dict) -> list[pydicom.Dataset]:
    return read_sources([doc["source"]["path"]])


def _ct_plane_doc(doc: dict) -> tuple[dict, list[pydicom.Dataset]]:
    """A CT-style document: the DX landmarks placed on a sagittal plane of PHC's CT frame."""
    ct = read_sources([SAMPLES / "PHC/study1/ct"])
    d = copy.deepcopy(doc)
    d["source"].update(modality="CT", series_instance_uid=str(ct[0].SeriesInstanceUID),
                       sop_instance_uids=[str(x.SOPInstanceUID) for x in ct])
    # rows run head to foot (-z), columns posterior to anterior (-y in LPS)
    d["image"]["plane"] = {"image_position_patient": [1.5, 120.0, 300.0],
                           "image_orientation_patient": [0.0, -1.0, 0.0, 0.0, 0.0, -1.0]}
    return d, ct


def _assert_same_values(doc: dict, back: dict) -> None:
    for key, value in doc["parameters"].items():
        if key.endswith(("_deg", "_mm")) and value is not None:
            assert back["parameters"][key] == pytest.approx(value, abs=1e-6), key
    assert [v["level"] for v in back["vertebrae"]] == [v["level"] for v in doc["vertebrae"]]
    for want, got in zip(doc["vertebrae"], back["vertebrae"], strict=True):
        for side, h in want["heights_mm"].items():
            assert got["heights_mm"][side] == pytest.approx(h, abs=1e-6)
        assert got["height_loss_pct"] == pytest.approx(want["height_loss_pct"], abs=1e-6)
        assert got["genant_grade"] == want["genant_grade"]
        assert got.get("morphology") == want["morphology"]  # a null morphology is left out of the SR
        for key in ("regional_kyphosis_deg", "vertebral_kyphosis_deg"):
            if want[key] is None:
                assert key not in got
            else:
                assert got[key] == pytest.approx(want[key], abs=1e-6)
        for key in ("oedema", "cleft"):
            if key not in want:
                assert key not in got
        if "oedema" in want:
            assert got["oedema"]["present"] is want["oedema"]["present"]
            assert got["oedema"].get("extent_pct") == want["oedema"]["extent_pct"]
        if "cleft" in want:
            assert got["cleft"]["present"] is want["cleft"]["present"]
            assert got["cleft"].get("content") == want["cleft"]["content"]


@pytest.mark.slow
def test_sr_reads_back_the_json_values_and_landmarks(phc, phc_sr):
    back = read_sr(phc_sr)
    _assert_same_values(phc, back)
    l1 = next(v for v in back["vertebrae"] if v["level"] == "L1")
    assert l1["genant_grade"] == 2 and l1["morphology"] == "wedge"
    assert l1["oedema"] == {"present": True, "extent_pct": 62.5} and l1["cleft"] == {"present": True, "content": "fluid"}
    assert back["algorithm"] == {"name": "sagittal landmarks and geometry", "version": sagittal.__version__,
                                 "parameters": [f"model_sha256={SHA}"]}
    for level, pts in back["points_px"].items():
        want = np.array([phc["landmarks"]["vertebrae"][level][k] for k in POINT_NAMES])
        assert np.abs(np.array([pts[k] for k in POINT_NAMES]) - want).max() < 2e-3, level
    assert set(back["points_px"]) == set(phc["landmarks"]["vertebrae"])


def _bytes(ds: pydicom.Dataset) -> bytes:
    buf = pydicom.filebase.DicomBytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def test_sr_is_in_the_source_study_with_scoords_on_the_source_image(phc, phc_sr):
    src, ds = _sources(phc)[0], phc_sr
    assert ds.StudyInstanceUID == src.StudyInstanceUID and ds.PatientID == src.PatientID
    assert ds.SeriesInstanceUID != src.SeriesInstanceUID
    refs = set()

    def walk(items) -> None:
        for it in items:
            if it.ValueType == "SCOORD":
                for img in it.ContentSequence:
                    refs.add(img.ReferencedSOPSequence[0].ReferencedSOPInstanceUID)
            walk(getattr(it, "ContentSequence", []))

    walk(ds.ContentSequence)
    assert refs == {src.SOPInstanceUID}
    codes = set()

    def codes_of(items) -> None:
        for it in items:
            for seq in ("ConceptNameCodeSequence", "ConceptCodeSequence"):
                for c in getattr(it, seq, []):
                    codes.add((c.CodingSchemeDesignator, c.CodeValue))
            codes_of(getattr(it, "ContentSequence", []))

    codes_of([ds])
    assert {s for s, _ in codes} <= {"DCM", "SCT", "UCUM", "RFC5646", PRIVATE_SCHEME}  # RFC5646: the language
    assert ("DCM", "126000") in codes and ("SCT", "66794005") in codes  # the report title and L1
    assert ds.CodingSchemeIdentificationSequence[0].CodingSchemeDesignator == PRIVATE_SCHEME


@pytest.mark.slow
def test_sr_uids_are_stable_across_reruns_and_follow_the_content(phc, phc_sr):
    a = phc_sr
    b = sr_dataset(copy.deepcopy(phc), _sources(phc), model_sha256=SHA)
    assert (a.SOPInstanceUID, a.SeriesInstanceUID) == (b.SOPInstanceUID, b.SeriesInstanceUID)
    assert a.SOPInstanceUID.startswith("2.25.")

    def tracking(ds) -> list[str]:
        return [it.UID for g in ds.ContentSequence[-1].ContentSequence for it in g.ContentSequence if it.ValueType == "UIDREF"]

    assert tracking(a) == tracking(b) and len(set(tracking(a))) == len(phc["vertebrae"]) + 1
    changed = copy.deepcopy(phc)
    changed["parameters"]["pelvic_tilt_deg"] += 1.0
    c = sr_dataset(changed, _sources(phc), model_sha256=SHA)
    assert c.SOPInstanceUID != a.SOPInstanceUID and c.SeriesInstanceUID == a.SeriesInstanceUID
    assert tracking(c) == tracking(a)
    assert content_hash(phc, "f" * 64) != content_hash(phc, SHA) == content_hash(copy.deepcopy(phc), SHA)


def test_a_ct_sr_written_anew_gets_a_new_uid_and_a_radiograph_sr_keeps_its_own(phc, phc_sr, gap_ct_sr):
    """Since AXS and GENANT-NG (VOLUME_SR_ENCODING 2), a CT/MR document's SR gets another SOP Instance UID than the
    same document's SR had before, so a PACS that keeps the first instance of a UID takes the new content; a
    radiograph's SR, whose content did not change, keeps its UID (the hash of the document, model and version).
    Checked on the SRs written (review R17b: the first form compared hashes only)."""
    import hashlib

    from sagittal import __version__
    from sagittal.report.sr import derived_uid

    def old(doc: dict) -> str:  # content_hash as it was
        text = json.dumps(doc, sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(f"{text}|{SHA}|{__version__}".encode()).hexdigest()

    def uid(doc: dict, digest: str) -> str:
        return derived_uid("sagittal-sr", *doc["source"]["sop_instance_uids"], digest)

    assert "axis_sampling_mm" not in phc["image"] and phc_sr.SOPInstanceUID == uid(phc, old(phc))
    doc, ds = gap_ct_sr
    assert ds.SOPInstanceUID == uid(doc, content_hash(doc, SHA)) != uid(doc, old(doc))


def test_a_radiograph_document_with_a_level_sampling_gets_no_axs(phc):
    """A map of levels' sampling belongs to a CT/MR series (review R17b): ``analysis_document`` refuses it on a
    radiograph, and an SR written from such a document anyway carries no AXS."""
    from sagittal.errors import InputError
    from sagittal.report.analysis import analysis_document

    landmarks = {**phc["landmarks"], "axis_sampling_mm": {"L1": 8.0}}
    with pytest.raises(InputError, match="needs image.axis_sampling_mm"):
        analysis_document(phc["image"], landmarks, copy.deepcopy(phc["source"]))
    ds = sr_dataset({**phc, "landmarks": landmarks}, _sources(phc), model_sha256=SHA)
    assert all(not it["axs"] for it in _vertebra_items(ds).values())


@pytest.fixture(scope="module")
def ct_sr(phc) -> tuple[dict, list[pydicom.Dataset], pydicom.Dataset]:
    """The CT-plane document, its CT sources and its SR as written and read back (built once)."""
    doc, ct = _ct_plane_doc(phc)
    ds = sr_dataset(doc, ct, model_sha256=SHA)
    assert ds.SOPClassUID == Comprehensive3DSRStorage
    return doc, ct, pydicom.dcmread(pydicom.filebase.DicomBytesIO(_bytes(ds)))


@pytest.mark.slow
def test_ct_plane_document_gives_a_3d_sr_with_scoord3d_in_the_frame_of_reference(ct_sr):
    doc, ct, ds = ct_sr
    frames = set()

    def walk(items) -> None:
        for it in items:
            if it.ValueType == "SCOORD3D":
                frames.add(it.ReferencedFrameOfReferenceUID)
            assert it.ValueType != "SCOORD"
            walk(getattr(it, "ContentSequence", []))

    walk(ds.ContentSequence)
    assert frames == {ct[0].FrameOfReferenceUID}
    back = read_sr(ds, plane=doc["image"]["plane"], pixel_spacing_mm=doc["image"]["pixel_spacing_mm"])
    _assert_same_values(doc, back)
    for level, pts in back["points_px"].items():
        want = np.array([doc["landmarks"]["vertebrae"][level][k] for k in POINT_NAMES])
        assert np.abs(np.array([pts[k] for k in POINT_NAMES]) - want).max() < 1e-2, level


def test_secondary_capture_holds_the_overlay_in_the_source_study(phc):
    src = _sources(phc)[0]
    rgb = np.random.default_rng(0).integers(0, 256, (120, 70, 3), dtype=np.uint8)
    sc = secondary_capture(phc, rgb, src)
    sc = pydicom.dcmread(pydicom.filebase.DicomBytesIO(_bytes(sc)))
    assert sc.SOPClassUID == SecondaryCaptureImageStorage
    assert sc.StudyInstanceUID == src.StudyInstanceUID and sc.SeriesInstanceUID != src.SeriesInstanceUID
    assert np.array_equal(sc.pixel_array, rgb)
    assert list(sc.PatientOrientation) == list(src.PatientOrientation)
    assert sc.SourceImageSequence[0].ReferencedSOPInstanceUID == src.SOPInstanceUID
    assert sc.BurnedInAnnotation == "YES"
    assert secondary_capture(phc, rgb, src).SOPInstanceUID == sc.SOPInstanceUID
    assert secondary_capture(phc, rgb[::-1].copy(), src).SOPInstanceUID != sc.SOPInstanceUID


def test_orientation_letters_of_a_plane(phc):
    doc, ct = _ct_plane_doc(phc)
    assert orientation_letters(doc, ct[0]) == ("A", "F")


@pytest.mark.parametrize("change, message", [
    pytest.param(lambda d: d.update(status="rejected"), "rejected", id="rejected"),
    pytest.param(lambda d: d["source"].update(sop_instance_uids=["1.2.3"]), "missing", id="sources-do-not-match"),
    pytest.param(lambda d: (d.update(vertebrae=[]), d["parameters"].update({k: None for k in d["parameters"]})),
                 "nothing to report", id="no-value-at-all"),
])
def test_sr_refuses_what_it_cannot_report(phc, change, message):
    d = copy.deepcopy(phc)
    change(d)
    with pytest.raises(ValueError, match=message):
        sr_dataset(d, _sources(phc))


def _dciodvfy(exe: str, path: Path) -> list[str]:
    res = subprocess.run([exe, str(path)], capture_output=True, text=True, timeout=60)
    lines = (res.stdout + res.stderr).splitlines()
    return [ln for ln in lines if ln.startswith("Error")], [ln for ln in lines if ln.startswith("Warning")]


@pytest.mark.slow
@pytest.mark.dciodvfy
def test_every_sr_and_sc_passes_dciodvfy(tmp_path, docs, phc, phc_sr, ct_sr, dciodvfy):
    import cv2

    written = [tmp_path / "doc0.sr.dcm", tmp_path / "ct.sr.dcm"]  # built once by the fixtures
    written[0].write_bytes(_bytes(phc_sr))
    written[1].write_bytes(_bytes(ct_sr[2]))
    todo = [phc, docs["PHA/study1/lumbar_cr"]]  # a DX facing left, a CR facing right
    for i, doc in enumerate(todo):
        from sagittal.report.overlay import render_overlay

        grey = np.zeros((doc["image"]["rows"] // 4, doc["image"]["columns"] // 4), np.float32)
        small = copy.deepcopy(doc)
        overlay = cv2.cvtColor(render_overlay(grey, _scaled(small, 0.25)), cv2.COLOR_BGR2RGB)
        if i == 0:
            sc = secondary_capture(doc, overlay, _sources(doc)[0])
            written.append(tmp_path / "doc0.sc.dcm")
            written[-1].write_bytes(_bytes(sc))
        else:
            written += write_sr_and_sc(tmp_path / f"doc{i}.json", doc, overlay, _sources(doc), model_sha256=SHA)
    assert sorted(p.name for p in written) == sorted(
        ["doc0.sr.dcm", "doc0.sc.dcm", "doc1.sr.dcm", "doc1.sc.dcm", "ct.sr.dcm"])
    for p in written:
        errors, warnings = _dciodvfy(dciodvfy, p)
        assert errors == [], f"{p.name}: {errors}"
        # the only warnings: dciodvfy does not know the (declared) private coding scheme
        assert all(PRIVATE_SCHEME in w for w in warnings), f"{p.name}: {warnings[:5]}"


def _scaled(doc: dict, s: float) -> dict:
    lm = doc["landmarks"]
    for v in lm["vertebrae"].values():
        for k in POINT_NAMES:
            v[k] = [c * s for c in v[k]]
    if lm.get("s1_endplate"):
        for k in ("anterior", "posterior"):
            lm["s1_endplate"][k] = [c * s for c in lm["s1_endplate"][k]]
    for h in lm.get("femoral_heads") or []:
        h["center"] = [c * s for c in h["center"]]
        h["radius_px"] *= s
    return doc


def test_analyze_sr_output_makes_the_sr_and_sc_of_a_unit(phc, phc_sr):
    from sagittal.api import Analysis
    from sagittal.batch.units import Unit, output_maker

    maker = output_maker("sr")  # registered through batch.units.OUTPUT_MODULES
    src = _sources(phc)[0]
    unit = Unit("radiograph", (phc["source"]["path"],), "PHC", str(src.StudyInstanceUID), str(src.SOPInstanceUID))
    pixels = np.zeros((phc["image"]["rows"] // 8, phc["image"]["columns"] // 8), np.float32)
    files = maker(Analysis.from_document(phc, pixels=pixels, pixel_scale=1 / 8), unit)
    assert sorted(files) == ["sc.dcm", "sr.dcm"]
    sr = pydicom.dcmread(pydicom.filebase.DicomBytesIO(files["sr.dcm"]))
    assert sr.SeriesInstanceUID == phc_sr.SeriesInstanceUID  # one SR series per source image, whatever the run
    sc = pydicom.dcmread(pydicom.filebase.DicomBytesIO(files["sc.dcm"]))
    assert sc.pixel_array.shape == (phc["image"]["rows"] // 8, phc["image"]["columns"] // 8, 3)
    rejected = copy.deepcopy(phc)
    rejected["status"] = "rejected"
    assert maker(Analysis.from_document(rejected), unit) == {}


@pytest.mark.slow
@pytest.mark.dciodvfy
def test_analyze_with_sr_on_sample_dicom_writes_valid_sr_and_sc(tmp_path, dciodvfy):
    from sagittal.cli import main

    out = tmp_path / "out"
    assert main(["analyze", str(SAMPLES / "PHA" / "study1" / "lumbar_cr"), "-o", str(out), "--device", "cpu", "--sr"]) == 0
    (doc_path,) = [p for p in out.rglob("*.json")]
    doc = json.loads(doc_path.read_text())
    sr_path, sc_path = doc_path.with_suffix(".sr.dcm"), doc_path.with_suffix(".sc.dcm")
    for p in (sr_path, sc_path):
        errors, warnings = _dciodvfy(dciodvfy, p)
        assert errors == [] and all(PRIVATE_SCHEME in w for w in warnings), (p.name, errors, warnings[:5])
    back = read_sr(pydicom.dcmread(sr_path))
    _assert_same_values(doc, back)
    from sagittal.landmarks.weights import sha256_file, weights_path

    sha = sha256_file(weights_path())  # the weights that ran (packaged, or $SAGITTAL_WEIGHTS)
    assert back["algorithm"]["parameters"] == [f"model_sha256={sha}"] and doc["software"]["model_sha256"] == sha
    sc = pydicom.dcmread(sc_path)
    assert sc.StudyInstanceUID == doc["source"]["study_instance_uid"]
    assert sc.pixel_array.shape[2] == 3


def test_every_standard_code_is_in_pydicoms_dictionary(phc_sr):
    from pydicom.sr.codedict import codes

    known = set()
    for scheme in ("SCT", "DCM"):
        d = getattr(codes, scheme)
        for name in dir(d):
            c = getattr(d, name)
            if hasattr(c, "scheme_designator"):
                known.add((c.scheme_designator, c.value))
    used = set()

    def walk(items) -> None:
        for it in items:
            for seq in ("ConceptNameCodeSequence", "ConceptCodeSequence"):
                for c in getattr(it, seq, []):
                    used.add((c.CodingSchemeDesignator, c.CodeValue))
            walk(getattr(it, "ContentSequence", []))

    walk([phc_sr])
    standard = {c for c in used if c[0] in ("SCT", "DCM")}
    assert len(standard) > 15 and standard <= known, standard - known


# ---------------------------------------------------------------------------------------------
# Grades withheld on a coarse CT/MR series, and how finely it sampled the spine's axis


def _coarse_ct_doc(phc: dict, image_axis_mm: float, level_axis_mm: dict[str, float] | None = None,
                   ungraded: dict[str, str] | None = None) -> tuple[dict, list[pydicom.Dataset]]:
    """PHC's landmarks analysed again as a CT series sampled every ``image_axis_mm`` along the spine's
    axis (``level_axis_mm``: levels with slices missing at their endplates), placed on the CT plane."""
    from sagittal.report.analysis import analysis_document

    landmarks = copy.deepcopy(phc["landmarks"])
    if level_axis_mm:
        landmarks["axis_sampling_mm"] = dict(level_axis_mm)
    if ungraded:
        landmarks["ungraded"] = dict(ungraded)
    image = dict(phc["image"], axis_sampling_mm=image_axis_mm)
    doc = analysis_document(image, landmarks, copy.deepcopy(phc["source"]))
    assert doc["status"] in ("ok", "partial")
    return _ct_plane_doc(doc)


def _vertebra_items(ds: pydicom.Dataset) -> dict[str, dict[str, object]]:
    """From the dataset itself (not read_sr): level -> its group's Genant value code and its AXS
    measurements as (value, unit code)."""
    from pydicom.sr.codedict import codes

    level_by_code = {getattr(codes.SCT, f"{lv}Vertebra").value: lv for lv in LEVELS}
    found: dict[str, dict[str, object]] = {}
    for group in ds.ContentSequence[-1].ContentSequence:
        items = list(group.ContentSequence)
        sites = [it.ConceptCodeSequence[0].CodeValue for it in items
                 if it.ValueType == "CODE" and it.ConceptNameCodeSequence[0].CodeValue == "363698007"]
        level = next((level_by_code[c] for c in sites if c in level_by_code), None)
        if level is None:
            continue
        genant = [it.ConceptCodeSequence[0] for it in items if it.ValueType == "CODE"
                  and (it.ConceptNameCodeSequence[0].CodingSchemeDesignator, it.ConceptNameCodeSequence[0].CodeValue)
                  == (PRIVATE_SCHEME, "GENANT")]
        axs = [(float(it.MeasuredValueSequence[0].NumericValue),
                it.MeasuredValueSequence[0].MeasurementUnitsCodeSequence[0].CodeValue) for it in items
               if it.ValueType == "NUM"
               and (it.ConceptNameCodeSequence[0].CodingSchemeDesignator, it.ConceptNameCodeSequence[0].CodeValue)
               == (PRIVATE_SCHEME, "AXS")]
        assert len(genant) <= 1
        found[level] = {"genant": (genant[0].CodingSchemeDesignator, genant[0].CodeValue) if genant else None,
                        "axs": axs}
    return found


@pytest.fixture(scope="module")
def coarse_ct_sr(phc) -> tuple[dict, pydicom.Dataset]:
    """A 5-mm CT document (every loss measured, every grade withheld; T3's points not steady, so
    neither) and its SR as written and read back."""
    doc, ct = _coarse_ct_doc(phc, 5.0, ungraded={"T3": "re-centred crops"})
    ds = sr_dataset(doc, ct, model_sha256=SHA)
    return doc, pydicom.dcmread(pydicom.filebase.DicomBytesIO(_bytes(ds)))


@pytest.fixture(scope="module")
def gap_ct_sr(phc) -> tuple[dict, pydicom.Dataset]:
    """A 2-mm CT document whose L4 lies at a gap of missing slices (8.0 mm there) and its SR."""
    doc, ct = _coarse_ct_doc(phc, 2.0, {"L4": 8.0})
    ds = sr_dataset(doc, ct, model_sha256=SHA)
    return doc, pydicom.dcmread(pydicom.filebase.DicomBytesIO(_bytes(ds)))


def test_a_coarse_ct_sr_says_each_grade_was_withheld_and_the_sampling(coarse_ct_sr):
    doc, ds = coarse_ct_sr
    verts = {v["level"]: v for v in doc["vertebrae"]}
    assert all(v["genant_grade"] is None for v in verts.values())  # the document withheld every grade
    assert verts["T3"]["height_loss_pct"] is None and verts["L1"]["height_loss_pct"] > 20
    items = _vertebra_items(ds)
    assert sorted(items) == sorted(verts)
    for level, it in items.items():
        assert it["axs"] == [(5.0, "mm")], level
        if level == "T3":  # neither loss nor grade: no Genant evaluation at all, as before
            assert it["genant"] is None
        else:
            assert it["genant"] == (PRIVATE_SCHEME, "GENANT-NG"), level
    back = read_sr(ds, plane=doc["image"]["plane"], pixel_spacing_mm=doc["image"]["pixel_spacing_mm"])
    for v in back["vertebrae"]:
        assert v["axis_sampling_mm"] == 5.0, v["level"]
        if v["level"] == "T3":
            assert "genant_grade" not in v and "height_loss_pct" not in v
        else:
            assert "genant_grade" in v and v["genant_grade"] is None, v["level"]
            assert v["height_loss_pct"] == pytest.approx(verts[v["level"]]["height_loss_pct"], abs=1e-6)


def test_a_level_at_a_gap_carries_its_own_sampling_and_only_its_grade_is_withheld(gap_ct_sr, phc):
    doc, ds = gap_ct_sr
    verts = {v["level"]: v for v in doc["vertebrae"]}
    assert verts["L4"]["genant_grade"] is None and verts["L4"]["height_loss_pct"] is not None
    assert verts["L1"]["genant_grade"] == 2
    items = _vertebra_items(ds)
    for level, it in items.items():
        assert it["axs"] == [(8.0 if level == "L4" else 2.0, "mm")], level
        grade = verts[level]["genant_grade"]
        assert it["genant"] == (PRIVATE_SCHEME, "GENANT-NG" if level == "L4" else f"GENANT-{grade}"), level
    back = read_sr(ds, plane=doc["image"]["plane"], pixel_spacing_mm=doc["image"]["pixel_spacing_mm"])
    got = {v["level"]: v for v in back["vertebrae"]}
    assert {lv: v["axis_sampling_mm"] for lv, v in got.items()} == {lv: 8.0 if lv == "L4" else 2.0 for lv in verts}
    assert {lv: v["genant_grade"] for lv, v in got.items()} == {lv: v["genant_grade"] for lv, v in verts.items()}
    _assert_same_values(doc, back)  # everything else as before


def test_a_radiograph_sr_has_no_axis_sampling_and_keeps_its_grades(phc, phc_sr):
    items = _vertebra_items(phc_sr)
    assert sorted(items) == sorted(v["level"] for v in phc["vertebrae"])
    for v in phc["vertebrae"]:
        assert items[v["level"]] == {"genant": (PRIVATE_SCHEME, f"GENANT-{v['genant_grade']}"), "axs": []}
    assert all("axis_sampling_mm" not in v for v in read_sr(phc_sr)["vertebrae"])


def test_a_level_left_with_no_reference_is_told_withheld_in_the_sr(phc):
    """Review R17c: the lowest level, its two neighbours above ungraded, has heights but no reference for a loss
    (``report.analysis._without_reference``): its SR group says GENANT-NG (heights, no loss), as a loss with no
    grade does; the ungraded levels (no heights) get no Genant evaluation."""
    lowest = [v["level"] for v in phc["vertebrae"]][-3:]
    doc, ct = _coarse_ct_doc(phc, 2.0, ungraded=dict.fromkeys(lowest[:2], "re-centred crops"))
    v = {x["level"]: x for x in doc["vertebrae"]}[lowest[2]]
    assert v["genant_grade"] is None and v["height_loss_pct"] is None and v["heights_mm"] is not None
    items = _vertebra_items(sr_dataset(doc, ct, model_sha256=SHA))
    assert items[lowest[2]]["genant"] == (PRIVATE_SCHEME, "GENANT-NG")
    assert all(items[lv]["genant"] is None for lv in lowest[:2])
    # review R17d: a radiograph without a pixel spacing (heights null too) says so as well
    from sagittal.report.analysis import analysis_document

    landmarks = {**copy.deepcopy(phc["landmarks"]), "ungraded": dict.fromkeys(lowest[:2], "re-centred crops")}
    bare = analysis_document({**phc["image"], "pixel_spacing_mm": None}, landmarks, copy.deepcopy(phc["source"]))
    v = {x["level"]: x for x in bare["vertebrae"]}[lowest[2]]
    assert v["heights_mm"] is None and v["genant_grade"] is None
    items = _vertebra_items(sr_dataset(bare, _sources(phc), model_sha256=SHA))
    assert items[lowest[2]]["genant"] == (PRIVATE_SCHEME, "GENANT-NG")
    assert all(items[lv]["genant"] is None for lv in lowest[:2])


@pytest.mark.dciodvfy
def test_coarse_and_gap_ct_srs_pass_dciodvfy(tmp_path, coarse_ct_sr, gap_ct_sr, dciodvfy):
    for name, (_, ds) in (("coarse", coarse_ct_sr), ("gap", gap_ct_sr)):
        p = tmp_path / f"{name}.sr.dcm"
        p.write_bytes(_bytes(ds))
        errors, warnings = _dciodvfy(dciodvfy, p)
        assert errors == [], f"{name}: {errors}"
        assert all(PRIVATE_SCHEME in w for w in warnings), f"{name}: {warnings[:5]}"
