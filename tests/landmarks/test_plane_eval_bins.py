"""``scripts/eval_planes.py``'s splits and ranges: bins in the order of their millimetres, and a slab-thickness
range refused where it would ask the phantom for slices over 20 mm thick."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import numpy as np
import pytest

from sagittal.levels import LEVELS
from tests.training.fixtures import script


def test_bins_come_in_order_of_their_millimetres():
    ev = script("eval_planes")
    labels = [ev._sampling_bin(mm, (2.0, 3.0, 4.0)) for mm in (3.5, 1.9, 2.0, 5.0, 2.5)]
    assert labels == ["3-4", "<2", "2-3", ">=4", "2-3"]
    assert sorted(set(labels), key=ev._bin_order) == ["<2", "2-3", "3-4", ">=4"]


def test_thickness_ratio_range_checks():
    ev = script("eval_planes")

    def err(ratio, slice_mm=(1.5, 5.0), tilt=None, drop=0):
        return ev._range_error(SimpleNamespace(ct_pixel_mm=(1.0, 2.0), ct_slice_mm=slice_mm, ct_thickness_ratio=ratio,
                                               ct_tilt_deg=tilt, ct_drop_files=drop))

    assert err(None) is None and err([1.3, 2.5]) is None and err([1.0, 4.0]) is None
    assert "1 <= LO <= HI <= 4" in err([0.5, 2.0]) and "1 <= LO <= HI <= 4" in err([2.0, 1.5])
    assert "at most 20 mm" in err([3.5, 4.0], (3.0, 6.0))
    assert err(None, tilt=[10.0, 25.0]) is None
    assert "0 <= LO <= HI <= 30" in err(None, tilt=[10.0, 40.0]) and "0 <= LO <= HI <= 30" in err(None, tilt=[20.0, 10.0])
    assert "point sample only" in err([1.3, 2.5], tilt=[10.0, 25.0])
    assert err(None, drop=3) is None and "expected 0-8 files" in err(None, drop=9) and "0-8" in err(None, drop=-1)
    assert "not along a tilted slice's normal" in err(None, tilt=[10.0, 25.0], drop=3)


@pytest.mark.slow
def test_the_thickness_and_tilt_options_reach_the_phantom_ct(tmp_path):
    """``_case``'s ``ct_thickness`` and ``ct_tilt``: the CT written with slabs that many times its spacing thick
    (SliceThickness), or tilted 10-25 deg either way and then without the console's sagittal reformat that the
    untilted case writes; the same spine and spacing as without them (their own streams)."""
    ev = script("eval_planes")
    for seed in range(6000, 6030):  # the first case that writes a sagittal reformat when untilted
        plain_spine, (plain,) = _case_ct(ev, tmp_path / f"plain{seed}", seed)
        if _reformats(tmp_path / f"plain{seed}"):
            break
    else:
        raise AssertionError("no case with a sagittal reformat in 30 seeds")
    thick_spine, (thick,) = _case_ct(ev, tmp_path / "thick", seed, ct_thickness=(1.5, 1.5))
    tilt_spine, (tilted,) = _case_ct(ev, tmp_path / "tilt", seed, ct_tilt=(10.0, 25.0))
    for other in (thick_spine, tilt_spine):
        np.testing.assert_array_equal(other.points_mm, plain_spine.points_mm)
    step = float(np.linalg.norm(plain.positions_lps[1] - plain.positions_lps[0]))
    assert plain.slice_thickness_mm == pytest.approx(step) and thick.slice_thickness_mm == pytest.approx(1.5 * step)
    assert 10.0 <= abs(tilted.style["gantry_tilt_deg"]) <= 25.0 and "gantry_tilt_deg" not in plain.style
    assert not _reformats(tmp_path / "tilt") and _reformats(tmp_path / "thick")


def _case_ct(ev, root, seed, **kw):
    spine, vols, gap = ev._case("CT", seed, root, fracture_rate=0.0, ct_pixel_mm=(3.0, 3.0), **kw)
    assert gap is None
    return spine, vols


@pytest.mark.slow
def test_the_drop_option_deletes_consecutive_slices_between_the_bodies(tmp_path):
    """``_case``'s ``ct_drop``: K consecutive axial files deleted, the gap's returned z range bracketing them
    between the slices kept, within the bodies in view; the same spine as without; the levels at the gap
    (``_gap_levels``) are those with a true point within half a step of it, and ``_gap_figures`` counts them."""
    import pydicom

    ev = script("eval_planes")
    spine, (ct,), none = ev._case("CT", 6001, tmp_path / "full", fracture_rate=0.0, ct_pixel_mm=(3.0, 3.0))
    spine2, _, gap = ev._case("CT", 6001, tmp_path / "gap", fracture_rate=0.0, ct_pixel_mm=(3.0, 3.0), ct_drop=3)
    np.testing.assert_array_equal(spine2.points_mm, spine.points_mm)
    z = {d: sorted(float(pydicom.dcmread(f, stop_before_pixels=True).ImagePositionPatient[2])
                   for f in (tmp_path / d).rglob("*.dcm")) for d in ("full", "gap")}
    assert none is None and len(z["full"]) - len(z["gap"]) == 3
    lost = sorted(set(np.round(z["full"], 3)) - set(np.round(z["gap"], 3)))
    step = z["full"][1] - z["full"][0]
    assert gap[0] < lost[0] < lost[-1] < gap[1] and gap[1] - gap[0] == pytest.approx(4 * step, abs=0.01)
    centres = ct.sagittal_to_lps(spine.points_mm[:, :4].mean(axis=1))[:, 2]
    assert centres.min() - step < lost[1] < centres.max() + step
    near = ev._gap_levels(spine, ct, gap, step)
    pz = ct.sagittal_to_lps(spine.points_mm.reshape(-1, 2)).reshape(len(LEVELS), 6, 3)[..., 2]
    for i, lv in enumerate(LEVELS):
        inside = bool(((pz[i] > gap[0] - step / 2) & (pz[i] < gap[1] + step / 2)).any())
        assert (lv in near) == inside
    assert near and ev._gap_levels(spine, ct, None, step) == set()
    # ... and they are the levels the runtime lists (batch.volume.level_axis_sampling_mm) from the true points
    # (review R17d: the lines above restate the formula)
    from sagittal.batch import volume as kind
    from sagittal.io.series import scan_export
    from tests.landmarks.test_volume import _true_detection

    (unit,), _ = kind.plan(scan_export([tmp_path / "gap"], decode_pixels=False).series)
    prep = kind.prepare(unit)
    plane = prep.extra["plane"]
    verts = _true_detection(ct, spine, plane)[0]["vertebrae"]
    runtime = kind.level_axis_sampling_mm(prep.extra["geometry"], plane,
                                          {lv: np.array(list(p.values()), float) for lv, p in verts.items()})
    assert set(runtime) == near & set(verts) and runtime
    # the document of a gapped CT carries that map, and the eval measures it again with every point (the
    # all-points angles): that needs the image's sampling too (it raised from 3e46f1b to ce17162)
    doc = kind.finish(prep, _true_detection(ct, spine, plane))
    assert doc["landmarks"]["axis_sampling_mm"] and ev._all_points(doc)["vertebrae"]
    fig = ev._gap_figures([(True, 2, -1), (True, 0, 0), (False, 1, 1), (False, 0, 1), (False, 3, 2)])
    assert fig["at_gap"] == {"reported": 2, "graded": 1, "fractured_graded": 0, "fractured_exact": 0,
                             "normals_graded": 1, "normals_graded_0": 1}
    assert fig["elsewhere"] == {"reported": 3, "graded": 3, "fractured_graded": 2, "fractured_exact": 1,
                                "normals_graded": 1, "normals_graded_0": 0}


def _reformats(root) -> bool:
    return any(p.is_dir() and p.name == "ct_sag" for p in root.rglob("*"))


@pytest.mark.slow
def test_the_aorta_option_draws_a_vessel_and_nothing_else_changes(tmp_path):
    """``_case``'s ``ct_aorta``: the CT drawn with the aorta of ``_aorta`` (its own stream: the same spine, field
    and noise), each value inside ``AORTA_LOOKS``' range and ``_aorta``'s; only a few per cent of voxels differ."""
    ev = script("eval_planes")
    spine, (plain,) = _case_ct(ev, tmp_path / "plain", 6002)
    for look in ("contrast", "calcified"):
        other, (ct,) = _case_ct(ev, tmp_path / look, 6002, ct_aorta=look)
        np.testing.assert_array_equal(other.points_mm, spine.points_mm)
        assert ct.stored.shape == plain.stored.shape and ct.style["noise_hu"] == plain.style["noise_hu"]
        assert 0 < (ct.stored != plain.stored).mean() < 0.05
        drawn = ct.style["aorta"]
        assert drawn == dataclasses.asdict(ev._aorta(look, 6002)) and 9 <= drawn["radius_mm"] <= 13
        for key, (lo, hi) in ev.AORTA_LOOKS[look].items():
            assert lo <= drawn[key] <= hi
        assert (drawn["wall_hu"] is None) == (look == "contrast")
    assert "aorta" not in plain.style
