"""Skeleton renders: motion videos a person can judge, frames and strips for TensorBoard, mp4 files with audio.

:func:`render_motion_video` draws one or more SMPL-X motions side by side (e.g. ground truth beside generated),
each as a labelled block of

* a **front** view (x right, y up: the body faces the camera) and a **side** view (z right: the body faces
  right), the same metres-per-pixel in both and in every block;
* a detail column: the **face** (a mouth opened by the jaw rotation, the jaw angle in rad with a bar, and the
  first ten expression coefficients as bars) and close-ups of the **left** and **right hand**;

above a time line (seconds, and a bar over the clip). The camera follows the root: each view's centre is the
pelvis' horizontal position averaged over :data:`CAMERA_SMOOTHING_SECONDS`, and the scale is chosen from the
whole clip so that every joint of every frame (and the head) lies inside its panel; walking shows as floor ticks
every :data:`FLOOR_TICK_METRES` moving under the body, and the root's position is printed.

Drawing is PIL's (one polyline per chain of the skeleton), one frame at a time, streamed into the ffmpeg binary
that ``imageio-ffmpeg`` ships: nothing needs installing and memory does not grow with the clip.
:func:`render_skeleton_frames` draws square front-view panels into an array (TensorBoard clips, notebook strips).
"""
from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from echomask.motion.skeleton import JAW_JOINT, JOINT_NAMES, SMPLX_PARENTS

if TYPE_CHECKING:
    from echomask.motion.kinematics import Kinematics

VIEW_AXES = {"front": 0, "side": 2}  # the world axis drawn to the right (y is up; SPEC §4.3 coordinates)
PELVIS, NECK, HEAD = 0, 12, 15
EYES = (23, 24)
WRISTS = {"left hand": 20, "right hand": 21}
HEAD_RADIUS = 0.1  # metres; the head is a circle above the head joint (the skeleton has no skull)
HEAD_CENTRE_ABOVE_JOINT = 0.09  # metres from the head joint along neck -> head
FRAMING_MARGIN = 0.05  # metres kept free around the body
CAMERA_SMOOTHING_SECONDS = 1.0  # the camera follows the pelvis averaged over this window
FLOOR_TICK_METRES = 0.5
HAND_MARGIN = 1.15  # the hand close-ups fit the farthest hand joint from the hand's centre over the clip, × this
# rad of jaw rotation drawn as a fully open mouth and a full jaw bar (BEAT2 2_scott_0_1_1: 99th percentile 0.051)
JAW_FULL_OPEN = 0.08
EXPRESSION_BARS = 10  # the first FLAME coefficients, drawn as bars
EXPRESSION_FULL_BAR = 2.0  # |coefficient| drawn as a full bar (larger values are clipped)
FRONT_WIDTH, SIDE_WIDTH = 0.75, 0.6  # view panel widths as fractions of the panel height
DETAIL_ROWS = 3  # face, left hand, right hand: the detail column is height / 3 wide
TITLE_FRACTION, TIME_FRACTION = 0.055, 0.05  # label and time bands as fractions of the panel height
X264_PRESET = "ultrafast"  # libx264 speed/size trade-off of the mp4s

WHITE, BLACK, GREY, LIGHT_GREY = (255, 255, 255), (30, 30, 30), (120, 120, 120), (200, 200, 200)
SIDE_COLOURS = {"left": (31, 119, 180), "right": (214, 39, 40), "centre": (60, 60, 60)}


# --------------------------------------------------------------------------------------------------- skeleton


def _side(joint: int) -> str:
    name = JOINT_NAMES[joint]
    return "left" if name.startswith("left_") else "right" if name.startswith("right_") else "centre"


@cache
def skeleton_chains() -> tuple[tuple[tuple[int, ...], str], ...]:
    """The bones (eyes excluded) as chains of joints, one polyline each, with their side ("left", "right",
    "centre"). A chain grows through joints with one child on the same side and starts anew at a branching joint.
    """
    children: dict[int, list[int]] = {}
    for joint, parent in enumerate(SMPLX_PARENTS):
        if parent >= 0 and joint not in EYES:
            children.setdefault(parent, []).append(joint)
    chains: list[list[int]] = []
    growing: dict[int, list[int]] = {}  # last joint -> its chain, while the chain can grow
    for joint, parent in enumerate(SMPLX_PARENTS):
        if parent < 0 or joint in EYES:
            continue
        chain = growing.pop(parent, None)
        if chain is None or len(children[parent]) > 1 or _side(joint) != _side(chain[-1]):
            chain = [parent, joint]
            chains.append(chain)
        else:
            chain.append(joint)
        growing[joint] = chain
    return tuple((tuple(chain), _side(chain[-1])) for chain in chains)


@cache
def hand_joints(wrist: int) -> tuple[int, ...]:
    """The wrist and the 15 finger joints of its hand."""
    return (wrist, *(joint for chain, _ in skeleton_chains() if chain[0] == wrist for joint in chain[1:]))


def head_centres(joints: np.ndarray) -> np.ndarray:
    """(..., 55, 3) joints -> (..., 3): centre of the drawn head circle, above the head joint along neck -> head."""
    direction = joints[..., HEAD, :] - joints[..., NECK, :]
    length = np.linalg.norm(direction, axis=-1, keepdims=True)
    return joints[..., HEAD, :] + HEAD_CENTRE_ABOVE_JOINT * direction / np.maximum(length, 1e-9)


# ---------------------------------------------------------------------------------------------------- framing


def _moving_average(values: np.ndarray, window: int) -> np.ndarray:
    """(T,) -> (T,) float64: centred mean over `window` frames, the ends padded with the edge values."""
    half = window // 2
    padded = np.pad(values.astype(np.float64), (half, half), mode="edge")
    sums = np.concatenate([[0.0], np.cumsum(padded)])
    return (sums[2 * half + 1 :] - sums[: len(padded) - 2 * half]) / (2 * half + 1)


@dataclass(frozen=True)
class ViewFraming:
    """Where one view of one motion lands in a ``width`` × ``height`` panel.

    ``centres`` (T,) is the camera's horizontal world coordinate (along ``axis``) per frame, ``scale`` pixels per
    metre, and the world height ``floor`` (the lowest joint) is drawn ``margin`` pixels above the panel's bottom.
    """

    axis: int
    centres: np.ndarray
    scale: float
    floor: float
    width: int
    height: int
    margin: float

    def pixels(self, points: np.ndarray, frames: np.ndarray | slice = slice(None)) -> np.ndarray:
        """(T', N, 3) world points at the given frames -> (T', N, 2) float (column, row) in the panel."""
        column = self.width / 2 + (points[..., self.axis] - self.centres[frames][:, None]) * self.scale
        row = self.height - self.margin - (points[..., 1] - self.floor) * self.scale
        return np.stack([column, row], axis=-1)


def fit_views(
    motions: Sequence[np.ndarray],
    panel_widths: Mapping[str, int],
    height: int,
    fps: float = 30.0,
) -> list[dict[str, ViewFraming]]:
    """Frame each motion's views so that the whole body (and its head circle) is inside its panel in every frame.

    One scale (pixels per metre) for every view of every motion, so that sizes compare; each view's camera follows
    its motion's pelvis (moving average over :data:`CAMERA_SMOOTHING_SECONDS`); one floor, the lowest joint.

    Args:
        motions: joint positions, each (T, 55, 3) metres, y up.
        panel_widths: pixels per view name (keys of :data:`VIEW_AXES`); every panel is ``height`` pixels high.
    Returns:
        One {view name: ViewFraming} per motion.
    """
    window = max(1, round(CAMERA_SMOOTHING_SECONDS * fps))
    heads = [head_centres(joints) for joints in motions]
    floor = min(float(joints[..., 1].min()) for joints in motions)
    top = max(max(joints[..., 1].max(), head[:, 1].max() + HEAD_RADIUS) for joints, head in zip(motions, heads))
    scale = height / (top - floor + 2 * FRAMING_MARGIN)
    centres = []
    for joints, head in zip(motions, heads):
        centres.append({view: _moving_average(joints[:, PELVIS, VIEW_AXES[view]], window) for view in panel_widths})
        for view, width in panel_widths.items():
            axis, centre = VIEW_AXES[view], centres[-1][view]
            reach = max(
                np.abs(joints[..., axis] - centre[:, None]).max(),
                np.abs(head[:, axis] - centre).max() + HEAD_RADIUS,
            )
            scale = min(scale, width / (2 * (reach + FRAMING_MARGIN)))
    # the body's height, with its margins, centred in the panel
    above_floor = (height - (top - floor + 2 * FRAMING_MARGIN) * scale) / 2 + FRAMING_MARGIN * scale
    return [
        {
            view: ViewFraming(VIEW_AXES[view], motion_centres[view], scale, floor, width, height, above_floor)
            for view, width in panel_widths.items()
        }
        for motion_centres in centres
    ]


# ---------------------------------------------------------------------------------------------------- drawing


@cache
def _font(size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=size)


def _line_width(height: int) -> int:
    return max(1, round(height / 170))


def _draw_skeleton(draw: ImageDraw.ImageDraw, pixels: np.ndarray, offset: tuple[int, int], width: int) -> None:
    """The bones of one frame: (55, 2) panel pixels; the panel's top-left corner is at `offset` in the image."""
    shifted = pixels + np.asarray(offset)
    for chain, side in skeleton_chains():
        draw.line(shifted[list(chain)].ravel().tolist(), fill=SIDE_COLOURS[side], width=width, joint="curve")


def _draw_head(
    draw: ImageDraw.ImageDraw,
    centre: np.ndarray,
    eyes: np.ndarray,
    radius: float,
    offset: tuple[int, int],
    width: int,
) -> None:
    """The head circle around `centre` (2,) and the two eyes (2, 2), in panel pixels."""
    x, y = centre + np.asarray(offset)
    draw.ellipse([x - radius, y - radius, x + radius, y + radius], outline=SIDE_COLOURS["centre"], width=width)
    dot = max(1.5, 0.8 * width)
    for (eye_x, eye_y), side in zip(eyes + np.asarray(offset), ("left", "right")):
        draw.ellipse([eye_x - dot, eye_y - dot, eye_x + dot, eye_y + dot], fill=SIDE_COLOURS[side])


def _draw_floor(draw: ImageDraw.ImageDraw, framing: ViewFraming, frame: int, offset: tuple[int, int]) -> None:
    """The floor line with ticks at world multiples of FLOOR_TICK_METRES (they move when the camera does)."""
    left, top = offset
    row = top + framing.height - framing.margin
    draw.line([left, row, left + framing.width - 1, row], fill=LIGHT_GREY, width=1)
    half_span = framing.width / 2 / framing.scale
    centre = framing.centres[frame]
    for tick in np.arange(np.ceil((centre - half_span) / FLOOR_TICK_METRES), (centre + half_span) / FLOOR_TICK_METRES):
        column = left + framing.width / 2 + (tick * FLOOR_TICK_METRES - centre) * framing.scale
        draw.line([column, row, column, row + 0.6 * FRAMING_MARGIN * framing.scale], fill=LIGHT_GREY, width=1)


def _draw_view(
    draw: ImageDraw.ImageDraw,
    framing: ViewFraming,
    frame: int,
    pixels: np.ndarray,
    head: np.ndarray,
    offset: tuple[int, int],
    width: int,
) -> None:
    """Floor, bones and head of one frame in one view panel; `pixels` (55, 2) and `head` (2,) in panel pixels."""
    _draw_floor(draw, framing, frame, offset)
    _draw_skeleton(draw, pixels, offset, width)
    _draw_head(draw, head, pixels[list(EYES)], HEAD_RADIUS * framing.scale, offset, width)


def _project(framing: ViewFraming, joints: np.ndarray, frames: np.ndarray | slice = slice(None)) -> tuple:
    """(T', 55, 2) joint pixels and (T', 2) head-centre pixels of (T', 55, 3) joints at `frames`."""
    return framing.pixels(joints, frames), framing.pixels(head_centres(joints)[:, None], frames)[:, 0]


def render_skeleton_frames(
    motions: list[np.ndarray],
    titles: list[str] | None = None,
    panel_size: int = 256,
    every: int = 1,
) -> np.ndarray:
    """Draw each frame of one or more joint sequences side by side: front views, the camera following the pelvis.

    Args:
        motions: joint positions, each (T, 55, 3) in metres (y up); all must share T.
        titles: one title per panel.
        panel_size: pixels per (square) panel.
        every: draw every `every`-th frame.
    Returns:
        (T', H, W, 3) uint8 frames, T' = ceil(T / every), H = panel_size, W = len(motions) · panel_size.
    """
    lengths = {len(m) for m in motions}
    if len(lengths) != 1:
        raise ValueError(f"all motions must have the same number of frames, got {sorted(lengths)}")
    if any(m.ndim != 3 or m.shape[1:] != (55, 3) for m in motions):
        raise ValueError(f"motions must be (T, 55, 3) joint positions, got {[m.shape for m in motions]}")
    titles = titles or [""] * len(motions)
    font = _font(max(8, panel_size // 22))
    title_band = sum(font.getmetrics()) + 2 if any(titles) else 0  # the body is drawn below the titles
    framings = [views["front"] for views in fit_views(motions, {"front": panel_size}, panel_size - title_band)]
    background = Image.new("RGB", (panel_size * len(motions), panel_size), WHITE)
    for index, title in enumerate(titles):
        ImageDraw.Draw(background).text(((index + 0.5) * panel_size, 1), title, fill=BLACK, font=font, anchor="ma")
    picks = np.arange(0, next(iter(lengths)), every)
    projected = [_project(framing, motion[picks], picks) for framing, motion in zip(framings, motions)]
    frames = np.empty((len(picks), panel_size, panel_size * len(motions), 3), dtype=np.uint8)
    width = _line_width(panel_size)
    for index, frame in enumerate(picks):
        image = background.copy()
        draw = ImageDraw.Draw(image)
        for panel, (framing, (pixels, heads)) in enumerate(zip(framings, projected)):
            _draw_view(draw, framing, frame, pixels[index], heads[index], (panel * panel_size, title_band), width)
        frames[index] = np.asarray(image)
    return frames


def frame_strip(frames: np.ndarray, count: int = 6) -> np.ndarray:
    """`count` evenly spaced frames of (T, H, W, 3) placed one above the other: (count·H, W, 3).

    A still summary of a clip for TensorBoard's image tab.
    """
    picks = np.linspace(0, len(frames) - 1, num=min(count, len(frames))).round().astype(int)
    return np.concatenate([frames[i] for i in picks], axis=0)


# ------------------------------------------------------------------------------------------------ motion video


@dataclass(frozen=True)
class VideoLayout:
    """Pixel layout of a motion video: one block (front, side, detail column) per label, side by side, under a
    label band and above a time band. ``panel(block, name)`` gives a panel's (left, top, width, height)."""

    labels: tuple[str, ...]
    height: int  # of the view panels

    @property
    def panel_widths(self) -> dict[str, int]:
        return {"front": round(FRONT_WIDTH * self.height), "side": round(SIDE_WIDTH * self.height)}

    @property
    def detail_size(self) -> int:
        return self.height // DETAIL_ROWS

    @property
    def block_width(self) -> int:
        return sum(self.panel_widths.values()) + self.detail_size

    @property
    def title_height(self) -> int:
        return 2 * round(TITLE_FRACTION * self.height / 2)

    @property
    def time_height(self) -> int:
        return 2 * round(TIME_FRACTION * self.height / 2)

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of a frame, both even (H.264 in yuv420p needs even sizes)."""
        width = self.block_width * len(self.labels)
        return width + width % 2, self.title_height + self.height + self.time_height

    def panel(self, block: int, name: str) -> tuple[int, int, int, int]:
        """(left, top, width, height) of panel `name` ("front", "side", "face", "left hand", "right hand")."""
        left, top = block * self.block_width, self.title_height
        widths = self.panel_widths
        if name in widths:
            return (left + (0 if name == "front" else widths["front"]), top, widths[name], self.height)
        row = ("face", *WRISTS).index(name)
        return (left + sum(widths.values()), top + row * self.detail_size, self.detail_size, self.detail_size)

    @property
    def small_font_size(self) -> int:
        return max(9, self.height // 40)

    def time_bar(self, fraction: float) -> tuple[float, float, float, float]:
        """(left, top, right, bottom) of the first `fraction` of the time bar."""
        width, _ = self.size
        left, right = 0.45 * width, width - 8
        top = self.title_height + self.height + 0.3 * self.time_height
        return left, top, left + (right - left) * fraction, top + 0.4 * self.time_height


@dataclass(frozen=True)
class _Block:
    """What one motion's block draws."""

    joints: np.ndarray  # (T, 55, 3) metres
    views: dict[str, ViewFraming]
    jaw: np.ndarray  # (T,) rad: the jaw rotation's angle
    expressions: np.ndarray  # (T, EXPRESSION_BARS)
    trans: np.ndarray  # (T, 3) metres


@dataclass(frozen=True)
class _FacePanel:
    """The face panel in a square box (left, top, size): a face whose mouth opens with the jaw angle, a jaw bar
    with the angle in rad, and the first expression coefficients as bars around a zero line."""

    left: float
    top: float
    size: float

    def at(self, x: float, y: float) -> tuple[float, float]:
        """Pixels of a point given in fractions of the panel's size."""
        return self.left + x * self.size, self.top + y * self.size

    @property
    def font_size(self) -> int:
        return max(9, round(self.size / 12))

    @property
    def face(self) -> tuple[float, float, float]:
        """Centre (x, y) and radius of the face circle."""
        return (*self.at(0.3, 0.33), 0.2 * self.size)

    @property
    def jaw_bar(self) -> tuple[float, float, float, float]:
        """(left, top, right, bottom) of the jaw bar; its text starts right of it."""
        return (*self.at(0.6, 0.13), *self.at(0.67, 0.53))

    def jaw_text(self, line: int) -> tuple[float, float]:
        return self.at(0.7, 0.13 + line * 1.2 / 12)

    def draw_static(self, draw: ImageDraw.ImageDraw) -> None:
        x, y, radius = self.face
        draw.ellipse([x - radius, y - radius, x + radius, y + radius], outline=GREY, width=2)
        for eye_x in (x - 0.35 * radius, x + 0.35 * radius):
            draw.ellipse([eye_x - 2, y - 0.35 * radius - 2, eye_x + 2, y - 0.35 * radius + 2], fill=GREY)
        draw.rectangle(self.jaw_bar, outline=GREY)
        font = _font(self.font_size)
        draw.text(self.jaw_text(0), "jaw", fill=BLACK, font=font)
        draw.text(self.jaw_text(2), "rad", fill=BLACK, font=font)
        draw.line([*self.at(0.05, 0.79), *self.at(0.95, 0.79)], fill=LIGHT_GREY)
        draw.text(self.at(0.03, 0.98), f"expressions 1-{EXPRESSION_BARS}", fill=GREY, font=font, anchor="ld")

    def draw(self, draw: ImageDraw.ImageDraw, jaw: float, expressions: np.ndarray) -> None:
        """The mouth, the jaw bar's level and the expression bars of one frame."""
        opening = float(np.clip(jaw / JAW_FULL_OPEN, 0.0, 1.0))
        x, y, radius = self.face
        mouth_y, half_width, half_height = y + 0.4 * radius, 0.45 * radius, 1 + 0.4 * radius * opening
        mouth = [x - half_width, mouth_y - half_height, x + half_width, mouth_y + half_height]
        draw.ellipse(mouth, fill=SIDE_COLOURS["right"])
        left, top, right, bottom = self.jaw_bar
        draw.rectangle([left, top + (bottom - top) * (1 - opening), right, bottom], fill=SIDE_COLOURS["right"])
        (left, zero), half, step = self.at(0.05, 0.79), 0.13 * self.size, 0.9 * self.size / EXPRESSION_BARS
        for index, value in enumerate(np.clip(expressions / EXPRESSION_FULL_BAR, -1.0, 1.0)):
            x, level = left + index * step, zero - value * half
            draw.rectangle([x + 1, min(zero, level), x + step - 2, max(zero, level)], fill=GREY)

    def stamp(self, pixels: np.ndarray, jaw: float) -> None:
        """The jaw angle's digits."""
        _stamp(pixels, self.jaw_text(1), f"{jaw:.3f}", self.font_size, BLACK)


@cache
def _glyph(character: str, size: int, colour: tuple[int, int, int]) -> np.ndarray:
    """(H, W, 3) uint8: one character on white, as wide as the font advances, as high as its ascent + descent."""
    font = _font(size)
    glyph = Image.new("RGB", (max(1, round(font.getlength(character))), sum(font.getmetrics())), WHITE)
    ImageDraw.Draw(glyph).text((0, 0), character, fill=colour, font=font)
    return np.asarray(glyph)


def _stamp(
    pixels: np.ndarray,
    position: tuple[float, float],
    text: str,
    size: int,
    colour: tuple[int, int, int],
) -> None:
    """Write text that changes every frame into (H, W, 3) `pixels` from cached glyphs (PIL's text drawing is
    the slowest call of a frame); `position` is the top-left corner; the darker of text and picture wins."""
    x, y = round(position[0]), round(position[1])
    for character in text:
        glyph = _glyph(character, size, colour)
        region = pixels[y : y + glyph.shape[0], x : x + glyph.shape[1]]
        np.minimum(region, glyph[: region.shape[0], : region.shape[1]], out=region)
        x += glyph.shape[1]


def _background(layout: VideoLayout) -> Image.Image:
    """Everything that does not move: labels, panel frames and names, the face panel's fixed parts, the time bar."""
    image = Image.new("RGB", layout.size, WHITE)
    draw = ImageDraw.Draw(image)
    label_font, small = _font(round(0.6 * layout.title_height)), _font(layout.small_font_size)
    for block, label in enumerate(layout.labels):
        centre = (block + 0.5) * layout.block_width
        draw.text((centre, layout.title_height / 2), label, fill=BLACK, font=label_font, anchor="mm")
        for name in ("front", "side", "face", *WRISTS):
            left, top, width, height = layout.panel(block, name)
            draw.rectangle([left, top, left + width - 1, top + height - 1], outline=LIGHT_GREY)
            draw.text((left + 4, top + 3), name, fill=GREY, font=small)
        _FacePanel(*layout.panel(block, "face")[:3]).draw_static(draw)
    draw.rectangle(layout.time_bar(1.0), outline=GREY)
    return image


def _hand_scale(motions: Sequence[np.ndarray], size: int) -> float:
    """Pixels per metre of the hand close-ups (front view, centred on the hand): every hand joint of every frame
    of every motion fits."""
    reach = 1e-3
    for joints in motions:
        for wrist in WRISTS.values():
            hand = joints[:, list(hand_joints(wrist))][..., :2]  # x, y
            reach = max(reach, float(np.abs(hand - hand.mean(axis=1, keepdims=True)).max()))
    return size / 2 / (HAND_MARGIN * reach)


def _draw_hand(
    draw: ImageDraw.ImageDraw,
    box: tuple[int, int, int, int],
    joints: np.ndarray,
    wrist: int,
    scale: float,
    width: int,
) -> None:
    """A front-view close-up of one hand of (55, 3) joints, centred on the mean of its joints."""
    left, top, size, _ = box
    hand = joints[list(hand_joints(wrist))][:, :2]
    relative = (hand - hand.mean(axis=0)) * scale
    pixels = {joint: (left + size / 2 + x, top + size / 2 - y) for joint, (x, y) in zip(hand_joints(wrist), relative)}
    for chain, side in skeleton_chains():
        if chain[0] == wrist:
            draw.line([pixels[joint] for joint in chain], fill=SIDE_COLOURS[side], width=width, joint="curve")


def _stamp_time(pixels: np.ndarray, layout: VideoLayout, frame: int, frames: int, fps: float) -> None:
    top = layout.title_height + layout.height
    text = f"{frame / fps:6.2f} s / {frames / fps:.2f} s    frame {frame + 1} / {frames}"
    size = round(0.6 * layout.time_height)
    _stamp(pixels, (6, top + (layout.time_height - sum(_font(size).getmetrics())) / 2), text, size, BLACK)


def _check_arrays(label: str, arrays: Mapping[str, np.ndarray]) -> None:
    poses, trans = np.asarray(arrays["poses"]), np.asarray(arrays["trans"])
    if poses.ndim != 2 or poses.shape[1] != 165 or len(poses) == 0 or trans.shape != (len(poses), 3):
        raise ValueError(
            f"motion video: {label!r} needs poses (T, 165) and trans (T, 3), got {poses.shape} and {trans.shape}"
        )
    expressions = arrays.get("expressions")
    if expressions is not None and np.shape(expressions) != (len(poses), 100):
        expected = (len(poses), 100)
        raise ValueError(f"motion video: {label!r} has expressions {np.shape(expressions)}, expected {expected}")


def motion_video_frames(
    motions: Mapping[str, Mapping[str, np.ndarray]],
    height: int = 512,
    fps: float = 30.0,
    kinematics: Kinematics | None = None,
) -> tuple[VideoLayout, int, Iterator[np.ndarray]]:
    """The frames of :func:`render_motion_video`, one (H, W, 3) uint8 array at a time.

    Args:
        motions: label -> SMPL-X arrays (``poses`` (T, 165) axis-angle, ``trans`` (T, 3) metres, optional
            ``expressions`` (T, 100)), drawn left to right; all are cropped to the shortest.
        height: pixels of the view panels (a frame adds a label band above and a time band below).
        kinematics: joints from poses; default the approximate skeleton (``build_kinematics()``).
    Returns:
        The layout, the number of frames and an iterator over them.
    """
    import torch

    from echomask.motion.kinematics import build_kinematics

    if not motions:
        raise ValueError("motion video: no motions to draw")
    for label, arrays in motions.items():
        _check_arrays(label, arrays)
    frames = min(len(arrays["poses"]) for arrays in motions.values())
    kinematics = build_kinematics() if kinematics is None else kinematics
    layout = VideoLayout(tuple(motions), height)
    joints = []
    with torch.no_grad():
        for arrays in motions.values():
            poses = torch.as_tensor(np.asarray(arrays["poses"][:frames]), dtype=torch.float32)
            trans = torch.as_tensor(np.asarray(arrays["trans"][:frames]), dtype=torch.float32)
            joints.append(kinematics(poses, trans).numpy().astype(np.float64))
    blocks = []
    framings = fit_views(joints, layout.panel_widths, height, fps)
    for arrays, motion_joints, views in zip(motions.values(), joints, framings):
        expressions = arrays.get("expressions")
        expressions = np.zeros((frames, EXPRESSION_BARS)) if expressions is None else np.asarray(expressions)[:frames]
        jaw = np.linalg.norm(np.asarray(arrays["poses"][:frames, 3 * JAW_JOINT : 3 * JAW_JOINT + 3]), axis=-1)
        trans = np.asarray(arrays["trans"][:frames], dtype=np.float64)
        blocks.append(_Block(motion_joints, views, jaw, expressions[:, :EXPRESSION_BARS], trans))
    return layout, frames, _frames(layout, blocks, frames, fps, _hand_scale(joints, layout.detail_size))


def _frames(
    layout: VideoLayout,
    blocks: list[_Block],
    frames: int,
    fps: float,
    hand_scale: float,
) -> Iterator[np.ndarray]:
    background = _background(layout)
    width = _line_width(layout.height)
    small = layout.small_font_size
    projected = [{view: _project(framing, block.joints) for view, framing in block.views.items()} for block in blocks]
    faces = [_FacePanel(*layout.panel(index, "face")[:3]) for index in range(len(blocks))]
    for frame in range(frames):
        image = background.copy()
        draw = ImageDraw.Draw(image)
        for index, (block, views, face) in enumerate(zip(blocks, projected, faces)):
            for view, (pixels, heads) in views.items():
                left, top, _, _ = layout.panel(index, view)
                _draw_view(draw, block.views[view], frame, pixels[frame], heads[frame], (left, top), width)
            face.draw(draw, float(block.jaw[frame]), block.expressions[frame])
            for name, wrist in WRISTS.items():
                _draw_hand(draw, layout.panel(index, name), block.joints[frame], wrist, hand_scale, width)
        draw.rectangle(layout.time_bar((frame + 1) / frames), fill=GREY)
        pixels = np.array(image)
        for index, (block, face) in enumerate(zip(blocks, faces)):
            left, top, _, panel_height = layout.panel(index, "front")
            x, _, z = block.trans[frame]
            text_top = top + panel_height - 3 - sum(_font(small).getmetrics())
            _stamp(pixels, (left + 4, text_top), f"root x {x:+.2f} m  z {z:+.2f} m", small, GREY)
            face.stamp(pixels, float(block.jaw[frame]))
        _stamp_time(pixels, layout, frame, frames, fps)
        yield pixels


def render_motion_video(
    path: str | Path,
    motions: Mapping[str, Mapping[str, np.ndarray]],
    fps: float = 30.0,
    audio: np.ndarray | None = None,
    sample_rate: int = 16000,
    height: int = 512,
    kinematics: Kinematics | None = None,
    progress: bool = False,
) -> Path:
    """An mp4 of SMPL-X motions side by side (module docstring) with mono audio muxed in when given.

    Args:
        path: the mp4 to write (its folder is created).
        motions: label -> SMPL-X arrays, e.g. ``{"ground truth": gt, "generated": pred}`` (see
            :func:`motion_video_frames`); cropped to the shortest.
        audio: (N,) float samples at ``sample_rate``; the video ends with the shorter of motion and audio.
        height: pixels of the view panels.
        progress: show a progress bar over the frames.
    Returns:
        The mp4's path.
    """
    from tqdm.auto import tqdm

    layout, count, frames = motion_video_frames(motions, height=height, fps=fps, kinematics=kinematics)
    with VideoWriter(path, layout.size, fps=fps, audio=audio, sample_rate=sample_rate) as writer:
        for frame in tqdm(frames, total=count, desc="render", unit="frame", disable=not progress):
            writer.write(frame)
    return Path(path)


# ------------------------------------------------------------------------------------------------- mp4 writer


class VideoWriter:
    """Stream (H, W, 3) uint8 frames into an H.264 mp4 through the ffmpeg binary of ``imageio-ffmpeg``.

    A context manager: ``with VideoWriter(path, (width, height), audio=...) as writer: writer.write(frame)``.
    Mono float ``audio`` at ``sample_rate`` is muxed in as AAC and the file ends with the shorter stream; odd
    sizes are padded to even ones (yuv420p needs them).
    """

    def __init__(
        self,
        path: str | Path,
        size: tuple[int, int],
        fps: float = 30.0,
        audio: np.ndarray | None = None,
        sample_rate: int = 16000,
        preset: str = X264_PRESET,
    ) -> None:
        self.path = Path(path)
        self.size = size
        self.fps = fps
        self.audio = audio
        self.sample_rate = sample_rate
        self.preset = preset

    def __enter__(self) -> VideoWriter:
        import imageio_ffmpeg
        import soundfile

        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._scratch = tempfile.TemporaryDirectory()
        width, height = self.size
        command = [imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24"]
        command += ["-s", f"{width}x{height}", "-r", str(self.fps), "-i", "-"]
        if self.audio is not None:
            wav = Path(self._scratch.name) / "audio.wav"
            soundfile.write(wav, np.asarray(self.audio, dtype=np.float32), self.sample_rate, subtype="PCM_16")
            command += ["-i", str(wav), "-c:a", "aac", "-shortest"]
        command += ["-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2", "-c:v", "libx264", "-preset", self.preset]
        command += ["-pix_fmt", "yuv420p", str(self.path)]
        self._log = open(Path(self._scratch.name) / "ffmpeg.log", "w+b")  # noqa: SIM115 (closed in __exit__)
        self._process = subprocess.Popen(command, stdin=subprocess.PIPE, stderr=self._log)
        return self

    def write(self, frame: np.ndarray) -> None:
        """Append one (H, W, 3) uint8 frame of the writer's size."""
        width, height = self.size
        if frame.shape != (height, width, 3) or frame.dtype != np.uint8:
            expected = f"({height}, {width}, 3) uint8"
            raise ValueError(f"{self.path}: frames must be {expected}, got {frame.shape} {frame.dtype}")
        try:
            self._process.stdin.write(np.ascontiguousarray(frame).tobytes())
        except BrokenPipeError:
            self._raise_ffmpeg_error()

    def _raise_ffmpeg_error(self) -> None:
        self._process.wait()
        self._log.seek(0)
        message = self._log.read().decode(errors="replace").strip() or f"exit status {self._process.returncode}"
        raise RuntimeError(f"ffmpeg could not write {self.path}: {message}")

    def __exit__(self, error_type, error, traceback) -> None:
        try:
            try:
                self._process.stdin.close()
            except BrokenPipeError:
                pass
            if self._process.wait() != 0 and error_type is None:
                self._raise_ffmpeg_error()
        finally:
            self._log.close()
            self._scratch.cleanup()


def write_video(
    frames: np.ndarray,
    path: str | Path,
    fps: float = 30.0,
    audio: np.ndarray | None = None,
    sample_rate: int = 16000,
) -> Path:
    """Write (T, H, W, 3) uint8 frames to an H.264 mp4, muxing in mono float audio when given."""
    height, width = frames.shape[1:3]
    with VideoWriter(path, (width, height), fps=fps, audio=audio, sample_rate=sample_rate) as writer:
        for frame in frames:
            writer.write(frame)
    return Path(path)
