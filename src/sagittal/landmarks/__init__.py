"""Landmarks from lateral radiographs: the segmentation/heatmap model (torch, imported
lazily), its inference and the post-processing to the contract's points with confidences.

``import sagittal.landmarks`` does not import torch; the functions that need it do.
"""

from .preprocess import INPUT_SHAPE, Letterbox, letterbox, normalise

__all__ = ["INPUT_SHAPE", "Letterbox", "letterbox", "normalise"]
