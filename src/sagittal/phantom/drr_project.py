"""Cone-beam projection machinery of the digitally reconstructed radiograph (``phantom.drr``).

Geometry: a point source at ``sid_mm`` from a flat detector; the patient's mid-sagittal plane
at ``sod_mm`` from the source, parallel to the detector. Lateral depth ``z`` (mm) is measured
from the mid-sagittal plane *towards the source*, so a point at depth ``z`` is magnified by
``M(z) = SID / (SOD − z)`` and the mid-sagittal plane by ``M0 = SID / SOD``. The central ray
pierces the mid-sagittal plane at ``ray_mm`` (sagittal frame: +x anterior, +y superior, mm).

Points are handled in *q-space*: sagittal millimetres as they appear projected, scaled back by
``M0`` (the frame in which the truth is written). A point at depth ``z`` with true sagittal
position ``P`` appears at ``q = c + M(z)/M0 · (P − c)``.

Structures are projected in two ways:

- ``Part``: a sagittal outline extruded laterally between half-widths ``h_in … h_out`` on both
  sides of a lateral centre ``zc`` (a vertebral body: ``h_in = 0``; pedicles: ``h_in`` = the
  canal), with a cortical shell ``tc`` thick and marrow inside. For each lateral slab the
  analytic chord through the slab is computed on a 2-D patch and warped onto the detector with
  that slab's own magnification and, for a rotated or tilted structure, its own shift.
- ``tube``: a 3-D curve with a circular cross-section (ribs, rods, arcs): its line integral at
  projected distance ``d`` from the axis is ``2√(r² − d²) / sin α`` (``α`` the angle between
  the tube and the ray), drawn per segment in 3-D.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np


@dataclass(frozen=True)
class ConeBeam:
    """Source–detector geometry and the working detector grid (square pixels ``work_mm`` at
    the mid-sagittal plane; the hip axis at working pixel ``origin_px``)."""

    sid_mm: float
    sod_mm: float
    ray_mm: tuple[float, float]
    work_mm: float
    origin_px: tuple[float, float]
    sign: float  # +1 when the patient faces the image's right
    shape: tuple[int, int]  # (rows, cols) of the working grid

    @property
    def magnification(self) -> float:
        return self.sid_mm / self.sod_mm

    def rel(self, z: float | np.ndarray, zref: float = 0.0) -> float | np.ndarray:
        """Magnification at depth ``z`` relative to depth ``zref``: ``M(z) / M(zref)``."""
        return (self.sod_mm - zref) / (self.sod_mm - np.asarray(z, float)) if np.ndim(z) else \
            (self.sod_mm - zref) / (self.sod_mm - float(z))

    def project(self, p_mm: np.ndarray, z_mm: np.ndarray | float, zref: float = 0.0) -> np.ndarray:
        """Working pixels ``(..., 2)`` [col, row] of q-space points defined at depth ``zref``
        and lying at depth ``z_mm`` (``zref = z`` gives the exact projection of a point whose
        q-space position is known)."""
        p = np.asarray(p_mm, float)
        k = np.asarray(self.rel(z_mm, zref), float)[..., None] if np.ndim(z_mm) else self.rel(z_mm, zref)
        c = np.asarray(self.ray_mm)
        q = c + k * (p - c)
        return np.stack([self.origin_px[0] + self.sign * q[..., 0] / self.work_mm,
                         self.origin_px[1] - q[..., 1] / self.work_mm], axis=-1)

    def world_to_q(self, p_mm: np.ndarray, z_mm: np.ndarray | float) -> np.ndarray:
        """q-space position of true 3-D points (sagittal ``p_mm`` at depth ``z_mm``)."""
        c = np.asarray(self.ray_mm)
        k = self.sod_mm / (self.sod_mm - np.asarray(z_mm, float))
        return c + (k[..., None] if np.ndim(k) else k) * (np.asarray(p_mm, float) - c)

    def q_to_world(self, q_mm: np.ndarray, z_mm: np.ndarray | float) -> np.ndarray:
        """True sagittal position of a point at depth ``z_mm`` that appears at ``q_mm``."""
        c = np.asarray(self.ray_mm)
        k = (self.sod_mm - np.asarray(z_mm, float)) / self.sod_mm
        return c + (k[..., None] if np.ndim(k) else k) * (np.asarray(q_mm, float) - c)


class Accumulator:
    """The working detector grid of line integrals (μ·mm) that parts and tubes add into."""

    def __init__(self, geo: ConeBeam) -> None:
        self.geo = geo
        self.acc = np.zeros(geo.shape, np.float32)

    def add_patch(self, patch: np.ndarray, x0: float, y0: float, res: float, k: float, dx: float = 0.0,
                  dy: float = 0.0) -> None:
        """Warp ``patch`` (pixel ``(j, i)`` at q-space ``(x0 + j·res + dx, y0 − i·res + dy)``),
        magnified by ``k`` about the central ray, onto the grid and add it."""
        g = self.geo
        cx, cy = g.ray_mm
        a = g.sign * k * res / g.work_mm
        b = k * res / g.work_mm
        tx = g.origin_px[0] + g.sign * (cx + k * (x0 + dx - cx)) / g.work_mm
        ty = g.origin_px[1] - (cy + k * (y0 + dy - cy)) / g.work_mm
        h, w = patch.shape
        xs = (tx - 0.5 * a, tx + (w - 0.5) * a)
        ys = (ty - 0.5 * b, ty + (h - 0.5) * b)
        rows, cols = g.shape
        bx0, bx1 = max(int(math.floor(min(xs))) - 1, 0), min(int(math.ceil(max(xs))) + 2, cols)
        by0, by1 = max(int(math.floor(min(ys))) - 1, 0), min(int(math.ceil(max(ys))) + 2, rows)
        if bx1 <= bx0 or by1 <= by0:
            return
        m = np.array([[a, 0.0, tx - bx0], [0.0, b, ty - by0]], np.float64)
        out = cv2.warpAffine(patch, m, (bx1 - bx0, by1 - by0), flags=cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)
        self.acc[by0:by1, bx0:bx1] += out

    def visible(self, x_lo: float, y_lo: float, x_hi: float, y_hi: float, margin_mm: float = 20.0) -> bool:
        """Whether a q-space box (with a margin for magnification) can reach the grid."""
        corners = np.array([[x_lo - margin_mm, y_lo - margin_mm], [x_hi + margin_mm, y_hi + margin_mm]])
        px = self.geo.project(corners, 0.0)
        rows, cols = self.geo.shape
        c0, c1 = sorted(px[:, 0])
        r0, r1 = sorted(px[:, 1])
        return c1 >= 0 and c0 <= cols and r1 >= 0 and r0 <= rows


@dataclass
class Part:
    """A laterally extruded bone (see the module docstring); maps on a patch of ``res`` mm
    whose pixel ``(j, i)`` lies at q-space ``(x0 + j·res, y0 − i·res)`` at depth ``zc``.

    ``h_in`` / ``h_out`` (mm, maps) bound the material on each side of ``zc``; ``dist``
    (mm) is the in-plane distance to the outline (cortex where ``< tc``, when ``rim``);
    ``mu_marrow`` may be a map (sclerosis, cement). ``rot_rad`` (about the vertical axis) and
    ``tilt_rad`` (about the antero-posterior axis) turn the part about ``pivot`` (q-space).
    """

    x0: float
    y0: float
    res: float
    h_in: np.ndarray
    h_out: np.ndarray
    dist: np.ndarray
    zc: float
    tc: float
    mu_cortex: float
    mu_marrow: float | np.ndarray
    texture: float = 0.0  # relative amplitude of the trabecular texture on marrow
    rim: bool = True
    rot_rad: float = 0.0
    tilt_rad: float = 0.0
    pivot: tuple[float, float] = (0.0, 0.0)
    slab_mm: float = 2.0  # slabs are at most 6 × this thick, thinner where magnification or turning needs


def poly_patch(poly_mm: np.ndarray, res: float, pad_mm: float = 3.0) -> tuple[float, float, np.ndarray, np.ndarray,
                                                                            np.ndarray, np.ndarray]:
    """Rasterise a q-space polygon: ``(x0, y0, X, Y, mask, dist_mm)`` on a patch about it."""
    lo = poly_mm.min(axis=0) - pad_mm
    hi = poly_mm.max(axis=0) + pad_mm
    w = int(math.ceil((hi[0] - lo[0]) / res)) + 1
    h = int(math.ceil((hi[1] - lo[1]) / res)) + 1
    x0, y0 = float(lo[0]), float(hi[1])
    px = np.stack([(poly_mm[:, 0] - x0) / res, (y0 - poly_mm[:, 1]) / res], axis=1)
    mask = np.zeros((h, w), np.uint8)
    cv2.fillPoly(mask, [np.round(px * 16).astype(np.int32).reshape(-1, 1, 2)], 1, cv2.LINE_8, 4)
    dist = cv2.distanceTransform(mask, cv2.DIST_L2, 3).astype(np.float32) * np.float32(res)
    xs = (x0 + np.arange(w, dtype=np.float32) * res)[None, :]
    ys = (y0 - np.arange(h, dtype=np.float32) * res)[:, None]
    X, Y = np.broadcast_to(xs, (h, w)), np.broadcast_to(ys, (h, w))
    return x0, y0, X, Y, mask, dist


def _span(h: np.ndarray, a: Any, b: Any) -> np.ndarray:
    """Length of ``[−h, h] ∩ [a, b]`` (0 where ``h ≤ 0``)."""
    return np.clip(np.minimum(b, h) - np.maximum(a, -h), 0.0, None)


def project_part(part: Part, acc: Accumulator, texture_bank: np.ndarray | None, rng: np.random.Generator) -> None:
    """Add the line integrals of ``part`` through every lateral slab into ``acc``."""
    geo = acc.geo
    h_out = part.h_out.astype(np.float32)
    h_in = part.h_in.astype(np.float32)
    zmax = float(h_out.max()) if h_out.size else 0.0
    if zmax <= 0:
        return
    tc = np.float32(part.tc)
    inner_out = h_out - tc
    inner_in = np.where(h_in > 0, h_in + tc, 0.0).astype(np.float32)
    solid = part.dist >= tc if part.rim else np.ones(h_out.shape, bool)
    marrow_ok = solid & (inner_out > inner_in)
    h, w = h_out.shape
    xs = (part.x0 + np.arange(w, dtype=np.float32) * part.res)[None, :] - part.pivot[0]
    ys = (part.y0 - np.arange(h, dtype=np.float32) * part.res)[:, None] - part.pivot[1]
    sr, st = math.sin(part.rot_rad), math.sin(part.tilt_rad)
    ramp = (xs * np.float32(sr) - ys * np.float32(st)) if (sr or st) else np.float32(0.0)
    # slab thickness: the magnification (and, for a turned part, the shift) may change across
    # a slab by no more than ~0.5 working pixels either side of its middle at the part's
    # farthest corner from the ray
    cx, cy = geo.ray_mm
    far = math.hypot(max(abs(part.x0 - cx), abs(part.x0 + w * part.res - cx)),
                     max(abs(part.y0 - cy), abs(part.y0 - h * part.res - cy)))
    dz = geo.work_mm * (geo.sod_mm - abs(part.zc) - zmax) / max(far, 1.0)
    turn = max(abs(math.sin(part.rot_rad)), abs(math.sin(part.tilt_rad)))
    if turn > 1e-6:
        dz = min(dz, geo.work_mm / turn)
    dz = float(np.clip(dz, 0.5, max(part.slab_mm, 0.5) * 6))
    n = max(1, int(math.ceil(2 * zmax / dz)))
    edges = np.linspace(-zmax, zmax, n + 1)
    mu_m = np.asarray(part.mu_marrow, np.float32)
    for s in range(n):
        a, b = edges[s], edges[s + 1]
        la, lb = np.float32(a) - ramp, np.float32(b) - ramp  # local lateral bounds of this slab
        total = _span(h_out, la, lb) - _span(h_in, la, lb)
        if not total.any():
            continue
        marrow = np.where(marrow_ok, _span(inner_out, la, lb) - _span(inner_in, la, lb), 0.0)
        mu = mu_m
        if part.texture and texture_bank is not None:
            mu = mu_m * (1.0 + np.float32(part.texture) * _crop(texture_bank, h, w, rng))
        img = (total * np.float32(part.mu_cortex) + marrow * (mu - np.float32(part.mu_cortex))).astype(np.float32)
        zm = 0.5 * (a + b)
        k = float(geo.rel(part.zc + zm, part.zc))
        # the part turned by rot/tilt: this slab's content sits shifted in the sagittal plane
        acc.add_patch(img, part.x0, part.y0, part.res, k, dx=-zm * sr, dy=zm * st)


def _crop(bank: np.ndarray, h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    bh, bw = bank.shape
    if h <= bh and w <= bw:
        i, j = int(rng.integers(0, bh - h + 1)), int(rng.integers(0, bw - w + 1))
        return bank[i:i + h, j:j + w]
    i, j = int(rng.integers(0, bh)), int(rng.integers(0, bw))
    rows = np.arange(i, i + h) % bh
    cols = np.arange(j, j + w) % bw
    return bank[np.ix_(rows, cols)]


def texture_bank(rng: np.random.Generator, res_mm: float, scale_mm: float, size: int = 512,
                 vertical: float = 1.0) -> np.ndarray:
    """Trabecular-like texture (zero mean, unit s.d.): band-passed noise pushed towards a
    sponge of plates and rods; ``scale_mm`` sets the trabecular spacing, ``vertical`` > 1
    stretches it along the columns (the load-bearing vertical trabeculae)."""
    noise = rng.standard_normal((size, size)).astype(np.float32)
    s = max(scale_mm / res_mm, 0.5)
    dog = (cv2.GaussianBlur(noise, (0, 0), sigmaX=0.5 * s, sigmaY=0.5 * s * vertical)
           - cv2.GaussianBlur(noise, (0, 0), sigmaX=1.6 * s, sigmaY=1.6 * s * vertical))
    dog /= max(float(dog.std()), 1e-6)
    sponge = np.tanh(2.0 * dog)
    sponge -= sponge.mean()
    return (sponge / max(float(sponge.std()), 1e-6)).astype(np.float32)


def draw_tube(acc: Accumulator, pts3: np.ndarray, radius_mm: float | np.ndarray, mu_cortex: float, mu_marrow: float,
              tc: float, max_path_mm: float = 25.0) -> None:
    """Add a tube along the true 3-D curve ``pts3`` ``(N, 3)`` = (x, y, z) into ``acc``.

    Every pixel takes its distance to the nearest projected segment and that segment's
    obliquity, so the tube is one smooth shape without joints.
    """
    geo = acc.geo
    pts3 = np.asarray(pts3, float)
    if len(pts3) < 2:
        return
    r = np.broadcast_to(np.asarray(radius_mm, float), (len(pts3),))
    q = geo.world_to_q(pts3[:, :2], pts3[:, 2])
    px = geo.project(q, 0.0)
    k = geo.sod_mm / (geo.sod_mm - pts3[:, 2])
    r_px = r * k / geo.work_mm
    lo = np.floor(px.min(axis=0) - r_px.max() - 2).astype(int)
    hi = np.ceil(px.max(axis=0) + r_px.max() + 2).astype(int)
    rows, cols = geo.shape
    x0, y0 = max(lo[0], 0), max(lo[1], 0)
    x1, y1 = min(hi[0], cols), min(hi[1], rows)
    if x1 <= x0 or y1 <= y0:
        return
    shape = (y1 - y0, x1 - x0)
    best = np.full(shape, np.inf, np.float32)  # squared distance in mm at the tube
    inv_sin = np.ones(shape, np.float32)
    rad = np.zeros(shape, np.float32)
    gx = np.arange(x0, x1, dtype=np.float32)[None, :]
    gy = np.arange(y0, y1, dtype=np.float32)[:, None]
    for s in range(len(pts3) - 1):
        p, qn = px[s], px[s + 1]
        seg = pts3[s + 1] - pts3[s]
        length = float(np.linalg.norm(seg))
        if length <= 0:
            continue
        sin_a = max(math.hypot(seg[0], seg[1]) / length, length / max_path_mm, 0.05)
        rp = 0.5 * (r_px[s] + r_px[s + 1])
        sx0, sx1 = int(max(min(p[0], qn[0]) - rp - 1, x0)), int(min(max(p[0], qn[0]) + rp + 2, x1))
        sy0, sy1 = int(max(min(p[1], qn[1]) - rp - 1, y0)), int(min(max(p[1], qn[1]) + rp + 2, y1))
        if sx1 <= sx0 or sy1 <= sy0:
            continue
        X = gx[:, sx0 - x0:sx1 - x0]
        Y = gy[sy0 - y0:sy1 - y0]
        d = qn - p
        dd = float(d @ d)
        t = np.clip(((X - p[0]) * d[0] + (Y - p[1]) * d[1]) / dd, 0, 1) if dd > 1e-9 else np.zeros_like(X + Y)
        rmm = 0.5 * (r[s] + r[s + 1])
        d_mm2 = ((X - p[0] - t * d[0]) ** 2 + (Y - p[1] - t * d[1]) ** 2) * np.float32((rmm / max(rp, 1e-6)) ** 2)
        sl = (slice(sy0 - y0, sy1 - y0), slice(sx0 - x0, sx1 - x0))
        closer = d_mm2 < best[sl]
        best[sl] = np.where(closer, d_mm2, best[sl])
        inv_sin[sl] = np.where(closer, np.float32(1.0 / sin_a), inv_sin[sl])
        rad[sl] = np.where(closer, np.float32(rmm), rad[sl])
    d2 = np.where(np.isfinite(best), best, np.float32(1e9))
    outer = 2 * np.sqrt(np.clip(rad * rad - d2, 0, None))
    ri = np.clip(rad - np.float32(tc), 0, None)
    inner = 2 * np.sqrt(np.clip(ri * ri - d2, 0, None))
    acc.acc[y0:y1, x0:x1] += ((outer - inner) * np.float32(mu_cortex) + inner * np.float32(mu_marrow)) * inv_sin
