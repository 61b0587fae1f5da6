"""Part streams, the whole-body vector and foot contact (SPEC §4.2)."""

from pathlib import Path

import numpy as np
import pytest
import torch

from echomask.motion.parts import (
    PART_DIMS,
    PART_JOINTS,
    PART_NAMES,
    WHOLE_BODY_DIM,
    foot_contact,
    parts_to_smplx,
    smplx_to_parts,
    smplx_to_whole_body,
    whole_body_to_smplx,
)
from echomask.motion.rotations import axis_angle_to_matrix, axis_angle_to_rot6d, geodesic_distance
from echomask.motion.skeleton import EYE_JOINTS, FOOT_JOINTS, NUM_JOINTS

SHARED = Path(__file__).resolve().parents[2] / "shared"
needs_shared = pytest.mark.skipif(not SHARED.exists(), reason="../shared not present")
SAMPLE = SHARED / "beat2_sample" / "beat_english_v2.0.0" / "smplxflame_30" / "2_scott_0_1_1.npz"


def random_smplx(leading_shape: tuple[int, ...], dtype=torch.float64, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random SMPL-X arrays with rotation angles up to 3 rad."""
    generator = torch.Generator().manual_seed(seed)
    axes = torch.nn.functional.normalize(torch.randn(*leading_shape, NUM_JOINTS, 3, generator=generator), dim=-1)
    angles = torch.rand(*leading_shape, NUM_JOINTS, 1, generator=generator) * 3.0
    return {
        "poses": (axes * angles).reshape(*leading_shape, NUM_JOINTS * 3).to(dtype),
        "trans": torch.randn(*leading_shape, 3, generator=generator, dtype=dtype),
        "expressions": torch.randn(*leading_shape, 100, generator=generator, dtype=dtype),
        "contact": (torch.rand(*leading_shape, 4, generator=generator) > 0.5).to(dtype),
    }


def joint_matrices(poses: torch.Tensor) -> torch.Tensor:
    """(..., 165) -> (..., 55, 3, 3)."""
    return axis_angle_to_matrix(poses.reshape(*poses.shape[:-1], NUM_JOINTS, 3))


def assert_same_rotations(poses: torch.Tensor, expected_poses: torch.Tensor, joints, atol: float) -> None:
    """The rotations of `joints` agree (compared as matrices: axis-angle near π is not unique)."""
    error = geodesic_distance(joint_matrices(poses), joint_matrices(expected_poses))[..., joints]
    assert error.max().item() <= atol, f"rotation error {error.max().item():.2e} rad"


def owned_joints() -> list[int]:
    return [joint for name in PART_NAMES for joint in PART_JOINTS[name]]


def test_dimensions_and_joint_ownership():
    assert PART_NAMES == ("face", "upper", "hands", "lower")
    assert PART_DIMS == {"face": 106, "upper": 78, "hands": 180, "lower": 61}
    assert WHOLE_BODY_DIM == 337
    joints = owned_joints()
    assert len(joints) == len(set(joints)) == NUM_JOINTS - len(EYE_JOINTS)
    assert sorted(joints + list(EYE_JOINTS)) == list(range(NUM_JOINTS))
    arrays = random_smplx((7,))
    parts = smplx_to_parts(**arrays)
    assert {name: tensor.shape for name, tensor in parts.items()} == {
        name: (7, dim) for name, dim in PART_DIMS.items()
    }
    assert smplx_to_whole_body(arrays["poses"], arrays["trans"], arrays["contact"]).shape == (7, WHOLE_BODY_DIM)


def test_part_layout():
    arrays = random_smplx((5,))
    parts = smplx_to_parts(**arrays)
    rot6d = axis_angle_to_rot6d(arrays["poses"].reshape(5, NUM_JOINTS, 3))
    assert torch.equal(parts["face"][:, :6], rot6d[:, 22])
    assert torch.equal(parts["face"][:, 6:], arrays["expressions"])
    assert torch.equal(parts["upper"][:, 6:12], rot6d[:, 6])  # second upper joint is spine2
    assert torch.equal(parts["hands"][:, -6:], rot6d[:, 54])
    assert torch.equal(parts["lower"][:, :6], rot6d[:, 0])
    assert torch.equal(parts["lower"][:, 54:57], arrays["trans"])
    assert torch.equal(parts["lower"][:, 57:], arrays["contact"])
    whole_body = smplx_to_whole_body(arrays["poses"], arrays["trans"], arrays["contact"])
    assert torch.equal(whole_body[:, :330].reshape(5, NUM_JOINTS, 6), rot6d)
    assert torch.equal(whole_body[:, 330:333], arrays["trans"])
    assert torch.equal(whole_body[:, 333:], arrays["contact"])


@needs_shared
def test_roundtrip_on_the_real_sample():
    with np.load(SAMPLE) as sample:
        poses = torch.from_numpy(sample["poses"])
        trans = torch.from_numpy(sample["trans"].astype(np.float32))
        expressions = torch.from_numpy(sample["expressions"].astype(np.float32))
    contact = (torch.rand(len(poses), 4, generator=torch.Generator().manual_seed(0)) > 0.5).float()
    parts = smplx_to_parts(poses, trans, expressions, contact)
    back = parts_to_smplx(parts)
    assert back["poses"].shape == poses.shape and back["poses"].dtype == torch.float32
    assert_same_rotations(back["poses"], poses, owned_joints(), atol=1e-3)  # float32 "reference" conversion
    assert_same_rotations(parts_to_smplx(parts, method="stable")["poses"], poses, owned_joints(), atol=1e-5)
    assert torch.equal(back["trans"], trans)
    assert torch.equal(back["expressions"], expressions)
    assert torch.equal(back["contact"], contact)
    # The sample's eyes move; the parts do not carry them, so they come back as the identity.
    assert poses.reshape(-1, NUM_JOINTS, 3)[:, EYE_JOINTS].abs().max() > 0.01
    assert torch.equal(back["poses"].reshape(-1, NUM_JOINTS, 3)[:, EYE_JOINTS], torch.zeros(len(poses), 2, 3))


def test_roundtrip_on_random_batches():
    arrays = random_smplx((3, 20))
    back = parts_to_smplx(smplx_to_parts(**arrays))
    assert back["poses"].shape == (3, 20, 165) and back["poses"].dtype == torch.float64
    assert_same_rotations(back["poses"], arrays["poses"], owned_joints(), atol=1e-7)
    for name in ("trans", "expressions", "contact"):
        assert torch.equal(back[name], arrays[name])
    assert torch.equal(back["poses"].reshape(3, 20, NUM_JOINTS, 3)[..., EYE_JOINTS, :], torch.zeros(3, 20, 2, 3))


def test_whole_body_roundtrip():
    arrays = random_smplx((2, 9))
    back = whole_body_to_smplx(smplx_to_whole_body(arrays["poses"], arrays["trans"], arrays["contact"]))
    assert_same_rotations(back["poses"], arrays["poses"], list(range(NUM_JOINTS)), atol=1e-7)
    assert torch.equal(back["trans"], arrays["trans"])
    assert torch.equal(back["contact"], arrays["contact"])


def test_parts_to_smplx_accepts_non_orthonormal_6d():
    parts = smplx_to_parts(**random_smplx((4,)))
    noisy = {name: tensor.clone() for name, tensor in parts.items()}
    noisy["upper"] = noisy["upper"] * 2.5  # scaling each 6D vector does not change its rotation
    back, expected = parts_to_smplx(noisy), parts_to_smplx(parts)
    assert_same_rotations(back["poses"], expected["poses"], list(range(NUM_JOINTS)), atol=1e-9)


def test_bad_inputs_are_reported():
    arrays = random_smplx((4,))
    with pytest.raises(ValueError, match="expressions must have shape"):
        smplx_to_parts(arrays["poses"], arrays["trans"], arrays["expressions"][:, :50], arrays["contact"])
    with pytest.raises(ValueError, match="leading"):
        smplx_to_parts(arrays["poses"], arrays["trans"][:3], arrays["expressions"], arrays["contact"])
    parts = smplx_to_parts(**arrays)
    with pytest.raises(ValueError, match="missing: \\['hands'\\]"):
        parts_to_smplx({name: tensor for name, tensor in parts.items() if name != "hands"})
    with pytest.raises(ValueError, match="whole_body must have shape"):
        whole_body_to_smplx(torch.zeros(4, 330))


def constructed_trajectory() -> torch.Tensor:
    """(6, 55, 3): the left ankle walks 2 cm per frame for 3 frames, the right foot creeps 5 mm per frame."""
    joints = torch.zeros(6, NUM_JOINTS, 3)
    left_ankle, right_foot = FOOT_JOINTS[0], FOOT_JOINTS[3]
    joints[:, left_ankle, 2] = torch.tensor([0.0, 0.02, 0.04, 0.06, 0.06, 0.06])
    joints[:, right_foot, 0] = torch.arange(6) * 0.005
    joints[:, 0] = torch.randn(6, 3)  # the pelvis does not count
    return joints


def test_foot_contact_on_a_constructed_trajectory():
    contact = foot_contact(constructed_trajectory())
    expected = torch.tensor(
        [
            # ankles (7, 8), feet (10, 11)
            [0.0, 1.0, 1.0, 1.0],
            [0.0, 1.0, 1.0, 1.0],
            [0.0, 1.0, 1.0, 1.0],
            [1.0, 1.0, 1.0, 1.0],
            [1.0, 1.0, 1.0, 1.0],
            [1.0, 1.0, 1.0, 1.0],  # last frame copies the one before
        ]
    )
    assert torch.equal(contact, expected)
    stricter = foot_contact(constructed_trajectory(), threshold=0.004)
    assert stricter[:, 3].sum() == 0


def test_foot_contact_last_frame_copies_and_batches():
    joints = torch.zeros(2, 4, NUM_JOINTS, 3)
    joints[0, 3, FOOT_JOINTS[1], 1] = 1.0  # the right ankle jumps between the last two frames
    contact = foot_contact(joints)
    assert contact.shape == (2, 4, 4) and contact.dtype == torch.float32
    assert contact[0, :, 1].tolist() == [1.0, 1.0, 0.0, 0.0]
    assert contact[1].sum() == 16
    assert foot_contact(joints.double()).dtype == torch.float64
    with pytest.raises(ValueError, match="at least 2 frames"):
        foot_contact(torch.zeros(1, NUM_JOINTS, 3))
    with pytest.raises(ValueError, match="joints must have shape"):
        foot_contact(torch.zeros(5, 24, 3))


def test_gradients_flow_from_parts_to_poses():
    parts = {name: tensor.requires_grad_() for name, tensor in smplx_to_parts(**random_smplx((3,))).items()}
    parts_to_smplx(parts)["poses"].sum().backward()
    for name in PART_NAMES:
        assert torch.isfinite(parts[name].grad).all()
        assert parts[name].grad.abs().sum() > 0


def test_whole_body_to_parts_selects_the_same_columns_as_smplx_to_parts():
    from echomask.motion.parts import whole_body_to_parts

    generator = torch.Generator().manual_seed(5)
    poses = torch.randn(2, 7, 165, generator=generator, dtype=torch.float64) * 0.4
    trans = torch.randn(2, 7, 3, generator=generator, dtype=torch.float64)
    expressions = torch.randn(2, 7, 100, generator=generator, dtype=torch.float64)
    contact = (torch.rand(2, 7, 4, generator=generator) > 0.5).double()
    whole = smplx_to_whole_body(poses, trans, contact)
    expected = smplx_to_parts(poses, trans, expressions, contact)
    got = whole_body_to_parts(whole, expressions)
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=0, atol=0)


def test_parts_to_whole_body_inverts_whole_body_to_parts_except_the_eyes():
    from echomask.motion.parts import parts_to_whole_body, whole_body_to_parts

    arrays = random_smplx((2, 6))
    whole_body = smplx_to_whole_body(arrays["poses"], arrays["trans"], arrays["contact"])
    parts = whole_body_to_parts(whole_body, arrays["expressions"])
    parts["upper"] = parts["upper"] * 2.0  # non-orthonormal 6D is copied unchanged
    back = parts_to_whole_body(parts)
    assert back.shape == (2, 6, WHOLE_BODY_DIM) and back.dtype == torch.float64
    rot6d, back_rot6d = whole_body[..., :330].reshape(2, 6, NUM_JOINTS, 6), back[..., :330].reshape(2, 6, NUM_JOINTS, 6)
    owned = owned_joints()
    upper = list(PART_JOINTS["upper"])
    assert torch.equal(back_rot6d[..., upper, :], 2.0 * rot6d[..., upper, :])
    others = [joint for joint in owned if joint not in upper]
    assert torch.equal(back_rot6d[..., others, :], rot6d[..., others, :])
    identity = torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 0.0], dtype=torch.float64)
    assert torch.equal(back_rot6d[..., list(EYE_JOINTS), :], identity.expand(2, 6, 2, 6))
    assert torch.equal(back[..., 330:], whole_body[..., 330:])
    with pytest.raises(ValueError, match="missing: \\['face'\\]"):
        parts_to_whole_body({name: tensor for name, tensor in parts.items() if name != "face"})
