"""The candidacy report as one self-contained, printable HTML page for a clinician: inline CSS
and images, no scripts, no external resources.

Presentation only: every value comes from the candidacy report (``findings.candidacy``);
here it gets a human label with its unit, clinical rounding (angles to 0.1°, millimetres to
1 mm, percentages to 1 %), yes / no / unknown for booleans, the adult reference range beside
each spinopelvic value, and numbered primary sources (docs/clinical.md lists the same ones).
"""

from __future__ import annotations

import datetime as _dt
import html
import math
from typing import Any

from .. import __version__

__all__ = ["CATEGORY_TEXT", "candidacy_html", "format_date", "format_value", "label"]

CATEGORY_LABEL = {
    "urgent-surgical-referral": "Urgent surgical referral",
    "red-flags-multidisciplinary": "Red flags: multidisciplinary assessment",
    "augmentation-not-indicated": "Augmentation not indicated",
    "mri-needed": "MRI needed",
    "consider-augmentation": "Consider augmentation",
    "conservative-care": "Conservative care",
    "insufficient-data": "Insufficient data",
}
CATEGORY_TEXT = {
    "urgent-surgical-referral": "A neurological deficit or spinal instability is recorded: refer for a surgical "
                                "opinion at once; augmentation is not the answer here.",
    "red-flags-multidisciplinary": "Malignancy is known or suspected: MRI with contrast, possibly a biopsy, and "
                                   "multidisciplinary care before anything else.",
    "augmentation-not-indicated": "No fracture was found, or every fracture shows neither oedema on MRI nor a "
                                  "cleft.",
    "mri-needed": "A fracture's oedema status is unknown, so it cannot be called recent: an MRI (STIR or "
                  "fat-suppressed T2 and T1) is needed before any decision.",
    "consider-augmentation": "A fracture with oedema or a cleft, with the clinical criteria met. Augmentation may be "
                             "considered after assessing the cause of pain and frailty, and with informed consent.",
    "conservative-care": "A recent fracture (oedema or cleft) that does not, or not yet, meet the criteria for "
                         "augmentation.",
    "insufficient-data": "Nothing in the inputs could be analysed, or a vertebra was found but could not be graded "
                         "(listed below) and nothing else decides: it may be fractured; look at the images.",
}

#: (label, kind) of every value key the candidacy rules report; kind picks the rounding and unit
LABELS: dict[str, tuple[str, str]] = {
    "neuro_deficit": ("Neurological deficit", "bool"),
    "instability": ("Instability or cord compression", "bool"),
    "malignancy_suspected": ("Malignancy known or suspected", "bool"),
    "genant_grade": ("Genant grade", "int"),
    "height_loss_pct": ("Height loss (%)", "pct"),
    "morphology": ("Shape", "text"),
    "present": ("Present", "bool"),
    "extent_pct": ("Extent of the body (%)", "pct"),
    "source": ("Seen on", "source"),
    "manual_entry": ("Clinical CSV says", "bool"),
    "content": ("Content", "text"),
    "vas": ("Pain (VAS, 0–10)", "num"),
    "threshold": ("Threshold (VAS)", "num"),
    "analgesic_failure": ("Analgesics failed", "bool"),
    "pain_weeks": ("Weeks since onset", "num"),
    "threshold_weeks": ("Threshold (weeks)", "num"),
    "hospitalised": ("Hospitalised", "bool"),
    "bed_bound": ("Confined to bed", "bool"),
    "height_loss_over_time": ("Height loss by study", "series"),
    "threshold_pp": ("Threshold (percentage points)", "num"),
    "pulmonary_dysfunction": ("Pulmonary dysfunction", "bool"),
    "age": ("Age (years)", "num"),
    "frail": ("Frail", "bool"),
    "level": ("Level", "text"),
    "levels": ("Levels", "list"),
    "count": ("Fractured vertebrae", "int"),
    "regional_kyphosis_deg": ("Regional kyphosis (°)", "deg"),
    "vertebral_kyphosis_deg": ("Vertebral kyphosis (°)", "deg"),
    "sagittal_vertical_axis_mm": ("Sagittal vertical axis (mm)", "mm"),
    "pelvic_incidence_deg": ("Pelvic incidence (°)", "deg"),
    "pelvic_tilt_deg": ("Pelvic tilt (°)", "deg"),
    "sacral_slope_deg": ("Sacral slope (°)", "deg"),
    "lumbar_lordosis_deg": ("Lumbar lordosis, L1–S1 (°)", "deg"),
    "thoracic_kyphosis_deg": ("Thoracic kyphosis, T4–T12 (°)", "deg"),
    "pi_ll_mismatch_deg": ("PI − LL mismatch (°)", "deg"),
    "t1_pelvic_angle_deg": ("T1 pelvic angle (°)", "deg"),
    "srs_schwab_pi_ll": ("SRS-Schwab PI − LL modifier", "text"),
    "srs_schwab_pt": ("SRS-Schwab PT modifier", "text"),
    "srs_schwab_sva": ("SRS-Schwab SVA modifier", "text"),
    "roussouly_type": ("Roussouly type", "int"),
}
#: labels that depend on the criterion (``present`` of oedema vs cleft …)
CONTEXT_LABELS: dict[tuple[str, str], str] = {
    ("mri-oedema", "present"): "Oedema",
    ("cleft", "present"): "Cleft",
    ("adjacent-oedema", "levels"): "Levels with oedema",
    ("sandwich", "levels"): "Sandwich levels",
    ("fracture-count", "levels"): "Fractured levels",
    ("cascade", "count"): "Fractured vertebrae",
}
SOURCE_TEXT = {"mr": "MRI", "manual": "clinical form", "ct": "CT", "dx": "radiograph"}

#: adult reference values (normal-value series [5]) and SRS-Schwab modifier thresholds [4]
REFERENCE: dict[str, tuple[float, float, str]] = {
    "pelvic_incidence_deg": (52.0, 10.0, "°"),
    "pelvic_tilt_deg": (13.0, 6.0, "°"),
    "sacral_slope_deg": (41.0, 8.0, "°"),
    "lumbar_lordosis_deg": (61.0, 12.0, "°"),
    "sagittal_vertical_axis_mm": (0.0, 25.0, " mm"),
}
THRESHOLD_NOTES: dict[str, str] = {
    "pi_ll_mismatch_deg": "SRS-Schwab: < 10° “0”, 10–20° “+”, > 20° “++” [4]",
    "pelvic_tilt_deg": "SRS-Schwab: < 20° “0”, 20–30° “+”, > 30° “++” [4]; PT ≥ 27° with SVA ≥ 50 mm was associated "
                       "with needing surgery [1]",
    "sagittal_vertical_axis_mm": "SRS-Schwab: < 40 mm “0”, 40–95 mm “+”, > 95 mm “++” [4]",
    "regional_kyphosis_deg": "below 11°: lower adjacent-fracture risk; below 20°: better outcome reported [1]",
    "height_loss_pct": "Genant: < 20 % normal, 20–25 % grade 1, 25–40 % grade 2, > 40 % grade 3 [3]",
}

#: numbered references, in the project's own words (full list: docs/clinical.md)
REFERENCES: list[tuple[str, str]] = [
    ("position", "Roux et al. Experts' position paper on vertebroplasty for osteoporotic vertebral fractures. "
                 "RMD Open 2021;7:e001655."),
    ("guidelines", "Two guideline summaries on the management of osteoporotic vertebral compression fractures "
                   "(conservative care first, urgent referral for neurological deficit or instability), cited "
                   "together."),
    ("genant", "Genant HK, Wu CY, van Kuijk C, Nevitt MC. Vertebral fracture assessment using a semiquantitative "
               "technique. J Bone Miner Res 1993;8:1137–48."),
    ("schwab", "Schwab F, et al. Scoliosis Research Society–Schwab adult spinal deformity classification: a "
               "validation study. Spine 2012;37:1077–82."),
    ("norms", "Legaye J, et al. Eur Spine J 1998;7:99–103; Vialle R, et al. J Bone Joint Surg Am 2005;87:260–7 "
              "(adult reference values)."),
    ("vertos2", "VERTOS II: Klazen CAH, et al. Open-label randomised trial of vertebroplasty versus conservative "
                "treatment. Lancet 2010;376:1085–92."),
    ("vapour", "VAPOUR: Clark W, et al. Randomised, double-blind, placebo-controlled trial of vertebroplasty for "
               "acute painful osteoporotic fractures. Lancet 2016;388:1408–16."),
    ("vertos4", "VERTOS IV: Firanescu CE, et al. Randomised sham-controlled trial of vertebroplasty. "
                "BMJ 2018;361:k1551."),
    ("sham2009", "Buchbinder R, et al. N Engl J Med 2009;361:557–68; Kallmes DF, et al. (INVEST) N Engl J Med "
                 "2009;361:569–79: sham-controlled trials of vertebroplasty."),
]
REF_NUMBER = {key: i + 1 for i, (key, _) in enumerate(REFERENCES)}

_CSS = """
:root{--ink:#16181d;--muted:#555b66;--line:#c9ced6;--head:#eef1f5;--yes:#0b6b2f;--no:#3d4350;--unk:#9a5b00}
*{box-sizing:border-box}
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,'Helvetica Neue',Arial,sans-serif;margin:2em auto;
max-width:62em;padding:0 1em;color:var(--ink);line-height:1.45;font-size:15px}
h1{font-size:1.55em;margin:0 0 .15em}h2{font-size:1.15em;border-bottom:2px solid var(--line);margin:1.7em 0 .5em;
padding-bottom:.15em}h3{font-size:1.02em;margin:1.2em 0 .3em}
.meta{color:var(--muted);font-size:.9em;margin:0}
.disclaimer{border:2px solid #b3261e;border-radius:4px;padding:.6em 1em;margin:1em 0;background:#fff4f3}
.category{font-size:1.12em;padding:.7em 1em;border-left:7px solid #23408e;background:#f1f4fb;margin:.4em 0}
.category strong{display:block;font-size:1.12em;margin-bottom:.15em}
table{border-collapse:collapse;width:100%;margin:.4em 0 .8em}
th,td{border:1px solid var(--line);padding:.3em .55em;text-align:left;vertical-align:top;font-size:.93em}
th{background:var(--head);font-weight:600}
td.num{text-align:right;white-space:nowrap;font-variant-numeric:tabular-nums}
.yes{color:var(--yes);font-weight:650}.no{color:var(--no)}.unknown{color:var(--unk);font-weight:650}
.out{color:#b3261e;font-weight:650}.within{color:var(--yes)}
.note{background:#fff3d6;border-left:5px solid #c77700;padding:.25em .6em;margin:.3em 0;font-weight:600}
.small,.src{font-size:.84em;color:var(--muted)}
.values{margin:0;padding:0;list-style:none}.values li{margin:0}
figure{display:inline-block;margin:.5em 1em .5em 0;max-width:30em;vertical-align:top}
figure img{max-width:100%;max-height:42em;border:1px solid var(--line)}
ol.refs{font-size:.88em;padding-left:1.6em}ol.refs li{margin:.15em 0}
@page{size:A4;margin:14mm 12mm}
@media print{body{margin:0;max-width:none;padding:0;font-size:10.5pt}
 .disclaimer,.category,.note,th{-webkit-print-color-adjust:exact;print-color-adjust:exact}
 h2,h3{break-after:avoid;page-break-after:avoid}tr,figure{break-inside:avoid;page-break-inside:avoid}
 figure{max-width:48%}figure img{max-height:120mm}}
"""


def _e(x: Any) -> str:
    return html.escape("" if x is None else str(x))


def label(key: str, context: str | None = None) -> str:
    """The human label (with its unit) of a value key."""
    if context is not None and (context, key) in CONTEXT_LABELS:
        return CONTEXT_LABELS[(context, key)]
    if key in LABELS:
        return LABELS[key][0]
    return key.replace("_", " ").capitalize()


def format_date(text: Any) -> str:
    """``YYYYMMDD`` as ``2 Apr 2025`` (``date unknown`` when missing)."""
    s = str(text or "")
    try:
        d = _dt.datetime.strptime(s[:8], "%Y%m%d")
        return f"{d.day} {d.strftime('%b %Y')}"
    except ValueError:
        return s or "date unknown"


def _number(x: float, digits: int) -> str:
    if digits == 0:
        return f"{x:.0f}"
    text = f"{x:.{digits}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def format_value(key: str, value: Any, *, unit: bool = False) -> str:
    """A value as a clinician reads it: rounded (angles 0.1°, mm 1 mm, % 1 %); yes / no /
    unknown. The unit is left to the label (``Pelvic tilt (°)``) unless ``unit``."""
    kind = LABELS.get(key, ("", ""))[1]
    if value is None:
        return "unknown"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if kind == "series" and isinstance(value, list):
        parts = [f"{format_date(x.get('study_date'))}: {format_value('height_loss_pct', x.get('height_loss_pct'), unit=True)}"
                 for x in value if isinstance(x, dict)]
        return "; ".join(parts) or "no study"
    if isinstance(value, list):
        return ", ".join(str(x) for x in value) or "none"
    if kind == "source":
        return SOURCE_TEXT.get(str(value), str(value))
    if isinstance(value, int | float) and not (isinstance(value, float) and not math.isfinite(value)):
        if kind == "deg" or key.endswith("_deg"):
            return f"{float(value):.1f}" + ("°" if unit else "")
        if kind == "mm" or key.endswith("_mm"):
            return f"{float(value):.0f}" + (" mm" if unit else "")
        if kind == "pct" or key.endswith("_pct"):
            return f"{float(value):.0f}" + (" %" if unit else "")
        if kind == "int":
            return f"{float(value):.0f}"
        return _number(float(value), 1)
    return str(value)


def _status(status: str) -> str:
    cls, text = {"met": ("yes", "Yes"), "not met": ("no", "No")}.get(status, ("unknown", "Unknown"))
    return f"<td class='{cls}'>{text}</td>"


def _source_ref(source: str) -> str:
    """A rule's source as reference numbers."""
    s = source.lower()
    keys = [k for k, words in (("position", ("roux", "position paper", "240 patients")), ("guidelines", ("guideline",)),
                               ("genant", ("genant",)), ("schwab", ("schwab",)), ("norms", ("legaye", "vialle")))
            if any(w in s for w in words)]
    if not keys:
        return _e(source)
    return ", ".join(f"[{REF_NUMBER[k]}]" for k in keys)


def _values(values: dict[str, Any], context: str) -> str:
    """The values of a criterion as a list; a disagreement between the images and the clinical
    CSV as an amber note under them."""
    items = [f"<li>{_e(label(k, context))}: {_e(format_value(k, v))}</li>" for k, v in values.items()
             if not (k == "source" and v is None) and k != "disagreement"]
    out = f"<ul class='values'>{''.join(items)}</ul>" if items else ""
    if values.get("disagreement"):
        out += f"<div class='note'>⚠ {_e(values['disagreement'])}</div>"
    return out


def _disagreements(report: dict[str, Any]) -> list[str]:
    """Every disagreement between the analysed images and the clinical CSV, level by level."""
    return [str(c["values"]["disagreement"]) for lv in report.get("levels") or [] for c in lv.get("criteria") or []
            if isinstance(c.get("values"), dict) and c["values"].get("disagreement")]


def _criteria_table(rows: list[dict[str, Any]]) -> str:
    out = ["<table><tr><th>Criterion</th><th>Met?</th><th>Values</th><th>Source</th></tr>"]
    for c in rows:
        out.append(f"<tr><td>{_e(c['title'])}</td>{_status(c['status'])}<td>{_values(c['values'], c['id'])}</td>"
                   f"<td class='src'>{_source_ref(c['source'])}</td></tr>")
    out.append("</table>")
    return "".join(out)


def _factors_table(factors: list[dict[str, Any]]) -> str:
    out = ["<table><tr><th>Factor</th><th>Present?</th><th>When present</th><th>Values</th><th>Source</th></tr>"]
    for f in factors:
        direction = {True: "better outcome", False: "worse or uncertain outcome", None: "context"}[f["favourable"]]
        ctx = f["id"].rsplit("-", 1)[0] if f["id"].split("-")[-1][:1] in "CTL" else f["id"]
        out.append(f"<tr><td>{_e(f['title'])}</td>{_status(f['status'])}<td class='small'>{direction}</td>"
                   f"<td>{_values(f['values'], ctx)}</td><td class='src'>{_source_ref(f['source'])}</td></tr>")
    out.append("</table>")
    return "".join(out)


def _versus(key: str, value: Any) -> tuple[str, str]:
    """(reference range text, comparison cell HTML) for a spinopelvic value."""
    if key not in REFERENCE:
        return "—", "<td></td>"
    mean, sd, unit = REFERENCE[key]
    ref = f"{mean:.0f} ± {sd:.0f}{unit}"
    if value is None:
        return ref, "<td class='unknown'>unknown</td>"
    if value < mean - sd:
        return ref, "<td class='out'>below</td>"
    if value > mean + sd:
        return ref, "<td class='out'>above</td>"
    return ref, "<td class='within'>within</td>"


def _baseline_table(b: dict[str, Any]) -> str:
    out = ["<table><tr><th>Measure</th><th>Value</th><th>Adult reference [5]</th><th>vs reference</th>"
           "<th>Thresholds</th></tr>"]
    keys = ("pelvic_incidence_deg", "pelvic_tilt_deg", "sacral_slope_deg", "lumbar_lordosis_deg",
            "thoracic_kyphosis_deg", "sagittal_vertical_axis_mm", "pi_ll_mismatch_deg", "t1_pelvic_angle_deg")
    for k in keys:
        v = b.get(k)
        ref, cmp_cell = _versus(k, v)
        out.append(f"<tr><td>{_e(label(k))}</td><td class='num'>{_e(format_value(k, v))}</td><td>{_e(ref)}</td>"
                   f"{cmp_cell}<td class='small'>{_e(THRESHOLD_NOTES.get(k, ''))}</td></tr>")
    for k in ("regional_kyphosis_deg", "height_loss_pct"):
        for level, v in (b.get(k) or {}).items():
            out.append(f"<tr><td>{_e(label(k).replace(' (', f' at {level} ('))}</td>"
                       f"<td class='num'>{_e(format_value(k, v))}</td><td>—</td><td></td>"
                       f"<td class='small'>{_e(THRESHOLD_NOTES.get(k, ''))}</td></tr>")
    mods = [f"{label(k).replace('SRS-Schwab ', '').replace(' modifier', '')} “{b[k]}”"
            for k in ("srs_schwab_pi_ll", "srs_schwab_pt", "srs_schwab_sva") if b.get(k) not in (None, "")]
    extra = []
    if mods:
        extra.append(f"SRS-Schwab modifiers [4]: {', '.join(mods)}.")
    if b.get("roussouly_type") not in (None, 0):
        extra.append(f"Roussouly sagittal shape type {format_value('roussouly_type', b['roussouly_type'])}.")
    out.append("</table>")
    if extra:
        out.append(f"<p class='small'>{_e(' '.join(extra))}</p>")
    return "".join(out)


def _level_heading(lv: dict[str, Any]) -> str:
    return f"<h3>{_e(lv['level'])}: {_e(CATEGORY_LABEL.get(lv['category'], lv['category']))}</h3>"


def candidacy_html(report: dict[str, Any], overlays: list[tuple[str, str]]) -> str:
    """Render one patient's report. ``overlays`` are (caption, base64 PNG) pairs."""
    r = report
    category = r["category"]
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        f"<title>Vertebral augmentation candidacy — {_e(r['patient_id'])}</title><style>{_CSS}</style></head><body>",
        "<h1>Vertebral augmentation candidacy</h1>",
        f"<p class='meta'>Patient {_e(r['patient_id'])} · rules version {_e(r['ruleset_version'])} · "
        f"sagittal {_e(__version__)} · {len(r.get('documents') or [])} analysed image(s)</p>",
        f"<div class='disclaimer' id='disclaimer'><strong>Decision support, not a decision.</strong> "
        f"{_e(r['disclaimer'])}</div>",
        "<h2 id='summary'>Summary</h2>",
        f"<div class='category'><strong>{_e(CATEGORY_LABEL.get(category, category))}</strong>"
        f"{_e(CATEGORY_TEXT.get(category, ''))}</div>",
        *[f"<div class='note'>⚠ Images and clinical CSV disagree: {_e(d)}</div>" for d in _disagreements(r)],
        *[f"<div class='note'>⚠ {_e(u['level'])} was found but not graded: {_e(u['reason'])}.</div>"
          for u in r.get("ungraded_levels") or []],
        "<h2 id='patient-criteria'>Patient-level criteria</h2>", _criteria_table(r["patient_criteria"]),
        "<h2 id='levels'>Fractured levels</h2>",
    ]
    if not r["levels"]:
        parts.append("<p>No fractured vertebra was found in the analysed images.</p>")
    for lv in r["levels"]:
        parts.append(_level_heading(lv))
        parts.append(_criteria_table(lv["criteria"]))
    parts.append("<h2 id='factors'>Factors reported with outcomes</h2>")
    parts.append(_factors_table(r["factors"]))
    parts.append("<h2 id='baseline'>Mechanical baseline</h2>")
    parts.append(_baseline_table(r["baseline"]))
    if overlays:
        parts.append("<h2 id='images'>Images</h2><p class='small'>Every number above is drawn on these: vertebral "
                     "outlines and endplates, the C7 plumb line and S1 corner (SVA), and the pelvic construction "
                     "(PI, PT, SS) at the hip axis.</p>")
        for caption, data in overlays:
            parts.append(f"<figure><img alt='{_e(caption)}' src='data:image/png;base64,{data}'>"
                         f"<figcaption class='small'>{_e(caption)}</figcaption></figure>")
    parts.append("<h2 id='reminders'>In every case</h2><ul>" + "".join(f"<li>{_e(x)}</li>" for x in r["reminders"])
                 + "</ul>")
    trials = (f"The trials: VERTOS II [{REF_NUMBER['vertos2']}] (open-label) favoured vertebroplasty; of the "
              f"sham-controlled trials, Buchbinder 2009 and INVEST 2009 [{REF_NUMBER['sham2009']}] and VERTOS IV "
              f"[{REF_NUMBER['vertos4']}] found no benefit over the sham procedure, and VAPOUR "
              f"[{REF_NUMBER['vapour']}] found one. Further height loss of the fractured vertebra was less common after "
              f"vertebroplasty in VERTOS II, VAPOUR and VERTOS IV.")
    parts.append(f"<h2 id='evidence'>State of the evidence</h2><p>{_e(r['evidence'])}</p><p>{_e(trials)}</p>")
    parts.append("<h2 id='references'>Sources</h2><ol class='refs'>"
                 + "".join(f"<li id='ref-{k}'>{_e(text)}</li>" for k, text in REFERENCES) + "</ol>")
    parts.append("<p class='small'>Measurements are made by software from landmarks placed by a model trained on "
                 "synthetic images; check them on the images above. Reference values are for adults.</p>")
    parts.append("</body></html>")
    return "\n".join(parts)
