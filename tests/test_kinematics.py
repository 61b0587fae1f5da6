"""Kinematics: the approximate skeleton on the real sample and on constructed poses; SMPL-X errors (SPEC §4.3)."""

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from echomask.motion.kinematics import (
    APPROXIMATE_LABEL,
    ApproximateKinematics,
    Kinematics,
    build_kinematics,
)
from echomask.motion.rotations import axis_angle_to_matrix
from echomask.motion.skeleton import (
    JOINT_NAMES,
    NUM_JOINTS,
    SMPLX_PARENTS,
    approximate_rest_offsets,
    joint_depths,
)

SHARED = Path(__file__).resolve().parents[2] / "shared"
needs_shared = pytest.mark.skipif(not SHARED.exists(), reason="../shared not present")
SAMPLE = SHARED / "beat2_sample" / "beat_english_v2.0.0" / "smplxflame_30" / "2_scott_0_1_1.npz"

LEFT_HIP, RIGHT_HIP, HEAD, LEFT_ELBOW, LEFT_WRIST = 1, 2, 15, 18, 20
FEET = [7, 8, 10, 11]
BONES = [(joint, parent) for joint, parent in enumerate(SMPLX_PARENTS) if parent >= 0]


@pytest.fixture(scope="module")
def kinematics() -> Kinematics:
    return build_kinematics()


@pytest.fixture(scope="module")
def sample_joints(kinematics):
    with np.load(SAMPLE) as sample:
        poses = torch.from_numpy(sample["poses"])
        trans = torch.from_numpy(sample["trans"].astype(np.float32))
    return kinematics(poses, trans)


def rest_positions() -> torch.Tensor:
    """(55, 3) float64: joint positions of the rest pose with zero trans, summed along the tree."""
    offsets = torch.from_numpy(approximate_rest_offsets()).double()
    positions = torch.zeros(NUM_JOINTS, 3, dtype=torch.float64)
    for joint, parent in enumerate(SMPLX_PARENTS):
        positions[joint] = offsets[joint] + (positions[parent] if parent >= 0 else 0)
    return positions


def test_skeleton_facts():
    assert len(SMPLX_PARENTS) == len(JOINT_NAMES) == NUM_JOINTS
    assert JOINT_NAMES[:4] == ("pelvis", "left_hip", "right_hip", "spine1")
    assert JOINT_NAMES[22] == "jaw" and JOINT_NAMES[25] == "left_index1" and JOINT_NAMES[54] == "right_thumb3"
    assert max(joint_depths()) == 10  # pelvis -> spine1..3 -> collar -> shoulder -> elbow -> wrist -> 3 finger joints
    offsets = approximate_rest_offsets()
    assert offsets.shape == (NUM_JOINTS, 3) and offsets.dtype == np.float32
    # Every right joint mirrors its left twin.
    for index, name in enumerate(JOINT_NAMES):
        if name.startswith("left_"):
            twin = JOINT_NAMES.index("right_" + name.removeprefix("left_"))
            assert np.array_equal(offsets[twin], offsets[index] * np.array([-1, 1, 1], dtype=np.float32))


def test_rest_pose_proportions(kinematics):
    joints = kinematics(torch.zeros(165, dtype=torch.float64), torch.zeros(3, dtype=torch.float64))
    assert joints.shape == (NUM_JOINTS, 3) and joints.dtype == torch.float64
    torch.testing.assert_close(joints, rest_positions(), atol=1e-12, rtol=0)
    height = joints[:, 1] - joints[FEET, 1].min()
    assert 0.85 < height[0] < 1.05  # pelvis
    assert 1.45 < height[HEAD] < 1.65
    arm_span = joints[30, 0] - joints[45, 0]  # left to right middle finger, about the body height
    assert 1.5 < arm_span < 1.8
    assert (joints[[index for index, name in enumerate(JOINT_NAMES) if name.startswith("left_")], 0] > 0).all()


def test_root_rotation_turns_the_body_about_the_pelvis(kinematics):
    poses = torch.zeros(165, dtype=torch.float64)
    poses[1] = math.pi / 2  # global orientation: 90 degrees about +y
    trans = torch.tensor([0.3, 1.2, -0.5], dtype=torch.float64)
    joints = kinematics(poses, trans)
    rest = rest_positions()
    turn = axis_angle_to_matrix(poses[:3])
    expected = (rest - rest[0]) @ turn.T + rest[0] + trans
    torch.testing.assert_close(joints, expected, atol=1e-12, rtol=0)


def test_elbow_bend_moves_only_the_forearm_and_hand(kinematics):
    poses = torch.zeros(165, dtype=torch.float64)
    poses[3 * LEFT_ELBOW + 1] = -math.pi / 2  # bend the left forearm forward (towards +z)
    joints = kinematics(poses, torch.zeros(3, dtype=torch.float64))
    rest = rest_positions()
    below_elbow = [LEFT_WRIST, *range(25, 40)]  # the left wrist and the left hand
    unchanged = [joint for joint in range(NUM_JOINTS) if joint not in below_elbow]
    torch.testing.assert_close(joints[unchanged], rest[unchanged], atol=1e-12, rtol=0)
    forearm = rest[LEFT_WRIST] - rest[LEFT_ELBOW]
    bent_forearm = joints[LEFT_WRIST] - joints[LEFT_ELBOW]
    torch.testing.assert_close(bent_forearm, torch.stack([-forearm[2], forearm[1], forearm[0]]), atol=1e-12, rtol=0)
    assert bent_forearm[2] > 0.2


@needs_shared
def test_real_sample_feet_below_hips_below_head(sample_joints):
    height = sample_joints[..., 1]
    assert sample_joints.shape == (1906, NUM_JOINTS, 3)
    assert (height[:, FEET].amax(dim=1) < height[:, [LEFT_HIP, RIGHT_HIP]].amin(dim=1)).all()
    assert (height[:, [LEFT_HIP, RIGHT_HIP]].amax(dim=1) < height[:, HEAD]).all()


@needs_shared
def test_real_sample_bone_lengths_are_constant(sample_joints):
    joints, parents = zip(*BONES)
    lengths = (sample_joints[:, list(joints)] - sample_joints[:, list(parents)]).norm(dim=-1)
    rest_lengths = torch.from_numpy(np.linalg.norm(approximate_rest_offsets()[list(joints)], axis=-1))
    assert (lengths - rest_lengths).abs().max() < 1e-5


@needs_shared
def test_real_sample_person_is_standing_on_the_floor(sample_joints):
    lowest_foot = sample_joints[:, FEET, 1].amin(dim=1)
    head_above_feet = sample_joints[:, HEAD, 1] - lowest_foot
    # The speaker crouches for about a second (frames 413-445, knees bent ~70 degrees): require
    # standing height in 95% of frames and a plausible height everywhere.
    standing = (head_above_feet > 1.4) & (head_above_feet < 1.9)
    assert standing.float().mean() > 0.95
    assert (head_above_feet > 1.0).all()
    # BEAT2's trans puts the floor near y = 0 for this skeleton.
    assert lowest_foot.abs().mean() < 0.1


def test_batch_shapes_match_single_sequences(kinematics):
    generator = torch.Generator().manual_seed(0)
    poses = torch.randn(2, 3, 4, 165, generator=generator) * 0.3
    trans = torch.randn(2, 3, 4, 3, generator=generator)
    joints = kinematics(poses, trans)
    assert joints.shape == (2, 3, 4, NUM_JOINTS, 3) and joints.dtype == torch.float32
    torch.testing.assert_close(joints[1, 2], kinematics(poses[1, 2], trans[1, 2]))
    rotmats = axis_angle_to_matrix(poses.reshape(2, 3, 4, NUM_JOINTS, 3))
    torch.testing.assert_close(kinematics.joints_from_rotmats(rotmats, trans), joints)


def test_differentiable(kinematics):
    generator = torch.Generator().manual_seed(1)
    rotmats = axis_angle_to_matrix(torch.randn(2, NUM_JOINTS, 3, generator=generator, dtype=torch.float64))
    rotmats.requires_grad_()
    trans = torch.randn(2, 3, generator=generator, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(kinematics.joints_from_rotmats, (rotmats, trans), fast_mode=True)
    poses = torch.randn(3, 165, generator=generator, dtype=torch.float64, requires_grad=True)
    kinematics(poses, trans.detach()[0].expand(3, 3)).square().sum().backward()
    assert torch.isfinite(poses.grad).all()
    # Eye joints are leaves: their rotation moves nothing, every other joint's rotation does something.
    moving = poses.grad.reshape(3, NUM_JOINTS, 3).abs().sum(dim=(0, 2)) > 0
    leaves = set(range(NUM_JOINTS)) - set(SMPLX_PARENTS)
    assert all(moving[joint] != (joint in leaves) for joint in range(NUM_JOINTS))


def test_labels_and_bad_inputs(kinematics):
    assert isinstance(kinematics, ApproximateKinematics)
    assert kinematics.is_approximate and kinematics.label == APPROXIMATE_LABEL
    assert "not comparable" in kinematics.label
    with pytest.raises(NotImplementedError, match="smplx_model_dir"):
        kinematics.vertices(torch.zeros(165), torch.zeros(3))
    with pytest.raises(ValueError, match="poses must have shape"):
        kinematics(torch.zeros(4, 66), torch.zeros(4, 3))
    with pytest.raises(ValueError, match="trans must have shape"):
        kinematics(torch.zeros(4, 165), torch.zeros(5, 3))


def test_smplx_model_dir_errors(tmp_path):
    missing = tmp_path / "no_such_dir"
    with pytest.raises(FileNotFoundError, match="does not exist"):
        build_kinematics(missing)
    with pytest.raises(FileNotFoundError, match="SMPLX_NEUTRAL_2020.npz"):
        build_kinematics(tmp_path)
    (tmp_path / "smplx").mkdir()
    broken = tmp_path / "smplx" / "SMPLX_NEUTRAL_2020.npz"
    np.savez(broken, v_template=np.zeros((3, 3)))
    with pytest.raises(ValueError, match="not a usable SMPL-X model file") as error:
        build_kinematics(tmp_path)
    assert str(broken) in str(error.value)
