"""Joint positions (and mesh vertices) from SMPL-X poses (SPEC §4.3).

Two implementations of one interface, picked by `build_kinematics`:

- `SMPLXKinematics`: the `smplx` package with the user's SMPL-X model file (neutral 2020 layout:
  300 betas, 100 expressions, no hand PCA, hand poses relative to the model's mean hand pose);
  gives the 55 joints and the 10,475 vertices.
- `ApproximateKinematics`: plain forward kinematics over the 55-joint SMPL-X tree with the
  approximate rest skeleton of `echomask.motion.skeleton` (no SMPL-X data; one fixed body shape,
  flat hands). Numbers computed with it are not comparable with papers; its `label` says so.
"""

import pickle
from abc import ABCMeta, abstractmethod
from pathlib import Path

import numpy as np
import torch
from einops import rearrange, repeat
from torch import nn

from echomask.motion.parts import NUM_EXPRESSIONS
from echomask.motion.rotations import axis_angle_to_matrix, matrix_to_axis_angle
from echomask.motion.skeleton import NUM_JOINTS, SMPLX_PARENTS, approximate_rest_offsets, joint_depths

APPROXIMATE_LABEL = "approximate skeleton (not comparable with papers)"
NUM_BETAS = 300  # SMPL-X neutral 2020 as used by BEAT2 (SPEC §4.1, §4.3)
# Model files looked for in `smplx_model_dir` and in its `smplx/` subfolder, in this order.
SMPLX_MODEL_FILE_NAMES = ("SMPLX_NEUTRAL_2020.npz", "SMPLX_NEUTRAL.npz")
# Frames per call of the SMPL-X layer: bounds memory (about 1-2 MB per frame with vertices).
DEFAULT_CHUNK_FRAMES = 128
# Which joints each SMPL-X layer argument holds, as [first, last + 1) joint indices.
_SMPLX_POSE_ARGUMENTS = {
    "global_orient": (0, 1),
    "body_pose": (1, 22),
    "jaw_pose": (22, 23),
    "leye_pose": (23, 24),
    "reye_pose": (24, 25),
    "left_hand_pose": (25, 40),
    "right_hand_pose": (40, 55),
}


def _check_matching_shape(name: str, tensor: torch.Tensor, leading_shape: torch.Size, trailing: tuple) -> None:
    """`tensor` must be (*leading_shape, *trailing)."""
    expected = tuple(leading_shape) + tuple(trailing)
    if tuple(tensor.shape) != expected:
        raise ValueError(f"{name} must have shape {expected}, got {tuple(tensor.shape)}")


def _check_poses(poses: torch.Tensor, trans: torch.Tensor) -> None:
    if poses.shape[-1:] != (NUM_JOINTS * 3,):
        raise ValueError(f"poses must have shape (..., {NUM_JOINTS * 3}) (axis-angle), got {tuple(poses.shape)}")
    _check_matching_shape("trans", trans, poses.shape[:-1], (3,))


def _check_rotmats(rotmats: torch.Tensor, trans: torch.Tensor) -> None:
    if rotmats.shape[-3:] != (NUM_JOINTS, 3, 3):
        raise ValueError(f"rotmats must have shape (..., {NUM_JOINTS}, 3, 3), got {tuple(rotmats.shape)}")
    _check_matching_shape("trans", trans, rotmats.shape[:-3], (3,))


class Kinematics(nn.Module, metaclass=ABCMeta):
    """SMPL-X poses -> joint positions.

    `label` names the body model (goes into logs and reports); `is_approximate` is True for the
    built-in skeleton.
    """

    label: str
    is_approximate: bool

    @abstractmethod
    def forward(self, poses: torch.Tensor, trans: torch.Tensor, betas: torch.Tensor | None = None) -> torch.Tensor:
        """(..., 165) axis-angle poses and (..., 3) trans in metres -> (..., 55, 3) joint positions in metres."""

    @abstractmethod
    def joints_from_rotmats(self, rotmats: torch.Tensor, trans: torch.Tensor) -> torch.Tensor:
        """(..., 55, 3, 3) local joint rotations and (..., 3) trans -> (..., 55, 3) joint positions; differentiable."""

    def vertices(
        self,
        poses: torch.Tensor,
        trans: torch.Tensor,
        expressions: torch.Tensor | None = None,
        betas: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """(..., 165) poses, (..., 3) trans, (..., 100) expressions -> (..., 10475, 3) mesh vertices."""
        raise NotImplementedError(
            f"the {self.label} has no mesh vertices: set smplx_model_dir to a folder holding an SMPL-X model "
            f"({' or '.join(SMPLX_MODEL_FILE_NAMES)})"
        )


class ApproximateKinematics(Kinematics):
    """Forward kinematics over the SMPL-X tree with fixed rest offsets, vectorised by tree depth.

    The pelvis sits at `trans + rest_offsets[0]` and turns with the global orientation, as in SMPL-X.
    `betas` are ignored: the skeleton has one body shape.
    """

    def __init__(self, rest_offsets: np.ndarray | None = None) -> None:
        """rest_offsets: (55, 3) metres, each joint's offset from its parent; default `approximate_rest_offsets()`."""
        super().__init__()
        offsets = approximate_rest_offsets() if rest_offsets is None else np.asarray(rest_offsets)
        if offsets.shape != (NUM_JOINTS, 3):
            raise ValueError(f"rest_offsets must have shape ({NUM_JOINTS}, 3), got {offsets.shape}")
        self.register_buffer("rest_offsets", torch.as_tensor(offsets, dtype=torch.float32))
        self.label = APPROXIMATE_LABEL
        self.is_approximate = True
        depths = joint_depths(SMPLX_PARENTS)
        # For each depth 1, 2, ...: the joints at that depth and their parents.
        self._levels = tuple(
            (
                [joint for joint in range(NUM_JOINTS) if depths[joint] == depth],
                [SMPLX_PARENTS[joint] for joint in range(NUM_JOINTS) if depths[joint] == depth],
            )
            for depth in range(1, max(depths) + 1)
        )

    def forward(self, poses: torch.Tensor, trans: torch.Tensor, betas: torch.Tensor | None = None) -> torch.Tensor:
        """(..., 165) axis-angle poses, (..., 3) trans -> (..., 55, 3) joints; `betas` ignored (one body shape)."""
        _check_poses(poses, trans)
        rotmats = axis_angle_to_matrix(rearrange(poses, "... (joint xyz) -> ... joint xyz", xyz=3))
        return self.joints_from_rotmats(rotmats, trans)

    def joints_from_rotmats(self, rotmats: torch.Tensor, trans: torch.Tensor) -> torch.Tensor:
        """(..., 55, 3, 3) local rotations, (..., 3) trans -> (..., 55, 3) joint positions in metres."""
        _check_rotmats(rotmats, trans)
        offsets = self.rest_offsets.to(rotmats.dtype)
        joint_dim = rotmats.dim() - 3
        # Start with every joint at the pelvis and every rotation local; each depth level then
        # replaces its joints by their global values, computed from their (already global) parents.
        positions = repeat(trans + offsets[0], "... xyz -> ... joint xyz", joint=NUM_JOINTS)
        global_rotations = rotmats
        for joints, parents in self._levels:
            index = torch.tensor(joints, device=rotmats.device)
            parent_rotations = global_rotations[..., parents, :, :]
            bones = torch.einsum("...jab,jb->...ja", parent_rotations, offsets[joints])
            positions = positions.index_copy(joint_dim, index, positions[..., parents, :] + bones)
            global_rotations = global_rotations.index_copy(
                joint_dim, index, parent_rotations @ rotmats[..., joints, :, :]
            )
        return positions


def _as_frames(array: torch.Tensor, leading_shape: torch.Size, dtype: torch.dtype) -> torch.Tensor:
    """Broadcast (..., C) to (*leading_shape, C) and flatten to (frames, C) in `dtype`."""
    width = array.shape[-1]
    try:
        return array.to(dtype).broadcast_to(*leading_shape, width).reshape(-1, width)
    except RuntimeError as error:
        target = tuple(leading_shape) + (width,)
        raise ValueError(f"an array of shape {tuple(array.shape)} does not broadcast to {target}") from error


def find_smplx_model_file(smplx_model_dir: str | Path) -> Path:
    """The SMPL-X neutral .npz model in `smplx_model_dir` (or its `smplx/` subfolder), or that path if it is a file."""
    folder = Path(smplx_model_dir).expanduser()
    if folder.is_file():
        return folder
    if not folder.is_dir():
        raise FileNotFoundError(f"smplx_model_dir {folder} does not exist")
    candidates = [place / name for place in (folder, folder / "smplx") for name in SMPLX_MODEL_FILE_NAMES]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"smplx_model_dir {folder} holds no SMPL-X model file; looked for: {', '.join(map(str, candidates))}"
    )


class SMPLXKinematics(Kinematics):
    """The `smplx` package's SMPL-X layer (neutral, 300 betas, 100 expressions, full hand poses)."""

    def __init__(self, smplx_model_dir: str | Path, chunk_frames: int = DEFAULT_CHUNK_FRAMES) -> None:
        super().__init__()
        import smplx  # imported here: only this backend needs it

        model_file = find_smplx_model_file(smplx_model_dir)
        try:
            self.body_model = smplx.create(
                str(model_file),
                model_type="smplx",
                gender="neutral",
                use_pca=False,
                flat_hand_mean=False,  # BEAT2 hand poses are relative to the mean hand pose
                num_betas=NUM_BETAS,
                num_expression_coeffs=NUM_EXPRESSIONS,
                use_face_contour=False,
                ext="npz",
            )
        except (AssertionError, AttributeError, KeyError, ValueError, OSError, pickle.UnpicklingError) as error:
            raise ValueError(f"{model_file}: not a usable SMPL-X model file ({error!r})") from error
        self.body_model.requires_grad_(False)
        self.chunk_frames = chunk_frames
        self.label = f"SMPL-X ({smplx_model_dir})"
        self.is_approximate = False

    def forward(self, poses: torch.Tensor, trans: torch.Tensor, betas: torch.Tensor | None = None) -> torch.Tensor:
        """(..., 165) axis-angle poses, (..., 3) trans -> (..., 55, 3) joint positions in metres.

        betas: (300,) or broadcastable to (..., 300); default zeros (the mean shape).
        """
        return self._run_body_model(poses, trans, expressions=None, betas=betas, want_vertices=False)

    def joints_from_rotmats(self, rotmats: torch.Tensor, trans: torch.Tensor) -> torch.Tensor:
        """(..., 55, 3, 3) local rotations, (..., 3) trans -> (..., 55, 3) joint positions in metres.

        Goes through axis-angle, where SMPL-X adds the mean hand pose, with the "stable"
        conversion so that gradients stay bounded.
        """
        _check_rotmats(rotmats, trans)
        axis_angle = matrix_to_axis_angle(rotmats, method="stable")
        poses = rearrange(axis_angle, "... joint xyz -> ... (joint xyz)")
        return self.forward(poses, trans)

    def vertices(
        self,
        poses: torch.Tensor,
        trans: torch.Tensor,
        expressions: torch.Tensor | None = None,
        betas: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """(..., 165) poses, (..., 3) trans, (..., 100) expressions (default 0), betas -> (..., 10475, 3) vertices."""
        return self._run_body_model(poses, trans, expressions=expressions, betas=betas, want_vertices=True)

    def _run_body_model(
        self,
        poses: torch.Tensor,
        trans: torch.Tensor,
        expressions: torch.Tensor | None,
        betas: torch.Tensor | None,
        want_vertices: bool,
    ) -> torch.Tensor:
        """Flatten the leading dims into frames, run the SMPL-X layer in chunks, restore the leading dims."""
        _check_poses(poses, trans)
        leading_shape = poses.shape[:-1]
        model_dtype = self.body_model.shapedirs.dtype
        if betas is not None and betas.shape[-1:] != (NUM_BETAS,):
            raise ValueError(f"betas must have {NUM_BETAS} coefficients in the last dim, got {tuple(betas.shape)}")
        if expressions is not None:
            _check_matching_shape("expressions", expressions, leading_shape, (NUM_EXPRESSIONS,))
        poses_flat = _as_frames(poses, leading_shape, model_dtype)
        trans_flat = _as_frames(trans, leading_shape, model_dtype)
        betas_flat = _as_frames(poses.new_zeros(NUM_BETAS) if betas is None else betas, leading_shape, model_dtype)
        expressions_flat = _as_frames(
            poses.new_zeros(NUM_EXPRESSIONS) if expressions is None else expressions, leading_shape, model_dtype
        )
        outputs = []
        for start in range(0, poses_flat.shape[0], self.chunk_frames):
            frames = slice(start, start + self.chunk_frames)
            pose_arguments = {
                name: poses_flat[frames, 3 * first : 3 * end] for name, (first, end) in _SMPLX_POSE_ARGUMENTS.items()
            }
            output = self.body_model(
                betas=betas_flat[frames],
                expression=expressions_flat[frames],
                transl=trans_flat[frames],
                return_verts=want_vertices,
                **pose_arguments,
            )
            outputs.append(output.vertices if want_vertices else output.joints[:, :NUM_JOINTS])
        points = torch.cat(outputs, dim=0).to(poses.dtype)
        return points.reshape(*leading_shape, *points.shape[1:])


def build_kinematics(
    smplx_model_dir: str | Path | None = None,
    *,
    chunk_frames: int = DEFAULT_CHUNK_FRAMES,
) -> Kinematics:
    """SMPL-X kinematics from `smplx_model_dir`, or the approximate skeleton when it is None (SPEC §4.3)."""
    if smplx_model_dir is None:
        return ApproximateKinematics()
    return SMPLXKinematics(smplx_model_dir, chunk_frames=chunk_frames)
