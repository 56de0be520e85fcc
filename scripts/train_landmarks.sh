#!/usr/bin/env bash
# The schedule of the landmark weights, step by step, on the 2-core CPU development machine (one
# torch thread per run, two runs side by side). Steps 1-6 made src/sagittal/weights/landmarks.pt;
# steps 7-8 (issue 11) made a candidate that models/README.md evaluates and did NOT ship (better
# on the projection renderer, worse on the 2-D one and more wrong levels on the held-out family). Every image is a phantom
# radiograph rendered from the seeds named here (sagittal.training.data); scripts/eval_landmarks.py
# draws from other seeds. Rendered parts are cached in /tmp/sagittal-train (--cache-dir).
#
#   scripts/train_landmarks.sh OUT.pt            # steps 1-6 from scratch (about 2 h 30 min of wall time)
#   scripts/train_landmarks.sh OUT.pt 7          # only the candidate steps 7-8, fine-tuning the weights in OUT.pt
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
py=".venv/bin/python"
train="nice -n 10 env OMP_NUM_THREADS=1 $py scripts/train_landmarks.py"
out=${1:?usage: scripts/train_landmarks.sh OUT.pt [FIRST_STEP]}
first=${2:-1}
last=6
[ "$first" -ge 7 ] && last=8
C=/tmp/sagittal-train

if [ "$first" -le 6 ]; then
# 1, 2: both stages from scratch on the 2-D renderer (the first release, 2 h 30 min in all)
$train --stage coarse --minutes 55 --n-train 5000 --seed 0 --out "$out" &
$train --stage refine --minutes 55 --n-train 4000 --seed 0 --out "$out"
wait
# 3, 4: more coarse images; refinement crops enriched with fractured bodies
$train --stage coarse --init "$out" --out "$out" --first-seed 5000 --n-train 5000 --lr 5e-4 --minutes 25 --seed 1 &
$train --stage refine --init "$out" --out "$out" --n-train 4000 --also 100000:3000:3 --lr 5e-4 --minutes 25 --seed 1
wait
# 5, 6: refinement, more fractured bodies still
$train --stage refine --init "$out" --out "$out" --n-train 4000 --also 100000:3000:3 --also 200000:3000:6 \
    --lr 3e-4 --minutes 22 --seed 2
$train --stage refine --init "$out" --out "$out" --n-train 4000 --also 100000:3000:3 --also 200000:3000:6 \
    --also 300000:3000:6 --lr 2e-4 --minutes 20 --seed 3 --threads 2
fi

[ "$last" -lt 7 ] && exit 0
# 7, 8 (issue 11, candidate): fine-tune both stages on a MIX — the 2-D renderer as before, the same with heavy
# degradation (training.data.degrade: 8-bit, tone curves, CLAHE / equalisation, inverted LUT, noise,
# blur, JPEG, field cuts at any level, zoom), and the projection renderer's style family drr-a (half
# of it degraded). The style family drr-b is never trained on: it is the held-out family of
# scripts/eval_landmarks.py. The DRR data are rendered in chunks by --prepare-only runs while the
# two training runs go; --grow adds each chunk as it lands, --mix draws 35 % of every batch from it.
( for k in $(seq 0 11); do
    $train --out "$out" --prepare-only --stage coarse --family drr-a --first-seed $((k * 50)) --n-train 50 --augment 0.5
    $train --out "$out" --prepare-only --stage refine --family drr-a --first-seed $((k * 25)) --n-train 25 \
        --fracture-boost 2 --augment 0.5
  done ) &
( $train --out "$out" --prepare-only --stage refine --first-seed 100000 --n-train 200 --fracture-boost 3
  for k in $(seq 0 7); do
    $train --out "$out" --prepare-only --stage refine --first-seed $((500000 + k * 50)) --n-train 50 \
        --fracture-boost 2 --augment 0.7
  done ) &
$train --stage coarse --init "$out" --out "$out" --first-seed 0 --n-train 3000 --also 2d:20000:3000:0:0.7 \
    --also drr-a:0:50:0:0.5 --grow "$C/coarse_drr-a_*.npz" --mix drr-a=0.35 --lr 5e-4 --warmup 50 --minutes 70 --seed 7 &
$train --stage refine --init "$out" --out "$out" --first-seed 0 --n-train 300 --grow "$C/refine_drr-a_*.npz" \
    --grow "$C/refine_2d_100000-*.npz" --grow "$C/refine_2d_5?????-*.npz" --mix drr-a=0.35 --lr 3e-4 --warmup 50 \
    --minutes 70 --seed 8
wait
