"""A film framed tighter than the training films (a lateral lumbar film collimated to L1–S1 and
the hips) shows bodies larger than the coarse network learnt to find; an image whose first look
went badly is looked at once more shrunk ``ZOOM_OUT``× in the model's input (``letterbox``'s
``zoom_out``), and the points come back in the image's own pixels."""

from __future__ import annotations

import numpy as np
import pytest

from sagittal.landmarks import infer
from sagittal.landmarks.preprocess import INPUT_SHAPE, letterbox


@pytest.mark.parametrize("shape", [(320, 160), (100, 400)])  # both axes shrink by the same whole ratio
def test_a_shrunk_letterbox_is_centred_and_maps_pixels_exactly(shape):
    """A bright spot lands where ``to_input`` says (its intensity centroid within 0.1 input px,
    the pixel-centre convention included), shrunk about the input's centre by 1.6 against the
    plain fit. (With sizes that do not divide evenly the letterbox's one scale, the mean of the two
    axes' after rounding, is off by under a pixel across the image.)"""
    spots = [(20, 24), (shape[1] - 22, shape[0] - 20), (shape[1] // 2, shape[0] // 3)]  # (x, y)
    plain_lb = letterbox(np.zeros(shape, np.float32), INPUT_SHAPE)[1]
    centre = (np.array(INPUT_SHAPE[::-1], float) - 1) / 2  # (x, y) of the input's centre
    for x, y in spots:
        img = np.zeros(shape, np.float32)
        img[y - 6:y + 7, x - 6:x + 7] = 1.0  # 13 x 13 px about (x, y): a few input pixels once shrunk
        out, lb = letterbox(img, INPUT_SHAPE, zoom_out=1.6)
        rows, cols = np.nonzero(out > 0)
        w = out[rows, cols]
        centroid = np.array([np.sum(cols * w), np.sum(rows * w)]) / w.sum()
        np.testing.assert_allclose(centroid, lb.to_input(np.array([x, y], float)), atol=0.1)
        # about the centre: the shrunk position is the plain one pulled 1.6x towards the centre
        plain = plain_lb.to_input(np.array([x, y], float))
        np.testing.assert_allclose(lb.to_input(np.array([x, y], float)) - centre, (plain - centre) / 1.6, atol=0.1)
    assert letterbox(img, INPUT_SHAPE, zoom_out=1.0)[1] == plain_lb
    with pytest.raises(ValueError, match="zoom_out"):
        letterbox(img, INPUT_SHAPE, zoom_out=0.5)


def _zooms_used(monkeypatch, detector):
    """Record the ``zoom_out`` of every coarse pass ``detector`` makes."""
    seen: list[float] = []
    original = detector._coarse_maps

    def spy(normed, stage="coarse", zoom_out=None, windows=None):
        seen.extend(zoom_out or [1.0] * len(normed))
        return original(normed, stage, zoom_out, windows)

    monkeypatch.setattr(detector, "_coarse_maps", spy)
    return seen


@pytest.fixture(scope="module")
def tight_film():
    """A tightly framed projection lumbar film whose first look goes badly (``eval_landmarks``'s
    ``--framing tight-lumbar``, drr-a, dev seed 9,000,006: the plain look names no level)."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
    from eval_landmarks import render_case

    spine, view, truth = render_case("drr-a", TIGHT_SEED, 0.0, False, "tight-lumbar")
    return view, truth


TIGHT_SEED = 9_000_006


@pytest.mark.slow
def test_a_tight_film_is_found_on_the_shrunk_look(tight_film, monkeypatch):
    from sagittal.levels import POINT_NAMES

    view, truth = tight_film
    det = infer.LandmarkDetector(None, device="cpu", threads=1)
    det.zoom_out_look = False
    ((plain, _, _),) = det.detect([view.pixels])
    det.zoom_out_look = True
    zooms = _zooms_used(monkeypatch, det)
    ((lm, _, warnings),) = det.detect([view.pixels])
    assert infer.ZOOM_OUT in zooms
    assert any("shrunk 1.6× in the model" in w for w in warnings)
    assert len(lm["vertebrae"]) > len(plain["vertebrae"])
    sp = np.array([view.spacing_mm[1], view.spacing_mm[0]])
    for lv, pts in lm["vertebrae"].items():  # every level named is the right body, in source pixels
        true = truth["landmarks"]["vertebrae"][lv]
        got = np.mean([pts[m] for m in POINT_NAMES[:4]], axis=0)
        want = np.mean([true[m] for m in POINT_NAMES[:4]], axis=0)
        assert np.linalg.norm((got - want) * sp) < 3.0, lv


@pytest.mark.slow
def test_an_image_that_went_well_is_not_looked_at_again(monkeypatch):
    from sagittal.training.data import COARSE_STREAM, _render

    _, view, _ = _render(COARSE_STREAM, 3, (0.5, 0.5), field_of_view="lumbar", collimation="none",
                         markers=False, ruler=False)
    det = infer.LandmarkDetector(None, device="cpu", threads=1)
    zooms = _zooms_used(monkeypatch, det)
    ((lm, _, warnings),) = det.detect([view.pixels])
    assert lm["vertebrae"] and zooms and set(zooms) == {1.0}
    assert not any("shrunk" in w for w in warnings)
