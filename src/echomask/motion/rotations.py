"""Rotation conversions: axis-angle, unit quaternion (w first), 3x3 matrix and 6D (SPEC §4.2).

Every function takes any number of leading dimensions, keeps the input dtype and device and is
differentiable. The conventions reproduce ``shared/golden/rot6d.npz``:

- axis-angle -> quaternion uses ``sin(a/2)/a``, replaced by its Taylor series ``0.5 - a²/48`` for
  angles below ``SMALL_ANGLE`` (1e-6 rad);
- matrix -> quaternion (``method="reference"``, the default) takes the square roots of the four
  diagonal combinations and copies the signs of the x, y, z parts from the antisymmetric part of
  the matrix; ``method="stable"`` is the accurate alternative for losses. w is never negative, so
  every returned rotation angle lies in [0, π];
- 6D = the first two ROWS of the matrix, flattened ``(m00 m01 m02 m10 m11 m12)``; the way back is
  Gram–Schmidt with ``b3 = b1 × b2``, the three vectors stacked as rows.
"""

import torch
import torch.nn.functional as F
from einops import rearrange, repeat

# Below this angle (radians) sin(a/2)/a is evaluated by its Taylor series (golden.json "rot6d").
SMALL_ANGLE = 1e-6


def _check_trailing_shape(tensor: torch.Tensor, shape: tuple[int, ...], name: str) -> None:
    if tensor.dim() < len(shape) or tuple(tensor.shape[-len(shape) :]) != shape:
        expected = ", ".join(str(size) for size in shape)
        raise ValueError(f"{name} must have shape (..., {expected}), got {tuple(tensor.shape)}")


def _sin_half_angle_over_angle(angles: torch.Tensor) -> torch.Tensor:
    """sin(a/2) / a, with the Taylor series 0.5 - a²/48 for |a| < SMALL_ANGLE. Same shape as `angles`."""
    small = angles.abs() < SMALL_ANGLE
    safe_angles = torch.where(small, torch.ones_like(angles), angles)
    return torch.where(small, 0.5 - angles * angles / 48, torch.sin(safe_angles * 0.5) / safe_angles)


def _sqrt_positive_part(x: torch.Tensor) -> torch.Tensor:
    """sqrt(max(x, 0)) with a zero (not infinite) gradient where x <= 0."""
    positive = x > 0
    return torch.where(positive, torch.sqrt(torch.where(positive, x, torch.ones_like(x))), torch.zeros_like(x))


def _with_sign_of(magnitude: torch.Tensor, sign_source: torch.Tensor) -> torch.Tensor:
    """`magnitude` (>= 0) negated where `sign_source` is negative (zero counts as positive)."""
    return torch.where(sign_source < 0, -magnitude, magnitude)


def axis_angle_to_quaternion(axis_angle: torch.Tensor) -> torch.Tensor:
    """(..., 3) axis-angle (direction = axis, norm = angle in radians) -> (..., 4) unit quaternion (w, x, y, z)."""
    _check_trailing_shape(axis_angle, (3,), "axis_angle")
    angles = torch.linalg.vector_norm(axis_angle, dim=-1, keepdim=True)
    return torch.cat([torch.cos(angles * 0.5), axis_angle * _sin_half_angle_over_angle(angles)], dim=-1)


def quaternion_to_axis_angle(quaternions: torch.Tensor) -> torch.Tensor:
    """(..., 4) unit quaternion (w, x, y, z) -> (..., 3) axis-angle; the angle is 2·atan2(|xyz|, w)."""
    _check_trailing_shape(quaternions, (4,), "quaternions")
    vector_norms = torch.linalg.vector_norm(quaternions[..., 1:], dim=-1, keepdim=True)
    angles = 2 * torch.atan2(vector_norms, quaternions[..., :1])
    return quaternions[..., 1:] / _sin_half_angle_over_angle(angles)


def quaternion_to_matrix(quaternions: torch.Tensor) -> torch.Tensor:
    """(..., 4) quaternion (w, x, y, z), any non-zero norm -> (..., 3, 3) rotation matrix."""
    _check_trailing_shape(quaternions, (4,), "quaternions")
    w, x, y, z = torch.unbind(quaternions, dim=-1)
    two_over_norm2 = 2.0 / (quaternions * quaternions).sum(dim=-1)
    entries = torch.stack(
        [
            1 - two_over_norm2 * (y * y + z * z),
            two_over_norm2 * (x * y - z * w),
            two_over_norm2 * (x * z + y * w),
            two_over_norm2 * (x * y + z * w),
            1 - two_over_norm2 * (x * x + z * z),
            two_over_norm2 * (y * z - x * w),
            two_over_norm2 * (x * z - y * w),
            two_over_norm2 * (y * z + x * w),
            1 - two_over_norm2 * (x * x + y * y),
        ],
        dim=-1,
    )
    return rearrange(entries, "... (row col) -> ... row col", row=3)


def _matrix_to_quaternion_reference(matrix: torch.Tensor) -> torch.Tensor:
    """Each |component| from a diagonal combination, x, y, z signed by the antisymmetric part."""
    m00, m01, m02 = matrix[..., 0, 0], matrix[..., 0, 1], matrix[..., 0, 2]
    m10, m11, m12 = matrix[..., 1, 0], matrix[..., 1, 1], matrix[..., 1, 2]
    m20, m21, m22 = matrix[..., 2, 0], matrix[..., 2, 1], matrix[..., 2, 2]
    w = 0.5 * _sqrt_positive_part(1 + m00 + m11 + m22)
    x = 0.5 * _sqrt_positive_part(1 + m00 - m11 - m22)
    y = 0.5 * _sqrt_positive_part(1 - m00 + m11 - m22)
    z = 0.5 * _sqrt_positive_part(1 - m00 - m11 + m22)
    return torch.stack(
        [
            w,
            _with_sign_of(x, m21 - m12),
            _with_sign_of(y, m02 - m20),
            _with_sign_of(z, m10 - m01),
        ],
        dim=-1,
    )


def _matrix_to_quaternion_stable(matrix: torch.Tensor) -> torch.Tensor:
    """Divide by the largest quaternion component (always >= 1/2), then make w >= 0."""
    m00, m01, m02 = matrix[..., 0, 0], matrix[..., 0, 1], matrix[..., 0, 2]
    m10, m11, m12 = matrix[..., 1, 0], matrix[..., 1, 1], matrix[..., 1, 2]
    m20, m21, m22 = matrix[..., 2, 0], matrix[..., 2, 1], matrix[..., 2, 2]
    # 2|w|, 2|x|, 2|y|, 2|z|; their squares sum to 4, so the largest is at least 1.
    twice_abs = _sqrt_positive_part(
        torch.stack([1 + m00 + m11 + m22, 1 + m00 - m11 - m22, 1 - m00 + m11 - m22, 1 - m00 - m11 + m22], dim=-1)
    )
    # Row k is 4·q_k·(w, x, y, z), written with products that only need the matrix entries.
    scaled_candidates = torch.stack(
        [
            torch.stack([twice_abs[..., 0] ** 2, m21 - m12, m02 - m20, m10 - m01], dim=-1),
            torch.stack([m21 - m12, twice_abs[..., 1] ** 2, m10 + m01, m02 + m20], dim=-1),
            torch.stack([m02 - m20, m10 + m01, twice_abs[..., 2] ** 2, m12 + m21], dim=-1),
            torch.stack([m10 - m01, m20 + m02, m21 + m12, twice_abs[..., 3] ** 2], dim=-1),
        ],
        dim=-2,
    )
    # Row k divided by 4|q_k| is ±q; rows with a small q_k are discarded (the clamp only keeps them finite).
    candidates = scaled_candidates / (2 * twice_abs.clamp_min(0.5)).unsqueeze(-1)
    best = repeat(twice_abs.argmax(dim=-1), "... -> ... 1 four", four=4)
    quaternions = candidates.gather(-2, best).squeeze(-2)
    return torch.where(quaternions[..., :1] < 0, -quaternions, quaternions)


_MATRIX_TO_QUATERNION_METHODS = {
    "reference": _matrix_to_quaternion_reference,
    "stable": _matrix_to_quaternion_stable,
}


def matrix_to_quaternion(matrix: torch.Tensor, method: str = "reference") -> torch.Tensor:
    """(..., 3, 3) rotation matrix -> (..., 4) unit quaternion (w, x, y, z) with w >= 0.

    method:
        "reference": the convention of the golden values (``rot6d.npz``): each component's size
            from a square root of a diagonal combination. It loses precision (up to ~2e-4 rad in
            float32) and has unbounded gradients where a component nears 0; use it to reproduce
            reference numbers.
        "stable": the other components divided by the largest one; accurate to rounding with
            bounded gradients everywhere except at exactly π. Use it inside losses.
    """
    _check_trailing_shape(matrix, (3, 3), "matrix")
    if method not in _MATRIX_TO_QUATERNION_METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {sorted(_MATRIX_TO_QUATERNION_METHODS)}")
    return _MATRIX_TO_QUATERNION_METHODS[method](matrix)


def axis_angle_to_matrix(axis_angle: torch.Tensor) -> torch.Tensor:
    """(..., 3) axis-angle -> (..., 3, 3) rotation matrix."""
    return quaternion_to_matrix(axis_angle_to_quaternion(axis_angle))


def matrix_to_axis_angle(matrix: torch.Tensor, method: str = "reference") -> torch.Tensor:
    """(..., 3, 3) rotation matrix -> (..., 3) axis-angle, angle in [0, π]; `method` as in `matrix_to_quaternion`."""
    return quaternion_to_axis_angle(matrix_to_quaternion(matrix, method=method))


def matrix_to_rot6d(matrix: torch.Tensor) -> torch.Tensor:
    """(..., 3, 3) rotation matrix -> (..., 6): its first two rows, flattened."""
    _check_trailing_shape(matrix, (3, 3), "matrix")
    return rearrange(matrix[..., :2, :], "... row col -> ... (row col)")


def rot6d_to_matrix(rot6d: torch.Tensor) -> torch.Tensor:
    """(..., 6) -> (..., 3, 3) rotation matrix by Gram–Schmidt; the input need not be orthonormal.

    Rows: b1 = normalise(first 3), b2 = normalise(second 3 minus its b1 component), b3 = b1 × b2.
    """
    _check_trailing_shape(rot6d, (6,), "rot6d")
    first, second = rot6d[..., :3], rot6d[..., 3:]
    row1 = F.normalize(first, dim=-1)
    row2 = F.normalize(second - (row1 * second).sum(dim=-1, keepdim=True) * row1, dim=-1)
    row3 = torch.cross(row1, row2, dim=-1)
    return torch.stack([row1, row2, row3], dim=-2)


def axis_angle_to_rot6d(axis_angle: torch.Tensor) -> torch.Tensor:
    """(..., 3) axis-angle -> (..., 6)."""
    return matrix_to_rot6d(axis_angle_to_matrix(axis_angle))


def rot6d_to_axis_angle(rot6d: torch.Tensor, method: str = "reference") -> torch.Tensor:
    """(..., 6) -> (..., 3) axis-angle with angle in [0, π]; `method` as in `matrix_to_quaternion`."""
    return matrix_to_axis_angle(rot6d_to_matrix(rot6d), method=method)


def geodesic_distance(matrix1: torch.Tensor, matrix2: torch.Tensor) -> torch.Tensor:
    """Angle in radians, in [0, π], of the rotation taking `matrix1` to `matrix2`: (..., 3, 3) x2 -> (...).

    Uses atan2(sin, cos) of the relative rotation, which is accurate (and has finite gradients) near
    0 and π, unlike acos of the trace.
    """
    _check_trailing_shape(matrix1, (3, 3), "matrix1")
    _check_trailing_shape(matrix2, (3, 3), "matrix2")
    relative = matrix1.transpose(-1, -2) @ matrix2
    cos_angle = (relative.diagonal(dim1=-2, dim2=-1).sum(dim=-1) - 1) / 2
    twice_sin_axis = torch.stack(
        [
            relative[..., 2, 1] - relative[..., 1, 2],
            relative[..., 0, 2] - relative[..., 2, 0],
            relative[..., 1, 0] - relative[..., 0, 1],
        ],
        dim=-1,
    )
    sin_angle = torch.linalg.vector_norm(twice_sin_axis, dim=-1) / 2
    return torch.atan2(sin_angle, cos_angle)
