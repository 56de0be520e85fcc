"""``scripts/eval_planes.py``'s splits and ranges: bins in the order of their millimetres, and a slab-thickness
range refused where it would ask the phantom for slices over 20 mm thick."""

from __future__ import annotations

from types import SimpleNamespace

from tests.training.fixtures import script


def test_bins_come_in_order_of_their_millimetres():
    ev = script("eval_planes")
    labels = [ev._sampling_bin(mm, (2.0, 3.0, 4.0)) for mm in (3.5, 1.9, 2.0, 5.0, 2.5)]
    assert labels == ["3-4", "<2", "2-3", ">=4", "2-3"]
    assert sorted(set(labels), key=ev._bin_order) == ["<2", "2-3", "3-4", ">=4"]


def test_thickness_ratio_range_checks():
    ev = script("eval_planes")

    def err(ratio, slice_mm=(1.5, 5.0)):
        return ev._range_error(SimpleNamespace(ct_pixel_mm=(1.0, 2.0), ct_slice_mm=slice_mm, ct_thickness_ratio=ratio))

    assert err(None) is None and err([1.3, 2.5]) is None and err([1.0, 4.0]) is None
    assert "1 <= LO <= HI <= 4" in err([0.5, 2.0]) and "1 <= LO <= HI <= 4" in err([2.0, 1.5])
    assert "at most 20 mm" in err([3.5, 4.0], (3.0, 6.0))
