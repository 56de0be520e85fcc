"""``sagittal measure``: contract-valid JSON Lines, phantom truth recovered from pixels."""

from __future__ import annotations

import json

import jsonschema
import numpy as np
import pytest

from sagittal.cli import main
from sagittal.errors import InputError
from sagittal.geometry.morphometry import NORMAL_ANTERIOR_RATIO, NORMAL_MIDDLE_RATIO, NORMAL_POSTERIOR_MM
from sagittal.levels import LEVELS
from sagittal.phantom import build_spine, render_radiograph, sample_spec
from sagittal.phantom.truth import radiograph_truth
from sagittal.report.analysis import analysis_document, load_schema


@pytest.fixture(scope="module")
def schema():
    return load_schema()


def _truth_input(seed: int, **style) -> tuple[dict, dict]:
    spine = build_spine(sample_spec(np.random.default_rng(seed)))
    rg = render_radiograph(spine, np.random.default_rng(seed), pixel_spacing_mm=2.0, **style)
    t = radiograph_truth(spine, rg)
    return {"image": t["image"], "landmarks": t["landmarks"]}, t


def _run(tmp_path, capsys, inputs: list) -> list[dict]:
    files = []
    for k, obj in enumerate(inputs):
        p = tmp_path / f"in{k}.json"
        p.write_text(obj if isinstance(obj, str) else json.dumps(obj))
        files.append(str(p))
    rc = main(["measure", *files])
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == len(inputs)
    return rc, [json.loads(line) for line in out]


@pytest.mark.parametrize("facing", ["left", "right"])
@pytest.mark.parametrize("calibration", ["PixelSpacing", "ImagerPixelSpacing/ERMF", "both"])
def test_measure_recovers_phantom_truth(tmp_path, capsys, schema, facing, calibration):
    inputs, truths = zip(*[_truth_input(s, modality="CR", field_of_view="whole", facing=facing,
                                        calibration=calibration) for s in range(4)], strict=True)
    rc, docs = _run(tmp_path, capsys, list(inputs))
    assert rc == 0
    for doc, truth in zip(docs, truths, strict=True):
        jsonschema.validate(doc, schema)
        assert doc["source"] is None and doc["status"] == "ok"
        for key in ("pelvic_incidence_deg", "pelvic_tilt_deg", "sacral_slope_deg", "lumbar_lordosis_deg",
                    "thoracic_kyphosis_deg", "sagittal_vertical_axis_mm", "t1_pelvic_angle_deg"):
            assert doc["parameters"][key] == pytest.approx(truth["parameters"][key], abs=2e-3), key
        by_level = {v["level"]: v for v in truth["vertebrae"]}
        for v in doc["vertebrae"]:
            t = by_level[v["level"]]
            assert v["heights_mm"]["anterior"] == pytest.approx(t["heights_mm"]["anterior"], abs=2e-3)
            assert v["vertebral_kyphosis_deg"] == pytest.approx(t["vertebral_kyphosis_deg"], abs=2e-3)


def test_measure_nulls_and_warnings(tmp_path, capsys, schema):
    lumbar, _ = _truth_input(3, modality="CR", field_of_view="lumbar", calibration="none")
    no_heads, _ = _truth_input(4, modality="CR", field_of_view="whole", calibration="PixelSpacing")
    no_heads["landmarks"]["femoral_heads"] = []
    one_head, _ = _truth_input(5, modality="CR", field_of_view="whole", calibration="ImagerPixelSpacing")
    one_head["landmarks"]["femoral_heads"] = one_head["landmarks"]["femoral_heads"][:1]
    rc, (a, b, c) = _run(tmp_path, capsys, [lumbar, no_heads, one_head])
    assert rc == 0
    for doc in (a, b, c):
        jsonschema.validate(doc, schema)
    # withheld values make a document partial; a warning alone (one femoral head) does not
    assert (a["status"], b["status"], c["status"]) == ("partial", "partial", "ok")
    assert a["parameters"]["sagittal_vertical_axis_mm"] is None and a["parameters"]["thoracic_kyphosis_deg"] is None
    assert a["parameters"]["pelvic_incidence_deg"] is not None
    assert all(v["heights_mm"] is None for v in a["vertebrae"])
    assert any("no pixel spacing" in w for w in a["warnings"])
    assert b["parameters"]["pelvic_tilt_deg"] is None and any("no femoral head" in w for w in b["warnings"])
    assert c["parameters"]["pelvic_tilt_deg"] is not None and any("one femoral head" in w for w in c["warnings"])
    assert any("uncorrected for magnification" in w for w in c["warnings"])


def test_measure_bad_inputs_keep_their_line(tmp_path, capsys, schema):
    good, _ = _truth_input(6, modality="CR", calibration="PixelSpacing")
    bad_level = json.loads(json.dumps(good))
    bad_level["landmarks"]["vertebrae"]["S2"] = bad_level["landmarks"]["vertebrae"].popitem()[1]
    files = [good, "{not json", {"image": {}}, bad_level]
    paths = []
    for k, obj in enumerate(files):
        p = tmp_path / f"f{k}.json"
        p.write_text(obj if isinstance(obj, str) else json.dumps(obj))
        paths.append(str(p))
    paths.append(str(tmp_path / "missing.json"))
    rc = main(["measure", *paths])
    cap = capsys.readouterr()
    docs = [json.loads(line) for line in cap.out.strip().splitlines()]
    assert rc == 0 and len(docs) == 5
    assert [d["status"] for d in docs] == ["ok", "rejected", "rejected", "rejected", "rejected"]
    for d in docs:
        jsonschema.validate(d, schema)
    assert "f1.json" in cap.err and "missing.json" in cap.err and "unknown level 'S2'" in cap.err
    assert main(["measure", str(tmp_path / "missing.json")]) == 1


def test_unknown_facing_is_rejected(tmp_path, capsys, schema):
    obj, _ = _truth_input(7, modality="CR", calibration="PixelSpacing")
    obj["image"]["anterior"] = None
    _, (doc,) = _run(tmp_path, capsys, [obj])
    jsonschema.validate(doc, schema)
    assert doc["status"] == "rejected" and any("faces" in w for w in doc["warnings"])


def test_ungraded_levels_keep_their_points_but_no_heights_grade_or_endplate_angles(schema):
    """``landmarks[UNGRADED]`` (level → reason): those vertebrae are reported without heights,
    height loss, grade or morphology, and their points size no neighbour's expected height (the
    neighbours are graded as if they were absent) nor any angle from their endplates: their own
    vertebral kyphosis, the regional kyphosis of the vertebrae above and below (measured from
    their endplates), LL/PI-LL at L1 and TK at T12 are null with a warning naming the level; the
    other angles (and an ungraded body's own regional kyphosis, its neighbours' endplates, where
    they are graded) are those of every point; the map stays in the document's landmarks
    (measuring the saved document again gives the same), and the caller's dict is left as it was."""
    import copy

    from sagittal.errors import InputError
    from sagittal.levels import UNGRADED
    from sagittal.report.analysis import analysis_document

    obj, _ = _truth_input(3, modality="CR", field_of_view="whole", facing="right")
    lm = obj["landmarks"]
    # L1's posterior wall 40 % short: unsteady points that would shift T12's and L2's expected heights
    bent = copy.deepcopy(lm)
    v = bent["vertebrae"]["L1"]
    v["posterior_superior"] = [a + 0.4 * (b - a) for a, b in zip(v["posterior_superior"], v["posterior_inferior"], strict=True)]
    marked_in = dict(bent, **{UNGRADED: {"L1": "why", "T12": "why"}})
    before = copy.deepcopy(marked_in)
    marked = analysis_document(obj["image"], marked_in)
    assert marked_in == before
    jsonschema.validate(marked, schema)
    assert marked["landmarks"] == marked_in
    assert analysis_document(marked["image"], marked["landmarks"])["vertebrae"] == marked["vertebrae"]
    plain = analysis_document(obj["image"], bent)
    without = analysis_document(obj["image"], dict(lm, vertebrae={k: p for k, p in lm["vertebrae"].items()
                                                                  if k not in ("L1", "T12")}))
    from_endplates = ("lumbar_lordosis_deg", "thoracic_kyphosis_deg", "pi_ll_mismatch_deg", "srs_schwab_pi_ll")
    assert all(plain["parameters"][k] is not None and marked["parameters"][k] is None for k in from_endplates)
    assert {k: p for k, p in marked["parameters"].items() if k not in from_endplates} == \
        {k: p for k, p in plain["parameters"].items() if k not in from_endplates}
    assert "lumbar_lordosis_deg is null: L1's points are not steady enough to grade it (ungraded)" in marked["warnings"]
    assert "thoracic_kyphosis_deg is null: T12's points are not steady enough to grade it (ungraded)" in marked["warnings"]
    said = [w for w in marked["warnings"] if "measured from its endplates" in w]
    assert len(said) == 2
    assert said[0].startswith("T12: its vertebral kyphosis, the regional kyphosis of T11 and L1, thoracic_kyphosis_deg null")
    assert said[1].startswith("L1: its vertebral kyphosis, the regional kyphosis of T12 and L2, lumbar_lordosis_deg, "
                              "pi_ll_mismatch_deg null")
    graded_as_if_absent = {v["level"]: v for v in without["vertebrae"]}
    for a, b in zip(plain["vertebrae"], marked["vertebrae"], strict=True):
        if b["level"] in ("L1", "T12"):
            assert a["genant_grade"] is not None and a["heights_mm"] is not None and a["vertebral_kyphosis_deg"] is not None
            assert (b["heights_mm"], b["height_loss_pct"], b["genant_grade"], b["morphology"]) == (None,) * 4
            assert b["vertebral_kyphosis_deg"] is None
        else:
            c = graded_as_if_absent[b["level"]]
            for key in ("heights_mm", "height_loss_pct", "genant_grade", "morphology"):
                assert b[key] == c[key], (b["level"], key)
            assert b["vertebral_kyphosis_deg"] == a["vertebral_kyphosis_deg"] is not None
        # the regional kyphosis of T11 (T12's inferior endplate), T12 (L1's), L1 (T12's superior), L2 (L1's)
        if b["level"] in ("T11", "T12", "L1", "L2"):
            assert a["regional_kyphosis_deg"] is not None and b["regional_kyphosis_deg"] is None, b["level"]
        else:
            assert b["regional_kyphosis_deg"] == a["regional_kyphosis_deg"], b["level"]
    assert plain["vertebrae"][LEVELS.index("L2")]["height_loss_pct"] != marked["vertebrae"][LEVELS.index("L2")]["height_loss_pct"]
    # one ungraded body between graded neighbours keeps its own regional kyphosis (their endplates)
    alone = analysis_document(obj["image"], dict(bent, **{UNGRADED: {"L1": "why"}}))
    by = {v["level"]: v for v in alone["vertebrae"]}
    plain_by = {v["level"]: v for v in plain["vertebrae"]}
    assert by["L1"]["regional_kyphosis_deg"] == plain_by["L1"]["regional_kyphosis_deg"] is not None
    assert by["L1"]["vertebral_kyphosis_deg"] is None and by["T12"]["vertebral_kyphosis_deg"] is not None
    assert by["T12"]["regional_kyphosis_deg"] is None and by["L2"]["regional_kyphosis_deg"] is None
    assert by["T11"]["regional_kyphosis_deg"] == plain_by["T11"]["regional_kyphosis_deg"] is not None
    assert alone["parameters"]["thoracic_kyphosis_deg"] == plain["parameters"]["thoracic_kyphosis_deg"] is not None
    assert alone["parameters"]["lumbar_lordosis_deg"] is None
    for bad in ("L1", {"L6": "why"}, 3):
        with pytest.raises(InputError, match="landmarks.ungraded must map vertebral levels"):
            analysis_document(obj["image"], dict(lm, **{UNGRADED: bad}))


def test_a_series_too_coarse_along_the_spine_is_not_graded(tmp_path, capsys, schema):
    """``image.axis_sampling_mm`` (CT/MR: how finely the series samples the spine's axis) at
    ``GRADE_AXIS_SAMPLING_MAX_MM`` or more: every vertebra keeps its heights, loss and angles, its grade
    and morphology are null, with one warning naming the spacing; under it, or absent (radiographs), the
    document is the one without the key (the key itself kept where given); the key survives
    ``sagittal measure`` of a saved document; a malformed value is an input error."""
    from sagittal.errors import InputError
    from sagittal.report.analysis import GRADE_AXIS_SAMPLING_MAX_MM, analysis_document

    obj, _ = _truth_input(3, modality="CR", field_of_view="whole", facing="right")
    plain = analysis_document(obj["image"], obj["landmarks"])
    assert "axis_sampling_mm" not in plain["image"] and all(v["genant_grade"] is not None for v in plain["vertebrae"])
    fine = analysis_document(dict(obj["image"], axis_sampling_mm=GRADE_AXIS_SAMPLING_MAX_MM - 0.1), obj["landmarks"])
    assert fine["image"].pop("axis_sampling_mm") == pytest.approx(GRADE_AXIS_SAMPLING_MAX_MM - 0.1)
    assert fine == plain
    coarse_image = dict(obj["image"], axis_sampling_mm=5.0)
    coarse = analysis_document(coarse_image, obj["landmarks"])
    jsonschema.validate(coarse, schema)
    assert coarse["parameters"] == plain["parameters"]
    assert all(v["genant_grade"] is None and v["morphology"] is None for v in coarse["vertebrae"])
    graded = ("genant_grade", "morphology")
    assert [{k: x for k, x in v.items() if k not in graded} for v in coarse["vertebrae"]] == \
        [{k: x for k, x in v.items() if k not in graded} for v in plain["vertebrae"]]
    (extra,) = [w for w in coarse["warnings"] if w not in plain["warnings"]]
    assert extra.startswith(", ".join(v["level"] for v in plain["vertebrae"]) + ": Genant grade and morphology withheld")
    assert "every 5.0 mm" in extra and "thin-slice reconstruction" in extra
    # the rule switched off: graded as without the key
    off = analysis_document(coarse_image, obj["landmarks"], grade_axis_max_mm=None)
    assert off["vertebrae"] == plain["vertebrae"] and off["warnings"] == plain["warnings"]
    # sagittal measure on the saved document: the same
    rc, (again,) = _run(tmp_path, capsys, [{"image": coarse["image"], "landmarks": coarse["landmarks"]}])
    assert rc == 0 and again["vertebrae"] == coarse["vertebrae"] and again["image"]["axis_sampling_mm"] == 5.0
    for bad in (0, -1.0, "5", True, float("nan")):
        with pytest.raises(InputError, match="image.axis_sampling_mm must be a positive number"):
            analysis_document(dict(obj["image"], axis_sampling_mm=bad), obj["landmarks"])


#: the image of ``_view``'s landmarks: 1-mm pixels of a 2-mm CT series
_VIEW_IMAGE = {"rows": 400, "columns": 200, "pixel_spacing_mm": [1.0, 1.0], "spacing_source": "volume",
               "anterior": "left", "axis_sampling_mm": 2.0}


def _view(levels: tuple[str, ...], scale: dict[str, float] | None = None,
          taller_mm: dict[str, float] | None = None) -> dict:
    """Landmarks of normal bodies (1.1 x the normal size) stacked 8 mm apart, facing left: ``scale`` shrinks a
    body evenly (a crush), ``taller_mm`` raises its superior endplate (read taller)."""
    y, verts = 20.0, {}
    for lv in levels:
        i = LEVELS.index(lv)
        hp = NORMAL_POSTERIOR_MM[i] * 1.1 * (scale or {}).get(lv, 1.0)
        ha, hm = hp * NORMAL_ANTERIOR_RATIO[i], hp * NORMAL_MIDDLE_RATIO[i]
        up = (taller_mm or {}).get(lv, 0.0)
        bot = y + max(ha, hp, hm)
        verts[lv] = {"anterior_superior": [10.0, bot - ha - up], "posterior_superior": [45.0, bot - hp - up],
                     "posterior_inferior": [45.0, bot], "anterior_inferior": [10.0, bot],
                     "middle_superior": [27.5, bot - hm - up], "middle_inferior": [27.5, bot]}
        y = bot + 8.0
    return {"vertebrae": verts, "s1_endplate": None, "femoral_heads": []}


def test_a_level_at_a_gap_sizes_no_neighbours_expected_height():
    """Review R17a: a level listed in ``landmarks.axis_sampling_mm`` at 4 mm or more (slices missing at its
    endplates) keeps its own heights and loss, but its endplate may be interpolated across the gap, so the
    neighbours' expected heights come from the other levels, as for an ungraded one. A normal T11 17 % short,
    beside a T12 read 3 mm tall at an 8-mm gap: graded 0 with 17.0 % (it was graded 1, 21.6 %, before)."""
    def landmarks(t12_extra_mm: float) -> dict:
        return _view(("T11", "T12", "L1", "L2", "L3"), scale={"T11": 0.83}, taller_mm={"T12": t12_extra_mm})

    image = _VIEW_IMAGE

    def by_level(lm: dict) -> dict:
        return {v["level"]: v for v in analysis_document(image, lm)["vertebrae"]}

    plain = by_level(landmarks(0.0))
    assert (plain["T11"]["genant_grade"], plain["T11"]["height_loss_pct"]) == (0, 17.0)
    tall = landmarks(3.0)
    assert by_level(tall)["T11"]["genant_grade"] == 1  # T12 sizing T11's expected height: a false grade 1
    gapped = by_level({**tall, "axis_sampling_mm": {"T12": 8.0}})
    assert (gapped["T11"]["genant_grade"], gapped["T11"]["height_loss_pct"]) == (0, 17.0)
    assert gapped["T12"]["genant_grade"] is None and gapped["T12"]["heights_mm"] is not None
    assert gapped["T12"]["height_loss_pct"] == by_level(tall)["T12"]["height_loss_pct"]  # its own, as measured
    # under the limit the map changes nothing
    assert by_level({**tall, "axis_sampling_mm": {"T12": 3.0}}) == by_level(tall)


def test_a_level_left_with_no_reference_is_not_graded():
    """Review R17b: with L3 and L4 at a gap (or one at a gap and the other ungraded), an evenly crushed L5 has no
    neighbour left to size its expected posterior height (two above and two below; there is no sacrum row), so
    its posterior loss would read 0 and the crush grade 0, 'normal'. It is withheld instead, with a warning
    naming the neighbours, its heights kept and its loss null; with every point it reads grade 2, 30 %."""
    lm = _view(("T12", "L1", "L2", "L3", "L4", "L5"), scale={"L5": 0.7})
    verts = lm["vertebrae"]
    image = _VIEW_IMAGE
    every = {v["level"]: v for v in analysis_document(image, lm)["vertebrae"]}
    assert (every["L5"]["genant_grade"], every["L5"]["height_loss_pct"], every["L5"]["morphology"]) == (2, 30.0, "crush")
    for extra in ({"axis_sampling_mm": {"L3": 8.0, "L4": 8.0}},
                  {"axis_sampling_mm": {"L4": 8.0}, "ungraded": {"L3": "its points were not steady"}}):
        doc = analysis_document(image, {**lm, **extra})
        l5 = {v["level"]: v for v in doc["vertebrae"]}["L5"]
        assert (l5["genant_grade"], l5["morphology"], l5["height_loss_pct"]) == (None, None, None), extra
        assert l5["heights_mm"] == every["L5"]["heights_mm"]
        (why,) = [w for w in doc["warnings"] if w.startswith("L5: ")]
        assert "(L3, L4)" in why and "no reference" in why
        assert {v["level"]: v["genant_grade"] for v in doc["vertebrae"]}["L2"] == 0  # L2 keeps T12 and L1
    # review R17c: a level at a gap whose neighbours are all ungraded has no reference for its own loss either
    doc = analysis_document(image, {**lm, "axis_sampling_mm": {"L4": 8.0}, "ungraded": ["L2", "L3", "L5"]})
    l4 = {v["level"]: v for v in doc["vertebrae"]}["L4"]
    assert (l4["genant_grade"], l4["height_loss_pct"]) == (None, None) and l4["heights_mm"] is not None
    assert any(w.startswith("L4: ") and "no reference" in w for w in doc["warnings"])
    # review R17e: the gap warning still names it (its heights span missing slices), its loss clause conditional
    (gap,) = [w for w in doc["warnings"] if "L4" in w.split(":")[0] and "apart along the spine's axis" in w]
    assert "8.0 mm apart" in gap and "height loss where a reference is left" in gap
    # review R17d: two levels at one gap size neither each other's loss - L3 read 1.5x tall, L3 and L4 at a gap,
    # L2 and L5 ungraded: L4 has no reference left (it read 33 % from L3 alone)
    tall = {lv: dict(p) for lv, p in verts.items()}
    for k in ("anterior_superior", "posterior_superior", "middle_superior"):
        top, bottom = tall["L3"][k][1], tall["L3"][k.replace("superior", "inferior")][1]
        tall["L3"][k] = [tall["L3"][k][0], bottom - 1.5 * (bottom - top)]
    doc = analysis_document(image, {**lm, "vertebrae": tall, "axis_sampling_mm": {"L3": 8.0, "L4": 8.0},
                                    "ungraded": ["L2", "L5"]})
    l4 = {v["level"]: v for v in doc["vertebrae"]}["L4"]
    assert (l4["genant_grade"], l4["height_loss_pct"]) == (None, None)
    assert any(w.startswith("L4: ") and "(L2, L3, L5)" in w for w in doc["warnings"])
    # a level that never had a reference (a lone body: L3 and L4 not in view) is left as it was, graded from
    # its own walls (a 35 % wedge: grade 2), whatever else is ungraded
    lone = {"vertebrae": {lv: p for lv, p in verts.items() if lv not in ("L3", "L4")}, "s1_endplate": None,
            "femoral_heads": []}
    wedge = dict(lone["vertebrae"]["L5"])
    wedge["anterior_superior"] = [10.0, wedge["anterior_inferior"][1]
                                  - 0.65 * (wedge["posterior_inferior"][1] - wedge["posterior_superior"][1])
                                  * NORMAL_ANTERIOR_RATIO[LEVELS.index("L5")]]
    lone["vertebrae"]["L5"] = wedge
    for extra in ({}, {"ungraded": ["T12"]}):
        l5 = {v["level"]: v for v in analysis_document(image, {**lone, **extra})["vertebrae"]}["L5"]
        assert l5["genant_grade"] == 2 and l5["height_loss_pct"] == pytest.approx(35.0, abs=0.1), extra
    # review R17f: in a series too coarse to grade as a whole (5 mm) a level at a gap is still set apart - beside an
    # L3 read 1.5x tall at a gap the others' losses are those of a 2-mm series with the same gap (not L3's) - and
    # its gap still told; an orphan there is named by the coarse warning too (its loss clause conditional), its
    # reason the sampling first
    coarse = {**image, "axis_sampling_mm": 5.0}
    gap_lm = {**lm, "vertebrae": tall, "axis_sampling_mm": {"L3": 15.0}}
    doc, fine = analysis_document(coarse, gap_lm), analysis_document(image, gap_lm)
    assert [v["height_loss_pct"] for v in doc["vertebrae"]] == [v["height_loss_pct"] for v in fine["vertebrae"]]
    assert [v["height_loss_pct"] for v in doc["vertebrae"]] != [
        v["height_loss_pct"] for v in analysis_document(coarse, {**lm, "vertebrae": tall})["vertebrae"]]
    assert all(v["genant_grade"] is None for v in doc["vertebrae"])
    assert any(w.startswith("L3: ") and "15.0 mm apart" in w for w in doc["warnings"])
    doc = analysis_document(coarse, {**lm, "ungraded": ["L3", "L4"]})
    (told,) = [w for w in doc["warnings"] if "every 5.0 mm" in w]
    assert "L5" in told.split(":")[0] and "height loss where a reference is left" in told
    reasons = [w for w in doc["warnings"] if w.startswith("L5: ") or "L5" in w.split(":")[0]]
    assert reasons[0] == told and "no reference" in reasons[1]
    # review R17g: the case fecafcc made possible - L3 and L4 at a gap in a 5-mm series leave the crushed L5 none
    doc = analysis_document(coarse, {**lm, "axis_sampling_mm": {"L3": 10.0, "L4": 10.0}})
    l5 = {v["level"]: v for v in doc["vertebrae"]}["L5"]
    assert (l5["height_loss_pct"], l5["genant_grade"]) == (None, None) and l5["heights_mm"] is not None
    assert any(w.startswith("L5: ") and "(L3, L4)" in w for w in doc["warnings"])
    # a map on a radiograph (no image.axis_sampling_mm) is refused
    plain = {k: v for k, v in image.items() if k != "axis_sampling_mm"}
    with pytest.raises(InputError, match="needs image.axis_sampling_mm"):
        analysis_document(plain, {**lm, "axis_sampling_mm": {"L4": 8.0}})
