"""``scripts/eval_planes.py``'s femoral-head figures: in the plane and in 3-D. A head found on a bone
off to the side that projects onto a true head is not off in the plane; it is off in 3-D."""

from __future__ import annotations

import numpy as np

from sagittal.phantom.volume import _HIP_HALF_MM
from tests.landmarks.test_plane_eval_angles import _case, _doc
from tests.training.fixtures import script


def test_a_head_found_off_to_the_side_is_off_in_3d_not_in_the_plane():
    spine, plane, vol, ev, _ = _case()
    doc = _doc(ev, spine, plane, vol)
    true_lps = [vol.sagittal_to_lps(c, s * _HIP_HALF_MM) for c, s in zip(spine.femoral_centers_mm, (1.0, -1.0), strict=True)]
    found = [true_lps[0] + 40.0 * plane.normal, true_lps[1] + np.array([0.0, 0.0, 0.5])]
    acc: dict = {}
    diagnose: list[str] = []
    ev._score_heads(spine, vol, plane, doc, acc, diagnose, found)
    figures = ev._head_figures(acc["head_err"], acc["head_err_3d"])
    assert figures["reported"] == 2 and figures["off"] == 0 and figures["centre_err_mm_max"] < 0.5
    assert figures["off_3d"] == 1
    assert abs(figures["centre_err_3d_mm_max"] - 40.0) < 1e-6 and abs(sorted(acc["head_err_3d"])[0] - 0.5) < 1e-6
    assert any("40.0 mm from the nearest true head in 3-D" in line for line in diagnose)
    empty = ev._head_figures([], [])
    assert empty["off_3d"] == 0 and empty["centre_err_3d_mm_median"] is None


def test_the_figures_count_the_studies_warned_of_a_curve():
    ev = _case()[3]
    acc = {"found": 0, "in_view": 0, "wrong": 0, "point_err": [], "height_err": [], "grades": [], "pi_err": [],
           "heads": [], "status": [], "seconds": [], "units": 0,
           "curve": [(0.4, False, True), (2.6, True, False), (1.2, False, True), (2.3, True, True)]}
    figures = ev._figures(acc, 4)
    assert figures["curve_warned"] == 2 and figures["lateral_deviation_mm_max"] == 2.6
    # on the straight spines alone (the third field): every warning there is false
    assert figures["straight_spines"] == 3 and figures["curve_warned_straight"] == 1
    assert figures["lateral_deviation_mm_straight_max"] == 2.3
    assert abs(figures["lateral_deviation_mm_straight_mean"] - 3.9 / 3) < 1e-4


def test_eval_planes_refuses_a_spacing_range_it_cannot_draw_from(capsys):
    """``--ct-pixel-mm`` / ``--ct-slice-mm`` are ranges the CT's spacings are drawn from: a zero, a negative
    or a reversed range is refused, naming the option, before any weights are loaded or a case rendered."""
    import pytest

    ev = script("eval_planes")
    for argv in (["--ct-pixel-mm", "3", "1"], ["--ct-pixel-mm", "0", "2"], ["--ct-slice-mm", "-1", "5"]):
        with pytest.raises(SystemExit):
            ev.main(["--n-mr", "0", "--n-ct", "1", "--weights", "/nonexistent.pt", *argv])
        assert f"{argv[0]} " in capsys.readouterr().err


def test_eval_planes_draws_the_ct_at_the_spacings_asked_for(tmp_path):
    """The same case (spine, field) at the coarse voxels asked for: the judged head check's series."""
    ev = script("eval_planes")
    spine, vols, _ = ev._case("CT", 6170, tmp_path / "a", ct_pixel_mm=(3.0, 3.0), ct_slice_mm=(5.0, 5.0))
    ct = vols[0]
    assert tuple(ct.pixel_spacing_mm) == (3.0, 3.0)
    assert np.allclose(np.abs(np.diff(np.asarray(ct.positions_lps)[:, 2])), 5.0)
    spine2, _, _ = ev._case("CT", 6170, tmp_path / "b")
    np.testing.assert_allclose(spine.points_mm, spine2.points_mm)  # the same draws: the same spine
