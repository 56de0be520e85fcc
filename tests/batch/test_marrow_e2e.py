"""End to end: PHC's MR study (T1 + STIR) analysed by ``sagittal analyze`` shows the L1 oedema
and fluid cleft the phantom was built with, and the candidacy report reaches its category
from them, without a manual oedema entry."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from sagittal.cli import main
from sagittal.phantom.marrow import section_oedema_pct
from sagittal.phantom.samples import acute_spine

SAMPLES = Path(__file__).resolve().parents[2] / "sample_dicom"


@pytest.mark.slow
def test_phc_mr_oedema_and_cleft_reach_the_report(tmp_path):
    truth = json.loads((SAMPLES / "PHC" / "truth.json").read_text())
    l1 = [f for f in truth["studies"][0]["spine"]["fractures"] if f["level"] == "L1"][0]
    assert l1["cleft"] == "fluid" and l1["oedema_pct"] > 50
    clinical = (SAMPLES / "clinical.csv").read_text()
    assert "\nPHC," in clinical and clinical.split("\nPHC,")[1].split("\n")[0].endswith(",,")  # no manual MRI entry
    out = tmp_path / "out"
    rc = main(["analyze", str(SAMPLES / "PHC" / "study1"), "-o", str(out), "--device", "cpu",
               "--clinical", str(SAMPLES / "clinical.csv")])
    assert rc == 0
    docs = [json.loads(p.read_text()) for p in out.rglob("*.json")]
    mr = [d for d in docs if d.get("schema") == "sagittal.analysis/1" and d["source"]["modality"] == "MR"]
    assert len(mr) == 1
    by_level = {v["level"]: v for v in mr[0]["vertebrae"]}
    assert by_level["L1"]["oedema"]["present"] is True and by_level["L1"]["oedema"]["source"] == "mr"
    # the extent the contract defines (share of the whole mid-sagittal section, cortex in, cleft out)
    # that the volume phantom draws for PHC's L1 (46 %), not the fracture's nominal 70 %
    drawn = section_oedema_pct(acute_spine(np.random.default_rng(303)), "L1")
    assert 40 < drawn < l1["oedema_pct"]
    assert abs(by_level["L1"]["oedema"]["extent_pct"] - drawn) <= 25
    assert by_level["L1"]["cleft"] == {"present": True, "content": "fluid", "source": "mr"}
    others = [v for lv, v in by_level.items() if lv != "L1" and v.get("oedema") is not None]
    assert others and all(not v["oedema"]["present"] for v in others)
    assert (out / next(iter(_overlays(out, "stir")))).is_file()
    (report,) = [r for r in (json.loads(p.read_text()) for p in (out / "report").rglob("candidacy.json"))
                 if r["patient_id"] == "PHC"]
    assert report["category"] == "consider-augmentation"
    crit = {c["id"]: c for lv in report["levels"] if lv["level"] == "L1" for c in lv["criteria"]}
    assert crit["mri-oedema"]["status"] == "met" and crit["mri-oedema"]["values"]["source"] == "mr"


def _overlays(out: Path, role: str) -> list[Path]:
    found = sorted(out.rglob(f"*.{role}.png"))
    assert found, f"no {role} overlay written"
    return [p.relative_to(out) for p in found]
