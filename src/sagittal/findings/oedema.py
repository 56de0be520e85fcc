"""Bone-marrow oedema and intravertebral clefts per vertebral body, from MR (and CT) planes.

Method: signal analysis inside each body's mid-sagittal section, normalised to the patient's
own vertebrae, so that it holds across scanners whose intensity scales differ (MR signal has
no absolute unit). For every sequence, the reference marrow signal is the median over the
bodies in view of each body's median; most bodies are normal, so the reference is robust to
a few abnormal ones. A pixel is oedematous when it is bright on a fluid-sensitive,
fat-suppressed sequence (STIR, or T2 with fat saturation) *and*, when a T1 series is there,
dark on T1 (docs/clinical.md: oedema is T1 hypointense and STIR/T2-FS hyperintense).

- Extent: percent of the body's whole mid-sagittal section (cortex included) covered by
  oedema, a cleft excluded; ``present`` from ``OEDEMA_MIN_EXTENT_PCT``.
- Modic-type endplate change: signal confined to a band under one endplate and mirrored in
  the next body across the disc is a disc-endplate change, not oedema of the body (Modic et
  al., Radiology 1988;166:193–199); it is reported as absent with a warning.
- Clefts (Kümmell's sign): a linear, elongated region inside the body holding gas (dark on
  every MR sequence; air density on CT) or fluid (dark on T1, as bright as CSF on STIR/T2).
- A body cut by the field, or too few bodies to normalise against, gives ``None`` with a
  warning: never ``False`` for what could not be judged.

Points are the contract's six per body, ``(6, 2)`` ``[x, y]`` pixels of the plane, in the
order of ``sagittal.levels.POINT_NAMES``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import cv2
import numpy as np
from scipy import ndimage

from ..levels import AI, AS, LEVEL_INDEX, LEVELS, MI, MS, PI, PS

__all__ = ["BodyMarrow", "MarrowFindings", "assess_mr", "assess_ct_clefts", "body_mask", "FLUID_SENSITIVE"]

#: fat-suppressed fluid-sensitive sequences that show oedema, in order of preference
FLUID_SENSITIVE: tuple[str, ...] = ("STIR", "T2FS")
MR_SEQUENCES: tuple[str, ...] = ("T1", "T2", "STIR", "T2FS")

#: An oedematous pixel is at least this many times the reference marrow signal on STIR/T2-FS
#: and this many robust standard deviations above it; on T1 at most the ratio below. Chosen on
#: phantom studies of the training stream (scripts/eval_oedema.py scores other seeds).
FLUID_RATIO_MIN = 1.6
FLUID_Z_MIN = 3.0
T1_RATIO_MAX = 0.8
T1_Z_MAX = -2.0
#: a body with less oedema than this share of its section is reported as without oedema
OEDEMA_MIN_EXTENT_PCT = 5.0
#: a band under one endplate no thicker than this share of the body's height can be Modic
MODIC_BAND_MAX = 0.3
#: a fluid cleft is at least this share of the CSF signal on the fluid-sensitive sequence
FLUID_CLEFT_CSF_RATIO = 0.7
#: gas: at most this share of the reference marrow signal on T1 and T2; CT: HU below
GAS_MR_RATIO_MAX = 0.6
GAS_CT_HU_MAX = -300.0
#: a cleft band differs from the marrow two rows above and below by at least this factor
#: (brighter for fluid, darker for gas), over at least this area
CLEFT_CONTRAST = 1.15
CLEFT_MIN_AREA_MM2 = 4.0
#: bodies needed in view to normalise a patient's signal
MIN_REFERENCE_BODIES = 3
#: margin kept from the body's outline when sampling signal (cortex, partial volume with discs)
INNER_MARGIN_MM = 1.5


@dataclass(frozen=True)
class BodyMarrow:
    """What the marrow of one body shows. ``oedema`` / ``cleft`` are contract objects or None."""

    level: str
    oedema: dict[str, object] | None
    cleft: dict[str, object] | None
    oedema_mask: np.ndarray | None = field(default=None, repr=False)  # (H, W) bool, for outlines
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class MarrowFindings:
    """Per-level findings and study-level warnings."""

    bodies: dict[str, BodyMarrow]
    warnings: tuple[str, ...] = ()


def body_mask(points_px: np.ndarray, shape: tuple[int, int], origin: tuple[int, int] = (0, 0)) -> np.ndarray:
    """The body's mid-sagittal section: polygon AS, MS, PS, PI, MI, AI filled, ``(H, W)`` bool;
    with ``origin`` (column, row), the window of that shape whose top-left pixel is there (the
    same pixels as the whole image's mask: the offset is taken in the polygon's fixed point)."""
    poly = np.asarray(points_px, float)[[AS, MS, PS, PI, MI, AI]]
    mask = np.zeros(shape, np.uint8)
    fixed = np.round(poly * 16).astype(np.int32) - 16 * np.asarray(origin, np.int32)
    cv2.fillPoly(mask, [fixed.reshape(-1, 1, 2)], 1, cv2.LINE_8, 4)
    return mask.astype(bool)


def _body_coordinates(points_px: np.ndarray, rows: np.ndarray, cols: np.ndarray,
                      spacing_mm: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """``(u, v)`` of pixels in the body: u posterior→anterior, v inferior→superior endplate, in [0, 1]."""
    s = np.array([spacing_mm[1], spacing_mm[0]], float)
    p = np.asarray(points_px, float) * s
    q = np.stack([cols, rows], -1).astype(float) * s
    axis = p[AI] - p[PI]
    depth = float(np.hypot(*axis))
    u = np.clip(((q - p[PI]) @ axis) / max(depth * depth, 1e-9), 0.0, 1.0)
    inferior = p[PI] + u[:, None] * (p[AI] - p[PI])
    superior = p[PS] + u[:, None] * (p[AS] - p[PS])
    height = superior - inferior
    h2 = np.maximum(np.einsum("ij,ij->i", height, height), 1e-9)
    v = np.clip(np.einsum("ij,ij->i", q - inferior, height) / h2, 0.0, 1.0)
    return u, v


def _in_field(points_px: np.ndarray, shape: tuple[int, int]) -> bool:
    p = np.asarray(points_px, float)
    return bool(np.all(np.isfinite(p)) and np.all(p >= 0) and np.all(p[:, 0] <= shape[1] - 1)
                and np.all(p[:, 1] <= shape[0] - 1))


def _erode(mask: np.ndarray, margin_px: int) -> np.ndarray:
    if margin_px < 1:
        return mask
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * margin_px + 1, 2 * margin_px + 1))
    return cv2.erode(mask.astype(np.uint8), k).astype(bool)


@dataclass(frozen=True)
class _Body:
    level: str
    points: np.ndarray  # (6, 2)
    mask: np.ndarray  # (h, w) whole section, in the body's window of the image
    inner: np.ndarray  # (h, w) away from the outline
    origin: tuple[int, int]  # (row, column) of the window's top-left pixel in the image
    rows: np.ndarray  # inner pixel rows (image)
    cols: np.ndarray
    u: np.ndarray  # body coordinates of the inner pixels
    v: np.ndarray

    def local(self, sel: np.ndarray | slice) -> tuple[np.ndarray, np.ndarray]:
        """Window rows and columns of the inner pixels ``sel`` (a boolean over them)."""
        return self.rows[sel] - self.origin[0], self.cols[sel] - self.origin[1]

    def in_image(self, window: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
        """A window's boolean mask placed in an image of ``shape``."""
        out = np.zeros(shape, bool)
        r0, c0 = self.origin
        out[r0:r0 + window.shape[0], c0:c0 + window.shape[1]] = window
        return out


@dataclass(frozen=True)
class _Reference:
    marrow: float  # median of the bodies' median signal
    spread: float  # robust standard deviation of the signal inside a normal body


def _reference(image: np.ndarray, bodies: list[_Body]) -> _Reference:
    medians, spreads = [], []
    for b in bodies:
        vals = image[b.rows, b.cols]
        med = float(np.median(vals))
        medians.append(med)
        spreads.append(1.4826 * float(np.median(np.abs(vals - med))))
    marrow = float(np.median(medians))
    spread = max(float(np.median(spreads)), 0.02 * abs(marrow), 1e-6)
    return _Reference(marrow, spread)


def _canal_signal(image: np.ndarray, bodies: list[_Body], spacing_mm: tuple[float, float]) -> float | None:
    """CSF signal: the 90th percentile in a strip 4–10 mm behind the posterior walls."""
    s = np.array([spacing_mm[1], spacing_mm[0]], float)
    samples = []
    for b in bodies:
        p = b.points * s
        wall = p[PS] - p[PI]
        back = p[PI] - p[AI]
        back /= max(float(np.hypot(*back)), 1e-9)
        for t in np.linspace(0.15, 0.85, 8):
            for d in np.linspace(4.0, 10.0, 7):
                xy = (p[PI] + t * wall + d * back) / s
                c, r = int(round(xy[0])), int(round(xy[1]))
                if 0 <= r < image.shape[0] and 0 <= c < image.shape[1]:
                    samples.append(image[r, c])
    return float(np.percentile(samples, 90)) if len(samples) >= 20 else None


def _height_mm(points_px: np.ndarray, spacing_mm: tuple[float, float]) -> float:
    p = np.asarray(points_px, float) * np.array([spacing_mm[1], spacing_mm[0]])
    return float((np.hypot(*(p[AS] - p[AI])) + np.hypot(*(p[PS] - p[PI]))) / 2)


def _depth_mm(points_px: np.ndarray, spacing_mm: tuple[float, float]) -> float:
    d = (np.asarray(points_px[AI], float) - points_px[PI]) * np.array([spacing_mm[1], spacing_mm[0]])
    return float(np.hypot(*d))


def _prepare_bodies(vertebrae_px: Mapping[str, np.ndarray], shape: tuple[int, int], spacing_mm: tuple[float, float],
                    warnings: dict[str, list[str]]) -> list[_Body]:
    margin_px = max(1, int(round(INNER_MARGIN_MM / min(spacing_mm))))
    bodies = []
    for level in sorted(vertebrae_px, key=lambda lv: LEVEL_INDEX[lv]):
        pts = np.asarray(vertebrae_px[level], float)
        if pts.shape != (6, 2):
            raise ValueError(f"{level}: six (x, y) points expected, got shape {pts.shape}")
        if not _in_field(pts, shape):
            warnings[level].append(f"{level}: the body is cut by the field of view; marrow signal not judged")
            continue
        # the section's window, padded beyond the erosion's reach (cv2 erodes as if the image's
        # outside were foreground: at the window's edge the whole image's zeros must be there)
        pad = margin_px + 2
        c0, r0 = (max(0, int(np.floor(v)) - pad) for v in pts.min(axis=0))
        c1, r1 = min(shape[1], int(np.ceil(pts[:, 0].max())) + pad + 1), min(shape[0], int(np.ceil(pts[:, 1].max())) + pad + 1)
        window = body_mask(pts, (r1 - r0, c1 - c0), (c0, r0))
        inner_w = _erode(window, margin_px)
        rows, cols = np.nonzero(inner_w)
        rows, cols = rows + r0, cols + c0
        if len(rows) < 20:
            warnings[level].append(f"{level}: the body's section is too small to judge its marrow signal")
            continue
        u, v = _body_coordinates(pts, rows, cols, spacing_mm)
        bodies.append(_Body(level, pts, window, inner_w, (r0, c0), rows, cols, u, v))
    return bodies


def _smoothed(planes: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    out = {}
    shape = None
    for name, img in planes.items():
        key = name.upper()
        if key not in MR_SEQUENCES:
            raise ValueError(f"unknown MR sequence {name!r}; expected one of {', '.join(MR_SEQUENCES)}")
        arr = np.asarray(img, np.float32)
        if arr.ndim != 2:
            raise ValueError(f"{key}: a 2-D plane is expected, got shape {arr.shape}")
        if shape is not None and arr.shape != shape:
            raise ValueError(f"{key}: every plane must share one pixel grid; got {arr.shape} and {shape}")
        shape = arr.shape
        out[key] = cv2.medianBlur(arr, 3)
    return out


def _median(x: np.ndarray) -> float:
    """``np.median`` of a 1-D array without NaN (the same value: the middle of a partition, or
    the mean of the two middle elements), without its per-call overhead (~0.03 ms: the height
    profiles take hundreds)."""
    if x.dtype.kind != "f":
        return float(np.median(x))
    k = x.size // 2
    if x.size % 2:
        return float(np.partition(x, k)[k])
    part = np.partition(x, (k - 1, k))
    return float((part[k - 1] + part[k]) / 2)  # in the array's float type, as np.mean sums and divides


def _profiles(body: _Body, values: Mapping[str, np.ndarray], spacing_mm: tuple[float, float]
              ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Height profiles: each inner pixel's bin (one bin per pixel row of the body's height) and,
    per sequence, the median signal of every bin over the body's central depth (NaN if empty)."""
    height_px = _height_mm(body.points, spacing_mm) / min(spacing_mm)
    nbins = int(np.clip(round(height_px), 6, 200))
    bins = np.minimum((body.v * nbins).astype(int), nbins - 1)
    central = np.flatnonzero((body.u >= 0.15) & (body.u <= 0.85))
    order = central[np.argsort(bins[central], kind="stable")]  # the central pixels, bin by bin
    counts = np.bincount(bins[central], minlength=nbins)
    ends = np.cumsum(counts)
    out = {}
    for name, vals in values.items():
        prof = np.full(nbins, np.nan)
        grouped = vals[order]
        for i in np.flatnonzero(counts >= 4):
            prof[i] = _median(grouped[ends[i] - counts[i]:ends[i]])
        out[name] = prof
    return bins, out


def _local(prof: np.ndarray, i: int) -> tuple[float, float]:
    """The profile two bins below and above bin ``i`` (NaN beyond the body)."""
    lo = prof[i - 2] if i >= 2 else np.nan
    hi = prof[i + 2] if i + 2 < len(prof) else np.nan
    return float(lo), float(hi)


def _band_bins(prof: np.ndarray, test: Callable[[int, float, float, float], bool]) -> list[int]:
    """Bins away from the endplates (partial volume with the discs) that pass ``test(i, value, below, above)``."""
    n = len(prof)
    edge = max(2, int(np.ceil(0.12 * n)))
    out = []
    for i in range(edge, n - edge):
        lo, hi = _local(prof, i)
        if np.isfinite(prof[i]) and np.isfinite(lo) and np.isfinite(hi) and test(i, float(prof[i]), lo, hi):
            out.append(i)
    return out


def _clefts(body: _Body, imgs: dict[str, np.ndarray], refs: dict[str, _Reference], bright_seq: str | None,
            csf: float | None, spacing_mm: tuple[float, float]) -> tuple[np.ndarray, np.ndarray, str | None]:
    """Cleft pixels among the body's inner pixels, the zone about them, and their content
    (``gas``/``fluid``/None).

    A cleft lies across the body along the endplates (Kümmell's sign), so the body is read as a
    height profile: a fluid cleft is a band as bright as CSF on the fluid-sensitive sequence,
    clearly brighter than the marrow two rows above and below (oedema around it included), and
    dark on T1; a gas cleft is a band dark on T1 and T2, where marrow is bright, clearly darker
    than the rows around it, and not bright on STIR / T2-FS (where normal marrow is dark too).
    """
    n = len(body.rows)
    bins, prof = _profiles(body, {k: v[body.rows, body.cols] for k, v in imgs.items()}, spacing_mm)
    found: list[int] = []
    content: str | None = None
    if bright_seq is not None and csf is not None:
        p = prof[bright_seq] / csf
        t1 = prof["T1"] / refs["T1"].marrow if "T1" in prof else None

        def fluid(i: int, v: float, lo: float, hi: float) -> bool:
            return (v >= FLUID_CLEFT_CSF_RATIO and v >= CLEFT_CONTRAST * max(lo, hi)
                    and (t1 is None or bool(t1[i] <= T1_RATIO_MAX)))

        found, content = _band_bins(p, fluid), "fluid"
    plain = [k for k in ("T1", "T2") if k in prof]  # sequences on which normal marrow is bright
    if not found and len(imgs) >= 2 and plain:
        q = {k: prof[k] / refs[k].marrow for k in prof}

        def gas(i: int, v: float, lo: float, hi: float) -> bool:
            dark = all(bool(q[k][i] <= GAS_MR_RATIO_MAX) for k in plain)
            not_bright = all(bool(q[k][i] < FLUID_RATIO_MIN) for k in q if k not in plain)
            trough = any(bool(q[k][i] * CLEFT_CONTRAST <= min(_local(q[k], i))) for k in plain)
            return dark and not_bright and trough

        found, content = _band_bins(q[plain[0]], gas), "gas"
    if not found:
        return np.zeros(n, bool), np.zeros(n, bool), None
    band = np.isin(bins, found)
    if band.sum() * spacing_mm[0] * spacing_mm[1] < CLEFT_MIN_AREA_MM2:
        return np.zeros(n, bool), np.zeros(n, bool), None
    zone = np.isin(bins, np.unique(np.concatenate([np.asarray(found) + k for k in (-1, 0, 1)])))
    return band, zone, content


def _modic_band(v: np.ndarray) -> str | None:
    """``superior``/``inferior`` when oedema-like pixels lie only in a band under that endplate."""
    if v.size == 0:
        return None
    if v.min() >= 1.0 - MODIC_BAND_MAX:
        return "superior"
    if v.max() <= MODIC_BAND_MAX:
        return "inferior"
    return None


def _oedema_candidates(b: _Body, imgs: dict[str, np.ndarray], refs: dict[str, _Reference], fluid_seq: str,
                       exclude: np.ndarray) -> np.ndarray:
    """Inner pixels bright on the fluid-sensitive sequence and (with T1) dark on T1, outside
    ``exclude`` (a cleft's zone), from the region's half maximum; specks not yet removed."""
    f = imgs[fluid_seq][b.rows, b.cols]
    ref = refs[fluid_seq]
    cand = (f >= FLUID_RATIO_MIN * ref.marrow) & (f - ref.marrow >= FLUID_Z_MIN * ref.spread) & ~exclude
    if "T1" in imgs:
        t1 = imgs["T1"][b.rows, b.cols]
        r1 = refs["T1"]
        cand &= (t1 <= T1_RATIO_MAX * r1.marrow) & (t1 - r1.marrow <= T1_Z_MAX * r1.spread)
    if cand.sum() >= 4:
        # the region's edge at half its contrast over the marrow (half maximum), not at the
        # detection threshold, which partial volume would push outwards
        half = (ref.marrow + float(np.median(f[cand]))) / 2
        cand &= f >= half
    return np.asarray(cand, bool)


def _grid(b: _Body, sel: np.ndarray) -> np.ndarray:
    """The inner pixels ``sel`` as a mask of the body's window (padded beyond the reach of the
    morphology below, so that it gives what it would on the whole image)."""
    grid = np.zeros(b.mask.shape, bool)
    grid[b.local(sel)] = True
    return grid


def _specks_removed(b: _Body, cand: np.ndarray) -> np.ndarray:
    """``cand`` (inner pixels) opened: specks and strips under 3 pixels thick removed."""
    return np.asarray(ndimage.binary_opening(_grid(b, cand))[b.local(slice(None))])


def _beside_cleft(b: _Body, cand: np.ndarray, kept: np.ndarray, zone: np.ndarray) -> np.ndarray:
    """``kept`` (the candidates opened) with the candidates the opening took back where they
    touch the cleft's zone or the oedema kept (connected regions of ``cand``): the strips of
    oedema left beside a cleft once its zone is cut out are 2-3 pixels thick at 1.6 mm, and
    the opening erased them (docs/oedema.md). Used only for a body already judged to have
    oedema: in a body without, a fluid cleft's partial-volume rim looks the same (7-8 % of the
    section), so the judgement itself stays on the opened candidates."""
    cross = ndimage.generate_binary_structure(2, 1)
    labels, _ = ndimage.label(_grid(b, cand), structure=cross)
    near = ndimage.binary_dilation(_grid(b, zone), structure=cross)
    ids = np.unique(np.concatenate([labels[near], labels[_grid(b, kept)]]))
    return np.asarray(np.isin(labels, ids[ids > 0])[b.local(slice(None))] | kept, bool)


def _extent_mask(b: _Body, keep: np.ndarray, exclude: np.ndarray, spacing_mm: tuple[float, float]) -> np.ndarray:
    """The oedematous part of the whole section (the body's window): inner pixels grown back to
    the outline, cleft zone out."""
    grid = _grid(b, keep)
    if not grid.any():
        return grid
    margin_px = max(1, int(round(INNER_MARGIN_MM / min(spacing_mm))))
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * margin_px + 1, 2 * margin_px + 1))
    ring = b.mask & ~b.inner  # grow back only into the margin the inner mask left out
    grid = grid | (cv2.dilate(grid.astype(np.uint8), k).astype(bool) & ring)
    return np.asarray(grid & ~_grid(b, exclude), bool)


def _modic_partner(level: str, bands: Mapping[str, str | None]) -> str | None:
    """The level across the disc whose band mirrors ``level``'s, if any."""
    band = bands.get(level)
    if band is None:
        return None
    i = LEVEL_INDEX[level] + (1 if band == "inferior" else -1)
    if not 0 <= i < len(LEVELS):
        return None
    other = LEVELS[i]
    return other if bands.get(other) == ("superior" if band == "inferior" else "inferior") else None


def assess_mr(planes: Mapping[str, np.ndarray], vertebrae_px: Mapping[str, np.ndarray],
              spacing_mm: tuple[float, float]) -> MarrowFindings:
    """Oedema and clefts per body from co-registered MR planes.

    ``planes``: sequence name (``T1``, ``T2``, ``STIR``, ``T2FS``) → ``(H, W)`` signal on one
    pixel grid (the plane the landmarks were placed on). ``vertebrae_px``: level → ``(6, 2)``.
    ``spacing_mm``: ``[row, column]``.
    """
    imgs = _smoothed(planes)
    if not imgs:
        raise ValueError("no MR plane given")
    shape = next(iter(imgs.values())).shape
    per: dict[str, list[str]] = {lv: [] for lv in vertebrae_px}
    study: list[str] = []
    bodies = _prepare_bodies(vertebrae_px, shape, spacing_mm, per)
    fluid_seq = next((s for s in FLUID_SENSITIVE if s in imgs), None)
    bright_seq = fluid_seq or ("T2" if "T2" in imgs else None)
    if fluid_seq is None:
        study.append("no STIR or fat-suppressed T2 in the study: marrow oedema cannot be judged")
    elif "T1" not in imgs:
        study.append(f"no T1 series: oedema judged on {fluid_seq} alone")
    if len(imgs) < 2:
        study.append("a single MR sequence: a gas cleft (dark on every sequence) cannot be judged")
    if len(bodies) < MIN_REFERENCE_BODIES:
        study.append(f"only {len(bodies)} vertebral bodies fully in view: too few to normalise the marrow signal "
                     f"(at least {MIN_REFERENCE_BODIES} needed); oedema and clefts not judged")
        return MarrowFindings({lv: BodyMarrow(lv, None, None, None, tuple(per[lv])) for lv in vertebrae_px}, tuple(study))
    refs = {name: _reference(img, bodies) for name, img in imgs.items()}
    csf = _canal_signal(imgs[bright_seq], bodies, spacing_mm) if bright_seq else None

    clefts = {b.level: _clefts(b, imgs, refs, bright_seq, csf, spacing_mm) for b in bodies}
    cands = {b.level: _oedema_candidates(b, imgs, refs, fluid_seq, clefts[b.level][1])
             for b in bodies if fluid_seq is not None}
    kept = {b.level: _specks_removed(b, cands[b.level]) for b in bodies if b.level in cands}
    bands = {b.level: _modic_band(b.v[kept[b.level]]) if kept[b.level].sum() >= 0.01 * len(b.rows) else None
             for b in bodies if b.level in kept}
    by_level = {b.level: b for b in bodies}
    out: dict[str, BodyMarrow] = {}
    for lv in vertebrae_px:
        b = by_level.get(lv)
        if b is None:
            out[lv] = BodyMarrow(lv, None, None, None, tuple(per[lv]))
            continue
        content = clefts[lv][2]
        cleft_obj: dict[str, object] | None = {"present": content is not None, "content": content, "source": "mr"}
        if content is None and len(imgs) < 2:
            cleft_obj = None  # gas is dark on every sequence: one sequence cannot tell it from cortex
        if lv not in kept:
            out[lv] = BodyMarrow(lv, None, cleft_obj, None, tuple(per[lv]))
            continue
        partner = _modic_partner(lv, bands)
        if partner is not None:
            upper, lower = sorted((lv, partner), key=LEVEL_INDEX.__getitem__)
            per[lv].append(f"{lv}: signal confined to the {bands[lv]} endplate and mirrored across the {upper}/{lower} "
                           "disc: a Modic-type endplate change, not oedema of the body")
            out[lv] = BodyMarrow(lv, {"present": False, "extent_pct": 0.0, "source": "mr"}, cleft_obj, None, tuple(per[lv]))
            continue
        zone = clefts[lv][1]
        grid = _extent_mask(b, kept[lv], zone, spacing_mm)
        extent = 100.0 * float(grid.sum()) / float(b.mask.sum())
        present = extent >= OEDEMA_MIN_EXTENT_PCT
        if present and zone.any():  # oedema found: its strips beside the cleft count too
            grid = _extent_mask(b, _beside_cleft(b, cands[lv], kept[lv], zone), zone, spacing_mm)
            extent = 100.0 * float(grid.sum()) / float(b.mask.sum())
        oedema = {"present": present, "extent_pct": round(extent, 1) if present else 0.0, "source": "mr"}
        out[lv] = BodyMarrow(lv, oedema, cleft_obj, b.in_image(grid, shape) if present else None, tuple(per[lv]))
    return MarrowFindings(out, tuple(study))


def assess_ct_clefts(hu: np.ndarray, vertebrae_px: Mapping[str, np.ndarray],
                     spacing_mm: tuple[float, float]) -> dict[str, dict[str, object] | None]:
    """Gas clefts on a CT plane in Hounsfield units: level → contract ``cleft`` object.

    CT shows gas (air density) reliably; a fluid cleft is near soft-tissue density and is left
    to MR, so a CT without gas says ``present: false`` only for gas (``content`` null).
    A body cut by the field gives None.
    """
    img = cv2.medianBlur(np.asarray(hu, np.float32), 3)
    warnings: dict[str, list[str]] = {lv: [] for lv in vertebrae_px}
    bodies = _prepare_bodies(vertebrae_px, img.shape, spacing_mm, warnings)
    out: dict[str, dict[str, object] | None] = dict.fromkeys(vertebrae_px)
    for b in bodies:
        _, prof = _profiles(b, {"CT": img[b.rows, b.cols]}, spacing_mm)
        ct = prof["CT"]
        bins = _band_bins(ct, lambda i, v, lo, hi: v <= GAS_CT_HU_MAX)
        out[b.level] = {"present": bool(bins), "content": "gas" if bins else None, "source": "ct"}
    return out
