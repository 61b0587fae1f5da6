"""Horizontal drift of generated translation against the ground truth (issue 14, item 5).

A standing speaker moves a few centimetres; a translation model whose integrated velocities carry a
small bias slides the body metres away over a minute. The figure: per sequence, the range
(max - min) of x and of z (y is up) of the generated and of the true translation, and the target
generated range <= 2 x true range + 0.10 m on both axes.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

HORIZONTAL_AXES = {"x": 0, "z": 2}
RANGE_FACTOR = 2.0  # target: generated range <= RANGE_FACTOR x true range + RANGE_MARGIN
RANGE_MARGIN = 0.10  # metres


@dataclass(frozen=True)
class SequenceDrift:
    """x/z ranges (metres) of one sequence's generated and true translation."""

    generated: dict[str, float]
    ground_truth: dict[str, float]

    @property
    def within_target(self) -> bool:
        return all(
            self.generated[axis] <= RANGE_FACTOR * self.ground_truth[axis] + RANGE_MARGIN for axis in HORIZONTAL_AXES
        )


def horizontal_ranges(trans: np.ndarray) -> dict[str, float]:
    """{"x": range, "z": range} in metres of a (T, 3) translation track."""
    trans = np.asarray(trans)
    if trans.ndim != 2 or trans.shape[-1] != 3 or len(trans) == 0:
        raise ValueError(f"a translation track must have shape (T, 3) with T > 0, got {trans.shape}")
    return {axis: float(np.ptp(trans[:, column])) for axis, column in HORIZONTAL_AXES.items()}


def translation_drift(generated: Mapping[str, np.ndarray], ground_truth: Mapping[str, np.ndarray]) -> dict[str, SequenceDrift]:
    """Per sequence id, the x/z ranges of the generated (T, 3) and the true (T', 3) translation.

    Every generated id needs a ground truth; the tracks may differ in length (ranges are compared, not frames).
    """
    missing = sorted(set(generated) - set(ground_truth))
    if missing:
        raise ValueError(f"translation_drift: no ground truth for {missing}")
    return {
        name: SequenceDrift(horizontal_ranges(track), horizontal_ranges(ground_truth[name]))
        for name, track in sorted(generated.items())
    }


def format_drift(drift: Mapping[str, SequenceDrift]) -> str:
    """A table: per sequence the generated and true x/z ranges and whether the target holds."""
    lines = [f"horizontal range, generated vs ground truth (target: <= {RANGE_FACTOR:g} x truth + {RANGE_MARGIN:.2f} m)"]
    for name, figures in drift.items():
        ranges = "  ".join(
            f"{axis} {figures.generated[axis]:6.3f} m vs {figures.ground_truth[axis]:6.3f} m" for axis in HORIZONTAL_AXES
        )
        lines.append(f"  {name:<20} {ranges}  {'ok' if figures.within_target else 'DRIFTS'}")
    return "\n".join(lines)
