"""The landmark model's share of ``sagittal analyze`` per whole-spine radiograph, stage by stage,
for several detector configurations side by side in one run (same images, same machine).

The share is what ``benchmarks/analyze.py`` calls coarse + crops + refine + postprocess. Default
configurations: the packaged weights with and without the test-time consistency check, and with
it but without placing unsteady bodies again (``LandmarkDetector.recentre_unsteady``), without
the shrunk second look (``LandmarkDetector.zoom_out_look``), without the look magnified about the
spine (``LandmarkDetector.zoom_in_look``), without the smoothed second read (``smoothed_look``) or
without the facing check (``facing_check``; both read a film again whole, only where they fire); add
``--weights LABEL=PATH`` to compare other weights (e.g. the previous release).

    .venv/bin/python benchmarks/landmarks.py [--n 6] [--pixel-spacing 0.15] [--threads 1] [--weights old=OLD.pt]
    .venv/bin/python benchmarks/landmarks.py --family drr-b --long-film --n 12   # where the magnified look runs
"""

from __future__ import annotations

import argparse
import statistics

import numpy as np

from sagittal.landmarks.infer import LandmarkDetector
from sagittal.phantom import build_spine, render_radiograph, sample_spec
from sagittal.phantom.drr import long_film_field
from sagittal.training.data import FAMILIES, as_view, bone_bright, render_family, sample_family_spec

STAGES = ("coarse", "crops", "refine", "postprocess")


def _images(args: argparse.Namespace) -> list[np.ndarray]:
    """The benchmark's films (``--family``, ``--long-film``, ``--pixel-spacing``), bone bright."""
    images = []
    for k in range(args.n):
        rng = np.random.default_rng([424242, k])
        if args.family == "whole-spine":
            rg = render_radiograph(build_spine(sample_spec(rng)), rng, pixel_spacing_mm=args.pixel_spacing,
                                   field_of_view="whole", modality="DX")
            images.append(bone_bright(rg))
        else:
            spine = build_spine(sample_family_spec(args.family, rng, None))
            style: dict = {"pixel_spacing_mm": float(rng.uniform(0.3, 0.6))}
            if args.long_film:
                style.update(field_mm=long_film_field(spine, np.random.default_rng([424242, k, 7])), field="whole")
            view = as_view(render_family(args.family, spine, rng, **style))
            images.append(view.pixels)
    return images


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=6)
    ap.add_argument("--pixel-spacing", type=float, default=0.15, help="mm at the patient")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--weights", action="append", default=[], metavar="LABEL=PATH")
    ap.add_argument("--family", choices=("whole-spine", *FAMILIES), default="whole-spine",
                    help="the films: whole-spine 2-D phantoms at --pixel-spacing (default), or the evaluation's "
                         "renderer families (scripts/eval_landmarks.py: any field of view, 0.3-0.6 mm), e.g. drr-b, "
                         "where more bodies are placed again")
    ap.add_argument("--long-film", action="store_true",
                    help="with a projection --family: whole-spine films framed 120 mm longer at each end "
                         "(phantom.drr.long_film_field, as eval_landmarks.py --framing long-film), where the "
                         "magnified look runs")
    args = ap.parse_args()
    if args.long_film and args.family not in ("drr-a", "drr-b"):
        ap.error("--long-film needs a projection --family (drr-a, drr-b)")
    images = _images(args)
    # (weights, consistency check, the detector's switches turned off)
    configs: dict[str, tuple[str | None, bool, tuple[str, ...]]] = {
        "packaged, no consistency check": (None, False, ("recentre_unsteady",)),
        "packaged, consistency check": (None, True, ()),
        "packaged, consistency, not placed again": (None, True, ("recentre_unsteady",)),
        "packaged, consistency, no zoom-out look": (None, True, ("zoom_out_look",)),
        "packaged, consistency, no zoom-in look": (None, True, ("zoom_in_look",)),
        "packaged, consistency, no smoothed read": (None, True, ("smoothed_look",)),
        "packaged, consistency, no facing check": (None, True, ("facing_check",))}
    for spec in args.weights:
        label, path = spec.split("=", 1)
        configs[f"{label}, no consistency check"] = (path, False, ("recentre_unsteady",))
        configs[f"{label}, consistency check"] = (path, True, ())
    detectors = {}
    for name, (path, cons, off) in configs.items():
        detectors[name] = LandmarkDetector(path, device="cpu", threads=args.threads, consistency=cons)
        for switch in off:
            setattr(detectors[name], switch, False)
    for d in detectors.values():
        d.detect(images[:1])  # warm-up
    times: dict[str, dict[str, list[float]]] = {name: {s: [] for s in STAGES} for name in detectors}
    placed_again = dict.fromkeys(detectors, 0)  # images on which some body was placed again
    shrunk = dict.fromkeys(detectors, 0)  # images whose bodies were found on the shrunk look
    magnified = dict.fromkeys(detectors, 0)  # images whose bodies were found on the magnified look
    again = dict.fromkeys(detectors, 0)  # images read a second time whole (smoothed, or the other facing)
    for img in images:  # interleaved so that load on the machine hits every configuration alike
        for name, d in detectors.items():
            d.detect([img])
            again[name] += bool(d.last_read_again)
            placed_again[name] += bool(d.last_recentred)
            shrunk[name] += any("shrunk" in w for w in d.last_detections[0].warnings)
            magnified[name] += any("magnified" in w for w in d.last_detections[0].warnings)
            for s in STAGES:
                times[name][s].append(d.last_timings[s] * 1000)
    what = (f"whole-spine radiographs of {images[0].shape[0]} × {images[0].shape[1]} px at {args.pixel_spacing} mm"
            if args.family == "whole-spine" else f"'{args.family}' whole-spine films framed 120 mm longer at each end"
            if args.long_film else f"'{args.family}' radiographs (evaluation renderer, any field)")
    print(f"{args.n} {what}, {args.threads} torch thread(s); median ms per image")
    base = None
    for name, per in times.items():
        med = {s: statistics.median(v) for s, v in per.items()}
        share = sum(med.values())
        mean_share = sum(statistics.fmean(v) for v in per.values())  # a step that runs on few images shows here
        base = base or share
        print(f"{name:40s} " + "  ".join(f"{s} {med[s]:6.1f}" for s in STAGES)
              + f"  model share {share:6.1f} ms ({share / base:.2f}×), mean {mean_share:6.1f} ms"
              + (f"  placed again on {placed_again[name]}/{args.n}" if placed_again[name] else "")
              + (f"  shrunk look kept on {shrunk[name]}/{args.n}" if shrunk[name] else "")
              + (f"  magnified look kept on {magnified[name]}/{args.n}" if magnified[name] else "")
              + (f"  read again whole on {again[name]}/{args.n}" if again[name] else ""))


if __name__ == "__main__":
    main()
