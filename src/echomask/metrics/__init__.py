"""Evaluation metrics of SPEC §8 as torchmetrics ``Metric`` classes (DDP-synced, raw values).

Paper display scales live in :mod:`echomask.metrics.display`.
"""
from echomask.metrics.beat_consistency import BeatConsistency
from echomask.metrics.display import PAPER_SCALE, format_table, to_paper_scale
from echomask.metrics.diversity import L1Diversity
from echomask.metrics.face import (
    FACE_LABEL_PARAMETERS,
    FACE_LABEL_VERTICES,
    FaceLVDPaper,
    FaceVelocityError,
    FaceVertexMSE,
)
from echomask.metrics.frechet import FrechetGestureDistance

__all__ = [
    "BeatConsistency",
    "FACE_LABEL_PARAMETERS",
    "FACE_LABEL_VERTICES",
    "FaceLVDPaper",
    "FaceVelocityError",
    "FaceVertexMSE",
    "FrechetGestureDistance",
    "L1Diversity",
    "PAPER_SCALE",
    "format_table",
    "to_paper_scale",
]
