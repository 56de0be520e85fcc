"""CT and MR contrasts and geometry, checked against the tissue model they were drawn from."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from scipy import ndimage

from sagittal.levels import LEVEL_INDEX
from sagittal.phantom.anatomy import Fracture, build_spine, sample_spec
from sagittal.phantom.volume import (
    CORTEX,
    FLUID,
    GAS,
    MARROW,
    OEDEMA,
    lps_to_voxel,
    render_ct,
    render_mr,
    sagittal_maps,
    tissue_labels,
)


@pytest.fixture(scope="module")
def spine():
    base = sample_spec(np.random.default_rng(8), n_fractures=0)
    fx = (Fracture("L1", 3, 45.0, "wedge", oedema_pct=60.0, cleft="fluid"),
          Fracture("T12", 2, 30.0, "wedge", oedema_pct=None, cleft="gas"))
    return build_spine(replace(base, fractures=fx))


def _labels_for_slice(vol, spine, k):
    """Tissue labels on the grid of slice ``k`` of ``vol``, from its DICOM geometry alone."""
    o = np.asarray(vol.orientation)
    rows, cols = vol.stored.shape[1:]
    r = np.arange(rows)[:, None, None]
    c = np.arange(cols)[None, :, None]
    p = vol.positions_lps[k] + c * vol.pixel_spacing_mm[1] * o[:3] + r * vol.pixel_spacing_mm[0] * o[3:]
    d = p - vol.origin_lps
    maps = sagittal_maps(spine, (-200, 700), np.random.default_rng(0))
    return tissue_labels(maps, spine, -d[..., 1], d[..., 2], d[..., 0])


@pytest.fixture(scope="module")
def mr(spine):
    origin = np.array([0.0, 60.0, -800.0])
    return {seq: render_mr(spine, np.random.default_rng(5), seq, origin_lps=origin, n_slices=5) for seq in ("T1", "T2", "STIR")}


def test_mr_contrasts_follow_the_sequences(spine, mr):
    k = 2  # the midline slice
    lab = _labels_for_slice(mr["T1"], spine, k)
    assert (lab == OEDEMA).sum() > 50 and (lab == FLUID).sum() > 5 and (lab == GAS).sum() > 5

    def mean(seq, tissue):
        return float(mr[seq].stored[k][lab == tissue].mean())

    # oedema: dark on T1, bright on STIR and T2, against normal marrow
    assert mean("T1", OEDEMA) < 0.6 * mean("T1", MARROW)
    assert mean("STIR", OEDEMA) > 3 * mean("STIR", MARROW)
    assert mean("T2", OEDEMA) > 1.3 * mean("T2", MARROW)
    # fluid cleft bright on T2/STIR; gas cleft dark on every sequence
    assert mean("T2", FLUID) > mean("T2", MARROW)
    for seq in ("T1", "T2"):
        assert mean(seq, GAS) < 0.5 * mean(seq, MARROW)
    # on STIR marrow is dark too (fat suppressed): gas sits at the noise floor below it
    assert mean("STIR", GAS) < mean("STIR", MARROW) and mean("STIR", GAS) < 0.1 * mean("STIR", OEDEMA)


def test_ct_is_in_hounsfield_units_with_gas_as_air(spine):
    ct = render_ct(spine, np.random.default_rng(3), matrix=160, pixel_spacing_mm=2.0, slice_mm=2.0, noise_hu=5.0)
    hu = ct.stored.astype(np.float32) * ct.rescale[0] + ct.rescale[1]
    # the slice through the T12 gas cleft
    t12 = spine.points_mm[LEVEL_INDEX["T12"]]
    y_cleft = float(0.28 * t12[[2, 3], 1].mean() + 0.72 * t12[[0, 1], 1].mean())
    k = int(np.argmin(np.abs(ct.positions_lps[:, 2] - ct.origin_lps[2] - y_cleft)))
    lab = _labels_for_slice(ct, spine, k)
    assert (lab == GAS).sum() > 3
    # gas at air density: the cleft's interior pixels (all eight neighbours gas in the tissue model: the
    # label grid and the rendered one may round a band edge to different rows)
    interior = ndimage.binary_erosion(lab == GAS, np.ones((3, 3), bool))
    assert interior.sum() >= 3
    assert hu[k][interior].mean() < -500  # fat is about -100, marrow +60…+260
    assert hu[k][lab == CORTEX].mean() > 300
    # slices step along +Z by the slice spacing, not by SliceThickness alone
    steps = np.diff(ct.positions_lps[:, 2])
    np.testing.assert_allclose(steps, -2.0, atol=1e-9)


def test_lps_round_trip(spine, mr):
    vol = mr["STIR"]
    p = vol.sagittal_to_lps(spine.points_mm[LEVEL_INDEX["L3"]], lateral_mm=0.0)
    idx = lps_to_voxel(vol, p)
    np.testing.assert_allclose(idx[:, 0], 2.0, atol=1e-9)  # the midline slice
    assert np.all((idx[:, 1:] > 0) & (idx[:, 1:] < vol.stored.shape[1] - 1))


def test_unknown_sequence_is_refused(spine):
    with pytest.raises(ValueError, match="unknown MR sequence 'FLAIR'"):
        render_mr(spine, np.random.default_rng(0), "FLAIR")


@pytest.mark.parametrize("thickness_mm", [3.0, 2.5])
def test_a_thick_ct_slice_averages_its_slab(spine, thickness_mm):
    """``render_ct(thickness_mm=t)`` with slices t apart: each is the mean of its slab's three sections
    (``SLAB_SECTION_MM`` 1 mm at most; t/3 apart), the same spine and draws rendered as sections t/3 apart
    (slices 3k-1, 3k, 3k+1), and says how thick it is. At 2.5 mm the sagittal map's raster shifts by a
    fraction of its pixel, so a few more boundary pixels differ. (The first slice's slab reaches above the
    sections rendered: not compared.)"""
    kw = {"pixel_spacing_mm": 4.0, "matrix": 64, "noise_hu": 0.0, "top_level": "L1"}
    thin = render_ct(spine, np.random.default_rng(1), slice_mm=thickness_mm / 3, **kw)
    thick = render_ct(spine, np.random.default_rng(1), slice_mm=thickness_mm, thickness_mm=thickness_mm, **kw)
    assert thick.slice_thickness_mm == thickness_mm and thin.slice_thickness_mm == pytest.approx(thickness_mm / 3)
    np.testing.assert_allclose(thick.positions_lps[:, 2], thin.positions_lps[::3, 2][:len(thick.positions_lps)])
    a, b = thin.stored.astype(float), thick.stored.astype(float)
    ks = range(1, min(len(b), (len(a) - 2) // 3 + 1))
    off_mean = np.mean([(np.abs((a[3 * k - 1] + a[3 * k] + a[3 * k + 1]) / 3 - b[k]) > 2).mean() for k in ks])
    off_middle = np.mean([(np.abs(a[3 * k] - b[k]) > 2).mean() for k in ks])
    assert off_mean < 0.02 and off_middle > 3 * off_mean  # the slab's mean, not its middle section
    for bad in (-1.0, 0.0, 25.0, float("nan")):
        with pytest.raises(ValueError, match="thickness"):
            render_ct(spine, np.random.default_rng(1), slice_mm=3.0, thickness_mm=bad, **kw)


def test_a_tilted_ct_slice_shows_the_anatomy_where_its_dicom_geometry_puts_it(spine):
    """``render_ct(gantry_tilt_deg=20)``: the slices' ImageOrientationPatient tilts about left-right and their
    positions advance head-foot; the bone drawn in a slice lies where the tissue model puts the points that
    slice's geometry names (and not where an untilted slice at the same position would be)."""
    ct = render_ct(spine, np.random.default_rng(3), matrix=96, pixel_spacing_mm=3.0, slice_mm=4.0, noise_hu=0.0,
                   top_level="L1", gantry_tilt_deg=20.0)
    t = np.radians(20.0)
    np.testing.assert_allclose(ct.orientation, (1.0, 0.0, 0.0, 0.0, np.cos(t), -np.sin(t)))
    np.testing.assert_allclose(np.diff(ct.positions_lps, axis=0), [[0.0, 0.0, -4.0]] * (len(ct.positions_lps) - 1))
    hu = ct.stored.astype(np.float32) * ct.rescale[0] + ct.rescale[1]
    flat = replace(ct, orientation=(1.0, 0.0, 0.0, 0.0, 1.0, 0.0))
    agree, agree_flat = [], []
    for k in range(5, len(hu) - 5, 6):
        for vol, out in ((ct, agree), (flat, agree_flat)):
            lab = _labels_for_slice(vol, spine, k)
            cortex = ndimage.binary_erosion(lab == CORTEX, np.ones((3, 3), bool))
            if cortex.sum() >= 5:
                out.append(float(np.mean(hu[k][cortex] > 300)))
    assert len(agree) >= 3 and np.mean(agree) > 0.9  # the cortex where the tilted geometry says
    assert np.mean(agree_flat) < 0.6  # read as untilted, the slices' bone is elsewhere
    with pytest.raises(ValueError, match="tilt"):
        render_ct(spine, np.random.default_rng(3), matrix=32, slice_mm=4.0, gantry_tilt_deg=45.0)


def test_an_aorta_runs_left_in_front_of_the_spine_and_divides_at_l4(spine):
    """``render_ct(aorta=Aorta(...))``: the same spine, field and noise, and only the vessel's voxels changed; in a
    slice at L1 the contrast-filled lumen lies in front of the vertebral body and to the patient's left (+X in
    LPS), where the tissue model puts it; in a slice below the middle of L4 there are two lumens, one to either
    side. A calcified aorta brightens only a thin wall about an unenhanced lumen."""
    from sagittal.phantom.volume import Aorta

    kw = {"pixel_spacing_mm": 2.0, "matrix": 160, "slice_mm": 4.0, "noise_hu": 0.0, "top_level": "T12"}
    plain = render_ct(spine, np.random.default_rng(4), **kw)
    vessel = Aorta(lumen_hu=350.0, radius_mm=11.0, lateral_mm=18.0, gap_mm=3.0)
    ct = render_ct(spine, np.random.default_rng(4), aorta=vessel, **kw)
    assert ct.stored.shape == plain.stored.shape and ct.style["aorta"]["lumen_hu"] == 350.0
    changed = ct.stored != plain.stored
    assert 0 < changed.mean() < 0.02
    hu = ct.stored.astype(np.float32) + ct.rescale[1]
    z = ct.positions_lps[:, 2] - ct.origin_lps[2]  # sagittal-frame height of each slice
    for level, lumens in (("L1", 1), ("L5", 2)):
        k = int(np.argmin(np.abs(z - spine.points_mm[LEVEL_INDEX[level], :4, 1].mean())))
        blobs, n = ndimage.label(changed[k])
        assert n == lumens, (level, n)
        lab = _labels_for_slice(ct, spine, k)
        body = np.argwhere(lab == MARROW).mean(axis=0)  # (row, col): rows run posterior, columns to the left
        for b in range(1, n + 1):
            rc = np.argwhere(blobs == b)
            assert abs(float(hu[k][blobs == b].max()) - 350.0) < 15  # the lumen's HU (its rim blurred)
            assert rc[:, 0].mean() < body[0] - 5  # in front of the body
            side = rc[:, 1].mean() - body[1]
            assert side > 3 if lumens == 1 else abs(side) > 3  # the aorta to the left; the iliacs to either side
        if lumens == 2:
            sides = [np.argwhere(blobs == b)[:, 1].mean() - body[1] for b in (1, 2)]
            assert min(sides) < 0 < max(sides)
    calcified = render_ct(spine, np.random.default_rng(4), aorta=Aorta(lumen_hu=40.0, wall_hu=800.0), **kw)
    wall = (calcified.stored.astype(np.float32) + calcified.rescale[1]) > 300
    bone = (plain.stored.astype(np.float32) + plain.rescale[1]) > 300
    assert (wall & ~bone).sum() > 20 and (wall & ~bone).sum() < 0.5 * changed.sum()  # the plaques, not the lumen


@pytest.mark.parametrize("gap_mm", [0.0, 1.0])
def test_the_aortas_wall_stays_out_of_the_spine_and_the_vessel_starts_below_the_arch(spine, gap_mm):
    """``aorta_hu`` on a sagittal-frame grid about the spine and pelvis (the tissue model's own points, down to
    below the iliac arteries' end, both sides): a calcified wall drawn ``gap_mm`` in front of the spine never
    lies on bone, a disc or the canal (its back is the wall's, not the lumen's), at lateral offsets that cut the
    midline or do not; and there is no vessel
    above the middle of T4 (the arch), while there is one below it."""
    from sagittal.phantom.volume import CORD, CSF, DISC, MODIC1, MODIC2, Aorta, aorta_hu, pelvis_of

    maps = sagittal_maps(spine, (-200, 700), np.random.default_rng(0))
    fork = float(spine.points_mm[LEVEL_INDEX["L4"], :4, 1].mean())
    y = np.arange(fork - 95.0, float(spine.points_mm[0, :, 1].max()), 1.0)  # to below the iliac arteries' end
    x = np.arange(float(spine.points_mm[..., 0].min()) - 10, float(spine.points_mm[..., 0].max()) + 40, 0.75)
    z = np.arange(-60.0, 61.0, 2.0)  # both iliac arteries
    X, Y, Z = x[None, :, None], y[:, None, None], z[None, None, :]
    lab = tissue_labels(maps, spine, X, Y, Z, pelvis=pelvis_of(spine))
    spine_tissue = np.isin(lab, (MARROW, CORTEX, DISC, OEDEMA, CSF, CORD, MODIC1, MODIC2))  # bone, disc, canal
    for lateral_mm in (4.0, 10.0, 25.0):
        lumen, wall = aorta_hu(Aorta(lumen_hu=40.0, wall_hu=800.0, lateral_mm=lateral_mm, gap_mm=gap_mm), maps, spine,
                               X, Y, Z)
        assert wall.sum() > 100 and lumen.sum() > 100
        assert not (wall & spine_tissue).any() and not (lumen & spine_tissue).any()
        arch = float(spine.points_mm[LEVEL_INDEX["T4"], :4, 1].mean())
        assert not (lumen | wall)[y > arch].any() and lumen[(y < arch) & (y > arch - 50)].any()
