"""Body-part motion streams, the whole-body vector and foot contact (SPEC §4.2).

Per frame:

| part  | content                                                    | dims |
|-------|------------------------------------------------------------|------|
| face  | jaw (22) 6D + 100 expressions                              | 106  |
| upper | joints 3,6,9,12,13,14,15,16,17,18,19,20,21 in 6D           | 78   |
| hands | joints 25–54 in 6D                                         | 180  |
| lower | joints 0,1,2,4,5,7,8,10,11 in 6D + trans (3) + contact (4) | 61   |

The whole-body vector is all 55 joints in 6D (330) + trans (3) + contact (4) = 337. Eyes belong to
no part: converting parts back to SMPL-X gives them the identity rotation.
"""

import torch
from einops import rearrange

from echomask.motion.rotations import axis_angle_to_rot6d, rot6d_to_axis_angle
from echomask.motion.skeleton import (
    FOOT_JOINTS,
    HAND_JOINTS,
    JAW_JOINT,
    LOWER_JOINTS,
    NUM_JOINTS,
    UPPER_JOINTS,
)

PART_NAMES = ("face", "upper", "hands", "lower")
NUM_EXPRESSIONS = 100  # FLAME coefficients in BEAT2 (SPEC §4.1)
TRANS_DIM = 3
CONTACT_DIM = len(FOOT_JOINTS)
ROT6D_DIM = 6
POSE_DIM = NUM_JOINTS * 3  # axis-angle poses, (T, 165) in BEAT2
PART_JOINTS = {"face": (JAW_JOINT,), "upper": UPPER_JOINTS, "hands": HAND_JOINTS, "lower": LOWER_JOINTS}
PART_DIMS = {
    "face": ROT6D_DIM + NUM_EXPRESSIONS,
    "upper": ROT6D_DIM * len(UPPER_JOINTS),
    "hands": ROT6D_DIM * len(HAND_JOINTS),
    "lower": ROT6D_DIM * len(LOWER_JOINTS) + TRANS_DIM + CONTACT_DIM,
}
WHOLE_BODY_DIM = ROT6D_DIM * NUM_JOINTS + TRANS_DIM + CONTACT_DIM

FOOT_CONTACT_THRESHOLD = 0.01  # metres moved between consecutive frames (SPEC §4.2)

# 6D of the identity rotation: its first two rows.
IDENTITY_ROT6D = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


def _check_frames(arrays: dict[str, torch.Tensor], last_dims: dict[str, int]) -> None:
    """Every array is (..., T, last_dims[name]) with the same leading shape (..., T)."""
    leading_shape = None
    for name, array in arrays.items():
        if array.dim() < 2 or array.shape[-1] != last_dims[name]:
            raise ValueError(f"{name} must have shape (..., T, {last_dims[name]}), got {tuple(array.shape)}")
        if leading_shape is None:
            leading_shape = array.shape[:-1]
        elif array.shape[:-1] != leading_shape:
            shapes = ", ".join(f"{key} {tuple(value.shape)}" for key, value in arrays.items())
            raise ValueError(f"the arrays disagree on their leading (..., T) shape: {shapes}")


def foot_contact(joints: torch.Tensor, threshold: float = FOOT_CONTACT_THRESHOLD) -> torch.Tensor:
    """Foot contact of the ankles and feet (joints 7, 8, 10, 11): (..., T, 55, 3) metres -> (..., T, 4).

    1 where the joint moves less than `threshold` metres to the next frame, else 0; the last frame
    copies the one before. Same dtype as `joints`.
    """
    if joints.dim() < 3 or tuple(joints.shape[-2:]) != (NUM_JOINTS, 3):
        raise ValueError(f"joints must have shape (..., T, {NUM_JOINTS}, 3), got {tuple(joints.shape)}")
    if joints.shape[-3] < 2:
        raise ValueError(f"foot contact needs at least 2 frames, got {joints.shape[-3]}")
    feet = joints[..., FOOT_JOINTS, :]
    step = torch.linalg.vector_norm(feet[..., 1:, :, :] - feet[..., :-1, :, :], dim=-1)
    contact = (step < threshold).to(joints.dtype)
    return torch.cat([contact, contact[..., -1:, :]], dim=-2)


def _joints_rot6d(poses: torch.Tensor) -> torch.Tensor:
    """(..., T, 165) axis-angle -> (..., T, 55, 6)."""
    return axis_angle_to_rot6d(rearrange(poses, "... (joint xyz) -> ... joint xyz", xyz=3))


def _flatten_joints(rot6d: torch.Tensor, joints: tuple[int, ...]) -> torch.Tensor:
    """(..., T, 55, 6) -> (..., T, 6 * len(joints)) for the given joints, in that order."""
    return rearrange(rot6d[..., list(joints), :], "... joint six -> ... (joint six)")


def smplx_to_parts(
    poses: torch.Tensor,
    trans: torch.Tensor,
    expressions: torch.Tensor,
    contact: torch.Tensor,
) -> dict[str, torch.Tensor]:
    """SMPL-X arrays -> the four part streams.

    Args:
        poses: (..., T, 165) axis-angle of the 55 joints.
        trans: (..., T, 3) metres.
        expressions: (..., T, 100) FLAME coefficients.
        contact: (..., T, 4) foot contact (see `foot_contact`).

    Returns:
        {"face": (..., T, 106), "upper": (..., T, 78), "hands": (..., T, 180), "lower": (..., T, 61)}
    """
    _check_frames(
        {"poses": poses, "trans": trans, "expressions": expressions, "contact": contact},
        {"poses": POSE_DIM, "trans": TRANS_DIM, "expressions": NUM_EXPRESSIONS, "contact": CONTACT_DIM},
    )
    return _parts_from_rot6d(_joints_rot6d(poses), trans, expressions, contact)


def whole_body_to_parts(whole_body: torch.Tensor, expressions: torch.Tensor) -> dict[str, torch.Tensor]:
    """(..., T, 337) whole-body vector and (..., T, 100) expressions -> the four part streams.

    No rotation conversion happens: the part streams are column selections of the whole body.
    """
    _check_frames(
        {"whole_body": whole_body, "expressions": expressions},
        {"whole_body": WHOLE_BODY_DIM, "expressions": NUM_EXPRESSIONS},
    )
    rot_dim = ROT6D_DIM * NUM_JOINTS
    rot6d = rearrange(whole_body[..., :rot_dim], "... (joint six) -> ... joint six", six=ROT6D_DIM)
    trans = whole_body[..., rot_dim : rot_dim + TRANS_DIM]
    contact = whole_body[..., rot_dim + TRANS_DIM :]
    return _parts_from_rot6d(rot6d, trans, expressions, contact)


def _parts_from_rot6d(
    rot6d: torch.Tensor, trans: torch.Tensor, expressions: torch.Tensor, contact: torch.Tensor
) -> dict[str, torch.Tensor]:
    """(..., T, 55, 6) rotations and the other per-frame arrays -> the four part streams."""
    return {
        "face": torch.cat([_flatten_joints(rot6d, PART_JOINTS["face"]), expressions], dim=-1),
        "upper": _flatten_joints(rot6d, PART_JOINTS["upper"]),
        "hands": _flatten_joints(rot6d, PART_JOINTS["hands"]),
        "lower": torch.cat([_flatten_joints(rot6d, PART_JOINTS["lower"]), trans, contact], dim=-1),
    }


def parts_to_smplx(parts: dict[str, torch.Tensor], method: str = "reference") -> dict[str, torch.Tensor]:
    """The four part streams (as returned by `smplx_to_parts`) -> SMPL-X arrays.

    The 6D rotations go through Gram–Schmidt, so they need not be orthonormal. Eyes (the joints no
    part owns) get the identity rotation. `method` picks the matrix -> axis-angle conversion (see
    `rotations.matrix_to_quaternion`): "reference" reproduces the reference pipeline (float32
    errors up to ~5e-4 rad), "stable" is accurate to rounding.

    Returns:
        {"poses": (..., T, 165) axis-angle, "trans": (..., T, 3), "expressions": (..., T, 100),
         "contact": (..., T, 4)}
    """
    return {
        **whole_body_to_smplx(parts_to_whole_body(parts), method=method),
        "expressions": parts["face"][..., ROT6D_DIM:],
    }


def smplx_to_whole_body(poses: torch.Tensor, trans: torch.Tensor, contact: torch.Tensor) -> torch.Tensor:
    """(..., T, 165) axis-angle, (..., T, 3) trans, (..., T, 4) contact -> (..., T, 337) whole-body vector."""
    _check_frames(
        {"poses": poses, "trans": trans, "contact": contact},
        {"poses": POSE_DIM, "trans": TRANS_DIM, "contact": CONTACT_DIM},
    )
    rot6d = rearrange(_joints_rot6d(poses), "... joint six -> ... (joint six)")
    return torch.cat([rot6d, trans, contact], dim=-1)


def whole_body_to_smplx(whole_body: torch.Tensor, method: str = "reference") -> dict[str, torch.Tensor]:
    """(..., T, 337) whole-body vector -> SMPL-X arrays.

    `method`: the matrix -> axis-angle conversion, as in `parts_to_smplx`.

    Returns:
        {"poses": (..., T, 165) axis-angle, "trans": (..., T, 3), "contact": (..., T, 4)}
    """
    _check_frames({"whole_body": whole_body}, {"whole_body": WHOLE_BODY_DIM})
    rot_dim = ROT6D_DIM * NUM_JOINTS
    rot6d = rearrange(whole_body[..., :rot_dim], "... (joint six) -> ... joint six", six=ROT6D_DIM)
    return {
        "poses": rearrange(rot6d_to_axis_angle(rot6d, method=method), "... joint xyz -> ... (joint xyz)"),
        "trans": whole_body[..., rot_dim : rot_dim + TRANS_DIM],
        "contact": whole_body[..., rot_dim + TRANS_DIM :],
    }


def parts_to_whole_body(parts: dict[str, torch.Tensor]) -> torch.Tensor:
    """The four part streams -> (..., T, 337) whole-body vector (the column inverse of `whole_body_to_parts`).

    The 6D rotations are copied as they are (no Gram–Schmidt); eyes, which no part owns, get the
    identity rotation; translation and contact come from the lower stream. The expressions are
    the face stream's columns after the jaw, ``parts["face"][..., 6:]``.
    """
    missing = [name for name in PART_NAMES if name not in parts]
    if missing:
        raise ValueError(f"the part streams must include all of {PART_NAMES}; missing: {missing}")
    _check_frames({name: parts[name] for name in PART_NAMES}, PART_DIMS)
    lower = parts["lower"]
    lower_rot_dim = ROT6D_DIM * len(LOWER_JOINTS)
    owned_rot6d = {
        "face": parts["face"][..., :ROT6D_DIM],
        "upper": parts["upper"],
        "hands": parts["hands"],
        "lower": lower[..., :lower_rot_dim],
    }
    owned_joints = [joint for name in PART_NAMES for joint in PART_JOINTS[name]]
    owned_values = torch.cat(
        [rearrange(owned_rot6d[name], "... (joint six) -> ... joint six", six=ROT6D_DIM) for name in PART_NAMES],
        dim=-2,
    )
    identity = lower.new_tensor(IDENTITY_ROT6D).expand(*owned_values.shape[:-2], NUM_JOINTS, ROT6D_DIM)
    rot6d = identity.index_copy(identity.dim() - 2, torch.tensor(owned_joints, device=lower.device), owned_values)
    return torch.cat([rearrange(rot6d, "... joint six -> ... (joint six)"), lower[..., lower_rot_dim:]], dim=-1)
