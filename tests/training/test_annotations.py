"""Annotation readers: the three formats read back what was written, BUU's anterior corner is
the left one, and malformed files raise InputError naming the file, the row and the field."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from sagittal.errors import InputError
from sagittal.levels import LEVEL_INDEX, POINT_NAMES
from sagittal.training.annotations import (
    Annotation,
    keypoint_names,
    pair,
    read_annotations,
    read_buu,
    read_coco,
    read_corner_json,
    read_sagittal,
    write_buu,
    write_coco,
    write_sagittal,
)

GOOD_BUU = """x1,y1,x2,y2,label
100,200,160,195,0
102,240,161,236,0
101,250,162,247,0
103,290,163,288,0
104,300,165,298,0
105,340,166,339,0
106,350,167,350,0
107,390,168,391,0
108,400,169,402,0
109,440,170,443,0
,,,,0
"""


def test_buu_rows_map_to_endplate_corners_anterior_left(tmp_path: Path) -> None:
    # the second row gives its corners in the other order: the smaller x is still anterior
    text = GOOD_BUU.replace("102,240,161,236", "161,236,102,240")
    (tmp_path / "img1.csv").write_text(text)
    ann = read_buu(tmp_path / "img1.csv")
    l1 = ann.vertebrae[LEVEL_INDEX["L1"]]
    assert l1[POINT_NAMES.index("anterior_superior")].tolist() == [100, 200]
    assert l1[POINT_NAMES.index("posterior_superior")].tolist() == [160, 195]
    assert l1[POINT_NAMES.index("anterior_inferior")].tolist() == [102, 240]
    assert l1[POINT_NAMES.index("posterior_inferior")].tolist() == [161, 236]
    assert np.isnan(l1[4:]).all()  # endplate middles: not annotated
    assert ann.vertebrae[LEVEL_INDEX["L5"], 3].tolist() == [109, 440]  # row 10: L5 inferior
    assert np.isnan(ann.s1).all()  # the empty S1 row
    assert ann.annotated_levels() == ["L1", "L2", "L3", "L4", "L5"]
    assert ann.facing == "left" and ann.name == "img1"


def test_buu_mirrored_then_written_reads_back(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text(GOOD_BUU)
    ann = read_buu(tmp_path / "a.csv")
    right = ann.flipped(500)
    assert right.facing == "right"
    assert right.vertebrae[LEVEL_INDEX["L1"], 0, 0] == 399  # anterior now on the right
    back = right.flipped(500)
    write_buu(back, tmp_path / "b.csv")
    again = read_buu(tmp_path / "b.csv")
    np.testing.assert_allclose(again.vertebrae, ann.vertebrae, atol=1e-3)


def _full() -> Annotation:
    rng = np.random.default_rng(3)
    ann = Annotation("x", "mem", image_file="x.png", spacing_mm=(0.2, 0.2), facing="right")
    ann.vertebrae[LEVEL_INDEX["L2"]] = rng.uniform(0, 500, (6, 2))
    ann.vertebrae[LEVEL_INDEX["T12"], :4] = rng.uniform(0, 500, (4, 2))  # corners only
    ann.s1[:] = rng.uniform(0, 500, (2, 2))
    ann.heads[0], ann.radii[0] = (300.5, 420.25), 40.0
    return ann


def test_coco_and_sagittal_round_trip(tmp_path: Path) -> None:
    ann = _full()
    write_coco([ann], tmp_path / "c.json")
    write_sagittal(ann, tmp_path / "x.json")
    (c,) = read_coco(tmp_path / "c.json")
    (s,) = read_sagittal(tmp_path / "x.json")
    for got, tol in ((c, 1e-3), (s, 1e-9)):
        np.testing.assert_allclose(got.vertebrae, ann.vertebrae, atol=tol)
        np.testing.assert_allclose(got.s1, ann.s1, atol=tol)
        np.testing.assert_allclose(got.heads, ann.heads, atol=tol)
    assert s.spacing_mm == (0.2, 0.2) and s.facing == "right" and np.allclose(s.radii, ann.radii, equal_nan=True)
    assert c.image_file == "x.png"
    assert "L3_anterior_superior" in keypoint_names() and "femoral_head_2" in keypoint_names()


def _coco(**change: object) -> dict:
    names = ["L1_anterior_superior", "S1_anterior"]
    doc: dict = {"images": [{"id": 1, "file_name": "a.png"}],
                 "categories": [{"id": 1, "keypoints": names}],
                 "annotations": [{"image_id": 1, "category_id": 1, "keypoints": [1, 2, 2, 3, 4, 2]}]}
    doc.update(change)
    return doc


BAD_BUU = [
    (GOOD_BUU.replace("100,200,160,195,0", "100,abc,160,195,0"), ["row 1", "L1 superior", "field y1", "'abc'"]),
    (GOOD_BUU.replace("104,300,165,298,0", "104,300"), ["row 5", "L3 superior", "2 fields"]),
    ("\n".join(GOOD_BUU.splitlines()[:6]), ["5 data rows", "11"]),
    (GOOD_BUU.replace("109,440,170,443,0", "109,440,inf,443,0"), ["row 10", "field x2"]),
]
BAD_COCO = [
    ("not json", ["cannot be read as JSON"]),
    (json.dumps(_coco(images=None)), ["'images'"]),
    (json.dumps(_coco(annotations=[{"image_id": 9, "category_id": 1, "keypoints": [1, 2, 2, 3, 4, 2]}])),
     ["annotations[0]", "image_id", "9"]),
    (json.dumps(_coco(annotations=[{"image_id": 1, "category_id": 1, "keypoints": [1, 2, 2]}])),
     ["annotations[0]", "keypoints", "6 numbers"]),
    (json.dumps(_coco(annotations=[{"image_id": 1, "category_id": 1, "keypoints": [1, 2, 2, "x", 4, 2]}])),
     ["annotations[0]", "keypoint 1 (S1_anterior)", "field x"]),
    (json.dumps(_coco(categories=[{"id": 1, "keypoints": ["L9_anterior_superior", "S1_anterior"]}])),
     ["keypoint 0", "unknown keypoint name 'L9_anterior_superior'"]),
    (json.dumps(_coco(categories=[{"id": 1}])), ["categories[0]", "keypoints"]),
]
BAD_SAGITTAL = [
    (json.dumps({"landmarks": {}}), ["'image' and 'landmarks'"]),
    (json.dumps({"image": {}, "landmarks": {"vertebrae": {"L7": {}}}}), ["unknown level 'L7'"]),
    (json.dumps({"image": {}, "landmarks": {"vertebrae": {"L1": {"anterior_superior": [1]}}}}),
     ["landmarks.vertebrae.L1.anterior_superior", "[x, y]"]),
    (json.dumps({"image": {}, "landmarks": {"vertebrae": {"L1": {"front": [1, 2]}}}}), ["unknown point 'front'"]),
    (json.dumps({"image": {}, "landmarks": {"s1_endplate": {"anterior": ["a", 2]}}}),
     ["landmarks.s1_endplate.anterior", "field x"]),
    (json.dumps({"image": {}, "landmarks": {"femoral_heads": [{"radius_px": 3}]}}), ["femoral_heads[0]", "'center'"]),
    (json.dumps({"image": {"pixel_spacing_mm": 0.2}, "landmarks": {}}), ["image.pixel_spacing_mm"]),
]


@pytest.mark.parametrize(("fmt", "suffix", "text", "expected"),
                         [("buu", ".csv", t, e) for t, e in BAD_BUU] + [("coco", ".json", t, e) for t, e in BAD_COCO]
                         + [("sagittal", ".json", t, e) for t, e in BAD_SAGITTAL])
def test_malformed_files_name_file_row_and_field(tmp_path: Path, fmt: str, suffix: str, text: str,
                                                 expected: list[str]) -> None:
    path = tmp_path / f"bad{suffix}"
    path.write_text(text)
    with pytest.raises(InputError) as err:
        read_annotations(path, fmt)
    msg = str(err.value)
    assert str(path) in msg
    for part in expected:
        assert part in msg, (part, msg)


def test_missing_inputs_and_pairing(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such annotation"):
        read_annotations(tmp_path / "nope", "buu")
    with pytest.raises(InputError, match="no .csv annotation files"):
        read_annotations(tmp_path, "buu")
    with pytest.raises(InputError, match="unknown annotation format"):
        read_annotations(tmp_path, "voc")
    imgs = [tmp_path / "a.png", tmp_path / "b.png"]
    pairs, problems = pair(imgs, [Annotation("a", "ann.json"), Annotation("z", "ann.json")])
    assert [(p.name, a.name) for p, a in pairs] == [("a.png", "a")]
    assert any("'z'" in p for p in problems) and any("b.png: no annotation" in p for p in problems)


CORNER_ORDER = ["anterior_superior", "posterior_superior", "anterior_inferior", "posterior_inferior"]


def _corner_file(tmp_path: Path, keypoints: object, name: str = "film.json") -> Path:
    p = tmp_path / name
    p.write_text(json.dumps({"boxes": [], "keypoints": keypoints, "labels": []}))
    return p


def _body(x_ant: float, x_post: float, y_top: float, y_bot: float) -> list[list[float]]:
    return [[x_ant, y_top, 2], [x_post, y_top, 2], [x_ant, y_bot, 2], [x_post, y_bot, 2]]  # CORNER_ORDER


def test_corner_json_maps_levels_and_corners_and_converts(tmp_path: Path) -> None:
    import importlib.util

    kps = [_body(100, 160, 200, 240), _body(102, 162, 250, 290), _body(104, 164, 300, 338)]
    kps[1][2][2] = 0  # L5's anterior-inferior corner not visible: not annotated
    src = tmp_path / "in"
    src.mkdir()
    _corner_file(src, kps)
    _corner_file(src, kps[::-1], "upside_down.json")
    ann = read_corner_json(src / "film.json", ["L4", "L5", "S1"], CORNER_ORDER)
    l4 = ann.vertebrae[LEVEL_INDEX["L4"]]
    assert l4[POINT_NAMES.index("posterior_inferior")].tolist() == [160, 240]
    assert np.isnan(ann.vertebrae[LEVEL_INDEX["L5"], POINT_NAMES.index("anterior_inferior")]).all()
    assert ann.s1.tolist() == [[104, 300], [164, 300]] and np.isnan(l4[4:]).all()
    spec = importlib.util.spec_from_file_location("convert", Path(__file__).resolve().parents[2] / "scripts" /
                                                  "convert_corner_json.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = tmp_path / "out"
    assert mod.main([str(src), str(out), "--levels", "L4,L5,S1", "--corners", ",".join(CORNER_ORDER),
                     "--spacing", "0.2"]) == 1  # the upside-down file is refused, the other converted
    (back,) = read_sagittal(out / "film.json")
    assert back.facing == "left" and back.spacing_mm == (0.2, 0.2)  # anterior corners have the smaller x
    np.testing.assert_array_equal(back.vertebrae, ann.vertebrae)
    np.testing.assert_array_equal(back.s1, ann.s1)


@pytest.mark.parametrize(("keypoints", "levels", "corners", "expected"), [
    ("not a list", ["L4"], CORNER_ORDER, "no 'keypoints' list"),
    ([_body(1, 2, 3, 4)], ["L4", "L5"], CORNER_ORDER, "1 vertebrae in 'keypoints' but 2 levels"),
    ([_body(1, 2, 3, 4)[:3]], ["L4"], CORNER_ORDER, "keypoints[0] (L4): expected four"),
    ([[[1, 2, 2], [1, 2, 2], [1, "x", 2], [1, 2, 2]]], ["L4"], CORNER_ORDER, "keypoints[0] (L4), field corner 2 y"),
    ([[[1, 2, 2], [1, 2, 2], 7, [1, 2, 2]]], ["L4"], CORNER_ORDER, "corner 2 (anterior_inferior): expected"),
    ([_body(1, 2, 3, 4)], ["L9"], CORNER_ORDER, "levels must be distinct vertebral levels"),
    ([_body(1, 2, 3, 4)], ["L4"], CORNER_ORDER[:3] + ["middle_superior"], "corners must name each"),
    ([_body(1, 2, 50, 60), _body(1, 2, 3, 4)], ["L4", "L5"], CORNER_ORDER, "not in head-to-foot order"),
])
def test_malformed_corner_json_names_file_vertebra_and_field(tmp_path: Path, keypoints: object, levels: list[str],
                                                             corners: list[str], expected: str) -> None:
    p = _corner_file(tmp_path, keypoints)
    with pytest.raises(InputError, match=re.escape(expected)) as err:
        read_corner_json(p, levels, corners)
    assert str(p) in str(err.value) or "must" in expected
