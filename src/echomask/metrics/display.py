"""Paper display scales and a paper-style results table (SPEC §8.1).

Every metric class reports its RAW value; the scales of the EMAGE/EchoMask tables live only here.

The paper's column headers give the unit of the printed number: "MSE ×10⁻⁸" means "in units of 10⁻⁸", so the
printed number is raw × 10⁸ (LVD: raw × 10⁵, BC: raw × 10). The FGD column is headed "×10⁻¹" as well and its
printed number is raw × 10 -- SPEC §8.1 notes this explicitly (raw 0.5514 prints as 5.51) because the header is
easy to misread as "multiply by 10⁻¹".

Result keys (the names the evaluation loop reports the metrics under):

==========================  ======================================  =============
key                         metric                                  paper scale
==========================  ======================================  =============
``fgd``                     :class:`FrechetGestureDistance`         ×10
``bc``                      :class:`BeatConsistency`                ×10
``l1div``                   :class:`L1Diversity`                    ×1
``face_mse``                :class:`FaceVertexMSE`                  ×10⁸
``face_lvd_paper``          :class:`FaceLVDPaper` (position error)  ×10⁵
``face_velocity_error``     :class:`FaceVelocityError`              ×10⁵
==========================  ======================================  =============
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

from torch import Tensor

PAPER_SCALE: dict[str, float] = {
    "fgd": 10.0,  # header "FGD ×10⁻¹", printed value = raw × 10 (SPEC §8.1)
    "bc": 10.0,  # header "BC ×10⁻¹"
    "l1div": 1.0,  # printed as is
    "face_mse": 1e8,  # header "MSE ×10⁻⁸"
    "face_lvd_paper": 1e5,  # header "LVD ×10⁻⁵"
    "face_velocity_error": 1e5,  # same unit as the paper LVD, for side-by-side reading
}

PAPER_HEADER: dict[str, str] = {
    "fgd": "FGD ×10⁻¹ ↓",
    "bc": "BC ×10⁻¹ ↑",
    "l1div": "L1div ↑",
    "face_mse": "MSE ×10⁻⁸ ↓",
    "face_lvd_paper": "LVD(paper) ×10⁻⁵ ↓",
    "face_velocity_error": "LVD(velocity) ×10⁻⁵ ↓",
}

# columns of :func:`format_table` that describe how a row was measured (shown under the table)
PROVENANCE_KEYS = ("protocol", "fgd_encoder", "face_label")


def to_paper_scale(results: Mapping[str, object]) -> dict[str, object]:
    """A copy of ``results`` with every metric in :data:`PAPER_SCALE` multiplied by its paper scale.

    Args:
        results: raw metric values by result key (floats or 0-d tensors); other entries (a protocol name, an
            encoder name, a loss) are copied unchanged.

    Returns:
        A new dict; scaled entries are Python floats.
    """
    scaled = dict(results)
    for key, scale in PAPER_SCALE.items():
        if key in scaled:
            value = scaled[key]
            scaled[key] = float(value.item() if isinstance(value, Tensor) else value) * scale
    return scaled


def aligned_columns(header: Sequence[str], body: Sequence[Sequence[str]]) -> str:
    """Text columns separated by " | ", each as wide as its widest cell, a rule under the header."""
    widths = [max(len(line[column]) for line in [header, *body]) for column in range(len(header))]

    def render(cells: Sequence[str]) -> str:
        return " | ".join(cell.ljust(width) for cell, width in zip(cells, widths)).rstrip()

    return "\n".join([render(header), "-+-".join("-" * width for width in widths), *(render(line) for line in body)])


def format_table(rows: Sequence[Mapping[str, object]], digits: int = 3) -> str:
    """A paper-style table of raw results, shown at paper scale.

    Args:
        rows: one mapping per method/run with a ``"name"`` and raw values under the keys of :data:`PAPER_SCALE`;
            optional ``"protocol"``, ``"fgd_encoder"`` and ``"face_label"`` are listed under the table.
        digits: decimals of the printed values.

    Returns:
        The table as text (columns: the metrics present in any row, in :data:`PAPER_SCALE` order; "–" where a
        row lacks a value), followed by one provenance line per row.
    """
    if not rows:
        raise ValueError("format_table: no rows to show")
    for index, row in enumerate(rows):
        if "name" not in row:
            raise ValueError(f"format_table: row {index} has no 'name' entry")
    columns = [key for key in PAPER_SCALE if any(key in row for row in rows)]
    header = ["method", *(PAPER_HEADER[key] for key in columns)]
    body = []
    for row in rows:
        scaled = to_paper_scale(row)
        body.append([str(row["name"]), *(f"{scaled[key]:.{digits}f}" if key in scaled else "–" for key in columns)])
    lines = [aligned_columns(header, body)]
    for row in rows:
        provenance = [f"{key}={row[key]}" for key in PROVENANCE_KEYS if key in row]
        if provenance:
            lines.append(f"{row['name']}: " + ", ".join(provenance))
    return "\n".join(lines)
