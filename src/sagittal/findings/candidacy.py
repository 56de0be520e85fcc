"""Vertebral-augmentation candidacy: transparent, versioned rules over a patient's analysis
documents and clinical inputs (docs/clinical.md). sagittal supports a decision; it never makes one.

Every criterion is ``met``, ``not met`` or ``unknown`` with the values behind it and its
source; unknown inputs propagate as unknown (three-valued logic), never as "no".

Patient categories, first match wins (the issue's order of precedence):

1. ``urgent-surgical-referral`` — neurological deficit or instability;
2. ``red-flags-multidisciplinary`` — suspected malignancy;
3. ``augmentation-not-indicated`` — images analysed and no fracture, or every fracture
   without oedema on MRI and without a cleft — and no vertebra reported without a grade (its points not
   steady enough to grade it, or its CT/MR series too coarse along the spine: it may be fractured; then
   ``insufficient-data``);
4. ``mri-needed`` — a fracture whose oedema status is unknown (and no cleft);
5. ``consider-augmentation`` — a fracture with oedema or a cleft and severe pain (VAS ≥ 5)
   refractory to analgesics for ≥ 3 weeks or forcing hospitalisation or bed confinement, or
   with progressive deformity or pulmonary dysfunction;
6. ``conservative-care`` — a fracture with oedema (or a cleft) not meeting 5 (yet);
7. ``insufficient-data`` — nothing analysable, or nothing else decided while a vertebra is
   reported ungraded (``ungraded_levels``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from ..levels import LEVEL_INDEX, LEVELS, THORACOLUMBAR
from .clinical import ClinicalInputs

RULESET_VERSION = "1.0"
CATEGORIES = (
    "urgent-surgical-referral",
    "red-flags-multidisciplinary",
    "augmentation-not-indicated",
    "mri-needed",
    "consider-augmentation",
    "conservative-care",
    "insufficient-data",
)

POSITION_PAPER = "Roux et al., experts' position paper on vertebroplasty, RMD Open 2021;7:e001655"
GUIDELINES = "guideline summaries on the management of vertebral compression fractures (see docs/clinical.md)"
GENANT = "Genant et al., semi-quantitative grading, J Bone Miner Res 1993;8:1137-48"
TRIALS = "VERTOS II, VAPOUR, VERTOS IV and the sham-controlled trials (as summarised in the position paper)"
SPINOPELVIC = ("prospective cohort of 240 patients on adjacent fractures and a cohort on surgery after compression "
               "fractures, as reported in the position paper (Roux et al., RMD Open 2021;7:e001655)")
SCHWAB = "Schwab et al., SRS-Schwab classification, Spine 2012;37:1077-82"

#: thresholds, each with its source
SEVERE_PAIN_VAS = 5.0  # position paper
CONSERVATIVE_WEEKS = 3.0  # guidelines: conservative care first for ~3 weeks to 3 months
ACUTE_WEEKS = 6.0  # better outcomes with acute fractures (≤ 6 weeks)
YOUNG_AGE = 60.0  # better outcomes under 60
SEGMENTAL_KYPHOSIS_FAVOURABLE_DEG = 20.0
ADJACENT_RISK_KYPHOSIS_DEG = 11.0  # adjacent-fracture risk fell below 11°
PROGRESSION_PP = 5.0  # further height loss between studies that counts as progression
CASCADE_COUNT = 3  # "more than three fractures in a short time"
SURGERY_SVA_MM, SURGERY_PT_DEG = 50.0, 27.0


#: three-valued truth: met (True), not met (False), unknown (None)
Tri = bool | None
#: what a rule's test returns: its truth and the values behind it
Outcome = tuple[Tri, dict[str, Any]]


def k_and(*vals: Tri) -> Tri:
    """Kleene AND over True/False/None."""
    if any(v is False for v in vals):
        return False
    return None if any(v is None for v in vals) else True


def k_or(*vals: Tri) -> Tri:
    """Kleene OR over True/False/None."""
    if any(v is True for v in vals):
        return True
    return None if any(v is None for v in vals) else False


def _status(v: Tri) -> str:
    return {True: "met", False: "not met", None: "unknown"}[v]


@dataclass(frozen=True)
class Criterion:
    id: str
    version: str
    title: str
    status: str
    values: dict[str, Any]
    source: str

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "version": self.version, "title": self.title, "status": self.status,
                "values": self.values, "source": self.source}


C = TypeVar("C", "Ctx", "LevelCtx")


@dataclass(frozen=True)
class Rule(Generic[C]):
    """A named, versioned criterion with its source; ``test(ctx) -> (True|False|None, values)``."""

    id: str
    version: str
    title: str
    source: str
    test: Callable[[C], Outcome]

    def __call__(self, ctx: C) -> Criterion:
        value, values = self.test(ctx)
        return Criterion(self.id, self.version, self.title, _status(value), values, self.source)


@dataclass
class LevelFacts:
    """What the documents say about one vertebra of a patient."""

    level: str
    grade: int | None = None
    height_loss_pct: float | None = None
    morphology: str | None = None
    #: why the latest study reports this vertebra without a grade (its ``landmarks.ungraded`` reason;
    #: None where it graded it): "no fracture" is then not known, whatever an earlier study said
    ungraded_reason: str | None = None
    regional_kyphosis_deg: float | None = None
    oedema: bool | None = None
    oedema_extent_pct: float | None = None
    oedema_source: str | None = None
    cleft: bool | None = None
    cleft_content: str | None = None
    cleft_source: str | None = None
    losses_over_time: list[tuple[str, float | None]] = field(default_factory=list)  # (date, loss %) per study
    #: the clinical CSV's word where an analysed image also spoke (shown when they disagree)
    oedema_manual: bool | None = None
    cleft_manual: bool | None = None

    @property
    def fractured(self) -> bool:
        return (self.grade or 0) >= 1

    @property
    def progression_pp(self) -> float | None:
        losses = [loss for _, loss in self.losses_over_time if loss is not None]
        if len(losses) < 2:
            return None
        return losses[-1] - losses[0]


@dataclass
class Ctx:
    """What a patient-level rule reads."""

    clinical: ClinicalInputs


@dataclass
class LevelCtx:
    """What a level rule reads: the patient's clinical inputs and one vertebra's facts."""

    clinical: ClinicalInputs
    level: LevelFacts


def _c(name: str) -> Callable[[Ctx], Tri]:
    return lambda ctx: getattr(ctx.clinical, name)  # a yes/no field of ClinicalInputs, by name


PATIENT_RULES: list[Rule[Ctx]] = [
    Rule("neuro-deficit", "1", "Neurological deficit", GUIDELINES,
         lambda c: (_c("neuro_deficit")(c), {"neuro_deficit": _c("neuro_deficit")(c)})),
    Rule("instability", "1", "Spinal instability or cord compression", GUIDELINES,
         lambda c: (_c("instability")(c), {"instability": _c("instability")(c)})),
    Rule("malignancy-suspected", "1", "Known or suspected malignancy (red flag)", GUIDELINES,
         lambda c: (_c("malignancy_suspected")(c), {"malignancy_suspected": _c("malignancy_suspected")(c)})),
]


def _severe_pain(c: LevelCtx) -> Outcome:
    vas = c.clinical.vas
    return (None if vas is None else vas >= SEVERE_PAIN_VAS), {"vas": vas, "threshold": SEVERE_PAIN_VAS}


def _refractory(c: LevelCtx) -> Outcome:
    weeks, fail = c.clinical.pain_weeks, c.clinical.analgesic_failure
    long_enough = None if weeks is None else weeks >= CONSERVATIVE_WEEKS
    return k_and(fail, long_enough), {"analgesic_failure": fail, "pain_weeks": weeks, "threshold_weeks": CONSERVATIVE_WEEKS}


def _confined(c: LevelCtx) -> Outcome:
    return k_or(c.clinical.hospitalised, c.clinical.bed_bound), {"hospitalised": c.clinical.hospitalised,
                                                                 "bed_bound": c.clinical.bed_bound}


def _progressive(c: LevelCtx) -> Outcome:
    pp = c.level.progression_pp
    return (None if pp is None else pp >= PROGRESSION_PP), {
        "height_loss_over_time": [{"study_date": d, "height_loss_pct": v} for d, v in c.level.losses_over_time],
        "threshold_pp": PROGRESSION_PP}


def _with_disagreement(values: dict[str, Any], found: bool | None, manual: bool | None, source: str | None,
                       what: str, level: str) -> dict[str, Any]:
    """``values`` plus, when the images and the clinical CSV disagree, both words and a note.
    The images' finding is the one the rules weigh; the manual entry only fills what they cannot say."""
    if manual is None or found is None or manual == found or source == "manual":
        return values
    seen = "shows" if found else "does not show"
    listed = "lists" if manual else "does not list"
    return {**values, "manual_entry": manual,
            "disagreement": f"{(source or 'the image').upper()} {seen} {what} at {level}; the clinical CSV {listed} it. "
                            "The image finding is used: check both."}


LEVEL_RULES: list[Rule[LevelCtx]] = [
    Rule("fracture", "1", "Vertebral fracture (Genant grade ≥ 1)", GENANT,
         lambda c: (None if c.level.grade is None else c.level.grade >= 1,
                    {"genant_grade": c.level.grade, "height_loss_pct": c.level.height_loss_pct,
                     "morphology": c.level.morphology})),
    Rule("mri-oedema", "1", "Bone-marrow oedema on MRI (recent or non-healed fracture)", POSITION_PAPER,
         lambda c: (c.level.oedema, _with_disagreement(
             {"present": c.level.oedema, "extent_pct": c.level.oedema_extent_pct, "source": c.level.oedema_source},
             c.level.oedema, c.level.oedema_manual, c.level.oedema_source, "oedema", c.level.level))),
    Rule("cleft", "1", "Intravertebral cleft (non-union, Kümmell's sign)", POSITION_PAPER,
         lambda c: (c.level.cleft, _with_disagreement(
             {"present": c.level.cleft, "content": c.level.cleft_content, "source": c.level.cleft_source},
             c.level.cleft, c.level.cleft_manual, c.level.cleft_source, "a cleft", c.level.level))),
    Rule("severe-pain", "1", f"Severe pain (VAS ≥ {SEVERE_PAIN_VAS:g})", POSITION_PAPER, _severe_pain),
    Rule("refractory-pain", "1", f"Pain refractory to analgesics for ≥ {CONSERVATIVE_WEEKS:g} weeks", GUIDELINES,
         _refractory),
    Rule("confined", "1", "Pain forcing hospitalisation or bed confinement", POSITION_PAPER, _confined),
    Rule("progressive-deformity", "1", f"Progressive deformity (≥ {PROGRESSION_PP:g} points more height loss "
         "between studies)", POSITION_PAPER, _progressive),
    Rule("pulmonary-dysfunction", "1", "Pulmonary dysfunction", POSITION_PAPER,
         lambda c: (c.clinical.pulmonary_dysfunction, {"pulmonary_dysfunction": c.clinical.pulmonary_dysfunction})),
]


def _level_decision(crit: dict[str, Criterion]) -> tuple[str, bool | None, bool | None]:
    """(level category, recent-or-non-union, consider-criteria) for one fractured level."""
    val = {k: {"met": True, "not met": False, "unknown": None}[v.status] for k, v in crit.items()}
    active = k_or(val["mri-oedema"], val["cleft"])
    pain_case = k_and(val["severe-pain"], k_or(val["refractory-pain"], val["confined"]))
    indication = k_or(pain_case, val["progressive-deformity"], val["pulmonary-dysfunction"])
    consider = k_and(active, indication)
    if val["mri-oedema"] is False and val["cleft"] is not True:
        return "augmentation-not-indicated", active, consider
    if val["mri-oedema"] is None and val["cleft"] is not True:
        return "mri-needed", active, consider
    if consider is True:
        return "consider-augmentation", active, consider
    return "conservative-care", active, consider


def evaluate_patient(patient_id: str, levels: dict[str, LevelFacts], clinical: ClinicalInputs | None,
                     parameters: dict[str, Any] | None, analysable: bool) -> dict[str, Any]:
    """The candidacy of one patient: category, per-level criteria, factors, baseline."""
    clinical = clinical or ClinicalInputs(patient_id=patient_id)
    ctx = Ctx(clinical)
    patient_criteria = [r(ctx) for r in PATIENT_RULES]
    pc = {c.id: c.status for c in patient_criteria}
    fractured = [lv for lv in LEVELS if lv in levels and levels[lv].fractured]
    ungraded = [lv for lv in LEVELS if lv in levels and levels[lv].ungraded_reason]
    level_out: list[dict[str, Any]] = []
    level_categories: list[str] = []
    for lv in fractured:
        facts = levels[lv]
        crit = {r.id: r(LevelCtx(clinical, facts)) for r in LEVEL_RULES}
        cat, _, _ = _level_decision(crit)
        level_categories.append(cat)
        level_out.append({"level": lv, "category": cat, "criteria": [c.to_json() for c in crit.values()],
                          "regional_kyphosis_deg": facts.regional_kyphosis_deg})
    if pc["neuro-deficit"] == "met" or pc["instability"] == "met":
        category = "urgent-surgical-referral"
    elif pc["malignancy-suspected"] == "met":
        category = "red-flags-multidisciplinary"
    elif not analysable:
        category = "insufficient-data"
    elif ungraded and (not fractured or all(c == "augmentation-not-indicated" for c in level_categories)):
        category = "insufficient-data"  # "no fracture" is not known while a vertebra could not be graded
    elif not fractured or all(c == "augmentation-not-indicated" for c in level_categories):
        category = "augmentation-not-indicated"
    elif "mri-needed" in level_categories:
        category = "mri-needed"
    elif "consider-augmentation" in level_categories:
        category = "consider-augmentation"
    else:
        category = "conservative-care"
    return {
        "schema": "sagittal.candidacy/1",
        "ruleset_version": RULESET_VERSION,
        "patient_id": patient_id,
        "category": category,
        "patient_criteria": [c.to_json() for c in patient_criteria],
        "levels": level_out,
        "ungraded_levels": [{"level": lv, "reason": levels[lv].ungraded_reason} for lv in ungraded],
        "factors": factors(levels, fractured, clinical, parameters),
        "baseline": baseline(levels, fractured, parameters),
        "reminders": [
            "Start anti-osteoporotic treatment at once, whatever the decision on augmentation (guidelines).",
            "Conservative care first for about 3 weeks to 3 months: analgesics, limited bed rest, orthosis, walking.",
            "Before augmentation: assess the cause of pain and frailty, and obtain informed consent.",
        ],
        "evidence": ("The evidence is contested: open-label trials favour vertebroplasty; three of four sham-controlled "
                     "trials found no benefit; the positive one (VAPOUR) enrolled mostly inpatients with very recent "
                     "fractures and severe pain. Preventing further height loss, not restoring anatomy, is the "
                     "mechanical aim."),
        "disclaimer": "Decision support only: sagittal does not make clinical decisions. Every line is for a "
                      "clinician to check against the images and the patient.",
    }


def _factor(id_: str, title: str, favourable: bool | None, status: Tri, values: dict[str, Any],
            source: str) -> dict[str, Any]:
    return {"id": id_, "title": title, "favourable": favourable, "status": _status(status), "values": values,
            "source": source}


def factors(levels: dict[str, LevelFacts], fractured: list[str], clinical: ClinicalInputs,
            parameters: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Factors reported with better or worse outcomes, each with its source (docs/clinical.md)."""
    out: list[dict[str, Any]] = []
    age = clinical.age
    out.append(_factor("age-under-60", f"Age under {YOUNG_AGE:g}", True, None if age is None else age < YOUNG_AGE,
                       {"age": age}, GUIDELINES))
    weeks = clinical.pain_weeks
    out.append(_factor("acute", f"Acute fracture (≤ {ACUTE_WEEKS:g} weeks)", True,
                       None if weeks is None else weeks <= ACUTE_WEEKS, {"pain_weeks": weeks}, GUIDELINES))
    out.append(_factor("frail", "Frailty (to weigh before any procedure)", False, clinical.frail,
                       {"frail": clinical.frail}, POSITION_PAPER))
    for lv in fractured:
        f = levels[lv]
        out.append(_factor(f"thoracolumbar-{lv}", f"{lv} at the thoracolumbar junction (T10–L2)", True,
                           lv in THORACOLUMBAR, {"level": lv}, GUIDELINES))
        rk = f.regional_kyphosis_deg
        out.append(_factor(f"segmental-kyphosis-{lv}", f"Segmental kyphosis at {lv} below "
                           f"{SEGMENTAL_KYPHOSIS_FAVOURABLE_DEG:g}°", True,
                           None if rk is None else rk < SEGMENTAL_KYPHOSIS_FAVOURABLE_DEG,
                           {"regional_kyphosis_deg": rk}, GUIDELINES))
        out.append(_factor(f"adjacent-risk-kyphosis-{lv}", f"Segmental kyphosis at {lv} below "
                           f"{ADJACENT_RISK_KYPHOSIS_DEG:g}° (lower adjacent-fracture risk)", True,
                           None if rk is None else rk < ADJACENT_RISK_KYPHOSIS_DEG, {"regional_kyphosis_deg": rk},
                           SPINOPELVIC))
    n = len(fractured)
    # a level an image showed but its latest study did not grade (``ungraded_reason``, as the category reads it:
    # an earlier grade is not today's) may be fractured: where it could decide a factor, the factor is unknown
    ungraded = [lv for lv in LEVELS if lv in levels and levels[lv].ungraded_reason is not None]
    with_ungraded = {"ungraded_levels": ungraded} if ungraded else {}
    out.append(_factor("fracture-count", "Fractured vertebrae (number and levels)", None,
                       None if not levels or (n == 0 and ungraded) else n > 0,
                       {"count": n, "levels": fractured, **with_ungraded}, GENANT))
    cascade = None if not levels or (n <= CASCADE_COUNT < n + len(ungraded)) else n > CASCADE_COUNT
    out.append(_factor("cascade", f"Fracture cascade (more than {CASCADE_COUNT} fractures): benefit of augmentation "
                       "unknown", False, cascade, {"count": n, **with_ungraded}, POSITION_PAPER))
    idx = [LEVEL_INDEX[lv] for lv in fractured]
    between = [LEVELS[i] for i in range(1, len(LEVELS) - 1)
               if i - 1 in idx and i + 1 in idx and i not in idx and LEVELS[i] in levels]
    # intact: graded 0 by its latest study (not ungraded there, nor known only from the clinical CSV)
    sandwich = [lv for lv in between if levels[lv].grade == 0 and levels[lv].ungraded_reason is None]
    out.append(_factor("sandwich", "Sandwich vertebra (intact between two fractures) at risk", False,
                       None if not levels or (not sandwich and len(between) > len(sandwich)) else bool(sandwich),
                       {"levels": sandwich}, POSITION_PAPER))
    adjacent = [LEVELS[i] for i in range(len(LEVELS)) if LEVELS[i] in levels and not levels[LEVELS[i]].fractured
                and levels[LEVELS[i]].oedema and any(abs(i - j) == 1 for j in idx)]
    any_mri = any(f.oedema is not None for f in levels.values())
    out.append(_factor("adjacent-oedema", "Discrete oedema next to a fracture (possible new fracture)", False,
                       None if not any_mri else bool(adjacent), {"levels": adjacent}, POSITION_PAPER))
    p = parameters or {}
    sva, pt = p.get("sagittal_vertical_axis_mm"), p.get("pelvic_tilt_deg")
    out.append(_factor("sagittal-imbalance", f"SVA ≥ {SURGERY_SVA_MM:g} mm and PT ≥ {SURGERY_PT_DEG:g}° "
                       "(associated with needing surgery)", False,
                       None if sva is None or pt is None else (sva >= SURGERY_SVA_MM and pt >= SURGERY_PT_DEG),
                       {"sagittal_vertical_axis_mm": sva, "pelvic_tilt_deg": pt}, SPINOPELVIC))
    return out


def baseline(levels: dict[str, LevelFacts], fractured: list[str], parameters: dict[str, Any] | None) -> dict[str, Any]:
    """The mechanical baseline of the position paper's research agenda."""
    p = parameters or {}
    keys = ("sagittal_vertical_axis_mm", "pelvic_incidence_deg", "pelvic_tilt_deg", "sacral_slope_deg",
            "lumbar_lordosis_deg", "thoracic_kyphosis_deg", "pi_ll_mismatch_deg", "t1_pelvic_angle_deg",
            "srs_schwab_pi_ll", "srs_schwab_pt", "srs_schwab_sva", "roussouly_type")
    return {
        "regional_kyphosis_deg": {lv: levels[lv].regional_kyphosis_deg for lv in fractured},
        "height_loss_pct": {lv: levels[lv].height_loss_pct for lv in fractured},
        **{k: p.get(k) for k in keys},
        "norms": "adults: PI 52 ± 10°, PT 13 ± 6°, SS 41 ± 8°, LL 61 ± 12°, SVA 0 ± 25 mm (Legaye 1998, Vialle 2005); "
                 f"SRS-Schwab modifiers per {SCHWAB}",
    }
