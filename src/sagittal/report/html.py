"""The candidacy report as one self-contained, print-friendly HTML page: inline CSS and
images, no scripts, no external resources, plain language."""

from __future__ import annotations

import html

CATEGORY_TEXT = {
    "urgent-surgical-referral": "Urgent surgical referral, not augmentation: a neurological deficit or spinal "
                                "instability is recorded.",
    "red-flags-multidisciplinary": "Red flags: malignancy is known or suspected. MRI with contrast, possibly biopsy, "
                                   "and multidisciplinary care.",
    "augmentation-not-indicated": "Augmentation is not indicated on these findings: no fracture, or fractures without "
                                  "oedema on MRI and without a cleft.",
    "mri-needed": "MRI needed: a fracture's oedema status is unknown, so it cannot be called recent.",
    "consider-augmentation": "Consider augmentation (after assessing the cause of pain, frailty and informed "
                             "consent): a fracture with oedema or a cleft and the clinical criteria met.",
    "conservative-care": "Conservative care: a recent fracture with oedema that does not (yet) meet the criteria for "
                         "augmentation.",
    "insufficient-data": "Insufficient data: nothing in the inputs could be analysed.",
}

_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:2em auto;max-width:60em;color:#111;line-height:1.4}
h1{font-size:1.5em;margin-bottom:0}h2{font-size:1.15em;border-bottom:1px solid #999;margin-top:1.6em}
.disclaimer{border:2px solid #b00;padding:.6em 1em;margin:1em 0;background:#fff5f5}
.category{font-size:1.2em;padding:.6em 1em;border-left:6px solid #225;background:#f3f3f8}
table{border-collapse:collapse;width:100%;margin:.5em 0}th,td{border:1px solid #bbb;padding:.25em .5em;text-align:left;
vertical-align:top;font-size:.92em}th{background:#eee}.met{color:#060;font-weight:600}.not-met{color:#555}
.unknown{color:#a60;font-weight:600}figure{display:inline-block;margin:.5em;max-width:45%}figure img{max-width:100%}
.small{font-size:.85em;color:#444}
@media print{body{margin:0;max-width:none}figure{page-break-inside:avoid}h2{page-break-after:avoid}}
"""


def _e(x) -> str:
    return html.escape("" if x is None else str(x))


def _values(v: dict) -> str:
    parts = []
    for k, val in v.items():
        if isinstance(val, list):
            val = ", ".join(f"{x.get('study_date') or '?'}: {x.get('height_loss_pct')}" if isinstance(x, dict) else str(x)
                            for x in val) or "—"
        parts.append(f"{k} = {'unknown' if val is None else val}")
    return "; ".join(parts)


def _criteria_table(rows: list[dict]) -> str:
    out = ["<table><tr><th>Criterion</th><th>Status</th><th>Values</th><th>Source</th></tr>"]
    for c in rows:
        cls = c["status"].replace(" ", "-")
        out.append(f"<tr><td>{_e(c['title'])} <span class='small'>({_e(c['id'])} v{_e(c['version'])})</span></td>"
                   f"<td class='{cls}'>{_e(c['status'])}</td><td>{_e(_values(c['values']))}</td>"
                   f"<td class='small'>{_e(c['source'])}</td></tr>")
    out.append("</table>")
    return "".join(out)


def candidacy_html(report: dict, overlays: list[tuple[str, str]]) -> str:
    """Render one patient's report. ``overlays`` are (caption, base64 PNG) pairs."""
    r = report
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>Vertebral augmentation candidacy — {_e(r['patient_id'])}</title><style>{_CSS}</style></head><body>",
        f"<h1>Vertebral augmentation candidacy</h1><p class='small'>Patient {_e(r['patient_id'])} · ruleset "
        f"{_e(r['ruleset_version'])} · sagittal</p>",
        f"<div class='disclaimer' id='disclaimer'><strong>Decision support, not a decision.</strong> {_e(r['disclaimer'])}</div>",
        "<h2 id='summary'>Summary</h2>",
        f"<p class='category'><strong>{_e(r['category'])}</strong> — {_e(CATEGORY_TEXT.get(r['category'], ''))}</p>",
        "<h2 id='patient-criteria'>Patient-level criteria</h2>", _criteria_table(r["patient_criteria"]),
        "<h2 id='levels'>Fractured levels</h2>",
    ]
    if not r["levels"]:
        parts.append("<p>No fractured vertebra was found in the analysed images.</p>")
    for lv in r["levels"]:
        parts.append(f"<h3>{_e(lv['level'])}: {_e(lv['category'])}</h3>")
        parts.append(_criteria_table(lv["criteria"]))
    parts.append("<h2 id='factors'>Factors reported with outcomes</h2><table><tr><th>Factor</th><th>Direction</th>"
                 "<th>Status</th><th>Values</th><th>Source</th></tr>")
    for f in r["factors"]:
        direction = {True: "favourable", False: "unfavourable", None: "context"}[f["favourable"]]
        cls = f["status"].replace(" ", "-")
        parts.append(f"<tr><td>{_e(f['title'])}</td><td>{direction}</td><td class='{cls}'>{_e(f['status'])}</td>"
                     f"<td>{_e(_values(f['values']))}</td><td class='small'>{_e(f['source'])}</td></tr>")
    parts.append("</table>")
    b = r["baseline"]
    parts.append("<h2 id='baseline'>Mechanical baseline</h2><table><tr><th>Measure</th><th>Value</th></tr>")
    for k, v in b.items():
        if k == "norms":
            continue
        if isinstance(v, dict):
            v = ", ".join(f"{lv}: {x}" for lv, x in v.items()) or "—"
        parts.append(f"<tr><td>{_e(k)}</td><td>{_e('unknown' if v is None else v)}</td></tr>")
    parts.append(f"</table><p class='small'>{_e(b.get('norms'))}</p>")
    if overlays:
        parts.append("<h2 id='images'>Images</h2>")
        for caption, data in overlays:
            parts.append(f"<figure><img alt='{_e(caption)}' src='data:image/png;base64,{data}'>"
                         f"<figcaption class='small'>{_e(caption)}</figcaption></figure>")
    parts.append("<h2 id='reminders'>In every case</h2><ul>" + "".join(f"<li>{_e(x)}</li>" for x in r["reminders"]) + "</ul>")
    parts.append(f"<h2 id='evidence'>State of the evidence</h2><p>{_e(r['evidence'])}</p>")
    parts.append("</body></html>")
    return "\n".join(parts)
