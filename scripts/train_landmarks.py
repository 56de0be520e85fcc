#!/usr/bin/env python3
"""Train one stage of the landmark model on phantom radiographs only (no real images, no downloads).

    .venv/bin/python scripts/train_landmarks.py --stage coarse --minutes 60 --n-train 4000 --out W.pt
    .venv/bin/python scripts/train_landmarks.py --stage refine --minutes 60 --n-train 2500 --out W.pt

A thin wrapper over ``sagittal.training.loop.main`` (``--help`` lists every option; the schedule
that made the shipped weights is ``scripts/train_landmarks.sh``). Training images are seeds of
the stage's own streams in ``sagittal.training.data``; ``scripts/eval_landmarks.py`` renders from
another stream.

Fine-tuning on your own annotated radiographs: build arrays of the same layout as
``make_coarse_dataset`` / ``make_refine_dataset`` (images letterboxed to the coarse grid with
landmarks in model-input pixels; crops from ``landmarks.crops`` with points in crop pixels), save
them with ``np.savez`` and pass them as ``--cache`` with ``--init src/sagittal/weights/landmarks.pt``.
"""

from __future__ import annotations

import sys

from sagittal.training.loop import main

if __name__ == "__main__":
    sys.exit(main())
