"""Write phantom studies to disk: DICOM files plus a ``truth.json`` that describes them.

Every case draws from its own generator seeded by ``(seed, case)``, so case 7 of seed 3 is
the same whatever ``n`` was, and a rerun writes identical files.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..fsio import atomic_write_text
from .anatomy import Spine, build_spine, sample_spec
from .dicom import StudyInfo, radiograph_dataset, uid_for, volume_datasets, write_dataset
from .drr import render_drr, sample_drr_spec
from .radiograph import render_radiograph
from .truth import TRUTH_SCHEMA, radiograph_truth, spine_truth
from .volume import Volume, reformat_ct, render_ct, render_mr, scoliosis_curve

MODALITIES = ("dx", "cr", "ct", "mr")


def write_json_atomic(path: Path, doc: dict[str, Any]) -> None:
    """Write ``doc`` as indented JSON, atomically (``sagittal.fsio``)."""
    atomic_write_text(path, json.dumps(doc, indent=1, sort_keys=False) + "\n")


def write_radiograph(spine: Spine, outdir: Path, rel: str, info: StudyInfo, key: str, rng: np.random.Generator, *,
                     transfer_syntax: str = "explicit", series_number: int = 1, renderer: str = "2d", **style) -> dict:
    """Render and write one radiograph; return its truth entry (``files`` relative to ``outdir``).

    ``renderer``: ``"2d"`` (``render_radiograph``) or ``"drr"`` (``drr.render_drr``, where
    ``field_of_view`` becomes its ``field``)."""
    if renderer == "drr":
        if "field_of_view" in style:
            style = {**style, "field": style["field_of_view"]}
            del style["field_of_view"]
        rg = render_drr(spine, rng, **style)
    elif renderer == "2d":
        rg = render_radiograph(spine, rng, **style)
    else:
        raise ValueError(f"unknown radiograph renderer {renderer!r}; expected 2d or drr")
    write_dataset(radiograph_dataset(rg, info, key, series_number=series_number), Path(outdir) / rel, transfer_syntax)
    entry = radiograph_truth(spine, rg)
    entry.update(files=[rel], patient_id=info.patient_id, study_instance_uid=info.study_uid,
                 transfer_syntax=transfer_syntax)
    return entry


def _volume_truth(spine: Spine, vol: Volume, files: list[str]) -> dict:
    lm = spine_truth(spine)["landmarks_mm"]

    def lps(p):
        return [round(float(v), 4) for v in vol.sagittal_to_lps(np.asarray(p))]

    verts = {lv: {k: lps(p) for k, p in pts.items()} for lv, pts in lm["vertebrae"].items()}
    return {
        "kind": "volume",
        "modality": vol.modality,
        "sequence": vol.sequence,
        "files": files,
        "image": {
            "slices": int(vol.stored.shape[0]),
            "rows": int(vol.stored.shape[1]),
            "columns": int(vol.stored.shape[2]),
            "pixel_spacing_mm": list(vol.pixel_spacing_mm),
            "slice_spacing_mm": float(np.linalg.norm(vol.positions_lps[1] - vol.positions_lps[0])) if len(files) > 1 else None,
            "spacing_source": "volume",
            "orientation": list(vol.orientation),
            "origin_lps_mm": [float(v) for v in vol.origin_lps],
        },
        "landmarks_lps_mm": {
            "vertebrae": verts,
            "s1_endplate": {k: lps(v) for k, v in lm["s1_endplate"].items()},
            "femoral_heads_sagittal_mm": lm["femoral_heads"],
        },
        "parameters": {k: round(float(v), 6) for k, v in spine.parameters.items()},
        "style": vol.style,
    }


def write_volume(vol: Volume, spine: Spine, outdir: Path, reldir: str, info: StudyInfo, key: str, *,
                 transfer_syntax: str = "explicit", series_number: int = 1, suffix: str = ".dcm",
                 frame_key: str | None = None) -> dict:
    """Write every slice of ``vol`` under ``outdir/reldir``; return its truth entry.

    Series written with the same ``frame_key`` share a FrameOfReferenceUID (an MR study's
    sequences, a CT and its reformat); without one each series has its own."""
    files = []
    for k, ds in enumerate(volume_datasets(vol, info, key, series_number=series_number)):
        if frame_key is not None:
            ds.FrameOfReferenceUID = uid_for(frame_key + info.study_uid, "frame")
        if vol.image_type is not None:
            ds.ImageType = list(vol.image_type)
        if vol.description is not None:
            ds.SeriesDescription = ds.ProtocolName = vol.description
        rel = f"{reldir}/IM{k + 1:04d}{suffix}"
        write_dataset(ds, Path(outdir) / rel, transfer_syntax)
        files.append(rel)
    entry = _volume_truth(spine, vol, files)
    entry.update(patient_id=info.patient_id, study_instance_uid=info.study_uid, transfer_syntax=transfer_syntax)
    if vol.lateral is not None:
        entry["scoliosis_lateral_mm"] = {"y_mm": [round(float(v), 3) for v in vol.lateral.y_mm],
                                         "offset_mm": [round(float(v), 3) for v in vol.lateral.offset_mm]}
    return entry


def generate(outdir: str | os.PathLike, *, n: int = 1, modality: str = "dx", seed: int = 0,
             transfer_syntax: str = "explicit", n_fractures: int | None = None, ct_matrix: int = 256,
             mr_sequences: tuple[str, ...] = ("T1", "T2", "STIR"), scoliosis: float = 0.0, ct_sagittal: bool = False,
             volume_options: dict | None = None, renderer: str = "2d", **style) -> dict:
    """Write ``n`` phantom cases of ``modality`` under ``outdir`` and ``outdir/truth.json``.

    ``style`` passes radiograph options through (``field_of_view``, ``facing``,
    ``calibration``, ``pixel_spacing_mm``, ``photometric``, …). For CT and MR: ``scoliosis``
    is the chance that a case's spine curves sideways (``phantom.volume.scoliosis_curve``);
    ``ct_sagittal`` also writes the axial CT's sagittal reformat as its own series;
    ``volume_options`` go to ``render_ct`` / ``render_mr`` (``pixel_spacing_mm``, ``slice_mm``,
    ``top_level`` — ``"C7"`` for a whole-spine field — ``matrix``, ``n_slices`` …).
    ``renderer="drr"`` renders radiographs by cone-beam projection (``phantom.drr``) of spines
    drawn with degenerative variety (``drr.sample_drr_spec``).
    """
    if modality not in MODALITIES:
        raise ValueError(f"unknown modality {modality!r}; expected one of {', '.join(MODALITIES)}")
    outdir = Path(outdir)
    cases = []
    for case in range(n):
        rng = np.random.default_rng([seed, case])
        drr = renderer == "drr" and modality in ("dx", "cr")
        spine = build_spine((sample_drr_spec if drr else sample_spec)(rng, n_fractures=n_fractures))
        pid = f"PH{seed:04d}{case:04d}"
        key = f"{seed}/{case}/{modality}"
        info = StudyInfo.make(key, pid, study_date=f"2025{1 + case % 12:02d}{1 + case % 28:02d}")
        images = []
        if modality in ("dx", "cr"):
            images.append(write_radiograph(spine, outdir, f"{pid}/{modality.upper()}.dcm", info, key, rng,
                                           transfer_syntax=transfer_syntax, modality=modality.upper(),
                                           renderer=renderer, **style))
        elif modality == "ct":
            opts = dict(volume_options or {})
            if scoliosis and rng.random() < scoliosis:
                opts["scoliosis"] = scoliosis_curve(spine, rng)
            vol = render_ct(spine, rng, **{"matrix": ct_matrix, **opts})
            images.append(write_volume(vol, spine, outdir, f"{pid}/CT", info, key, transfer_syntax=transfer_syntax,
                                       frame_key=key))
            if ct_sagittal:
                images.append(write_volume(reformat_ct(vol), spine, outdir, f"{pid}/CT_SAG", info, f"{key}/sag",
                                           transfer_syntax=transfer_syntax, series_number=2, frame_key=key))
        else:
            opts = dict(volume_options or {})
            if scoliosis and rng.random() < scoliosis:
                opts["scoliosis"] = scoliosis_curve(spine, rng)
            origin = np.array([rng.uniform(-5, 5), rng.uniform(40, 80), rng.uniform(-900, -700)])
            for s, seq in enumerate(mr_sequences):
                vol = render_mr(spine, rng, seq, origin_lps=origin, **opts)
                images.append(write_volume(vol, spine, outdir, f"{pid}/MR_{seq}", info, f"{key}/{seq}",
                                           transfer_syntax=transfer_syntax, series_number=s + 1, frame_key=key))
        cases.append({"case": case, "patient_id": pid, "spine": spine_truth(spine), "images": images})
    doc = {"schema": TRUTH_SCHEMA, "seed": seed, "modality": modality, "cases": cases}
    write_json_atomic(outdir / "truth.json", doc)
    return doc
