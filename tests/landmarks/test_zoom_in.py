"""A film framed longer than the spine (a full-length standing film) shows bodies smaller than
the coarse networks learnt to find; every radiograph is also looked at magnified about the spine
its first look found (``infer.spine_window``, ``letterbox``'s ``window``), the better look kept,
and the points come back in the image's own pixels."""

from __future__ import annotations

import numpy as np
import pytest

from sagittal.landmarks import infer
from sagittal.landmarks.postprocess import Body, Detections
from sagittal.landmarks.preprocess import INPUT_SHAPE, Letterbox, letterbox


# window sizes that divide evenly (the letterbox takes one scale for both axes: see test_zoom_out)
@pytest.mark.parametrize(("shape", "window"), [((900, 300), (40, 200, 240, 600)), ((500, 700), (100, 0, 350, 500))])
def test_a_windowed_letterbox_maps_the_whole_images_pixels_exactly(shape, window):
    """A bright spot inside the window lands where ``to_input`` says (intensity centroid within
    0.1 input px), magnified against the plain fit; ``to_source`` inverts it; the box keeps the
    whole image's shape; a window outside the image is refused."""
    x0, y0, x1, y1 = window
    plain = letterbox(np.zeros(shape, np.float32), INPUT_SHAPE)[1]
    for x, y in [(x0 + 20, y0 + 24), (x1 - 22, y1 - 20), ((x0 + x1) // 2, (y0 + y1) // 3)]:
        img = np.zeros(shape, np.float32)
        img[y - 4:y + 5, x - 4:x + 5] = 1.0
        out, lb = letterbox(img, INPUT_SHAPE, window=window)
        rows, cols = np.nonzero(out > 0)
        w = out[rows, cols]
        centroid = np.array([np.sum(cols * w), np.sum(rows * w)]) / w.sum()
        np.testing.assert_allclose(centroid, lb.to_input(np.array([x, y], float)), atol=0.1)
        np.testing.assert_allclose(lb.to_source(lb.to_input(np.array([x, y], float))), [x, y], atol=1e-9)
        assert lb.shape == shape and lb.scale > plain.scale
    with pytest.raises(ValueError, match="not inside the image"):
        letterbox(np.zeros(shape, np.float32), INPUT_SHAPE, window=(0, 0, shape[1] + 1, 10))


def _spine(n: int, step: float, x: float = 500.0, y_top: float = 800.0, s1: bool = True, head: bool = True,
           height: float = 24.0) -> Detections:
    """``n`` bodies ``height`` px tall ``step`` px apart downwards from ``y_top``, S1 and a femoral
    head below them."""
    bodies = []
    half = height / 2
    for k in range(n):
        c = np.array([x, y_top + k * step])
        pts = c + np.array([[15, -half], [-15, -half], [-15, half], [15, half], [0, -half], [0, half]], float)
        bodies.append(Body(points=pts, confidence=0.8, centre=c))
    bottom = y_top + (n - 1) * step
    s1_pts = np.array([[x + 15, bottom + step * 0.8], [x - 15, bottom + step * 0.7]]) if s1 else None
    heads = [(np.array([x + 60, bottom + 2.5 * step]), 0.8 * step, 0.9)] if head else []
    return Detections(bodies, s1_pts, 0.9 if s1 else 0.0, heads)


def test_the_spine_window_of_a_film_framed_long():
    """On a film twice as long as the spine, the window is ``ZOOM_IN_STEPS`` steps tall with the
    model input's aspect, holds every body, S1 and the head with a step to spare below, and
    magnifies the look by about the film's length over the window's."""
    step, rows, cols = 40.0, 2400, 1000
    det = _spine(18, step)
    x0, y0, x1, y1 = infer.spine_window(det, (rows, cols))
    assert y1 - y0 == pytest.approx(infer.ZOOM_IN_STEPS * step, abs=1)
    assert (x1 - x0) / (y1 - y0) == pytest.approx(INPUT_SHAPE[1] / INPUT_SHAPE[0], abs=0.01)
    found = np.array([b.centre for b in det.bodies] + list(det.s1) + [det.heads[0][0]])
    assert np.all((found[:, 0] > x0) & (found[:, 0] < x1) & (found[:, 1] > y0) & (found[:, 1] < y1))
    head_bottom = det.heads[0][0][1] + det.heads[0][1]
    assert y1 == pytest.approx(head_bottom + step, abs=1)
    full = letterbox(np.zeros((rows, cols), np.float32))[1].scale
    zoomed = letterbox(np.zeros((rows, cols), np.float32), window=(x0, y0, x1, y1))[1].scale
    assert zoomed / full == pytest.approx(rows / (y1 - y0), rel=0.02)


def test_the_spine_window_holds_every_body_found_and_is_centred_without_anything_below():
    """Bodies spread over more than ``ZOOM_IN_STEPS`` steps (a step estimate too short) make the
    window taller, not cut them; without S1 or a head the window is centred on the bodies."""
    det = _spine(30, 30.0, y_top=300.0, s1=False, head=False)
    x0, y0, x1, y1 = infer.spine_window(det, (3000, 1500))
    ys = [b.centre[1] for b in det.bodies]
    assert y0 < min(ys) - 29 and y1 > max(ys) + 29
    assert (y0 + y1) / 2 == pytest.approx((min(ys) + max(ys)) / 2, abs=1)


def test_no_spine_window_where_it_would_not_magnify_or_nothing_was_found():
    """A film framed to the spine (the window is the film), a lumbar film whose bodies are as
    large in the model's input as ``ZOOM_IN_BODY_PX`` already (the window could crop its width),
    fewer than three bodies, or a magnification under ``ZOOM_IN_MIN_GAIN``: no second look."""
    assert infer.spine_window(_spine(18, 40.0, y_top=120.0), (1100, 520)) is None
    lumbar, shape = _spine(5, 80.0, y_top=250.0, height=60.0), (1000, 900)  # bodies 8.5 px in the input
    assert infer.spine_window(lumbar, shape) is None
    assert infer.spine_window(lumbar, shape, body_px=20.0) is not None  # the width alone would magnify it 1.8x
    assert infer.spine_window(_spine(2, 40.0), (2400, 1000)) is None
    assert infer.spine_window(_spine(18, 40.0), (2400, 1000), min_gain=3.0) is None
    assert infer.spine_window(_spine(18, 40.0), (2400, 1000), min_gain=1.5) is not None
    # three false peaks a fraction of a pixel apart and tall: no window of nothing (it was one
    # rounded to zero width, which letterbox refuses, failing the whole batch)
    specks = _spine(3, 0.05, height=0.05, s1=False, head=False)
    assert infer.spine_window(specks, (2400, 1000)) is None


def _stand_in(monkeypatch, detector, first: Detections, zoomed: Detections) -> list:
    """``_coarse_maps`` returning ``first`` for a plain look and ``zoomed`` for a windowed one;
    records the windows asked for."""
    asked: list = []

    def fake(normed, stage="coarse", zoom_out=None, windows=None):
        parts = windows or [None] * len(normed)
        asked.extend(parts)
        dets = [Detections(list(zoomed.bodies if w else first.bodies), zoomed.s1 if w else first.s1,
                           zoomed.s1_confidence if w else first.s1_confidence, list(zoomed.heads if w else first.heads))
                for w in parts]
        return dets, [Letterbox(2.0 if w else 1.0, (0.0, 0.0), n.shape[:2]) for n, w in zip(normed, parts, strict=True)]

    monkeypatch.setattr(detector, "_coarse_maps", fake)
    return asked


def _labelled(det: Detections, levels: list[str]) -> Detections:
    for b, lv in zip(det.bodies, levels, strict=False):
        b.level = lv
    return det


@pytest.fixture(scope="module")
def detector():
    return infer.LandmarkDetector(None, device="cpu", threads=1)


def test_the_magnified_look_is_kept_only_where_it_went_better(detector, monkeypatch):
    """Where the magnified look names more levels it replaces the first (a warning says how much
    it magnified; the look is not of the image as given), where it names fewer the first stays;
    with ``zoom_in_look`` off no window is asked for."""
    image = np.zeros((2400, 1000), np.float32)
    lumbar = ["L5", "L4", "L3", "L2", "L1", "T12"]
    few, more = _labelled(_spine(18, 40.0), lumbar[:2]), _labelled(_spine(18, 40.0), lumbar)
    windows = _stand_in(monkeypatch, detector, few, more)
    dets, boxes, looked, given = detector._coarse_looks([image], "coarse", True)
    assert any(w is not None for w in windows)
    assert infer._n_levels(dets[0]) == 6 and given == [False] and boxes[0].scale == 2.0
    assert any("magnified 2×" in w and "framed longer than the spine" in w for w in dets[0].warnings)
    assert looked[0] is image  # the crops are still cut from the whole image

    windows = _stand_in(monkeypatch, detector, more, few)
    dets, boxes, _, given = detector._coarse_looks([image], "coarse", True)
    assert infer._n_levels(dets[0]) == 6 and given == [True] and boxes[0].scale == 1.0
    assert not any("magnified" in w for w in dets[0].warnings)

    detector.zoom_in_look = False
    try:
        windows = _stand_in(monkeypatch, detector, more, few)
        detector._coarse_looks([image], "coarse", True)
        assert windows and all(w is None for w in windows)
    finally:
        detector.zoom_in_look = True


def test_the_ct_mr_plane_detector_does_not_magnify(monkeypatch):
    """The plane detector asks for no window, even where a magnified look would have won."""
    from sagittal.landmarks.plane_detector import PlaneDetector

    planes = PlaneDetector(None, device="cpu", threads=1)
    assert planes.zoom_in_look is False
    few, more = _labelled(_spine(18, 40.0), ["L5", "L4"]), _labelled(_spine(18, 40.0), ["L5", "L4", "L3", "L2"])
    asked = _stand_in(monkeypatch, planes, few, more)
    planes._coarse_looks([np.zeros((2400, 1000), np.float32)], "coarse", True)
    assert asked and all(w is None for w in asked)


LONG_SEED = 9_400_001  # eval_landmarks --framing long-film, drr-a, a dev seed (never an evaluation block)


@pytest.mark.slow
def test_a_long_film_is_read_on_the_magnified_look(detector):
    """A whole-spine film framed 120 mm longer at each end (``--framing long-film``): with the
    magnified look more levels are named, each the right body (its centre within 3 mm of the
    truth's), and a warning says the look was magnified."""
    import sys
    from pathlib import Path

    from sagittal.levels import POINT_NAMES

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
    from eval_landmarks import render_case

    _, view, truth = render_case("drr-a", LONG_SEED, 0.0, False, "long-film")
    detector.zoom_in_look = False
    try:
        ((plain, _, _),) = detector.detect([view.pixels])
    finally:
        detector.zoom_in_look = True
    ((lm, _, warnings),) = detector.detect([view.pixels])
    assert any("magnified" in w for w in warnings)
    assert len(lm["vertebrae"]) >= len(plain["vertebrae"]) + 5
    sp = np.array([view.spacing_mm[1], view.spacing_mm[0]])
    for lv, pts in lm["vertebrae"].items():
        true = truth["landmarks"]["vertebrae"][lv]
        got = np.mean([pts[m] for m in POINT_NAMES[:4]], axis=0)
        want = np.mean([true[m] for m in POINT_NAMES[:4]], axis=0)
        assert np.linalg.norm((got - want) * sp) < 3.0, lv
