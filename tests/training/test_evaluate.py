"""``sagittal evaluate`` reproduces ``scripts/eval_landmarks.py``'s figures on the same phantom
pixels, in each annotation format (BUU: images mirrored to face left, as that set stores them)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sagittal.api import Analyzer
from sagittal.cli import main
from sagittal.levels import LEVELS
from sagittal.training.evaluate import evaluate

from .fixtures import Case, eval_landmarks_figures, write_set

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Case], list[Case]]:
    """Two radiographs of the trained look and two of the held-out DRR family (where the model
    misses some bodies): (root, as rendered, mirrored for BUU)."""
    root = tmp_path_factory.mktemp("annotated")
    a = write_set(root, n=2, family="2d", prefix="flat")
    b = write_set(root, n=2, family="drr-b", first_seed=4_243_000, prefix="drr")
    return root, a[:2] + b[:2], a[2:] + b[2:]


@pytest.fixture(scope="module")
def analyzer() -> Analyzer:
    return Analyzer(device="cpu").load()


def test_sagittal_format_reproduces_eval_landmarks(phantoms: tuple[Path, list[Case], list[Case]], analyzer: Analyzer,
                                                   tmp_path: Path) -> None:
    root, plain, _ = phantoms
    ref = eval_landmarks_figures(analyzer.detector, plain)
    m = evaluate([root / "png"], root / "sagittal", "sagittal", tmp_path, analyzer=analyzer, n_boot=100)
    assert m["n_images"] == 4 and m["vertebrae_annotated"] == ref["vertebrae_in_view"]
    assert m["detection_rate"] == pytest.approx(ref["detection_rate"], abs=1e-6)  # metrics.json rounds to 6 decimals
    assert m["point_error_mm_median"] == pytest.approx(ref["landmark_error_mm"]["median"], abs=1e-5)
    for lv in LEVELS:
        want = ref["detection_rate_per_level"][lv]
        assert m["detection_rate_per_level"][lv] == (None if want is None else pytest.approx(want, abs=1e-4))
    lo, hi = m["ci95"]["point_error_mm_median"]
    assert lo <= m["point_error_mm_median"] <= hi
    assert m["lumbar_lordosis_deg_mae"] is not None and m["endplate_angle_error_deg_mae"] is not None
    assert "point error median (mm)" in (tmp_path / "metrics.md").read_text()
    assert {"point_error.png", "detection_per_level.png", "endplate_angle_error.png",
            "bland_altman_lumbar_lordosis_deg.png"} <= set(m["plots"])
    assert all((tmp_path / p).stat().st_size > 1000 for p in m["plots"])


def test_coco_via_cli_with_and_without_spacing(phantoms: tuple[Path, list[Case], list[Case]], analyzer: Analyzer,
                                               tmp_path: Path) -> None:
    root, plain, _ = phantoms
    cases = [c for c in plain if c.name.startswith("flat")]
    ref = eval_landmarks_figures(analyzer.detector, cases)
    sp = cases[0].spacing_mm
    assert all(c.spacing_mm == sp for c in cases)
    args = ["evaluate", str(root / "png"), "--annotations", str(root / "coco_flat.json"), "--format", "coco",
            "--device", "cpu"]
    assert main([*args, "-o", str(tmp_path / "mm"), "--spacing", f"{sp[0]},{sp[1]}"]) == 0
    mc = json.loads((tmp_path / "mm" / "metrics.json").read_text())
    assert mc["n_images"] == 2  # the drr images have no annotation in this file: skipped
    assert mc["detection_rate"] == pytest.approx(ref["detection_rate"], abs=1e-6)  # metrics.json rounds to 6 decimals
    assert mc["point_error_mm_median"] == pytest.approx(ref["landmark_error_mm"]["median"], abs=2e-3)  # 1e-3 px rounding
    mp = evaluate([root / "png"], root / "coco_flat.json", "coco", tmp_path / "px", analyzer=analyzer, n_boot=50,
                  make_plots=False)
    assert mp["point_error_mm_median"] is None and mp["ci95"]["point_error_mm_median"] is None
    assert mp["point_error_px_median"] == pytest.approx(mc["point_error_px_median"], rel=1e-9)


def test_buu_on_mirrored_images_finds_what_eval_landmarks_finds(phantoms: tuple[Path, list[Case], list[Case]],
                                                                analyzer: Analyzer, tmp_path: Path) -> None:
    root, _, mirrored = phantoms
    assert all(c.facing == "left" for c in mirrored)
    ref = eval_landmarks_figures(analyzer.detector, mirrored)
    lumbar = [f"L{i}" for i in range(1, 6)]
    n_ref = {lv: sum(lv in c.truth["landmarks"]["vertebrae"] for c in mirrored) for lv in lumbar}
    m = evaluate([root / "buu_png"], root / "buu", "buu", tmp_path, spacing=mirrored[0].spacing_mm, analyzer=analyzer,
                 n_boot=50, make_plots=False)
    assert m["n_images"] == 4 and m["vertebrae_annotated"] == sum(n_ref.values())
    assert m["vertebrae_found"] == round(sum(ref["detection_rate_per_level"][lv] * n for lv, n in n_ref.items() if n))
    assert m["per_point_error_px_median"]["middle_superior"] is None  # BUU has corners only: not scored
    assert m["endplate_angle_error_deg_mae"] is not None


def test_dicom_with_header_spacing(analyzer: Analyzer, tmp_path: Path) -> None:
    """A phantom DICOM radiograph and its truth in sagittal's format: millimetres from the header."""
    import numpy as np

    from sagittal.phantom import build_spine, sample_spec
    from sagittal.phantom.dicom import StudyInfo
    from sagittal.phantom.generate import write_radiograph

    rng = np.random.default_rng([4_245_000])
    spine = build_spine(sample_spec(rng))
    entry = write_radiograph(spine, tmp_path / "dcm", "IM1.dcm", StudyInfo.make("h16", "P1"), "h16/1", rng,
                             pixel_spacing_mm=0.6)
    (tmp_path / "ann").mkdir()
    (tmp_path / "ann" / "IM1.json").write_text(json.dumps({"image": {"file": "IM1.dcm"}, "landmarks": entry["landmarks"]}))
    m = evaluate([tmp_path / "dcm"], tmp_path / "ann", "sagittal", tmp_path / "out", analyzer=analyzer, n_boot=20,
                 make_plots=False)
    assert m["n_images"] == 1 and m["n_failed"] == 0
    assert m["vertebrae_annotated"] == len(entry["landmarks"]["vertebrae"]) and m["detection_rate"] > 0.5
    assert m["point_error_mm_median"] is not None and m["point_error_mm_median"] < 2.0
