"""The studies in ``sample_dicom/``, regenerated with fixed seeds by ``scripts/make_sample_dicom``.

- ``PHA`` — whole-spine DX and lumbar CR laterals, no fracture.
- ``PHB`` — whole-spine DX and lumbar CR laterals, a grade-2 wedge fracture of T12.
- ``PHC`` — an acute grade-2 L1 wedge fracture with oedema and a fluid cleft: whole-spine DX,
  axial CT, sagittal MR T1 and STIR on the same day; a lumbar CR follow-up five months later
  showing further height loss.

Pixel spacing is coarser than a detector's (0.4 mm) and files are compressed (JPEG 2000,
JPEG-LS, RLE) to keep the folder small; each patient folder holds a ``truth.json``.
"""

from __future__ import annotations

import shutil
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ..fsio import atomic_write_text
from .anatomy import Fracture, Spine, build_spine, sample_spec, with_progression
from .dicom import StudyInfo
from .generate import write_json_atomic, write_radiograph, write_volume
from .truth import TRUTH_SCHEMA, spine_truth
from .volume import render_ct, render_mr

SPACING_MM = 0.4
#: a conventional, legible processing for the demo images (training randomises all of it)
LOOK: dict[str, Any] = dict(photons=3e6, equalise=0.75, unsharp=0.8, unsharp_mm=8.0, gamma=1.0, window=(1.0, 99.5), scatter=0.4,
            bone_gain=1.2)


def _patient(out: Path, pid: str, seed: int, fractures: tuple[Fracture, ...], age: int, sex: str) -> dict:
    rng = np.random.default_rng(seed)
    spec = replace(sample_spec(rng, n_fractures=0), fractures=fractures)
    spine = build_spine(spec)
    info = StudyInfo.make(f"{pid}/1", pid, study_date="20250310", age_years=age, sex=sex)
    images = [
        write_radiograph(spine, out, f"{pid}/study1/whole_spine_dx", info, f"{pid}/dx", rng, transfer_syntax="jpeg2000",
                         modality="DX", field_of_view="whole", calibration="ImagerPixelSpacing/ERMF",
                         pixel_spacing_mm=SPACING_MM, series_number=1, **LOOK),
        write_radiograph(spine, out, f"{pid}/study1/lumbar_cr", info, f"{pid}/cr", rng, transfer_syntax="jpegls",
                         modality="CR", field_of_view="lumbar", calibration="PixelSpacing", photometric="MONOCHROME1",
                         pixel_spacing_mm=SPACING_MM, series_number=2, **LOOK),
    ]
    return {"patient_id": pid, "studies": [{"study_date": info.study_date, "spine": spine_truth(spine), "images": images}]}


def acute_spine(rng: np.random.Generator) -> Spine:
    """PHC's spine: an acute L1 wedge fracture (grade 2) with oedema and a fluid cleft."""
    fx = Fracture("L1", 2, 30.0, "wedge", oedema_pct=70.0, cleft="fluid")
    return build_spine(replace(sample_spec(rng, n_fractures=0), fractures=(fx,), bone_density=0.55))


def _acute_patient(out: Path) -> dict:
    pid = "PHC"
    rng = np.random.default_rng(303)
    spine = acute_spine(rng)
    info = StudyInfo.make(f"{pid}/1", pid, study_date="20250402", age_years=74, sex="F")
    images = [
        write_radiograph(spine, out, f"{pid}/study1/whole_spine_dx", info, f"{pid}/dx", rng, transfer_syntax="jpeg2000",
                         modality="DX", field_of_view="whole", calibration="both", facing="left",
                         pixel_spacing_mm=SPACING_MM, series_number=1, **LOOK),
    ]
    # the CT and MR are drawn with the phantom's bony pelvis about the femoral heads (since the thirteenth session)
    ct = render_ct(spine, rng, matrix=192, pixel_spacing_mm=2.0, slice_mm=3.0, top_level="T11", noise_hu=12.0)
    images.append(write_volume(ct, spine, out, f"{pid}/study1/ct", info, f"{pid}/ct", transfer_syntax="jpeg2000",
                               series_number=2, frame_key=f"{pid}/ct"))
    origin = np.array([1.0, 60.0, -800.0])
    for s, seq in enumerate(("T1", "STIR")):
        mr = render_mr(spine, rng, seq, matrix=192, pixel_spacing_mm=1.6, n_slices=9, top_level="T10",
                       origin_lps=origin)
        images.append(write_volume(mr, spine, out, f"{pid}/study1/mr_{seq.lower()}", info, f"{pid}/mr/{seq}",
                                   transfer_syntax="rle", series_number=3 + s, suffix="", frame_key=f"{pid}/mr"))
    study1 = {"study_date": info.study_date, "spine": spine_truth(spine), "images": images}

    later = build_spine(with_progression(spine.spec, "L1", 14.0))
    info2 = StudyInfo.make(f"{pid}/2", pid, study_date="20250905", age_years=74, sex="F", study_id="2")
    fu = write_radiograph(later, out, f"{pid}/study2/lumbar_cr_followup", info2, f"{pid}/fu", rng,
                          transfer_syntax="jpeg2000", modality="CR", field_of_view="lumbar",
                          calibration="ImagerPixelSpacing/ERMF", facing="left", pixel_spacing_mm=SPACING_MM,
                          **LOOK)
    study2 = {"study_date": info2.study_date, "spine": spine_truth(later), "images": [fu]}
    return {"patient_id": pid, "studies": [study1, study2]}


#: the clinical picture of the sample patients (synthetic), for the candidacy report demo
CLINICAL_CSV = (
    "patient_id,age,vas,pain_weeks,hospitalised,bed_bound,analgesic_failure,neuro_deficit,instability,"
    "malignancy_suspected,pulmonary_dysfunction,frail,mri_oedema_levels,cleft_levels\n"
    "PHA,58,3,10,no,no,no,no,no,no,no,no,,\n"
    "PHB,67,6,20,no,no,yes,no,no,no,no,no,,\n"
    # PHC's oedema is left to its MR (analysed by sagittal analyze): no manual entry
    "PHC,74,8,4,yes,yes,yes,no,no,no,no,yes,,\n"
)


def truth_analysis_documents(sample_dir: str | Path, outdir: str | Path) -> list[Path]:
    """Analysis documents of the sample radiographs computed from their *true* landmarks.

    Stands in for ``sagittal analyze`` until the landmark model lands, so the report stage can
    be shown end to end; ``source`` comes from each file's DICOM header.
    """
    import json

    import pydicom

    from ..report.analysis import analysis_document

    sample_dir, outdir = Path(sample_dir), Path(outdir)
    written = []
    for truth_path in sorted(sample_dir.glob("*/truth.json")):
        truth = json.loads(truth_path.read_text())
        for study in truth["studies"]:
            for img in study["images"]:
                if img["kind"] != "radiograph":
                    continue
                rel = img["files"][0]
                ds = pydicom.dcmread(sample_dir / rel, stop_before_pixels=True)
                source = {"path": str(sample_dir / rel), "modality": str(ds.Modality),
                          "study_instance_uid": str(ds.StudyInstanceUID), "series_instance_uid": str(ds.SeriesInstanceUID),
                          "sop_instance_uids": [str(ds.SOPInstanceUID)], "patient_id": str(ds.PatientID),
                          "study_date": str(ds.StudyDate)}
                doc = analysis_document(img["image"], img["landmarks"], source=source,
                                        warnings=["landmarks are the phantom's truth, not a model's output"])
                written.append(atomic_write_text(outdir / f"{rel.replace('/', '_')}.json", json.dumps(doc, indent=1) + "\n"))
    return written


def make_samples(outdir: str | Path) -> list[dict]:
    out = Path(outdir)
    if out.exists():
        shutil.rmtree(out)
    patients = [
        _patient(out, "PHA", 101, (), age=58, sex="M"),
        _patient(out, "PHB", 202, (Fracture("T12", 2, 32.0, "wedge", oedema_pct=None),), age=67, sex="F"),
        _acute_patient(out),
    ]
    for p in patients:
        write_json_atomic(out / p["patient_id"] / "truth.json", {"schema": TRUTH_SCHEMA, **p})
    atomic_write_text(out / "clinical.csv", CLINICAL_CSV)
    return patients


if __name__ == "__main__":
    target = sys.argv[1] if len(sys.argv) > 1 else "sample_dicom"
    made = make_samples(target)
    n = sum(len(i["files"]) for p in made for s in p["studies"] for i in s["images"])
    print(f"wrote {len(made)} patients, {n} DICOM files to {target}")
