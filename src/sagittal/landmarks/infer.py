"""Running the landmark model: batched inference on CPU or CUDA, then post-processing to the
contract's landmarks in source-image pixels. Weights come from ``models/`` on disk, never
from the network.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .postprocess import decode, label_levels, to_contract
from .preprocess import INPUT_SHAPE, letterbox, normalise

DEFAULT_WEIGHTS = Path(__file__).resolve().parents[3] / "models" / "landmarks.pt"


def weights_path(path: str | os.PathLike | None = None) -> Path:
    p = Path(path or os.environ.get("SAGITTAL_WEIGHTS") or DEFAULT_WEIGHTS)
    if not p.is_file():
        from ..errors import InputError

        raise InputError(f"landmark weights not found at {p}; pass --weights or set SAGITTAL_WEIGHTS "
                         "(train them with scripts/train_landmarks.py)")
    return p


def resolve_device(device: str = "auto") -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        from ..errors import InputError

        raise InputError("--device cuda asked for, but torch sees no CUDA device; use --device cpu or auto")
    return device


class LandmarkDetector:
    """``detect(images)`` → per image ``(landmarks, anterior, warnings)``.

    ``images`` are bone-bright 2-D arrays (``io`` output); ``anterior`` is the side the
    patient faces as read from the landmarks themselves (``None`` when nothing was found).
    """

    def __init__(self, weights: str | os.PathLike | None = None, device: str = "auto", threads: int | None = None):
        import torch

        from .model import load_model

        if threads:
            torch.set_num_threads(threads)
        self.device = resolve_device(device)
        self.weights = weights_path(weights)
        self.model = load_model(self.weights, self.device)

    def maps(self, images: list[np.ndarray]) -> tuple[np.ndarray, list]:
        import torch

        prepared = [letterbox(normalise(img), INPUT_SHAPE) for img in images]
        x = torch.from_numpy(np.stack([p[0] for p in prepared]))[:, None].to(self.device)
        with torch.no_grad():
            out = self.model(x).float().cpu().numpy()
        return out, [p[1] for p in prepared]

    def detect(self, images: list[np.ndarray], batch_size: int = 8) -> list[tuple[dict, str | None, list[str]]]:
        results = []
        for start in range(0, len(images), batch_size):
            maps, boxes = self.maps(images[start:start + batch_size])
            for m, lb in zip(maps, boxes):
                det = label_levels(decode(m), INPUT_SHAPE[0])
                lm = to_contract(det, lb.to_source)
                results.append((lm, facing_from_landmarks(lm), list(det.warnings)))
        return results


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
