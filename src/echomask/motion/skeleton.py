"""SMPL-X 55-joint facts (tree, names, part joint lists) and an approximate rest skeleton (SPEC §4.2, §4.3).

The approximate rest skeleton is written from human proportions (a ~1.7 m adult), not from SMPL-X
data. Coordinates follow SMPL-X: metres, y up, the body facing +z, its left side towards +x, in the
T-pose (arms along ±x, palms down, thumbs forward).
"""

import numpy as np

NUM_JOINTS = 55

# Parent of each joint, -1 for the root (the SMPL-X kintree; spec/fgd_aeskconv.md §3).
SMPLX_PARENTS: tuple[int, ...] = (
    -1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 15, 15, 15,
    20, 25, 26, 20, 28, 29, 20, 31, 32, 20, 34, 35, 20, 37, 38,
    21, 40, 41, 21, 43, 44, 21, 46, 47, 21, 49, 50, 21, 52, 53,
)  # fmt: skip

_BODY_JOINT_NAMES = (
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2",
    "left_ankle", "right_ankle", "spine3", "left_foot", "right_foot", "neck",
    "left_collar", "right_collar", "head", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist",
    "jaw", "left_eye", "right_eye",
)  # fmt: skip
# Each hand: five fingers in SMPL-X order, three joints each (1 = knuckle ... 3 = last joint).
_FINGERS = ("index", "middle", "pinky", "ring", "thumb")
_HAND_JOINT_NAMES = tuple(
    f"{side}_{finger}{segment}" for side in ("left", "right") for finger in _FINGERS for segment in (1, 2, 3)
)
JOINT_NAMES: tuple[str, ...] = _BODY_JOINT_NAMES + _HAND_JOINT_NAMES

JAW_JOINT = 22
EYE_JOINTS = (23, 24)
UPPER_JOINTS = (3, 6, 9, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21)
HAND_JOINTS = tuple(range(25, 55))
LOWER_JOINTS = (0, 1, 2, 4, 5, 7, 8, 10, 11)
FOOT_JOINTS = (7, 8, 10, 11)  # ankles and feet, used for foot contact (SPEC §4.2)

# The root "offset" is the rest pelvis position in the model frame. SMPL-X puts its origin above
# the pelvis: BEAT2's `trans` has y ≈ 1.30 m for a standing speaker (mean over 2_scott_0_1_1), so a
# pelvis 0.35 m below the origin stands 0.95 m above a floor at y ≈ 0.
_CENTRE_OFFSETS = {
    "pelvis": (0.0, -0.35, 0.0),
    "spine1": (0.0, 0.11, -0.02),  # lower back
    "spine2": (0.0, 0.13, 0.01),  # mid back
    "spine3": (0.0, 0.05, 0.01),  # upper back, between the shoulder blades
    "neck": (0.0, 0.22, -0.03),  # base of the neck
    "head": (0.0, 0.09, 0.05),  # top of the neck / base of the skull
    "jaw": (0.0, -0.02, 0.03),  # jaw hinge
}
# Left-side offsets (name without "left_"); the right side is their mirror image (x -> -x).
_LEFT_OFFSETS = {
    "hip": (0.06, -0.09, 0.0),
    "knee": (0.01, -0.38, 0.0),  # thigh
    "ankle": (-0.01, -0.40, -0.04),  # shin
    "foot": (0.01, -0.06, 0.12),  # ankle to ball of the foot
    "collar": (0.07, 0.11, 0.0),
    "shoulder": (0.11, 0.03, -0.01),
    "elbow": (0.26, 0.0, -0.01),  # upper arm
    "wrist": (0.25, 0.0, 0.0),  # forearm
    "eye": (0.03, 0.06, 0.09),
    # Fingers: knuckle relative to the wrist, then the two phalanges.
    "index1": (0.088, -0.005, 0.025),
    "index2": (0.035, -0.002, 0.0),
    "index3": (0.024, -0.002, 0.0),
    "middle1": (0.094, -0.004, 0.004),
    "middle2": (0.038, -0.002, 0.0),
    "middle3": (0.026, -0.002, 0.0),
    "pinky1": (0.078, -0.008, -0.035),
    "pinky2": (0.027, -0.002, -0.004),
    "pinky3": (0.019, -0.002, -0.003),
    "ring1": (0.088, -0.006, -0.016),
    "ring2": (0.035, -0.002, -0.002),
    "ring3": (0.025, -0.002, -0.001),
    "thumb1": (0.028, -0.014, 0.030),  # base of the thumb, towards the palm and forward
    "thumb2": (0.028, -0.005, 0.020),
    "thumb3": (0.024, -0.003, 0.012),
}


def _rest_offset(joint_name: str) -> tuple[float, float, float]:
    if joint_name.startswith("left_"):
        return _LEFT_OFFSETS[joint_name.removeprefix("left_")]
    if joint_name.startswith("right_"):
        x, y, z = _LEFT_OFFSETS[joint_name.removeprefix("right_")]
        return (-x, y, z)
    return _CENTRE_OFFSETS[joint_name]


def approximate_rest_offsets() -> np.ndarray:
    """(55, 3) float32 metres: each joint's rest offset from its parent (the root's: from the model origin)."""
    return np.array([_rest_offset(name) for name in JOINT_NAMES], dtype=np.float32)


def joint_depths(parents: tuple[int, ...] = SMPLX_PARENTS) -> tuple[int, ...]:
    """Number of bones between each joint and the root (root = 0); parents must precede their children."""
    depths: list[int] = []
    for joint, parent in enumerate(parents):
        if parent >= joint:
            raise ValueError(f"joint {joint} has parent {parent}: parents must come before their children")
        depths.append(0 if parent < 0 else depths[parent] + 1)
    return tuple(depths)
