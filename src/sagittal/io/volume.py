"""CT and MR series as volumes: slice order and spacing from positions (never SliceThickness),
gaps, duplicates and mixed orientations detected, enhanced multi-frame functional groups
read, and the sagittal plane through the spine.

Patient coordinates are DICOM's LPS (mm). A volume's voxel ``(k, i, j)`` (slice, row,
column) lies at ``origin + j*dc*row_dir + i*dr*col_dir + k*ds*normal`` where ``row_dir`` and
``col_dir`` are the two ImageOrientationPatient triplets.

The spine's plane (``spine_plane``): where the spine curves sideways (scoliosis) no single
slice holds every vertebral body's mid-sagittal section. The plane reported is the best-fit
sagittal plane through the spine's centre line (oblique where the spine is); its image is a
*curved* reformat: each image row is sampled at its own lateral offset from that plane (the
centre line's), so every body is seen on its own mid-sagittal section, and every point is
reported at its (anterior, superior) position in the one plane. ``SpinePlane.plane_json()``
is the contract's ``image.plane``: a document point maps back through it to the patient within
the lateral offset of its row (``SpinePlane.lateral_mm``, reported as the largest deviation).
"""

from __future__ import annotations

import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..errors import CalibrationError
from .calibration import Calibration, parse_spacing

_ORIENT_TOL = 1e-3
_POS_TOL_MM = 1e-3


@dataclass(frozen=True)
class VolumeGeometry:
    """Sorted slice geometry of a series."""

    order: np.ndarray  # indices of the input slices, sorted along the normal, duplicates dropped (after
    #                    ``even_slices``: the even grid's own 0..m-1)
    positions: np.ndarray  # (n, 3) LPS of each kept slice's first pixel
    row_dir: np.ndarray  # (3,) direction of increasing column
    col_dir: np.ndarray  # (3,) direction of increasing row
    normal: np.ndarray  # (3,)
    pixel_spacing_mm: tuple[float, float]  # (row, col)
    slice_spacing_mm: float | None
    warnings: tuple[str, ...] = field(default_factory=tuple)
    #: the largest step between the series' own slices where they were resampled onto an even grid
    #: (``even_slices``: a gap, or mixed spacings), else ``None``: the grid's spacing is the series'
    largest_step_mm: float | None = None
    #: where they were so resampled, the series' own slices' positions along ``normal`` (mm, LPS · normal,
    #: ascending): how finely each part of the series samples it (``batch.volume.level_axis_sampling_mm``)
    source_depths_mm: tuple[float, ...] | None = None

    def affine(self) -> np.ndarray:
        """4×4 voxel (k, i, j, 1) → LPS (x, y, z, 1)."""
        a = np.eye(4)
        a[:3, 0] = self.normal * (self.slice_spacing_mm or 0.0)
        a[:3, 1] = self.col_dir * self.pixel_spacing_mm[0]
        a[:3, 2] = self.row_dir * self.pixel_spacing_mm[1]
        a[:3, 3] = self.positions[0]
        return a


#: a step between slices over this many times the series' (median) spacing is a gap (files missing)
GAP_FACTOR = 1.5
#: slices whose positions drift sideways of their normal along a straight line by more than this over the
#: series (a gantry tilt) are shifted in their planes onto a grid along the normal (``deshear``): stacked as
#: they are they would shear the volume (a 25-deg tilt read a 25.0-mm body 22.7 mm tall, leaning). Positions
#: written to whole millimetres can make the line drift up to about 2.6 mm by rounding alone (review R16e's
#: worst case: a series barely off sagittal whose rounding jumps once; R16d: an oblique MR 1.1 mm), so a
#: shear under 3 mm over the whole series (0.6 deg over 300 mm) is left as it is.
TILT_MIN_SHIFT_MM = 3.0
#: a slice further than this off that line is no tilt and no rounding (whole millimetres: up to 1.27 mm off in
#: R16e's near-sagittal draws, under 1 mm in R16d's 3,000 oblique ones): the series' positions are refused. The
#: full fit is used, so a slice at either end of a series, which pulls the line towards itself, is judged more
#: leniently than one in the middle
TILT_RESIDUAL_MAX_MM = 1.5
#: a "tilt" steeper than this is none a gantry makes (they tilt up to about 30 deg): refused
TILT_MAX_DEG = 35.0
#: ``even_slices`` refuses a grid finer than this (near-duplicate positions make the median step tiny) or longer
#: than ``GRID_MAX_SLICES`` (memory), naming the series
GRID_MIN_STEP_MM, GRID_MAX_SLICES = 0.1, 4096


def slice_geometry(positions: Sequence[Any], orientations: Sequence[Any], pixel_spacings: Sequence[Any],
                   where: str = "series") -> VolumeGeometry:
    """Sort slices along their normal and measure the spacing from their positions.

    ``positions (n, 3)``, ``orientations (n, 6)``, ``pixel_spacings`` one ``(row, col)`` per
    slice. Raises ``CalibrationError`` for missing or mixed geometry and for positions no gantry tilt
    explains (a slice off the straight line the others drift along, ``TILT_RESIDUAL_MAX_MM``; a drift
    steeper than ``TILT_MAX_DEG``), naming the slice; gaps, duplicates and a gantry tilt are warnings
    (duplicates dropped; a tilt is undone by ``deshear`` where the voxels are loaded).
    """
    warnings: list[str] = []
    if any(p is None for p in positions) or any(o is None for o in orientations):
        raise CalibrationError(f"{where}: slices without ImagePositionPatient/ImageOrientationPatient; "
                               "without slice positions no volume (and no sagittal plane) can be built")
    pos = np.asarray(positions, float)
    ori = np.asarray(orientations, float)
    if np.abs(ori - ori[0]).max() > _ORIENT_TOL:
        raise CalibrationError(f"{where}: slices have different orientations (mixed ImageOrientationPatient); "
                               "split the series by orientation")
    parsed = [parse_spacing(s) for s in pixel_spacings]
    sp = [s for s in parsed if s is not None]
    if len(sp) != len(parsed):
        raise CalibrationError(f"{where}: a slice has no usable PixelSpacing; a volume without spacing is refused")
    if np.abs(np.asarray(sp) - sp[0]).max() > 1e-4:
        raise CalibrationError(f"{where}: slices have different PixelSpacing")
    r, c = ori[0, :3], ori[0, 3:]
    n = np.cross(r, c)
    if np.linalg.norm(n) < 1e-6:
        raise CalibrationError(f"{where}: ImageOrientationPatient rows and columns are parallel")
    n /= np.linalg.norm(n)
    d = pos @ n
    order = np.argsort(d, kind="stable")
    d_sorted = d[order]
    keep = np.concatenate([[True], np.diff(d_sorted) > _POS_TOL_MM])
    if not keep.all():
        warnings.append(f"{int((~keep).sum())} duplicate slice position(s) dropped")
    order, d_sorted = order[keep], d_sorted[keep]
    spacing = None
    if len(order) > 1:
        _stray_slice(pos[order], n, where)
        _, drift_mm, _, deg = _sideways_line(pos[order], n)
        if drift_mm > TILT_MIN_SHIFT_MM and deg > TILT_MAX_DEG:
            raise CalibrationError(f"{where}: the slices drift {deg:.0f} deg off their normal, more than any gantry tilt "
                                   f"({TILT_MAX_DEG:g} deg); the slice positions are not usable")
        if drift_mm > TILT_MIN_SHIFT_MM:
            warnings.append(f"{TILT_NOTE} {drift_mm:.1f} mm sideways of their normal over the series (a gantry tilt of "
                            f"{deg:.1f} deg): each is shifted in its plane onto a grid along the normal, the field widened "
                            "to keep every slice whole (linear interpolation)")
        steps = np.diff(d_sorted)
        spacing = float(np.median(steps))
        gaps = np.where(steps > GAP_FACTOR * spacing)[0]
        if len(gaps):
            warnings.append(f"{len(gaps)} gap(s) between slices (largest {steps.max():.2f} mm against a spacing of "
                            f"{spacing:.2f} mm)")
        if np.abs(steps - spacing).max() > 0.05 * spacing and not len(gaps):
            warnings.append("slice spacing is irregular")
    return VolumeGeometry(order=order, positions=pos[order], row_dir=r, col_dir=c, normal=n,
                          pixel_spacing_mm=sp[0], slice_spacing_mm=spacing, warnings=tuple(warnings))


#: how ``even_slices``'s warning starts (``batch.volume`` names the series it concerns)
RESAMPLED_NOTE = "slices resampled onto an even"
#: how ``slice_geometry``'s warning of a gantry tilt starts
TILT_NOTE = "the slices advance"


def _sideways_line(positions: NDArray[Any], normal: NDArray[Any]) -> tuple[NDArray[Any], float, float, float]:
    """The straight line ``positions (n, 3)`` drift along sideways of ``normal`` as they advance along it (a
    gantry tilt; least squares): each slice's sideways offset on that line ``(n, 3)`` (mm, from the first
    slice's position), the line's drift over the series (mm), the furthest slice's distance off it (mm) and
    the tilt (deg)."""
    d = positions - positions[0]
    along = d @ normal
    side = d - np.outer(along, normal)
    a = np.stack([np.ones_like(along), along], axis=1)
    coef = np.linalg.lstsq(a, side, rcond=None)[0] if len(along) > 1 and np.ptp(along) > 0 else np.zeros((2, 3))
    line = a @ coef
    slope = float(np.linalg.norm(coef[1]))
    return (line, slope * float(np.ptp(along)), float(np.linalg.norm(side - line, axis=1).max()),
            float(np.degrees(np.arctan(slope))))


def _stray_slice(positions: NDArray[Any], normal: NDArray[Any], where: str) -> None:
    """``CalibrationError`` naming the slice (``positions (n, 3)`` in order along ``normal``) furthest off the
    straight line the slices follow sideways, if more than ``TILT_RESIDUAL_MAX_MM`` off it; the distance
    reported is to the line fitted without it (which it pulls towards itself)."""
    if len(positions) < 3:
        return
    d = positions - positions[0]
    side = d - np.outer(d @ normal, normal)
    resid = np.linalg.norm(side - _sideways_line(positions, normal)[0], axis=1)
    k = int(np.argmax(resid))
    if resid[k] > TILT_RESIDUAL_MAX_MM:
        rest = np.delete(np.arange(len(positions)), k)
        a = np.stack([np.ones(len(positions)), d @ normal], axis=1)
        off = float(np.linalg.norm(side[k] - a[k] @ np.linalg.lstsq(a[rest], side[rest], rcond=None)[0]))
        p = ", ".join(f"{v:.1f}" for v in positions[k])
        raise CalibrationError(f"{where}: slice {k + 1} of {len(positions)} along the normal (ImagePositionPatient {p}) "
                               f"lies {off:.1f} mm sideways off the line the others follow (neither a gantry tilt nor "
                               "rounding); the slice positions are not usable")


def tilted(geom: VolumeGeometry) -> bool:
    """Whether the slices drift sideways of their normal by more than ``TILT_MIN_SHIFT_MM`` over the series
    along a straight line (a gantry tilt, the test of ``slice_geometry``; rounding does not add up to it)."""
    return len(geom.positions) > 1 and _sideways_line(geom.positions, geom.normal)[1] > TILT_MIN_SHIFT_MM


#: ``deshear`` refuses to widen a field more than this many times (positions that no tilt explains)
DESHEAR_MAX_WIDEN = 3.0


def deshear(voxels: NDArray[Any], geom: VolumeGeometry, where: str = "series") -> tuple[NDArray[Any], VolumeGeometry]:
    """``voxels (n, rows, cols)`` of slices drifting sideways of their normal (a gantry tilt: ``tilted``) put on
    one grid along the normal: a field widened to hold every slice whole (by the range of their in-plane
    offsets on the tilt's line, ``_sideways_line``), each slice placed in it at its offset (linear interpolation; the rest
    of the field is the volume's lowest value, as beyond any field), so that voxel ``(k, i, j)`` lies where
    the new ``geom.affine`` puts it. Stacked as they are, a 25-deg tilt read a 25.0-mm body 22.7 mm tall,
    leaning. Other series are returned as they are; ``CalibrationError`` (naming ``where``) where the field
    would grow over ``DESHEAR_MAX_WIDEN`` times."""
    if not tilted(geom):
        return voxels, geom
    from scipy import ndimage

    line = _sideways_line(geom.positions, geom.normal)[0]  # each slice's offset on the tilt's line (not its rounding)
    dr, dc = geom.pixel_spacing_mm
    rows_px, cols_px = line @ geom.col_dir / dr, line @ geom.row_dir / dc  # in-plane offsets: along rows, along columns
    r0, c0 = float(min(0.0, rows_px.min())), float(min(0.0, cols_px.min()))
    shape = (len(voxels), voxels.shape[1] + int(np.ceil(max(0.0, rows_px.max()) - r0)),
             voxels.shape[2] + int(np.ceil(max(0.0, cols_px.max()) - c0)))
    if shape[1] > DESHEAR_MAX_WIDEN * voxels.shape[1] or shape[2] > DESHEAR_MAX_WIDEN * voxels.shape[2]:
        raise CalibrationError(f"{where}: the slices drift {_sideways_line(geom.positions, geom.normal)[1]:.0f} mm sideways "
                               f"of their normal, more than a gantry tilt moves them across a {voxels.shape[1]} x "
                               f"{voxels.shape[2]} field; the slice positions are not usable")
    fill = float(np.min(voxels))
    out = np.empty(shape, np.float32)
    for k in range(len(voxels)):
        # out[k][i, j] lies at the first slice's corner + (i + r0, j + c0) pixels: slice k's pixel (i + r0 - rows_px[k], ...)
        ndimage.affine_transform(np.asarray(voxels[k], np.float32), np.eye(2), offset=(r0 - rows_px[k], c0 - cols_px[k]),
                                 output_shape=shape[1:], output=out[k], order=1, mode="constant", cval=fill)
    corner = geom.positions[0] + r0 * dr * geom.col_dir + c0 * dc * geom.row_dir
    positions = corner + np.outer((geom.positions - geom.positions[0]) @ geom.normal, geom.normal)
    return out, replace(geom, positions=positions)


def even_slices(voxels: NDArray[Any], geom: VolumeGeometry, where: str = "series"
                ) -> tuple[NDArray[Any], VolumeGeometry]:
    """``voxels (n, rows, cols)`` at ``geom.positions`` resampled along the slices' normal onto the even
    grid that ``geom.affine`` assumes (the median step, from the first slice to the last), linearly between
    the two nearest slices, where the series' steps are uneven (a gap of missing files, or thin and thick
    parts; without a gap, positions rounded in the headers, the grid's step is the series' mean): stacked
    as they are, every millimetre beyond a gap would be short by the gap (a body across it reads crushed).
    ``largest_step_mm`` then keeps the coarsest real step and ``source_depths_mm`` the slices' own positions
    along the normal (``batch.volume.level_axis_sampling_mm``); a warning says so. Even series are returned
    as they are."""
    spacing = geom.slice_spacing_mm
    if spacing is None or len(geom.positions) < 3:
        return voxels, geom
    d = geom.positions @ geom.normal
    steps = np.diff(d)
    if np.abs(steps - spacing).max() <= 0.05 * spacing:
        return voxels, geom
    if steps.max() <= GAP_FACTOR * spacing:
        # no gap, only positions off their grid (headers that round them: 0.625-mm slices written 0.6/0.7 apart):
        # the series' own mean step, not the median, so that the grid meets its slices and the length holds
        spacing = float((d[-1] - d[0]) / (len(d) - 1))
    m = int(round((d[-1] - d[0]) / spacing)) + 1
    if spacing < GRID_MIN_STEP_MM or m > GRID_MAX_SLICES:  # near-duplicate positions: a tiny median step
        raise CalibrationError(f"{where}: slice positions along the normal run {steps.min():.3f}-{steps.max():.2f} mm "
                               f"apart (median {spacing:.3f} mm): an even grid would need {m} slices for {len(d)}; "
                               "the series' slice positions are not usable")
    grid = d[0] + np.arange(m) * spacing
    lo = np.clip(np.searchsorted(d, grid, side="right") - 1, 0, len(d) - 2)
    w = np.clip((grid - d[lo]) / (d[lo + 1] - d[lo]), 0.0, 1.0).astype(np.float32)
    out = np.empty((m, *voxels.shape[1:]), np.float32)
    for j in range(m):
        out[j] = voxels[lo[j]] * (1 - w[j]) + voxels[lo[j] + 1] * w[j]
    largest = float(steps.max())
    note = (f"{RESAMPLED_NOTE} {spacing:.2f} mm grid along their normal (their steps run {steps.min():.2f}-"
            f"{largest:.2f} mm): millimetres hold, what lies between the series' own slices is interpolated")
    positions = geom.positions[0] + np.outer(grid - d[0], geom.normal)
    return out, replace(geom, order=np.arange(m), positions=positions, slice_spacing_mm=spacing,
                        largest_step_mm=largest, source_depths_mm=tuple(float(x) for x in d),
                        warnings=(*geom.warnings, note))


def enhanced_geometry(ds: Any, where: str) -> tuple[list[Any], list[Any], list[Any]]:
    """Per-frame positions, orientations and spacings of an enhanced multi-frame dataset."""
    shared = (ds.get("SharedFunctionalGroupsSequence") or [None])[0]
    per = ds.get("PerFrameFunctionalGroupsSequence") or []
    n = int(ds.get("NumberOfFrames", 1) or 1)
    if len(per) not in (0, n):
        raise CalibrationError(f"{where}: {len(per)} per-frame functional groups for {n} frames")

    def find(frame: Any, seq_kw: str, attr: str) -> Any:
        for group in (frame, shared):
            if group is not None and seq_kw in group and group[seq_kw]:
                item = group[seq_kw][0]
                if attr in item:
                    return item.get(attr)
        return None

    positions, orientations, spacings = [], [], []
    for k in range(n):
        frame = per[k] if per else None
        p = find(frame, "PlanePositionSequence", "ImagePositionPatient")
        o = find(frame, "PlaneOrientationSequence", "ImageOrientationPatient")
        s = find(frame, "PixelMeasuresSequence", "PixelSpacing")
        positions.append(None if p is None else [float(v) for v in p])
        orientations.append(None if o is None else [float(v) for v in o])
        spacings.append(None if s is None else [str(v) for v in s])
    return positions, orientations, spacings


#: uncompressed little-endian transfer syntaxes, whose pixel data is read straight into the stack
_RAW_SYNTAXES = ("1.2.840.10008.1.2.1", "1.2.840.10008.1.2")
_PIXEL_DATA_TAG = b"\xe0\x7f\x10\x00"


_FLOAT_PIXEL_TAGS = (0x7FE00008, 0x7FE00009)  # float / double float pixel data: not read here
_PIXEL_TAG = 0x7FE00010
_UNDEFINED = 0xFFFFFFFF
#: explicit-VR value representations with 2 reserved bytes and a 4-byte length
_LONG_VRS = frozenset((b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"UC", b"UN", b"UR", b"UT", b"SV", b"UV"))
#: the image pixel elements ``read_slices_fast`` needs, by tag
_US_TAGS = {0x00280002: "samples", 0x00280010: "rows", 0x00280011: "columns", 0x00280100: "allocated",
            0x00280101: "stored", 0x00280103: "signed"}
_TEXT_TAGS = {0x00280004: "photometric", 0x00280008: "frames", 0x00281052: "intercept", 0x00281053: "slope"}
_MODALITY_LUT = 0x00283000
_DECIMAL = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
#: how much of a file is read first to find its pixel data (the whole file when the header is longer)
_HEAD_BYTES = 16384


class _Unusual(Exception):
    """Something the header scan leaves to pydicom."""


#: (group, element, 4-byte length) and (group, element, VR, 2-byte length), little endian
_HEAD_IMPLICIT = struct.Struct("<HHL")
_HEAD_EXPLICIT = struct.Struct("<HH2sH")
_LONG_LENGTH = struct.Struct("<L")


def _element(buf: bytes, pos: int, explicit: bool) -> tuple[int, bytes, int, int]:
    """``(tag, VR, length, value position)`` of the data element at ``pos``."""
    if pos + 8 > len(buf):
        raise _Unusual("the header runs past what was read")
    if not explicit:
        group, elem, length = _HEAD_IMPLICIT.unpack_from(buf, pos)
        return (group << 16) | elem, b"", length, pos + 8
    group, elem, vr, length = _HEAD_EXPLICIT.unpack_from(buf, pos)
    if group == 0xFFFE:  # an item or a delimiter: a 4-byte length, no VR
        return (group << 16) | elem, b"", _LONG_LENGTH.unpack_from(buf, pos + 4)[0], pos + 8
    if vr in _LONG_VRS:
        if pos + 12 > len(buf):
            raise _Unusual("the header runs past what was read")
        return (group << 16) | elem, vr, _LONG_LENGTH.unpack_from(buf, pos + 8)[0], pos + 12
    if not (vr.isalpha() and vr.isupper()):
        raise _Unusual("not an explicit VR")
    return (group << 16) | elem, vr, length, pos + 8


def _after_sequence(buf: bytes, pos: int, explicit: bool) -> int:
    """The position after an undefined-length sequence whose first item starts at ``pos``."""
    while True:
        tag, _, length, pos = _element(buf, pos, explicit)
        if tag == 0xFFFEE0DD:  # sequence delimiter
            return pos
        if tag != 0xFFFEE000:
            raise _Unusual("not an item")
        if length != _UNDEFINED:
            pos += length
            continue
        while True:  # an undefined-length item: its elements up to the item delimiter
            tag, vr, length, pos = _element(buf, pos, explicit)
            if tag == 0xFFFEE00D:
                break
            if length == _UNDEFINED:
                if explicit and vr != b"SQ":  # UN of undefined length holds implicit VR
                    raise _Unusual("an undefined length that is not a sequence")
                pos = _after_sequence(buf, pos, explicit)
            else:
                pos += length


def _file_meta(buf: bytes) -> tuple[bool, int]:
    """A Part-10 file's preamble and meta group: ``(explicit VR, where the dataset starts)``."""
    if buf[128:132] != b"DICM":
        raise _Unusual("no DICM preamble")
    pos, syntax = 132, None
    while pos + 8 <= len(buf) and buf[pos:pos + 2] == b"\x02\x00":  # file meta: explicit VR little endian
        tag, _, length, vpos = _element(buf, pos, True)
        if length == _UNDEFINED:
            raise _Unusual("an undefined length in the file meta")
        if tag == 0x00020010:
            syntax = buf[vpos:vpos + length].decode("ascii", "replace").strip("\x00 ")
        pos = vpos + length
    if syntax not in _RAW_SYNTAXES:
        raise _Unusual("a transfer syntax other than little endian uncompressed")
    return syntax == _RAW_SYNTAXES[0], pos


def _keep(found: dict[str, Any], tag: int, value: bytes) -> None:
    """Note the value of one of the elements ``read_slices_fast`` needs in ``found``."""
    if tag in _US_TAGS:
        if len(value) != 2:
            raise _Unusual("a multi-valued or empty US")
        found[_US_TAGS[tag]] = int.from_bytes(value, "little")
    elif tag in _TEXT_TAGS:
        found[_TEXT_TAGS[tag]] = value.decode("ascii", "replace").strip("\x00 ")


def _scan(buf: bytes) -> tuple[dict[str, Any], bool, int, bytes, int]:
    """Walk a Part-10 file's header up to its pixel data: ``(the elements read_slices_fast needs,
    explicit VR, position of the PixelData element, its VR, its length)``."""
    explicit, pos = _file_meta(buf)
    found: dict[str, Any] = {}
    while True:
        tag, vr, length, vpos = _element(buf, pos, explicit)
        if tag == _PIXEL_TAG:
            return found, explicit, pos, vr, length
        if tag in _FLOAT_PIXEL_TAGS or tag == _MODALITY_LUT or tag >> 16 == 0xFFFE:
            raise _Unusual("float pixels, a modality LUT or a stray item")
        if length == _UNDEFINED:
            if explicit and vr != b"SQ":
                raise _Unusual("an undefined length that is not a sequence")
            pos = _after_sequence(buf, vpos, explicit)
            continue
        if vpos + length > len(buf):
            raise _Unusual("the header runs past what was read")
        if tag >> 16 == 0x0028:
            _keep(found, tag, buf[vpos:vpos + length])
        pos = vpos + length


def _decimal(text: str | None, default: float) -> float:
    if not text:
        return default
    if not _DECIMAL.fullmatch(text):
        raise _Unusual("not a plain decimal")
    return float(text)


def _scan_header(fh: Any) -> tuple[tuple[Any, ...], str, int, bytes, int] | None:
    """The header of an open Part-10 file, read without pydicom for the plain case that
    ``read_slices_fast`` reads fast: ``(its slice tuple, transfer syntax, position of the PixelData
    element, its VR, its length)``; ``None`` for anything else (then pydicom parses the header: the
    same answer, only slower). Plain: a DICM preamble, explicit or implicit VR little endian,
    defined-length elements or undefined-length sequences, single frame, one sample, MONOCHROME2,
    no modality LUT, single-valued plain-decimal rescale and plain US image elements."""
    buf = fh.read(_HEAD_BYTES)
    try:
        try:
            found, explicit, pos, vr, length = _scan(buf)
        except _Unusual:
            if len(buf) < _HEAD_BYTES:  # the whole file was read: it is not plain
                return None
            fh.seek(0)
            buf = fh.read()
            found, explicit, pos, vr, length = _scan(buf)
        frames = found.get("frames") or "1"
        if not frames.isdigit() or int(frames) != 1 or found.get("samples", 1) != 1 \
                or found.get("photometric") != "MONOCHROME2":
            return None
        this = (found.get("rows", 0), found.get("columns", 0), found.get("allocated", 0), found.get("stored", 0),
                found.get("signed", 0), _decimal(found.get("slope"), 1.0), _decimal(found.get("intercept"), 0.0))
    except (_Unusual, ValueError):
        return None
    return this, _RAW_SYNTAXES[0] if explicit else _RAW_SYNTAXES[1], pos, vr, length


def _read_raw_pixels(fh: Any, explicit: bool, out: NDArray[Any]) -> bool:
    """Read an uncompressed slice's pixel data from ``fh`` (positioned at the PixelData element)
    straight into ``out (rows, cols)``; ``False`` (nothing read) when the element is not the plain
    one expected (explicit or implicit VR, little endian)."""
    head = fh.read(12)
    if len(head) < 8 or head[:4] != _PIXEL_DATA_TAG:
        return False
    n = out.nbytes
    if explicit:  # tag, VR, 2 reserved bytes, 4-byte length
        if head[4:6] not in (b"OW", b"OB") or int.from_bytes(head[8:12], "little") != n:
            return False
    else:  # tag, 4-byte length
        if int.from_bytes(head[4:8], "little") != n:
            return False
        fh.seek(-4, 1)
    return int(fh.readinto(out.data.cast("B"))) == n


def _slice_ok(ds: Any) -> bool:
    return (int(ds.get("NumberOfFrames", 1) or 1) == 1 and int(ds.get("SamplesPerPixel", 1)) == 1
            and str(ds.get("PhotometricInterpretation", "")) == "MONOCHROME2" and "ModalityLUTSequence" not in ds)


def read_slices_fast(paths: Sequence[str]) -> NDArray[Any] | None:
    """The slices of ``paths`` (in that order) as one stack in modality units, for the common
    case only: single-frame MONOCHROME2 slices of one shape and dtype whose rescale is a plain
    slope/intercept shared by every slice. ``None`` when any slice is not that case (the caller
    then decodes slice by slice).

    Uncompressed slices (little endian, 16 bits) are read straight from the file into one
    preallocated stack, their unused high bits cleared as pydicom does; the header is walked
    up to the pixel data without pydicom where it is plain (``_scan_header``: a third of the
    time pydicom's parse takes), else parsed by pydicom; other transfer syntaxes go through
    ``pixel_array``. The stack is rescaled once: kept as int16 where the rescale is an integer
    shift that int16 holds (a CT's HU: half the memory of float32, no conversion pass), else
    float32."""
    import warnings

    import pydicom

    stack: NDArray[Any] | None = None
    meta: tuple[Any, ...] | None = None
    for n, path in enumerate(paths):
        with warnings.catch_warnings(), open(path, "rb") as fh:
            warnings.simplefilter("ignore")
            scanned = _scan_header(fh)
            if scanned is not None:
                this, syntax, pixels = scanned[:3]
            else:
                fh.seek(0)
                ds = pydicom.dcmread(fh, stop_before_pixels=True)
                if not _slice_ok(ds):
                    return None
                this = (int(ds.get("Rows", 0)), int(ds.get("Columns", 0)), int(ds.get("BitsAllocated", 0)),
                        int(ds.get("BitsStored", 0) or 0), int(ds.get("PixelRepresentation", 0) or 0),
                        float(ds.get("RescaleSlope", 1.0) or 1.0), float(ds.get("RescaleIntercept", 0.0) or 0.0))
                syntax, pixels = str(ds.file_meta.get("TransferSyntaxUID", "")), fh.tell()
            raw = syntax in _RAW_SYNTAXES and this[2] == 16 and (this[4] == 0 or this[3] == 16)
            if stack is None:
                meta = this
                stack = np.empty((len(paths), this[0], this[1]), np.int16 if this[4] else np.uint16)
            if this != meta:
                return None
            fh.seek(pixels)
            if raw and _read_raw_pixels(fh, syntax == _RAW_SYNTAXES[0], stack[n]):
                continue
            fh.seek(0)
            arr = pydicom.dcmread(fh).pixel_array
        if arr.shape != stack.shape[1:] or arr.dtype != stack.dtype:
            return None
        stack[n] = arr
    if stack is None or meta is None:
        return None
    return _rescaled(stack, meta[3], bool(meta[4]), meta[5], meta[6])


def _rescaled(stack: NDArray[Any], stored: int, signed: bool, slope: float, intercept: float) -> NDArray[Any]:
    """``stack`` (uint16 or int16 stored values) in modality units: int16 in place where the
    rescale is an integer shift int16 holds, else a float32 copy."""
    if not signed and 0 < stored < 16:  # pydicom clears the bits above BitsStored
        np.bitwise_and(stack, np.uint16((1 << stored) - 1), out=stack)
    if slope == 1.0 and intercept == round(intercept):
        if signed and intercept == 0:
            return stack
        hi = (1 << (stored if 0 < stored < 16 else 16)) - 1
        if not signed and hi < (1 << 15) and -(1 << 15) <= intercept and hi + intercept < (1 << 15):
            out16 = stack.view(np.int16)  # unsigned values under 2**15: the same bits
            out16 += np.int16(intercept)
            return out16
    out = stack.astype(np.float32)
    if (slope, intercept) != (1.0, 0.0):
        out *= np.float32(slope)
        out += np.float32(intercept)
    return out


def volume_calibration(geom: VolumeGeometry) -> Calibration:
    return Calibration(pixel_spacing_mm=geom.pixel_spacing_mm, source="volume", anterior=None,
                       slice_spacing_mm=geom.slice_spacing_mm, warnings=geom.warnings)


FloatArray = NDArray[np.float64]


def _corners_lps(shape: tuple[int, ...], geom: VolumeGeometry) -> FloatArray:
    """``(8, 3)`` LPS centres of the volume's corner voxels."""
    idx = np.array([[k, i, j, 1] for k in (0, shape[0] - 1) for i in (0, shape[1] - 1) for j in (0, shape[2] - 1)], float)
    return np.asarray((idx @ geom.affine().T)[:, :3], float)


def lps_to_index(geom: VolumeGeometry, points_lps: NDArray[Any]) -> FloatArray:
    """LPS points ``(..., 3)`` → continuous voxel indices ``(..., 3)`` = ``(k, i, j)``."""
    a = geom.affine()
    if geom.slice_spacing_mm is None:
        raise CalibrationError("a single slice has no 3-D voxel grid")
    p = np.asarray(points_lps, float)
    # einsum, not a BLAS product: a 3-wide matmul over many rows is slowest threaded, and worst
    # when the cores are busy
    idx = np.einsum("nj,ij->ni", p.reshape(-1, 3) - a[:3, 3], np.linalg.inv(a[:3, :3]))
    return np.asarray(idx.reshape(p.shape), float)


def in_field(shape: tuple[int, ...], geom: VolumeGeometry, points_lps: NDArray[Any]) -> NDArray[np.bool_]:
    """Whether LPS points ``(..., 3)`` lie inside the volume's field (between its outer voxel centres)."""
    idx = lps_to_index(geom, points_lps)
    upper = np.asarray(shape[:3], float) - 1
    return np.asarray(((idx >= -1e-6) & (idx <= upper + 1e-6)).all(axis=-1), bool)


def sample_lps(volume: NDArray[Any], geom: VolumeGeometry, points_lps: NDArray[Any],
               cval: float | None = None) -> NDArray[np.float32]:
    """Trilinear samples of ``volume (k, rows, cols)`` at LPS points ``(..., 3)``; outside the
    volume ``cval`` (default the volume's minimum, i.e. air)."""
    from scipy.ndimage import map_coordinates

    p = np.asarray(points_lps, float)
    idx = lps_to_index(geom, p).reshape(-1, 3)
    fill = float(np.min(volume)) if cval is None else float(cval)
    vol = volume if volume.dtype in (np.float32, np.int16, np.uint16) else np.asarray(volume, np.float32)
    out = map_coordinates(vol, idx.T, output=np.float32, order=1, mode="constant", cval=fill, prefilter=False)
    return np.asarray(out, np.float32).reshape(p.shape[:-1])


@dataclass(frozen=True)
class SagittalPlane:
    """A reformatted sagittal image and how its pixels map back to the patient (LPS mm).

    Pixel ``[x, y] = [col, row]`` lies at ``origin + col*spacing[1]*col_axis + row*spacing[0]*row_axis``
    (``col_axis`` points posterior, ``row_axis`` caudal, so the patient faces the image's left).
    """

    image: NDArray[np.float32]  # (rows, cols)
    origin_lps: FloatArray
    col_axis: FloatArray
    row_axis: FloatArray
    calibration: Calibration

    def to_lps(self, xy: NDArray[Any]) -> FloatArray:
        xy = np.asarray(xy, float)
        sp = self.calibration.pixel_spacing_mm
        assert sp is not None
        return np.asarray(self.origin_lps + xy[..., :1] * sp[1] * self.col_axis + xy[..., 1:2] * sp[0] * self.row_axis,
                          float)


def spine_lateral_position(volume: NDArray[Any], geom: VolumeGeometry, threshold: float | None) -> float:
    """LPS x (left-right) of the spine: the median x of bright voxels near the lateral centre.

    ``threshold`` separates bone (CT, e.g. 200 HU); ``None`` uses the volume's centre.
    """
    a = geom.affine()
    corners = _corners_lps(volume.shape, geom)
    centre = float(corners[:, 0].mean())
    if threshold is None:
        return centre
    k, i, j = np.nonzero(volume[:, :, :] > threshold)
    if len(k) < 50:
        return centre
    x = (np.stack([k, i, j, np.ones_like(k)], 1).astype(float) @ a.T)[:, 0]
    half = (corners[:, 0].max() - corners[:, 0].min()) / 4
    near = np.abs(x - centre) < half
    return float(np.median(x[near])) if near.any() else centre


def reformat_sagittal(volume: NDArray[Any], geom: VolumeGeometry, *, lateral_lps: float | None = None,
                      slab_mm: float = 0.0, spacing_mm: float | None = None, threshold: float | None = None) -> SagittalPlane:
    """Resample the true sagittal plane at LPS x = ``lateral_lps`` (mean over a slab ``slab_mm``
    thick; default position: through the spine, ``spine_lateral_position``).

    ``volume (k, rows, cols)`` in the order of ``geom``. See ``spine_plane`` for the plane that
    follows a curved spine.
    """
    if geom.slice_spacing_mm is None:
        raise CalibrationError("a single slice cannot be reformatted into a sagittal plane")
    x = spine_lateral_position(volume, geom, threshold) if lateral_lps is None else float(lateral_lps)
    corners = _corners_lps(volume.shape, geom)
    y0, y1 = corners[:, 1].min(), corners[:, 1].max()
    z0, z1 = corners[:, 2].min(), corners[:, 2].max()
    s = spacing_mm or float(min(geom.pixel_spacing_mm[0], geom.pixel_spacing_mm[1], geom.slice_spacing_mm))
    cols = int(np.floor((y1 - y0) / s)) + 1
    rows = int(np.floor((z1 - z0) / s)) + 1
    col_axis, row_axis, normal = np.array([0.0, 1.0, 0.0]), np.array([0.0, 0.0, -1.0]), np.array([1.0, 0.0, 0.0])
    offsets = [0.0] if slab_mm <= 0 else list(np.arange(-slab_mm / 2, slab_mm / 2 + 1e-6, max(s, slab_mm / 4)))
    origin = np.array([x, y0, z1])
    grid = origin + (np.arange(cols)[None, :, None] * col_axis + np.arange(rows)[:, None, None] * row_axis) * s
    acc = np.zeros((rows, cols), np.float32)
    for dx in offsets:
        acc += sample_lps(volume, geom, grid + dx * normal)
    cal = Calibration(pixel_spacing_mm=(s, s), source="volume", anterior="left", slice_spacing_mm=None,
                      warnings=geom.warnings)
    return SagittalPlane(image=(acc / len(offsets)).astype(np.float32), origin_lps=origin, col_axis=col_axis, row_axis=row_axis,
                         calibration=cal)


# ------------------------------------------------------------------------------ the spine's plane

#: CT bone threshold (HU) for finding the spine's centre line: trabecular bone of an
#: osteoporotic body is about 100–250 HU, muscle and soft tissue 30–80 HU
CT_BONE_HU = 150.0
#: search half-width (mm) about the field's lateral centre for the spine
SPINE_SEARCH_MM = 70.0
#: a sagittal input whose slice normal is within this angle of the fitted plane's normal keeps its
#: own pixel grid (no in-plane resampling)
SNAP_DEG = 5.0
#: an MR study's sagittal series keeps its own plane within this angle of the fitted one: the slab
#: is prescribed along the spine, and a scoliotic centre line (its lateral curve against the
#: kyphosis and lordosis) gives the fit a yaw and roll of 5–10° that are the curve's, not the
#: acquisition's (the plane model, trained on the phantom's own sagittal sections, lost most
#: bodies on such tilted planes: eval_planes MR seed 202, 9 of 9 bodies found on the series' own
#: plane, 2 on the tilted one). Since the eleventh session at any angle: a series is sagittal only
#: within 20 deg of the patient's sagittal plane (``io.classify.orientation_name``), and a fit
#: further off is the curve's too (MR 3903, a wide slab: a yaw of 32 deg from a scoliotic lumbar
#: line cut S1 obliquely, SS 37.5 against 46.9 deg, and put one femoral head 46 mm from the plane
#: and the other 96: PI 21.9 against 55.9 deg)
MR_SNAP_DEG = 90.0
#: the reformat's finest pixel (mm): finer than the plane model needs (its refinement crops sample
#: about 1 mm per crop pixel on lumbar bodies) costs resampling time for nothing
MIN_PLANE_SPACING_MM = 0.7
_LPS_POSTERIOR = np.array([0.0, 1.0, 0.0])
_LPS_CAUDAL = np.array([0.0, 0.0, -1.0])


@dataclass(frozen=True)
class Centreline:
    """Points on the spine's centre line, LPS mm, ``(n, 3)``, with a weight each."""

    points_lps: FloatArray
    weights: FloatArray


@dataclass(frozen=True)
class SpinePlane:
    """The spine's curved mid-sagittal reformat and the one plane it is reported on.

    Pixel ``[x, y]`` is reported at ``origin + x*s*col_axis + y*s*row_axis`` (``s`` =
    ``spacing_mm``; ``plane_json()`` in DICOM's convention); its image value was sampled
    ``lateral_mm[row]`` further along ``normal``. ``col_axis`` runs posterior or anterior
    (``anterior`` says which image side the patient faces), ``row_axis`` caudal.
    """

    image: NDArray[np.float32]  # (rows, cols)
    origin_lps: FloatArray  # (3,) centre of pixel (0, 0)
    col_axis: FloatArray  # (3,) unit, with the column index x
    row_axis: FloatArray  # (3,) unit, with the row index y
    normal: FloatArray  # (3,) unit
    spacing_mm: float
    lateral_mm: FloatArray  # (rows,) offset of each row's section from the plane along ``normal``
    anterior: str  # "left" or "right"
    snapped: bool  # True when the plane kept a sagittal series' own grid
    warnings: tuple[str, ...] = ()

    @property
    def calibration(self) -> Calibration:
        return Calibration(pixel_spacing_mm=(self.spacing_mm, self.spacing_mm), source="volume", anterior=self.anterior,
                           slice_spacing_mm=None, warnings=self.warnings)

    def to_lps(self, xy: NDArray[Any]) -> FloatArray:
        """Pixel points ``(..., 2)`` → LPS ``(..., 3)`` on the reported plane."""
        xy = np.asarray(xy, float)
        return np.asarray(self.origin_lps + (xy[..., :1] * self.col_axis + xy[..., 1:2] * self.row_axis) * self.spacing_mm,
                          float)

    def to_lps_sampled(self, xy: NDArray[Any]) -> FloatArray:
        """Pixel points ``(..., 2)`` → LPS ``(..., 3)`` where their image value was sampled."""
        xy = np.asarray(xy, float)
        d = np.interp(xy[..., 1], np.arange(len(self.lateral_mm)), self.lateral_mm)
        return np.asarray(self.to_lps(xy) + d[..., None] * self.normal, float)

    def from_lps(self, p_lps: NDArray[Any]) -> FloatArray:
        """LPS points ``(..., 3)`` → pixel ``(..., 2)`` of their projection onto the plane."""
        d = np.asarray(p_lps, float) - self.origin_lps
        return np.stack([d @ self.col_axis, d @ self.row_axis], -1) / self.spacing_mm

    def offset_lps(self, p_lps: NDArray[Any]) -> FloatArray:
        """Signed distance (mm) of LPS points ``(..., 3)`` from the plane along ``normal``."""
        return np.asarray((np.asarray(p_lps, float) - self.origin_lps) @ self.normal, float)

    def sample(self, volume: NDArray[Any], geom: VolumeGeometry) -> NDArray[np.float32]:
        """Another volume of the same frame of reference (an MR study's other sequence) sampled
        on this plane's curved grid: the same pixels, the same anatomy."""
        rows, cols = self.image.shape
        grid = self.origin_lps + (np.arange(cols)[None, :, None] * self.col_axis
                                  + np.arange(rows)[:, None, None] * self.row_axis) * self.spacing_mm
        return sample_lps(volume, geom, grid + self.lateral_mm[:, None, None] * self.normal)

    def plane_json(self) -> dict[str, list[float]]:
        """The contract's ``image.plane`` (DICOM convention, LPS mm)."""
        return {"image_position_patient": [round(float(v), 4) for v in self.origin_lps],
                "image_orientation_patient": [round(float(v), 6) for v in (*self.col_axis, *self.row_axis)]}

    @property
    def max_lateral_deviation_mm(self) -> float:
        return float(np.max(np.abs(self.lateral_mm))) if len(self.lateral_mm) else 0.0

    def lateral_deviation_between_mm(self, first_row: float, last_row: float) -> float:
        """The largest lateral offset (mm) of the rows from ``first_row`` to ``last_row`` (image rows,
        clipped to the image): the curve where the spine is. Below S1 the centre line follows the
        pelvis's bone, which is no curve of the spine."""
        n = len(self.lateral_mm)
        lo, hi = max(0, int(np.floor(first_row))), min(n - 1, int(np.ceil(last_row)))
        return float(np.max(np.abs(self.lateral_mm[lo:hi + 1]))) if n and hi >= lo else 0.0


#: the plane's lateral offset (mm) over which the reported points are said to be sections of a curve
CURVE_WARNING_MM = 2.0
CURVE_WARNING_START = "the spine curves up to"


def curve_warning(deviation_mm: float) -> str | None:
    """The warning for a plane whose rows lie up to ``deviation_mm`` off its mid-plane, or None
    where that is within ``CURVE_WARNING_MM``."""
    if deviation_mm <= CURVE_WARNING_MM:
        return None
    return (f"{CURVE_WARNING_START} {deviation_mm:.1f} mm out of the reported plane: each row of the image is its own "
            "section through the spine, its points are reported in the plane")


def _axes_by_anatomy(geom: VolumeGeometry) -> tuple[int, int, int]:
    """Volume array axes ``(superior, anterior-posterior, lateral)`` by which LPS axis each of
    (slice, row, col) runs closest to."""
    dirs = np.stack([geom.normal, geom.col_dir, geom.row_dir])  # array axes 0, 1, 2
    si = int(np.argmax(np.abs(dirs[:, 2])))
    rest = [a for a in range(3) if a != si]
    lat = max(rest, key=lambda a: abs(dirs[a, 0]))
    ap = next(a for a in rest if a != lat)
    return si, ap, lat


def ct_centreline(volume: NDArray[Any], geom: VolumeGeometry, threshold_hu: float = CT_BONE_HU,
                  step_mm: float = 6.0) -> Centreline:
    """The spine's centre line in a CT: for every ``step_mm`` of height, the bone (over
    ``threshold_hu``) nearest the field's lateral centre — its lateral profile's peak within
    ``SPINE_SEARCH_MM``, refined to the centroid within 25 mm of it (a body's half-width) — and
    the antero-posterior centroid of that bone. Works on any acquisition orientation (the axes
    nearest to superior, AP and lateral are used); voxels are subsampled to about 2 mm."""
    si, ap, lat = _axes_by_anatomy(geom)
    sp_axis = (geom.slice_spacing_mm or 1.0, geom.pixel_spacing_mm[0], geom.pixel_spacing_mm[1])
    steps = [max(1, int(round(2.0 / sp_axis[a]))) for a in range(3)]
    steps[si] = max(1, int(round(step_mm / sp_axis[si])))
    sub = np.asarray(volume[::steps[0], ::steps[1], ::steps[2]])
    mask = np.transpose(sub > threshold_hu, (si, ap, lat))  # (height, AP, lateral)
    idx_scale = np.array(steps, float)
    lat_mm = sp_axis[lat] * steps[lat]
    n_lat = mask.shape[2]
    centre = (n_lat - 1) / 2
    half = int(SPINE_SEARCH_MM / lat_mm)
    body = max(1, int(25.0 / lat_mm))
    profile = mask.sum(axis=1).astype(float)  # (height, lateral)
    from scipy.ndimage import uniform_filter1d

    smooth = uniform_filter1d(profile, body, axis=1)
    xs = np.arange(n_lat)
    a = geom.affine()
    pts: list[FloatArray] = []
    wts: list[float] = []
    centre_guess = np.full(profile.shape[0], centre)
    from scipy.ndimage import median_filter

    found: list[tuple[int, float, float, float]] = []  # (height, AP, lateral, weight) in subsampled indices
    for _ in range(2):  # the field's centre first, then the first pass's own median line
        found = []
        for h in range(profile.shape[0]):
            prev = centre_guess[h]
            lo, hi = int(max(0, round(prev) - half)), int(min(n_lat, round(prev) + half + 1))
            score = smooth[h, lo:hi] * np.exp(-0.5 * ((xs[lo:hi] - prev) * lat_mm / 30.0) ** 2)
            if score.size == 0 or score.max() <= 0:
                continue
            peak = lo + int(np.argmax(score))
            a0, a1 = max(0, peak - body), min(n_lat, peak + body + 1)
            w = profile[h, a0:a1]
            if w.sum() < 3:
                continue
            c_lat = float((np.arange(a0, a1) * w).sum() / w.sum())
            ap_prof = mask[h, :, a0:a1].sum(axis=1).astype(float)
            c_ap = float((np.arange(len(ap_prof)) * ap_prof).sum() / max(ap_prof.sum(), 1))
            found.append((h, c_ap, c_lat, float(w.sum())))
        if len(found) < 3:
            break
        hh, _, ll, _ = np.array(found).T
        centre_guess = np.interp(np.arange(profile.shape[0]), hh, median_filter(ll, size=min(len(ll), 7), mode="nearest"))
    if len(found) < 3:
        raise CalibrationError("no spine found in the CT: too little bone near the field's lateral centre")
    f = np.array(found)
    # the antero-posterior centroid jumps between body and disc levels (only the arch is bone at a
    # disc): a running median over about 30 mm of height
    f[:, 1] = median_filter(f[:, 1], size=min(len(f), max(3, int(30.0 / (sp_axis[si] * steps[si])) | 1)), mode="nearest")
    for h, c_ap, c_lat, wt in f:
        ijk = np.zeros(3)
        ijk[si], ijk[ap], ijk[lat] = h, c_ap, c_lat
        pts.append(a @ np.array([*(ijk * idx_scale), 1.0]))
        wts.append(float(wt))
    p = np.asarray(pts, float)[:, :3]
    line = _robust(Centreline(p, np.asarray(wts, float)))
    return _robust(_spine_run(line)) if SPINE_RUN else line


#: the CT centre line below the spine's own run is left out of the plane (``_spine_run``); off: as
#: before the fourteenth session (the pelvis's rows below the sacrum steer the plane)
SPINE_RUN = True
#: where the CT centre line breaks (``_spine_run``): its antero-posterior centroid steps by more than
#: this (mm). Within the spine the running median moves under 25 mm a step (over a stretch of rows left
#: out, the lordosis's change; a gap in height alone is no break: blind CT 6111 lost rows in its lumbar
#: spine); from the sacrum to the pubis, 100 mm anterior, 115-180 mm (dev CT 5500-5519, CT 6000-6005)
SPINE_RUN_AP_JUMP_MM = 60.0


def _spine_run(line: Centreline) -> Centreline:
    """The centre line (sorted caudal first) without its points below the spine's own run: split
    where the line breaks (``SPINE_RUN_AP_JUMP_MM``), the heaviest part is the spine, and the parts
    below it leave the plane's fit unless they carry on the spine's line: walking caudally, a part
    whose antero-posterior median lies within ``SPINE_RUN_AP_JUMP_MM`` of the last kept point is kept
    (the spine below a dense structure in front of it - contrast in bowel or bladder - that broke the
    line; a reviewer's probe), one further off is not (below the sacrum the bone nearest the midline
    is the pubis, far anterior: the pelvis, not the spine). The parts above it are kept."""
    p, w = line.points_lps, line.weights
    if len(p) < 4:
        return line
    cut = np.abs(np.diff(p[:, 1])) > SPINE_RUN_AP_JUMP_MM
    part = np.concatenate([[0], np.cumsum(cut)])
    spine = max(range(int(part[-1]) + 1), key=lambda k: float(w[part == k].sum()))
    keep = part >= spine
    ref = float(p[keep][0, 1])  # the kept line's caudal end
    for k in range(spine - 1, -1, -1):
        at = part == k
        if abs(float(np.median(p[at, 1])) - ref) <= SPINE_RUN_AP_JUMP_MM:
            keep |= at
            ref = float(p[at][0, 1])
    return Centreline(p[keep], w[keep])


def _robust(line: Centreline, tol_mm: float = 12.0) -> Centreline:
    """Drop centre-line points that stray laterally from a smooth fit of the others (a rib, an
    iliac wing), by a quadratic in height fitted with weights, twice."""
    p, w = line.points_lps, line.weights
    keep = np.ones(len(p), bool)
    for _ in range(2):
        if keep.sum() < 4:
            break
        coef = np.polyfit(p[keep, 2], p[keep, 0], 2, w=np.sqrt(w[keep]))
        keep = np.abs(np.polyval(coef, p[:, 2]) - p[:, 0]) < tol_mm
    order = np.argsort(p[keep, 2])
    return Centreline(p[keep][order], w[keep][order])


#: an oblique term (yaw or roll of the plane) is kept only when it is this many standard errors
#: from zero and under ``MAX_OBLIQUE_DEG``: a short or noisy centre line gives a true sagittal plane
OBLIQUE_T = 3.0
MAX_OBLIQUE_DEG = 35.0


#: the yaw (lateral position against antero-posterior) is kept only where the centre line supports it
#: beyond a sideways curve of the spine: tested with the lateral position also a polynomial of this degree
#: in height (a scoliotic curve follows height; its lordosis does too, so a curve alone reads as a yaw);
#: 0: the plain test, as before the fourteenth session
YAW_CURVE_TERMS = 3


def _yaw_beyond_curve(p: FloatArray, w: FloatArray, point: FloatArray) -> bool:
    """Whether the antero-posterior slope of the lateral position is ``OBLIQUE_T`` standard errors
    from zero with a polynomial of ``YAW_CURVE_TERMS`` degree in height beside it."""
    z = p[:, 2] - point[2]
    z = z / max(float(np.abs(z).max()), 1e-6)
    a = np.stack([np.ones(len(p)), p[:, 1] - point[1], *[z ** k for k in range(1, YAW_CURVE_TERMS + 1)]], 1)
    if len(p) <= a.shape[1] + 1:
        return True  # too few points to tell: the plain test decides
    sw = np.sqrt(w)
    aw = a * sw[:, None]
    sol, *_ = np.linalg.lstsq(aw, p[:, 0] * sw, rcond=None)
    resid = p[:, 0] * sw - aw @ sol
    cov = np.linalg.pinv(aw.T @ aw) * float(resid @ resid) / (len(p) - a.shape[1])
    return bool(abs(sol[1]) / np.sqrt(max(float(cov[1, 1]), 1e-12)) >= OBLIQUE_T)


def fit_plane(line: Centreline) -> tuple[FloatArray, FloatArray]:
    """Best-fit sagittal plane through a centre line: lateral (LPS x) as a linear function of
    antero-posterior and superior position, by weighted least squares; a slope is kept only where
    the line supports it (``OBLIQUE_T`` standard errors). Returns ``(point, normal)``; the normal
    points to the patient's left."""
    p = line.points_lps
    w = line.weights / max(float(line.weights.max()), 1e-12)
    point = np.average(p, axis=0, weights=w)
    coef = np.zeros(3)
    terms = [1, 2]  # AP (yaw), superior (roll)
    if YAW_CURVE_TERMS and not _yaw_beyond_curve(p, w, point):
        terms = [2]
    while terms:
        cols = [np.ones(len(p))] + [p[:, t] - point[t] for t in terms]
        a = np.stack(cols, 1)
        sw = np.sqrt(w)
        if len(p) <= len(cols):
            terms = []
            break
        sol, *_ = np.linalg.lstsq(a * sw[:, None], p[:, 0] * sw, rcond=None)
        resid = (p[:, 0] - a @ sol) * sw
        dof = max(1, len(p) - len(cols))
        cov = np.linalg.pinv((a * sw[:, None]).T @ (a * sw[:, None])) * float(resid @ resid) / dof
        t_stat = np.abs(sol[1:]) / np.sqrt(np.maximum(np.diag(cov)[1:], 1e-12))
        slope_ok = (t_stat >= OBLIQUE_T) & (np.degrees(np.arctan(np.abs(sol[1:]))) <= MAX_OBLIQUE_DEG)
        if slope_ok.all():
            coef[terms] = sol[1:]
            break
        terms = [t for t, ok in zip(terms, slope_ok, strict=True) if ok] if slope_ok.any() else \
            [t for t, ts in zip(terms, t_stat, strict=True) if ts > t_stat.min()]
    point = point.copy()
    point[0] = float(np.average(p[:, 0] - (p[:, 1] - point[1]) * coef[1] - (p[:, 2] - point[2]) * coef[2], weights=w))
    n = np.array([1.0, -coef[1], -coef[2]])
    n /= np.linalg.norm(n)
    return point, n


def _in_plane_axes(normal: FloatArray) -> tuple[FloatArray, FloatArray]:
    """``(col_axis, row_axis)``: caudal and posterior projected into the plane."""
    r = _LPS_CAUDAL - (_LPS_CAUDAL @ normal) * normal
    r /= np.linalg.norm(r)
    c = _LPS_POSTERIOR - (_LPS_POSTERIOR @ normal) * normal - (_LPS_POSTERIOR @ r) * r
    c /= np.linalg.norm(c)
    return c, r


#: the reformat spans this far anterior and posterior of the spine's centre line (mm): the trunk
#: about the spine, as the plane model was trained on, not a wide field's empty sides
AP_WINDOW_MM = (180.0, 150.0)


def spine_plane(volume: NDArray[Any], geom: VolumeGeometry, line: Centreline, *, spacing_mm: float | None = None,
                slab_mm: float = 0.0, smooth_mm: float = 25.0,
                ap_window_mm: tuple[float, float] | None = AP_WINDOW_MM, snap_deg: float = SNAP_DEG) -> SpinePlane:
    """The spine's curved mid-sagittal reformat (see the module docstring).

    ``line``: the spine's centre line (``ct_centreline`` or the landmark model's per-slice
    detections). The reported plane is ``fit_plane(line)``; rows are sampled at the centre line's
    lateral offset from it, interpolated over height and smoothed over ``smooth_mm``. A
    sagittal series whose slices lie within ``snap_deg`` (``SNAP_DEG``; ``MR_SNAP_DEG`` for an MR
    study) of that plane keeps its own plane and pixel grid, the rows still following the centre
    line. ``spacing_mm`` defaults to the finest in-plane spacing (no finer than ``MIN_PLANE_SPACING_MM``);
    ``slab_mm`` > 0 averages a slab that thick about each row's section; ``ap_window_mm``
    (anterior, posterior) limits the columns to that much of the field about the centre line
    (``None``: the whole field).
    """
    if geom.slice_spacing_mm is None:
        raise CalibrationError("a single slice cannot be reformatted into a sagittal plane")
    point, normal = fit_plane(line)
    warnings = list(geom.warnings)
    snapped = False
    s = float(spacing_mm or max(MIN_PLANE_SPACING_MM, min(geom.pixel_spacing_mm)))
    col_axis, row_axis = _in_plane_axes(normal)
    if np.degrees(np.arccos(min(1.0, abs(float(geom.normal @ normal))))) < snap_deg and spacing_mm is None:
        # a sagittal series: its own rows and columns, flipped where they run cranial or anterior
        normal = geom.normal if geom.normal @ normal > 0 else -geom.normal
        c, r = geom.row_dir.copy(), geom.col_dir.copy()
        if abs(c @ _LPS_CAUDAL) > abs(r @ _LPS_CAUDAL):
            c, r = r, c
        col_axis = c if c @ _LPS_POSTERIOR >= 0 else -c
        row_axis = r if r @ _LPS_CAUDAL >= 0 else -r
        s = float(geom.pixel_spacing_mm[0])
        snapped = abs(geom.pixel_spacing_mm[0] - geom.pixel_spacing_mm[1]) < 1e-6
        if not snapped:
            col_axis, row_axis = _in_plane_axes(normal)
            s = float(max(MIN_PLANE_SPACING_MM, min(geom.pixel_spacing_mm)))
    corners = _corners_lps(volume.shape, geom)
    u = (corners - point) @ col_axis
    v = (corners - point) @ row_axis
    if ap_window_mm is not None:  # col_axis runs posterior: anterior is negative u
        u_spine = float(np.median((line.points_lps - point) @ col_axis))
        u = np.clip(u, u_spine - ap_window_mm[0], u_spine + ap_window_mm[1])
    if snapped:  # keep the series' pixel centres on the grid
        first = geom.positions[0]
        u0 = float(np.floor((u.min() - (first - point) @ col_axis) / s + 1e-6) * s + (first - point) @ col_axis)
        v0 = float(np.floor((v.min() - (first - point) @ row_axis) / s + 1e-6) * s + (first - point) @ row_axis)
    else:
        u0, v0 = float(u.min()), float(v.min())
    cols = int(np.floor((u.max() - u0) / s + 1e-6)) + 1
    rows = int(np.floor((v.max() - v0) / s + 1e-6)) + 1
    origin = point + u0 * col_axis + v0 * row_axis
    # each row's lateral offset from the plane, along the centre line
    lv = (line.points_lps - origin) @ row_axis / s
    ld = (line.points_lps - point) @ normal
    order = np.argsort(lv)
    lateral = np.interp(np.arange(rows), lv[order], ld[order])
    from scipy.ndimage import gaussian_filter1d

    lateral = gaussian_filter1d(lateral, max(0.5, smooth_mm / s / 2.355), mode="nearest")
    grid = origin + (np.arange(cols)[None, :, None] * col_axis + np.arange(rows)[:, None, None] * row_axis) * s
    grid = grid + lateral[:, None, None] * normal
    offsets = [0.0] if slab_mm <= 0 else list(np.linspace(-slab_mm / 2, slab_mm / 2, max(2, int(slab_mm / s) + 1)))
    acc = np.zeros((rows, cols), np.float32)
    for dz in offsets:
        acc += sample_lps(volume, geom, grid + dz * normal)
    dev = float(np.abs(lateral).max()) if rows else 0.0
    if (curve := curve_warning(dev)) is not None:
        warnings.append(curve)
    anterior = "left" if col_axis @ _LPS_POSTERIOR > 0 else "right"
    return SpinePlane(image=(acc / len(offsets)).astype(np.float32), origin_lps=origin, col_axis=col_axis,
                      row_axis=row_axis, normal=normal,
                      spacing_mm=s, lateral_mm=lateral, anterior=anterior, snapped=snapped, warnings=tuple(warnings))
