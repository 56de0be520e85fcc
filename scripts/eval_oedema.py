#!/usr/bin/env python3
"""Score the MRI oedema and cleft method (``sagittal.findings.oedema``) on phantom studies.

Each study is a phantom spine with 1–3 fractures (oedema laid out as a band, diffusely or in
patches; gas and fluid clefts) and, in 40 % of spines, a Modic type 1 or 2 change across one
disc; its mid-sagittal MR plane is rendered for a random set of sequences (T1 + STIR, T1 +
fat-suppressed T2, T1 + T2 + STIR, or STIR alone) at a random receive gain (0.2–5×, another
scanner's intensity scale). The method is given the *true* landmarks, so the figures are those
of the signal analysis alone; landmark errors come on top. Seeds come from a stream used
nowhere else (the method's constants were set on other seeds).

    .venv/bin/python scripts/eval_oedema.py --n 120 [--ct 30] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from sagittal.findings.oedema import assess_ct_clefts, assess_mr
from sagittal.levels import LEVEL_INDEX
from sagittal.phantom.marrow import ct_plane_case, mr_plane_case, sample_marrow_spine

EVAL_STREAM = 9_100_013
SEQUENCE_SETS = (("T1", "STIR"), ("T1", "T2FS"), ("T1", "T2", "STIR"), ("STIR",))


def _ratio(num: int, den: int) -> float | None:
    return round(num / den, 4) if den else None


def evaluate_mr(n: int, first_seed: int = 0) -> dict[str, object]:
    tp = fn = tn = fp = withheld = 0
    extent_err: list[float] = []
    cleft_extent_err: list[float] = []  # signed, bodies with oedema and a cleft found
    cleft_true = cleft_right = cleft_false = no_cleft = cleft_withheld = true_cleft_withheld = 0
    modic_n = modic_ok = 0
    for k in range(first_seed, first_seed + n):
        rng = np.random.default_rng([EVAL_STREAM, k])
        spine = sample_marrow_spine(rng)
        seqs = SEQUENCE_SETS[int(rng.integers(len(SEQUENCE_SETS)))]
        case = mr_plane_case(spine, rng, seqs, scale=float(np.exp(rng.uniform(np.log(0.2), np.log(5.0)))))
        found = assess_mr(case.planes, case.points_px, case.spacing_mm)
        for lv, truth in case.truth.items():
            body = found.bodies[lv]
            has = spine.oedema_pct[LEVEL_INDEX[lv]] is not None and float(truth["oedema_pct"]) > 0  # type: ignore[arg-type]
            if body.oedema is None:
                withheld += 1
            elif has:
                if body.oedema["present"]:
                    tp += 1
                    err = float(body.oedema["extent_pct"]) - float(truth["oedema_pct"])  # type: ignore[arg-type]
                    extent_err.append(abs(err))
                    if body.cleft is not None and body.cleft["present"]:
                        cleft_extent_err.append(err)
                else:
                    fn += 1
            elif body.oedema["present"]:
                fp += 1
            else:
                tn += 1
            if truth["modic"] and not has and body.oedema is not None:
                modic_n += 1
                modic_ok += not body.oedema["present"]
            if body.cleft is None:
                cleft_withheld += 1
                true_cleft_withheld += truth["cleft"] is not None
                continue
            got = body.cleft["content"] if body.cleft["present"] else None
            if truth["cleft"] is not None:
                cleft_true += 1
                cleft_right += got == truth["cleft"]
            else:
                no_cleft += 1
                cleft_false += got is not None
    return {
        "studies": n,
        "vertebrae_with_oedema": tp + fn,
        "vertebrae_without_oedema": tn + fp,
        "withheld": withheld,
        "oedema_sensitivity": _ratio(tp, tp + fn),
        "oedema_specificity": _ratio(tn, tn + fp),
        "extent_mae_pct_points": round(float(np.mean(extent_err)), 2) if extent_err else None,
        # the extent beside a cleft (docs/oedema.md, limits): bodies with oedema and a cleft found
        "extent_beside_cleft_n": len(cleft_extent_err),
        "extent_beside_cleft_mae_pct_points": round(float(np.mean(np.abs(cleft_extent_err))), 2) if cleft_extent_err else None,
        "extent_beside_cleft_bias_pct_points": round(float(np.mean(cleft_extent_err)), 2) if cleft_extent_err else None,
        "clefts_judged": cleft_true,  # true clefts the method judged (not withheld)
        "cleft_judgements_withheld": cleft_withheld,
        "clefts_withheld": true_cleft_withheld,
        "clefts_right_content": _ratio(cleft_right, cleft_true),
        "false_clefts_per_vertebra": _ratio(cleft_false, no_cleft),
        "modic_neighbours": modic_n,
        "modic_not_called_oedema": _ratio(modic_ok, modic_n),
    }


def evaluate_ct(n: int, first_seed: int = 0) -> dict[str, object]:
    gas_n = gas_found = other_n = false_gas = 0
    for k in range(first_seed, first_seed + n):
        rng = np.random.default_rng([EVAL_STREAM + 1, k])
        spine = sample_marrow_spine(rng, modic_rate=0.0)
        case = ct_plane_case(spine, rng)
        found = assess_ct_clefts(case.planes["CT"], case.points_px, case.spacing_mm)
        for lv, truth in case.truth.items():
            got = found[lv]
            if got is None:
                continue
            if truth["cleft"] == "gas":
                gas_n += 1
                gas_found += bool(got["present"])
            else:
                other_n += 1
                false_gas += bool(got["present"])
    return {"studies": n, "gas_clefts": gas_n, "gas_clefts_found": _ratio(gas_found, gas_n),
            "false_gas_per_vertebra": _ratio(false_gas, other_n)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=120, help="MR studies")
    ap.add_argument("--ct", type=int, default=30, help="CT studies (gas clefts)")
    ap.add_argument("--first-seed", type=int, default=0)
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args(argv)
    t = time.perf_counter()
    out: dict[str, object] = {"mr": evaluate_mr(args.n, args.first_seed), "ct": evaluate_ct(args.ct, args.first_seed)}
    out["seconds"] = round(time.perf_counter() - t, 1)
    text = json.dumps(out, indent=1)
    print(text)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            fh.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
