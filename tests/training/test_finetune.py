"""``sagittal finetune``: masked targets for what is not annotated, and a short run that writes
weights ``analyze --weights`` loads, with a checksum and the training record."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from sagittal.api import Analyzer
from sagittal.cli import main
from sagittal.landmarks.layout import C_OFFSETS, C_RADIUS
from sagittal.landmarks.preprocess import INPUT_SHAPE
from sagittal.landmarks.weights import packaged, verify
from sagittal.training.evaluate import read_raster
from sagittal.training.finetune import _sampling_weights, masked_coarse_targets, split

from .fixtures import write_set

FINETUNE_TEST_SEEDS = 7_500_000  # phantom seeds of the coarse distillation test (no other stream uses them)


def test_corner_only_bodies_mask_middle_points_and_unannotated_regions() -> None:
    verts = np.full((18, 6, 2), np.nan)
    verts[14, :4] = [[60, 100], [40, 100], [40, 118], [60, 118]]  # L2: corners only
    s1, heads, radii = np.full((2, 2), np.nan), np.full((2, 2), np.nan), np.full(2, np.nan)
    t, heat_w, off_m, rad_m = masked_coarse_targets(INPUT_SHAPE, verts, s1, heads, radii, user=True)
    cells = off_m.sum(axis=0) > 0
    assert cells.sum() == 9  # the 3 x 3 cells about the body
    assert (off_m[:8][:, cells] == 1).all() and (off_m[8:][:, cells] == 0).all()  # middles (4, 5): no loss
    assert np.isfinite(t[C_OFFSETS]).all() and t[0].max() > 0.5
    assert heat_w[1:].sum() == 0  # S1 corners and femoral heads not annotated: no heatmap loss
    rows = heat_w[0].any(axis=1)
    assert rows[55] and not rows[10] and not rows[120]  # body centres taught only about the annotated span
    assert rad_m.sum() == 0 and t[C_RADIUS].sum() == 0
    # a phantom (fully annotated) image keeps every loss
    _, hw, _, _ = masked_coarse_targets(INPUT_SHAPE, verts, s1, heads, radii, user=False)
    assert hw.min() == 1


def test_split_is_seeded_and_keeps_both_sides() -> None:
    pairs = [(Path(f"{k}.png"), k) for k in range(10)]
    tr, ho = split(pairs, 0.2, 0)  # type: ignore[arg-type]
    assert len(ho) == 2 and len(tr) == 8 and split(pairs, 0.2, 0) == (tr, ho)  # type: ignore[arg-type]
    assert len(split(pairs[:2], 0.01, 0)[1]) == 1  # type: ignore[arg-type]


@pytest.mark.slow
def test_short_finetune_writes_loadable_weights_with_record(tmp_path: Path) -> None:
    write_set(tmp_path, n=3, family="2d", flip_for_buu=True, first_seed=4_244_000)
    out = tmp_path / "tuned.pt"
    assert main(["finetune", str(tmp_path / "buu_png"), "--annotations", str(tmp_path / "buu"), "--format", "buu",
                 "-o", str(out), "--minutes", "0.05", "--phantom", "2", "--held-out", "0.34", "--spacing", "0.6",
                 "--device", "cpu"]) == 0
    verify(out, required=True)
    blob = torch.load(out, map_location="cpu", weights_only=True)
    rec = blob["training_record"]
    assert rec["format"] == "buu" and len(rec["held_out_images"]) == 1 and len(rec["train_images"]) == 2
    assert rec["stages"]["coarse"]["iterations"] >= 1 and rec["stages"]["refine"]["user_items"] > 0
    assert set(rec["held_out_before"]) >= {"n_images", "detection_rate", "point_error_px_median"}
    assert rec["held_out_after"]["n_images"] == 1
    json.dumps(rec)  # plain values only
    init = torch.load(packaged(), map_location="cpu", weights_only=True)
    # the packaged second coarse network is not tuned, so it is not kept to compete with the tuned one
    assert "coarse2" in init and "coarse2" not in blob and rec["dropped_stages"] == ["coarse2"]
    changed = [k for k, v in blob["refine"]["state_dict"].items() if not torch.equal(v, init["refine"]["state_dict"][k])]
    assert changed  # the refine stage was trained
    a = Analyzer(device="cpu", weights=out).analyze(read_raster(tmp_path / "png" / "case00.png"),
                                                    pixel_spacing_mm=(0.6, 0.6))
    assert a.software and a.software["model"] == "tuned.pt"
    assert len(a.vertebrae) > 5


def test_sampling_weights_give_the_phantom_share() -> None:
    user = np.array([True] * 90 + [False] * 10)
    p = _sampling_weights(user, 0.4)
    assert p.sum() == pytest.approx(1.0) and p[~user].sum() == pytest.approx(0.4)
    assert _sampling_weights(np.ones(5, bool), 0.4) == pytest.approx(np.full(5, 0.2))  # no phantoms: uniform


def _refine_data(n: int) -> dict[str, np.ndarray]:
    from sagittal.landmarks.crops import CROP
    from sagittal.training.data import KIND_CODES

    rng = np.random.default_rng(0)
    pts = np.full((n, 10, 2), np.nan, np.float32)
    pts[:, :6] = rng.uniform(16, CROP - 16, (n, 6, 2))
    return {"crops": rng.integers(0, 256, (n, CROP, CROP), dtype=np.uint8), "kinds": np.full(n, KIND_CODES["vertebra"], np.int8),
            "points": pts, "user": np.arange(n) % 2 == 0}


@pytest.mark.parametrize("freeze_bn", [True, False])
def test_frozen_batchnorm_keeps_the_running_statistics(freeze_bn: bool) -> None:
    from sagittal.landmarks.model import build
    from sagittal.training.finetune import _train_stage

    torch.manual_seed(0)
    model = build("refine", (4, 8))
    start = {k: v.clone() for k, v in model.state_dict().items()}
    rec = _train_stage("refine", model, _refine_data(6), 600.0, 1e-2, 4, 0.5, np.random.default_rng(0), "cpu",
                       lambda m: None, anchor=0.0, freeze_bn=freeze_bn, max_iterations=1)
    stats = [k for k in start if k.endswith(("running_mean", "running_var"))]
    same = [torch.equal(model.state_dict()[k], start[k]) for k in stats]
    assert stats and (all(same) if freeze_bn else not any(same))
    assert rec["iterations"] == 1 and rec["squared_distance_from_start"] > 0  # the weights did train
    assert not model.training  # left in eval mode


def test_anchor_holds_the_weights_near_the_start() -> None:
    from sagittal.landmarks.model import build
    from sagittal.training.finetune import _train_stage

    moved = {}
    for anchor in (0.0, 50.0):
        torch.manual_seed(0)
        model = build("refine", (4, 8))
        rec = _train_stage("refine", model, _refine_data(6), 600.0, 0.3, 4, 0.5, np.random.default_rng(0), "cpu",
                           lambda m: None, anchor=anchor, max_iterations=6)
        moved[anchor] = rec["squared_distance_from_start"]
    assert 0 < moved[50.0] < moved[0.0]


def test_distillation_loss_is_zero_for_the_same_outputs_and_ignores_channels_outside_the_crop() -> None:
    from sagittal.training.losses import distillation_loss

    g = torch.Generator().manual_seed(0)
    teacher = torch.randn(3, 2, 8, 8, generator=g)
    target = torch.zeros(3, 2, 8, 8)
    target[:, 0, 4, 4] = 1.0  # channel 1 is not in the crop
    assert float(distillation_loss(teacher.clone(), teacher, target)) == pytest.approx(0.0, abs=1e-6)
    moved_outside = teacher.clone()
    moved_outside[:, 1] += torch.randn(3, 8, 8, generator=g)
    assert float(distillation_loss(moved_outside, teacher, target)) == pytest.approx(0.0, abs=1e-6)
    moved_inside = teacher.clone()
    moved_inside[:, 0, 2, 2] += 3.0
    assert float(distillation_loss(moved_inside, teacher, target)) > 0.01


def test_distillation_holds_the_outputs_on_the_original_look() -> None:
    """With the distillation the refinement's point distributions on the phantom crops stay nearer
    to the starting network's (their KL divergence) than without it, after the same steps."""
    from sagittal.training.losses import distillation_loss
    from sagittal.training.targets import refine_targets

    data = _refine_data(8)
    original = ~data["user"]
    phantom = torch.as_tensor(data["crops"][original], dtype=torch.float32)[:, None] / 255.0
    size = phantom.shape[-1]
    targets = torch.as_tensor(np.stack([refine_targets(size, p) for p in data["points"][original]]))
    drift = _drift_with_and_without_distillation("refine", data, phantom, 4, 12,
                                                 lambda out, start: distillation_loss(out, start, targets))
    assert 0 < drift[50.0] < drift[0.0]


def _drift_with_and_without_distillation(stage: str, data: dict, phantom: torch.Tensor, batch: int, iterations: int,
                                         loss) -> dict[float, float]:
    """``loss(outputs, starting outputs)`` on the phantoms after ``_train_stage`` ran the same steps
    from the same start without (0) and with (50) distillation."""
    from sagittal.landmarks.model import build
    from sagittal.training.finetune import _train_stage

    drift = {}
    for distill in (0.0, 50.0):
        torch.manual_seed(0)
        model = build(stage, (4, 8)).eval()
        with torch.no_grad():
            start = model(phantom).clone()
        rec = _train_stage(stage, model, data, 600.0, 0.05, batch, 0.5, np.random.default_rng(0), "cpu",
                           lambda m: None, max_iterations=iterations, distill=distill)
        assert rec["distill"] == distill
        with torch.no_grad():
            drift[distill] = float(loss(model(phantom), start))
    return drift


def test_coarse_distillation_is_zero_for_the_same_maps_and_grows_with_a_moved_peak() -> None:
    from sagittal.landmarks.layout import C_CENTRE, C_OFFSETS
    from sagittal.training.finetune import coarse_distillation_loss

    teacher = torch.full((1, 17, 16, 8), -6.0)
    teacher[0, C_CENTRE, 8, 4] = 4.0  # one body
    assert float(coarse_distillation_loss(teacher.clone(), teacher)) == pytest.approx(0.0, abs=1e-7)
    moved = teacher.clone()
    moved[0, C_CENTRE, 8, 4], moved[0, C_CENTRE, 9, 4] = -6.0, 4.0
    offsets_far = teacher.clone()
    offsets_far[0, C_OFFSETS, 0, 0] += 2.0  # where the teacher sees nothing: not held
    offsets_near = teacher.clone()
    offsets_near[0, C_OFFSETS, 8, 4] += 2.0
    assert float(coarse_distillation_loss(offsets_far, teacher)) == pytest.approx(0.0, abs=1e-7)
    assert float(coarse_distillation_loss(offsets_near, teacher)) > 0.1
    assert float(coarse_distillation_loss(moved, teacher)) > 0.5


def test_coarse_distillation_holds_the_maps_on_the_original_look() -> None:
    """The coarse stage's training loop applies its distillation: after the same steps, its maps on
    the phantom images stay nearer the starting network's with it than without it."""
    from sagittal.training.data import make_coarse_dataset
    from sagittal.training.finetune import coarse_distillation_loss

    data = make_coarse_dataset(range(FINETUNE_TEST_SEEDS, FINETUNE_TEST_SEEDS + 4))
    data["user"] = np.arange(4) % 2 == 0
    phantom = torch.as_tensor(data["images"][~data["user"]], dtype=torch.float32)[:, None] / 255.0
    drift = _drift_with_and_without_distillation("coarse", data, phantom, 2, 6, coarse_distillation_loss)
    assert 0 < drift[50.0] < drift[0.0]


def test_erase_body_fills_one_body_with_noise_and_drops_its_target() -> None:
    from sagittal.training.finetune import erase_body

    img = np.full((120, 80), 0.2, np.float32)
    img[40:60, 20:50] = 0.8  # one bright body
    verts = np.full((18, 6, 2), np.nan)
    verts[14, :4] = [[20, 40], [49, 40], [49, 59], [20, 59]]
    before = img.copy()
    assert erase_body(img, verts, np.random.default_rng(0)) == 14
    assert np.isnan(verts[14]).all()  # no centre target: taught as background
    changed = img != before
    assert changed[40:60, 20:50].mean() > 0.9 and not changed[:30].any() and not changed[70:].any()
    assert img.min() >= 0.0 and img.max() <= 1.0
    assert erase_body(img, np.full((18, 6, 2), np.nan), np.random.default_rng(0)) is None


def test_erased_images_are_not_distilled_and_a_teacher_replaces_the_start() -> None:
    """With an explicit teacher the phantoms are held to its outputs, not the starting network's;
    with every image erased there is nothing left to distil."""
    from sagittal.landmarks.model import build
    from sagittal.training.data import make_coarse_dataset
    from sagittal.training.finetune import _train_stage

    data = make_coarse_dataset(range(FINETUNE_TEST_SEEDS, FINETUNE_TEST_SEEDS + 2))
    data["user"] = np.zeros(2, bool)
    phantom = torch.as_tensor(data["images"], dtype=torch.float32)[:, None] / 255.0
    torch.manual_seed(1)
    teacher = build("coarse", (4, 8)).eval()
    with torch.no_grad():
        t_out = torch.sigmoid(teacher(phantom)).clone()
    gap = {}
    for name, kw in (("start", {}), ("teacher", {"teacher": teacher})):
        torch.manual_seed(0)
        model = build("coarse", (4, 8))
        _train_stage("coarse", model, data, 600.0, 0.05, 2, 0.5, np.random.default_rng(0), "cpu", lambda m: None,
                     max_iterations=8, distill=50.0, **kw)
        with torch.no_grad():
            gap[name] = float(((torch.sigmoid(model(phantom)) - t_out) ** 2).mean())
    assert gap["teacher"] < gap["start"]
    loss = _loss_with_and_without_distillation_all_erased("coarse", data, teacher, 2)
    assert loss[50.0] == pytest.approx(loss[0.0], rel=1e-6)


def _loss_with_and_without_distillation_all_erased(stage: str, data: dict, teacher: torch.nn.Module,
                                                   batch: int) -> dict[float, float]:
    """The training loss after two steps with every item erased, without (0) and with (50)
    distillation towards ``teacher`` (another network): equal when erased items are not distilled."""
    from sagittal.landmarks.model import build
    from sagittal.training.finetune import _train_stage

    loss = {}
    for distill in (0.0, 50.0):
        torch.manual_seed(0)
        model = build(stage, (4, 8))
        loss[distill] = _train_stage(stage, model, data, 600.0, 1e-3, batch, 0.5, np.random.default_rng(0), "cpu",
                                     lambda m: None, max_iterations=2, distill=distill, teacher=teacher,
                                     erase=1.0)["final_loss"]
    return loss


def test_erase_crops_fills_the_body_and_teaches_uniform_maps_on_body_crops_only() -> None:
    from sagittal.training.data import KIND_CODES
    from sagittal.training.finetune import erase_crops
    from sagittal.training.targets import refine_targets

    size = 64
    crops = np.full((3, size, size), 0.2, np.float32)
    crops[:, 20:44, 16:48] = 0.8  # the body in the middle of each crop
    pts = np.full((3, 10, 2), np.nan, np.float32)
    pts[:, :6] = [[47, 20], [16, 20], [16, 43], [47, 43], [31.5, 20], [31.5, 43]]
    pts[2, :6], pts[2, 6:8] = np.nan, [[40, 30], [20, 32]]  # an S1 crop
    kinds = np.array([KIND_CODES["vertebra"], KIND_CODES["vertebra"], KIND_CODES["s1"]])
    targets = np.stack([refine_targets(size, p) for p in pts])
    before = crops.copy()
    erased = erase_crops(crops, targets, kinds, pts, 1.0, np.random.default_rng(0))
    assert erased.tolist() == [True, True, False]
    assert (crops[0, 20:44, 16:48] != before[0, 20:44, 16:48]).mean() > 0.9 and (crops[0, :10] == 0.2).all()
    assert np.allclose(targets[0, :6], 1.0 / size**2) and np.allclose(targets[0, :6].sum(axis=(1, 2)), 1.0)
    assert (crops[2] == before[2]).all() and targets[2, 6].max() > 0.05  # the S1 crop as it was
    assert not erase_crops(crops, targets, kinds, pts, 0.0, np.random.default_rng(0)).any()


def test_erased_crops_are_not_distilled() -> None:
    from sagittal.landmarks.model import build

    data = _refine_data(6)
    data["user"][:] = False
    torch.manual_seed(1)
    teacher = build("refine", (4, 8)).eval()
    loss = _loss_with_and_without_distillation_all_erased("refine", data, teacher, 4)
    assert loss[50.0] == pytest.approx(loss[0.0], rel=1e-6)


def test_zero_steps_leave_a_stage_as_it_is() -> None:
    """``--steps 0`` trains only the other stage (it once meant "no bound" and ran for the time cap)."""
    from sagittal.landmarks.model import build
    from sagittal.training.finetune import _train_stage

    torch.manual_seed(0)
    model = build("refine", (4, 8))
    start = {k: v.clone() for k, v in model.state_dict().items()}
    rec = _train_stage("refine", model, _refine_data(4), 600.0, 1e-2, 4, 0.5, np.random.default_rng(0), "cpu",
                       lambda m: None, max_iterations=0)
    assert rec["iterations"] == 0 and rec["final_loss"] is None
    assert all(torch.equal(model.state_dict()[k], v) for k, v in start.items())


def test_regional_look_changes_the_processing_not_the_anatomy() -> None:
    """An unseen look (``loop.regional_look``): in [0, 1], float32, seeded, padding kept at 0,
    the image clearly changed, and a bright body stays where it was (its truth stays valid)."""
    from sagittal.training.loop import regional_look

    img = np.zeros((256, 128), np.float32)
    img[20:236] = 0.3 + 0.1 * np.random.default_rng(0).random((216, 128))  # letterbox padding above and below
    img[100:130, 40:80] = 0.9  # one bright body
    changes = []
    for seed in range(12):
        out = regional_look(img, np.random.default_rng(seed))
        assert out.shape == img.shape and out.dtype == np.float32
        assert out.min() >= 0.0 and out.max() <= 1.0
        assert (out[:20] == 0).all() and (out[236:] == 0).all()
        np.testing.assert_array_equal(out, regional_look(img, np.random.default_rng(seed)))
        rows = np.abs(np.diff(out[80:150, 50:70].mean(axis=1)))  # the endplates: strongest steps down the body
        cols = np.abs(np.diff(out[105:125, 20:100].mean(axis=0)))  # its front and back
        assert sorted(np.argsort(rows)[-2:] + 80) == [99, 129] and sorted(np.argsort(cols)[-2:] + 20) == [39, 79]
        assert out[100:130, 40:80].mean() > out[150:200].mean()  # the body still stands out
        changes.append(float(np.abs(out - img)[20:236].mean()))
    assert np.median(changes) > 0.02


def test_the_phantoms_keep_their_look_and_user_images_get_another() -> None:
    """``look`` touches only user images: with every item a phantom the batch is the same with
    and without it; with every item a user image it differs."""
    from sagittal.training.data import make_coarse_dataset
    from sagittal.training.finetune import _coarse_batch

    data = make_coarse_dataset(range(FINETUNE_TEST_SEEDS, FINETUNE_TEST_SEEDS + 2))
    idx = np.array([0, 1, 0, 1])
    for user, same in ((False, True), (True, False)):
        data["user"] = np.full(2, user)
        a = _coarse_batch(data, idx, np.random.default_rng(3))[0]
        b = _coarse_batch(data, idx, np.random.default_rng(3), look=1.0)[0]
        assert torch.equal(a, b) is same


def test_refine_batch_gives_another_look_only_to_the_crops_asked() -> None:
    """``loop.refine_batch(looks=…)``: no crop asked → the same batch as without it (the RNG
    untouched); every crop asked → a different one, targets unchanged."""
    from sagittal.training.loop import refine_batch

    rng = np.random.default_rng(0)
    crops = np.clip(rng.normal(120, 40, (3, 48, 48)), 1, 255).astype(np.uint8)
    points = np.full((3, 10, 2), np.nan, np.float32)
    points[:, :6] = rng.uniform(10, 38, (6, 2))
    data = {"crops": crops, "points": points}
    idx = np.array([0, 1, 2])
    x0, t0 = refine_batch(data, idx, np.random.default_rng(5))
    x1, t1 = refine_batch(data, idx, np.random.default_rng(5), np.zeros(3, bool))
    x2, t2 = refine_batch(data, idx, np.random.default_rng(5), np.ones(3, bool))
    assert torch.equal(x0, x1) and torch.equal(t0, t1) and torch.equal(t0, t2)
    assert not torch.equal(x0, x2)
