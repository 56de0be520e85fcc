#!/usr/bin/env python3
"""What decoding at reduced resolution costs the landmark model, measured on DICOM files.

    nice -n 10 .venv/bin/python scripts/eval_reduced_decode.py [--n 40] [--transfer-syntax jpeg2000]
        [--pixel-spacing 0.15] [--max-spacing 0 0.3 0.6 1.2] [--first-seed 2000000] [--json FILE]

Renders ``--n`` whole-spine phantom radiographs (seeds ``first-seed …`` of numpy's
single-integer stream, which the training streams never use) at ``--pixel-spacing`` mm, writes
each as a DICOM file in ``--transfer-syntax``, and runs the analysis path on every file once per
``--max-spacing`` value (0: the full stored resolution): ``io.decode.load_for_analysis`` →
the landmark detector → landmarks mapped back to stored pixels → the analysis document. The same
images for every setting, so the differences are the decode's alone. Reports per setting: decode
time, landmark error (mm), vertebrae found with the right level, parameter mean absolute errors
and Genant agreement against the phantom's truth.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from sagittal.io.decode import load_for_analysis
from sagittal.landmarks.infer import LandmarkDetector
from sagittal.levels import POINT_NAMES
from sagittal.phantom import build_spine, render_radiograph, sample_spec
from sagittal.phantom.dicom import StudyInfo, radiograph_dataset, write_dataset
from sagittal.phantom.truth import radiograph_truth
from sagittal.report.analysis import analysis_document

PARAMS = ("pelvic_incidence_deg", "pelvic_tilt_deg", "sacral_slope_deg", "lumbar_lordosis_deg",
          "thoracic_kyphosis_deg", "sagittal_vertical_axis_mm")


class Tally:
    """Errors of one setting over all images."""

    def __init__(self) -> None:
        self.point_mm: list[float] = []
        self.found = self.total = self.misplaced = 0
        self.param: dict[str, list[float]] = {k: [] for k in PARAMS}
        self.grades: list[tuple[int, int]] = []
        self.decode_s: list[float] = []
        self.factor = 1
        self.method = ""
        self.per_image: list[dict] = []

    def add(self, truth: dict, lm: dict, doc: dict, spacing: np.ndarray) -> None:
        tv = truth["landmarks"]["vertebrae"]
        before = (self.found, self.misplaced)
        for lv, tp in tv.items():
            self.total += 1
            pp = lm["vertebrae"].get(lv)
            if pp is None:
                continue
            tc = np.mean([tp[n] for n in POINT_NAMES[:4]], axis=0)
            pc = np.mean([pp[n] for n in POINT_NAMES[:4]], axis=0)
            if np.linalg.norm((tc - pc) * spacing) > 5.0:
                self.misplaced += 1
                continue
            self.found += 1
            self.point_mm += [float(np.linalg.norm((np.array(pp[n]) - tp[n]) * spacing)) for n in POINT_NAMES]
        for k in PARAMS:
            v, t = doc["parameters"].get(k), truth["parameters"].get(k)
            if v is not None and t is not None:
                self.param[k].append(abs(v - t))
        self.per_image.append({"found": self.found - before[0], "misplaced": self.misplaced - before[1],
                               "in_view": len(tv), "warnings": len(doc["warnings"])})
        by_level = {v["level"]: v for v in truth["vertebrae"] if v["in_view"]}
        for v in doc["vertebrae"]:
            if v["level"] in by_level and v["genant_grade"] is not None:
                self.grades.append((by_level[v["level"]]["genant_grade"], v["genant_grade"]))

    def report(self) -> dict:
        e = np.array(self.point_mm) if self.point_mm else np.array([np.nan])
        g = np.array(self.grades) if self.grades else np.zeros((0, 2), int)
        fx, nm = g[:, 0] > 0, g[:, 0] == 0
        return {
            "factor": self.factor, "method": self.method,
            "decode_ms_median": float(np.median(self.decode_s) * 1000),
            "landmark_error_mm": {"median": float(np.median(e)), "mean": float(np.mean(e)), "p90": float(np.percentile(e, 90))},
            "detection_rate": self.found / max(self.total, 1), "misplaced_or_mislabelled": self.misplaced,
            "parameter_mae": {k: (float(np.mean(v)) if v else None) for k, v in self.param.items()},
            "parameter_n": {k: len(v) for k, v in self.param.items()},
            "genant_exact_fractured": float(np.mean(g[fx, 1] == g[fx, 0])) if fx.any() else None,
            "genant_zero_normal": float(np.mean(g[nm, 1] == 0)) if nm.any() else None,
            "fractured_vertebrae": int(fx.sum()),
            "per_image": self.per_image,
        }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=40)
    ap.add_argument("--first-seed", type=int, default=2_000_000)
    ap.add_argument("--pixel-spacing", type=float, default=0.15)
    ap.add_argument("--transfer-syntax", default="jpeg2000", choices=("explicit", "jpeg2000", "jpegls", "rle"))
    ap.add_argument("--max-spacing", type=float, nargs="+", default=[0.0, 0.3, 0.6, 1.2])
    ap.add_argument("--other-syntaxes", default="full", choices=("full", "lowpass", "block-mean"),
                    help="how syntaxes without resolution levels are brought down (load_for_analysis)")
    ap.add_argument("--weights")
    ap.add_argument("--json")
    args = ap.parse_args()
    det = LandmarkDetector(args.weights, device="cpu", threads=1)
    tallies = {ms: Tally() for ms in args.max_spacing}
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(args.n):
            rng = np.random.default_rng([args.first_seed + k])
            spine = build_spine(sample_spec(rng))
            rg = render_radiograph(spine, rng, pixel_spacing_mm=args.pixel_spacing, field_of_view="whole", modality="DX")
            truth = radiograph_truth(spine, rg)
            path = write_dataset(radiograph_dataset(rg, StudyInfo.make(f"eval/{k}", f"EVAL{k:03d}"), f"eval/{k}/dx"),
                                 Path(tmp) / f"IM{k:04d}", args.transfer_syntax)
            spacing = np.array([rg.spacing_mm[1], rg.spacing_mm[0]])
            for ms, tally in tallies.items():
                t = time.perf_counter()
                fa = load_for_analysis(path, spacing_mm=tuple(rg.spacing_mm), max_spacing_mm=ms,
                                       other_syntaxes=args.other_syntaxes)
                tally.decode_s.append(time.perf_counter() - t)
                tally.factor, tally.method = fa.factor, fa.method
                (lm, facing, _), = det.detect([fa.decoded.pixels[0]])
                lm = fa.landmarks_to_source(lm)
                image = dict(truth["image"], pixel_spacing_mm=list(rg.spacing_mm), spacing_source="supplied",
                             anterior=facing or rg.facing)
                tally.add(truth, lm, analysis_document(image, lm), spacing)
            print(f"image {k + 1}/{args.n} done", flush=True)
    report = {"images": args.n, "first_seed": args.first_seed, "pixel_spacing_mm": args.pixel_spacing,
              "transfer_syntax": args.transfer_syntax, "weights": str(det.weights),
              "by_max_spacing_mm": {str(ms): t.report() for ms, t in tallies.items()}}
    print(json.dumps(report, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
