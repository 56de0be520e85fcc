"""Running the landmark model: batched inference on CPU or CUDA, then post-processing to the
contract's landmarks in source-image pixels. Weights ship inside the package
(``landmarks.weights``), checksum-checked at load; never from the network.
"""

from __future__ import annotations

import os
import time

import numpy as np

from .crops import extract, extract_pair
from .layout import COARSE_HEAT
from .postprocess import (
    S1_THRESHOLD,
    Detections,
    alternate_frames,
    confirm_bridges,
    consistent,
    crop_frames,
    decode,
    label_levels,
    recheck_chain,
    refine,
    to_contract,
    withhold_c7_count_without_ends,
    withhold_faint_s1_at_edge,
    withhold_outside,
)
from .preprocess import INPUT_SHAPE, Letterbox, exposed_box, letterbox, normalise
from .weights import packaged, weights_path

DEFAULT_WEIGHTS = packaged()  # the packaged file; weights_path() resolves --weights / SAGITTAL_WEIGHTS first

__all__ = ["DEFAULT_WEIGHTS", "LandmarkDetector", "facing_from_landmarks", "resolve_device", "weights_path"]


def resolve_device(device: str = "auto") -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        from ..errors import InputError

        raise InputError("--device cuda asked for, but torch sees no CUDA device; use --device cpu or auto")
    return device


#: an image whose coarse stage names fewer levels than this is looked at again (``other_looks``)
FALLBACK_MIN_LEVELS = 3


def _n_levels(det: Detections) -> int:
    return sum(1 for b in det.bodies if b.level)


def _firm_s1(det: Detections) -> bool:
    """Levels anchored on an S1 endplate seen plainly (not taken faintly by the chain)."""
    return det.s1 is not None and det.s1_confidence >= S1_THRESHOLD


def _look_rank(det: Detections) -> tuple[bool, int, bool]:
    """How well a look of an image went: first whether it went well (enough levels, counted from a
    firmly seen S1), then the levels named, then a firm S1."""
    n, firm = _n_levels(det), _firm_s1(det)
    return n >= FALLBACK_MIN_LEVELS and firm, n, firm


def _network_rank(det: Detections) -> tuple[bool, int, bool, float]:
    """``_look_rank``, then the network's own mean confidence in the levels it named (a bridged
    body, placed across a gap and not found, counts 0): which of two coarse networks' looks to
    keep. Two networks that name as many levels differ in how sure each is, and on its own kind
    of film a network is the surer one; their peaks are not calibrated against each other, so
    this is an empirical rule (measured in models/README.md), not a probability."""
    named = [b.confidence for b in det.bodies if b.level]
    return (*_look_rank(det), float(np.mean(named)) if named else 0.0)


def other_looks(normed: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """Other looks of a normalised image for a second try: locally equalised (CLAHE on 8 × 8
    tiles) and inverted (a bone-dark export read as bone-bright)."""
    import cv2

    u8 = np.round(np.clip(normed, 0, 1) * 255).astype(np.uint8)
    clahe = cv2.createCLAHE(clipLimit=2.5, tileGridSize=(8, 8)).apply(u8).astype(np.float32) / 255
    return [("a locally equalised", clahe), ("an inverted", (1.0 - normed).astype(np.float32))]


class LandmarkDetector:
    """``detect(images)`` → per image ``(landmarks, anterior, warnings)``.

    ``images`` are bone-bright 2-D arrays (``io`` output); ``anterior`` is the side the
    patient faces as read from the landmarks themselves (``None`` when nothing was found);
    ``facing`` may give it (the header's word) so that crops are mirrored the right way.
    Two stages: the coarse network over the letterboxed image, then the refinement network
    over full-resolution crops of every structure found, batched.
    """

    def __init__(self, weights: str | os.PathLike[str] | None = None, device: str = "auto", threads: int | None = None,
                 consistency: bool = True):
        import torch

        from .model import load_models

        if threads:
            torch.set_num_threads(threads)
        self.device = resolve_device(device)
        self.weights = weights_path(weights)
        self.models = load_models(self.weights, self.device)
        self.last_timings: dict[str, float] = {}  # seconds per stage of the last ``detect``
        #: refine every body and S1 twice (``postprocess.alternate_frames``) and withhold what is not stable
        self.consistency = consistency
        #: ``postprocess.consistent``'s keyword limits; a model trained on another look (the CT/MR plane model) sets its own
        self.consistency_limits: dict[str, float] = {}
        #: look again (``coarse``) when the levels hang on a faintly seen S1; the CT/MR plane model does not
        self.second_look_on_faint_s1 = True
        #: a faint S1 at the field's bottom edge is no anchor (``postprocess.withhold_faint_s1_at_edge``); radiographs only
        self.faint_s1_at_edge_rule = True
        #: a count from C7 stands only with both ends, C7 and L5, reported (``postprocess.withhold_c7_count_without_ends``)
        self.c7_ends_rule = True

    def _run(self, stage: str, x: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            return self.models[stage](torch.from_numpy(x)[:, None].to(self.device)).float().cpu().numpy()

    def _coarse_maps(self, normed: list[np.ndarray], stage: str = "coarse") -> tuple[list[Detections], list[Letterbox]]:
        prepared = [letterbox(n, INPUT_SHAPE) for n in normed]
        maps = self._run(stage, np.stack([p[0] for p in prepared]))
        heat = list(COARSE_HEAT)
        maps[:, heat] = 1.0 / (1.0 + np.exp(-maps[:, heat]))
        dets = [label_levels(decode(m)).mapped(lb.to_source, 1.0 / lb.scale)
                for m, (_, lb) in zip(maps, prepared, strict=True)]
        return dets, [p[1] for p in prepared]

    def coarse(self, images: list[np.ndarray]) -> tuple[list[Detections], list[Letterbox], list[np.ndarray]]:
        """Coarse detections (labelled, source pixels), letterboxes and normalised images.

        An image on which fewer than ``FALLBACK_MIN_LEVELS`` levels could be named, or whose
        levels hang on a faintly seen S1 endplate, is looked at again as other looks of itself
        (``other_looks``: locally equalised, inverted); the best look (``_look_rank``: one that went
        well, then the most levels, then a firm S1) is kept, with a warning. Images that went well
        cost nothing more. When the weights hold a second coarse network (``coarse2``), each image
        is read by both and the better look kept (``_network_rank``; the first on a tie)."""
        normed = [normalise(img) for img in images]
        dets, boxes, looked = self._coarse_looks(normed, "coarse")
        #: per image of the last call, the coarse network whose look was kept (diagnostics)
        self.last_coarse_stages = ["coarse"] * len(images)
        if "coarse2" in self.models:
            dets2, _, looked2 = self._coarse_looks(normed, "coarse2")
            for i, d in enumerate(dets2):
                if _network_rank(d) > _network_rank(dets[i]):
                    dets[i], looked[i], self.last_coarse_stages[i] = d, looked2[i], "coarse2"
        return dets, boxes, looked

    def _coarse_looks(self, images: list[np.ndarray], stage: str
                      ) -> tuple[list[Detections], list[Letterbox], list[np.ndarray]]:
        """``coarse`` with one network: detections, letterboxes and the look each was found on."""
        normed = list(images)
        dets, boxes = self._coarse_maps(normed, stage)
        weak = [i for i, d in enumerate(dets) if not _look_rank(d)[0]
                and (self.second_look_on_faint_s1 or _n_levels(d) < FALLBACK_MIN_LEVELS)]
        if weak:
            looks = [(i, name, im) for i in weak for name, im in other_looks(normed[i])]
            alt, _ = self._coarse_maps([im for _, _, im in looks], stage)
            for (i, name, im), d in zip(looks, alt, strict=True):
                if _look_rank(d) > _look_rank(dets[i]):
                    why = "too few" if _n_levels(dets[i]) < FALLBACK_MIN_LEVELS else "its S1 endplate only faintly"
                    d.warnings.append(f"the bodies were found on {name} version of the image (the image as "
                                      f"given showed {why})")
                    dets[i], normed[i] = d, im
        return dets, boxes, normed

    def detect(self, images: list[np.ndarray], facing: list[str | None] | None = None,
               batch_size: int = 8) -> list[tuple[dict, str | None, list[str]]]:
        timings = dict.fromkeys(("coarse", "crops", "refine", "postprocess"), 0.0)
        self.last_detections: list[Detections] = []  # per image, in source pixels (diagnostics)
        results = []
        for start in range(0, len(images), batch_size):
            t = time.perf_counter()
            chunk = images[start:start + batch_size]
            dets, _, normed = self.coarse(chunk)
            boxes = [exposed_box(img) for img in chunk]
            given = (facing or [None] * len(images))[start:start + batch_size]
            timings["coarse"] += time.perf_counter() - t
            t = time.perf_counter()
            plans = []
            for det, img, side in zip(dets, normed, given, strict=False):
                seen = facing_from_landmarks(to_contract(det))
                mirror = (side or seen or "right") == "left"
                frames = crop_frames(det, mirror)
                alt = alternate_frames(frames) if self.consistency else []
                plans.append((frames, alt, _crops(img, frames, alt)))
            crops = [c for _, _, cs in plans for c in cs]
            timings["crops"] += time.perf_counter() - t
            t = time.perf_counter()
            logits = self._run("refine", np.stack(crops)) if crops else np.zeros((0,))
            timings["refine"] += time.perf_counter() - t
            t = time.perf_counter()
            k = 0
            for det, (frames, alt, cs), box in zip(dets, plans, boxes, strict=False):
                fine = refine(det, frames, logits[k:k + len(frames)])
                if alt:
                    fine = consistent(fine, refine(det, alt, logits[k + len(frames):k + len(cs)]), **self.consistency_limits)
                k += len(cs)
                fine = withhold_outside(fine, box)
                if self.faint_s1_at_edge_rule:
                    fine = withhold_faint_s1_at_edge(fine, box)
                fine = recheck_chain(confirm_bridges(fine))
                if self.c7_ends_rule:
                    fine = withhold_c7_count_without_ends(fine)
                self.last_detections.append(fine)
                lm = to_contract(fine)
                results.append((lm, facing_from_landmarks(lm), list(fine.warnings)))
            timings["postprocess"] += time.perf_counter() - t
        self.last_timings = timings
        return results


def _crops(img: np.ndarray, frames: list, alt: list) -> list[np.ndarray]:
    """The crops of ``frames`` then of ``alt`` (``alternate_frames(frames)``: one per frame but
    the hips'), each body's two from one low-passed window (``crops.extract_pair``)."""
    if not alt:
        return [extract(img, f) for _, _, f in frames]
    first, second = [], []
    others = iter(alt)
    for kind, _, f in frames:
        if kind == "hips":
            first.append(extract(img, f))
            continue
        a, b = extract_pair(img, f, next(others)[2])
        first.append(a)
        second.append(b)
    return first + second


def facing_from_landmarks(lm: dict) -> str | None:
    """Which image side the bodies' anterior corners lie on, by majority over the vertebrae."""
    votes = []
    for v in lm["vertebrae"].values():
        ant = (v["anterior_superior"][0] + v["anterior_inferior"][0]) / 2
        post = (v["posterior_superior"][0] + v["posterior_inferior"][0]) / 2
        votes.append(1 if ant > post else -1)
    if lm.get("s1_endplate"):
        votes.append(1 if lm["s1_endplate"]["anterior"][0] > lm["s1_endplate"]["posterior"][0] else -1)
    if not votes or abs(sum(votes)) < 0.6 * len(votes):
        return None
    return "right" if sum(votes) > 0 else "left"
