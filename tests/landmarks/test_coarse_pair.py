"""A weights file may hold a second coarse network (``coarse2``): every radiograph is read by
both and the look that went better is kept (``infer._network_rank``; the first on a tie).
Weights files are put together with ``training.combine``."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sagittal.errors import InputError
from sagittal.landmarks import weights as w
from sagittal.landmarks.model import load_models
from sagittal.training.combine import combine_stages


def _single(path, out):
    """``path``'s blob with one coarse network (the packaged file holds two)."""
    blob = torch.load(path, map_location="cpu", weights_only=True)
    blob.pop("coarse2", None)
    torch.save(blob, out)
    return out


def _blind(path, out):
    """``path``'s blob with a coarse network that sees nothing (every heatmap logit -30)."""
    blob = torch.load(path, map_location="cpu", weights_only=True)
    stage = dict(blob["coarse"])
    sd = dict(stage["state_dict"])
    sd["head.weight"] = torch.zeros_like(sd["head.weight"])
    sd["head.bias"] = torch.full_like(sd["head.bias"], -30.0)
    blob["coarse"] = {**stage, "state_dict": sd}
    torch.save(blob, out)
    return out


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("pair")
    single = _single(w.packaged(), d / "single.pt")
    blind = _blind(single, d / "blind.pt")
    combine_stages(blind, d / "blind_first.pt", {"coarse2": (single, "coarse")})
    combine_stages(single, d / "blind_second.pt", {"coarse2": (blind, "coarse")})
    return {"single": single, "blind": blind, "blind_first": d / "blind_first.pt", "blind_second": d / "blind_second.pt"}


def test_combined_file_loads_the_second_coarse_network_and_records_its_source(files):
    models = load_models(files["blind_first"])
    assert set(models) == {"coarse", "refine", "coarse2"}
    assert w.sidecar(files["blind_first"]).is_file()  # combine_stages wrote its checksum
    blob = torch.load(files["blind_first"], map_location="cpu", weights_only=True)
    assert blob["coarse2"]["meta"]["taken_from"].startswith("single.pt (coarse stage; file SHA-256 ")
    x = torch.rand(1, 1, 256, 128)
    with torch.inference_mode():  # coarse2 is the single file's coarse network, coarse the blind one
        np.testing.assert_array_equal(models["coarse2"](x).numpy(), load_models(files["single"])["coarse"](x).numpy())
        assert float(models["coarse"](x)[:, 0].max()) == pytest.approx(-30.0)


def test_a_stage_of_another_kind_is_refused(tmp_path):
    with pytest.raises(InputError, match="coarse2 is a coarse network"):
        combine_stages(w.packaged(), tmp_path / "x.pt", {"coarse2": (w.packaged(), "refine")})
    with pytest.raises(InputError, match="not a stage"):
        combine_stages(w.packaged(), tmp_path / "x.pt", {"coarse3": (w.packaged(), "coarse")})


@pytest.mark.slow
def test_the_better_look_is_kept_whichever_network_gave_it(files):
    from sagittal.landmarks.infer import LandmarkDetector
    from sagittal.levels import LEVEL_INDEX
    from sagittal.training.data import COARSE_STREAM, _render

    spine, view, _ = _render(COARSE_STREAM, 3, (0.5, 0.5), field_of_view="lumbar", collimation="none",
                             markers=False, ruler=False)
    assert view.s1_in_view and view.in_view[LEVEL_INDEX["L3"]]

    def run(name):
        ((lm, _, warnings),) = LandmarkDetector(files[name], device="cpu", threads=1).detect([view.pixels])
        return lm, warnings

    alone, _ = run("single")
    assert len(alone["vertebrae"]) >= 4
    blind, warnings = run("blind")
    assert not blind["vertebrae"] and "no vertebral body found" in warnings
    for name, kept in (("blind_first", "coarse2"), ("blind_second", "coarse")):  # one blind: the other's look, exactly
        det = LandmarkDetector(files[name], device="cpu", threads=1)
        ((lm, _, _),) = det.detect([view.pixels])
        assert lm == alone, name
        assert det.last_coarse_stages == [kept]


def test_the_network_rank_counts_first_then_how_sure_each_network_is():
    from sagittal.landmarks.infer import _network_rank
    from sagittal.landmarks.postprocess import Body, Detections

    s1 = np.array([[120.0, 400.0], [80.0, 398.0]])

    def look(levels, conf):
        bodies = [Body(np.zeros((6, 2)) + [100.0, 360.0 - 40 * k], conf, np.array([100.0, 360.0 - 40 * k]), lv)
                  for k, lv in enumerate(levels)]
        return Detections(bodies, s1, 0.9, [])

    four, four_surer = look(["L5", "L4", "L3", "L2"], 0.6), look(["L5", "L4", "L3", "L2"], 0.8)
    five_unsure = look(["L5", "L4", "L3", "L2", "L1"], 0.3)
    assert _network_rank(four_surer) > _network_rank(four)  # as many levels: the surer look
    assert _network_rank(five_unsure) > _network_rank(four_surer)  # more levels first
    assert _network_rank(look([], 0.9))[-1] == 0.0
    # another look of the image (equalised, inverted, shrunk) beats a plain one by naming more
    # levels, never by its peaks (not comparable with a plain look's; a shrunk look of the 2-D
    # network outranked coarse2's plain look on a tight drr-a film and flipped its facing)
    assert _network_rank(four, as_given=True) > _network_rank(four_surer, as_given=False)
    assert _network_rank(five_unsure, as_given=False) > _network_rank(four_surer, as_given=True)


def test_the_combine_command_names_what_is_wrong(tmp_path, capsys):
    from sagittal.training.combine import main

    base = str(w.packaged())
    for argv, why in (([base, str(tmp_path / "a.pt"), "--take", "coarse2"], "expected STAGE=FILE:SOURCE_STAGE"),
                      ([base, str(tmp_path / "a.pt"), "--take", f"coarse2={base}:coarse", "--take",
                        f"coarse2={base}:coarse"], "coarse2 is already taken"),
                      ([base, str(tmp_path / "a.pt"), "--take", f"coarse2={tmp_path / 'none.pt'}:coarse"], "none.pt"),
                      ([base, str(tmp_path / "a.pt"), "--take", f"coarse2={base}:refine"], "coarse2 is a coarse network")):
        with pytest.raises(SystemExit):
            main(argv)
        assert why in capsys.readouterr().err
    assert not (tmp_path / "a.pt").exists()
    main([base, str(tmp_path / "b.pt"), "--take", f"coarse2={base}:coarse"])
    blob = torch.load(tmp_path / "b.pt", map_location="cpu", weights_only=True)
    assert blob["combined_from"]["takes"] == {"coarse2": "landmarks.pt:coarse"}


def _looked(levels, conf):
    from sagittal.landmarks.postprocess import Body, Detections

    s1 = np.array([[120.0, 400.0], [80.0, 398.0]])
    bodies = [Body(np.zeros((6, 2)) + [100.0, 360.0 - 40 * k], conf, np.array([100.0, 360.0 - 40 * k]), lv)
              for k, lv in enumerate(levels)]
    return Detections(bodies, s1, 0.9, [])


def test_another_look_kept_is_marked_and_loses_a_tie_to_the_other_networks_plain_look(monkeypatch):
    """``_coarse_looks`` says which image a kept look is of (``given`` False for another look), and
    ``coarse`` hands that to ``_network_rank``: ``coarse``'s shrunk look, surer but naming as many
    levels, loses to ``coarse2``'s plain one; naming more, it wins."""
    from sagittal.landmarks.infer import LandmarkDetector
    from sagittal.landmarks.preprocess import letterbox

    det = LandmarkDetector(None, device="cpu", threads=1)
    img = np.zeros((512, 256), np.float32)
    lb = letterbox(img)[1]
    five = ["L5", "L4", "L3", "L2", "L1"]
    calls = []

    def maps(normed, stage="coarse", zoom_out=None, windows=None):  # the plain look names one level; every other look five
        calls.append(zoom_out)
        return [_looked(five if zoom_out else ["L5"], 0.9) for _ in normed], [lb] * len(normed)

    monkeypatch.setattr(det, "_coarse_maps", maps)
    dets, _, _, given = det._coarse_looks([img], "coarse")
    assert calls[0] is None and given == [False] and len([b for b in dets[0].bodies if b.level]) == 5

    def looks(kept_by_coarse):
        def fake(normed, stage, other=True):
            if stage == "coarse":
                return [kept_by_coarse], [lb], [normed[0]], [False]  # another look of it was kept
            return [_looked(five, 0.5)], [lb], [normed[0]], [True]  # coarse2: the image as given
        return fake

    monkeypatch.setattr(det, "_coarse_looks", looks(_looked(five, 0.95)))
    det.coarse([img])
    assert det.last_coarse_stages == ["coarse2"]
    monkeypatch.setattr(det, "_coarse_looks", looks(_looked([*five, "T12"], 0.95)))
    det.coarse([img])
    assert det.last_coarse_stages == ["coarse"]
