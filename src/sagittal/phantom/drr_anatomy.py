"""The 3-D anatomy of the digitally reconstructed radiograph (``phantom.drr``).

Every bone is built about the constructive spine of ``anatomy.build_spine``: the vertebral
bodies are its sagittal outlines extruded with an elliptic axial section (as in
``volume.sagittal_maps``), the posterior elements are pedicles, laminae, spinous, articular and
transverse processes at their own lateral positions, the ribs are 3-D tubes from each thoracic
level, the pelvis is a sacrum, two iliac wings, acetabular roofs and two femora at their own
lateral depths. Soft tissue (trunk, fat, lungs, heart, diaphragm, bowel gas, breasts, arms) is a
coarse 3-D volume.

Attenuation is linear (μ, 1/mm, near 60–70 keV effective); bones carry their *excess* over the
soft tissue they displace. Orders of magnitude from ICRU Report 44 / NIST XCOM tables:
soft tissue ≈ 0.020/mm, fat ≈ 0.018, lung ≈ 0.005, cortical bone ≈ 0.05 (excess ≈ 0.03),
trabecular bone excess ≈ 0.004–0.01, titanium ≈ 0.13, bone cement with barium ≈ 0.05–0.08.

Structures with a lateral offset (a scoliotic body, a femoral head at ±85 mm) are placed so
that their reference plane projects to the constructive truth exactly (``drr_project``).
"""

from __future__ import annotations

import math
from typing import Any

import cv2
import numpy as np

from ..levels import LEVEL_INDEX, LEVELS
from .anatomy import Spine
from .drr_project import Accumulator, ConeBeam, Part, draw_tube, poly_patch, project_part

N = len(LEVELS)
MU_SOFT, MU_FAT, MU_LUNG = 0.0205, 0.0180, 0.0045


def _unit(v: np.ndarray) -> np.ndarray:
    return v / max(float(np.linalg.norm(v)), 1e-9)


def _frame(p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Origin (posterior-inferior corner), endplate direction u and its normal v of a body."""
    u = _unit(p[3] - p[2])
    return p[2], u, np.array([-u[1], u[0]])


def _local(o: np.ndarray, u: np.ndarray, v: np.ndarray, ab: np.ndarray) -> np.ndarray:
    ab = np.asarray(ab, float)
    return o + ab[..., :1] * u + ab[..., 1:2] * v


def _chaikin(poly: np.ndarray, n: int) -> np.ndarray:
    """Corner-cutting smoothing of a closed polygon (Chaikin), ``n`` rounds."""
    p = np.asarray(poly, float)
    for _ in range(n):
        q = np.roll(p, -1, axis=0)
        p = np.stack([0.75 * p + 0.25 * q, 0.25 * p + 0.75 * q], axis=1).reshape(-1, 2)
    return p


def _dome(c: np.ndarray, ax: float, ay: float, angle: float, h: float):
    """Half-width map of a rounded bone: ``h`` at the middle of an ellipse, 0 at its edge (no
    cortical ring where the beam grazes it)."""
    ca, sa = math.cos(angle), math.sin(angle)

    def half(X: np.ndarray, Y: np.ndarray, m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        du = (X - c[0]) * ca + (Y - c[1]) * sa
        dv = -(X - c[0]) * sa + (Y - c[1]) * ca
        rho2 = np.clip((du / ax) ** 2 + (dv / ay) ** 2, 0, 1)
        return np.zeros(X.shape), h * np.sqrt(1 - rho2)

    return half


def _ellipse(centre: np.ndarray, ax: float, ay: float, n: int = 24, angle: float = 0.0) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    e = np.stack([ax * np.cos(t), ay * np.sin(t)], axis=1)
    c, s = math.cos(angle), math.sin(angle)
    return centre + e @ np.array([[c, s], [-s, c]])


class Builder:
    """Collects the parts of one radiograph and projects them into an accumulator."""

    def __init__(self, spine: Spine, an: dict, geo: ConeBeam, acc: Accumulator, rng: np.random.Generator,
                 bank: np.ndarray) -> None:
        self.spine, self.an, self.geo, self.acc, self.rng, self.bank = spine, an, geo, acc, rng, bank
        self.res = geo.work_mm
        d = spine.spec.bone_density * an["density_gain"]
        self.mu_marrow = 0.012 * d * an["bone_gain"]
        self.mu_cortex = 0.026 * (0.55 + 0.45 * min(d, 1.2)) * an["bone_gain"]

    # ----------------------------------------------------------------------------- helpers
    def part(self, poly: np.ndarray, zc: float, half_fn, *, tc: float = 1.0, mu_c: float | None = None,
             mu_m: float | np.ndarray | None = None, texture: float | None = None, rim: bool = True, rot: float = 0.0,
             tilt: float = 0.0, pivot: tuple[float, float] = (0.0, 0.0), cut=None, mu_fn=None, slab_mm: float = 2.0) -> None:
        """Build and project one extruded part; ``half_fn(X, Y, mask) -> (h_in, h_out)``."""
        lo, hi = poly.min(axis=0), poly.max(axis=0)
        if not self.acc.visible(lo[0], lo[1], hi[0], hi[1]):
            return
        x0, y0, X, Y, mask, dist = poly_patch(poly, self.res)
        if cut is not None:
            mask = (mask.astype(bool) & ~cut(X, Y)).astype(np.uint8)
            dist = cv2.distanceTransform(mask, cv2.DIST_L2, 3).astype(np.float32) * np.float32(self.res)
        h_in, h_out = half_fn(X, Y, mask.astype(bool))
        m = mask.astype(bool)
        h_out = np.where(m, h_out, 0.0).astype(np.float32)
        h_in = np.where(m, np.minimum(h_in, h_out), 0.0).astype(np.float32)
        mu_marrow = self.mu_marrow if mu_m is None else mu_m
        if mu_fn is not None:
            mu_marrow = mu_fn(X, Y, mu_marrow)
        p = Part(x0=x0, y0=y0, res=self.res, h_in=h_in, h_out=h_out, dist=dist, zc=zc, tc=tc,
                 mu_cortex=self.mu_cortex if mu_c is None else mu_c, mu_marrow=mu_marrow,
                 texture=self.an["texture"] if texture is None else texture, rim=rim, rot_rad=rot, tilt_rad=tilt,
                 pivot=pivot, slab_mm=slab_mm)
        project_part(p, self.acc, self.bank, self.rng)

    def tube(self, pts_q: np.ndarray, z: np.ndarray, radius: float, *, mu_c: float | None = None,
             mu_m: float | None = None, tc: float = 1.0) -> None:
        """A tube whose centre line is given in q-space at lateral depths ``z`` (true 3-D)."""
        world = self.geo.q_to_world(np.asarray(pts_q, float), np.asarray(z, float))
        pts3 = np.concatenate([world, np.asarray(z, float)[:, None]], axis=1)
        draw_tube(self.acc, pts3, radius, self.mu_cortex if mu_c is None else mu_c,
                  self.mu_marrow if mu_m is None else mu_m, tc)

    # ----------------------------------------------------------------------------- vertebrae
    def _pose(self, i: int) -> tuple[Any, ...]:
        """Level ``i``'s points, body frame ``(o, u, v)``, depth and posterior height (mm), lateral
        width, lateral shift, axial rotation and tilt (rad), and the pivot they turn about."""
        sp, an = self.spine, self.an
        p = sp.points_mm[i]
        o, u, v = _frame(p)
        depth = float(np.linalg.norm(p[3] - p[2]))
        hp = float(np.linalg.norm(p[1] - p[2]))
        width = float(sp.spec.width_mm[i]) * an["width_gain"]
        zc = float(an["lateral_mm"][i])
        rot = math.radians(an["rotation_deg"][i])
        tilt = math.radians(an["tilt_deg"][i])
        return p, o, u, v, depth, hp, width, zc, rot, tilt, tuple(p[:4].mean(axis=0))

    def vertebra(self, i: int) -> None:
        """Body (with cleft, cement, osteophytes) and posterior elements of level ``i``."""
        sp, an = self.spine, self.an
        p, o, u, v, depth, hp, width, zc, rot, tilt, pivot = self._pose(i)
        self.body(i)
        if sp.cleft[i] == "gas":
            self._cleft(i, zc, width, rot, tilt, pivot)
        if i in an["cement"]:
            self._cement(i, zc, width, rot, tilt, pivot)
        self._osteophytes(i, u, v, width, zc, rot, tilt, pivot)
        self._posterior(i, o, u, v, depth, hp, zc, rot, tilt, pivot)

    def body(self, i: int) -> None:
        """The vertebral body of level ``i``: its truth outline extruded with an elliptic axial
        section, turned and shifted sideways as the spine's scoliosis and rotation say."""
        sp, an = self.spine, self.an
        p, o, u, v, depth, hp, width, zc, rot, tilt, pivot = self._pose(i)
        tc = an["cortex_mm"]
        sclerosis = an["sclerosis"][i]
        fractured = sp.grade[i] > 0
        ox, oy = o
        ux, uy = u
        vx, vy = v

        def body_half(X, Y, m):
            a = (X - ox) * ux + (Y - oy) * uy
            b = (X - ox) * vx + (Y - oy) * vy
            t = np.clip(2 * a / depth - 1, -1, 1)
            frac = np.clip(b / max(hp, 1.0), 0, 1)
            half = width / 2 * np.sqrt(1 - an["body_flat"] * t * t) * (1 - an["waist"] * np.sin(np.pi * frac))
            return np.zeros_like(half), half

        def body_mu(X, Y, mu):
            b = (X - ox) * vx + (Y - oy) * vy
            a = (X - ox) * ux + (Y - oy) * uy
            h_here = sp.heights_mm[i, 2] + (sp.heights_mm[i, 0] - sp.heights_mm[i, 2]) * np.clip(a / depth, 0, 1)
            frac = np.clip(b / np.maximum(h_here, 1.0), 0, 1)
            out = np.full(X.shape, mu, np.float32)
            if sclerosis > 0:  # subchondral sclerosis at both endplates
                band = np.exp(-np.minimum(frac, 1 - frac) * h_here / 2.5)
                out *= (1 + sclerosis * band).astype(np.float32)
            if fractured:  # impacted trabeculae: a dense band under the collapsed endplate
                band = np.exp(-np.clip(1 - frac, 0, None) * h_here / 3.0)
                out *= (1 + an["impaction"] * band).astype(np.float32)
            return out

        self.part(self._body_outline(i, u), zc, body_half, tc=tc, rot=rot, tilt=tilt, pivot=pivot, mu_fn=body_mu)

    def _body_outline(self, i: int, u: np.ndarray) -> np.ndarray:
        """The truth outline (corners and endplate middles) with slightly concave anterior and
        posterior walls, as bodies are waisted; the six truth points stay on the outline."""
        p = self.spine.points_mm[i]
        ca, cp = self.an["wall_concavity_mm"]
        t = np.array([0.25, 0.5, 0.75])[:, None]
        bow = 4 * t * (1 - t)  # a parabola through both corners
        post = p[2] + t * (p[1] - p[2]) + cp * bow * u
        ant = p[0] + t * (p[3] - p[0]) - ca * bow * u
        # endplates: parabolas through corner, middle and corner (smoothly concave, not a V)
        te = np.array([0.125, 0.25, 0.375, 0.5, 0.625, 0.75, 0.875])[:, None]
        la, lm, lb = (2 * te - 1) * (te - 1), -4 * te * (te - 1), te * (2 * te - 1)
        inferior = la * p[3] + lm * p[5] + lb * p[2]  # AI → MI → PI
        superior = la * p[1] + lm * p[4] + lb * p[0]  # PS → MS → AS
        # order as Spine.body_polygon_mm: AI, (MI), PI, (posterior wall), PS, (MS), AS, (anterior wall)
        return np.concatenate([[p[3]], inferior, [p[2]], post, [p[1]], superior, [p[0]], ant])

    def _posterior(self, i: int, o: np.ndarray, u: np.ndarray, v: np.ndarray, depth: float, hp: float, zc: float,
                   rot: float, tilt: float, pivot: tuple) -> None:
        """Pedicles, laminae and spinous process; articular and transverse processes; screws."""
        an = self.an
        lumbar = i >= LEVEL_INDEX["L1"]
        ox, oy = o
        ux, uy = u
        arch = 0.75 * depth + 4.0
        canal = 11.0 if lumbar else (9.0 if i == 0 else 8.0)
        ped = (8.0 if lumbar else 5.5) * an["pedicle_gain"]
        lam = 4.5 if lumbar else 3.5
        spin = (3.5 if lumbar else 2.5)

        def arch_half(X, Y, m):
            a = (X - ox) * ux + (Y - oy) * uy
            s = np.clip(-a / arch, 0, None)
            ss = np.clip((s - 0.45) / 0.5, 0, 1)
            h_in = np.where(s < 0.45, canal, canal * (1 - ss))
            h_out = np.where(s < 0.45, canal + ped, np.where(ss < 1, h_in + lam, spin))
            return h_in, h_out

        pe = self._arch_outline(i, o, u, v, depth, hp)
        self.part(pe, zc, arch_half, tc=0.9, rot=rot, tilt=tilt, pivot=pivot, texture=0.5 * an["texture"])
        # articular processes (superior and inferior) at the pedicle–lamina junction
        fac = 7.0 if lumbar else 5.0
        ang = math.atan2(u[1], u[0])
        for centre, ay in (((-0.45 * arch, hp + 1.0), 0.28 * hp), ((-0.62 * arch, -0.05 * hp), 0.30 * hp)):
            c_ap = _local(o, u, v, np.array(centre))
            poly = _ellipse(c_ap, 5.5, ay, 20, angle=ang)

            def facet(X, Y, m, c=c_ap, ay=ay):
                # a rounded process: thickest in its middle, no cortical ring seen end-on
                du = (X - c[0]) * math.cos(ang) + (Y - c[1]) * math.sin(ang)
                dv = -(X - c[0]) * math.sin(ang) + (Y - c[1]) * math.cos(ang)
                rho2 = np.clip((du / 5.5) ** 2 + (dv / ay) ** 2, 0, 1)
                return np.full(X.shape, canal + 1.0), canal + 1.0 + fac * np.sqrt(1 - rho2)

            self.part(poly, zc, facet, tc=0.8, rim=False, rot=rot, tilt=tilt, pivot=pivot, texture=0.3 * an["texture"])
        # transverse processes: tapered rods out to their tips
        tip = an["tp_mm"][i]
        if tip > canal + ped:
            c_tp = _local(o, u, v, np.array((-0.45 * arch, 0.62 * hp)))
            ax, ay = (4.5, 6.0) if lumbar else (5.0, 5.0)
            if i == LEVEL_INDEX["L5"] and an["sacralised_l5"]:
                ax, ay = 11.0, 12.0
                c_tp = _local(o, u, v, np.array((-0.2 * arch, 0.25 * hp)))
            poly = _ellipse(c_tp, ax, ay, 20)
            h0 = canal + ped - 2.0

            def tp_half(X, Y, m, c=c_tp, ax=ax, ay=ay, tip=tip, h0=h0):
                rho2 = np.clip(((X - c[0]) / ax) ** 2 + ((Y - c[1]) / ay) ** 2, 0, 1)
                return np.full(X.shape, h0), h0 + (tip - h0) * np.sqrt(1 - rho2)

            self.part(poly, zc, tp_half, tc=0.8, rim=False, rot=rot, tilt=tilt, pivot=pivot, texture=0.3 * an["texture"],
                      slab_mm=3.0)
        if i in an["screws"]:
            self._screw(i, zc, canal, arch, rot, tilt, pivot)


    def _arch_outline(self, i: int, o: np.ndarray, u: np.ndarray, v: np.ndarray, depth: float, hp: float) -> np.ndarray:
        """Sagittal outline of pedicle, lamina and spinous process: lumbar spinous processes
        are tall hatchets nearly horizontal, thoracic ones slender and steeply down-sloping."""
        arch = 0.75 * depth + 4.0
        lumbar = i >= LEVEL_INDEX["L1"]
        if lumbar:
            length, slope, tall = 0.8 * depth, self.an["spinous_deg"][1], 0.6 * hp
        elif i == 0:
            length, slope, tall = 0.9 * depth + 15.0, 25.0, 0.35 * hp
        else:
            length, slope, tall = 0.9 * depth + 10.0, self.an["spinous_deg"][0], 0.3 * hp
        th = math.radians(slope)
        d = np.array([-math.cos(th), -math.sin(th)])
        n = np.array([math.sin(th), -math.cos(th)])
        base_up = np.array([-arch, 0.85 * hp])
        tip_up = base_up + length * d
        tip_lo = tip_up + tall * n
        base_lo = base_up + 1.1 * tall * n
        base_lo[1] = max(base_lo[1], -0.05 * hp)
        local = np.array([(0.0, 0.85 * hp), (-0.45 * arch, 0.98 * hp), (-0.85 * arch, 0.9 * hp), base_up, tip_up,
                          tip_up + 0.5 * tall * n + 1.5 * d, tip_lo, base_lo, (-0.6 * arch, -0.1 * hp), (0.0, 0.38 * hp)])
        return _chaikin(_local(o, u, v, local), 1)

    def _osteophytes(self, i: int, u: np.ndarray, v: np.ndarray, width: float, zc: float, rot: float, tilt: float,
                     pivot: tuple) -> None:
        """Spurs at the anterior endplate corners (degenerative change)."""
        p = self.spine.points_mm[i]
        for corner, sign in ((p[0], 1.0), (p[3], -1.0)):
            length = self.an["osteophyte_mm"][i] * (1.0 if sign > 0 else self.an["osteophyte_lower"])
            if length > 0.8:
                tri = np.array([corner - 4.0 * u - 0.2 * sign * v, corner + 0.5 * length * u + sign * length * v,
                                corner + 0.6 * length * u - 0.3 * sign * v, corner - 1.0 * u - 3.0 * sign * v])
                self.part(tri, zc, lambda X, Y, m, w=width: (np.zeros(X.shape), np.full(X.shape, 0.33 * w)),
                          tc=1.2, rot=rot, tilt=tilt, pivot=pivot)

    def _cleft(self, i: int, zc: float, width: float, rot: float, tilt: float, pivot) -> None:
        p = self.spine.points_mm[i]
        a = 0.6 * p[0] + 0.4 * p[3]
        b = 0.6 * p[1] + 0.4 * p[2]
        mid_a, mid_b = a + 0.15 * (b - a), b + 0.15 * (a - b)
        n = _unit(np.array([-(mid_b - mid_a)[1], (mid_b - mid_a)[0]]))
        poly = np.array([mid_a + 1.2 * n, mid_b + 1.2 * n, mid_b - 1.2 * n, mid_a - 1.2 * n])
        gas = -(MU_SOFT + self.mu_marrow)
        self.part(poly, zc, lambda X, Y, m: (np.zeros(X.shape), np.full(X.shape, 0.35 * width)), mu_c=gas, mu_m=gas,
                  texture=0.0, rim=False, rot=rot, tilt=tilt, pivot=pivot)

    def _cement(self, i: int, zc: float, width: float, rot: float, tilt: float, pivot) -> None:
        p = self.spine.points_mm[i]
        c = p[:4].mean(axis=0) + self.rng.normal(0, 1.5, 2)
        depth = float(np.linalg.norm(p[3] - p[2]))
        hm = float(np.linalg.norm(p[4] - p[5]))
        t = np.linspace(0, 2 * np.pi, 28, endpoint=False)
        rad = 1 + 0.18 * np.sin(3 * t + self.rng.uniform(0, 6)) + 0.1 * np.sin(5 * t + self.rng.uniform(0, 6))
        ax, ay = 0.32 * depth, 0.36 * hm
        poly = c + np.stack([ax * rad * np.cos(t), ay * rad * np.sin(t)], axis=1)
        mu = float(self.an["cement_mu"])

        def half(X, Y, m):
            r2 = np.clip(((X - c[0]) / ax) ** 2 + ((Y - c[1]) / ay) ** 2, 0, 1)
            return np.zeros(X.shape), 0.3 * width * np.sqrt(1 - 0.7 * r2)

        self.part(poly, zc, half, mu_c=mu, mu_m=mu, texture=0.0, rim=False, rot=rot, tilt=tilt, pivot=pivot)

    def _screw(self, i: int, zc: float, canal: float, arch: float, rot: float, tilt: float, pivot) -> None:
        p = self.spine.points_mm[i]
        o, u, v = _frame(p)
        hp = float(np.linalg.norm(p[1] - p[2]))
        depth = float(np.linalg.norm(p[3] - p[2]))
        entry = _local(o, u, v, np.array((-0.45 * arch, 0.58 * hp)))
        tip = _local(o, u, v, np.array((0.8 * depth, 0.5 * hp + self.rng.normal(0, 1.5))))
        d = _unit(tip - entry)
        n = np.array([-d[1], d[0]])
        r = 3.0
        poly = np.array([entry - 10 * d + r * n, tip + r * n, tip + 1.5 * d, tip - r * n, entry - 10 * d - r * n])
        mu = float(self.an["metal_mu"])
        self.part(poly, zc, lambda X, Y, m: (np.full(X.shape, max(canal - 4.0, 0.0)), np.full(X.shape, canal + 3.5)),
                  mu_c=mu, mu_m=mu, texture=0.0, rim=False, rot=rot, tilt=tilt, pivot=pivot, slab_mm=3.0)
        head = _ellipse(entry - 12 * d, 7.0, 6.0, 16)
        self.part(head, zc, lambda X, Y, m: (np.full(X.shape, canal + 8.0), np.full(X.shape, canal + 18.0)),
                  mu_c=mu, mu_m=0.4 * mu, texture=0.0, tc=1.5, rot=rot, tilt=tilt, pivot=pivot, slab_mm=3.0)

    def rods(self) -> None:
        levels = sorted(self.an["screws"])
        if len(levels) < 2:
            return
        pts = []
        for i in levels:
            p = self.spine.points_mm[i]
            o, u, v = _frame(p)
            hp = float(np.linalg.norm(p[1] - p[2]))
            arch = 0.75 * float(np.linalg.norm(p[3] - p[2])) + 4.0
            pts.append(_local(o, u, v, np.array((-0.45 * arch - 14.0, 0.58 * hp))))
        arr = np.array(pts)
        top = arr[0] + _unit(arr[0] - arr[1]) * 8
        bot = arr[-1] + _unit(arr[-1] - arr[-2]) * 8
        line = np.concatenate([[top], arr, [bot]])
        fine = np.concatenate([np.linspace(line[k], line[k + 1], 6, endpoint=False) for k in range(len(line) - 1)] + [line[-1:]])
        mu = float(self.an["metal_mu"])
        for side in (1.0, -1.0):
            zs = np.array([side * 24.0 + self.an["lateral_mm"][levels[0]]] * len(fine))
            self.tube(fine, zs, 2.75, mu_c=mu, mu_m=mu, tc=3.0)

    # ----------------------------------------------------------------------------- ribs
    def ribs(self) -> None:
        sp, an = self.spine, self.an
        for i in range(1, 13):
            p = sp.points_mm[i]
            o, u, v = _frame(p)
            hp = float(np.linalg.norm(p[1] - p[2]))
            width = float(sp.spec.width_mm[i])
            depth = float(np.linalg.norm(p[3] - p[2]))
            arch = 0.75 * depth + 4.0
            head_q = _local(o, u, v, np.array((2.0, 0.7 * hp)))
            zc = float(an["lateral_mm"][i])
            rot = math.radians(an["rotation_deg"][i])
            t = (i - 1) / 11.0
            half_chest = an["chest_half_mm"] * (0.55 + 0.45 * math.sin(math.pi * min(0.15 + 0.95 * t, 1.0)))
            ant_reach = an["chest_depth_mm"] * (0.75 + 0.25 * math.sin(math.pi * min(0.2 + t, 1.0)))
            span = 0.82 * math.pi if i <= 10 else (0.5 * math.pi if i == 11 else 0.33 * math.pi)
            if i == 12 and not an["rib12"]:
                continue
            drop = an["rib_drop_mm"] * (0.6 + 0.6 * t)
            for side in (1.0, -1.0):
                jit = self.rng.normal(0, 1.0, 3)
                a_back = -(arch + 18.0 + jit[0] * 3)
                z_off = width / 2 + 18.0
                ps = np.linspace(0, span, 14 if self.res >= 0.6 else 26)  # chords within ~0.4 mm of the arc
                a_c = a_back + ant_reach / 2
                a_arc = a_c - (ant_reach / 2) * np.cos(ps)
                z_arc = z_off + (half_chest - z_off) * np.sin(np.clip(ps, 0, math.pi / 2)) ** 0.8 * np.where(
                    ps > math.pi / 2, np.cos(ps - math.pi / 2) ** 0.7, 1.0)
                y_arc = 4.0 * np.sin(np.clip(ps * 3, 0, math.pi)) - drop * (ps / (0.82 * math.pi)) ** 1.4 + jit[1] * 3
                a_all = np.concatenate([[2.0, -0.5 * arch, -0.85 * arch], a_arc])
                z_all = np.concatenate([[0.42 * width, width / 2 + 8.0, width / 2 + 14.0], z_arc])
                y_all = np.concatenate([[0.0, 2.0, 3.0], y_arc + 3.0])
                # axial rotation of the rib cage with its vertebra, about the body's centre
                xb = 0.5 * depth
                zs = side * z_all
                xr = xb + (a_all - xb) * math.cos(rot) - zs * math.sin(rot)
                zr = (a_all - xb) * math.sin(rot) + zs * math.cos(rot)
                q = head_q + np.stack([xr - 2.0, y_all], axis=1)
                self.tube(q, zr + zc, an["rib_radius_mm"] * (0.8 if i <= 2 else 1.0), tc=1.0)

    # ----------------------------------------------------------------------------- sacrum, pelvis, femora
    def sacrum(self) -> None:
        sp, an = self.spine, self.an
        ant, post = sp.s1_mm
        u = _unit(ant - post)
        v = np.array([-u[1], u[0]])
        mid = (ant + post) / 2
        half = float(np.linalg.norm(ant - post)) / 2
        length = an["sacrum_len_mm"]
        curv = an["sacrum_curve_mm"]
        prom = an["promontory"]
        ts = np.linspace(0, 1, 18)
        # the sacrum leaves S1 backwards and curves forwards (concave in front): its centre line
        # runs ``back`` behind the S1 normal and ``curv`` forwards again at the tip
        a_c = -an["sacrum_back"] * length * ts + curv * ts ** 2
        a_ant = a_c + half * (1 - 0.6 * ts) - prom * 6.0 * np.sqrt(ts) * (1 - ts)
        a_post = a_c - half * (1 - 0.5 * ts) - 15.0 * np.sin(np.pi * np.clip(ts * 1.1, 0, 1))
        b = -length * ts
        outline = np.concatenate([np.stack([a_ant, b], 1), np.stack([a_post[::-1], b[::-1]], 1)])
        poly = mid + outline[:, :1] * u + outline[:, 1:] * v
        gap_t = an["s1s2_t"]
        gap = an["s1s2_gap_mm"]

        def cut(X, Y):
            bb = (X - mid[0]) * v[0] + (Y - mid[1]) * v[1]
            aa = (X - mid[0]) * u[0] + (Y - mid[1]) * u[1]
            return (np.abs(bb + gap_t * length) < gap / 2) & (aa > -half * 0.9) if gap > 0 else np.zeros(X.shape, bool)

        def half_fn(X, Y, m):
            bb = (X - mid[0]) * v[0] + (Y - mid[1]) * v[1]
            tt = np.clip(-bb / length, 0, 1)
            return np.zeros(X.shape), (26.0 - 16.0 * tt) * an["width_gain"]

        zc = 0.0
        self.part(poly, zc, half_fn, tc=an["cortex_mm"], cut=cut if gap > 0 else None)
        # alae: the sacral wings on both sides of S1, overlapping L5–S1 on a lateral film
        ala_c = mid + _local(np.zeros(2), u, v, np.array((-0.35 * half - 0.08 * an["sacrum_back"] * length,
                                                           -0.2 * length)))
        ang = math.atan2(u[1], u[0])
        ala = _ellipse(ala_c, 0.95 * half, 0.2 * length, 24, angle=ang)
        dome = _dome(ala_c, 0.95 * half, 0.2 * length, ang, an["ala_mm"] - 24.0)
        self.part(ala, zc, lambda X, Y, m: (np.full(X.shape, 24.0), 24.0 + dome(X, Y, m)[1]), tc=0.8, rim=False,
                  mu_m=0.35 * self.mu_marrow, slab_mm=3.0)
        # coccyx: small segments continuing the curve forwards
        tip = mid + a_c[-1] * u - length * v
        d = _unit(-v + (2 * curv / length - an["sacrum_back"]) * u)
        for k in range(int(an["coccyx"])):
            seg = tip + (7.0 + 9.0 * k) * d + 2.0 * k * k * u
            self.part(_ellipse(seg, 4.0 - 0.6 * k, 3.2, 14), zc,
                      lambda X, Y, m, k=k: (np.zeros(X.shape), np.full(X.shape, 7.0 - 1.5 * k)), tc=0.8, slab_mm=3.0)

    def femoral_head(self, k: int) -> float:
        """Femoral head ``k``: a sphere at depth ``±hip_half_mm`` (head 0 towards the source)
        placed so that it projects exactly onto the truth circle; returns its depth."""
        sp = self.spine
        c = sp.femoral_centers_mm[k]
        r = float(sp.femoral_radii_mm[k])
        zk = (1.0 if k == 0 else -1.0) * self.an["hip_half_mm"][k]
        kq = float(self.geo.rel(zk, 0.0))  # q-space millimetres per true millimetre at that depth

        def sphere(X, Y, m):
            d2 = (X - c[0]) ** 2 + (Y - c[1]) ** 2
            return np.zeros(X.shape), np.sqrt(np.clip(r * r - d2, 0, None)) / kq

        self.part(_ellipse(c, r + self.res, r + self.res, 64), zk, sphere, tc=1.6, slab_mm=3.0)
        return zk

    def pelvis(self) -> None:
        """Femora, acetabular roofs, iliac wings, ischia and pubic rami, each side at its own depth."""
        sp, an = self.spine, self.an
        s1a, s1p = sp.s1_mm
        y_crest = float(sp.points_mm[LEVEL_INDEX["L4"], :4, 1].mean()) + an["crest_mm"]
        for k, side in enumerate((1.0, -1.0)):
            c = sp.femoral_centers_mm[k]
            r = float(sp.femoral_radii_mm[k])
            zk = self.femoral_head(k)
            w = an["wing"][k]
            # neck (seen end-on, over the lower head), greater trochanter and shaft, lateral of the head
            ang = math.radians(an["shaft_deg"][k])
            d = np.array([math.sin(ang), -math.cos(ang)])
            n = np.array([-d[1], d[0]])
            neck_c = c + 0.55 * r * d + np.array([0.15 * r, 0.0])
            self.part(_ellipse(neck_c, 0.62 * r, 0.5 * r, 24, angle=0.3), zk + side * 25.0,
                      lambda X, Y, m, nc=neck_c, rr=r: (np.zeros(X.shape), 12.0 * np.sqrt(np.clip(
                          1 - ((X - nc[0]) / (0.62 * rr)) ** 2 - ((Y - nc[1]) / (0.5 * rr)) ** 2, 0, 1))),
                      tc=1.0, rim=False, mu_m=0.6 * self.mu_marrow, slab_mm=3.0)
            troch_c = c + 1.5 * r * d + np.array([-0.6 * r, 0.0])
            self.part(_ellipse(troch_c, 0.85 * r, 0.95 * r, 24), zk + side * 45.0,
                      _dome(troch_c, 0.85 * r, 0.95 * r, 0.0, 14.0), tc=1.0, rim=False, mu_m=0.6 * self.mu_marrow,
                      slab_mm=3.0)
            shaft = np.array([c + 0.5 * r * n + 1.8 * r * d, c + 0.45 * r * n + 7.0 * r * d,
                              c - 0.45 * r * n + 7.0 * r * d, c - 0.5 * r * n + 1.8 * r * d]) + np.array([-0.4 * r, 0.0])
            self.part(shaft, zk + side * 42.0, lambda X, Y, m, rr=r: (np.zeros(X.shape), np.full(X.shape, 0.5 * rr)),
                      tc=2.5, mu_m=0.3 * self.mu_marrow, slab_mm=3.0)
            # acetabular roof: a dense arc over the head, and the posterior wall
            arc_t = np.linspace(math.radians(20), math.radians(165), 16)
            arc = c + (r + 2.5) * np.stack([np.cos(arc_t), np.sin(arc_t)], axis=1)
            self.tube(arc, np.full(len(arc), zk * 0.97), 2.0, tc=2.0)
            # iliac wing: from the crest (near L4) to the acetabulum, from the anterior superior
            # iliac spine to the posterior spines behind the sacrum, with the greater sciatic notch
            asis = np.array([c[0] + 40.0 + w[0], y_crest - 35.0 + w[1]])
            psis = np.array([s1p[0] - 28.0 + w[2], y_crest - 40.0 + w[1]])
            top = np.array([0.5 * (asis[0] + psis[0]) + w[3], y_crest + w[1]])
            outline = np.array([
                asis, 0.5 * (asis + top) + [8.0, 6.0], top, 0.5 * (top + psis) + [-6.0, 4.0], psis,
                [psis[0] - 4.0, s1p[1] - 25.0], [s1p[0] - 5.0 + w[4], c[1] + 45.0],  # posterior border, the notch
                [c[0] - 0.9 * r, c[1] + 0.6 * r], [c[0], c[1] + r + 6.0], [c[0] + 0.9 * r, c[1] + 0.8 * r],
                [c[0] + 38.0, c[1] + 32.0], [c[0] + 30.0 + w[0], 0.5 * (y_crest + c[1]) - 5.0]])
            wing = _chaikin(outline, 2)
            th = an["wing_mm"]
            self.part(wing, side * an["wing_z_mm"], lambda X, Y, m, th=th: (np.zeros(X.shape), np.full(X.shape, th / 2)),
                      tc=1.6, mu_m=0.5 * self.mu_marrow, slab_mm=4.0)
            # ischium below and behind the head, pubic ramus in front
            ic, pc = c + np.array([-0.8 * r, -2.1 * r]), c + np.array([1.8 * r, -1.2 * r])
            self.part(_ellipse(ic, 0.7 * r, 1.1 * r, 24, angle=-0.3), zk * 0.8, _dome(ic, 0.7 * r, 1.1 * r, -0.3, 10.0),
                      tc=1.4, rim=False, mu_m=0.6 * self.mu_marrow, slab_mm=3.0)
            self.part(_ellipse(pc, 1.1 * r, 0.4 * r, 24, angle=0.45), zk * 0.45, _dome(pc, 1.1 * r, 0.4 * r, 0.45, 9.0),
                      tc=1.3, rim=False, mu_m=0.6 * self.mu_marrow, slab_mm=3.0)
            # the arcuate (iliopectineal) line from the sacroiliac joint to the pubis
            si = 0.5 * (s1a + s1p) + np.array([-8.0, -30.0])
            ctrl = c + np.array([-0.2 * r, 1.6 * r])
            end = c + np.array([1.9 * r, -0.8 * r])
            tt = np.linspace(0, 1, 14)[:, None]
            line = (1 - tt) ** 2 * si + 2 * (1 - tt) * tt * ctrl + tt ** 2 * end
            self.tube(line, np.linspace(side * 45.0, zk * 0.6, 14), 1.8, tc=1.8)

    # ----------------------------------------------------------------------------- sternum, scapulae
    def chest_wall(self) -> None:
        sp, an = self.spine, self.an
        if not an["sternum"]:
            return
        t2 = sp.points_mm[LEVEL_INDEX["T2"], :4].mean(axis=0)
        t9 = sp.points_mm[LEVEL_INDEX["T9"], :4].mean(axis=0)
        front = an["chest_depth_mm"] * 0.92
        top = t2 + np.array([front * 0.8, 0.0])
        bot = t9 + np.array([front, -10.0])
        n = _unit(np.array([-(bot - top)[1], (bot - top)[0]]))
        poly = np.array([top + 6 * n, bot + 5 * n, bot - 5 * n, top - 8 * n])
        self.part(poly, 0.0, lambda X, Y, m: (np.zeros(X.shape), np.full(X.shape, 14.0)), tc=1.0,
                  mu_m=0.6 * self.mu_marrow, slab_mm=3.0)
        for side in (1.0, -1.0):
            if not an["scapulae"]:
                break
            t3 = sp.points_mm[LEVEL_INDEX["T3"], :4].mean(axis=0)
            s = an["scapula"][0 if side > 0 else 1]
            base = t3 + np.array([-35.0 + s[0], 15.0 + s[1]])
            tri = np.array([base, base + np.array([40.0 + s[2], 5.0]), base + np.array([-5.0, -130.0 - s[3]])])
            self.part(_chaikin(tri, 2), side * 95.0, lambda X, Y, m: (np.zeros(X.shape), np.full(X.shape, 4.0)), tc=1.0,
                      mu_m=0.5 * self.mu_marrow, slab_mm=4.0)


# --------------------------------------------------------------------------------- soft tissue


def soft_tissue(spine: Spine, an: dict, geo: ConeBeam, field_mm: tuple[float, float, float, float],
                voxel_mm: float = 5.0) -> np.ndarray:
    """Line integrals of the soft tissue on the working grid of ``geo``: a coarse 3-D volume
    (``voxel_mm``) over the rows of ``field_mm`` = (y_bottom, y_top, x_lo, x_hi), projected
    slab by slab with each slab's magnification."""
    y_bot, y_top, _x_lo, _x_hi = field_mm
    pts = spine.points_mm
    y_lv = pts[:, :4, 1].mean(axis=1)
    post_tip = np.array([pe[:, 0].min() for pe in spine.posterior_elements_mm])
    ant = pts[:, [0, 3], 0].max(axis=1)
    yk = np.concatenate([[y_lv[0] + 300], y_lv, [spine.hip_axis_mm[1] - 300]])
    order = np.argsort(yk)
    post_k = np.concatenate([[post_tip[0] + 10], post_tip, [spine.sacrum_mm[:, 0].min() - 40]]) - an["back_fat_mm"]
    ant_k = np.concatenate([[ant[0] + 20], ant, [spine.femoral_centers_mm[:, 0].max() + 50]])
    pad = 60.0
    ys = np.arange(y_top + pad, y_bot - pad, -voxel_mm, dtype=np.float32)
    skin_post = np.interp(ys, yk[order], post_k[order]).astype(np.float32)
    skin_post = cv2.GaussianBlur(skin_post[:, None], (0, 0), 30.0 / voxel_mm, borderType=cv2.BORDER_REPLICATE)[:, 0]
    spine_front = np.interp(ys, yk[order], ant_k[order]).astype(np.float32)
    # anterior wall: chest above the diaphragm, abdomen below, with the abdomen's own depth
    dia = y_lv[LEVEL_INDEX["T11"]] + an["diaphragm_mm"]
    front = np.where(ys > dia, an["chest_depth_mm"], an["abdomen_depth_mm"]).astype(np.float32)
    front = cv2.GaussianBlur(front[:, None], (0, 0), 40.0 / voxel_mm)[:, 0]
    skin_ant = spine_front + front
    # lateral half-width: shoulders, chest, waist, hips
    t1, l3, hip = y_lv[LEVEL_INDEX["T1"]], y_lv[LEVEL_INDEX["L3"]], float(spine.hip_axis_mm[1])
    kn_y = np.array([hip - 200, hip, l3, y_lv[LEVEL_INDEX["T8"]], t1, t1 + 200])
    kn_b = np.array(an["half_widths_mm"])
    half_w = np.interp(ys, kn_y, kn_b).astype(np.float32)
    x_min = float(skin_post.min()) - 10
    x_max = float(skin_ant.max()) + (an["breast_mm"] + 20 if an["breasts"] else 20)
    xs = np.arange(x_min, x_max, voxel_mm, dtype=np.float32)
    z_max = float(max(half_w.max(), an["arm_z_mm"] + 60 if an["arms"] else 0)) + voxel_mm
    zs = np.arange(-z_max, z_max + 1e-3, voxel_mm, dtype=np.float32)
    Y = ys[:, None, None]
    X = xs[None, :, None]
    Z = zs[None, None, :]
    xc = ((skin_post + skin_ant) / 2)[:, None, None]
    hx = np.maximum((skin_ant - skin_post) / 2, 1.0)[:, None, None]
    hz = half_w[:, None, None]
    nexp = an["trunk_power"]
    if nexp == 2.0:
        r = ((X - xc) / hx) ** 2 + (Z / hz) ** 2
    else:
        r = np.abs((X - xc) / hx) ** nexp + np.abs(Z / hz) ** nexp
    r = r.astype(np.float32)
    # partial volume at the skin and the fat boundary (no voxel staircase on the film)
    dr = (nexp * voxel_mm / np.minimum(hx, hz)).astype(np.float32)
    body = np.clip(0.5 + (1.0 - r) / dr, 0, 1)
    lean = np.clip(0.5 + ((1.0 - an["fat_frac"]) ** nexp - r) / dr, 0, 1)
    mu = (body * MU_FAT + lean * (MU_SOFT - MU_FAT)).astype(np.float32)
    del body, lean

    def rows_between(y_lo: float, y_hi: float) -> slice:
        i0 = int(np.clip((ys[0] - y_hi) / voxel_mm, 0, len(ys)))
        i1 = int(np.clip((ys[0] - y_lo) / voxel_mm + 1, 0, len(ys)))
        return slice(i0, i1)

    # lungs: above the two hemidiaphragms, below the apex, inside the rib cage, beside the mediastinum
    apex = t1 + 25.0
    rs = rows_between(dia - 60.0, apex)
    if rs.stop > rs.start:
        Yl, sf = Y[rs], spine_front[rs][:, None, None]
        dome = dia + an["dome_mm"] * np.clip(1 - ((X - sf - 60) / 120.0) ** 2, 0, 1) + np.where(Z > 0, an["hemi_mm"], 0.0)
        edge = np.float32(voxel_mm)
        top = apex - np.clip(X - sf, 0, None) * 0.15
        lung = (np.clip(0.5 + (Yl - dome) / edge, 0, 1) * np.clip(0.5 + (top - Yl) / edge, 0, 1)
                * np.clip(0.5 + (0.82 - r[rs]) / dr[rs], 0, 1) * np.clip(0.5 + (np.abs(Z) - 22.0) / edge, 0, 1)
                * np.clip(0.5 + (X - skin_post[rs][:, None, None] - 35.0) / edge, 0, 1))
        ht = an["heart"]
        heart = ((X - sf - ht[0]) / ht[1]) ** 2 + ((Yl - dia - ht[2]) / ht[3]) ** 2 + ((Z - ht[4]) / ht[5]) ** 2 < 1
        lung = np.where(heart, 0.0, lung).astype(np.float32)
        mu[rs] += lung * np.float32(MU_LUNG - MU_SOFT)
    _soft_extras(mu, an, X, Y, Z, ys, voxel_mm, spine_front, skin_ant, xc, t1)
    # project: one warp per coarse lateral slab, each with its own magnification
    f = max(1, int(round(voxel_mm / 2.0 / geo.work_mm)))
    rows, cols = geo.shape
    coarse = ConeBeam(geo.sid_mm, geo.sod_mm, geo.ray_mm, geo.work_mm * f,
                      ((geo.origin_px[0] - (f - 1) / 2) / f, (geo.origin_px[1] - (f - 1) / 2) / f), geo.sign,
                      (int(math.ceil(rows / f)), int(math.ceil(cols / f))))
    acc = Accumulator(coarse)
    col_sum = mu * np.float32(voxel_mm)
    for k, z in enumerate(zs):
        sl = np.ascontiguousarray(col_sum[:, :, k])
        if not sl.any():
            continue
        # the voxel grid is in true millimetres: q-space at depth z is magnified about the ray
        acc.add_patch(sl, float(xs[0]), float(ys[0]), voxel_mm, float(geo.rel(float(z), 0.0)))
    # the voxel steps blurred away (a skin line or diaphragm is never a staircase)
    out = cv2.GaussianBlur(acc.acc, (0, 0), 0.5 * voxel_mm / coarse.work_mm)
    if f == 1:
        return out
    hc, wc = out.shape
    soft = cv2.resize(out, (wc * f, hc * f), interpolation=cv2.INTER_LINEAR)
    return np.ascontiguousarray(soft[:rows, :cols])


def _soft_extras(mu: np.ndarray, an: dict, X: np.ndarray, Y: np.ndarray, Z: np.ndarray, ys: np.ndarray, voxel_mm: float,
                 spine_front: np.ndarray, skin_ant: np.ndarray, xc: np.ndarray, t1: float) -> None:
    """Bowel gas, breasts and raised arms written into the soft-tissue volume ``mu``."""

    def rows_between(y_lo: float, y_hi: float) -> slice:
        i0 = int(np.clip((ys[0] - y_hi) / voxel_mm, 0, len(ys)))
        i1 = int(np.clip((ys[0] - y_lo) / voxel_mm + 1, 0, len(ys)))
        return slice(i0, i1)

    # bowel gas and a stomach bubble: ellipsoids in their own boxes
    for g in an["gas"]:
        cx, cy, cz, rx, ry, rz = g
        rs = rows_between(cy - ry, cy + ry)
        if rs.stop <= rs.start:
            continue
        sf = spine_front[rs][:, None, None]
        e = ((X - sf - cx) / rx) ** 2 + ((Y[rs] - cy) / ry) ** 2 + ((Z - cz) / rz) ** 2 < 1
        mu[rs][e] = 0.0
    # breasts
    if an["breasts"]:
        bx, by, bz, br = an["breast"]
        rs = rows_between(by - br, by + br)
        if rs.stop > rs.start:
            for side in (1.0, -1.0):
                e = ((X - skin_ant[rs][:, None, None] - bx) / (an["breast_mm"] * 0.6)) ** 2 + ((Y[rs] - by) / br) ** 2 + (
                    (Z - side * bz) / (0.9 * br)) ** 2 < 1
                mu[rs][e & (X > xc[rs])] = MU_FAT * 0.5 + MU_SOFT * 0.5
    # arms raised forwards: soft-tissue cylinders beside the chest
    if an["arms"]:
        for side in (1.0, -1.0):
            ang = math.radians(an["arm_deg"][0 if side > 0 else 1])
            sx, sy = float(np.interp(t1, ys[::-1], spine_front[::-1])) + an["arm_x_mm"], t1 - 30.0
            d = np.array([math.cos(ang), math.sin(ang)], np.float32)
            ends = [sy - 40 * d[1], sy + 650 * d[1]]
            rs = rows_between(min(ends) - an["arm_r_mm"], max(ends) + an["arm_r_mm"])
            if rs.stop <= rs.start:
                continue
            rel_x, rel_y = X - sx, Y[rs] - sy
            along = rel_x * d[0] + rel_y * d[1]
            perp = -rel_x * d[1] + rel_y * d[0]
            zz = Z - side * an["arm_z_mm"]
            radius = an["arm_r_mm"] * np.clip(1.05 - along / 1200.0, 0.6, 1.0)  # tapering to the wrist
            arm = (along > -40) & (along < 650) & (perp ** 2 + zz ** 2 < radius ** 2)
            mu[rs][arm] = MU_SOFT


def humeri(b: Builder, spine: Spine, an: dict) -> None:
    """The humeri inside the raised arms (tubes)."""
    if not an["arms"]:
        return
    y_lv = spine.points_mm[:, :4, 1].mean(axis=1)
    t1 = y_lv[LEVEL_INDEX["T1"]]
    ant = spine.points_mm[LEVEL_INDEX["T1"], [0, 3], 0].max()
    for side in (1.0, -1.0):
        ang = math.radians(an["arm_deg"][0 if side > 0 else 1])
        s = np.array([ant + an["arm_x_mm"], t1 - 30.0])
        d = np.array([math.cos(ang), math.sin(ang)])
        line = s + np.linspace(-20, 290, 12)[:, None] * d
        z = side * an["arm_z_mm"]
        q = b.geo.world_to_q(line, z)
        b.tube(q, np.full(len(line), z), 11.0, tc=3.0, mu_m=0.5 * b.mu_marrow)
        fore = s + np.linspace(305, 560, 10)[:, None] * d  # radius and ulna, side by side
        for dz in (-9.0, 9.0):
            b.tube(b.geo.world_to_q(fore, z + dz), np.full(len(fore), z + dz), 7.0, tc=2.5, mu_m=0.5 * b.mu_marrow)
