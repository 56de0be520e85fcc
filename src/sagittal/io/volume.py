"""CT and MR series as volumes: slice order and spacing from positions (never SliceThickness),
gaps, duplicates and mixed orientations detected, enhanced multi-frame functional groups
read, and a sagittal plane (or thin slab) through the spine reformatted with SimpleITK.

Patient coordinates are DICOM's LPS (mm). A volume's voxel ``(k, i, j)`` (slice, row,
column) lies at ``origin + j*dc*row_dir + i*dr*col_dir + k*ds*normal`` where ``row_dir`` and
``col_dir`` are the two ImageOrientationPatient triplets.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import CalibrationError
from .calibration import Calibration, parse_spacing

_ORIENT_TOL = 1e-3
_POS_TOL_MM = 1e-3


@dataclass(frozen=True)
class VolumeGeometry:
    """Sorted slice geometry of a series."""

    order: np.ndarray  # indices of the input slices, sorted along the normal, duplicates dropped
    positions: np.ndarray  # (n, 3) LPS of each kept slice's first pixel
    row_dir: np.ndarray  # (3,) direction of increasing column
    col_dir: np.ndarray  # (3,) direction of increasing row
    normal: np.ndarray  # (3,)
    pixel_spacing_mm: tuple[float, float]  # (row, col)
    slice_spacing_mm: float | None
    warnings: tuple[str, ...] = field(default_factory=tuple)

    def affine(self) -> np.ndarray:
        """4×4 voxel (k, i, j, 1) → LPS (x, y, z, 1)."""
        a = np.eye(4)
        a[:3, 0] = self.normal * (self.slice_spacing_mm or 0.0)
        a[:3, 1] = self.col_dir * self.pixel_spacing_mm[0]
        a[:3, 2] = self.row_dir * self.pixel_spacing_mm[1]
        a[:3, 3] = self.positions[0]
        return a


def slice_geometry(positions, orientations, pixel_spacings, where: str = "series") -> VolumeGeometry:
    """Sort slices along their normal and measure the spacing from their positions.

    ``positions (n, 3)``, ``orientations (n, 6)``, ``pixel_spacings`` one ``(row, col)`` per
    slice. Raises ``CalibrationError`` for missing or mixed geometry; gaps and duplicates
    are warnings (duplicates dropped).
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
    sp = [parse_spacing(s) for s in pixel_spacings]
    if any(s is None for s in sp):
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
        steps = np.diff(d_sorted)
        spacing = float(np.median(steps))
        gaps = np.where(steps > 1.5 * spacing)[0]
        if len(gaps):
            warnings.append(f"{len(gaps)} gap(s) between slices (largest {steps.max():.2f} mm against a spacing of "
                            f"{spacing:.2f} mm)")
        if np.abs(steps - spacing).max() > 0.05 * spacing and not len(gaps):
            warnings.append("slice spacing is irregular")
    return VolumeGeometry(order=order, positions=pos[order], row_dir=r, col_dir=c, normal=n,
                          pixel_spacing_mm=sp[0], slice_spacing_mm=spacing, warnings=tuple(warnings))


def enhanced_geometry(ds, where: str) -> tuple[list, list, list]:
    """Per-frame positions, orientations and spacings of an enhanced multi-frame dataset."""
    shared = (ds.get("SharedFunctionalGroupsSequence") or [None])[0]
    per = ds.get("PerFrameFunctionalGroupsSequence") or []
    n = int(ds.get("NumberOfFrames", 1) or 1)
    if len(per) not in (0, n):
        raise CalibrationError(f"{where}: {len(per)} per-frame functional groups for {n} frames")

    def find(frame, seq_kw, attr):
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


def volume_calibration(geom: VolumeGeometry) -> Calibration:
    return Calibration(pixel_spacing_mm=geom.pixel_spacing_mm, source="volume", anterior=None,
                       slice_spacing_mm=geom.slice_spacing_mm, warnings=geom.warnings)


@dataclass(frozen=True)
class SagittalPlane:
    """A reformatted sagittal image and how its pixels map back to the patient (LPS mm).

    Pixel ``[x, y] = [col, row]`` lies at ``origin + col*spacing[1]*col_axis + row*spacing[0]*row_axis``
    (``col_axis`` points posterior, ``row_axis`` caudal, so the patient faces the image's left).
    """

    image: np.ndarray  # (rows, cols) float32
    origin_lps: np.ndarray
    col_axis: np.ndarray
    row_axis: np.ndarray
    calibration: Calibration

    def to_lps(self, xy: np.ndarray) -> np.ndarray:
        xy = np.asarray(xy, float)
        sp = self.calibration.pixel_spacing_mm
        return (self.origin_lps + xy[..., :1] * sp[1] * self.col_axis + xy[..., 1:2] * sp[0] * self.row_axis)


def spine_lateral_position(volume: np.ndarray, geom: VolumeGeometry, threshold: float | None) -> float:
    """LPS x (left-right) of the spine: the median x of bright voxels near the lateral centre.

    ``threshold`` separates bone (CT, e.g. 200 HU); ``None`` uses the volume's centre.
    """
    a = geom.affine()
    corners = np.array([[k, i, j, 1] for k in (0, volume.shape[0] - 1) for i in (0, volume.shape[1] - 1)
                        for j in (0, volume.shape[2] - 1)], float) @ a.T
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


def reformat_sagittal(volume: np.ndarray, geom: VolumeGeometry, *, lateral_lps: float | None = None,
                      slab_mm: float = 0.0, spacing_mm: float | None = None, threshold: float | None = None) -> SagittalPlane:
    """Resample a sagittal plane (mean over a slab ``slab_mm`` thick) with SimpleITK.

    ``volume (k, rows, cols)`` in the order of ``geom``. The plane is at LPS x =
    ``lateral_lps`` (default: through the spine, see ``spine_lateral_position``).
    """
    import SimpleITK as sitk

    if geom.slice_spacing_mm is None:
        raise CalibrationError("a single slice cannot be reformatted into a sagittal plane")
    img = sitk.GetImageFromArray(np.ascontiguousarray(volume, dtype=np.float32))
    img.SetSpacing((geom.pixel_spacing_mm[1], geom.pixel_spacing_mm[0], geom.slice_spacing_mm))
    img.SetOrigin(tuple(float(v) for v in geom.positions[0]))
    img.SetDirection(tuple(float(v) for v in np.stack([geom.row_dir, geom.col_dir, geom.normal], axis=1).ravel()))
    x = spine_lateral_position(volume, geom, threshold) if lateral_lps is None else float(lateral_lps)
    a = geom.affine()
    shape = volume.shape
    corners = np.array([[k, i, j, 1] for k in (0, shape[0] - 1) for i in (0, shape[1] - 1) for j in (0, shape[2] - 1)],
                       float) @ a.T
    y0, y1 = corners[:, 1].min(), corners[:, 1].max()
    z0, z1 = corners[:, 2].min(), corners[:, 2].max()
    s = spacing_mm or float(min(geom.pixel_spacing_mm[0], geom.pixel_spacing_mm[1], geom.slice_spacing_mm))
    cols = int(np.floor((y1 - y0) / s)) + 1
    rows = int(np.floor((z1 - z0) / s)) + 1
    col_axis, row_axis, normal = np.array([0.0, 1.0, 0.0]), np.array([0.0, 0.0, -1.0]), np.array([1.0, 0.0, 0.0])
    offsets = [0.0] if slab_mm <= 0 else list(np.arange(-slab_mm / 2, slab_mm / 2 + 1e-6, max(s, slab_mm / 4)))
    acc = np.zeros((rows, cols), np.float32)
    for dx in offsets:
        ref = sitk.Image(cols, rows, 1, sitk.sitkFloat32)
        ref.SetSpacing((s, s, 1.0))
        ref.SetOrigin((x + dx, y0, z1))
        ref.SetDirection(tuple(np.stack([col_axis, row_axis, normal], axis=1).ravel()))
        out = sitk.Resample(img, ref, sitk.Transform(), sitk.sitkLinear, float(np.min(volume)))
        acc += sitk.GetArrayFromImage(out)[0]
    image = acc / len(offsets)
    cal = Calibration(pixel_spacing_mm=(s, s), source="volume", anterior="left", slice_spacing_mm=None,
                      warnings=geom.warnings)
    return SagittalPlane(image=image, origin_lps=np.array([x, y0, z1]), col_axis=col_axis, row_axis=row_axis,
                         calibration=cal)
