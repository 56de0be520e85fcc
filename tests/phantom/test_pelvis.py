"""The CT/MR phantom's bony pelvis (``phantom.volume.pelvis_of``): where its bones lie around the
femoral heads, that it keeps the joint space, the heads and the spinal canal free, and that both
scanners draw it (and draw it only where asked)."""

from __future__ import annotations

import numpy as np
import pytest

from sagittal.levels import LEVEL_INDEX
from sagittal.phantom import build_spine, sample_spec
from sagittal.phantom.volume import (
    _HIP_HALF_MM,
    CORD,
    CORTEX,
    CSF,
    FAT,
    MARROW,
    MUSCLE,
    SOFT,
    femur_depth,
    lps_to_voxel,
    pelvis_labels,
    pelvis_of,
    render_ct,
    render_mr,
    sagittal_maps,
    tissue_labels,
)

BONE = (CORTEX, MARROW)
SEEDS = (3, 17, 40)


def _case(seed):
    spine = build_spine(sample_spec(np.random.default_rng(seed), n_fractures=0))
    maps = sagittal_maps(spine, (-250, 350), np.random.default_rng(0))
    return spine, maps, pelvis_of(spine)


def _labels(spine, maps, pv, pts):
    """Labels at sagittal-frame points ``(N, 3)`` (x anterior, y superior, z lateral)."""
    p = np.asarray(pts, np.float32)
    return tissue_labels(maps, spine, p[:, 0], p[:, 1], p[:, 2], None, pv)


def _head_xyz(spine, k):
    c = spine.femoral_centers_mm[k]
    return np.array([c[0], c[1], (1.0 if k == 0 else -1.0) * _HIP_HALF_MM])


def _to_sagittal(pv, v):
    """A direction ``(a, b, w)`` of the pelvis frame on side ``k`` -> sagittal-frame ``(x, y, z)``."""
    a, b, w = v
    return np.array([a * pv.ua[0] + b * pv.ub[0], a * pv.ua[1] + b * pv.ub[1], w])


@pytest.mark.parametrize("seed", SEEDS)
def test_acetabulum_cups_each_head_across_a_joint_space(seed):
    spine, maps, pv = _case(seed)
    rng = np.random.default_rng(seed)
    for k, side in enumerate((1.0, -1.0)):
        c, r = _head_xyz(spine, k), float(spine.femoral_radii_mm[k])
        js, wall = float(pv.joint_mm[k]), float(pv.cup_mm[k])
        assert 2.0 <= js <= 4.0
        # directions into the cup (away from where it opens), mirrored onto the head's own side
        dirs = rng.normal(size=(300, 3))
        dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
        dirs = dirs[dirs @ pv.cup_normal[k] < -0.3]
        sag = np.array([_to_sagittal(pv, d) for d in dirs]) * np.array([1.0, 1.0, side])
        in_wall = _labels(spine, maps, pv, c + (r + js + 0.5 * wall) * sag)
        in_joint = _labels(spine, maps, pv, c + (r + 0.5 * js) * sag)
        in_head = _labels(spine, maps, pv, c + (r - 3.0) * sag)
        assert np.isin(in_wall, BONE).mean() >= 0.95, f"side {k}: the cup is not around the head"
        assert not np.isin(in_joint, BONE).any(), f"side {k}: bone in the joint space"
        assert (in_head == MARROW).all()
        # the cup opens laterally, downwards and forwards: no pelvic bone just outside the head there
        # (the femoral neck leaves the head that way)
        open_dir = _to_sagittal(pv, pv.cup_normal[k]) * np.array([1.0, 1.0, side])
        q = (c + (r + js + 0.5 * wall) * open_dir).astype(np.float32)
        depth, _ = pelvis_labels(pv, q[None, 0], q[None, 1], q[None, 2])
        assert depth[0] <= 0


@pytest.mark.parametrize("seed", SEEDS)
def test_pelvis_changes_soft_tissue_only_outside_the_heads_and_canal(seed):
    spine, maps, pv = _case(seed)
    g = np.arange(-150.0, 150.0, 2.0, dtype=np.float32)
    ys = np.arange(pv.box[2], min(pv.box[3], 300.0), 3.0, dtype=np.float32)
    z = g[None, :]
    x = g[:, None]
    changed_from, heads_hit = [], 0
    for y in ys:
        before = tissue_labels(maps, spine, x, np.float32(y), z)
        after = tissue_labels(maps, spine, x, np.float32(y), z, None, pv)
        diff = before != after
        changed_from.append(np.unique(before[diff]))
        xx, zz = np.broadcast_arrays(x, z)
        # bone the pelvis changes is a femoral head's only (its neck leaving it), never the spine's or the
        # sacrum's (review: MARROW and CORTEX among the labels changed could have hidden that)
        to_head = np.min([np.sqrt((xx - c[0]) ** 2 + (y - c[1]) ** 2 + (zz - c[2]) ** 2) - float(spine.femoral_radii_mm[k])
                          for k, c in ((k, _head_xyz(spine, k)) for k in range(2))], axis=0)
        assert (to_head[diff & np.isin(before, BONE)] <= 0.5).all()
        for k in range(2):
            c, r = _head_xyz(spine, k), float(spine.femoral_radii_mm[k])
            d = np.sqrt((xx - c[0]) ** 2 + (y - c[1]) ** 2 + (zz - c[2]) ** 2)
            # nothing but the femur's neck changes the head; nothing enters the joint space
            heads_hit += int((diff & (d < r - 2.0) & (np.abs(zz) < abs(c[2]))).sum())
            band = (d > r + 0.3) & (d < r + pv.joint_mm[k] - 0.3) & np.isin(after, BONE)
            if band.any():  # bone there is the femur's neck leaving the head, never the pelvis'
                assert (femur_depth(pv, xx[band], np.full(int(band.sum()), y, np.float32), zz[band]) > 0).all()
    was = np.unique(np.concatenate(changed_from))
    assert set(was.tolist()) <= {SOFT, FAT, MUSCLE, MARROW, CORTEX}  # never CSF, cord, disc, lung, air
    assert heads_hit == 0
    # the spinal canal (and the sacral canal) keeps its fluid: the canal's labels are untouched
    for y in ys:
        before = tissue_labels(maps, spine, x, np.float32(y), z)
        after = tissue_labels(maps, spine, x, np.float32(y), z, None, pv)
        canal = np.isin(before, (CSF, CORD))
        assert (after[canal] == before[canal]).all()


@pytest.mark.parametrize("seed", SEEDS)
def test_ilium_ischium_and_pubis_lie_where_they_should(seed):
    spine, maps, pv = _case(seed)
    s1 = spine.s1_mm.mean(axis=0)
    l5 = spine.points_mm[LEVEL_INDEX["L5"], :4].mean(axis=0)
    zs = np.arange(-170.0, 170.0, 1.0, dtype=np.float32)
    xs = np.arange(-200.0, 200.0, 1.0, dtype=np.float32)

    def bone_at(y, lateral):
        lab = tissue_labels(maps, spine, xs[:, None], np.float32(y), zs[None, :], None, pv)
        return np.isin(lab, BONE) & lateral(zs)[None, :]

    for side in (1.0, -1.0):
        # iliac wings lateral to the sacrum (its half-width is at most 48 mm) at L5 and at S1
        for y in (float(l5[1]), float(s1[1]) - 10.0):
            assert bone_at(y, lambda z, s=side: s * z > 55.0).any(), f"no ilium beside the spine at y={y:.0f}"
        for k in range(2):
            c, r = _head_xyz(spine, k), float(spine.femoral_radii_mm[k])
            if np.sign(c[2]) != side:
                continue
            # ischium below and behind the head, pubis below and in front of it, reaching the midline
            below = tissue_labels(maps, spine, xs[:, None], np.float32(c[1] - r - 15.0), zs[None, :], None, pv)
            same = (side * zs > 10.0)[None, :]
            behind = (xs < c[0] - 0.2 * r)[:, None]
            front = (xs > c[0] + 0.8 * r)[:, None]
            assert (np.isin(below, BONE) & same & behind).any(), "no ischium"
            assert (np.isin(below, BONE) & same & front).any(), "no pubis in front"
    sym_y = float(np.mean(pv.pubis[:, 1, 1] * pv.ub[1] + pv.pubis[:, 1, 0] * pv.ua[1])) - 8.0
    mid = tissue_labels(maps, spine, xs[:, None], np.float32(sym_y), zs[None, :], None, pv)
    assert (np.isin(mid, BONE) & (np.abs(zs) < 12.0)[None, :]).any(), "the pubic bodies do not reach the symphysis"


def test_pelvis_is_the_spines_own_and_draws_nothing_from_the_scanners_stream():
    spine, _, pv = _case(5)
    again = pelvis_of(spine)
    assert np.array_equal(pv.heads, again.heads) and pv.wing == again.wing and np.array_equal(pv.joint_mm, again.joint_mm)
    opts = {"matrix": 96, "pixel_spacing_mm": 4.0, "slice_mm": 6.0, "noise_hu": 5.0, "top_level": "L2"}
    with_p = render_ct(spine, np.random.default_rng(2), **opts)
    without = render_ct(spine, np.random.default_rng(2), pelvis=False, **opts)
    assert with_p.style["pelvis"] and not without.style["pelvis"]
    # above the iliac crests the two are the same volume, noise and all
    y = with_p.positions_lps[:, 2] - with_p.origin_lps[2]
    above = y > pv.box[3] + 5
    assert above.any() and np.array_equal(with_p.stored[above], without.stored[above])
    assert not np.array_equal(with_p.stored, without.stored)


@pytest.mark.parametrize("modality", ["CT", "MR"])
def test_both_scanners_draw_the_cup_as_bone(modality):
    spine, _, pv = _case(11)
    k = 0
    c, r = _head_xyz(spine, k), float(spine.femoral_radii_mm[k])
    # a point in the cup's wall above and medial to the head, and one in the joint space
    roof = _to_sagittal(pv, -pv.cup_normal[k])
    wall = c + (r + pv.joint_mm[k] + 0.5 * pv.cup_mm[k]) * roof
    vols = {}
    for pelvis in (True, False):
        if modality == "CT":
            vols[pelvis] = render_ct(spine, np.random.default_rng(2), matrix=200, pixel_spacing_mm=2.0, slice_mm=2.0,
                                     noise_hu=3.0, top_level="L3", pelvis=pelvis)
        else:
            vols[pelvis] = render_mr(spine, np.random.default_rng(2), "T1", matrix=200, pixel_spacing_mm=2.0, slice_mm=2.0,
                                     n_slices=101, top_level="L3", pelvis=pelvis)

    def value(vol, p):
        lps = vol.sagittal_to_lps(p[None, :2], lateral_mm=float(p[2]))[0]
        s, i, j = np.round(lps_to_voxel(vol, lps)).astype(int)
        return float(vol.stored[s, i, j]) * vol.rescale[0] + vol.rescale[1]

    # and the middle of the ilium's body above the cup (a column of marrow about 10 mm in radius)
    mid = 0.5 * (pv.ilium[k, 0] + pv.ilium[k, 1])
    column = np.array([*pv.to_sagittal(float(mid[0]), float(mid[1])), float(mid[2])])
    head = value(vols[True], c)
    if modality == "CT":
        assert value(vols[True], wall) > 150 and value(vols[False], wall) < 100  # bone against muscle (HU)
        assert value(vols[True], column) > 150 and value(vols[False], column) < 100
    else:  # marrow-bright on T1 (the cup's thin wall is its cortex' partial volume)
        assert value(vols[True], column) > 0.8 * head and value(vols[False], column) < 0.7 * head
