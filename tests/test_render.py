"""The motion video (issue 16): framing (a 3 m walk stays in frame), views, details, layout and the mp4's streams."""
import re
import subprocess

import imageio_ffmpeg
import numpy as np
import pytest
import torch

from echomask.motion.kinematics import build_kinematics
from echomask.motion.skeleton import JAW_JOINT, NUM_JOINTS, SMPLX_PARENTS
from echomask.render import (
    SIDE_COLOURS,
    VideoLayout,
    VideoWriter,
    fit_views,
    motion_video_frames,
    render_motion_video,
    render_skeleton_frames,
    skeleton_chains,
    write_video,
)

FPS = 30
WALK_METRES = 3.0
VIEW_PANELS = ("front", "side")


def gesturing(frames: int, seed: int = 0) -> dict[str, np.ndarray]:
    """SMPL-X arrays of a standing body whose arms, hands and jaw move (smooth random rotations)."""
    rng = np.random.default_rng(seed)
    time = np.arange(frames)[:, None] / FPS
    phases, rates = rng.uniform(0, 2 * np.pi, 165), rng.uniform(0.3, 2.0, 165)
    poses = (0.4 * np.sin(2 * np.pi * rates * time + phases)).astype(np.float32)
    poses[:, :3] = 0.0  # facing the front camera
    trans = np.zeros((frames, 3))
    trans[:, 1] = 1.3  # BEAT2's standing height of the SMPL-X origin
    expressions = rng.normal(scale=0.5, size=(frames, 100))
    return {"poses": poses, "trans": trans, "expressions": expressions}


def walking(frames: int, axis: int, metres: float = WALK_METRES, seed: int = 0) -> dict[str, np.ndarray]:
    motion = gesturing(frames, seed)
    motion["trans"][:, axis] = np.linspace(0.0, metres, frames)
    return motion


def joints_of(motion: dict) -> np.ndarray:
    with torch.no_grad():
        return build_kinematics()(torch.from_numpy(motion["poses"]), torch.from_numpy(motion["trans"]).float()).numpy()


def colour_mask(pixels: np.ndarray) -> np.ndarray:
    """(H, W) True where a pixel has a bone colour (left, right or centre)."""
    return np.any([np.all(pixels == colour, axis=-1) for colour in SIDE_COLOURS.values()], axis=0)


def crop(frame: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    left, top, width, height = box
    return frame[top : top + height, left : left + width]


# ---------------------------------------------------------------------------------------------------- framing


@pytest.mark.parametrize("axis", [0, 2], ids=["walk-along-x", "walk-along-z"])
def test_a_3_m_walk_keeps_every_joint_inside_both_view_panels(axis):
    joints = joints_of(walking(6 * FPS, axis))
    assert np.ptp(joints[:, 0, axis]) == pytest.approx(WALK_METRES, abs=0.01)
    layout = VideoLayout(("generated",), 512)
    views = fit_views([joints], layout.panel_widths, layout.height, FPS)[0]
    for name in VIEW_PANELS:
        columns, rows = np.moveaxis(views[name].pixels(joints), -1, 0)  # (T, 55) each: every joint of every frame
        assert (columns >= 0).all() and (columns < views[name].width).all(), name
        assert (rows >= 0).all() and (rows < layout.height).all(), name
    assert views["front"].scale * 1.7 > 0.55 * layout.height, "the body fills the panel's height, not a 3 m span"


@pytest.mark.parametrize("axis", [0, 2], ids=["walk-along-x", "walk-along-z"])
def test_the_drawn_walk_stays_off_the_panel_edges(axis):
    """Pixels: the body is drawn in every view panel of the first and last frame and never touches a panel's edge."""
    layout, count, frames = motion_video_frames({"generated": walking(4 * FPS, axis)}, fps=FPS)
    for index, frame in enumerate(frames):
        if index % 10 and index != count - 1:
            continue
        for name in VIEW_PANELS:
            body = colour_mask(crop(frame, layout.panel(0, name)))
            edges = np.concatenate([body[:3].ravel(), body[-3:].ravel(), body[:, :3].ravel(), body[:, -3:].ravel()])
            assert not edges.any(), f"frame {index}: the body touches the {name} panel's edge"
            if index in (0, count - 1):
                assert body.sum() > 200, f"frame {index}: no body in the {name} panel"


def test_the_strip_renderer_follows_a_walk_too():
    joints = joints_of(walking(90, axis=0))
    frames = render_skeleton_frames([joints], ["walk"], panel_size=128, every=30)
    assert frames.shape == (3, 128, 128, 3)
    for frame in frames:
        body = colour_mask(frame)
        assert body.sum() > 50 and not (body[:, :2].any() or body[:, -2:].any())


def test_the_camera_follows_the_smoothed_pelvis():
    joints = joints_of(walking(6 * FPS, axis=0))
    front = fit_views([joints], {"front": 384}, 512, FPS)[0]["front"]
    middle = slice(FPS, 5 * FPS)  # away from the ends, where the average is padded
    assert np.abs(front.centres[middle] - joints[middle, 0, 0]).max() < 0.01


# ------------------------------------------------------------------------------------------------ views, details


def test_the_side_view_looks_along_x():
    """In the T-pose the arms point along ±x: far apart from the front, one behind the other from the side."""
    motion = gesturing(2)
    motion["poses"][:] = 0.0
    joints = joints_of(motion)
    views = fit_views([joints], {"front": 384, "side": 307}, 512, FPS)[0]
    wrists = [20, 21]
    front, side = views["front"].pixels(joints)[0, wrists], views["side"].pixels(joints)[0, wrists]
    assert abs(front[0, 0] - front[1, 0]) > 100 and abs(side[0, 0] - side[1, 0]) < 1
    forward = views["side"].pixels(joints)[0, [15, 23]]  # head joint, left eye: the eyes are in front (+z)
    assert forward[1, 0] > forward[0, 0], "the body faces right in the side view"


def test_the_frame_is_at_least_512_pixels_high_with_both_views_and_the_details():
    layout, count, frames = motion_video_frames({"generated": gesturing(10)}, fps=FPS)
    frame = next(frames)
    assert frame.shape == (layout.size[1], layout.size[0], 3) and frame.dtype == np.uint8
    assert frame.shape[0] >= 512 and layout.height == 512 and count == 10
    assert all(size % 2 == 0 for size in layout.size)
    for name in (*VIEW_PANELS, "left hand", "right hand"):
        assert colour_mask(crop(frame, layout.panel(0, name))).sum() > 50, f"nothing drawn in the {name} panel"


def test_the_jaw_opens_the_mouth_and_fingers_move_in_the_close_ups():
    closed = gesturing(2)
    closed["poses"][:, 3 * JAW_JOINT : 3 * JAW_JOINT + 3] = 0.0
    opened = {**closed, "poses": closed["poses"].copy()}
    opened["poses"][:, 3 * JAW_JOINT] = 0.08
    layout, _, closed_frames = motion_video_frames({"a": closed})
    _, _, opened_frames = motion_video_frames({"a": opened})
    red = np.array(SIDE_COLOURS["right"])
    mouth_closed, mouth_opened = (
        np.all(crop(next(frames), layout.panel(0, "face")) == red, axis=-1).sum()
        for frames in (closed_frames, opened_frames)
    )
    assert mouth_opened > 2 * mouth_closed

    curled = {**closed, "poses": closed["poses"].copy()}
    curled["poses"][:, 3 * 25 : 3 * 40 : 3] += 1.0  # bend every left finger joint about x
    _, _, frames = motion_video_frames({"a": closed})
    _, _, curled_frames = motion_video_frames({"a": curled})
    left_hand, right_hand = (layout.panel(0, name) for name in ("left hand", "right hand"))
    plain, bent = next(frames), next(curled_frames)
    assert not np.array_equal(crop(plain, left_hand), crop(bent, left_hand))
    assert np.array_equal(crop(plain, right_hand), crop(bent, right_hand))


def test_the_time_display_changes_every_frame():
    layout, _, frames = motion_video_frames({"generated": gesturing(3)})
    band = [frame[layout.title_height + layout.height :] for frame in frames]
    assert not np.array_equal(band[0], band[1]) and not np.array_equal(band[1], band[2])


# -------------------------------------------------------------------------------------------- GT beside generated


def test_ground_truth_beside_generated_is_two_labelled_blocks():
    ground_truth, generated = walking(40, axis=0, metres=0.5), gesturing(60, seed=1)
    layout, count, frames = motion_video_frames({"ground truth": ground_truth, "generated": generated})
    single = VideoLayout(("generated",), 512)
    assert count == 40, "cropped to the shorter motion"
    assert layout.size[0] == 2 * single.block_width and layout.panel(1, "front")[0] == single.block_width
    frame = next(frames)
    for block in range(2):
        title = frame[: layout.title_height, block * layout.block_width : (block + 1) * layout.block_width]
        assert (title < 100).any(), f"block {block} has its label"
    assert not np.array_equal(crop(frame, layout.panel(0, "front")), crop(frame, layout.panel(1, "front")))


def test_bad_motions_are_named():
    with pytest.raises(ValueError, match="'generated' needs poses \\(T, 165\\)"):
        motion_video_frames({"generated": {"poses": np.zeros((5, 55, 3)), "trans": np.zeros((5, 3))}})
    with pytest.raises(ValueError, match="'gt' has expressions \\(5, 50\\)"):
        motion_video_frames({"gt": {**gesturing(5), "expressions": np.zeros((5, 50))}})
    with pytest.raises(ValueError, match="no motions"):
        motion_video_frames({})


def test_skeleton_chains_draw_every_bone_once():
    bones = {(chain[i], chain[i + 1]) for chain, _ in skeleton_chains() for i in range(len(chain) - 1)}
    expected = {(parent, joint) for joint, parent in enumerate(SMPLX_PARENTS) if parent >= 0 and joint not in (23, 24)}
    assert bones == expected and sum(len(chain) - 1 for chain, _ in skeleton_chains()) == NUM_JOINTS - 3


# ------------------------------------------------------------------------------------------------------- mp4


def probe(path) -> str:
    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i", str(path)]
    return subprocess.run(command, capture_output=True, text=True).stderr


def test_the_mp4_has_video_and_audio(tmp_path):
    seconds, sample_rate = 2, 16000
    audio = 0.1 * np.sin(2 * np.pi * 220 * np.arange(seconds * sample_rate) / sample_rate)
    motions = {"ground truth": gesturing(seconds * FPS), "generated": gesturing(seconds * FPS, seed=1)}
    path = render_motion_video(tmp_path / "clip.mp4", motions, fps=FPS, audio=audio, sample_rate=sample_rate)
    listing = probe(path)
    width, height = VideoLayout(tuple(motions), 512).size
    assert re.search(rf"Video: h264.*{width}x{height}", listing), listing
    assert "Audio: aac" in listing, listing
    hours, minutes, secs = re.search(r"Duration: (\d+):(\d+):([\d.]+)", listing).groups()
    assert (int(hours), int(minutes)) == (0, 0) and float(secs) == pytest.approx(seconds, abs=0.1)


def test_write_video_keeps_working_for_odd_sizes_and_rejects_wrong_frames(tmp_path):
    frames = np.full((4, 33, 47, 3), 200, dtype=np.uint8)
    assert "Video: h264" in probe(write_video(frames, tmp_path / "odd.mp4"))
    with pytest.raises(ValueError, match=r"frames must be \(33, 47, 3\) uint8"):
        with VideoWriter(tmp_path / "bad.mp4", (47, 33)) as writer:
            writer.write(np.zeros((32, 47, 3), dtype=np.uint8))
