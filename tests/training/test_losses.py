"""The refinement's height-ratio term (training.losses.height_ratio_loss)."""

import numpy as np
import torch

from sagittal.landmarks.layout import REFINE_CHANNELS
from sagittal.levels import AI, AS
from sagittal.training.losses import expected_points, height_ratio_loss, local_expected_points
from sagittal.training.targets import refine_targets

SIZE = 64


def _body(anterior_height: float) -> np.ndarray:
    """``(REFINE_CHANNELS, 2)`` crop points: a body 20 px tall at the back, NaN outside its six."""
    pts = np.full((REFINE_CHANNELS, 2), np.nan, np.float32)
    pts[:6] = [[22, 32 - anterior_height / 2], [42, 22], [42, 42], [22, 32 + anterior_height / 2], [32, 22], [32, 42]]
    return pts


def _logits(points: np.ndarray) -> torch.Tensor:
    """Maps whose spatial softmax is the training target about ``points``."""
    t = refine_targets(SIZE, points)
    return torch.from_numpy(np.log(t + 1e-12))


def test_expectation_is_the_target_point() -> None:
    pts = _body(20.0)
    q = expected_points(_logits(pts)[None, :6])[0].numpy()
    np.testing.assert_allclose(q, pts[:6], atol=0.05)


def test_loss_is_zero_on_the_truth_and_grows_with_a_wedge_read_as_normal() -> None:
    crushed = _body(12.0)  # anterior height 60 % of the posterior's: a grade-3 wedge
    truth = torch.from_numpy(crushed)[None]
    assert float(height_ratio_loss(_logits(crushed)[None], truth)) < 0.01
    as_normal = float(height_ratio_loss(_logits(_body(20.0))[None], truth))
    assert abs(as_normal - 0.4) < 0.02  # a/p read 1.0 against 0.6; m/p right


def test_crops_without_all_six_points_are_skipped_and_gradient_flows() -> None:
    crushed, cut = _body(12.0), _body(20.0)
    cut[AS] = [20, -5]  # the anterior-superior corner outside the crop
    points = torch.from_numpy(np.stack([crushed, cut]))
    pred = torch.stack([_logits(_body(20.0)), _logits(_body(20.0))]).requires_grad_()
    loss = height_ratio_loss(pred, points)
    assert abs(loss.item() - 0.4) < 0.02  # the cut crop adds nothing
    loss.backward()
    assert pred.grad is not None and float(pred.grad[0, AI].abs().sum()) > 0
    assert float(pred.grad[1].abs().sum()) == 0.0
    empty = height_ratio_loss(pred[1:], points[1:])
    assert empty.item() == 0.0


def test_local_expectation_is_the_peak_even_with_a_far_tail() -> None:
    pts = _body(20.0)
    logits = _logits(pts)[None, :6].clone()
    logits[0, 0, 58:61, 58:61] = logits[0, 0].max() - 0.01  # a far second mode, just below the peak
    whole = expected_points(logits)[0, 0].numpy()
    local = local_expected_points(logits, 2)[0].numpy()
    np.testing.assert_allclose(local, pts[:6], atol=0.05)
    assert np.linalg.norm(whole - pts[0]) > 5
    near_edge = _body(20.0)
    near_edge[0] = [0.4, 1.0]  # a peak in the crop's corner: the window stays inside
    q = local_expected_points(_logits(near_edge)[None, :1], 2)[0, 0].numpy()
    assert np.all(np.isfinite(q)) and np.linalg.norm(q - near_edge[0]) < 1.0
    wedge = torch.from_numpy(_body(12.0))[None]
    assert abs(height_ratio_loss(_logits(_body(20.0))[None], wedge, window=2).item() - 0.4) < 0.02


def _subpixel_target(x: float, y: float) -> torch.Tensor:
    p = np.full((1, 2), np.nan, np.float32)
    p[0] = [x, y]
    return _logits(p)[None]


def test_a_window_under_radius_4_pulls_a_point_between_pixels_towards_its_peak() -> None:
    """The window cuts the target's Gaussian off: between pixel centres it reads the point nearer its
    peak pixel (by up to 0.19 px at radius 2), from radius 4 within 0.02 px; the whole map is exact."""
    worst = {r: 0.0 for r in (2, 4)}
    for f in np.linspace(0.0, 0.5, 11):
        logits, truth = _subpixel_target(30 + f, 30 + f / 2), np.array([30 + f, 30 + f / 2])
        np.testing.assert_allclose(expected_points(logits)[0, 0].numpy(), truth, atol=0.01)
        for r in worst:
            worst[r] = max(worst[r], float(np.abs(local_expected_points(logits, r)[0, 0].numpy() - truth).max()))
    assert 0.15 < worst[2] < 0.2 and worst[4] < 0.02


def test_the_window_stays_inside_at_the_far_edge_and_the_loss_is_a_mean_over_crops() -> None:
    far = _subpixel_target(63.0, 62.0)
    q = local_expected_points(far, 4)[0, 0].numpy()
    assert np.all(q <= 63.0) and np.linalg.norm(q - [63.0, 62.0]) < 1.5  # clamped: the window is 59-63
    crushed, normal = torch.from_numpy(_body(12.0)), torch.from_numpy(_body(20.0))
    pred = torch.stack([_logits(_body(20.0))] * 2)
    one = height_ratio_loss(pred[:1], crushed[None]).item()
    two = height_ratio_loss(pred, torch.stack([crushed, normal])).item()
    assert abs(two - one / 2) < 0.01  # the normal crop read right halves the mean


def test_a_point_half_a_pixel_outside_the_crop_leaves_the_crop_out() -> None:
    body = _body(12.0)
    body[AI] = [22, 63.6]  # past the last pixel's far edge
    assert height_ratio_loss(_logits(_body(20.0))[None], torch.from_numpy(body)[None]).item() == 0.0
