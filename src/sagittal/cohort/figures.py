"""Cohort figures (matplotlib, Agg backend, PNG): nothing but numbers and pseudonym-free
labels is drawn, and the PNG metadata holds only the software's name.

- ``height_loss_trajectories.png`` — height loss over time for every fractured vertebra
  (Genant grade ≥ 1 in any study) seen in two or more dated studies, months since the
  level's first measurement, coloured by treatment.
- ``baseline_distributions.png`` — at each patient's first study: PI, PT, SVA with the adult
  normal range (mean ± SD: PI 52 ± 10°, PT 13 ± 6°, SVA 0 ± 25 mm; docs/clinical.md) shaded,
  and the regional kyphosis of fractured levels with the 11° and 20° thresholds
  (adjacent-fracture risk, outcome of augmentation; docs/clinical.md).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..fsio import atomic_path
from .dictionary import DAYS_PER_MONTH
from .tables import NULL_INT, Coded, CohortTables

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["write_figures"]

#: adult normal ranges, mean and SD (docs/clinical.md)
NORMALS = {"pelvic_incidence_deg": (52.0, 10.0), "pelvic_tilt_deg": (13.0, 6.0), "sagittal_vertical_axis_mm": (0.0, 25.0)}
KYPHOSIS_THRESHOLDS_DEG = (11.0, 20.0)
_COLOURS = {"vertebroplasty": "#d62728", "kyphoplasty": "#9467bd", "conservative": "#1f77b4", "unknown": "#7f7f7f"}
_METADATA = {"Software": "sagittal"}


def _codes(col: object) -> np.ndarray:
    assert isinstance(col, Coded)
    return col.codes


def _arr(col: object) -> np.ndarray:
    assert isinstance(col, np.ndarray)
    return col


def _trajectories(t: CohortTables) -> tuple[list[np.ndarray], list[str]]:
    """Per fractured (patient, level) with ≥ 2 dated measurements: (K, 2) [months, loss %] and its treatment."""
    v = t.vertebrae
    n_levels = 32
    key = _codes(v["pseudonym"]).astype(np.int64) * n_levels + _codes(v["level"])
    day, loss, frac = _arr(v["days_since_first_study"]), _arr(v["height_loss_pct"]), _arr(v["fractured"])
    ok = (day != NULL_INT) & np.isfinite(loss)
    key, day, loss, frac = key[ok], day[ok], loss[ok], frac[ok]
    order = np.lexsort((day, key))
    key, day, loss, frac = key[order], day[order], loss[order], frac[order]
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]]) if len(key) else np.zeros(0, dtype=np.int64)
    sizes = np.diff(np.r_[starts, len(key)])
    fractured = np.add.reduceat((frac == 1).astype(np.int64), starts) > 0 if len(key) else np.zeros(0, dtype=bool)
    keep = (sizes >= 2) & fractured
    # the level's treatment, from the progression table (one value per patient and level)
    p = t.progression
    pkey = _codes(p["pseudonym"]).astype(np.int64) * n_levels + _codes(p["level"])
    pk, first = np.unique(pkey, return_index=True)
    ptreat = _codes(p["treatment"])[first]
    vocab = _coded(p["treatment"]).vocabulary
    gkey = key[starts[keep]]
    pos = np.clip(np.searchsorted(pk, gkey), 0, max(len(pk) - 1, 0))
    found = (pk[pos] == gkey) if len(pk) else np.zeros(len(gkey), dtype=bool)
    codes = np.where(found, ptreat[pos] if len(pk) else -1, -1)
    months = (day - day[np.repeat(starts, sizes)]) / DAYS_PER_MONTH
    xy = np.column_stack([months, loss])
    lines = [xy[s:s + n] for s, n in zip(starts[keep], sizes[keep], strict=True)]
    colours = [vocab[c] if c >= 0 else "unknown" for c in codes.tolist()]
    return lines, colours


def _coded(col: object) -> Coded:
    assert isinstance(col, Coded)
    return col


def _save(fig: Figure, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, metadata=_METADATA)


def _plot_trajectories(t: CohortTables, path: Path) -> int:
    from matplotlib.collections import LineCollection
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    lines, colours = _trajectories(t)
    fig = Figure(figsize=(7, 4.5))
    ax = fig.subplots()
    if lines:
        ax.add_collection(LineCollection(lines, colors=[_COLOURS[c] for c in colours], linewidths=1.2, alpha=0.7))
        pts = np.concatenate(lines)
        ax.scatter(pts[:, 0], pts[:, 1], s=6, c="k", alpha=0.4, zorder=3)
        ax.set_xlim(-0.5, max(1.0, float(pts[:, 0].max()) * 1.05))
        ax.set_ylim(0, max(45.0, float(pts[:, 1].max()) + 5))
        handles = [Line2D([], [], color=_COLOURS[k], label=f"{k} ({colours.count(k)})") for k in _COLOURS if k in colours]
        ax.legend(handles=handles, title="treatment of the level", fontsize=8)
    else:
        ax.text(0.5, 0.5, "no fractured vertebra seen in two dated studies", ha="center", va="center",
                transform=ax.transAxes)
    for y, name in ((20, "grade 1"), (25, "grade 2"), (40, "grade 3")):
        ax.axhline(y, color="0.8", lw=0.8, zorder=0)
        ax.text(0.995, y, name, ha="right", va="bottom", fontsize=7, color="0.5", transform=ax.get_yaxis_transform())
    ax.set_xlabel("months since the level's first measurement")
    ax.set_ylabel("height loss (%)")
    ax.set_title(f"Height loss of fractured vertebrae over time (n = {len(lines)})")
    fig.tight_layout()
    _save(fig, path)
    return len(lines)


def _baseline(t: CohortTables) -> dict[str, np.ndarray]:
    s = t.studies
    first = _arr(s["study_index"]) == 0
    out = {k: _arr(s[k])[first] for k in NORMALS}
    v = t.vertebrae
    vfirst = (_arr(v["study_index"]) == 0) & (_arr(v["fractured"]) == 1)
    out["regional_kyphosis_deg"] = _arr(v["regional_kyphosis_deg"])[vfirst]
    return {k: x[np.isfinite(x)] for k, x in out.items()}


def _plot_baseline(t: CohortTables, path: Path) -> None:
    from matplotlib.figure import Figure

    data = _baseline(t)
    titles = {"pelvic_incidence_deg": ("pelvic incidence (°)", "patients"),
              "pelvic_tilt_deg": ("pelvic tilt (°)", "patients"),
              "sagittal_vertical_axis_mm": ("sagittal vertical axis (mm)", "patients"),
              "regional_kyphosis_deg": ("regional kyphosis at fractured levels (°)", "fractured vertebrae")}
    fig = Figure(figsize=(9, 6.5))
    axes = fig.subplots(2, 2)
    for ax, (key, (label, unit)) in zip(axes.ravel(), titles.items(), strict=True):
        x = data[key]
        if key in NORMALS:
            mean, sd = NORMALS[key]
            ax.axvspan(mean - sd, mean + sd, color="#2ca02c", alpha=0.15, label=f"normal {mean:g} ± {sd:g}")
            ax.axvline(mean, color="#2ca02c", lw=1)
        else:
            for thr, style in zip(KYPHOSIS_THRESHOLDS_DEG, ("--", ":"), strict=True):
                ax.axvline(thr, color="#d62728", ls=style, lw=1.2, label=f"{thr:g}°")
        if len(x):
            ax.hist(x, bins=min(40, max(5, int(np.sqrt(len(x))))), color="0.35", alpha=0.8)
        else:
            ax.text(0.5, 0.5, "none measured", ha="center", va="center", transform=ax.transAxes)
        ax.set_xlabel(label)
        ax.set_ylabel(unit)
        ax.set_title(f"n = {len(x)}", fontsize=9)
        ax.legend(fontsize=7)
    fig.suptitle("Baseline (first study of each patient)")
    fig.tight_layout()
    _save(fig, path)


def write_figures(t: CohortTables, outdir: str | os.PathLike[str]) -> list[Path]:
    """Write the two figures into ``outdir`` (created); return their paths.

    Figures are drawn on ``matplotlib.figure.Figure`` (Agg canvas), never through pyplot, so
    no global backend or GUI is touched.
    """
    out = Path(outdir)
    paths = [out / "height_loss_trajectories.png", out / "baseline_distributions.png"]
    _plot_trajectories(t, paths[0])
    _plot_baseline(t, paths[1])
    return paths

