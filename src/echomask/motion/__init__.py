"""SMPL-X motion: skeleton facts, rotation conversions, body-part streams and kinematics (SPEC §4.2, §4.3)."""

from echomask.motion.kinematics import Kinematics, build_kinematics
from echomask.motion.parts import (
    PART_DIMS,
    PART_NAMES,
    WHOLE_BODY_DIM,
    foot_contact,
    parts_to_smplx,
    smplx_to_parts,
    smplx_to_whole_body,
    whole_body_to_smplx,
)

__all__ = [
    "PART_DIMS",
    "PART_NAMES",
    "WHOLE_BODY_DIM",
    "Kinematics",
    "build_kinematics",
    "foot_contact",
    "parts_to_smplx",
    "smplx_to_parts",
    "smplx_to_whole_body",
    "whole_body_to_smplx",
]
