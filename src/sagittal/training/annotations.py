"""Readers of a user's landmark annotations: BUU-LSPINE lateral CSV, COCO keypoints JSON and
sagittal's own ``{"image", "landmarks"}`` files (docs/contract.md, "Evaluation and fine-tuning").

Every reader returns ``Annotation`` values in one frame: image pixels as stored, ``[x, y]``
with ``(0, 0)`` the centre of the top-left pixel, and NaN wherever a point is not annotated
(what is not annotated is neither scored nor trained). Anything malformed raises
``InputError`` naming the file, the row (or keypoint) and the field.

BUU-LSPINE (Klinwichit et al. 2023, "BUU-LSPINE: A Thai Open Lumbar Spine Dataset for
Spondylolisthesis Detection", Appl. Sci. 13: 8646, doi:10.3390/app13158646): one CSV per
image, eleven rows — L1 superior, L1 inferior, … L5 inferior, S1 superior — with columns
``x1, y1, x2, y2, label``: the endplate's two corners. Its lateral films are
stored facing left (anterior on the image's left), so the corner with the smaller ``x`` is the
anterior one. An optional header row is allowed; a row whose four coordinates are all empty is
not annotated.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..levels import LEVEL_INDEX, LEVELS, POINT_NAMES

FORMATS = ("buu", "coco", "sagittal")
IMAGE_SUFFIXES = (".dcm", ".dicom", ".png", ".jpg", ".jpeg", ".tif", ".tiff", "")
BUU_ROWS: tuple[tuple[str, str], ...] = (*((f"L{i}", e) for i in range(1, 6) for e in ("superior", "inferior")),
                                         ("S1", "superior"))
BUU_COLUMNS = ("x1", "y1", "x2", "y2", "label")
S1_POINTS = ("anterior", "posterior")


@dataclass
class Annotation:
    """One annotated radiograph. ``vertebrae (18, 6, 2)`` in ``LEVELS`` × ``POINT_NAMES``
    order, ``s1 (2, 2)`` anterior/posterior, ``heads (2, 2)`` and ``radii (2,)``: image
    pixels, NaN where not annotated. ``spacing_mm`` (row, column) when the file gives it;
    ``facing`` the side the patient faces when the format says so."""

    name: str  # the image's stem, which pairs it with an image file
    source: str  # the annotation file (for messages)
    vertebrae: np.ndarray = field(default_factory=lambda: np.full((len(LEVELS), 6, 2), np.nan))
    s1: np.ndarray = field(default_factory=lambda: np.full((2, 2), np.nan))
    heads: np.ndarray = field(default_factory=lambda: np.full((2, 2), np.nan))
    radii: np.ndarray = field(default_factory=lambda: np.full(2, np.nan))
    spacing_mm: tuple[float, float] | None = None
    facing: str | None = None
    image_file: str | None = None  # the image's file name when the annotation names it

    def annotated_levels(self) -> list[str]:
        return [lv for i, lv in enumerate(LEVELS) if np.isfinite(self.vertebrae[i]).all(axis=1).any()]

    def flipped(self, width: int) -> Annotation:
        """The same annotation on the image mirrored left–right (``width`` columns)."""
        def f(p: np.ndarray) -> np.ndarray:
            q = p.copy()
            q[..., 0] = width - 1 - q[..., 0]
            return q

        facing = {"left": "right", "right": "left"}.get(self.facing or "", None)
        return Annotation(self.name, self.source, f(self.vertebrae), f(self.s1), f(self.heads), self.radii.copy(),
                          self.spacing_mm, facing, self.image_file)

    def to_landmarks(self) -> dict[str, Any]:
        """The contract's ``landmarks`` object of the fully annotated structures (a body with all
        six points, S1 with both corners, heads with centre and radius; radius NaN → null)."""
        verts = {lv: {n: [float(x), float(y)] for n, (x, y) in zip(POINT_NAMES, self.vertebrae[i], strict=True)}
                 for i, lv in enumerate(LEVELS) if np.isfinite(self.vertebrae[i]).all()}
        s1 = ({"anterior": [float(v) for v in self.s1[0]], "posterior": [float(v) for v in self.s1[1]]}
              if np.isfinite(self.s1).all() else None)
        heads = [{"center": [float(v) for v in c], "radius_px": float(r) if math.isfinite(r) else None}
                 for c, r in zip(self.heads, self.radii, strict=True) if np.isfinite(c).all()]
        return {"vertebrae": verts, "s1_endplate": s1, "femoral_heads": heads}


def _number(text: Any, where: str, name: str) -> float:
    try:
        v = float(text)
    except (TypeError, ValueError):
        raise InputError(f"{where}, field {name}: {text!r} is not a number") from None
    if not math.isfinite(v):
        raise InputError(f"{where}, field {name}: {text!r} is not a finite number")
    return v


# --------------------------------------------------------------------------------------- BUU
def read_buu(path: str | Path) -> Annotation:
    """One BUU-LSPINE lateral CSV (see the module docstring)."""
    path = Path(path)
    try:
        rows = list(csv.reader(path.read_text(encoding="utf-8-sig").splitlines()))
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot be read as a CSV ({exc})") from exc
    rows = [r for r in rows if any(c.strip() for c in r)]
    if rows and rows[0] and rows[0][0].strip().lower() == "x1":
        rows = rows[1:]
    if len(rows) != len(BUU_ROWS):
        raise InputError(f"{path}: {len(rows)} data rows; a BUU-LSPINE lateral file has {len(BUU_ROWS)} (L1 superior, "
                         "L1 inferior … L5 inferior, S1 superior)")
    ann = Annotation(path.stem, str(path), facing="left")
    for k, (row, (level, edge)) in enumerate(zip(rows, BUU_ROWS, strict=True)):
        where = f"{path}: row {k + 1} ({level} {edge})"
        if len(row) < 4:
            raise InputError(f"{where}: {len(row)} fields; expected {', '.join(BUU_COLUMNS)}")
        cells = [c.strip() for c in row[:4]]
        if not any(cells):
            continue
        x1, y1, x2, y2 = (_number(c, where, n) for c, n in zip(cells, BUU_COLUMNS, strict=False))
        a, p = ((x1, y1), (x2, y2)) if x1 <= x2 else ((x2, y2), (x1, y1))  # facing left: anterior = smaller x
        if level == "S1":
            ann.s1[:] = (a, p)
        else:
            i = LEVEL_INDEX[level]
            names = ("anterior_superior", "posterior_superior") if edge == "superior" else \
                ("anterior_inferior", "posterior_inferior")
            ann.vertebrae[i, POINT_NAMES.index(names[0])] = a
            ann.vertebrae[i, POINT_NAMES.index(names[1])] = p
    return ann


def write_buu(ann: Annotation, path: str | Path) -> None:
    """Write the endplate corners of L1–L5 and S1 as a BUU-LSPINE lateral CSV (the image must be
    stored facing left; ``Annotation.flipped`` first otherwise)."""
    from ..fsio import atomic_write_text

    lines = [",".join(BUU_COLUMNS)]
    for level, edge in BUU_ROWS:
        if level == "S1":
            pts = ann.s1
        else:
            i = LEVEL_INDEX[level]
            names = ("anterior_superior", "posterior_superior") if edge == "superior" else \
                ("anterior_inferior", "posterior_inferior")
            pts = np.array([ann.vertebrae[i, POINT_NAMES.index(n)] for n in names])
        lines.append(",,,,0" if not np.isfinite(pts).all() else
                     ",".join(f"{v:.3f}" for v in pts.ravel()) + ",0")
    atomic_write_text(path, "\n".join(lines) + "\n")


# -------------------------------------------------------------------------------------- COCO
def keypoint_names() -> list[str]:
    """Every keypoint name the COCO reader knows: ``{level}_{point}``, ``S1_anterior``,
    ``S1_posterior``, ``femoral_head_1``, ``femoral_head_2``."""
    return [f"{lv}_{n}" for lv in LEVELS for n in POINT_NAMES] + [f"S1_{n}" for n in S1_POINTS] + \
        ["femoral_head_1", "femoral_head_2"]


def _place(ann: Annotation, name: str, xy: tuple[float, float], where: str) -> None:
    if name.startswith("femoral_head_") and name[-1] in "12":
        ann.heads[int(name[-1]) - 1] = xy
        return
    level, _, point = name.partition("_")
    if level == "S1" and point in S1_POINTS:
        ann.s1[S1_POINTS.index(point)] = xy
    elif level in LEVEL_INDEX and point in POINT_NAMES:
        ann.vertebrae[LEVEL_INDEX[level], POINT_NAMES.index(point)] = xy
    else:
        raise InputError(f"{where}: unknown keypoint name {name!r} (expected e.g. L3_anterior_superior, S1_anterior, "
                         "femoral_head_1)")


def _coco_image(img: Any, where: str) -> tuple[Any, str]:
    if not isinstance(img, dict) or "id" not in img or not isinstance(img.get("file_name"), str):
        raise InputError(f"{where}: needs 'id' and 'file_name'")
    return img["id"], img["file_name"]


def _coco_categories(categories: list[Any], path: Path) -> dict[Any, list[str]]:
    cats: dict[Any, list[str]] = {}
    for k, c in enumerate(categories):
        if not isinstance(c, dict) or not isinstance(c.get("keypoints"), list):
            raise InputError(f"{path}: categories[{k}]: field 'keypoints' (a list of names) is missing")
        cats[c.get("id")] = [str(n) for n in c["keypoints"]]
    return cats


def read_coco(path: str | Path) -> list[Annotation]:
    """A COCO keypoints file: ``images`` (``id``, ``file_name``), ``categories`` (``keypoints``:
    names), ``annotations`` (``image_id``, ``category_id``, ``keypoints`` ``[x, y, v, …]``;
    ``v`` = 0: not annotated). Several annotations of one image are merged."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: cannot be read as JSON ({exc})") from exc
    if not isinstance(doc, dict):
        raise InputError(f"{path}: a COCO file is a JSON object with images, annotations and categories")
    for key in ("images", "annotations", "categories"):
        if not isinstance(doc.get(key), list):
            raise InputError(f"{path}: field {key!r} is missing or not a list")
    cats = _coco_categories(doc["categories"], path)
    images: dict[Any, Annotation] = {}
    for k, img in enumerate(doc["images"]):
        iid, fname = _coco_image(img, f"{path}: images[{k}]")
        images[iid] = Annotation(Path(fname).stem, str(path), image_file=fname)
    for k, a in enumerate(doc["annotations"]):
        where = f"{path}: annotations[{k}]"
        if not isinstance(a, dict):
            raise InputError(f"{where}: not an object")
        if a.get("image_id") not in images:
            raise InputError(f"{where}, field image_id: {a.get('image_id')!r} is not in images")
        names = cats.get(a.get("category_id"), next(iter(cats.values()), None) if len(cats) == 1 else None)
        if names is None:
            raise InputError(f"{where}, field category_id: {a.get('category_id')!r} is not in categories")
        kp = a.get("keypoints")
        if not isinstance(kp, list) or len(kp) != 3 * len(names):
            raise InputError(f"{where}, field keypoints: expected {3 * len(names)} numbers (x, y, v per keypoint)")
        _coco_keypoints(images[a["image_id"]], kp, names, where)
    return list(images.values())


def _coco_keypoints(ann: Annotation, kp: list[Any], names: list[str], where: str) -> None:
    for j, name in enumerate(names):
        w = f"{where}, keypoint {j} ({name})"
        x, y, v = (_number(kp[3 * j + d], w, f) for d, f in enumerate("xyv"))
        if v > 0:
            _place(ann, name, (x, y), w)


def write_coco(anns: Iterable[Annotation], path: str | Path) -> None:
    """Write annotations as one COCO keypoints file (NaN points as ``v = 0``)."""
    from ..fsio import atomic_write_text

    names = keypoint_names()
    images, annotations = [], []
    for k, ann in enumerate(anns):
        images.append({"id": k + 1, "file_name": ann.image_file or ann.name})
        pts = np.concatenate([ann.vertebrae.reshape(-1, 2), ann.s1, ann.heads])
        kp: list[float] = []
        for p in pts:
            kp += [round(float(p[0]), 3), round(float(p[1]), 3), 2] if np.isfinite(p).all() else [0, 0, 0]
        annotations.append({"id": k + 1, "image_id": k + 1, "category_id": 1, "keypoints": kp,
                            "num_keypoints": int(sum(kp[2::3]) // 2)})
    doc = {"images": images, "annotations": annotations,
           "categories": [{"id": 1, "name": "spine", "keypoints": names}]}
    atomic_write_text(path, json.dumps(doc))


# ---------------------------------------------------------------------------------- sagittal
def _xy(value: Any, where: str) -> tuple[float, float]:
    if not isinstance(value, list | tuple) or len(value) != 2:
        raise InputError(f"{where}: expected [x, y], got {value!r}")
    return _number(value[0], where, "x"), _number(value[1], where, "y")


def _sagittal_landmarks(ann: Annotation, lm: Any, where: str) -> None:
    if not isinstance(lm, dict):
        raise InputError(f"{where}: field 'landmarks' is not an object")
    verts = lm.get("vertebrae") or {}
    if not isinstance(verts, dict):
        raise InputError(f"{where}: field 'landmarks.vertebrae' is not an object of levels")
    for level, pts in verts.items():
        if level not in LEVEL_INDEX:
            raise InputError(f"{where}: landmarks.vertebrae: unknown level {level!r}")
        if not isinstance(pts, dict):
            raise InputError(f"{where}: landmarks.vertebrae.{level} is not an object of points")
        for name, xy in pts.items():
            if name not in POINT_NAMES:
                raise InputError(f"{where}: landmarks.vertebrae.{level}: unknown point {name!r}")
            if xy is not None:
                ann.vertebrae[LEVEL_INDEX[level], POINT_NAMES.index(name)] = _xy(xy, f"{where}: landmarks.vertebrae."
                                                                                   f"{level}.{name}")
    _sagittal_s1_heads(ann, lm, where)


def _sagittal_s1_heads(ann: Annotation, lm: dict[str, Any], where: str) -> None:
    s1 = lm.get("s1_endplate")
    if s1 is not None:
        if not isinstance(s1, dict):
            raise InputError(f"{where}: landmarks.s1_endplate is not an object")
        for k, name in enumerate(S1_POINTS):
            if s1.get(name) is not None:
                ann.s1[k] = _xy(s1[name], f"{where}: landmarks.s1_endplate.{name}")
    heads = lm.get("femoral_heads") or []
    if not isinstance(heads, list) or len(heads) > 2:
        raise InputError(f"{where}: landmarks.femoral_heads must be a list of at most two heads")
    for k, h in enumerate(heads):
        w = f"{where}: landmarks.femoral_heads[{k}]"
        if not isinstance(h, dict) or "center" not in h:
            raise InputError(f"{w}: field 'center' is missing")
        ann.heads[k] = _xy(h["center"], f"{w}.center")
        if h.get("radius_px") is not None:
            ann.radii[k] = _number(h["radius_px"], w, "radius_px")


def read_sagittal(path: str | Path) -> list[Annotation]:
    """sagittal's own format: a JSON object ``{"image": {...}, "landmarks": {...}}`` (as
    ``sagittal geometry`` reads; an analysis document also works) or a list of them; the
    image is named by ``image.file`` when given, else by the JSON file's stem. Points as the
    contract's landmarks; a point left out or null is not annotated."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: cannot be read as JSON ({exc})") from exc
    objs = doc if isinstance(doc, list) else [doc]
    out = []
    for k, obj in enumerate(objs):
        where = f"{path}" + (f": [{k}]" if isinstance(doc, list) else "")
        if not isinstance(obj, dict) or "landmarks" not in obj or "image" not in obj:
            raise InputError(f"{where}: expected an object with fields 'image' and 'landmarks'")
        image = obj["image"]
        if not isinstance(image, dict):
            raise InputError(f"{where}: field 'image' is not an object")
        fname = image.get("file")
        ann = Annotation(Path(fname).stem if isinstance(fname, str) else path.stem, str(path),
                         image_file=fname if isinstance(fname, str) else None)
        sp = image.get("pixel_spacing_mm")
        if sp is not None:
            if not isinstance(sp, list) or len(sp) != 2:
                raise InputError(f"{where}: field image.pixel_spacing_mm: expected [row, column] millimetres")
            ann.spacing_mm = (_number(sp[0], where, "image.pixel_spacing_mm[0]"),
                              _number(sp[1], where, "image.pixel_spacing_mm[1]"))
        if image.get("anterior") in ("left", "right"):
            ann.facing = image["anterior"]
        _sagittal_landmarks(ann, obj["landmarks"], where)
        out.append(ann)
    return out


def write_sagittal(ann: Annotation, path: str | Path, image: dict[str, Any] | None = None) -> None:
    """Write one annotation in sagittal's format (only annotated points)."""
    from ..fsio import atomic_write_text

    verts: dict[str, dict[str, list[float]]] = {}
    for i, lv in enumerate(LEVELS):
        pts = {n: [float(x), float(y)] for n, (x, y) in zip(POINT_NAMES, ann.vertebrae[i], strict=True)
               if math.isfinite(x) and math.isfinite(y)}
        if pts:
            verts[lv] = pts
    s1 = {n: [float(v) for v in ann.s1[k]] for k, n in enumerate(S1_POINTS) if np.isfinite(ann.s1[k]).all()}
    heads = [{"center": [float(v) for v in c], **({"radius_px": float(r)} if math.isfinite(r) else {})}
             for c, r in zip(ann.heads, ann.radii, strict=True) if np.isfinite(c).all()]
    img = dict(image or {})
    if ann.spacing_mm is not None:
        img.setdefault("pixel_spacing_mm", list(ann.spacing_mm))
    if ann.facing:
        img.setdefault("anterior", ann.facing)
    if ann.image_file:
        img.setdefault("file", ann.image_file)
    atomic_write_text(path, json.dumps({"image": img, "landmarks": {"vertebrae": verts, "s1_endplate": s1 or None,
                                                                    "femoral_heads": heads}}))


# ----------------------------------------------------------------- per-image corner JSON
CORNERS = ("anterior_superior", "posterior_superior", "posterior_inferior", "anterior_inferior")


def read_corner_json(path: str | Path, levels: list[str], corners: list[str]) -> Annotation:
    """One image's ``{"keypoints": [[[x, y, visibility] × 4] per vertebra], ...}`` file (the
    layout torchvision's Keypoint R-CNN takes; the Spondylolisthesis Vertebral Landmark Dataset
    is distributed so). The file names neither the levels nor the corners: ``levels`` gives
    each vertebra's level in the file's order and ``corners`` the four corners' names
    (``CORNERS``) in each vertebra's order — from the set's documentation, never guessed. The
    levels must run from head to foot down the image (else the error says so: check them); an S1
    gets its superior endplate only; visibility 0 is not annotated."""
    path = Path(path)
    _check_corner_args(levels, corners)
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"{path}: not readable JSON ({exc})") from None
    kps = data.get("keypoints") if isinstance(data, dict) else None
    if not isinstance(kps, list):
        raise InputError(f"{path}: no 'keypoints' list")
    if len(kps) != len(levels):
        raise InputError(f"{path}: {len(kps)} vertebrae in 'keypoints' but {len(levels)} levels given ({', '.join(levels)})")
    ann = Annotation(path.stem, str(path))
    centre_y = []
    for k, (lv, vert) in enumerate(zip(levels, kps, strict=True)):
        pts = _corner_points(vert, corners, f"{path}, keypoints[{k}] ({lv})")
        if pts:
            centre_y.append((float(np.mean([q[1] for q in pts.values()])), k, lv))
        if lv == "S1":
            for m, name in enumerate(("anterior_superior", "posterior_superior")):
                if name in pts:
                    ann.s1[m] = pts[name]
            continue
        for name, xy in pts.items():
            ann.vertebrae[LEVEL_INDEX[lv], POINT_NAMES.index(name)] = xy
    for (y0, k0, lv0), (y1, k1, lv1) in zip(centre_y, centre_y[1:], strict=False):
        if (LEVEL_INDEX.get(lv0, len(LEVELS)) < LEVEL_INDEX.get(lv1, len(LEVELS))) != (y0 < y1):
            raise InputError(f"{path}: keypoints[{k0}] ({lv0}) and keypoints[{k1}] ({lv1}) are not in head-to-foot "
                             "order down the image: check the levels given")
    return ann


def _check_corner_args(levels: list[str], corners: list[str]) -> None:
    if sorted(corners) != sorted(CORNERS):
        raise InputError(f"corners must name each of {', '.join(CORNERS)} once, not {corners}")
    if any(lv != "S1" and lv not in LEVEL_INDEX for lv in levels) or len(set(levels)) != len(levels):
        raise InputError(f"levels must be distinct vertebral levels (C7 … L5, S1), not {levels}")


def _corner_points(vert: Any, corners: list[str], where: str) -> dict[str, tuple[float, float]]:
    """``{corner name: (x, y)}`` of one vertebra's annotated corners."""
    if not isinstance(vert, list) or len(vert) != 4:
        raise InputError(f"{where}: expected four [x, y, visibility] corners")
    pts = {}
    for j, (name, kp) in enumerate(zip(corners, vert, strict=True)):
        if not isinstance(kp, list) or len(kp) not in (2, 3):
            raise InputError(f"{where}, corner {j} ({name}): expected [x, y, visibility], not {kp!r}")
        x, y = _number(kp[0], where, f"corner {j} x"), _number(kp[1], where, f"corner {j} y")
        if len(kp) == 2 or _number(kp[2], where, f"corner {j} visibility") != 0:
            pts[name] = (x, y)
    return pts


# ------------------------------------------------------------------------------------ pairing
def read_annotations(path: str | Path, fmt: str) -> list[Annotation]:
    """Every annotation under ``path`` (a file, or a folder of ``*.csv`` / ``*.json``) in ``fmt``."""
    if fmt not in FORMATS:
        raise InputError(f"unknown annotation format {fmt!r}; use one of {', '.join(FORMATS)}")
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such annotation file or folder")
    files = [path] if path.is_file() else sorted(path.glob("*.csv" if fmt == "buu" else "*.json"))
    if not files:
        raise InputError(f"{path}: no {'.csv' if fmt == 'buu' else '.json'} annotation files in this folder")
    out: list[Annotation] = []
    for f in files:
        out += [read_buu(f)] if fmt == "buu" else read_coco(f) if fmt == "coco" else read_sagittal(f)
    return out


def image_files(inputs: Iterable[str | Path]) -> list[Path]:
    """The image files among ``inputs`` (files, or folders searched recursively)."""
    out: list[Path] = []
    for p in map(Path, inputs):
        if p.is_dir():
            out += sorted(q for q in p.rglob("*") if q.is_file() and q.suffix.lower() in IMAGE_SUFFIXES
                          and not q.name.startswith("."))
        elif p.is_file():
            out.append(p)
        else:
            raise InputError(f"{p}: no such image file or folder")
    return out


def pair(images: list[Path], annotations: list[Annotation]) -> tuple[list[tuple[Path, Annotation]], list[str]]:
    """Pair images with annotations by file name (``image_file``) or stem; returns the pairs and
    a message for every image without an annotation and every annotation without an image."""
    by_name = {p.name: p for p in images}
    by_stem: dict[str, list[Path]] = {}
    for p in images:
        by_stem.setdefault(p.stem, []).append(p)
    pairs, used, problems = [], set(), []
    for ann in annotations:
        img = by_name.get(Path(ann.image_file).name) if ann.image_file else None
        if img is None:
            cands = by_stem.get(ann.name, [])
            if len(cands) > 1:
                problems.append(f"{ann.source}: image {ann.name!r} matches {len(cands)} files; skipped")
                continue
            img = cands[0] if cands else None
        if img is None:
            problems.append(f"{ann.source}: no image named {ann.image_file or ann.name!r} among the inputs; skipped")
            continue
        pairs.append((img, ann))
        used.add(img)
    problems += [f"{p}: no annotation for this image; skipped" for p in images if p not in used]
    return pairs, problems
