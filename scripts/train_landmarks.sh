#!/usr/bin/env bash
# The schedule that made models/landmarks.pt, step by step (2 CPU cores, about 2 h 30 min of
# wall time: steps 1+2 ran side by side, then 3+4, then 5, then 6). Every image is a phantom radiograph
# rendered from the seeds named here; scripts/eval_landmarks.py draws from another stream.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
py=.venv/bin/python
out=${1:-models/landmarks.pt}
# 1, 2: both stages from scratch
$py scripts/train_landmarks.py --stage coarse --minutes 55 --n-train 5000 --seed 0 --out "$out" &
$py scripts/train_landmarks.py --stage refine --minutes 55 --n-train 4000 --seed 0 --out "$out"
wait
# 3, 4: more coarse images; refinement crops enriched with fractured bodies
$py scripts/train_landmarks.py --stage coarse --init "$out" --out "$out" --first-seed 5000 --n-train 5000 \
    --lr 5e-4 --minutes 25 --seed 1 &
$py scripts/train_landmarks.py --stage refine --init "$out" --out "$out" --n-train 4000 --also 100000:3000:3 \
    --lr 5e-4 --minutes 25 --seed 1
wait
# 5, 6: refinement, more fractured bodies still
$py scripts/train_landmarks.py --stage refine --init "$out" --out "$out" --n-train 4000 --also 100000:3000:3 \
    --also 200000:3000:6 --lr 3e-4 --minutes 22 --seed 2
$py scripts/train_landmarks.py --stage refine --init "$out" --out "$out" --n-train 4000 --also 100000:3000:3 \
    --also 200000:3000:6 --also 300000:3000:6 --lr 2e-4 --minutes 20 --seed 3 --threads 2
