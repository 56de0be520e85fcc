"""The overlay PNG draws what the numbers came from, where the landmarks are."""

from __future__ import annotations

import numpy as np
import pytest

from sagittal.phantom import build_spine, render_radiograph, sample_spec
from sagittal.phantom.truth import radiograph_truth
from sagittal.report.analysis import analysis_document
from sagittal.report.overlay import MAX_ROWS, render_overlay
from sagittal.training.data import bone_bright

OUTLINE, ENDPLATE, PLUMB, ARM = (0, 200, 255), (80, 255, 80), (0, 0, 255), (255, 0, 255)


def _colour_near(img: np.ndarray, xy, colour, r: int = 3) -> bool:
    x, y = int(round(xy[0])), int(round(xy[1]))
    win = img[max(0, y - r):y + r + 1, max(0, x - r):x + r + 1].astype(int)
    return bool((np.abs(win - np.array(colour)).sum(axis=-1) < 60).any())


@pytest.fixture(scope="module")
def case():
    rng = np.random.default_rng(5)
    spine = build_spine(sample_spec(rng, n_fractures=1))
    rg = render_radiograph(spine, rng, pixel_spacing_mm=0.4, field_of_view="whole", facing="left", calibration="both",
                           modality="DX")
    t = radiograph_truth(spine, rg)
    doc = analysis_document(dict(t["image"], pixel_spacing_mm=list(rg.spacing_mm), spacing_source="supplied"),
                            t["landmarks"])
    return bone_bright(rg), doc


def test_overlay_marks_the_landmarks_and_constructions(case):
    image, doc = case
    out = render_overlay(image, doc)
    s = min(1.0, MAX_ROWS / image.shape[0])
    assert out.dtype == np.uint8 and out.shape == (round(image.shape[0] * s), round(image.shape[1] * s), 3)
    lm = doc["landmarks"]
    for level, v in lm["vertebrae"].items():
        # the outline runs along the posterior wall; the endplate lines through the corners
        wall = (np.array(v["posterior_superior"]) + np.array(v["posterior_inferior"])) / 2
        assert _colour_near(out, wall * s, OUTLINE), level
        assert _colour_near(out, np.array(v["anterior_inferior"]) * s, ENDPLATE), level
    c7 = np.mean([lm["vertebrae"]["C7"][k] for k in ("anterior_superior", "posterior_superior", "posterior_inferior",
                                                     "anterior_inferior")], axis=0)
    below = c7 + [0, 0.5 * (image.shape[0] - c7[1])]
    assert _colour_near(out, below * s, PLUMB, 2)  # the C7 plumb line runs down from the C7 centroid
    hip = np.mean([h["center"] for h in lm["femoral_heads"]], axis=0)
    mid = np.mean([lm["s1_endplate"]["anterior"], lm["s1_endplate"]["posterior"]], axis=0)
    assert _colour_near(out, (hip + mid) / 2 * s, ARM, 2)  # hip axis to S1 midpoint (PT, PI)
    assert doc["parameters"]["pelvic_incidence_deg"] is not None


def test_overlay_of_a_rejected_document_is_the_image_with_its_status():
    image = np.random.default_rng(0).normal(100, 10, (300, 200)).astype(np.float32)
    doc = {"status": "rejected", "landmarks": {"vertebrae": {}, "s1_endplate": None, "femoral_heads": []},
           "parameters": {}, "vertebrae": []}
    out = render_overlay(image, doc)
    assert out.shape == (300, 200, 3)
    assert (out[:30, :150] == 255).all(axis=-1).any()  # the status line is written in white
