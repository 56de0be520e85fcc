#!/usr/bin/env python3
"""Convert per-image corner-keypoint JSON files to sagittal's annotation format.

    .venv/bin/python scripts/convert_corner_json.py labels/ annotations/ --levels L3,L4,L5,S1 \\
        --corners anterior_superior,posterior_superior,anterior_inferior,posterior_inferior [--spacing 0.15]

Each input file is one image's ``{"keypoints": [[[x, y, visibility] × 4] per vertebra], ...}``
(torchvision's Keypoint R-CNN layout, as the Spondylolisthesis Vertebral Landmark Dataset is
distributed); the output, one ``{"image", "landmarks"}`` file per image with the same stem, is
what ``sagittal evaluate|finetune --format sagittal`` reads. The files do not say which level
each vertebra is nor which corner each point is: ``--levels`` (in the files' vertebra order) and
``--corners`` (in each vertebra's point order) must come from the set's documentation
(``training.annotations.read_corner_json`` refuses levels that do not run down the image). The
side the patient faces follows from the named corners. One bad file is reported and skipped;
the exit status is 1 when any was.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("inputs", type=Path, help="a folder of .json files (or one file)")
    ap.add_argument("outdir", type=Path)
    ap.add_argument("--levels", required=True, help="comma-separated, in the files' vertebra order (e.g. L3,L4,L5,S1)")
    ap.add_argument("--corners", required=True, help="comma-separated corner names in each vertebra's point order")
    ap.add_argument("--spacing", type=float, help="pixel spacing in mm, when the set documents it")
    args = ap.parse_args(argv)
    from sagittal.errors import InputError
    from sagittal.training.annotations import read_corner_json, write_sagittal
    from sagittal.training.finetune import facing_of

    files = sorted(args.inputs.glob("*.json")) if args.inputs.is_dir() else [args.inputs]
    args.outdir.mkdir(parents=True, exist_ok=True)
    levels, corners = [s.strip() for s in args.levels.split(",")], [s.strip() for s in args.corners.split(",")]
    bad = 0
    for f in files:
        try:
            ann = read_corner_json(f, levels, corners)
        except InputError as exc:
            print(f"skipped: {exc}", file=sys.stderr)
            bad += 1
            continue
        ann.facing = facing_of(ann)
        if args.spacing:
            ann.spacing_mm = (args.spacing, args.spacing)
        write_sagittal(ann, args.outdir / f"{f.stem}.json")
    print(f"converted {len(files) - bad} of {len(files)} file(s) into {args.outdir}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
