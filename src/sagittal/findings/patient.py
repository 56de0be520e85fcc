"""Reading one patient's studies together: what every analysis document of a patient says
about each vertebra (the latest grade, height loss over time, oedema and cleft from MR or CT,
regional kyphosis), the most complete set of spinopelvic parameters, and manual MRI findings
from the clinical CSV where no MR series was analysed. The candidacy rules
(``findings.candidacy``) and the report weigh these facts.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import InputError
from ..levels import LEVELS, UNGRADED, ungraded_reasons
from .candidacy import LevelFacts
from .clinical import ClinicalInputs

#: the seven parameters a whole-spine analysis reports (a document is ``ok`` with all of them)
REQUIRED_PARAMETERS: tuple[str, ...] = (
    "pelvic_incidence_deg", "pelvic_tilt_deg", "sacral_slope_deg", "lumbar_lordosis_deg",
    "thoracic_kyphosis_deg", "sagittal_vertical_axis_mm", "pi_ll_mismatch_deg",
)

Document = Mapping[str, Any]


#: within one study, whose heights and grade stand: a standing lateral radiograph is the reference
#: for vertebral morphometry (Genant's method), then CT, then MR (read last = stands)
_MORPHOMETRY_RANK = {"MR": 0, "CT": 1, "CR": 2, "DX": 2}


def _modality(doc: Document) -> str:
    return str((doc.get("source") or {}).get("modality") or "")


def study_date(doc: Document) -> str:
    """The document's ``source.study_date`` (``YYYYMMDD``) or ``""``."""
    src = doc.get("source") or {}
    return str(src.get("study_date") or "")


def _no_grade_reason(doc: Document, level: str) -> str:
    """Why ``doc`` reports ``level`` without a Genant grade though not in ``landmarks.ungraded``: the
    text of its first warning that names the level before its colon (alone or in a list, "T11, T12:
    ...") and speaks of a grade, else a plain statement (a reported vertebra without a grade is never read
    as unfractured; another level's reason is never borrowed)."""
    for w in (str(x) for x in doc.get("warnings") or []):
        head, sep, rest = w.partition(":")
        if sep and level in {x.strip() for x in head.split(",")} and "grade" in rest:
            return rest.strip()
    return "reported without a Genant grade in its study (see that document's warnings)"


def _read_vertebra(f: LevelFacts, v: Mapping[str, Any], same_study: bool) -> None:
    if v.get("regional_kyphosis_deg") is not None:
        f.regional_kyphosis_deg = v["regional_kyphosis_deg"]
    oed = v.get("oedema")
    if isinstance(oed, dict) and oed.get("present") is not None:
        f.oedema, f.oedema_extent_pct, f.oedema_source = bool(oed["present"]), oed.get("extent_pct"), oed.get("source")
    cl = v.get("cleft")
    if isinstance(cl, dict) and cl.get("present") is not None:
        # within one study a cleft seen by one modality stands against another's silence
        # (CT sees gas but not fluid); a later study's reading replaces an earlier one's
        if not (same_study and f.cleft and not cl["present"]):
            f.cleft, f.cleft_content, f.cleft_source = bool(cl["present"]), cl.get("content"), cl.get("source")


def _manual_mri(levels: dict[str, LevelFacts], clinical: ClinicalInputs) -> None:
    """Manual MRI findings fill in where no analysed image spoke; where one did, the manual word
    is kept beside it so that a disagreement is shown (``findings.candidacy``)."""
    for attr, present_attr, src_attr in (("mri_oedema_levels", "oedema", "oedema_source"),
                                         ("cleft_levels", "cleft", "cleft_source")):
        listed = getattr(clinical, attr)
        if listed is None:
            continue
        for lv in set(levels) | set(listed):
            if lv not in LEVELS:
                continue
            f = levels.setdefault(lv, LevelFacts(lv))
            if getattr(f, present_attr) is None:
                setattr(f, present_attr, lv in listed)
                setattr(f, src_attr, "manual")
            else:
                setattr(f, f"{present_attr}_manual", lv in listed)


def patient_facts(docs: Sequence[tuple[str, Document]], clinical: ClinicalInputs | None
                  ) -> tuple[dict[str, LevelFacts], dict[str, Any] | None, bool]:
    """``(levels, parameters, analysable)`` for one patient's documents, read oldest study first:
    facts per level (later studies override earlier ones, and within one study a radiograph's
    heights and grade stand over CT's, CT's over MR's; height loss kept per study), the
    parameters of the document that measured most of ``REQUIRED_PARAMETERS`` (the latest among
    equals), and whether any document was analysable (``ok`` or ``partial``)."""
    ordered = sorted(docs, key=lambda d: (study_date(d[1]), _MORPHOMETRY_RANK.get(_modality(d[1]), 0)))
    levels: dict[str, LevelFacts] = {}
    per_study: dict[str, dict[str, tuple[str, Any]]] = defaultdict(dict)
    read_in: dict[str, str] = {}  # level -> the study last read for it
    graded_in: dict[str, str] = {}  # level -> the study that last graded it
    best_params: dict[str, Any] | None = None
    best_count = -1
    analysable = False
    for path, doc in ordered:
        if doc.get("status") not in ("ok", "partial"):
            continue
        try:
            ungraded = ungraded_reasons((doc.get("landmarks") or {}).get(UNGRADED))
        except InputError as exc:
            raise InputError(f"{path}: {exc}") from None
        analysable = True
        src = doc.get("source") or {}
        study = src.get("study_instance_uid") or study_date(doc) or str(id(doc))
        params = dict(doc.get("parameters") or {})
        count = sum(params.get(k) is not None for k in REQUIRED_PARAMETERS)
        if count >= best_count:
            best_params, best_count = params, count
        for v in doc.get("vertebrae") or []:
            lv = v.get("level")
            if lv not in LEVELS:
                continue
            f = levels.setdefault(lv, LevelFacts(lv))
            if v.get("genant_grade") is not None:
                f.grade, f.height_loss_pct, f.morphology = v["genant_grade"], v.get("height_loss_pct"), v.get("morphology")
                f.ungraded_reason, graded_in[lv] = None, study
                per_study[study][lv] = (study_date(doc), v.get("height_loss_pct"))
            elif graded_in.get(lv) != study:
                # a later study could not grade it (its points not steady: ``landmarks.ungraded``; or no
                # grade for another reason the document's warnings give, e.g. a series too coarse along
                # the spine to grade): an earlier grade is not today's (listed, and "no fracture" not
                # claimed); a grade from the same study, another modality, stands
                f.ungraded_reason = ungraded.get(lv) or _no_grade_reason(doc, lv)
            _read_vertebra(f, v, same_study=read_in.get(lv) == study)
            read_in[lv] = study
    for lv, f in levels.items():
        f.losses_over_time = [per_study[s][lv] for s in per_study if lv in per_study[s]]
    if clinical is not None:
        _manual_mri(levels, clinical)
    return levels, best_params, analysable
