"""Rotation conversions against shared/golden/rot6d.npz and on random rotations."""

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from echomask.motion.rotations import (
    axis_angle_to_matrix,
    axis_angle_to_quaternion,
    axis_angle_to_rot6d,
    geodesic_distance,
    matrix_to_axis_angle,
    matrix_to_quaternion,
    matrix_to_rot6d,
    quaternion_to_axis_angle,
    quaternion_to_matrix,
    rot6d_to_axis_angle,
    rot6d_to_matrix,
)

SHARED = Path(__file__).resolve().parents[2] / "shared"
needs_shared = pytest.mark.skipif(not SHARED.exists(), reason="../shared not present")

# golden.json "suggested_tolerances" / "rot6d".
TOLERANCE = {torch.float32: 1e-6, torch.float64: 1e-12}
NEAR_PI_TOLERANCE = 1e-6  # roundtrip axis-angle near π: compare rotations, not vectors
DTYPES = [torch.float32, torch.float64]


@pytest.fixture(scope="module")
def rot6d_golden():
    with np.load(SHARED / "golden" / "rot6d.npz") as arrays:
        return {name: arrays[name] for name in arrays.files}


def assert_close(actual: torch.Tensor, expected, atol: float) -> None:
    expected = torch.as_tensor(np.asarray(expected), dtype=actual.dtype)
    error = (actual - expected).abs().max().item()
    assert error <= atol, f"max abs error {error:.3e} > {atol:.0e}"


def random_axis_angle(count: int, dtype: torch.dtype, max_angle: float = math.pi - 1e-3, seed: int = 0):
    """(count, 3) axis-angles with uniform random axes and angles in [0, max_angle)."""
    generator = torch.Generator().manual_seed(seed)
    axes = torch.nn.functional.normalize(torch.randn(count, 3, generator=generator, dtype=torch.float64), dim=-1)
    angles = torch.rand(count, 1, generator=generator, dtype=torch.float64) * max_angle
    return (axes * angles).to(dtype)


def rotation_about(axis: int, angle: float, dtype=torch.float64) -> torch.Tensor:
    """3x3 rotation by `angle` radians about coordinate axis 0, 1 or 2."""
    axis_angle = torch.zeros(3, dtype=dtype)
    axis_angle[axis] = angle
    return axis_angle_to_matrix(axis_angle)


# ---------------------------------------------------------------------------- golden values


@needs_shared
@pytest.mark.parametrize("dtype", DTYPES)
def test_golden_real_poses(rot6d_golden, dtype):
    suffix = "_f64" if dtype == torch.float64 else ""
    atol = TOLERANCE[dtype]
    axis_angle = torch.from_numpy(rot6d_golden["axis_angle"]).to(dtype)
    matrix = axis_angle_to_matrix(axis_angle)
    assert matrix.dtype == dtype
    assert_close(matrix, rot6d_golden["matrix" + suffix], atol)
    rot6d = matrix_to_rot6d(matrix)
    assert_close(rot6d, rot6d_golden["rot6d" + suffix], atol)
    roundtrip_matrix = rot6d_to_matrix(rot6d)
    assert_close(roundtrip_matrix, rot6d_golden["roundtrip_matrix" + suffix], atol)
    assert_close(matrix_to_axis_angle(roundtrip_matrix), rot6d_golden["roundtrip_axis_angle" + suffix], atol)
    assert_close(rot6d_to_axis_angle(rot6d), rot6d_golden["roundtrip_axis_angle" + suffix], atol)


@needs_shared
def test_golden_edge_angles(rot6d_golden):
    axis_angle = torch.from_numpy(rot6d_golden["edge_axis_angle_f64"])
    angles = axis_angle.norm(dim=-1)
    matrix = axis_angle_to_matrix(axis_angle)
    assert_close(matrix, rot6d_golden["edge_matrix_f64"], TOLERANCE[torch.float64])
    rot6d = axis_angle_to_rot6d(axis_angle)
    assert_close(rot6d, rot6d_golden["edge_rot6d_f64"], TOLERANCE[torch.float64])
    roundtrip = rot6d_to_axis_angle(rot6d)
    expected = torch.from_numpy(rot6d_golden["edge_roundtrip_axis_angle_f64"])
    near_pi = (angles - math.pi).abs() < 1e-2
    assert near_pi.any() and (~near_pi).any()
    assert_close(roundtrip[~near_pi], expected[~near_pi], TOLERANCE[torch.float64])
    assert_close(axis_angle_to_matrix(roundtrip[near_pi]), axis_angle_to_matrix(expected[near_pi]), NEAR_PI_TOLERANCE)


@needs_shared
def test_golden_noisy_rot6d(rot6d_golden):
    noisy = torch.from_numpy(rot6d_golden["noisy_rot6d_f64"])
    matrix = rot6d_to_matrix(noisy)
    assert_close(matrix, rot6d_golden["noisy_rot6d_to_matrix_f64"], TOLERANCE[torch.float64])
    assert_close(matrix_to_rot6d(matrix), rot6d_golden["noisy_rot6d_reprojected_f64"], TOLERANCE[torch.float64])


# ---------------------------------------------------------------------------- properties


@pytest.mark.parametrize("dtype", DTYPES)
def test_matrices_are_rotations(dtype):
    matrix = axis_angle_to_matrix(random_axis_angle(1000, dtype, max_angle=4.0))
    identity = torch.eye(3, dtype=dtype).expand_as(matrix)
    atol = 1e-5 if dtype == torch.float32 else 1e-12
    assert_close(matrix @ matrix.transpose(-1, -2), identity, atol)
    assert_close(torch.linalg.det(matrix), torch.ones(1000, dtype=dtype), atol)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("method", "f32_atol", "f64_atol"), [("reference", 1e-3, 1e-6), ("stable", 1e-5, 1e-12)])
def test_axis_angle_roundtrip(dtype, method, f32_atol, f64_atol):
    axis_angle = random_axis_angle(1000, dtype)
    roundtrip = matrix_to_axis_angle(axis_angle_to_matrix(axis_angle), method=method)
    assert roundtrip.dtype == dtype
    assert_close(roundtrip, axis_angle, f32_atol if dtype == torch.float32 else f64_atol)


def test_stable_method_is_accurate_at_small_angles():
    axis_angle = random_axis_angle(200, torch.float64, max_angle=1e-5)
    roundtrip = matrix_to_axis_angle(axis_angle_to_matrix(axis_angle), method="stable")
    assert_close(roundtrip, axis_angle, 1e-15)


def test_stable_method_has_bounded_gradients():
    matrix = axis_angle_to_matrix(random_axis_angle(500, torch.float64)).requires_grad_()
    matrix_to_axis_angle(matrix, method="stable").sum().backward()
    assert torch.isfinite(matrix.grad).all()
    assert matrix.grad.abs().max() < 10


def test_angles_beyond_pi_come_back_as_the_same_rotation():
    axis_angle = random_axis_angle(100, torch.float64, max_angle=2 * math.pi)
    for method in ("reference", "stable"):
        roundtrip = matrix_to_axis_angle(axis_angle_to_matrix(axis_angle), method=method)
        assert (roundtrip.norm(dim=-1) <= math.pi + 1e-12).all()
        assert_close(axis_angle_to_matrix(roundtrip), axis_angle_to_matrix(axis_angle), 1e-6)


@pytest.mark.parametrize("dtype", DTYPES)
def test_rot6d_of_a_rotation_reproduces_it(dtype):
    matrix = axis_angle_to_matrix(random_axis_angle(1000, dtype, max_angle=4.0))
    atol = 1e-6 if dtype == torch.float32 else 1e-14
    assert_close(rot6d_to_matrix(matrix_to_rot6d(matrix)), matrix, atol)


def test_rot6d_is_the_first_two_rows():
    matrix = torch.arange(9, dtype=torch.float64).reshape(3, 3)
    assert matrix_to_rot6d(matrix).tolist() == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]


def test_rot6d_to_matrix_gives_a_rotation_for_any_input():
    generator = torch.Generator().manual_seed(1)
    rot6d = torch.randn(500, 6, generator=generator, dtype=torch.float64) * 3
    matrix = rot6d_to_matrix(rot6d)
    assert_close(matrix @ matrix.transpose(-1, -2), torch.eye(3, dtype=torch.float64).expand_as(matrix), 1e-12)
    assert_close(torch.linalg.det(matrix), torch.ones(500, dtype=torch.float64), 1e-12)
    # The first row keeps the direction of the first three numbers.
    assert_close(matrix[:, 0], torch.nn.functional.normalize(rot6d[:, :3], dim=-1), 1e-12)


def test_quaternion_roundtrip_up_to_sign():
    quaternions = axis_angle_to_quaternion(random_axis_angle(1000, torch.float64, max_angle=4.0))
    back = matrix_to_quaternion(quaternion_to_matrix(quaternions), method="stable")
    sign = torch.where(quaternions[:, :1] < 0, -1.0, 1.0).to(torch.float64)
    assert_close(back, quaternions * sign, 1e-12)
    # q and -q are the same rotation (-q comes back with an angle up to 2π, a few digits less precise).
    as_matrix = lambda q: axis_angle_to_matrix(quaternion_to_axis_angle(q))  # noqa: E731
    assert_close(as_matrix(-quaternions), as_matrix(quaternions), 1e-10)


@pytest.mark.parametrize("dtype", DTYPES)
def test_geodesic_distance(dtype):
    matrix = axis_angle_to_matrix(random_axis_angle(300, dtype, max_angle=4.0))
    assert geodesic_distance(matrix, matrix).abs().max() < (1e-3 if dtype == torch.float32 else 1e-7)
    angles = torch.linspace(0.0, math.pi, 300, dtype=torch.float64)
    turns = torch.stack([rotation_about(index % 3, angle.item()) for index, angle in enumerate(angles)]).to(dtype)
    distance = geodesic_distance(matrix, matrix @ turns)
    assert distance.dtype == dtype
    assert_close(distance, angles, 1e-5 if dtype == torch.float32 else 1e-12)
    assert_close(geodesic_distance(matrix @ turns, matrix), distance, 1e-5 if dtype == torch.float32 else 1e-12)


def test_any_leading_dims_and_dtype_kept():
    axis_angle = random_axis_angle(2 * 3 * 4, torch.float32).reshape(2, 3, 4, 3)
    matrix = axis_angle_to_matrix(axis_angle)
    assert matrix.shape == (2, 3, 4, 3, 3) and matrix.dtype == torch.float32
    assert axis_angle_to_rot6d(axis_angle).shape == (2, 3, 4, 6)
    assert rot6d_to_axis_angle(axis_angle_to_rot6d(axis_angle)).shape == (2, 3, 4, 3)
    assert geodesic_distance(matrix, matrix).shape == (2, 3, 4)
    assert axis_angle_to_matrix(torch.zeros(3)).shape == (3, 3)


def test_gradients():
    axis_angle = random_axis_angle(4, torch.float64, max_angle=3.0).requires_grad_()
    assert torch.autograd.gradcheck(axis_angle_to_matrix, (axis_angle,))
    rot6d = torch.randn(4, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(2)).requires_grad_()
    assert torch.autograd.gradcheck(rot6d_to_matrix, (rot6d,))
    target = axis_angle_to_matrix(random_axis_angle(4, torch.float64, seed=3))
    assert torch.autograd.gradcheck(lambda r6: geodesic_distance(rot6d_to_matrix(r6), target), (rot6d,))
    stable = lambda matrix: matrix_to_axis_angle(matrix, method="stable")  # noqa: E731
    assert torch.autograd.gradcheck(stable, (axis_angle_to_matrix(axis_angle.detach()).requires_grad_(),))


def test_gradients_are_finite_at_the_identity():
    axis_angle = torch.zeros(2, 3, dtype=torch.float64, requires_grad=True)
    matrix = axis_angle_to_matrix(axis_angle)
    loss = geodesic_distance(matrix, torch.eye(3, dtype=torch.float64)).sum() + matrix_to_axis_angle(matrix).sum()
    loss.backward()
    assert torch.isfinite(axis_angle.grad).all()


def test_bad_shapes_and_methods_are_reported():
    with pytest.raises(ValueError, match=r"axis_angle must have shape \(\.\.\., 3\)"):
        axis_angle_to_matrix(torch.zeros(4, 6))
    with pytest.raises(ValueError, match="rot6d"):
        rot6d_to_matrix(torch.zeros(4, 9))
    with pytest.raises(ValueError, match="matrix"):
        matrix_to_rot6d(torch.zeros(3))
    with pytest.raises(ValueError, match="unknown method"):
        matrix_to_axis_angle(torch.eye(3), method="fast")
