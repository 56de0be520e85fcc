"""The femoral heads' 3-D search made cheaper (the grid's voxel indices built from its steps, the
closing, filling and distance transform on the bone's bounding box, the field's edge measured on
the bone only) finds what the straightforward search found: the reference below is that search as
it was, on the whole grid."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from sagittal.batch import volume as kind
from sagittal.io.series import scan_export
from sagittal.io.volume import VolumeGeometry, lps_to_index
from sagittal.landmarks import volume as lv
from sagittal.phantom import build_spine, sample_spec
from sagittal.phantom.dicom import StudyInfo
from sagittal.phantom.generate import write_volume
from sagittal.phantom.volume import render_ct


def _reference_deepest_bone(volume: np.ndarray, geom: VolumeGeometry, origin: np.ndarray, axes: tuple[np.ndarray, ...],
                            ranges: tuple[np.ndarray, ...], grid_mm: float,
                            bone_of: Callable[[np.ndarray], np.ndarray] = lv.ct_bone) -> tuple[np.ndarray, float] | None:
    from scipy import ndimage

    u, v, w = ranges
    pts = origin + (u[:, None, None, None] * axes[0] + v[None, :, None, None] * axes[1] + w[None, None, :, None] * axes[2])
    idx = lps_to_index(geom, pts)
    vol = volume if volume.dtype in (np.float32, np.int16, np.uint16) else np.asarray(volume, np.float32)
    values = ndimage.map_coordinates(vol, idx.reshape(-1, 3).T, output=np.float32, order=1, mode="constant",
                                     cval=float(np.min(volume)) if bone_of is not lv.ct_bone else -1000.0,
                                     prefilter=False).reshape(idx.shape[:-1])
    bone = ndimage.binary_fill_holes(ndimage.binary_closing(bone_of(values), iterations=1, border_value=0))
    if not bone.any():
        return None
    depth = ndimage.distance_transform_edt(np.pad(bone, 1), sampling=grid_mm)[1:-1, 1:-1, 1:-1]
    depth[lv._field_depth_mm(volume.shape, geom, idx) < depth + grid_mm] = 0
    r = float(depth.max())
    if r <= 0:
        return None
    top = depth >= r - 0.5 * grid_mm
    where = np.argwhere(top).astype(float)
    wts = depth[top]
    c = (where * wts[:, None]).sum(0) / wts.sum()
    at = [np.interp(c[a], np.arange(len(rng)), rng) for a, rng in enumerate(ranges)]
    return origin + at[0] * axes[0] + at[1] * axes[1] + at[2] * axes[2], r


@pytest.mark.parametrize(("seed", "render"), [(31, {"matrix": 160}), (7, {"matrix": 64, "lateral_centre_mm": 40.0}),
                                              (12, {"matrix": 180, "pixel_spacing_mm": 1.8})])
def test_cheaper_head_search_finds_the_same_heads(tmp_path, monkeypatch, seed, render):
    spine = build_spine(sample_spec(np.random.default_rng(seed), n_fractures=0))
    opts = {"pixel_spacing_mm": 2.5, "slice_mm": 4.0, "noise_hu": 8.0, "top_level": "T11", **render}
    ct = render_ct(spine, np.random.default_rng(4), **opts)
    write_volume(ct, spine, tmp_path, "ct", StudyInfo.make("heads", "PHHEAD"), "heads", frame_key="heads")
    (unit,), _ = kind.plan(scan_export([tmp_path], decode_pixels=False).series)
    prep = kind.prepare(unit)
    args = (prep.extra["volume"], prep.extra["geometry"], prep.extra["plane"], ct.sagittal_to_lps(spine.s1_mm.mean(axis=0)))
    now = lv.ct_femoral_heads(*args)
    monkeypatch.setattr(lv, "_deepest_bone", _reference_deepest_bone)
    before = lv.ct_femoral_heads(*args)
    assert len(now) == len(before) >= 1
    for a, b in zip(now, before, strict=True):
        assert np.linalg.norm(a.centre_lps - b.centre_lps) <= 0.5 and abs(a.radius_mm - b.radius_mm) <= 0.5
        assert np.allclose(a.centre_lps, b.centre_lps, atol=1e-6) and a.radius_mm == pytest.approx(b.radius_mm, abs=1e-9)
