"""Running the landmark model: batched inference on CPU or CUDA, then post-processing to the
contract's landmarks in source-image pixels. Weights ship inside the package
(``landmarks.weights``), checksum-checked at load; never from the network.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import replace

import numpy as np

from ..levels import LEVELS, MI, MS, POINT_NAMES, UNGRADED
from .crops import extract, extract_pair, vertebra_size
from .layout import COARSE_HEAT
from .postprocess import (
    CONSISTENCY_MAX,
    FROM_C7,
    MIN_POINT_CONFIDENCE,
    S1_THRESHOLD,
    Detections,
    alternate_frames,
    confirm_bridges,
    consistent,
    crop_frames,
    decode,
    keep_crushed_between,
    label_levels,
    recheck_chain,
    recheck_with_placed,
    refine,
    to_contract,
    withhold_c7_count_without_ends,
    withhold_faint_s1_at_edge,
    withhold_heads_off_pelvis,
    withhold_if_off_s1,
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


#: why a body placed again (``LandmarkDetector._recentred``) is reported without heights or grade
PLACED_AGAIN = "its first two placements disagreed and it held only when placed again from re-centred crops"

#: bodies are placed again from re-centred crops (``LandmarkDetector._recentred``) only where those
#: to be placed again (the ones that did not hold and qualify: not bridged, both neighbouring levels
#: held) are fewer than this share of the labelled ones (as measured; counting every body that did
#: not hold would be stricter and was not measured)
RECENTRE_MAX_SHARE = 1 / 3
#: a tightly framed film (a lateral lumbar film collimated to L1–S1 and the hips) is often read
#: badly by the coarse networks, and much better shrunk in their input (its bodies then as large
#: as most training films'): an image whose first look went badly is also looked at shrunk by this
#: factor (``LandmarkDetector.zoom_out_look``; chosen in models/README.md, "Tightly framed films")
ZOOM_OUT = 1.6
#: a film framed longer than the spine (a full-length standing film reaching the skull and the
#: thighs) shows bodies smaller than the coarse networks learnt to find: every image is also looked
#: at magnified, fitting only a window about the spine found on the first look
#: (``spine_window``: ``ZOOM_IN_STEPS`` of its bodies' centre-to-centre steps tall, C7 to S1 and
#: the hips; its bodies at most ``ZOOM_IN_BODY_PX`` tall in the model's input, inside the coarse
#: training films' 6–16 px), where that magnifies it at least ``ZOOM_IN_MIN_GAIN``×; the
#: better look is kept (``LandmarkDetector.zoom_in_look``; measured in models/README.md, "Long films")
ZOOM_IN_STEPS, ZOOM_IN_MIN_GAIN, ZOOM_IN_BODY_PX = 24.0, 1.3, 9.0
#: no magnified look through a window narrower than this (source px): bodies so small are false peaks
ZOOM_IN_MIN_PX = 16
#: a grainy film can make the refinement place every body twice apart: an image whose fine placement
#: kept no more than ``SMOOTH_KEPT_SHARE`` of the levels its coarse stage named is read again smoothed
#: (Gaussian, sigma ``SMOOTH_SIGMA`` × the coarse bodies' median size: 2-3 px on a lumbar film at
#: 0.3 mm) and the levels only that read reports added where the reads agree (``LandmarkDetector.smoothed_look``,
#: ``merge_smoothed``; models/README.md, "Grainy films")
SMOOTH_KEPT_SHARE, SMOOTH_SIGMA = 0.5, 0.03
#: on the smoothed read, levels beyond this many withheld ones in a row are withheld (``smoothed_run``),
#: and every level it adds is ungraded: smoothing softens the endplates a grade is read from
SMOOTH_MAX_GAP = 2
SMOOTHED_UNGRADED = ("its points were placed on the image smoothed (sigma {:.1f} px), which softens the endplates "
                     "a height is read from")
#: a level both reads report must lie within this share of its size of where the first read put it
#: (its centre), else the two reads count differently and the first stands (``merge_smoothed``)
SMOOTH_AGREE = 0.25
#: ... and they must report at least this many levels in common (the smoothed read is never taken whole)
SMOOTH_COMMON_MIN = 2
#: radiographs check the lowest body reported against S1 (``postprocess.withhold_if_off_s1``)
#: only where it is one of these levels, the ones its distance is calibrated for
OFF_S1_LOWEST = ("L5", "L4")


def smoothed_run(landmarks: dict, warnings: list[str], from_top: bool = False) -> list[str]:
    """On the smoothed read (``LandmarkDetector._smoothed``), in place: walking from the anchor (S1,
    below L5; C7 where the count was from the top), the levels reported beyond a gap of
    ``SMOOTH_MAX_GAP`` or more withheld levels — the anchor's own gap to the first body included —
    are withheld with a warning: a body counted across a run of withheld ones is where such a read
    went wrong. Returns the levels withheld."""
    walk = sorted((LEVELS.index(lv) for lv in landmarks["vertebrae"] if lv in LEVELS), reverse=not from_top)
    prev = -1 if from_top else len(LEVELS)  # the anchor's place: above C7, or S1's below L5
    for k, i in enumerate(walk):
        gap = abs(i - prev) - 1
        if gap >= SMOOTH_MAX_GAP:
            beyond = [LEVELS[j] for j in walk[k:]]
            landmarks["vertebrae"] = {lv: v for lv, v in landmarks["vertebrae"].items() if lv not in beyond}
            if landmarks.get(UNGRADED):
                landmarks[UNGRADED] = {lv: v for lv, v in landmarks[UNGRADED].items() if lv not in beyond}
            start = "S1" if prev == len(LEVELS) else "the top" if prev == -1 else LEVELS[prev]
            warnings.append(f"on the smoothed read, {', '.join(beyond)} lie beyond {gap} withheld levels from {start}: "
                            "withheld")
            return beyond
        prev = i
    return []


def _centre_size(v: dict) -> tuple[np.ndarray, float]:
    """A contract vertebra's centre (mean of its four corners) and size (``crops.vertebra_size``)."""
    points = np.array([v[n] for n in POINT_NAMES], float)
    return points[:4].mean(axis=0), float(vertebra_size(points))


def merge_smoothed(first: dict, smoothed: dict, why: str) -> list[str] | None:
    """Into ``first`` (contract landmarks of the image as given), in place, the levels only the smoothed
    read (``smoothed``) reports, each ungraded for ``why``, where the two reads agree: at least
    ``SMOOTH_COMMON_MIN`` levels in common, each within ``SMOOTH_AGREE`` of its size of the first read's
    place, and no added body on a body the first read reports. The first read's bodies, grades, S1
    endplate and femoral heads stand; the smoothed read is never taken whole (taken whole where the
    first read reported nothing, it gave a long film 9 wrong levels: models/README.md, "Grainy
    films"). Returns the levels added, or ``None`` where the reads do not agree (``first`` unchanged)."""
    mine, theirs = first["vertebrae"], smoothed["vertebrae"]
    placed = {lv: _centre_size(v) for lv, v in mine.items()}
    if len(set(mine) & set(theirs)) < SMOOTH_COMMON_MIN:
        return None
    for lv in set(mine) & set(theirs):
        c, size = placed[lv]
        if float(np.linalg.norm(_centre_size(theirs[lv])[0] - c)) > SMOOTH_AGREE * size:
            return None
    added = [lv for lv in theirs if lv not in mine]
    for lv in added:
        c = _centre_size(theirs[lv])[0]
        if any(float(np.linalg.norm(c - pc)) <= 0.5 * size for pc, size in placed.values()):
            return None
    if not added:
        return []
    verts = {**mine, **{lv: theirs[lv] for lv in added}}
    first["vertebrae"] = {lv: verts[lv] for lv in LEVELS if lv in verts}
    # a reason the smoothed read itself gave (e.g. a collapsed look) is kept beside the smoothing's
    own = smoothed.get(UNGRADED) or {}
    first[UNGRADED] = {**(first.get(UNGRADED) or {}),
                       **{lv: f"{own[lv]}; {why}" if own.get(lv) else why for lv in added}}
    first[UNGRADED] = {lv: first[UNGRADED][lv] for lv in LEVELS if lv in first[UNGRADED]}
    return sorted(added, key=LEVELS.index)


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


def _network_rank(det: Detections, as_given: bool = True) -> tuple[bool, int, bool, bool, float]:
    """``_look_rank``, then whether the look is of the image as given (not another look of it,
    ``other_looks`` or shrunk: their peaks are not comparable with a plain look's), then the
    network's own mean confidence in the levels it named (a bridged body, placed across a gap and
    not found, counts 0): which of two coarse networks' looks to keep. Two networks that name as
    many levels differ in how sure each is, and on its own kind of film a network is the surer
    one; their peaks are not calibrated against each other, so this is an empirical rule
    (measured in models/README.md), not a probability."""
    named = [b.confidence for b in det.bodies if b.level]
    return (*_look_rank(det), as_given, float(np.mean(named)) if named else 0.0)


def spine_window(det: Detections, shape: tuple[int, int], steps: float = ZOOM_IN_STEPS,
                 min_gain: float = ZOOM_IN_MIN_GAIN, body_px: float = ZOOM_IN_BODY_PX
                 ) -> tuple[int, int, int, int] | None:
    """``(x0, y0, x1, y1)`` pixels (end exclusive) of a window about the spine of ``det`` (a
    look in source pixels of an image ``shape`` (rows, cols)) with ``INPUT_SHAPE``'s aspect:
    ``steps`` times the bodies' median centre-to-centre step tall, taller (or wider) where what
    the look found needs it (with a step's margin) or where fitting it would make the bodies'
    median height more than ``body_px`` input pixels; its bottom one step below the lowest of the bodies,
    the S1 endplate and the femoral heads where S1 or a head was found, else centred on the
    bodies. ``None`` with fewer than three bodies, a window under ``ZOOM_IN_MIN_PX`` either way,
    or where fitting the window magnifies the image less than ``min_gain``× over fitting all of it."""
    if len(det.bodies) < 3:
        return None
    c = np.array(sorted((b.centre for b in det.bodies), key=lambda xy: float(xy[1])), float)
    step = float(np.median(np.linalg.norm(np.diff(c, axis=0), axis=1)))
    height = float(np.median([np.linalg.norm(b.points[MS] - b.points[MI]) for b in det.bodies]))
    if not (step > 0 and height > 0):
        return None
    rows, cols = shape
    xs, low = list(c[:, 0]), []
    if det.s1 is not None:
        xs += list(det.s1[:, 0])
        low += list(det.s1[:, 1])
    for centre, radius, _ in det.heads:
        xs.append(float(centre[0]))
        low.append(float(centre[1] + radius))
    fit = min(INPUT_SHAPE[0] / rows, INPUT_SHAPE[1] / cols)  # input px per source px, the whole image fitted
    aspect = INPUT_SHAPE[1] / INPUT_SHAPE[0]  # cols per row of the model's input
    top, bottom = float(c[0, 1]) - step, max([float(c[-1, 1]), *low]) + step  # all it found, a step's margin
    most = body_px / height  # input px per source px that make the bodies body_px tall
    h = min(max(steps * step, bottom - top, (max(xs) - min(xs) + 2 * step) / aspect, INPUT_SHAPE[0] / most), rows)
    w = min(max(h * aspect, INPUT_SHAPE[1] / most), cols)
    if min(h, w) < ZOOM_IN_MIN_PX or min(INPUT_SHAPE[0] / h, INPUT_SHAPE[1] / w) / fit < min_gain:
        return None  # a few pixels found as bodies (false peaks) are no spine to magnify
    if not low:  # nothing below the bodies to hang the window on: centred on them
        bottom = (top + bottom + h) / 2
    y0 = float(np.clip(bottom - h, 0.0, rows - h))
    x0 = float(np.clip((min(xs) + max(xs)) / 2 - w / 2, 0.0, cols - w))
    return int(round(x0)), int(round(y0)), int(round(x0 + w)), int(round(y0 + h))


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
        self.last_detections: list[Detections] = []  # per image, in source pixels (diagnostics)
        #: per image, the coarse stage's labelled detections (diagnostics; ``_smoothed``)
        self.last_coarse: list[Detections] = []
        #: images of the last ``detect`` read a second time whole (``_read_again``: smoothed, or facing the
        #: other way) (diagnostics)
        self.last_read_again = 0
        #: per image placed again (``_recentred``): (bodies placed again, labelled bodies) (diagnostics)
        self.last_recentred: dict[int, tuple[int, int]] = {}
        #: refine every body and S1 twice (``postprocess.alternate_frames``) and withhold what is not stable
        self.consistency = consistency
        #: ``postprocess.consistent``'s keyword limits; a model trained on another look (the CT/MR plane model) sets its own
        self.consistency_limits: dict[str, float] = {}
        #: look again (``coarse``) when the levels hang on a faintly seen S1; the CT/MR plane model does not
        self.second_look_on_faint_s1 = True
        #: a faint S1 at the field's bottom edge is no anchor (``postprocess.withhold_faint_s1_at_edge``); radiographs only
        self.faint_s1_at_edge_rule = True
        #: place a body once more from a crop centred on its own placements where the two did not agree (``_recentred``)
        self.recentre_unsteady = True
        #: femoral heads not caudal to the S1 endplate, or far from it, are not used
        #: (``postprocess.withhold_heads_off_pelvis``); radiographs (the CT/MR head search checks its own)
        self.hips_place_rule = True
        #: a count from C7 stands only with both ends, C7 and L5, reported (``postprocess.withhold_c7_count_without_ends``)
        self.c7_ends_rule = True
        #: look again at an image whose first look went badly shrunk by ``ZOOM_OUT`` (``_coarse_looks``); radiographs only
        self.zoom_out_look = True
        #: look again at every image magnified about the spine found (``spine_window``); radiographs only
        self.zoom_in_look = True
        #: every level withheld where the lowest body reported stands off the S1 endplate for its level
        #: (``postprocess.withhold_if_off_s1``, a lone body kept); radiographs (``PlaneDetector`` runs its own)
        self.off_s1_rule = True
        #: the chain's steps checked again with bodies withheld for their points where they were placed
        #: (``postprocess.recheck_with_placed``); radiographs only
        self.placed_step_rule = True
        #: a body withheld only for looking collapsed with its placements 4-10 % apart is reported,
        #: ungraded, where its reported neighbours vouch for its level (``postprocess.keep_crushed_between``
        #: with the limits of any body's); radiographs (``PlaneDetector`` runs its own, with its limits)
        self.crushed_between_rule = True
        #: read again with the other facing an image whose S1 endplate read upside down, the more confidently
        #: placed read kept (``_checked_facing``); radiographs only
        self.facing_check = True
        #: read again smoothed an image whose fine placement lost most of its levels and add the levels
        #: only that read reports, ungraded, where the two reads agree (``_smoothed``; models/README.md,
        #: "Grainy films"); radiographs only
        self.smoothed_look = True

    def field_box(self, image: np.ndarray) -> tuple[float, float, float, float]:
        """``(x0, y0, x1, y1)`` pixels of the field a body must lie wholly inside to be reported: on a
        radiograph the exposed field (``preprocess.exposed_box``: collimation and padding are flat)."""
        return exposed_box(image)

    def _run(self, stage: str, x: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            return self.models[stage](torch.from_numpy(x)[:, None].to(self.device)).float().cpu().numpy()

    def _coarse_maps(self, normed: list[np.ndarray], stage: str = "coarse", zoom_out: list[float] | None = None,
                     windows: list[tuple[int, int, int, int] | None] | None = None
                     ) -> tuple[list[Detections], list[Letterbox]]:
        zooms = zoom_out or [1.0] * len(normed)
        parts = windows or [None] * len(normed)
        prepared = [letterbox(n, INPUT_SHAPE, z, w) for n, z, w in zip(normed, zooms, parts, strict=True)]
        maps = self._run(stage, np.stack([p[0] for p in prepared]))
        heat = list(COARSE_HEAT)
        maps[:, heat] = 1.0 / (1.0 + np.exp(-maps[:, heat]))
        dets = [label_levels(decode(m)).mapped(lb.to_source, 1.0 / lb.scale)
                for m, (_, lb) in zip(maps, prepared, strict=True)]
        return dets, [p[1] for p in prepared]

    def coarse(self, images: list[np.ndarray], looks: bool = True
               ) -> tuple[list[Detections], list[Letterbox], list[np.ndarray]]:
        """Coarse detections (labelled, source pixels), letterboxes and normalised images.

        An image on which fewer than ``FALLBACK_MIN_LEVELS`` levels could be named, or whose
        levels hang on a faintly seen S1 endplate, is looked at again as other looks of itself
        (``other_looks``: locally equalised, inverted); the best look (``_look_rank``: one that went
        well, then the most levels, then a firm S1) is kept, with a warning. Images that went well
        are not looked at so again. Every image is also looked at magnified about the spine its first look
        found, where that magnifies it enough (``_zoomed_in``: a film framed longer than the spine),
        the better look kept. ``looks=False`` reads every image as given only (the MR centre line's
        slices: ``landmarks.volume._coarse_slices``). When the weights hold a second coarse network
        (``coarse2``), each image is read by both and the better look kept (``_network_rank``; the
        first on a tie)."""
        normed = [normalise(img) for img in images]
        dets, boxes, looked, given = self._coarse_looks(normed, "coarse", looks)
        #: per image of the last call, the coarse network whose look was kept (diagnostics)
        self.last_coarse_stages = ["coarse"] * len(images)
        if "coarse2" in self.models:
            dets2, boxes2, looked2, given2 = self._coarse_looks(normed, "coarse2", looks)
            for i, d in enumerate(dets2):
                if _network_rank(d, given2[i]) > _network_rank(dets[i], given[i]):
                    dets[i], boxes[i], looked[i], self.last_coarse_stages[i] = d, boxes2[i], looked2[i], "coarse2"
        return dets, boxes, looked

    def _coarse_looks(self, images: list[np.ndarray], stage: str, other: bool = True
                      ) -> tuple[list[Detections], list[Letterbox], list[np.ndarray], list[bool]]:
        """``coarse`` with one network: detections, letterboxes, the look each was found on and
        whether that is the image as given (every image as given where ``other`` looks are off)."""
        normed = list(images)
        dets, boxes = self._coarse_maps(normed, stage)
        given = [True] * len(dets)
        # of the image as given, before any other look replaces it
        why = ["too few" if _n_levels(d) < FALLBACK_MIN_LEVELS else "its S1 endplate only faintly" for d in dets]
        if other and self.zoom_in_look:
            self._zoomed_in(dets, boxes, given, normed, stage)
        weak = [i for i, d in enumerate(dets) if other and not _look_rank(d)[0]
                and (self.second_look_on_faint_s1 or _n_levels(d) < FALLBACK_MIN_LEVELS)]
        if weak:
            looks = [(i, f"{name} version of the image", im, 1.0) for i in weak for name, im in other_looks(normed[i])]
            if self.zoom_out_look:
                looks += [(i, f"the image shrunk {ZOOM_OUT:g}× in the model's input", normed[i], ZOOM_OUT) for i in weak]
            alt, alt_boxes = self._coarse_maps([im for *_, im, _ in looks], stage, [z for *_, z in looks])
            for (i, name, im, _), d, box in zip(looks, alt, alt_boxes, strict=True):
                if _look_rank(d) > _look_rank(dets[i]):
                    d.warnings.append(f"the bodies were found on {name} (the image as given showed {why[i]})")
                    dets[i], normed[i], boxes[i], given[i] = d, im, box, False
        return dets, boxes, normed, given

    def _zoomed_in(self, dets: list[Detections], boxes: list[Letterbox], given: list[bool],
                   normed: list[np.ndarray], stage: str) -> None:
        """Each image looked at again magnified about the spine its look found (``spine_window``),
        the better look kept (``_look_rank``), in place."""
        wins = [(i, w) for i, d in enumerate(dets) if (w := spine_window(d, normed[i].shape[:2])) is not None]
        if not wins:
            return
        alt, alt_boxes = self._coarse_maps([normed[i] for i, _ in wins], stage, None, [w for _, w in wins])
        for (i, _), d, box in zip(wins, alt, alt_boxes, strict=True):
            if _look_rank(d) > _look_rank(dets[i]):
                d.warnings.append(f"the bodies were found on a look magnified {box.scale / boxes[i].scale:.2g}× about "
                                  "the spine (the film is framed longer than the spine)")
                dets[i], boxes[i], given[i] = d, box, False

    def detect(self, images: list[np.ndarray], facing: list[str | None] | None = None,
               batch_size: int = 8) -> list[tuple[dict, str | None, list[str]]]:
        self.last_read_again = 0
        results = self._detect(images, facing, batch_size)
        if self.facing_check:
            facing = self._checked_facing(images, facing, results, batch_size)
        if self.smoothed_look:
            self._smoothed(images, facing, results, batch_size)
        return results

    def _read_again(self, images: list[np.ndarray], facing: list[str | None], batch_size: int,
                    boxes: list[tuple[float, float, float, float]] | None = None) -> tuple[list, tuple]:
        """``_detect`` over ``images`` (a second read of some of the last call's), the diagnostics left
        the first read's, with the stages' timings the sums of both: the results and the second read's
        diagnostics (``last_detections``, ``last_recentred``, ``last_timings``, ``last_coarse``,
        ``last_coarse_stages``)."""
        self.last_read_again += len(images)
        first = (self.last_detections, self.last_recentred, self.last_timings, self.last_coarse,
                 list(getattr(self, "last_coarse_stages", [])))
        again = self._detect(images, facing, batch_size, boxes=boxes)
        second = (self.last_detections, self.last_recentred, self.last_timings, self.last_coarse,
                  list(getattr(self, "last_coarse_stages", [])))
        self.last_detections, self.last_recentred, self.last_timings, self.last_coarse, self.last_coarse_stages = first
        self.last_timings = {k: v + second[2].get(k, 0.0) for k, v in self.last_timings.items()}
        return again, second

    def _checked_facing(self, images: list[np.ndarray], facing: list[str | None] | None,
                        results: list[tuple[dict, str | None, list[str]]], batch_size: int) -> list[str | None]:
        """Each image whose facing was read from its own landmarks (not given) and whose S1 endplate then
        reads with its anterior corner cranial to its posterior one (a negative sacral slope, which no
        phantom spine has, 15-60°, and an adult's hardly) is read again with the crops mirrored the other
        way; the read whose reported bodies the refinement placed more confidently (mean of each body's
        least confident point) is kept, with a warning where that is the other facing: a coarse stage that
        took the facing the wrong way round mirrors every point, and every angle with them (drr-b
        8,200,022: PI -83°). ``results`` and the diagnostics in place; returns the facing per image for
        later reads."""
        given = list(facing or [None] * len(images))
        todo = [i for i, (lm, side, _) in enumerate(results)
                if given[i] is None and side in ("left", "right") and lm.get("s1_endplate")
                and lm["s1_endplate"]["anterior"][1] < lm["s1_endplate"]["posterior"][1]]
        if not todo:
            return given
        other = ["left" if results[i][1] == "right" else "right" for i in todo]
        again, second = self._read_again([images[i] for i in todo], list(other), batch_size)
        for j, i in enumerate(todo):
            if _placed_confidence(second[0][j]) <= _placed_confidence(self.last_detections[i]):
                results[i][2].append("the S1 endplate reads with its anterior corner above its posterior one (a "
                                     f"negative sacral slope); read facing {other[j]}, the points were placed less "
                                     "confidently, so the first read stands: check the film's orientation")
                continue
            lm, side, warnings = again[j]
            warnings = [*warnings, f"the patient's facing read from the first look ({results[i][1]}) put the S1 "
                        f"endplate's anterior corner above its posterior one; read facing {other[j]}, the points "
                        "were placed more confidently, and that read is kept"]
            results[i] = (lm, side, warnings)
            given[i] = other[j]
            self.last_detections[i], self.last_coarse[i] = second[0][j], second[3][j]
            if i < len(self.last_coarse_stages) and j < len(second[4]):
                self.last_coarse_stages[i] = second[4][j]
            self.last_recentred.pop(i, None)
            if j in second[1]:
                self.last_recentred[i] = second[1][j]
        return given

    def _smoothed(self, images: list[np.ndarray], facing: list[str | None] | None,
                  results: list[tuple[dict, str | None, list[str]]], batch_size: int) -> None:
        """Each image whose fine placement kept no more than ``SMOOTH_KEPT_SHARE`` of the levels its
        coarse stage named (at least ``FALLBACK_MIN_LEVELS``) is read again whole, smoothed (Gaussian,
        sigma ``SMOOTH_SIGMA`` × its coarse bodies' median size), its field still the image's own; the
        levels only that read reports (``smoothed_run``) are added, ungraded, where the two reads agree
        (``merge_smoothed``), with a warning (``results`` in place; the diagnostics stay the first
        read's; the stages' timings are the sums of both reads). Grainy films: the
        refinement places every body twice apart on them, and steadily once the grain is smoothed away."""
        import cv2

        todo = []
        for i, ((lm, _, _), coarse) in enumerate(zip(results, self.last_coarse, strict=True)):
            named = [b for b in coarse.bodies if b.level]
            if len(named) >= FALLBACK_MIN_LEVELS and len(lm["vertebrae"]) <= SMOOTH_KEPT_SHARE * len(named):
                todo.append((i, len(named), SMOOTH_SIGMA * float(np.median([vertebra_size(b.points) for b in named]))))
        if not todo:
            return
        smoothed = [cv2.GaussianBlur(np.asarray(images[i], np.float32), (0, 0), sigma) for i, _, sigma in todo]
        # the first read's facing: the smoothed read's crops mirrored the same way (its levels are merged by centre)
        again, _ = self._read_again(smoothed, [(facing[i] if facing else None) or results[i][1] for i, _, _ in todo],
                                    batch_size, boxes=[self.field_box(images[i]) for i, _, _ in todo])
        for (i, n_named, sigma), (lm, _, warnings) in zip(todo, again, strict=True):
            first_lm, side, first_warnings = results[i]
            kept = len(first_lm["vertebrae"])
            warnings = list(warnings)
            smoothed_run(lm, warnings, from_top=FROM_C7 in warnings)
            why = SMOOTHED_UNGRADED.format(sigma)
            added = merge_smoothed(first_lm, lm, why)
            if not added:
                continue
            note = (f"the image was read again smoothed (Gaussian, sigma {sigma:.1f} px): as given, the fine placement "
                    f"held {kept} of the {n_named} levels found; {', '.join(added)} added from that read ({why})")
            # the first read's word on a level now added, or on the levels beyond a break it found (which may
            # name only the level before it), describes the image as given; the smoothed read's word on an
            # added level, the smoothed image (a level withheld on the one is reported from the other)
            names = re.compile(r"\b(" + "|".join(added) + r")\b")
            base = [f"on the image as given: {w}" if names.search(w) or ("beyond" in w and "withheld" in w) else w
                    for w in first_warnings]
            extra = [f"on the smoothed image: {w}" for w in warnings if w.startswith(tuple(f"{lv}:" for lv in added))]
            results[i] = (first_lm, side, [*base, note, *extra])

    def _detect(self, images: list[np.ndarray], facing: list[str | None] | None = None, batch_size: int = 8,
                boxes: list[tuple[float, float, float, float]] | None = None) -> list[tuple[dict, str | None, list[str]]]:
        """``detect`` without the smoothed look; ``boxes``: the images' fields (``field_box``) where
        they are not to be found from these images."""
        timings = dict.fromkeys(("coarse", "crops", "refine", "postprocess"), 0.0)
        self.last_detections, self.last_coarse, self.last_recentred = [], [], {}
        stages: list[str] = []  # ``coarse`` sets ``last_coarse_stages`` per chunk: all chunks' here
        results = []
        for start in range(0, len(images), batch_size):
            t = time.perf_counter()
            chunk = images[start:start + batch_size]
            dets, _, normed = self.coarse(chunk)
            self.last_coarse += dets
            stages += self.last_coarse_stages
            fields = boxes[start:start + batch_size] if boxes is not None else [self.field_box(img) for img in chunk]
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
            firsts, k = [], 0
            for det, (frames, alt, cs) in zip(dets, plans, strict=False):
                firsts.append((refine(det, frames, logits[k:k + len(frames)]),
                               refine(det, alt, logits[k + len(frames):k + len(cs)]) if alt else None,
                               logits[k:k + len(cs)]))
                k += len(cs)
            again = self._recentred(dets, plans, firsts, normed, start) if self.consistency and self.recentre_unsteady else {}
            timings["refine"] += time.perf_counter() - t
            t = time.perf_counter()
            for i, box in enumerate(fields):
                fine, second, placed = again.get(i, (*firsts[i][:2], frozenset()))
                if second is not None:
                    fine = consistent(fine, second, **self.consistency_limits)
                fine, lm, warnings = self._rules(fine, box, placed)
                self.last_detections.append(fine)
                results.append((lm, facing_from_landmarks(lm), warnings))
            timings["postprocess"] += time.perf_counter() - t
        self.last_timings, self.last_coarse_stages = timings, stages
        return results

    def _rules(self, fine: Detections, box: tuple[float, float, float, float], placed: frozenset[int]
               ) -> tuple[Detections, dict, list[str]]:
        """The withholding rules after the consistency check, on one image's detections ``fine``
        (exposed field ``box``; ``placed``: the bodies placed again from re-centred crops): the
        detections as they stand, the contract's landmarks and the warnings."""
        fine = withhold_outside(fine, box)
        if self.faint_s1_at_edge_rule:
            fine = withhold_faint_s1_at_edge(fine, box)
        fine = recheck_chain(confirm_bridges(fine))
        if self.placed_step_rule:
            fine = recheck_with_placed(fine)
        if self.c7_ends_rule:
            fine = withhold_c7_count_without_ends(fine)
        lm = to_contract(fine)
        warnings = list(fine.warnings)
        if self.off_s1_rule:
            withhold_if_off_s1(lm, warnings, lone=False, lowest=OFF_S1_LOWEST)
        if self.hips_place_rule:
            withhold_heads_off_pelvis(lm, warnings)
        again_kept = sorted((b.level for n, b in enumerate(fine.bodies)
                             if n in placed and b.level in lm["vertebrae"]), key=LEVELS.index)
        if again_kept:
            lm[UNGRADED] = dict.fromkeys(again_kept, PLACED_AGAIN)
            warnings += [f"{lv}: {PLACED_AGAIN}: its level and points are reported, its heights and grade "
                         "are not" for lv in again_kept]
        if self.crushed_between_rule:
            limits = self.consistency_limits
            keep_crushed_between(lm, warnings, fine, limit=float(limits.get("max_spread", CONSISTENCY_MAX)),
                                 min_confidence=float(limits.get("min_point_confidence", MIN_POINT_CONFIDENCE)),
                                 box=box)
            if not lm.get(UNGRADED):
                lm.pop(UNGRADED, None)  # the key only where a level is ungraded
        return fine, lm, warnings

    def _recentred(self, dets: list[Detections], plans: list, firsts: list, images: list[np.ndarray],
                   start: int = 0) -> dict:
        """Per image whose bodies' two placements (``firsts``: the refinement over ``crop_frames``
        and over ``alternate_frames``) did not pass ``consistent``, both placements again with
        those bodies' crops centred and sized on where the placements put them (a coarse centre
        between two bodies, or on a rib, leaves the body off-centre in its crop, and the two
        crops then see different structures). The other bodies keep their first placements; the
        stray check stays against the coarse body; ``consistent`` judges the new pair as any, and
        a body that holds now is reported ungraded (``levels.UNGRADED``, ``PLACED_AGAIN``): its
        level and points, not its heights or grade, since its first placements did not agree.
        Only a body found by the coarse stage (not bridged across a gap) whose neighbouring levels
        above and below both held (``_held_between``), and only where such bodies are fewer than
        ``RECENTRE_MAX_SHARE`` of the labelled ones: a chain's end or a guessed body keeps its
        withheld state (measured in models/README.md). One more refinement call for the batch,
        over the re-centred bodies' crops only (``firsts``' third item, each image's first maps,
        gives every other placement again)."""
        todo: list[tuple[int, list]] = []
        redos: dict[int, frozenset[int]] = {}
        for i, (det, (frames, _, _), (a, b, _)) in enumerate(zip(dets, plans, firsts, strict=False)):
            if b is None:
                continue
            merged = consistent(a, b, **self.consistency_limits)
            redo = {n for n, (c, m) in enumerate(zip(det.bodies, merged.bodies, strict=True)) if c.level and not m.level}
            placed = {n: [x.bodies[n].points for x in (a, b) if x.bodies[n].level] for n in redo}
            redo = {n for n in redo if placed[n] and not det.bodies[n].bridged and _held_between(det, merged, n)}
            labelled = sum(1 for c in det.bodies if c.level)
            if not redo or len(redo) >= RECENTRE_MAX_SHARE * labelled:
                continue
            self.last_recentred[start + i] = (len(redo), labelled)
            moved = Detections([replace(c, points=np.mean(placed[n], axis=0)) if n in redo else c
                                for n, c in enumerate(det.bodies)], det.s1, det.s1_confidence, det.heads)
            mirror = frames[0][2].mirror if frames else False
            todo.append((i, [(kind, n, f) for kind, n, f in crop_frames(moved, mirror) if kind == "vertebra" and n in redo]))
            redos[i] = frozenset(redo)
        if not todo:
            return {}
        # only the re-centred bodies' crops go through the network again; every other placement is
        # decoded once more from its first maps, so each image's two placements come from one list
        crops = [c for i, new in todo for c in _crops(images[i], new, alternate_frames(new))]
        logits = self._run("refine", np.stack(crops))
        out, k = {}, 0
        for i, new in todo:
            frames, alt, _ = plans[i]
            first, again = firsts[i][2], logits[k:k + 2 * len(new)]
            k += 2 * len(new)
            # each look's frames in their first order, a re-centred body's frame and maps in its place
            slot = {n: j for j, (_, n, _) in enumerate(new)}
            looks = []
            for look, offset, new_look, new_maps in ((frames, 0, new, again[:len(new)]),
                                                     (alt, len(frames), alternate_frames(new), again[len(new):])):
                picked, maps = [], []
                for j, item in enumerate(look):
                    kind, n, _ = item
                    if kind == "vertebra" and n in slot:
                        picked.append(new_look[slot[n]])
                        maps.append(new_maps[slot[n]])
                    else:
                        picked.append(item)
                        maps.append(first[offset + j])
                looks.append(refine(dets[i], picked, np.stack(maps)))
            out[i] = (looks[0], looks[1], redos[i])
        return out


def _placed_confidence(det: Detections) -> float:
    """Mean over the labelled bodies of each one's least confident refined point (0 where none)."""
    conf = [b.point_confidence for b in det.bodies if b.level]
    return float(np.mean(conf)) if conf else 0.0


def _held_between(coarse: Detections, merged: Detections, n: int) -> bool:
    """Whether body ``n``'s neighbouring levels, the one above and the one below (S1 below L5),
    both held in the first placements (``merged``)."""
    i = LEVELS.index(coarse.bodies[n].level)
    held = {b.level for b in merged.bodies if b.level}
    below = merged.s1 is not None if i == len(LEVELS) - 1 else LEVELS[i + 1] in held
    return i > 0 and LEVELS[i - 1] in held and below


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
