"""A parametric spine from C7 to the femoral heads, built constructively.

Frame: the sagittal patient frame of docs/architecture.md: millimetres, +x anterior, +y superior
(cranial), the hip axis at the origin. The spine is built upwards from the S1 endplate,
placed from the requested pelvic incidence (PI) and pelvic tilt (PT); every vertebra and disc
is a wedge stacked on the one below, so every sagittal angle of the result is a *sum of the
angles used to build it*, never a measurement of the points. That keeps the truth independent
of ``sagittal.geometry``, whose tests would otherwise be circular.

Conventions used throughout: an endplate's direction ``phi`` is the angle (radians, counter-
clockwise from +x) of the vector from its posterior to its anterior end. Walking cranially, a
counter-clockwise turn is lordotic, a clockwise turn kyphotic. So, exactly as docs/contract.md
defines them (kyphosis / lordosis positive):

- sacral slope  ``SS = -phi(S1)``
- lumbar lordosis ``LL = phi(L1 superior) - phi(S1)``
- thoracic kyphosis ``TK = phi(T12 inferior) - phi(T4 superior)``

Dimensions are adult averages by level (posterior body height, endplate depth, natural
anterior/posterior ratio), in the ranges reported by normative morphometry studies
(e.g. Diacinti et al., Osteoporos Int 1995; Leidig-Bruckner et al., J Bone Miner Res 1994),
rounded; the phantom needs plausible shapes, not a normative atlas.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from ..geometry.morphometry import MORPHOLOGIES, NORMAL_ANTERIOR_RATIO, NORMAL_POSTERIOR_MM
from ..levels import LEVEL_INDEX, LEVELS

N_LEVELS = len(LEVELS)

#: Per level (C7..L5): endplate depth mm and lateral body width mm. Posterior heights and
#: anterior/posterior ratios are the normative tables of ``geometry.morphometry`` (thoracic
#: bodies naturally wedged, L5 taller in front); each spine varies about them.
_DEPTH_WIDTH_MM = np.array(
    [[17.0, 30.0], [18.0, 32.0], [19.0, 30.0], [20.0, 29.0], [21.0, 29.0], [22.0, 30.0], [23.0, 31.0],
     [24.0, 32.0], [25.0, 33.0], [26.0, 35.0], [27.0, 37.0], [28.5, 40.0], [30.0, 43.0], [32.0, 45.0],
     [34.0, 47.0], [35.0, 49.0], [36.0, 50.0], [36.0, 52.0]]
)
#: mean endplate concavity as a fraction of the posterior height (middle/posterior ratio
#: = (1 + anterior ratio) / 2 − 0.06, the normative middle ratio)
_CONCAVITY_SUPERIOR, _CONCAVITY_INFERIOR = 0.035, 0.025
#: Posterior disc height below each level (C7/T1 … L5/S1), mm.
_DISC_POSTERIOR_MM = np.array(
    [4.0, 3.5, 3.5, 3.5, 3.5, 3.5, 3.8, 4.0, 4.2, 4.5, 5.0, 5.5, 6.0, 6.5, 7.0, 7.5, 7.5, 7.0]
)
#: Share of the lumbar lordosis carried by the discs L1/2 … L5/S1 (two thirds below L4).
_LUMBAR_DISC_WEIGHTS = np.array([0.08, 0.12, 0.18, 0.27, 0.35])

#: Genant semi-quantitative bands of height loss, % (docs/clinical.md). The phantom samples a
#: fracture's loss inside its grade's band, a margin away from the edges, so that a grade is a
#: property of the shape and not of rounding.
GENANT_SAMPLING_PCT = {1: (21.0, 24.0), 2: (27.0, 38.0), 3: (42.0, 60.0)}
#: Relative likelihood of a fracture by level: most at the thoracolumbar junction (T10–L2),
#: a second peak mid-thoracic.
_FRACTURE_LEVEL_WEIGHTS = np.array(
    [0.0, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0, 1.2, 1.2, 1.2, 2.0, 3.0, 4.5, 4.5, 2.5, 1.2, 0.8, 0.5]
)


@dataclass(frozen=True)
class Fracture:
    """One vertebral body fracture of the phantom.

    ``loss_pct`` is the largest relative height loss (anterior for a wedge, middle for a
    biconcave, posterior for a crush fracture) against the body's own pre-fracture heights.
    """

    level: str
    grade: int
    loss_pct: float
    morphology: str
    oedema_pct: float | None = None  # extent of marrow oedema, % of the body; None = healed
    cleft: str | None = None  # "gas", "fluid" or None
    #: how the oedema is laid out: a band from the collapsed (superior) endplate, the whole body
    #: diffusely, or patches; ``oedema_pct`` of the body's mid-sagittal section in every case
    oedema_pattern: str = "band"

    def __post_init__(self) -> None:
        if self.level not in LEVEL_INDEX:
            raise ValueError(f"unknown level {self.level!r}; expected one of {', '.join(LEVELS)}")
        if self.grade not in (1, 2, 3):
            raise ValueError(f"Genant grade must be 1, 2 or 3, not {self.grade!r}")
        if self.morphology not in MORPHOLOGIES[1:]:
            raise ValueError(f"fracture morphology must be wedge, biconcave or crush, not {self.morphology!r}")
        if not 0.0 < self.loss_pct < 90.0:
            raise ValueError(f"height loss must be in (0, 90) %, not {self.loss_pct}")
        if self.cleft not in (None, "gas", "fluid"):
            raise ValueError(f"cleft must be 'gas', 'fluid' or None, not {self.cleft!r}")
        if self.oedema_pattern not in OEDEMA_PATTERNS:
            raise ValueError(f"oedema pattern must be one of {', '.join(OEDEMA_PATTERNS)}, not {self.oedema_pattern!r}")


#: oedema layouts the phantom draws (``Fracture.oedema_pattern``)
OEDEMA_PATTERNS: tuple[str, ...] = ("band", "diffuse", "patchy")


@dataclass(frozen=True)
class Modic:
    """A Modic-type endplate change: mirrored bands on both sides of the disc below ``level``.

    Type 1 (oedema-like: dark on T1, bright on T2/STIR) and type 2 (fatty: bright on T1 and
    T2, dark on STIR) are the classic MR distractors for fracture oedema (Modic et al.,
    Radiology 1988;166:193). ``thickness_pct``: each band's share of its body's height.
    """

    level: str
    type: int = 1
    thickness_pct: float = 12.0

    def __post_init__(self) -> None:
        if self.level not in LEVEL_INDEX or self.level == LEVELS[-1]:
            raise ValueError(f"a Modic change needs a level C7…L4 with a vertebra below, not {self.level!r}")
        if self.type not in (1, 2):
            raise ValueError(f"Modic type must be 1 or 2, not {self.type!r}")
        if not 2.0 <= self.thickness_pct <= 30.0:
            raise ValueError(f"Modic band thickness must be 2–30 % of the body, not {self.thickness_pct}")


@dataclass(frozen=True)
class SpineSpec:
    """Every choice that defines one phantom spine; ``build_spine`` turns it into points.

    Angles in degrees. ``lumbar_lordosis_deg`` and ``thoracic_kyphosis_deg`` are the alignment
    *before* fractures: a wedge collapse then adds its kyphosis on top, as a real one does.
    Arrays are per level, C7 … L5 (18), discs indexed by the vertebra above them.
    """

    pelvic_incidence_deg: float
    pelvic_tilt_deg: float
    lumbar_lordosis_deg: float
    thoracic_kyphosis_deg: float
    posterior_height_mm: np.ndarray  # (18,)
    depth_mm: np.ndarray  # (18,)
    anterior_ratio: np.ndarray  # (18,) anterior / posterior height before fracture
    concavity_superior_mm: np.ndarray  # (18,)
    concavity_inferior_mm: np.ndarray  # (18,)
    width_mm: np.ndarray  # (18,) lateral width, for CT/MR and radiographic density
    disc_posterior_mm: np.ndarray  # (18,) disc below each level
    disc_upper_deg: np.ndarray  # (4,) C7/T1 … T3/4, lordosis-positive turn
    disc_junction_deg: float  # T12/L1
    thoracic_disc_weights: np.ndarray  # (8,) T4/5 … T11/12
    lumbar_disc_weights: np.ndarray  # (5,) L1/2 … L5/S1
    listhesis_mm: np.ndarray  # (18,) slip of each vertebra on the one below, + anterior
    s1_width_mm: float
    hip_to_s1_mm: float
    femoral_head_radius_mm: float
    femoral_head_offset_mm: np.ndarray  # (2,) half the separation of the two projected centres
    femoral_head_magnification: float  # relative difference of the two projected radii
    bone_density: float = 1.0  # 1 normal, ~0.5 osteoporotic (renderers only)
    fractures: tuple[Fracture, ...] = ()
    modic: tuple[Modic, ...] = ()  # endplate changes (CT/MR renderers only)

    @property
    def sacral_slope_deg(self) -> float:
        return self.pelvic_incidence_deg - self.pelvic_tilt_deg


@dataclass(frozen=True)
class Spine:
    """A built phantom spine: points in the sagittal patient frame (mm) and its truth.

    ``points_mm : (18, 6, 2)`` per level C7 … L5, the six contract points in
    ``levels.POINT_NAMES`` order. ``phi_rad : (18, 2)`` superior and inferior endplate
    directions. ``heights_mm : (18, 3)`` anterior, middle, posterior heights as built;
    ``heights_before_mm`` the same before fracture.
    """

    spec: SpineSpec
    points_mm: np.ndarray
    phi_rad: np.ndarray
    heights_mm: np.ndarray
    heights_before_mm: np.ndarray
    s1_mm: np.ndarray  # (2, 2) anterior, posterior corner of the S1 superior endplate
    hip_axis_mm: np.ndarray  # (2,)
    femoral_centers_mm: np.ndarray  # (2, 2)
    femoral_radii_mm: np.ndarray  # (2,)
    parameters: dict[str, float]
    posterior_elements_mm: tuple[np.ndarray, ...]  # one (K, 2) polygon per level
    sacrum_mm: np.ndarray  # (K, 2) polygon of S1 and the sacrum
    discs_mm: tuple[np.ndarray, ...]  # (4, 2) polygon per disc below each level
    grade: np.ndarray = field(default_factory=lambda: np.zeros(N_LEVELS, int))
    loss_pct: np.ndarray = field(default_factory=lambda: np.zeros(N_LEVELS))
    morphology: tuple[str, ...] = ("normal",) * N_LEVELS
    oedema_pct: tuple[float | None, ...] = (None,) * N_LEVELS
    cleft: tuple[str | None, ...] = (None,) * N_LEVELS

    def body_polygon_mm(self, i: int) -> np.ndarray:
        """Outline of body ``i`` (8, 2): corners with the concave endplate midpoints."""
        p = self.points_mm[i]
        return np.array([p[3], p[5], p[2], p[1], p[4], p[0]])


def _unit(phi: float) -> np.ndarray:
    return np.array([math.cos(phi), math.sin(phi)])


def _normal(phi: float) -> np.ndarray:
    return np.array([-math.sin(phi), math.cos(phi)])


def _distribute(total_rad: float, weights: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Split ``total_rad`` over discs by ``weights`` within bounds, redistributing clipped parts."""
    w = np.asarray(weights, float) / np.sum(weights)
    out = w * total_rad
    free = np.ones(len(w), bool)
    for _ in range(len(w)):
        clipped = np.clip(out, lo, hi)
        if np.allclose(clipped, out):
            break
        free &= clipped == out
        out = clipped
        residual = total_rad - out.sum()
        if not free.any():
            break
        out[free] += residual * w[free] / w[free].sum()
    return np.clip(out, lo, hi)


def _apply_fracture(ha: float, hm: float, hp: float, fx: Fracture, rng_u: np.ndarray) -> tuple[float, float, float]:
    """Heights after a fracture; the largest relative loss equals ``fx.loss_pct``.

    ``rng_u`` holds three uniform numbers in [0, 1) drawn with the spec, so a spec rebuilds
    the same shape.
    """
    f = fx.loss_pct / 100.0
    if fx.morphology == "wedge":
        return ha * (1 - f), hm * (1 - f * (0.3 + 0.3 * rng_u[0])), hp * (1 - f * 0.1 * rng_u[1])
    if fx.morphology == "biconcave":
        return ha * (1 - f * 0.35 * rng_u[0]), hm * (1 - f), hp * (1 - f * 0.35 * rng_u[1])
    # crush: the whole body, posterior wall included, collapses
    return ha * (1 - f * (0.8 + 0.15 * rng_u[0])), hm * (1 - f * (0.8 + 0.15 * rng_u[1])), hp * (1 - f)


def build_spine(spec: SpineSpec) -> Spine:
    """Build the points of ``spec`` (pure and deterministic)."""
    hp0 = spec.posterior_height_mm.astype(float).copy()
    depth = spec.depth_mm.astype(float)
    ratio = spec.anterior_ratio.astype(float).copy()
    cs0 = spec.concavity_superior_mm.astype(float).copy()
    ci0 = spec.concavity_inferior_mm.astype(float).copy()
    # A fractured body is built from the shape expected for it — the normal proportions of its
    # level and a posterior height interpolated from its neighbours — so that its loss against
    # that expected height (Genant's criterion, docs/contract.md) is exactly the loss requested.
    # Natural variation stays in every unfractured vertebra.
    fractured = sorted({LEVEL_INDEX[f.level] for f in spec.fractures})
    for i in fractured:
        nb = [j for j in (i - 1, i + 1) if 0 <= j < N_LEVELS]
        hp0[i] = float(np.mean([spec.posterior_height_mm[j] * NORMAL_POSTERIOR_MM[i] / NORMAL_POSTERIOR_MM[j] for j in nb]))
        ratio[i] = NORMAL_ANTERIOR_RATIO[i]
        cs0[i], ci0[i] = _CONCAVITY_SUPERIOR * hp0[i], _CONCAVITY_INFERIOR * hp0[i]
    ha0 = hp0 * ratio
    hm0 = (ha0 + hp0) / 2 - cs0 - ci0

    # fractured heights; biconcave collapse deepens the endplates, 70 % superior
    ha, hm, hp, cs, ci = ha0.copy(), hm0.copy(), hp0.copy(), cs0.copy(), ci0.copy()
    grade = np.zeros(N_LEVELS, int)
    loss = np.zeros(N_LEVELS)
    morph = ["normal"] * N_LEVELS
    oedema: list[float | None] = [None] * N_LEVELS
    cleft: list[str | None] = [None] * N_LEVELS
    for n, fx in enumerate(spec.fractures):
        i = LEVEL_INDEX[fx.level]
        u = np.random.default_rng([7919, i, n, int(fx.loss_pct * 1000)]).random(3)
        a, m, p = _apply_fracture(ha0[i], hm0[i], hp0[i], fx, u)
        extra = (a + p) / 2 - m - cs0[i] - ci0[i]  # concavity needed to reach the middle height
        ha[i], hm[i], hp[i] = a, m, p
        cs[i] = cs0[i] + 0.7 * extra
        ci[i] = ci0[i] + 0.3 * extra
        grade[i], loss[i], morph[i] = fx.grade, fx.loss_pct, fx.morphology
        oedema[i], cleft[i] = fx.oedema_pct, fx.cleft

    # disc angles from the pre-fracture alignment
    body0 = np.arctan2(ha0 - hp0, depth)  # lordosis-positive turn of each body
    disc = np.zeros(N_LEVELS)
    disc[0:4] = np.radians(spec.disc_upper_deg)
    disc[12] = math.radians(spec.disc_junction_deg)
    min_turn = np.arctan2(1.0 - spec.disc_posterior_mm, depth)  # keep >= 1 mm anteriorly
    max_turn = np.arctan2(3.0 * spec.disc_posterior_mm, depth)
    tk_rad = math.radians(spec.thoracic_kyphosis_deg)
    disc[4:12] = _distribute(-tk_rad - body0[4:13].sum(), spec.thoracic_disc_weights, min_turn[4:12], max_turn[4:12])
    ll_rad = math.radians(spec.lumbar_lordosis_deg)
    disc[13:18] = _distribute(ll_rad - body0[13:18].sum(), spec.lumbar_disc_weights, min_turn[13:18], max_turn[13:18])

    # pelvis: the hip axis at the origin, the S1 endplate placed by PT and SS
    pt = math.radians(spec.pelvic_tilt_deg)
    ss = math.radians(spec.sacral_slope_deg)
    hip = np.zeros(2)
    s1_mid = hip + spec.hip_to_s1_mm * np.array([-math.sin(pt), math.cos(pt)])
    phi_s1 = -ss
    s1_ant = s1_mid + spec.s1_width_mm / 2 * _unit(phi_s1)
    s1_post = s1_mid - spec.s1_width_mm / 2 * _unit(phi_s1)

    points = np.zeros((N_LEVELS, 6, 2))
    phi = np.zeros((N_LEVELS, 2))  # superior, inferior
    discs: list[np.ndarray] = [np.zeros((4, 2))] * N_LEVELS
    post_top, phi_top, ant_top = s1_post, phi_s1, s1_ant
    for i in range(N_LEVELS - 1, -1, -1):
        phi_inf = phi_top + disc[i]
        p_inf = post_top + spec.disc_posterior_mm[i] * _normal(phi_top) + spec.listhesis_mm[i] * _unit(phi_top)
        u, v = _unit(phi_inf), _normal(phi_inf)
        d = depth[i]
        pts = points[i]
        pts[2] = p_inf  # posterior inferior
        pts[3] = p_inf + d * u  # anterior inferior
        pts[1] = p_inf + hp[i] * v  # posterior superior
        pts[0] = p_inf + d * u + ha[i] * v  # anterior superior
        pts[5] = p_inf + d / 2 * u + ci[i] * v  # middle inferior
        pts[4] = p_inf + d / 2 * u + ((ha[i] + hp[i]) / 2 - cs[i]) * v  # middle superior
        phi_sup = phi_inf + math.atan2(ha[i] - hp[i], d)
        phi[i] = (phi_sup, phi_inf)
        discs[i] = np.array([post_top, ant_top, pts[3], pts[2]])
        post_top, phi_top, ant_top = pts[1], phi_sup, pts[0]

    # femoral heads: two projected centres about the hip axis, radii magnified differently
    off = np.asarray(spec.femoral_head_offset_mm, float)
    centers = np.array([hip + off, hip - off])
    radii = spec.femoral_head_radius_mm * np.array(
        [1 + spec.femoral_head_magnification / 2, 1 - spec.femoral_head_magnification / 2]
    )

    il1, it4, it12, ic7, it1 = (LEVEL_INDEX[k] for k in ("L1", "T4", "T12", "C7", "T1"))
    c7_centroid = points[ic7, :4].mean(axis=0)
    t1_centroid = points[it1, :4].mean(axis=0)
    ll = math.degrees(phi[il1, 0] - phi_s1)
    pi_deg = spec.pelvic_incidence_deg
    # T1 pelvic angle: from the hip-axis→S1-midpoint line to the hip-axis→T1-centroid line,
    # positive when T1 lies anterior of that line (T1PA = T1 spinopelvic inclination + PT)
    t1pa = math.degrees(
        math.atan2(t1_centroid[0] - hip[0], t1_centroid[1] - hip[1])
        - math.atan2(s1_mid[0] - hip[0], s1_mid[1] - hip[1])
    )
    params = {
        "pelvic_incidence_deg": pi_deg,
        "pelvic_tilt_deg": spec.pelvic_tilt_deg,
        "sacral_slope_deg": spec.sacral_slope_deg,
        "lumbar_lordosis_deg": ll,
        "thoracic_kyphosis_deg": math.degrees(phi[it12, 1] - phi[it4, 0]),
        "sagittal_vertical_axis_mm": float(c7_centroid[0] - s1_post[0]),
        "pi_ll_mismatch_deg": pi_deg - ll,
        "t1_pelvic_angle_deg": t1pa,
    }
    return Spine(
        spec=spec,
        points_mm=points,
        phi_rad=phi,
        heights_mm=np.stack([ha, hm, hp], axis=1),
        heights_before_mm=np.stack([ha0, hm0, hp0], axis=1),
        s1_mm=np.array([s1_ant, s1_post]),
        hip_axis_mm=hip,
        femoral_centers_mm=centers,
        femoral_radii_mm=radii,
        parameters=params,
        posterior_elements_mm=tuple(_posterior_element(points[i], phi[i, 1], depth[i], hp[i], i) for i in range(N_LEVELS)),
        sacrum_mm=_sacrum(s1_ant, s1_post, phi_s1, spec.s1_width_mm),
        discs_mm=tuple(discs),
        grade=grade,
        loss_pct=loss,
        morphology=tuple(morph),
        oedema_pct=tuple(oedema),
        cleft=tuple(cleft),
    )


def _posterior_element(pts: np.ndarray, phi_inf: float, depth: float, hp: float, i: int) -> np.ndarray:
    """Pedicles, laminae and spinous process of one vertebra, as one lateral outline (K, 2)."""
    u, v = _unit(phi_inf), _normal(phi_inf)
    o = pts[2]
    thoracic = 1 <= i <= 12
    slope = math.radians(50.0 if thoracic else (35.0 if i == 0 else 12.0))
    spin_len = (0.9 if thoracic else 0.75) * depth + 8.0
    arch = 0.75 * depth + 4.0
    local = [
        (0.0, 0.82 * hp),
        (-0.45 * arch, 0.98 * hp),
        (-0.8 * arch, 0.80 * hp),
        (-arch - spin_len * math.cos(slope), 0.55 * hp - spin_len * math.sin(slope)),
        (-arch - spin_len * math.cos(slope) + 2.0, 0.55 * hp - spin_len * math.sin(slope) - 7.0),
        (-0.95 * arch, 0.18 * hp),
        (-0.55 * arch, -0.12 * hp),
        (0.0, 0.38 * hp),
    ]
    return np.array([o + a * u + b * v for a, b in local])


def _sacrum(s1_ant: np.ndarray, s1_post: np.ndarray, phi_s1: float, width: float) -> np.ndarray:
    """Outline of S1 and the sacrum below its superior endplate (K, 2)."""
    u, v = _unit(phi_s1), _normal(phi_s1)
    mid = (s1_ant + s1_post) / 2
    half = width / 2
    anterior = [(half, 0.0), (half - 1.0, -22.0), (half - 6.0, -45.0), (half - 16.0, -70.0), (half - 32.0, -92.0), (-8.0, -108.0)]
    posterior = [(-18.0, -104.0), (-half - 8.0, -80.0), (-half - 14.0, -50.0), (-half - 10.0, -20.0), (-half, 0.0)]
    return np.array([mid + a * u + b * v for a, b in anterior + posterior])


def sample_spec(rng: np.random.Generator, *, n_fractures: int | None = None, **overrides) -> SpineSpec:
    """Draw a plausible adult spine; keyword arguments fix any ``SpineSpec`` field.

    Alignment follows the pelvis as in standing adults (LL ≈ PI + 10°, docs/clinical.md norms);
    a drawn spine whose sagittal vertical axis falls outside -50…+120 mm, whose C7 endplate
    tilts 60° or more, or whose bodies do not rise one above the other, is drawn again.
    ``n_fractures`` fixes how many fractures are drawn (default: none for 45 %, else 1–5,
    with sandwich vertebrae and cascades).
    """
    for _ in range(50):
        spec = _sample_once(rng, n_fractures, overrides)
        if "lumbar_lordosis_deg" in overrides or "thoracic_kyphosis_deg" in overrides:
            return spec
        spine = build_spine(spec)
        sva = spine.parameters["sagittal_vertical_axis_mm"]
        c7_slope = -math.degrees(spine.phi_rad[0, 0])  # standing adults hold C7 tilted < ~60°
        rising = np.all(np.diff(spine.points_mm[:, :4, 1].mean(axis=1)) < 0)
        if -50.0 <= sva <= 120.0 and c7_slope < 60.0 and rising:
            return spec
    return spec


def _sample_once(rng: np.random.Generator, n_fractures: int | None, overrides: dict) -> SpineSpec:
    pi = overrides.get("pelvic_incidence_deg", float(np.clip(rng.normal(52, 10), 30, 85)))
    pt = overrides.get("pelvic_tilt_deg", float(np.clip(rng.normal(13 + 0.25 * (pi - 52), 6), -5, 40)))
    pt = float(np.clip(pt, pi - 60, pi - 15)) if "pelvic_tilt_deg" not in overrides else pt
    ss = pi - pt
    ll = overrides.get("lumbar_lordosis_deg", float(np.clip(pi + rng.normal(8, 9), 20, 85)))
    # keep the upper thoracic endplates as standing adults hold them (T4 tilted 0–40°
    # anterior-down before fractures): TK follows LL − SS
    tk_sampled = float(np.clip(ll - ss + rng.normal(17, 8), max(10, ll - ss + 2), min(80, ll - ss + 35)))
    tk = overrides.get("thoracic_kyphosis_deg", tk_sampled)
    scale = rng.normal(1.0, 0.07)
    hp = NORMAL_POSTERIOR_MM * scale * rng.normal(1.0, 0.03, N_LEVELS)
    depth = _DEPTH_WIDTH_MM[:, 0] * scale * rng.normal(1.0, 0.04, N_LEVELS)
    ratio = NORMAL_ANTERIOR_RATIO + rng.normal(0.0, 0.015, N_LEVELS)
    cs = hp * np.clip(rng.normal(_CONCAVITY_SUPERIOR, 0.008, N_LEVELS), 0.015, 0.06)
    ci = hp * np.clip(rng.normal(_CONCAVITY_INFERIOR, 0.008, N_LEVELS), 0.01, 0.05)
    width = _DEPTH_WIDTH_MM[:, 1] * scale * rng.normal(1.0, 0.04, N_LEVELS)
    disc_h = _DISC_POSTERIOR_MM * scale * np.clip(rng.normal(1.0, 0.15, N_LEVELS), 0.5, 1.5)
    if n_fractures is None:
        n_fractures = int(rng.choice([0, 1, 2, 3, 5], p=[0.45, 0.3, 0.13, 0.07, 0.05]))
    spec = SpineSpec(
        pelvic_incidence_deg=pi,
        pelvic_tilt_deg=pt,
        lumbar_lordosis_deg=ll,
        thoracic_kyphosis_deg=tk,
        posterior_height_mm=hp,
        depth_mm=depth,
        anterior_ratio=ratio,
        concavity_superior_mm=cs,
        concavity_inferior_mm=ci,
        width_mm=width,
        disc_posterior_mm=disc_h,
        disc_upper_deg=rng.normal(0.0, 1.5, 4),
        disc_junction_deg=float(rng.normal(-1.0, 2.5)),
        thoracic_disc_weights=rng.uniform(0.6, 1.4, 8),
        lumbar_disc_weights=_LUMBAR_DISC_WEIGHTS * rng.uniform(0.7, 1.3, 5),
        listhesis_mm=rng.normal(0.0, 0.6, N_LEVELS),
        s1_width_mm=float(40.0 * scale * rng.normal(1.0, 0.05)),
        hip_to_s1_mm=float(rng.normal(105.0, 8.0) * scale),
        femoral_head_radius_mm=float(rng.normal(24.0, 1.5) * scale),
        femoral_head_offset_mm=np.array([rng.normal(0, 4.0), rng.normal(0, 2.5)]),
        femoral_head_magnification=float(rng.uniform(0.04, 0.14)),
        bone_density=float(rng.uniform(0.45, 1.0)),
        fractures=sample_fractures(rng, n_fractures),
    )
    fields = {k: v for k, v in overrides.items() if k in SpineSpec.__dataclass_fields__}
    return replace(spec, **fields) if fields else spec


def sample_fractures(rng: np.random.Generator, n: int, levels: list[str] | None = None) -> tuple[Fracture, ...]:
    """Draw ``n`` fractures; 5 or more are a cascade of neighbouring levels, 2 may be a sandwich."""
    if n <= 0:
        return ()
    w = _FRACTURE_LEVEL_WEIGHTS / _FRACTURE_LEVEL_WEIGHTS.sum()
    if levels is None:
        if n >= 4:  # cascade: consecutive levels around a drawn start
            start = int(np.clip(rng.choice(N_LEVELS, p=w) - rng.integers(0, n), 1, N_LEVELS - n))
            idx = list(range(start, start + n))
        elif n == 2 and rng.random() < 0.35:  # sandwich: one intact vertebra between two
            mid = int(np.clip(rng.choice(N_LEVELS, p=w), 2, N_LEVELS - 2))
            idx = [mid - 1, mid + 1]
        else:
            idx = sorted(rng.choice(N_LEVELS, size=n, replace=False, p=w).tolist())
        levels = [LEVELS[i] for i in idx]
    out = []
    for level in levels:
        grade = int(rng.choice([1, 2, 3], p=[0.35, 0.4, 0.25]))
        lo, hi = GENANT_SAMPLING_PCT[grade]
        morph = str(rng.choice(["wedge", "biconcave", "crush"], p=[0.6, 0.25, 0.15]))
        acute = rng.random() < 0.6
        oedema = float(rng.uniform(15, 100)) if acute else None
        cleft = str(rng.choice(["gas", "fluid"])) if grade >= 2 and rng.random() < 0.2 else None
        out.append(Fracture(level, grade, float(rng.uniform(lo, hi)), morph, oedema, cleft))
    return tuple(out)


def with_progression(spec: SpineSpec, level: str, extra_loss_pct: float) -> SpineSpec:
    """The same spine later, the fracture at ``level`` having lost ``extra_loss_pct`` more."""
    fx = [f for f in spec.fractures if f.level == level]
    if not fx:
        raise ValueError(f"no fracture at {level} to progress")
    old = fx[0]
    loss = old.loss_pct + extra_loss_pct
    grade = 1 if loss <= 25 else (2 if loss <= 40 else 3)
    new = replace(old, loss_pct=loss, grade=grade)
    return replace(spec, fractures=tuple(new if f is old else f for f in spec.fractures))
