"""The cone-beam DRR renderer: truth consistent with the image, geometry, fields, determinism."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from sagittal.cli import main
from sagittal.io import load_radiographs, scan_export
from sagittal.levels import LEVEL_INDEX, LEVELS
from sagittal.phantom import build_spine, sample_spec
from sagittal.phantom.drr import FAMILIES, render_drr, sample_drr_spec
from sagittal.phantom.drr_anatomy import Builder
from sagittal.phantom.drr_project import Accumulator, ConeBeam, Part, project_part
from sagittal.phantom.truth import radiograph_truth


@pytest.fixture(scope="module")
def spine():
    return build_spine(sample_spec(np.random.default_rng(11), n_fractures=0))


def _bone_bright(rg) -> np.ndarray:
    img = rg.pixels.astype(np.float32)
    return (2 ** rg.bits_stored - 1 - img) if rg.photometric == "MONOCHROME1" else img


def _shrunk(poly: np.ndarray, f: float) -> np.ndarray:
    c = poly.mean(axis=0)
    return c + f * (poly - c)


def _mean_in(img: np.ndarray, poly_px: np.ndarray) -> float:
    m = np.zeros(img.shape, np.uint8)
    cv2.fillPoly(m, [np.round(poly_px).astype(np.int32).reshape(-1, 1, 2)], 1)
    return float(img[m > 0].mean()) if m.any() else float("nan")


def _body_disc_contrast(spine, rg, img: np.ndarray, shift_mm: float = 0.0) -> np.ndarray:
    """Per pair of neighbouring in-view vertebrae: mean of the upper body minus mean of the disc
    below it, both regions taken from the truth points (optionally shifted cranially)."""
    out = []
    off = np.array([0.0, shift_mm])
    for i in range(len(LEVELS) - 1):
        if not (rg.in_view[i] and rg.in_view[i + 1]):
            continue
        up, lo = spine.points_mm[i] + off, spine.points_mm[i + 1] + off
        body = rg.to_px(_shrunk(up[[0, 1, 2, 3]], 0.6))
        disc = rg.to_px(_shrunk(np.array([up[3], up[2], lo[1], lo[0]]), 0.6))
        out.append(_mean_in(img, body) - _mean_in(img, disc))
    return np.array(out)


@pytest.mark.parametrize("facing, family", [("left", FAMILIES[0]), ("right", FAMILIES[1])])
def test_bodies_are_where_the_truth_puts_them(spine, facing, family):
    """Inside each projected body the film is brighter than in the disc space below it, and a
    truth shifted by half a vertebra does not fit the image."""
    pts = spine.points_mm
    field = (float((spine.femoral_centers_mm[:, 1] - spine.femoral_radii_mm).min()) - 50.0,
             float(pts[LEVEL_INDEX["T10"], :, 1].max()) + 15.0, float(pts[..., 0].min()) - 110.0,
             float(pts[..., 0].max()) + 160.0)
    rg = render_drr(spine, np.random.default_rng(3), facing=facing, family=family, field_mm=field,
                    pixel_spacing_mm=0.8, scoliosis_mm=0.0, instrumented=False, markers=False, ruler=False,
                    collimation="none")
    assert rg.facing == facing and rg.style["family"] == family
    img = _bone_bright(rg)
    here = _body_disc_contrast(spine, rg, img)
    assert len(here) >= 7
    assert (here > 0).mean() >= 0.8, here
    half = float(np.mean(spine.heights_mm[LEVEL_INDEX["L1"]:, 2])) / 2 + 3.0
    assert here.mean() > _body_disc_contrast(spine, rg, img, half).mean()
    assert here.mean() > _body_disc_contrast(spine, rg, img, -half).mean()
    # the anterior direction is on the facing side: the posterior elements lie opposite
    l3 = spine.points_mm[LEVEL_INDEX["L3"]]
    body_c = rg.to_px(l3[:4].mean(axis=0))
    post_c = rg.to_px(spine.posterior_elements_mm[LEVEL_INDEX["L3"]].mean(axis=0))
    assert (body_c[0] > post_c[0]) == (facing == "right")


def test_truth_document_matches_contract_shapes(spine):
    rg = render_drr(spine, np.random.default_rng(4), pixel_spacing_mm=1.0, field="whole")
    truth = radiograph_truth(spine, rg)
    assert truth["image"]["rows"] == rg.pixels.shape[0]
    assert set(truth["landmarks"]["vertebrae"]) == {lv for lv, ok in zip(LEVELS, rg.in_view, strict=True) if ok}
    assert truth["style"]["renderer"] == "drr"
    assert rg.pixels.dtype == np.uint16 and int(rg.pixels.max()) < 2 ** rg.bits_stored


def _disc_of(acc: np.ndarray) -> tuple[float, float, float, float]:
    """Centre (col, row) and the horizontal and vertical radii (px) of a projected uniform
    ball from its moments: weighted centroid, and ``r² = 5 · var`` along each axis."""
    rr, cc = np.nonzero(acc > 0)
    w = acc[rr, cc].astype(float)
    c, r = np.average(cc, weights=w), np.average(rr, weights=w)
    var_c = np.average((cc - c) ** 2, weights=w)
    var_r = np.average((rr - r) ** 2, weights=w)
    return float(c), float(r), float(np.sqrt(5 * var_c)), float(np.sqrt(5 * var_r))


def _geo(sod: float = 1500.0, work: float = 0.5) -> ConeBeam:
    return ConeBeam(sid_mm=sod + 180.0, sod_mm=sod, ray_mm=(0.0, 300.0), work_mm=work, origin_px=(400.0, 1200.0),
                    sign=1.0, shape=(1600, 800))


def test_spheres_at_either_side_are_magnified_by_their_depth():
    """Two equal spheres ±85 mm from the mid-sagittal plane: the one nearer the source projects
    larger, by (SOD + 85) / (SOD − 85), and each centre moves away from the central ray."""
    geo = _geo()
    radii, centres = [], []
    for z in (85.0, -85.0):
        acc = Accumulator(geo)
        # a part's patch lies in q-space at its own depth: the true sphere seen from there
        k = float(geo.rel(z, 0.0))
        c, r = geo.world_to_q(np.array([0.0, 0.0]), z), 24.0
        x0, y0 = float(c[0]) - 35.0, float(c[1]) + 35.0
        n = int(70 / geo.work_mm) + 1
        xs = x0 + np.arange(n) * geo.work_mm
        ys = y0 - np.arange(n) * geo.work_mm
        X, Y = np.meshgrid(xs, ys)
        h = np.sqrt(np.clip(r * r - ((X - c[0]) ** 2 + (Y - c[1]) ** 2) / k ** 2, 0, None)).astype(np.float32)
        part = Part(x0=x0, y0=y0, res=geo.work_mm, h_in=np.zeros_like(h), h_out=h, dist=np.full(h.shape, 99.0, np.float32),
                    zc=z, tc=0.0, mu_cortex=0.03, mu_marrow=0.03)
        project_part(part, acc, None, np.random.default_rng(0))
        col, row, rad, _ = _disc_of(acc.acc)
        radii.append(rad)
        centres.append((col, row))
    expected = (geo.sod_mm + 85.0) / (geo.sod_mm - 85.0)
    assert radii[0] / radii[1] == pytest.approx(expected, rel=0.01)
    ray_row = geo.project(np.array(geo.ray_mm), 0.0)[1]
    # both below the central ray: the nearer-the-source one projects farther below it
    assert centres[0][1] - ray_row > centres[1][1] - ray_row > 0


def test_femoral_heads_project_onto_their_truth_circles(spine):
    """Each femoral head, a sphere at its own depth, projects onto the spine's truth circle."""
    rng = np.random.default_rng(5)
    an = {"density_gain": 1.0, "bone_gain": 1.0, "hip_half_mm": [88.0, 90.0], "texture": 0.0}
    sod = 1200.0
    geo = ConeBeam(sid_mm=sod + 180, sod_mm=sod, ray_mm=(0.0, 250.0), work_mm=0.4, origin_px=(500.0, 1000.0),
                   sign=-1.0, shape=(1300, 1000))
    for k in (0, 1):
        acc = Accumulator(geo)
        bld = Builder(spine, an, geo, acc, rng, np.zeros((8, 8), np.float32))
        bld.mu_cortex = bld.mu_marrow  # a uniform ball, for the moments below
        bld.femoral_head(k)
        col, row, r_across, r_along = _disc_of(acc.acc)
        c_px = geo.project(spine.femoral_centers_mm[k], 0.0)
        r_px = spine.femoral_radii_mm[k] / geo.work_mm
        assert col == pytest.approx(c_px[0], abs=0.3)
        assert row == pytest.approx(c_px[1], abs=0.5)
        # across the line to the central ray the radius is the truth's; along it a ball off the
        # central ray projects slightly elongated (1 / cos of the ray angle), as on a real film
        assert r_across == pytest.approx(r_px, rel=0.005)
        assert r_px < r_along < r_px * 1.05
    # the truth radii differ by the geometry's relative magnification of the two depths
    assert spine.femoral_radii_mm[0] > spine.femoral_radii_mm[1]


def _body_projection(spine, an, geo, i) -> np.ndarray:
    acc = Accumulator(geo)
    Builder(spine, an, geo, acc, np.random.default_rng(0), np.zeros((64, 64), np.float32)).body(i)
    return acc.acc


def _centroid(img: np.ndarray) -> np.ndarray:
    rr, cc = np.nonzero(img)
    w = img[rr, cc]
    return np.array([np.average(cc, weights=w), np.average(rr, weights=w)])


def test_drawn_bodies_fill_their_truth_outlines_even_off_the_midline():
    """Every body, fractured ones included, fills its truth outline and stays inside it (a
    near-parallel beam); displaced 30 mm sideways under a strongly divergent beam (a scoliotic
    curve, SOD 1 m) each projects centred where the truth puts it."""
    from sagittal.phantom.drr import _anatomy, sample_drr_style

    spine = build_spine(sample_spec(np.random.default_rng(2), n_fractures=3))
    assert spine.grade.max() > 0
    rng = np.random.default_rng(1)
    an = _anatomy(spine, sample_drr_style(rng, scoliosis_mm=0.0), rng)
    an["rotation_deg"] = np.zeros(len(LEVELS))
    an["tilt_deg"] = np.zeros(len(LEVELS))
    an["wall_concavity_mm"] = [2.0, 1.2]  # the most waisted walls drawn
    parallel = ConeBeam(sid_mm=1e7 + 150.0, sod_mm=1e7, ray_mm=(0.0, 150.0), work_mm=0.4, origin_px=(600.0, 1800.0),
                        sign=1.0, shape=(2000, 1100))
    cone = ConeBeam(sid_mm=1150.0, sod_mm=1000.0, ray_mm=(0.0, 150.0), work_mm=0.4, origin_px=(600.0, 1800.0), sign=1.0,
                    shape=(2000, 1100))
    centred = dict(an, lateral_mm=np.zeros(len(LEVELS)))
    shifted = dict(an, lateral_mm=np.where(np.arange(len(LEVELS)) % 2, 30.0, -30.0))
    for i in range(len(LEVELS)):
        ref = _body_projection(spine, centred, parallel, i)
        poly = parallel.project(spine.body_polygon_mm(i), 0.0)
        mask = np.zeros(parallel.shape, np.uint8)
        cv2.fillPoly(mask, [np.round(poly * 16).astype(np.int32).reshape(-1, 1, 2)], 1, cv2.LINE_8, 4)
        grown = cv2.dilate(mask, np.ones((5, 5), np.uint8)) > 0
        core = cv2.erode(mask, np.ones((13, 13), np.uint8)) > 0  # inside the waisted walls (2 mm = 5 px)
        assert ref[grown].sum() > 0.995 * ref.sum(), LEVELS[i]
        assert (ref[core] > 0).mean() > 0.995, LEVELS[i]
        # the six truth points (corners, endplate middles) lie on the drawn outline
        for c, r in np.round(parallel.project(spine.points_mm[i], 0.0)).astype(int):
            win = ref[r - 2:r + 3, c - 2:c + 3]
            assert (win > 0).any() and (win == 0).any(), (LEVELS[i], c, r)
        off = _body_projection(spine, shifted, cone, i)
        # without the placement that makes its mid-plane project onto the truth, a body 30 mm
        # off the midline would move by 3 % of its distance from the central ray (≈ 10–40 px)
        assert np.abs(_centroid(off) - _centroid(ref)).max() < 0.5, LEVELS[i]


def test_a_field_cut_at_l1_keeps_only_whole_vertebrae(spine):
    l1 = spine.points_mm[LEVEL_INDEX["L1"]]
    y_mid = float(l1[:, 1].mean())
    y_bot = float((spine.femoral_centers_mm[:, 1] - spine.femoral_radii_mm).min()) - 40
    x = spine.points_mm[LEVEL_INDEX["L1"]:, :, 0]
    field = (y_bot, y_mid, float(x.min()) - 120, float(x.max()) + 150)
    rg = render_drr(spine, np.random.default_rng(6), field_mm=field, pixel_spacing_mm=1.0, collimation="none")
    truth = radiograph_truth(spine, rg)
    assert list(truth["landmarks"]["vertebrae"]) == ["L2", "L3", "L4", "L5"]
    assert truth["landmarks"]["s1_endplate"] is not None
    assert [v["in_view"] for v in truth["vertebrae"]][LEVEL_INDEX["L1"]] is False


def test_same_seed_same_film():
    spec = sample_drr_spec(np.random.default_rng(8), n_fractures=2)
    a = render_drr(build_spine(spec), np.random.default_rng(9), pixel_spacing_mm=1.5)
    b = render_drr(build_spine(spec), np.random.default_rng(9), pixel_spacing_mm=1.5)
    assert np.array_equal(a.pixels, b.pixels)
    assert a.style == b.style
    c = render_drr(build_spine(spec), np.random.default_rng(10), pixel_spacing_mm=1.5)
    assert c.pixels.shape != a.pixels.shape or not np.array_equal(a.pixels, c.pixels)


@pytest.mark.slow
def test_drr_dicom_reads_back_as_a_calibrated_lateral_radiograph(tmp_path):
    """``sagittal phantom --renderer drr`` writes DICOM that ingestion reads as a lateral
    radiograph with the truth's spacing, anterior side and stored values."""
    import json

    out = tmp_path / "drr"
    assert main(["phantom", str(out), "--renderer", "drr", "--n", "2", "--seed", "5", "--pixel-spacing", "0.9",
                 "--modality", "cr", "--calibration", "PixelSpacing", "--field-of-view", "lumbar"]) == 0
    truth = json.loads((out / "truth.json").read_text())
    export = scan_export([out])
    assert len(export.series) == 2
    assert [Path(a.path).name for a in export.set_aside] == ["truth.json"]
    assert {s.view for s in export.series} == {"lateral"}
    by_file = {s.files[0]: s for s in export.series}
    for case in truth["cases"]:
        entry = case["images"][0]
        assert entry["style"]["renderer"] == "drr"
        series = by_file[str(out / entry["files"][0])]
        img = load_radiographs(series)[0]
        assert img.pixels.shape == (entry["image"]["rows"], entry["image"]["columns"])
        np.testing.assert_allclose(img.calibration.pixel_spacing_mm, entry["image"]["pixel_spacing_mm"], rtol=1e-5)
        np.testing.assert_allclose(entry["image"]["pixel_spacing_mm"], [0.9, 0.9], rtol=1e-6)
        assert img.calibration.anterior == entry["image"]["anterior"]


def test_eight_bit_export_and_the_2d_renderers_field_name(spine):
    rg = render_drr(spine, np.random.default_rng(12), family="drr-b", bits_stored=8, field_of_view="lumbar",
                    pixel_spacing_mm=2.0, photometric="MONOCHROME1")
    assert rg.bits_stored == 8 and int(rg.pixels.max()) <= 255 and rg.pixels.std() > 10
    assert rg.style["field"] == "lumbar" and rg.photometric == "MONOCHROME1"


def test_unknown_family_is_refused(spine):
    with pytest.raises(ValueError, match="family"):
        render_drr(spine, np.random.default_rng(0), family="drr-z")


def test_the_evaluation_framings_frame_what_they_say(spine):
    """``tight_lumbar_field``: L1–L5, S1 and the hips wholly in view, T11 not; ``long_film_field``:
    every level from C7 down in view, with ``extra_mm`` of field beyond the ``whole`` field's range."""
    from sagittal.phantom.drr import long_film_field, tight_lumbar_field

    rng = np.random.default_rng(5)
    tight = render_drr(spine, rng, field_mm=tight_lumbar_field(spine, np.random.default_rng(1)),
                       pixel_spacing_mm=1.0, collimation="none")
    truth = radiograph_truth(spine, tight)
    assert list(truth["landmarks"]["vertebrae"])[-5:] == ["L1", "L2", "L3", "L4", "L5"]
    assert "T11" not in truth["landmarks"]["vertebrae"] and truth["landmarks"]["s1_endplate"] is not None
    assert len(truth["landmarks"]["femoral_heads"]) == 2
    y_bot, y_top, x_lo, x_hi = long_film_field(spine, np.random.default_rng(1), extra_mm=120.0)
    c7_top = float(spine.points_mm[LEVEL_INDEX["C7"], :, 1].max())
    hips = float((spine.femoral_centers_mm[:, 1] - spine.femoral_radii_mm).min())
    assert c7_top + 140 <= y_top <= c7_top + 230 and hips - 270 <= y_bot <= hips - 160
    assert 280 * 1.3 <= x_hi - x_lo <= 420 * 1.3
    long = render_drr(spine, rng, field_mm=(y_bot, y_top, x_lo, x_hi), pixel_spacing_mm=2.0, collimation="none")
    assert list(radiograph_truth(spine, long)["landmarks"]["vertebrae"]) == list(LEVELS)
