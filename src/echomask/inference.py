"""Inference: speech features -> whole-body SMPL-X motion by sliding windows (SPEC §6.6).

:class:`MotionSynthesizer` holds everything inference needs: the stage-2 generator, the frozen
stage-1 RVQ-VAEs (one per part) and the global-translation model. For T frames of speech features:

1. Windows of ``window`` = 64 frames start every ``stride`` = 60 frames; the speech features are
   padded (last frame repeated) to ``seed_frames + stride · n`` >= T frames so that no frame is
   dropped, and the result is cropped back to T.
2. Window 0 is seeded with the given seed motion (ground truth on the test split, a neutral pose
   or a user npz for any audio: :func:`neutral_seed`, :func:`seed_from_npz`); every later window by
   the last ``seed_frames`` = 4 frames decoded from the previous window's tokens. These are also
   the later window's first 4 frames in time (window − stride = seed frames).
3. One generator pass per window (:meth:`MaskedGenerator.infer`: MAM's speech branch, then the pass with the
   speech injection): every frame but the seed frames is masked, i.e. replaced by the generator's learned mask
   embedding. Codes are chosen per RVQ layer by argmax (temperature 0, the paper) or by temperature / top-k
   sampling; the release's layer cascade regresses code vectors and never reads the chosen codes, so sampling
   changes only which codes are decoded. ``Decoding(steps > 1)`` runs several passes per window instead,
   re-masking the least confident tokens (models/decoding.py). With ``scores=True`` the SQA frame scores of
   the window the generator saw (seed + mask embedding) are kept for plots (an extra SQA pass).
4. Token stitching: all tokens of window 0, then each later window without its first
   ``seed_frames / 4`` token(s), which cover its seed frames (paper: 16, then tokens 1–15). Each
   part's stitched sequence is decoded once by its RVQ-VAE; the translation of the lower stream is
   replaced by the global-translation model's (the release's `VAEConvZero`: it reads the decoded lower stream
   with re-orthonormalised rotations, translation zeroed and contact zeroed or kept (its `test_contact`), and
   its x/z velocities in m/s are integrated from the seed's x/z); eyes are identity.
5. Seeds of later windows (``seed_rule``, issue 15 U14): "echomask" (default) takes the last ``seed_frames``
   frames of the window decoded exactly as the output is (all four parts, translation from the global model),
   so a window starts from the motion the user gets; "release" (the release's test loop) takes them from the
   decoded upper, hands and lower streams only, jaw and eyes identity, translation and contact from the lower
   stream itself.

SMPL-X output: :func:`motion_to_smplx` and :func:`write_smplx_npz` write BEAT2's npz layout (read
back by ``echomask.data.beat2.read_motion`` and imported by the SMPL-X Blender add-on).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from einops import rearrange, repeat
from torch import nn
from tqdm.auto import tqdm

from echomask.data.beat2 import MOTION_FPS, NUM_BETAS, read_motion
from echomask.models.decoding import Decoding, iterative_decoding
from echomask.models.masked_generator import MaskedGenerator
from echomask.models.masking import seed_mask
from echomask.models.speech_queried_attention import SQA_QUERY_PARTS
from echomask.models.translation import LOWER_CONTACT, LOWER_TRANSLATION, TranslationModel
from echomask.motion.kinematics import Kinematics, build_kinematics
from echomask.motion.parts import (
    CONTACT_DIM,
    IDENTITY_ROT6D,
    NUM_EXPRESSIONS,
    PART_DIMS,
    PART_NAMES,
    POSE_DIM,
    ROT6D_DIM,
    TRANS_DIM,
    WHOLE_BODY_DIM,
    foot_contact,
    parts_to_whole_body,
    smplx_to_whole_body,
    whole_body_to_parts,
    whole_body_to_smplx,
)
from echomask.motion.skeleton import JOINT_NAMES, NUM_JOINTS

# Columns of the whole-body vector (SPEC §4.2): 55 joints in 6D, then translation x, y, z, then contact.
TRANS_COLUMNS = slice(ROT6D_DIM * NUM_JOINTS, ROT6D_DIM * NUM_JOINTS + TRANS_DIM)
START_XZ_COLUMNS = [TRANS_COLUMNS.start, TRANS_COLUMNS.start + 2]  # x and z (y is up)

# Neutral seed (any-audio inference without a seed file).
STANDING_HEIGHT = 1.30  # metres: BEAT2's mean trans y for a standing speaker (2_scott_0_1_1)
ARMS_DOWN_ANGLE = 1.2  # radians: shoulders rotated down from the SMPL-X T-pose (BEAT2 speakers: ~1.15 with collars)

# The BEAT2 / SMPL-X npz layout (SPEC §4.1, §6.6), dtypes as in the BEAT2 files.
SMPLX_NPZ_KEYS = ("poses", "trans", "expressions", "betas", "mocap_frame_rate", "gender", "model")
SMPLX_GENDER = "neutral"
SMPLX_MODEL = "smplx2020"
SEED_RULES = ("echomask", "release")  # how later windows are seeded (module docstring, item 5)


def _pad_by_repeating(features: torch.Tensor, num_frames: int) -> torch.Tensor:
    """(B, T, F) -> (B, num_frames, F), the last frame repeated; num_frames >= T."""
    missing = num_frames - features.shape[1]
    tail = repeat(features[:, -1], "b f -> b t f", t=missing)
    return torch.cat([features, tail], dim=1)


def _stitch(windows: Sequence[torch.Tensor], overlap: int) -> torch.Tensor:
    """Concatenate per-window sequences (B, n, ...) along dim 1, dropping the first ``overlap`` steps
    of every window after the first (they repeat the previous window's last steps)."""
    return torch.cat([windows[0], *(window[:, overlap:] for window in windows[1:])], dim=1)


class MotionSynthesizer(nn.Module):
    """Everything inference needs, as one module: the generator, the frozen stage-1 RVQ-VAEs, the translation model.

    Args:
        generator: the stage-2 masked generator.
        vqvaes: part -> RVQVAE for face, upper, hands, lower (frozen: no gradients, always in eval mode).
        translation: the global-translation model (frozen like the RVQ-VAEs).
        window: frames per generator window (SPEC §6.6: 64).
        stride: frames between window starts (SPEC §6.6: 60).
        seed_frames: visible frames at the start of every window (SPEC §6.6: 4); must equal
            window − stride, so that a window's seed is the previous window's last frames.
        seed_rule: how later windows are seeded, "echomask" or "release" (module docstring, item 5).
    """

    def __init__(
        self,
        generator: MaskedGenerator,
        vqvaes: nn.ModuleDict,
        translation: TranslationModel,
        window: int = 64,  # SPEC §6.6
        stride: int = 60,  # SPEC §6.6
        seed_frames: int = 4,  # SPEC §6.6
        seed_rule: str = "echomask",
    ) -> None:
        super().__init__()
        if seed_rule not in SEED_RULES:
            raise ValueError(f"MotionSynthesizer: seed_rule must be one of {SEED_RULES}, got {seed_rule!r}")
        self.seed_rule = seed_rule
        self.generator = generator
        self.vqvaes = vqvaes
        self.translation = translation
        self.window = window
        self.stride = stride
        self.seed_frames = seed_frames
        self._check_stage1_models()
        self._check_windows()
        self.vqvaes.requires_grad_(False)
        self.translation.requires_grad_(False)
        self.vqvaes.eval()
        self.translation.eval()

    # ------------------------------------------------------------------ configuration

    def _check_stage1_models(self) -> None:
        if sorted(self.vqvaes) != sorted(PART_NAMES):
            raise ValueError(f"MotionSynthesizer: vqvaes must hold exactly {PART_NAMES}, got {sorted(self.vqvaes)}")
        generator = self.generator
        expected = {
            "frames_per_token": generator.frames_per_token,
            "num_quantizers": generator.num_rvq_layers,
            "codebook_size": generator.codebook_size,
            "code_dim": generator.latent_dim,
        }
        for part, vqvae in self.vqvaes.items():
            if vqvae.input_dim != PART_DIMS[part]:
                raise ValueError(
                    f"MotionSynthesizer: the {part} RVQ-VAE reads {vqvae.input_dim} features, "
                    f"expected {PART_DIMS[part]}"
                )
            found = {
                "frames_per_token": vqvae.frames_per_token,
                "num_quantizers": vqvae.quantizer.num_quantizers,
                "codebook_size": vqvae.quantizer.codebook_size,
                "code_dim": vqvae.quantizer.code_dim,
            }
            mismatched = {name: (found[name], expected[name]) for name in expected if found[name] != expected[name]}
            if mismatched:
                details = ", ".join(f"{name} {got} vs generator {want}" for name, (got, want) in mismatched.items())
                raise ValueError(f"MotionSynthesizer: the {part} RVQ-VAE does not match the generator: {details}")

    def _check_windows(self) -> None:
        frames_per_token = self.frames_per_token
        if self.stride <= 0 or self.window <= self.stride:
            raise ValueError(
                f"MotionSynthesizer: need 0 < stride < window, got window={self.window}, stride={self.stride}"
            )
        if self.window - self.stride != self.seed_frames:
            raise ValueError(
                f"MotionSynthesizer: seed_frames={self.seed_frames} must equal window − stride = "
                f"{self.window - self.stride} (a window is seeded by the previous window's last frames)"
            )
        for name, frames in (("window", self.window), ("stride", self.stride)):
            if frames % frames_per_token:
                raise ValueError(
                    f"MotionSynthesizer: {name}={frames} is not a multiple of the {frames_per_token} frames per token"
                )

    def train(self, mode: bool = True) -> MotionSynthesizer:
        """Switch the generator's mode; the frozen stage-1 models always stay in eval mode
        (in training mode an RVQ samples codes and updates its codebooks)."""
        super().train(mode)
        self.vqvaes.eval()
        self.translation.eval()
        return self

    @property
    def frames_per_token(self) -> int:
        return self.generator.frames_per_token

    def num_windows(self, num_frames: int) -> int:
        """Windows needed for ``num_frames`` frames: the smallest n >= 1 with seed_frames + stride · n >= num_frames."""
        return max(1, math.ceil((num_frames - self.seed_frames) / self.stride))

    # ------------------------------------------------------------------ stage-1 interfaces

    @torch.no_grad()
    def encode_targets(
        self, whole_body: torch.Tensor, expressions: torch.Tensor
    ) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Stage-1 targets of a window: whole_body (B, T, 337), expressions (B, T, 100) ->
        part -> (indices (B, N, L), code vectors (L, B, N, code_dim)), N = T / frames_per_token."""
        parts = whole_body_to_parts(whole_body, expressions)
        targets = {}
        for part in PART_NAMES:
            indices = self.vqvaes[part].encode(parts[part])
            targets[part] = (indices, self.vqvaes[part].indices_to_codes(indices))
        return targets

    def decode(
        self, indices: Mapping[str, torch.Tensor], start_xz: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Motion from token indices: part -> (B, N, L), start_xz (B, 2) ->
        (whole_body (B, 4N, 337), expressions (B, 4N, 100)).

        Every part is decoded by its RVQ-VAE; the translation is the global-translation model's
        (``TranslationModel.predict_translation``), integrated from ``start_xz`` (it replaces the lower
        RVQ's); contact is the lower stream's; eyes are identity.
        """
        missing = [part for part in PART_NAMES if part not in indices]
        if missing:
            raise ValueError(f"MotionSynthesizer.decode: no indices for part(s) {missing}")
        with torch.autocast(start_xz.device.type, enabled=False):  # stage 1 in fp32 under generate's bf16 windows
            parts = {part: self.vqvaes[part].decode(indices[part]) for part in PART_NAMES}
            lower = parts["lower"]
            translation = self.translation.predict_translation(lower, start_xz)
        parts["lower"] = torch.cat(
            [lower[..., : LOWER_TRANSLATION.start], translation.to(lower.dtype), lower[..., LOWER_CONTACT]], dim=-1
        )
        return parts_to_whole_body(parts), parts["face"][..., ROT6D_DIM:]

    # ------------------------------------------------------------------ generation

    def predict_window(
        self,
        seed: torch.Tensor,
        speaker: torch.Tensor,
        low: torch.Tensor,
        high: torch.Tensor,
        decoding: Decoding = Decoding(),
        rng: torch.Generator | None = None,
        scores: bool = False,
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
        """The generator's codes for one window: seed (B, seed_frames, 337), speaker (B,), low/high (B, window, F) ->
        (part -> indices (B, window / frames_per_token, L), SQA frame scores (B, window) or None).

        The window the generator sees is the seed followed by masked frames (the learned mask embedding);
        ``decoding``: how codes are chosen (one pass, or iterative re-masking); ``scores``: also the SQA frame
        scores of the seed-and-mask window (an extra SQA pass).
        """
        batch = seed.shape[0]
        mask = seed_mask(batch, self.window, self.seed_frames, device=seed.device)
        window = torch.cat([seed, seed.new_zeros(batch, self.window - self.seed_frames, seed.shape[-1])], dim=1)
        start_xz = seed[:, 0, START_XZ_COLUMNS]
        indices, _ = iterative_decoding(
            window,
            masked_tokens=mask[:, :: self.frames_per_token],
            mask_embedding=self.generator.mask_embedding,
            window_pass=lambda shown, frame_mask: self.generator.infer(shown, frame_mask, speaker, low, high).logits,
            decode_window=lambda chosen: self.decode(chosen, start_xz)[0],
            decoding=decoding,
            generator=rng,
        )
        frame_scores = None
        if scores:
            speech = self.generator.mam.speech_features(low, high, SQA_QUERY_PARTS)
            masked = torch.where(rearrange(mask, "b t -> b t 1"), self.generator.mask_embedding.to(seed.dtype), window)
            frame_scores = self.generator.frame_scores(masked, speaker, speech)
        return indices, frame_scores

    def window_seed(self, indices: Mapping[str, torch.Tensor], start_xz: torch.Tensor) -> torch.Tensor:
        """The next window's seed (B, seed_frames, 337) from this window's indices (``seed_rule``)."""
        if self.seed_rule == "echomask":
            motion, _ = self.decode(indices, start_xz)
        else:
            parts = {part: self.vqvaes[part].decode(indices[part]) for part in PART_NAMES}
            identity_jaw = torch.tensor(IDENTITY_ROT6D, dtype=parts["face"].dtype, device=parts["face"].device)
            parts["face"] = torch.cat(
                [identity_jaw.expand(*parts["face"].shape[:-1], ROT6D_DIM), parts["face"][..., ROT6D_DIM:]], dim=-1
            )
            motion = parts_to_whole_body(parts)
        return motion[:, -self.seed_frames :]

    def _check_generate_inputs(
        self,
        low: torch.Tensor,
        high: torch.Tensor,
        speaker: torch.Tensor,
        seed_motion: torch.Tensor,
        seed_expressions: torch.Tensor,
    ) -> None:
        speech_dim = self.generator.latent_dim
        if low.ndim != 3 or low.shape[-1] != speech_dim or high.shape != low.shape:
            raise ValueError(
                f"generate: low and high speech features must both be (B, T, {speech_dim}), "
                f"got {tuple(low.shape)} and {tuple(high.shape)}"
            )
        batch, num_frames, _ = low.shape
        if num_frames <= self.seed_frames:
            raise ValueError(
                f"generate: the speech features have {num_frames} frame(s); at least {self.seed_frames + 1} are needed "
                f"(the first {self.seed_frames} are the seed's)"
            )
        if speaker.shape != (batch,):
            raise ValueError(f"generate: speaker must be ({batch},), got {tuple(speaker.shape)}")
        expected = {
            "seed_motion": (seed_motion, (batch, self.seed_frames, WHOLE_BODY_DIM)),
            "seed_expressions": (seed_expressions, (batch, self.seed_frames, NUM_EXPRESSIONS)),
        }
        for name, (tensor, shape) in expected.items():
            if tuple(tensor.shape) != shape:
                raise ValueError(f"generate: {name} must be {shape}, got {tuple(tensor.shape)}")
        if self.training:
            raise RuntimeError("generate: call .eval() first (in training mode dropout makes the output random)")

    @torch.no_grad()
    def generate(
        self,
        low: torch.Tensor,
        high: torch.Tensor,
        speaker: torch.Tensor,
        seed_motion: torch.Tensor,
        seed_expressions: torch.Tensor,
        decoding: Decoding = Decoding(),
        progress: bool = False,
        rng: torch.Generator | None = None,
        scores: bool = False,
    ) -> dict[str, torch.Tensor | dict[str, torch.Tensor] | None]:
        """Motion for a whole sequence of speech features (SPEC §6.6).

        Args:
            low, high: (B, T, F) speech features at 30 fps (B = 1 for a single file), T > seed_frames.
            speaker: (B,) speaker ids.
            seed_motion: (B, seed_frames, 337) the first frames (ground truth, :func:`neutral_seed`
                or :func:`seed_from_npz`); their x/z also anchor the translation.
            seed_expressions: (B, seed_frames, 100) the seed's expressions. Shape-checked only: the
                generator's motion input (SPEC §6.1) carries no expressions.
            decoding: how codes are chosen (default: argmax in one pass per window, the paper).
            progress: show a progress bar over the windows.
            rng: the random generator for sampling (``decoding.temperature`` > 0).
            scores: also compute the SQA frame scores of every window (plots; an extra SQA pass per window).

        Returns:
            motion (B, T, 337), expressions (B, T, 100), indices part -> (B, N, L) (the stitched
            tokens, N = (seed_frames + stride · windows) / 4, before cropping to T), scores (B, T)
            SQA frame scores (None unless ``scores``).
        """
        self._check_generate_inputs(low, high, speaker, seed_motion, seed_expressions)
        num_frames = low.shape[1]
        num_windows = self.num_windows(num_frames)
        padded_frames = self.seed_frames + self.stride * num_windows
        low, high = _pad_by_repeating(low, padded_frames), _pad_by_repeating(high, padded_frames)

        seed = seed_motion
        window_indices, window_scores = [], []
        for window_index in tqdm(range(num_windows), desc="generating", unit="window", disable=not progress):
            frames = slice(window_index * self.stride, window_index * self.stride + self.window)
            indices, frame_scores = self.predict_window(
                seed, speaker, low[:, frames], high[:, frames], decoding, rng, scores
            )
            window_indices.append(indices)
            window_scores.append(frame_scores)
            if window_index + 1 < num_windows:
                seed = self.window_seed(indices, seed[:, 0, START_XZ_COLUMNS])

        overlap_tokens = self.seed_frames // self.frames_per_token
        stitched = {
            part: _stitch([indices[part] for indices in window_indices], overlap_tokens) for part in PART_NAMES
        }
        motion, expressions = self.decode(stitched, seed_motion[:, 0, START_XZ_COLUMNS])
        return {
            "motion": motion[:, :num_frames],
            "expressions": expressions[:, :num_frames],
            "indices": stitched,
            "scores": _stitch(window_scores, self.seed_frames)[:, :num_frames] if scores else None,
        }


# ---------------------------------------------------------------------- seeds


def neutral_seed(
    num_frames: int = 4,  # SPEC §6.6: 4 seed frames
    height: float = STANDING_HEIGHT,
    arms_down_angle: float = ARMS_DOWN_ANGLE,
) -> tuple[torch.Tensor, torch.Tensor]:
    """A still, standing rest pose for any-audio inference: (motion (1, S, 337), expressions (1, S, 100)).

    Every joint is the identity (SMPL-X rest pose, facing +z; the hands' rest is SMPL-X's relaxed
    mean hand) except the shoulders, turned down from the T-pose by ``arms_down_angle`` radians;
    translation (0, ``height``, 0) metres; feet in contact; neutral expression. float32.
    """
    if num_frames < 1:
        raise ValueError(f"neutral_seed: num_frames must be at least 1, got {num_frames}")
    poses = torch.zeros(num_frames, NUM_JOINTS, 3)
    # The left arm points along +x in the T-pose: a negative turn about z lowers it; the right arm mirrors it.
    poses[:, JOINT_NAMES.index("left_shoulder"), 2] = -arms_down_angle
    poses[:, JOINT_NAMES.index("right_shoulder"), 2] = arms_down_angle
    trans = torch.tensor([0.0, height, 0.0]).expand(num_frames, TRANS_DIM)
    contact = torch.ones(num_frames, CONTACT_DIM)
    motion = smplx_to_whole_body(poses.reshape(num_frames, POSE_DIM), trans, contact)
    return motion.unsqueeze(0), torch.zeros(1, num_frames, NUM_EXPRESSIONS)


def seed_from_npz(
    path: str | Path,
    num_frames: int = 4,  # SPEC §6.6: 4 seed frames
    kinematics: Kinematics | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``num_frames`` frames of a BEAT2/SMPL-X npz: (motion (1, S, 337), expressions (1, S, 100)) float32.

    Foot contact comes from the joint positions of ``kinematics`` (default: the approximate
    skeleton, ``build_kinematics()``), using one frame more than the seed when the file has it.
    """
    motion = read_motion(path)
    available = len(motion["poses"])
    needed = max(num_frames, 2)  # foot contact compares consecutive frames
    if available < needed:
        raise ValueError(f"{path}: has {available} frame(s); a seed of {num_frames} frame(s) needs at least {needed}")
    frames = slice(0, min(num_frames + 1, available))
    poses = torch.from_numpy(motion["poses"][frames])
    trans = torch.from_numpy(motion["trans"][frames])
    kinematics = build_kinematics() if kinematics is None else kinematics
    contact = foot_contact(kinematics(poses, trans))
    whole_body = smplx_to_whole_body(poses, trans, contact)[:num_frames]
    expressions = torch.from_numpy(motion["expressions"][:num_frames])
    return whole_body.unsqueeze(0), expressions.unsqueeze(0)


# ---------------------------------------------------------------------- SMPL-X npz output


def motion_to_smplx(
    motion: torch.Tensor,
    expressions: torch.Tensor,
    betas: torch.Tensor | np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Whole-body motion (T, 337) and expressions (T, 100) -> BEAT2/SMPL-X arrays (numpy).

    Returns poses (T, 165) float32 axis-angle, trans (T, 3) float64, expressions (T, 100) float64,
    betas (300,) float32 (zeros = the mean shape unless given), mocap_frame_rate 30 (int32),
    gender "neutral", model "smplx2020": the dtypes of the BEAT2 files.
    """
    if motion.ndim != 2 or motion.shape[-1] != WHOLE_BODY_DIM:
        raise ValueError(
            f"motion_to_smplx: motion must be (T, {WHOLE_BODY_DIM}) (one sequence), got {tuple(motion.shape)}"
        )
    if tuple(expressions.shape) != (motion.shape[0], NUM_EXPRESSIONS):
        raise ValueError(
            f"motion_to_smplx: expressions must be ({motion.shape[0]}, {NUM_EXPRESSIONS}), "
            f"got {tuple(expressions.shape)}"
        )
    betas = np.zeros(NUM_BETAS, dtype=np.float32) if betas is None else np.asarray(betas, dtype=np.float32)
    if betas.shape != (NUM_BETAS,):
        raise ValueError(f"motion_to_smplx: betas must be ({NUM_BETAS},), got {betas.shape}")
    smplx = whole_body_to_smplx(motion.detach().cpu().to(torch.float64), method="stable")
    return {
        "poses": smplx["poses"].numpy().astype(np.float32),
        "trans": smplx["trans"].numpy(),
        "expressions": expressions.detach().cpu().to(torch.float64).numpy(),
        "betas": betas,
        "mocap_frame_rate": np.array(MOTION_FPS, dtype=np.int32),
        "gender": np.array(SMPLX_GENDER),
        "model": np.array(SMPLX_MODEL),
    }


def write_smplx_npz(path: str | Path, arrays: Mapping[str, np.ndarray]) -> Path:
    """Write ``arrays`` (as from :func:`motion_to_smplx`) to an uncompressed npz like BEAT2's; returns the path.

    The parent folder is created. The file is readable by ``echomask.data.beat2.read_motion`` and
    the SMPL-X Blender add-on (which reads poses, trans, betas, gender and mocap_frame_rate).
    """
    path = Path(path)
    if path.suffix != ".npz":
        raise ValueError(f"{path}: an SMPL-X motion file must end in .npz")
    missing = [key for key in SMPLX_NPZ_KEYS if key not in arrays]
    if missing:
        raise ValueError(f"{path}: cannot write an SMPL-X npz without {missing}")
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as file:
        np.savez(file, **{key: np.asarray(arrays[key]) for key in SMPLX_NPZ_KEYS})
    return path
