"""Landmarks on CT and MR: the plane model (the radiograph model's two stages, fine-tuned on
phantom CT/MR planes: ``sagittal/weights/landmarks_planes.pt``) run on the spine's curved
mid-sagittal reformat (``io.volume.spine_plane``), and the femoral heads found in 3-D.

``import sagittal.landmarks.volume`` does not import torch.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np

from ..errors import CalibrationError
from ..io.volume import Centreline, SpinePlane, VolumeGeometry, lps_to_index

#: CT window the plane model sees (HU): soft tissue to dense cortex
CT_WINDOW_HU = (-250.0, 1100.0)
PLANES_WEIGHTS = "landmarks_planes.pt"
#: coarse body confidence that counts a slice as showing a body (``postprocess.WEAK_THRESHOLD``)
WEAK_BODY = 0.1
#: how far from a sagittal slab's middle the slices for its centre line are taken (mm): a
#: scoliotic spine strays up to about 30 mm, a body is about 40 mm wide
CENTRELINE_HALF_MM = 45.0
#: the widest slice (× its height) the coarse stage sees when looking for the spine on a series
WIDTH_PER_HEIGHT = 0.6
#: femoral heads: bone over this (HU) after a light smoothing, closed and holes filled (an
#: osteoporotic head's marrow can be near 120 HU, muscle is 40–60; thick slices thin the cortex)
HEAD_BONE_HU = 110.0
#: adult femoral head radius range (mm); a bone ball outside it is not a head
HEAD_RADIUS_MM = (15.0, 35.0)
#: where the heads are searched from the S1 endplate's midpoint (mm): caudal, lateral either side
HEAD_SEARCH_CAUDAL_MM = (-20.0, 190.0)
HEAD_SEARCH_LATERAL_MM = (35.0, 150.0)
HEAD_SEARCH_AP_MM = 120.0
#: CT: each head placed again on its own surface (``ct_head_surface``)
CT_HEAD_SURFACE = True


def planes_weights_path(path: str | os.PathLike[str] | None = None) -> Path:
    """The plane model's weights: ``path``, else ``$SAGITTAL_PLANES_WEIGHTS``, else the packaged file."""
    from .weights import packaged, weights_path

    return weights_path(path or os.environ.get("SAGITTAL_PLANES_WEIGHTS") or packaged(PLANES_WEIGHTS))


class PlaneImage(np.ndarray):
    """A plane as the model takes it (``plane_input``), tagged with its ``modality`` ("CT", "MR"):
    the plane model refines CT planes with its CT stage (``plane_detector.REFINE_CT``). Arrays
    made from it keep the tag; a plain array has none (refined as MR)."""

    modality: str | None

    def __new__(cls, image: np.ndarray, modality: str | None) -> PlaneImage:
        obj = np.asarray(image, np.float32).view(cls)
        obj.modality = modality
        return obj

    def __array_finalize__(self, obj: Any) -> None:
        self.modality = getattr(obj, "modality", None)

    def __reduce__(self) -> Any:  # the tag travels with a pickled plane
        fn, args, state = cast(tuple[Any, Any, Any], super().__reduce__())
        return fn, args, (state, self.modality)

    def __setstate__(self, state: Any) -> None:
        base, self.modality = state
        super().__setstate__(base)


def plane_input(image: np.ndarray, modality: str, window: tuple[float, float] | None = None) -> np.ndarray:
    """A reformatted plane as the model takes it before ``preprocess.normalise``: CT clipped to
    ``window`` HU (default ``CT_WINDOW_HU``), MR unchanged. ``image (rows, cols)`` float32."""
    img = np.asarray(image, np.float32)
    if modality == "CT":
        lo, hi = window or CT_WINDOW_HU
        return np.clip(img, lo, hi)
    return img


# ------------------------------------------------------------------------------ sagittal series


@dataclass(frozen=True)
class OrientedSlices:
    """A sagittal series' slices turned head up, patient facing the image's left:
    ``images (n, rows, cols)``; ``index(k, xy)`` gives the volume's ``(k, i, j)`` of a pixel."""

    images: np.ndarray
    transpose: bool
    flip_rows: bool
    flip_cols: bool
    shape: tuple[int, int]  # the volume's (rows, cols)

    def index(self, k: float, xy: np.ndarray) -> np.ndarray:
        x, y = float(xy[0]), float(xy[1])
        r_, c_ = self.images.shape[1:]
        if self.flip_rows:
            y = r_ - 1 - y
        if self.flip_cols:
            x = c_ - 1 - x
        i, j = (x, y) if self.transpose else (y, x)
        return np.array([k, i, j], float)


def oriented_slices(volume: np.ndarray, geom: VolumeGeometry) -> OrientedSlices:
    """Turn each slice of a sagittal ``volume (n, rows, cols)`` head up, anterior left."""
    caudal, posterior = np.array([0.0, 0.0, -1.0]), np.array([0.0, 1.0, 0.0])
    transpose = abs(geom.row_dir @ caudal) > abs(geom.col_dir @ caudal)
    vertical, horizontal = (geom.row_dir, geom.col_dir) if transpose else (geom.col_dir, geom.row_dir)
    imgs = np.transpose(volume, (0, 2, 1)) if transpose else volume
    flip_rows, flip_cols = bool(vertical @ caudal < 0), bool(horizontal @ posterior < 0)
    if flip_rows:
        imgs = imgs[:, ::-1]
    if flip_cols:
        imgs = imgs[:, :, ::-1]
    return OrientedSlices(np.ascontiguousarray(imgs, np.float32), bool(transpose), flip_rows, flip_cols,
                          (volume.shape[1], volume.shape[2]))


def slice_centreline(detector: Any, volume: np.ndarray, geom: VolumeGeometry, modality: str = "MR",
                     max_slices: int = 9) -> Centreline:
    """The spine's centre line in a sagittal series from the plane model's coarse stage run on
    its slices within ``CENTRELINE_HALF_MM`` of the slab's middle (every one, or evenly spread
    ``max_slices`` of them: a body spans 40–50 mm, many slices). The bodies found are kept only
    where the image at their centre reads like marrow (``CENTRELINE_MARROW_RATIO``), grouped
    across slices by position (the confidence-weighted mean of the slices that show a body with
    at least half its best confidence), and each body's lateral position is the middle of the run
    of slices, every one of the series, on which its centre reads as marrow (``marrow_run``: the
    body's own width; the detections' confidence is no measure of it, they fade unevenly towards
    the body's edges); of those points the centre line keeps the chain that a spine can follow
    (``centreline_chain``)."""
    ori = oriented_slices(volume, geom)
    n, rows, cols = ori.images.shape
    # the spine lies near the slab's middle: slices within ``CENTRELINE_HALF_MM`` of it (a slab
    # wide enough for the hips would otherwise leave a few slices far apart on the spine)
    offset_mm = (np.arange(n) - (n - 1) / 2) * (geom.slice_spacing_mm or 1.0)
    near = np.flatnonzero(np.abs(offset_mm) <= CENTRELINE_HALF_MM)
    near = near if len(near) else np.arange(n)
    ks = near[np.unique(np.round(np.linspace(0, len(near) - 1, min(len(near), max_slices))).astype(int))]
    # a wide field (a square whole-spine field) is cut to its central columns, at most
    # ``WIDTH_PER_HEIGHT`` × its height wide, so that the bodies are not shrunk to a few pixels
    width = min(cols, max(64, int(WIDTH_PER_HEIGHT * rows)))
    c0 = (cols - width) // 2
    dets = _coarse_slices(detector, [plane_input(ori.images[k][:, c0:c0 + width], modality) for k in ks])
    for det in dets:
        for b in det.bodies:
            b.centre = b.centre + np.array([c0, 0.0])
            b.points = b.points + np.array([c0, 0.0])
    found = [(int(k), b.centre, b.confidence, float(np.linalg.norm(b.points[1] - b.points[2])))
             for k, det in zip(ks, dets, strict=True) for b in det.bodies if b.confidence >= WEAK_BODY]
    if not found:
        raise CalibrationError("no vertebral body found on any slice of the sagittal series")
    a = geom.affine()
    ref = slices_marrow(ori.images, found)
    pts, wts = _line_points(ori, a, marrow_like(ori.images, found, ref), ori.images, ref)
    keep = centreline_chain(pts, wts)
    pts, wts = pts[keep], wts[keep]
    # the bodies as found, each at its detections' mean: kept where they all lie on one course a
    # spine can follow and the marrow runs agree with them (a straight spine well inside the slab;
    # the runs are quantised to half a slice, and a body with oedema drops out of them)
    raw, raw_w = _line_points(ori, a, found, None, None)
    if len(pts) and len(centreline_chain(raw, raw_w)) == len(raw):
        order = np.argsort(pts[:, 2])
        off = np.abs(raw[:, 0] - np.interp(raw[:, 2], pts[order, 2], pts[order, 0]))
        if off.max() <= max(CENTRELINE_AGREE_MM, geom.slice_spacing_mm or 0.0):
            return Centreline(raw, raw_w)
    return Centreline(pts, wts)


def _coarse_slices(detector: Any, images: list[np.ndarray]) -> list[Any]:
    """The coarse stage's detections of the slices; where the detector's ``centreline_plain`` is on
    (``PlaneDetector``'s default), of each slice as given only (``coarse(..., looks=False)``) —
    without the other looks (equalised, inverted) it tries on an image where few levels are named,
    which on a slab are mostly the slices beside the spine (about as many network passes again:
    0.2 -> 0.1 s of the benchmark MR's centre line); else (a stand-in, or the flag off) with them."""
    if getattr(detector, "centreline_plain", False):
        return list(detector.coarse(images, looks=False)[0])
    return list(detector.coarse(images)[0])


def _line_points(ori: OrientedSlices, affine: np.ndarray, found: list[_Found], images: np.ndarray | None,
                 ref: float | None) -> tuple[np.ndarray, np.ndarray]:
    """The centre line's points (LPS) and weights from the bodies ``found`` on the slices: grouped
    across slices by position, each at the confidence-weighted mean of the slices that show it with
    at least half its best confidence, or, given ``images`` and marrow ``ref``, at the middle of
    its run of marrow slices (``marrow_run``)."""
    found = sorted(found, key=lambda f: -f[2])
    groups: list[list[_Found]] = []
    for f in found:
        for g in groups:
            if np.linalg.norm(g[0][1] - f[1]) < 0.5 * max(g[0][3], 1.0) and all(m[0] != f[0] for m in g):
                g.append(f)
                break
        else:
            groups.append([f])
    pts, wts = [], []
    for g in groups:
        best = g[0][2]
        use = [m for m in g if m[2] >= 0.5 * best]
        w = np.array([m[2] for m in use])
        k = float(np.average([m[0] for m in use], weights=w))
        xy = np.average(np.array([m[1] for m in use]), axis=0, weights=w)
        run = marrow_run(images, g[0][0], xy, g[0][3], ref) if images is not None and ref is not None else None
        if run is not None:
            k = (run[0] + run[1]) / 2
        pts.append((affine @ np.array([*ori.index(k, xy), 1.0]))[:3])
        wts.append(float(best * len(use)))
    return np.asarray(pts, float).reshape(-1, 3), np.asarray(wts, float)


#: a body found on a slice counts for the centre line only where the image at its centre is within
#: this ratio of the median at the centres of the confident bodies (marrow): the lateral slices
#: of a scoliotic spine's slab show lung (air-dark) and muscle, which the coarse stage can read as
#: bodies (on T1 the phantom's lung is 0.03, muscle 0.6, marrow 1 ± the bias field's 0.25)
CENTRELINE_MARROW_RATIO = (0.7, 1.4)
#: the spine's lateral course between two points of its centre line at least
#: ``CENTRELINE_MIN_STEP_MM`` apart in height: it moves sideways by at most
#: ``CENTRELINE_LATERAL_MM`` + ``CENTRELINE_SLOPE`` × their height difference (a 30 mm scoliotic
#: curve over half a spine is about 0.3 mm per mm)
CENTRELINE_SLOPE = 0.4
CENTRELINE_LATERAL_MM = 6.0
CENTRELINE_MIN_STEP_MM = 10.0
#: the bodies' detection means are kept as the line where the marrow runs agree with them within
#: this (or a slice spacing, if larger)
CENTRELINE_AGREE_MM = 4.0


#: a body found on one slice: (slice index, centre xy, confidence, size in pixels)
_Found = tuple[int, np.ndarray, float, float]


def _centre_value(images: np.ndarray, k: int, xy: np.ndarray, size: float) -> float:
    """The median of slice ``k`` of ``images (n, rows, cols)`` over a square about ``xy`` a fifth
    of a body's ``size`` (pixels) from it to either side: what a body's centre reads."""
    rows, cols = images.shape[1:]
    r = max(2, int(0.2 * size))
    x, y = int(round(float(xy[0]))), int(round(float(xy[1])))
    box = images[k, max(0, y - r):min(rows, y + r + 1), max(0, x - r):min(cols, x + r + 1)]
    return float(np.median(box)) if box.size else 0.0


def slices_marrow(images: np.ndarray, found: list[_Found]) -> float | None:
    """What marrow reads on ``images``: the median of the centres of the bodies found with at
    least half the best confidence; ``None`` where it is not positive (nothing to compare with)."""
    if not found:
        return None
    values = np.array([_centre_value(images, f[0], f[1], f[3]) for f in found])
    conf = np.array([f[2] for f in found])
    ref = float(np.median(values[conf >= 0.5 * conf.max()]))
    return ref if ref > 0 else None


def _reads_as_marrow(value: float, ref: float) -> bool:
    lo, hi = CENTRELINE_MARROW_RATIO
    return lo * ref <= value <= hi * ref


def marrow_like(images: np.ndarray, found: list[_Found], ref: float | None) -> list[_Found]:
    """The bodies ``(slice, centre xy, confidence, size px)`` found on ``images (n, rows, cols)``
    whose centre reads within ``CENTRELINE_MARROW_RATIO`` of marrow ``ref``
    (``slices_marrow``); all of them where ``ref`` is ``None`` or none would be left."""
    if ref is None:
        return found
    kept = [f for f in found if _reads_as_marrow(_centre_value(images, f[0], f[1], f[3]), ref)]
    return kept or found


def marrow_run(images: np.ndarray, k: int, xy: np.ndarray, size: float, ref: float) -> tuple[int, int] | None:
    """The first and last slice of the run of ``images (n, rows, cols)`` about slice ``k`` on
    which the point ``xy`` reads as marrow ``ref`` (``CENTRELINE_MARROW_RATIO``): the lateral
    extent of the body centred there, cut by the slab where the body reaches beyond it; ``None``
    where slice ``k`` itself does not read as marrow there."""
    def marrow(kk: int) -> bool:
        return _reads_as_marrow(_centre_value(images, kk, xy, size), ref)

    if not marrow(k):
        return None
    first, last = k, k
    while first > 0 and marrow(first - 1):
        first -= 1
    while last < len(images) - 1 and marrow(last + 1):
        last += 1
    return first, last


def centreline_chain(points_lps: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Indices (ascending height) of the centre-line points ``(n, 3)`` LPS that a spine can
    follow: of the chains ordered by height, each step at least ``CENTRELINE_MIN_STEP_MM`` high
    and within the lateral course (``CENTRELINE_LATERAL_MM`` + ``CENTRELINE_SLOPE`` × the step),
    the one of the largest total weight. A stray point (a structure beside the spine read as a
    body) cannot join the spine's chain without dropping its neighbours, whose weight is larger."""
    if len(points_lps) == 0:
        return np.zeros(0, int)
    order = np.argsort(points_lps[:, 2], kind="stable")
    z, x, w = points_lps[order, 2], points_lps[order, 0], np.asarray(weights, float)[order]
    total, prev = w.copy(), np.full(len(z), -1)
    for i in range(len(z)):
        for j in range(i):
            dz = z[i] - z[j]
            if dz >= CENTRELINE_MIN_STEP_MM and abs(x[i] - x[j]) <= CENTRELINE_LATERAL_MM + CENTRELINE_SLOPE * dz \
                    and total[j] + w[i] > total[i]:
                total[i], prev[i] = total[j] + w[i], j
    i, chain = int(np.argmax(total)), []
    while i >= 0:
        chain.append(i)
        i = int(prev[i])
    return np.asarray(order[chain[::-1]], int)


# ------------------------------------------------------------------------------ femoral heads


@dataclass(frozen=True)
class Head:
    centre_lps: np.ndarray  # (3,)
    radius_mm: float
    score: float  # the distance-transform peak over the radius range's middle, capped at 1


def _field_depth_mm(shape: tuple[int, ...], geom: VolumeGeometry, idx: np.ndarray) -> np.ndarray:
    """Distance (mm) of points given as voxel indices ``(..., 3)`` to the nearest face of the
    volume's field (the box between its outer voxel centres; negative outside): exact for a box,
    whose axes are orthogonal in millimetres."""
    steps = np.array([geom.slice_spacing_mm or 1.0, *geom.pixel_spacing_mm], float)
    upper = np.asarray(shape[:3], float) - 1
    return np.asarray((np.minimum(idx, upper - idx) * steps).min(axis=-1), float)


def _grid_index(geom: VolumeGeometry, origin: np.ndarray, axes: tuple[np.ndarray, ...],
                ranges: tuple[np.ndarray, ...]) -> np.ndarray:
    """Voxel indices ``(len(u), len(v), len(w), 3)`` of the grid ``origin + u*axes[0] + v*axes[1] +
    w*axes[2]`` over ``ranges = (u, v, w)``: the index is affine in the grid's coordinates, so it is
    built from the origin's and each axis' step (no LPS point per voxel, no matrix product each)."""
    i0 = lps_to_index(geom, np.asarray(origin, float))
    d = [lps_to_index(geom, np.asarray(origin, float) + np.asarray(ax, float)) - i0 for ax in axes]
    u, v, w = ranges
    return np.asarray(i0 + u[:, None, None, None] * d[0] + v[None, :, None, None] * d[1] + w[None, None, :, None] * d[2],
                      float)


def ct_bone(values: np.ndarray) -> np.ndarray:
    """Bone of a CT sampled in HU (lightly smoothed first): over ``HEAD_BONE_HU``."""
    from scipy import ndimage

    return np.asarray(ndimage.gaussian_filter(values, 0.7) > HEAD_BONE_HU, bool)


def _deepest_bone(volume: np.ndarray, geom: VolumeGeometry, origin: np.ndarray, axes: tuple[np.ndarray, ...],
                  ranges: tuple[np.ndarray, ...], grid_mm: float,
                  bone_of: Callable[[np.ndarray], np.ndarray] = ct_bone) -> tuple[np.ndarray, float] | None:
    """The deepest point of the bone (``bone_of`` the sampled values; closed, holes filled)
    sampled on the grid ``origin + u*axes[0] + v*axes[1] + w*axes[2]`` over ``ranges``: its LPS
    position and depth (mm), the grid's faces counting as outside. ``None`` when there is no bone,
    or when the deepest ball reaches the edge of the volume's field (a head cut by the field is
    not measured)."""
    got = _bone_depth(volume, geom, origin, axes, ranges, grid_mm, bone_of)
    if got is None:
        return None
    depth, box = got
    r = float(depth.max())
    if r <= 0:
        return None
    top = depth >= r - 0.5 * grid_mm
    where = (np.argwhere(top) + np.array([b.start for b in box])).astype(float)
    wts = depth[top]
    c = (where * wts[:, None]).sum(0) / wts.sum()
    at = [np.interp(c[a], np.arange(len(rng)), rng) for a, rng in enumerate(ranges)]
    return origin + at[0] * axes[0] + at[1] * axes[1] + at[2] * axes[2], r


def _bone_depth(volume: np.ndarray, geom: VolumeGeometry, origin: np.ndarray, axes: tuple[np.ndarray, ...],
                ranges: tuple[np.ndarray, ...], grid_mm: float,
                bone_of: Callable[[np.ndarray], np.ndarray]) -> tuple[np.ndarray, tuple[slice, ...]] | None:
    """``_deepest_bone``'s depth map (mm; 0 outside the bone and where a ball would reach the
    field's edge) over the bone's bounding box ``box`` within the grid; ``None`` without bone."""
    from scipy import ndimage

    idx = _grid_index(geom, origin, axes, ranges)
    vol = volume if volume.dtype in (np.float32, np.int16, np.uint16) else np.asarray(volume, np.float32)
    values = ndimage.map_coordinates(vol, idx.reshape(-1, 3).T, output=np.float32, order=1, mode="constant",
                                     cval=float(np.min(volume)) if bone_of is not ct_bone else -1000.0,
                                     prefilter=False).reshape(idx.shape[:-1])
    raw = bone_of(values)
    if not raw.any():
        return None
    # the bone's bounding box, 2 voxels wider (the closing's reach), within the grid: the closing,
    # the filling of holes and the distance transform there are the whole grid's (all else is
    # background, and the grid's faces stay its faces), at a fraction of the cost
    nz = [np.flatnonzero(raw.any(axis=tuple(b for b in range(3) if b != a))) for a in range(3)]
    box = tuple(slice(max(0, int(n[0]) - 2), min(raw.shape[a], int(n[-1]) + 3)) for a, n in enumerate(nz))
    bone = ndimage.binary_fill_holes(ndimage.binary_closing(raw[box], iterations=1, border_value=0))
    if not bone.any():
        return None
    depth = ndimage.distance_transform_edt(np.pad(bone, 1), sampling=grid_mm)[1:-1, 1:-1, 1:-1]
    inside = depth > 0  # balls touching the field's edge: not seen (measured on the bone only)
    d = depth[inside]
    d[_field_depth_mm(volume.shape, geom, idx[box][inside]) < d + grid_mm] = 0
    depth[inside] = d
    return depth, box


def ct_femoral_heads(volume: np.ndarray, geom: VolumeGeometry, plane: SpinePlane, s1_mid_lps: np.ndarray,
                     why: list[str] | None = None) -> list[Head]:
    """Femoral head centres in a CT (HU), found in 3-D: in a box caudal to the S1 endplate and
    35–150 mm to either side of the spine's plane, resampled along the plane's axes (4 mm, then
    1.5 mm within 8 mm of the ball found), the bone (smoothed, holes filled) is distance-transformed; on
    each side its deepest point is the head's centre and the depth its radius (a ball of bone is
    deepest at its centre), accepted for a radius of 15–35 mm; then (``CT_HEAD_SURFACE``) the
    head is placed on its own surface, read along rays from that centre (``ct_head_surface``: the
    ball holds the acetabulum too where the joint space is thinner than the grid and the smoothing
    can part), and refused where that surface is not round. At most one head per side; ``why``
    gets the reason for each side without one (its patient side: ``HEAD_WHY``)."""
    return _femoral_heads(volume, geom, plane, s1_mid_lps, ct_bone,
                          refine=(lambda h: ct_head_surface(volume, geom, h)) if CT_HEAD_SURFACE else None, why=why)


def _search_ranges(side: float, g: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The head search's grid on one side (``+1``/``-1`` along the plane's normal), step ``g`` mm:
    along the plane's columns, rows and normal from the S1 endplate's midpoint."""
    return (np.arange(-HEAD_SEARCH_AP_MM, HEAD_SEARCH_AP_MM + 1e-6, g),
            np.arange(HEAD_SEARCH_CAUDAL_MM[0], HEAD_SEARCH_CAUDAL_MM[1] + 1e-6, g),
            side * np.arange(HEAD_SEARCH_LATERAL_MM[0], HEAD_SEARCH_LATERAL_MM[1] + 1e-6, g))


def _femoral_heads(volume: np.ndarray, geom: VolumeGeometry, plane: SpinePlane, s1_mid_lps: np.ndarray,
                   bone_of: Callable[[np.ndarray], np.ndarray], rim_mm: float = 0.0,
                   refine: Callable[[Head], Head | None] | None = None, why: list[str] | None = None,
                   check: Callable[[Head], Head | None] | None = None) -> list[Head]:
    """Both sides' search (``ct_femoral_heads``); ``rim_mm`` is added to each radius found (a
    cortex that ``bone_of`` leaves out); ``refine`` (CT: ``ct_head_surface``) places each head
    found again, or refuses it. ``why`` gets, per side without a head, the patient's side and the
    reason (``HEAD_WHY``). Where the deepest ball is no head, up to ``HEAD_CANDIDATES`` further balls
    are tried, each placed by ``refine`` or, without one, kept as found where ``check`` (MR:
    ``mr_head_surface``) finds it round."""
    cand_refine = refine
    if refine is None and check is not None and MR_HEAD_CANDIDATES:
        cand_refine = lambda h: h if check(h) is not None else None  # noqa: E731
    axes = (plane.col_axis, plane.row_axis, plane.normal)
    out: list[Head] = []
    sides: list[str] = []
    corners = np.array([[k, i, j, 1] for k in (0, volume.shape[0] - 1) for i in (0, volume.shape[1] - 1)
                        for j in (0, volume.shape[2] - 1)], float) @ geom.affine().T
    for side in (1.0, -1.0):
        name = "left" if side * float(plane.normal[0]) > 0 else "right"  # LPS: +X is the patient's left
        reach = float(np.max(side * ((corners[:, :3] - s1_mid_lps) @ plane.normal)))
        if reach < HEAD_SEARCH_LATERAL_MM[0] + HEAD_RADIUS_MM[0]:
            # the field ends before a head could lie wholly in it on this side (a sagittal MR slab)
            _note(why, name, "field")
            continue
        g = 4.0
        ranges = _search_ranges(side, g)
        found = _deepest_bone(volume, geom, s1_mid_lps, axes, ranges, g, bone_of)
        head, reason = _head_at(volume, geom, axes, found, bone_of, rim_mm, refine, s1_mid_lps, plane)
        if head is None and found is not None and cand_refine is not None and HEAD_CANDIDATES > 1:
            # the deepest ball is not a head (a mass of pelvis and femur merged on the coarse grid):
            # the next deepest balls, each only as a round head in place (``refine``, ``_in_place``)
            for cand in _bone_peaks(volume, geom, s1_mid_lps, axes, ranges, g, bone_of, HEAD_CANDIDATES,
                                    exclude=found):
                head, why_not = _head_at(volume, geom, axes, cand, bone_of, rim_mm, cand_refine, s1_mid_lps, plane)
                if head is not None:
                    break
                # the reason of the ball that came nearest to a head (round but out of place beats not round)
                reason = max(reason, why_not, key=_REASON_STAGE.index)
        if head is not None:
            out.append(head)
            sides.append(name)
        else:
            _note(why, name, reason)
    kept = _as_a_pair(out, s1_mid_lps, plane)
    for h, name in zip(out, sides, strict=True):
        if not any(h is k for k in kept):
            _note(why, name, "pair")
    return kept


#: why a side has no femoral head (``_femoral_heads``' ``why``)
HEAD_WHY = {
    "field": "the field ends before a femoral head could lie wholly in it on that side",
    "none": "no ball of bone of a femoral head's size (radius 15-35 mm) wholly in the field caudal to S1 on that side",
    "round": "the ball of bone found on that side is not round (no femoral head's surface)",
    "place": "the head-sized ball found on that side lies where no femoral head can, from the S1 endplate",
    "pair": "the heads found on the two sides cannot be one pelvis' pair (height along the patient, distance): "
            "which is not a head is not known, so neither is used",
}


#: how far a ball got towards being a head, for the reason reported (``_femoral_heads``)
_REASON_STAGE = ("field", "none", "round", "place")


def _note(why: list[str] | None, side: str, reason: str) -> None:
    if why is not None:
        why.append(f"no {side} femoral head: {HEAD_WHY[reason]}")


def _head_at(volume: np.ndarray, geom: VolumeGeometry, axes: tuple[np.ndarray, ...],
             found: tuple[np.ndarray, float] | None, bone_of: Callable[[np.ndarray], np.ndarray], rim_mm: float,
             refine: Callable[[Head], Head | None] | None, s1_mid_lps: np.ndarray,
             plane: SpinePlane) -> tuple[Head | None, str]:
    """The head about the coarse grid's ball ``found`` (centre, depth): the fine search's ball within
    8 mm of it, then ``refine``'s, kept within ``HEAD_RADIUS_MM`` and in place (``_in_place``); else
    ``None`` and why (a key of ``HEAD_WHY``)."""
    g = 4.0
    if found is None or not (HEAD_RADIUS_MM[0] - g <= found[1] <= HEAD_RADIUS_MM[1] + g):
        return None, "none"
    g = 1.5
    box = np.arange(-found[1] - 8, found[1] + 8 + 1e-6, g)
    fine = _deepest_bone(volume, geom, found[0], axes, (box, box, box), g, bone_of)
    # the range holds the head with the rim ``bone_of`` leaves out (MR: its cortex) where the
    # further balls are tried with a roundness check (``MR_HEAD_CANDIDATES``)
    rim_in_range = rim_mm if MR_HEAD_CANDIDATES else 0.0
    if fine is None or not (HEAD_RADIUS_MM[0] <= fine[1] + g / 2 + rim_in_range <= HEAD_RADIUS_MM[1]):
        return None, "none"
    # the radius: the depth plus about half a grid step (the edge voxel's centre is inside)
    head: Head | None = Head(fine[0], fine[1] + g / 2 + rim_mm, float(min(1.0, fine[1] / 20.0)))
    if refine is not None and head is not None:
        head = refine(head)
        if head is None:
            return None, "round"
    if head is None or not _in_place(head.centre_lps, s1_mid_lps, plane):
        return None, "place"
    return head, ""


#: the coarse grid's balls tried per side where the deepest is no head (``_bone_peaks``; each only
#: where ``ct_head_surface`` / ``mr_head_surface`` finds it round, and in place); on MR with
#: ``MR_HEAD_CANDIDATES``, which also lets the radius range hold the head with its cortex (seen MR
#: 4910: small heads out-deepened by a marrow-bright region, PI null -> 57.6 against 58.1 deg; blind
#: wide MR 6030-6039 identical in every figure, twelfth session)
HEAD_CANDIDATES = 4
MR_HEAD_CANDIDATES = True
#: where a femoral head's centre may lie from the S1 endplate's midpoint (mm): caudal along the
#: plane's rows, and across them (lateral and antero-posterior together: the spine's plane can be
#: turned against the pelvis - dev CT 5402, a scoliotic lumbar spine: heads 56 and 94 mm lateral,
#: 71 and 9 mm antero-posterior). Adults' hip centres lie 80-100 mm from the midline, up to about
#: 70 mm in front of S1 and 60-130 mm caudal to it (the phantom: 85 mm, hip axis to S1 80-130 mm at
#: a pelvic tilt of -5 to 40 deg); a greater trochanter 130-170 mm out. The nearer bound is the
#: search box's own: the S1 midpoint is taken on the plane's section, which a field cut close to
#: the spine can put 20 mm to one side (tests/landmarks/test_volume.py's one-head CT: 42 mm across)
HEAD_PLACE_CAUDAL_MM = (30.0, 180.0)
HEAD_PLACE_ACROSS_MM = (HEAD_SEARCH_LATERAL_MM[0], 130.0)
#: the two heads of one pelvis: their heights along the patient's head-foot axis (LPS z) within this of
#: each other, and apart by 120-240 mm (mm; a pelvis tilted sideways within these). Along the patient,
#: not the plane's rows: a plane tilted 13-15 deg against the pelvis (a field from L3 down, or moved
#: sideways) puts true heads 170 mm apart 36-44 mm apart along its rows (a reviewer's probe)
HEAD_PAIR_CAUDAL_MM = 30.0
HEAD_PAIR_APART_MM = (120.0, 240.0)


def _in_place(centre_lps: np.ndarray, s1_mid_lps: np.ndarray, plane: SpinePlane) -> bool:
    """Whether a head's centre lies where a femoral head can (``HEAD_PLACE_*``) from the S1 endplate."""
    d = np.asarray(centre_lps, float) - s1_mid_lps
    caudal, across = float(d @ plane.row_axis), float(np.hypot(d @ plane.normal, d @ plane.col_axis))
    return (HEAD_PLACE_CAUDAL_MM[0] <= caudal <= HEAD_PLACE_CAUDAL_MM[1]
            and HEAD_PLACE_ACROSS_MM[0] <= across <= HEAD_PLACE_ACROSS_MM[1])


def _as_a_pair(heads: list[Head], s1_mid_lps: np.ndarray, plane: SpinePlane) -> list[Head]:
    """Both heads where they can be one pelvis' (``HEAD_PAIR_*``); else neither: which of the two is
    not a head is not known (their scores tie, on MR nearly always), and one head where two were
    found gives a wrong PI where a null one is honest."""
    if len(heads) < 2:
        return heads
    a, b = heads
    dz = abs(float(a.centre_lps[2] - b.centre_lps[2]))  # LPS: +z towards the head
    apart = float(np.linalg.norm(a.centre_lps - b.centre_lps))
    if dz <= HEAD_PAIR_CAUDAL_MM and HEAD_PAIR_APART_MM[0] <= apart <= HEAD_PAIR_APART_MM[1]:
        return heads
    return []


def _bone_peaks(volume: np.ndarray, geom: VolumeGeometry, origin: np.ndarray, axes: tuple[np.ndarray, ...],
                ranges: tuple[np.ndarray, ...], grid_mm: float, bone_of: Callable[[np.ndarray], np.ndarray], n: int,
                exclude: tuple[np.ndarray, float] | None = None) -> list[tuple[np.ndarray, float]]:
    """Up to ``n`` balls of the bone on the grid (as ``_deepest_bone``), deepest first: the local
    maxima of its depth, each at least its own depth (and ``exclude``'s, the ball already tried,
    within its depth) from a deeper one, none under ``HEAD_RADIUS_MM[0] - grid_mm`` deep."""
    from scipy import ndimage

    got = _bone_depth(volume, geom, origin, axes, ranges, grid_mm, bone_of)
    if got is None:
        return []
    depth, box = got
    peak = (depth == ndimage.maximum_filter(depth, size=3)) & (depth >= HEAD_RADIUS_MM[0] - grid_mm)
    where = np.argwhere(peak)
    order = np.argsort(-depth[peak], kind="stable")
    out: list[tuple[np.ndarray, float]] = [] if exclude is None else [exclude]
    skip = len(out)
    for w in where[order]:
        r = float(depth[tuple(w)])
        at = [np.interp(float(w[a] + box[a].start), np.arange(len(rng)), rng) for a, rng in enumerate(ranges)]
        c = origin + at[0] * axes[0] + at[1] * axes[1] + at[2] * axes[2]
        if all(np.linalg.norm(c - o[0]) > max(r, o[1]) for o in out):
            out.append((c, r))
            if len(out) - skip >= n:
                break
    return out[skip:]


#: CT: the head's own surface, read along rays from the ball's centre (``ct_head_surface``): the
#: ball of bone a distance transform finds holds the acetabulum too where the joint space (2-4 mm
#: of cartilage) is thinner than the grid and the smoothing can part (the phantom's pelvis: centres
#: 4.5 mm off towards the cup, radii 3.4 mm large, on dev CT 5400-5409). ``HEAD_RAYS`` directions,
#: sampled every ``HEAD_RAY_STEP_MM`` out to the ball's radius + ``HEAD_RAY_BEYOND_MM``.
HEAD_RAYS = 256
HEAD_RAY_STEP_MM = 0.5
HEAD_RAY_BEYOND_MM = 14.0
#: a ray counts where its brightest sample beyond ``HEAD_RAY_FROM`` x the radius stands this far
#: (HU) over the head's marrow: the head's cortex (the femoral neck's rays find none)
HEAD_RAY_CONTRAST_HU = 150.0
HEAD_RAY_FROM = 0.45
#: the surface is a sphere: at least this share of all rays within ``HEAD_ROUND_MM`` of the fit
#: (an ellipsoidal trochanter or a bony mass of the pelvis has its edges spread wider)
HEAD_ROUND_SHARE = 0.55
HEAD_ROUND_MM = 2.0
#: the rising edge (half-way from the marrow to the cortex' peak) lies about this far inside the
#: head's outer surface (a 1-2 mm cortex, blurred)
HEAD_EDGE_INSIDE_MM = 2.1
#: the voxel (its middle spacing, mm: an axial series' pixel whatever its slices) up to which the surface
#: check's ray contrast (``HEAD_RAY_CONTRAST_HU``) and roundness tolerance (``HEAD_ROUND_MM``) hold as set;
#: a coarser voxel averages the 1-2 mm cortex over more of the ray (its peak over the marrow falls: true
#: heads' median 400 HU at 1.5-mm pixels, 300 at 2 mm, 220 at 3 mm with 5-mm slices, dev CT 5520-5529) and
#: places the edge less exactly, so the contrast needed is divided and the tolerance multiplied by the
#: voxel over this (at 3 mm: 100 HU, 3 mm; a reviewer's probe refused 7 of 10 studies' true heads there)
HEAD_VOXEL_MM = 2.0
#: ... up to this factor (3-mm voxels, the coarsest judged): beyond it the check stays as strict as at 3 mm,
#: since a looser one takes a non-round lump for a head (a reviewer's probe: a 17 x 26 x 34 mm ellipsoid
#: passed at 4-mm pixels with the scale uncapped); true heads at coarser voxels may then be refused
HEAD_VOXEL_SCALE_MAX = 1.5


def _voxel_scale(geom: VolumeGeometry) -> float:
    """The series' voxel over ``HEAD_VOXEL_MM`` (its middle spacing), within 1-``HEAD_VOXEL_SCALE_MAX``."""
    px = geom.pixel_spacing_mm
    middle = sorted([float(px[0]), float(px[1]), float(geom.slice_spacing_mm or min(px))])[1]
    return min(HEAD_VOXEL_SCALE_MAX, max(1.0, middle / HEAD_VOXEL_MM))


def _fibonacci_sphere(n: int) -> np.ndarray:
    k = np.arange(n) + 0.5
    phi = np.arccos(1 - 2 * k / n)
    theta = np.pi * (1 + 5**0.5) * k
    return np.stack([np.cos(theta) * np.sin(phi), np.sin(theta) * np.sin(phi), np.cos(phi)], axis=1)


def _fit_sphere(p: np.ndarray) -> tuple[np.ndarray, float]:
    """Least-squares sphere through points ``(n, 3)`` (algebraic fit)."""
    a = np.c_[2 * p, np.ones(len(p))]
    sol, *_ = np.linalg.lstsq(a, (p * p).sum(axis=1), rcond=None)
    c = sol[:3]
    return c, float(np.sqrt(max(sol[3] + c @ c, 0.0)))


def ct_head_surface(volume: np.ndarray, geom: VolumeGeometry, head: Head) -> Head | None:
    """The femoral head's surface read along ``HEAD_RAYS`` rays from the centre of the ball found
    (``_femoral_heads``' fine search), fitted with a sphere: on each ray, the first rise from the
    head's marrow (the median within ``HEAD_RAY_FROM`` x the radius) half-way to the brightest sample
    beyond (its cortex; rays without ``HEAD_RAY_CONTRAST_HU`` of contrast - the neck - left out), the
    sphere refitted twice without the rays over 2.5 median deviations from it. ``None`` where fewer
    than ``HEAD_ROUND_SHARE`` of the rays lie within ``HEAD_ROUND_MM`` of the sphere (not round: not
    a head) or its radius is outside ``HEAD_RADIUS_MM``. Beyond ``HEAD_VOXEL_MM`` voxels the contrast
    needed falls and the tolerance grows with the voxel (``_voxel_scale``)."""
    return _head_surface(volume, geom, head, dark_rim=False)


def mr_head_surface(volume: np.ndarray, geom: VolumeGeometry, head: Head) -> Head | None:
    """``ct_head_surface`` on MR, where the head's cortex is dark: the first fall from the marrow
    half-way to the darkest sample beyond, on rays with at least ``MR_HEAD_RAY_CONTRAST`` x the
    marrow of contrast, wholly inside the field."""
    return _head_surface(volume, geom, head, dark_rim=True)


#: MR: a ray counts where its darkest sample beyond the head's marrow is under this share of it
MR_HEAD_RAY_CONTRAST = 0.3


def _head_surface(volume: np.ndarray, geom: VolumeGeometry, head: Head, dark_rim: bool) -> Head | None:
    from scipy import ndimage

    dirs = _fibonacci_sphere(HEAD_RAYS)
    r0 = head.radius_mm
    t = np.arange(0.0, r0 + HEAD_RAY_BEYOND_MM + 1e-6, HEAD_RAY_STEP_MM)
    pts = head.centre_lps + dirs[:, None, :] * t[None, :, None]
    idx = lps_to_index(geom, pts).reshape(-1, 3).T
    vol = volume if volume.dtype in (np.float32, np.int16, np.uint16) else np.asarray(volume, np.float32)
    vals = ndimage.map_coordinates(vol, idx, output=np.float32, order=1, mode="constant",
                                   cval=np.nan if dark_rim else -1000.0, prefilter=False).reshape(len(dirs), len(t))
    marrow = float(np.nanmedian(vals[:, t < 0.35 * r0]))
    if not np.isfinite(marrow):
        return None
    beyond = t >= HEAD_RAY_FROM * r0
    seg = vals[:, beyond]
    inside = np.isfinite(seg).all(axis=1)
    if dark_rim:  # a dark rim: the same search on the values turned over
        seg, marrow = -np.nan_to_num(seg, nan=0.0), -marrow
    peak = seg.max(axis=1)
    scale = _voxel_scale(geom)  # 1 up to HEAD_VOXEL_MM
    need = MR_HEAD_RAY_CONTRAST * abs(marrow) if dark_rim else HEAD_RAY_CONTRAST_HU / scale
    ok = (peak - marrow >= need) & inside
    level = marrow + 0.5 * (peak - marrow)
    above = seg >= level[:, None]
    first = np.argmax(above, axis=1)
    tb = t[beyond]
    prev = np.maximum(first - 1, 0)
    v0, v1 = seg[np.arange(len(dirs)), prev], seg[np.arange(len(dirs)), first]
    frac = np.where((first > 0) & (v1 > v0), (level - v0) / np.maximum(v1 - v0, 1e-6), 0.0)
    edge = tb[prev] + np.clip(frac, 0, 1) * (tb[first] - tb[prev])
    if ok.sum() < 12:
        return None
    p = head.centre_lps + dirs[ok] * edge[ok, None]
    keep = np.ones(len(p), bool)
    c, r = _fit_sphere(p)
    for _ in range(2):
        res = np.linalg.norm(p - c, axis=1) - r
        mad = float(np.median(np.abs(res[keep] - np.median(res[keep])))) + 0.25
        keep = np.abs(res) <= 2.5 * mad
        if keep.sum() < 12:
            return None
        c, r = _fit_sphere(p[keep])
    res = np.linalg.norm(p - c, axis=1) - r
    share = float((np.abs(res) <= HEAD_ROUND_MM * scale).sum()) / len(dirs)
    radius = r + HEAD_EDGE_INSIDE_MM
    if share < HEAD_ROUND_SHARE or not (HEAD_RADIUS_MM[0] <= radius <= HEAD_RADIUS_MM[1]):
        return None
    return Head(c, radius, float(min(1.0, share)))


#: MR: a femoral head's marrow against the vertebral bodies' marrow on the same sequence (both
#: fatty in the elderly; the coil's bias field shifts either by up to about a quarter). The
#: sequences tried, in order: T1 shows marrow bright against muscle and dark cortex.
MR_HEAD_MARROW_RANGE = (0.7, 1.4)
MR_HEAD_SEQUENCES = ("t1", "t2", "t2fs", "stir", "mr_other")
#: the head's cortex, dark on every sequence and so outside the marrow's ball (mm)
MR_HEAD_CORTEX_MM = 1.5
#: what counts as the search region's soft tissue (muscle) on MR, against the bodies' marrow:
#: darker than the marrow, brighter than cortex and air. The marrow band's lower edge is raised
#: to halfway between that tissue's median and the marrow where that is higher than 0.7: a coil
#: brighter over the pelvis than over the lumbar bodies put the muscle around the heads at
#: 0.66-0.75 of the bodies' marrow on T1 (eval MR seed 300 with a wide slab: the muscle read as
#: marrow and each head was placed ~54 mm off, in the muscle behind and below it).
MR_HEAD_SOFT_TISSUE = (0.3, 1.0)
#: the coil's bias field, undone for the heads: the bodies' marrow is scaled by the soft tissue's
#: level in the heads' search region over its level in the same box this far cranial to the S1
#: endplate (mm: the lumbar bodies' height), the ratio kept within ``MR_HEAD_BIAS_RANGE``. The bias
#: scales every tissue alike, so muscle is its gauge: on dev wide slabs (eval_planes MR 5200-5229,
#: 3900-3905) the heads' marrow read 0.69-1.30 of the bodies' and 0.89-1.11 of it so scaled; at
#: 0.69-0.77 the heads fell under the band's lower edge (none found on MR 5201, one on 5205).
MR_HEAD_BIAS_REFERENCE_MM = 210.0
MR_HEAD_BIAS_RANGE = (0.5, 2.0)


def marrow_reference(plane_image: np.ndarray, vertebrae_px: dict[str, np.ndarray]) -> float | None:
    """The median intensity of the vertebral bodies' marrow on a plane: inside each body's
    section (``findings.oedema.body_mask``) shrunk to its central part (no cortex, no endplate);
    ``None`` without bodies."""
    from scipy import ndimage

    from ..findings.oedema import body_mask

    vals = []
    for pts in vertebrae_px.values():
        m = body_mask(pts, plane_image.shape)
        inner = ndimage.binary_erosion(m, iterations=max(1, int(0.2 * np.sqrt(m.sum()))))
        vals.append(plane_image[inner if inner.any() else m])
    return float(np.median(np.concatenate(vals))) if vals else None


def mr_femoral_heads(volume: np.ndarray, geom: VolumeGeometry, plane: SpinePlane, s1_mid_lps: np.ndarray,
                     marrow: float, why: list[str] | None = None) -> list[Head]:
    """Femoral head centres in an MR series (the search of ``ct_femoral_heads``), the bone being
    what reads as marrow: within ``MR_HEAD_MARROW_RANGE`` of the bodies' marrow ``marrow`` (scaled
    by the coil's bias field between the bodies and the heads, ``MR_HEAD_BIAS_REFERENCE_MM``) after
    a light smoothing, and brighter than halfway from the search region's soft tissue to that
    marrow (``MR_HEAD_SOFT_TISSUE``), its radius that ball's plus the cortex. Outside a sagittal
    slab's field nothing is found (a head cut by the field is not measured)."""
    from scipy import ndimage

    soft = _soft_tissue_level(volume, geom, plane, s1_mid_lps, marrow)
    ref = _soft_tissue_level(volume, geom, plane, s1_mid_lps - MR_HEAD_BIAS_REFERENCE_MM * plane.row_axis, marrow)
    if soft is not None and ref is not None and ref > 0:  # the bias field at the heads against the bodies'
        marrow = marrow * float(np.clip(soft / ref, *MR_HEAD_BIAS_RANGE))
    lo, hi = MR_HEAD_MARROW_RANGE[0] * marrow, MR_HEAD_MARROW_RANGE[1] * marrow
    if soft is not None:
        lo = max(lo, 0.5 * (soft + marrow))

    def bone_of(values: np.ndarray) -> np.ndarray:
        v = ndimage.gaussian_filter(values, 0.7)
        return np.asarray((v >= lo) & (v <= hi), bool)

    return _femoral_heads(volume, geom, plane, s1_mid_lps, bone_of, rim_mm=MR_HEAD_CORTEX_MM, why=why,
                          check=lambda h: mr_head_surface(volume, geom, h))


def _soft_tissue_level(volume: np.ndarray, geom: VolumeGeometry, plane: SpinePlane, s1_mid_lps: np.ndarray,
                       marrow: float) -> float | None:
    """The median of what reads as soft tissue (``MR_HEAD_SOFT_TISSUE`` × ``marrow``) in the
    femoral heads' search region, both sides, inside the volume's field (an 8-mm grid); ``None``
    where there is too little of it to say."""
    from scipy import ndimage

    axes = (plane.col_axis, plane.row_axis, plane.normal)
    vol = volume if volume.dtype in (np.float32, np.int16, np.uint16) else np.asarray(volume, np.float32)
    vals = []
    for side in (1.0, -1.0):
        idx = _grid_index(geom, s1_mid_lps, axes, _search_ranges(side, 8.0)).reshape(-1, 3)
        idx = idx[(_field_depth_mm(volume.shape, geom, idx) >= 0)]
        if len(idx):
            vals.append(ndimage.map_coordinates(vol, idx.T, output=np.float32, order=1, prefilter=False))
    v = np.concatenate(vals) if vals else np.zeros(0, np.float32)
    v = v[(v >= MR_HEAD_SOFT_TISSUE[0] * marrow) & (v < MR_HEAD_SOFT_TISSUE[1] * marrow)]
    return float(np.median(v)) if len(v) >= 50 else None


# ------------------------------------------------------------------------------ the plane's heads


def _head_landmarks(plane: SpinePlane, heads: list[Head]) -> list[dict]:
    """The contract's ``femoral_heads`` of heads found in 3-D, projected onto the plane (pixels)."""
    out = []
    for h in heads:
        xy = plane.from_lps(h.centre_lps)
        out.append({"center": [round(float(xy[0]), 3), round(float(xy[1]), 3)],
                    "radius_px": round(h.radius_mm / plane.spacing_mm, 3), "confidence": round(h.score, 3)})
    return out
