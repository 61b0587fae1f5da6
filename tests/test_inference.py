"""Sliding-window inference and the SMPL-X output (SPEC §6.6), on tiny random networks."""

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from echomask.data.beat2 import read_motion
from echomask.inference import (
    MotionSynthesizer,
    motion_to_smplx,
    neutral_seed,
    seed_from_npz,
    write_smplx_npz,
)
from echomask.models.conv_vqvae import RVQVAE
from echomask.models.decoding import Decoding
from echomask.models.masked_generator import MaskedGenerator
from echomask.models.masking import seed_mask
from echomask.models.speech_queried_attention import SQA_QUERY_PARTS
from echomask.models.translation import TranslationModel
from echomask.motion.kinematics import build_kinematics
from echomask.motion.parts import PART_DIMS, PART_NAMES, whole_body_to_parts
from echomask.motion.rotations import axis_angle_to_matrix, axis_angle_to_rot6d, rot6d_to_matrix
from echomask.motion.skeleton import EYE_JOINTS, JOINT_NAMES, NUM_JOINTS

SHARED = Path(__file__).resolve().parents[2] / "shared"
needs_shared = pytest.mark.skipif(not SHARED.exists(), reason="../shared not present")
SAMPLE = SHARED / "beat2_sample" / "beat_english_v2.0.0" / "smplxflame_30" / "2_scott_0_1_1.npz"

SPEECH_DIM = 32  # = CODE_DIM: the generator's latent size is both
LAYERS = 2
CODES = 16
CODE_DIM = 32
TINY_GENERATOR = dict(
    num_speakers=3,
    latent_dim=CODE_DIM,
    hidden_dim=64,
    hidden_heads=2,
    hidden_feedforward=64,
    encoder_width=32,
    encoder_blocks=1,
    face_decoder_layers=1,
    num_rvq_layers=LAYERS,
    codebook_size=CODES,
    fusion_heads=2,
    fusion_feedforward=64,
    base_classifier_hidden=32,
    classifier_hidden=32,
    cascade_layers=1,
    cascade_heads=2,
    cascade_feedforward=64,
    mam_heads=2,
    mam_feedforward=64,
    mam_layers_per_block=1,
    sqa_layers=2,
    sqa_heads=2,
    sqa_feedforward=64,
    dropout=0.0,
)
TINY_VQVAE = dict(
    width=32, encoder_dilations=(3, 1), decoder_dilations=(3, 1), num_quantizers=LAYERS, codebook_size=CODES, code_dim=CODE_DIM
)


def tiny_synthesizer(generator_class=MaskedGenerator, seed: int = 0, **window_settings) -> MotionSynthesizer:
    torch.manual_seed(seed)
    vqvaes = nn.ModuleDict({part: RVQVAE(PART_DIMS[part], **TINY_VQVAE) for part in PART_NAMES})
    translation = TranslationModel(width=32, layers=2)
    return MotionSynthesizer(generator_class(**TINY_GENERATOR), vqvaes, translation, **window_settings).eval()


@pytest.fixture(scope="module")
def synthesizer() -> MotionSynthesizer:
    return tiny_synthesizer()


def speech(num_frames: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(1, num_frames, SPEECH_DIM, generator=generator) for _ in range(2))


def generate(synthesizer: MotionSynthesizer, num_frames: int, **options) -> dict:
    low, high = speech(num_frames)
    seed_motion, seed_expressions = neutral_seed()
    options = {"scores": True, **options}
    return synthesizer.generate(low, high, torch.tensor([1]), seed_motion, seed_expressions, **options)


# ---------------------------------------------------------------------- lengths and windows


def test_num_windows_covers_the_frames(synthesizer):
    expected = {5: 1, 64: 1, 65: 2, 124: 2, 125: 3, 1904: 32}
    assert {frames: synthesizer.num_windows(frames) for frames in expected} == expected


@pytest.mark.parametrize("num_frames", [5, 64, 65, 123, 200])
def test_output_covers_the_whole_input(synthesizer, num_frames):
    output = generate(synthesizer, num_frames)
    assert output["motion"].shape == (1, num_frames, 337)
    assert output["expressions"].shape == (1, num_frames, 100)
    assert output["scores"].shape == (1, num_frames)
    num_tokens = 16 + 15 * (synthesizer.num_windows(num_frames) - 1)
    assert set(output["indices"]) == set(PART_NAMES)
    for indices in output["indices"].values():
        assert indices.shape == (1, num_tokens, LAYERS)
        assert 4 * num_tokens >= num_frames
    for name in ("motion", "expressions", "scores"):
        assert torch.isfinite(output[name]).all()
    assert (output["scores"] >= 0).all()


def test_too_short_or_misshapen_inputs_are_rejected(synthesizer):
    with pytest.raises(ValueError, match="at least 5 are needed"):
        generate(synthesizer, 4)
    low, high = speech(30)
    seed_motion, seed_expressions = neutral_seed(num_frames=3)
    with pytest.raises(ValueError, match="seed_motion must be"):
        synthesizer.generate(low, high, torch.tensor([0]), seed_motion, torch.zeros(1, 4, 100))
    seed_motion, seed_expressions = neutral_seed()
    with pytest.raises(ValueError, match="speech features must both be"):
        synthesizer.generate(low[..., :8], high[..., :8], torch.tensor([0]), seed_motion, seed_expressions)


def test_window_settings_are_checked():
    with pytest.raises(ValueError, match="must equal window − stride"):
        tiny_synthesizer(window=64, stride=56, seed_frames=4)
    with pytest.raises(ValueError, match="not a multiple"):
        tiny_synthesizer(window=66, stride=62, seed_frames=4)


def test_stage1_models_must_match_the_generator():
    torch.manual_seed(0)
    vqvaes = nn.ModuleDict({part: RVQVAE(PART_DIMS[part], **{**TINY_VQVAE, "code_dim": 16}) for part in PART_NAMES})
    with pytest.raises(ValueError, match="code_dim 16 vs generator 32"):
        MotionSynthesizer(MaskedGenerator(**TINY_GENERATOR), vqvaes, TranslationModel(width=32))
    with pytest.raises(ValueError, match="must hold exactly"):
        MotionSynthesizer(
            MaskedGenerator(**TINY_GENERATOR), nn.ModuleDict({"face": vqvaes["face"]}), TranslationModel(width=32)
        )


# ---------------------------------------------------------------------- stitching and seeding (recording generator)


class RecordingGenerator(MaskedGenerator):
    """Its inference returns logits whose argmax are known indices for every window, and records what each call saw."""

    def __init__(self, **settings):
        super().__init__(**settings)
        self.calls = []

    def infer(self, motion, mask, speaker, low, high, stack_parts=True):
        window = len(self.calls)
        num_tokens = motion.shape[1] // self.frames_per_token
        token = torch.arange(num_tokens).reshape(1, num_tokens, 1)
        layer = torch.arange(self.num_rvq_layers).reshape(1, 1, -1)
        indices = {
            part: (5 * window + token + 3 * layer + part_number) % self.codebook_size
            for part_number, part in enumerate(PART_NAMES)
        }
        self.calls.append(dict(motion=motion.clone(), mask=mask.clone(), low=low.clone(), high=high.clone(), indices=indices))
        logits = {part: nn.functional.one_hot(value, self.codebook_size).float() for part, value in indices.items()}
        return SimpleNamespace(logits=logits)


@pytest.fixture(scope="module")
def recorded(request):
    synthesizer = tiny_synthesizer(RecordingGenerator, seed_rule=getattr(request, "param", "echomask"))
    num_frames = 150  # 3 windows, padded to 184 frames
    low, high = speech(num_frames, seed=4)
    seed_motion, seed_expressions = neutral_seed(height=1.1)
    seed_motion[..., 330] = 0.3  # a start x the translation must keep
    output = synthesizer.generate(low, high, torch.tensor([2]), seed_motion, seed_expressions, scores=True)
    return SimpleNamespace(
        synthesizer=synthesizer, calls=synthesizer.generator.calls, output=output, low=low, high=high, seed=seed_motion
    )


def test_tokens_are_stitched_all_of_window_0_then_tokens_1_to_15(recorded):
    calls, output = recorded.calls, recorded.output
    assert len(calls) == 3
    for part_number, part in enumerate(PART_NAMES):
        indices = output["indices"][part]
        assert indices.shape == (1, 16 + 15 + 15, LAYERS)
        token = torch.arange(16).reshape(1, 16, 1)
        layer = torch.arange(LAYERS).reshape(1, 1, -1)
        windows = [(5 * window + token + 3 * layer + part_number) % CODES for window in range(3)]
        assert torch.equal(indices, torch.cat([windows[0], windows[1][:, 1:], windows[2][:, 1:]], dim=1))


def test_the_stitched_tokens_are_decoded_once_and_cropped(recorded):
    synthesizer, output = recorded.synthesizer, recorded.output
    motion, expressions = synthesizer.decode(output["indices"], recorded.seed[:, 0, [330, 332]])
    assert torch.equal(output["motion"], motion[:, :150])
    assert torch.equal(output["expressions"], expressions[:, :150])
    assert output["motion"][0, 0, 330].item() == pytest.approx(0.3)  # translation starts at the seed's x


def test_later_windows_are_seeded_by_the_previous_windows_last_decoded_frames(recorded):
    synthesizer, calls = recorded.synthesizer, recorded.calls
    assert torch.equal(calls[0]["motion"][:, :4], recorded.seed)
    for previous, call in zip(calls, calls[1:]):
        previous_seed = previous["motion"][:, :4]
        decoded, _ = synthesizer.decode(previous["indices"], previous_seed[:, 0, [330, 332]])
        assert torch.equal(call["motion"][:, :4], decoded[:, -4:])


@pytest.mark.parametrize("recorded", ["release"], indirect=True)
def test_the_release_seed_rule_seeds_from_upper_hands_lower_with_identity_jaw(recorded):
    synthesizer, calls = recorded.synthesizer, recorded.calls
    for previous, call in zip(calls, calls[1:]):
        parts = {part: synthesizer.vqvaes[part].decode(previous["indices"][part]) for part in PART_NAMES}
        seed = call["motion"][0, :4]
        rot6d = seed[:, :330].reshape(4, NUM_JOINTS, 6)
        identity = torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 0.0])
        assert torch.equal(rot6d[:, 22], identity.expand(4, 6))  # the jaw
        assert torch.equal(rot6d[:, list(EYE_JOINTS)], identity.expand(4, 2, 6))
        assert torch.equal(rot6d[:, 0], parts["lower"][0, -4:, :6])
        assert torch.equal(seed[:, 330:], parts["lower"][0, -4:, 54:])  # translation and contact of the lower stream


def test_every_window_masks_all_but_the_seed_and_sqa_scores_the_same_window(recorded):
    generator = recorded.synthesizer.generator
    padded_low = torch.cat([recorded.low, recorded.low[:, -1:].expand(1, 184 - 150, SPEECH_DIM)], dim=1)
    padded_high = torch.cat([recorded.high, recorded.high[:, -1:].expand(1, 184 - 150, SPEECH_DIM)], dim=1)
    window_scores = []
    for window, call in enumerate(recorded.calls):
        assert torch.equal(call["mask"], seed_mask(1, 64, 4))
        assert torch.equal(call["motion"][0, 4:], generator.mask_embedding.expand(60, 337))
        frames = slice(60 * window, 60 * window + 64)
        assert torch.equal(call["low"], padded_low[:, frames])
        assert torch.equal(call["high"], padded_high[:, frames])
        with torch.no_grad():
            speech_features = generator.mam.speech_features(call["low"], call["high"], SQA_QUERY_PARTS)
            expected = generator.frame_scores(call["motion"], torch.tensor([2]), speech_features)
        window_scores.append(expected if window == 0 else expected[:, 4:])
    # the frame scores are stitched like the tokens: all of window 0, then each later window without its seed frames
    torch.testing.assert_close(recorded.output["scores"], torch.cat(window_scores, dim=1)[:, :150])


def test_without_scores_generation_is_the_same(synthesizer):
    with_scores, without = generate(synthesizer, 70), generate(synthesizer, 70, scores=False)
    assert without["scores"] is None and torch.equal(with_scores["motion"], without["motion"])


# ---------------------------------------------------------------------- determinism and sampling


def test_argmax_is_deterministic_and_sampling_follows_the_random_generator(synthesizer):
    first, second = generate(synthesizer, 70), generate(synthesizer, 70, progress=True)
    assert torch.equal(first["motion"], second["motion"])
    sampling = Decoding(temperature=1.0)
    sampled = [
        generate(synthesizer, 70, decoding=sampling, rng=torch.Generator().manual_seed(seed))["indices"]
        for seed in (0, 0, 1)
    ]
    for part in PART_NAMES:
        assert torch.equal(sampled[0][part], sampled[1][part])
    assert any(not torch.equal(sampled[0][part], sampled[2][part]) for part in PART_NAMES)
    assert any(not torch.equal(sampled[0][part], first["indices"][part]) for part in PART_NAMES)
    top_1_sampling = Decoding(temperature=1.0, top_k=1)
    top_1 = generate(synthesizer, 70, decoding=top_1_sampling, rng=torch.Generator().manual_seed(1))["indices"]
    for part in PART_NAMES:
        assert torch.equal(top_1[part], first["indices"][part])


def test_iterative_decoding_runs_its_passes_per_window(synthesizer, monkeypatch):
    calls = []
    infer = synthesizer.generator.infer
    monkeypatch.setattr(synthesizer.generator, "infer", lambda *args: calls.append(args[1].clone()) or infer(*args))
    argmax = generate(synthesizer, 70)
    assert len(calls) == 2  # 70 frames: two windows, one pass each
    calls.clear()
    one_step = generate(synthesizer, 70, decoding=Decoding(steps=1))
    assert torch.equal(one_step["motion"], argmax["motion"])
    calls.clear()
    iterative = generate(synthesizer, 70, decoding=Decoding(steps=3))
    assert len(calls) == 6
    masked_frames = [int(mask[0].sum()) for mask in calls[:3]]
    assert masked_frames[0] == 60 and masked_frames[0] > masked_frames[1] > masked_frames[2] > 0
    assert iterative["motion"].shape == argmax["motion"].shape and torch.isfinite(iterative["motion"]).all()
    assert torch.equal(generate(synthesizer, 70, decoding=Decoding(steps=3))["motion"], iterative["motion"])


def test_stage1_models_stay_frozen_in_training_mode(synthesizer):
    synthesizer.train()
    try:
        assert synthesizer.generator.training
        assert not any(module.training for module in synthesizer.vqvaes.modules())
        assert not any(module.training for module in synthesizer.translation.modules())
        assert not any(p.requires_grad for p in synthesizer.vqvaes.parameters())
        assert not any(p.requires_grad for p in synthesizer.translation.parameters())
        codebook = synthesizer.vqvaes["upper"].quantizer.codebooks[0].codebook.clone()
        motion = torch.randn(2, 64, 337)
        synthesizer.encode_targets(motion, torch.randn(2, 64, 100))
        assert torch.equal(synthesizer.vqvaes["upper"].quantizer.codebooks[0].codebook, codebook)
        with pytest.raises(RuntimeError, match="eval"):
            generate(synthesizer, 10)
    finally:
        synthesizer.eval()


# ---------------------------------------------------------------------- stage-1 interfaces


def test_encode_targets_and_code_lookup_use_the_frozen_rvq(synthesizer):
    motion, expressions = torch.randn(2, 32, 337), torch.randn(2, 32, 100)
    targets = synthesizer.encode_targets(motion, expressions)
    parts = whole_body_to_parts(motion, expressions)
    for part in PART_NAMES:
        indices, codes = targets[part]
        vqvae = synthesizer.vqvaes[part]
        assert indices.shape == (2, 8, LAYERS) and codes.shape == (LAYERS, 2, 8, CODE_DIM)
        assert torch.equal(indices, vqvae.encode(parts[part]))
        for layer in range(LAYERS):
            assert torch.equal(vqvae.quantizer.codebooks[layer].lookup(indices[..., layer]), codes[layer])
        assert torch.allclose(codes.sum(0), vqvae.quantizer.codes_from_indices(indices))


def test_decode_takes_translation_from_the_global_model(synthesizer):
    generator = torch.Generator().manual_seed(3)
    indices = {part: torch.randint(0, CODES, (2, 8, LAYERS), generator=generator) for part in PART_NAMES}
    start_xz = torch.tensor([[0.5, -1.0], [0.0, 2.0]])
    motion, expressions = synthesizer.decode(indices, start_xz)
    assert motion.shape == (2, 32, 337) and expressions.shape == (2, 32, 100)
    parts = {part: synthesizer.vqvaes[part].decode(indices[part]) for part in PART_NAMES}
    translation = synthesizer.translation.predict_translation(parts["lower"], start_xz)
    assert torch.equal(motion[..., 330:333], translation)
    assert not torch.allclose(motion[..., 330:333], parts["lower"][..., 54:57])
    assert torch.equal(motion[..., 333:], parts["lower"][..., 57:])
    assert torch.equal(expressions, parts["face"][..., 6:])
    rot6d = motion[..., :330].reshape(2, 32, NUM_JOINTS, 6)
    assert torch.equal(rot6d[:, :, 22], parts["face"][..., :6])
    assert torch.equal(rot6d[:, :, 0], parts["lower"][..., :6])
    identity = torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 0.0])
    assert torch.equal(rot6d[:, :, list(EYE_JOINTS)], identity.expand(2, 32, 2, 6))


# ---------------------------------------------------------------------- SMPL-X output and seeds


def test_smplx_npz_round_trip(synthesizer, tmp_path):
    output = generate(synthesizer, 70)
    motion, expressions = output["motion"][0], output["expressions"][0]
    arrays = motion_to_smplx(motion, expressions)
    expected_dtypes = dict(poses=np.float32, trans=np.float64, expressions=np.float64, betas=np.float32)
    for key, dtype in expected_dtypes.items():
        assert arrays[key].dtype == dtype, key
    path = write_smplx_npz(tmp_path / "out" / "speech.npz", arrays)
    with np.load(path) as stored:
        keys = ["poses", "trans", "expressions", "betas", "mocap_frame_rate", "gender", "model"]
        assert sorted(stored.files) == sorted(keys)
        assert stored["poses"].shape == (70, 165) and stored["trans"].shape == (70, 3)
        assert stored["betas"].shape == (300,) and not stored["betas"].any()
        assert int(stored["mocap_frame_rate"]) == 30 and stored["mocap_frame_rate"].dtype == np.int32
        assert str(stored["gender"]) == "neutral" and str(stored["model"]) == "smplx2020"
    back = read_motion(path)
    assert back["fps"] == 30
    np.testing.assert_array_equal(back["poses"], arrays["poses"])
    np.testing.assert_allclose(back["trans"], motion[:, 330:333].numpy(), atol=1e-6)
    np.testing.assert_allclose(back["expressions"], expressions.numpy(), atol=1e-6)
    # the axis-angle poses are the (Gram–Schmidt) rotations of the generated 6D
    rotations = rot6d_to_matrix(motion[:, :330].reshape(70, NUM_JOINTS, 6).double())
    stored_rotations = axis_angle_to_matrix(torch.from_numpy(back["poses"]).double().reshape(70, NUM_JOINTS, 3))
    torch.testing.assert_close(stored_rotations, rotations, atol=1e-5, rtol=0)
    assert not back["poses"].reshape(70, NUM_JOINTS, 3)[:, list(EYE_JOINTS)].any()  # eyes identity


def test_smplx_output_rejects_bad_input(tmp_path):
    motion, expressions = neutral_seed(num_frames=5)
    with pytest.raises(ValueError, match="one sequence"):
        motion_to_smplx(motion, expressions[0])
    with pytest.raises(ValueError, match="betas must be"):
        motion_to_smplx(motion[0], expressions[0], betas=np.zeros(10))
    arrays = motion_to_smplx(motion[0], expressions[0], betas=np.full(300, 0.5))
    assert arrays["betas"].dtype == np.float32 and arrays["betas"][0] == 0.5
    with pytest.raises(ValueError, match="must end in .npz"):
        write_smplx_npz(tmp_path / "speech.npy", arrays)
    with pytest.raises(ValueError, match="without \\['betas'\\]"):
        write_smplx_npz(tmp_path / "speech.npz", {key: value for key, value in arrays.items() if key != "betas"})


def test_neutral_seed_stands_with_arms_down():
    motion, expressions = neutral_seed(num_frames=6, height=1.2)
    assert motion.shape == (1, 6, 337) and expressions.shape == (1, 6, 100)
    assert motion.dtype == torch.float32 and not expressions.any()
    assert torch.equal(motion[0, :, 330:333], torch.tensor([0.0, 1.2, 0.0]).expand(6, 3))
    assert torch.equal(motion[0, :, 333:], torch.ones(6, 4))
    rot6d = motion[0, 0, :330].reshape(NUM_JOINTS, 6)
    shoulders = [JOINT_NAMES.index("left_shoulder"), JOINT_NAMES.index("right_shoulder")]
    identity = torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 0.0])
    others = [joint for joint in range(NUM_JOINTS) if joint not in shoulders]
    assert torch.equal(rot6d[others], identity.expand(len(others), 6))
    smplx = motion_to_smplx(motion[0], expressions[0])
    joints = build_kinematics()(torch.from_numpy(smplx["poses"]), torch.from_numpy(smplx["trans"]).float())[0]
    for side in ("left", "right"):
        shoulder, wrist = joints[JOINT_NAMES.index(f"{side}_shoulder")], joints[JOINT_NAMES.index(f"{side}_wrist")]
        assert wrist[1] < shoulder[1] - 0.3  # the arms hang down, not out as in the T-pose
    with pytest.raises(ValueError, match="at least 1"):
        neutral_seed(num_frames=0)


def test_seed_from_an_npz_written_here(tmp_path):
    generator = torch.Generator().manual_seed(7)
    num_frames = 10
    # still for the 4 seed frames, then the body moves: frame 3's contact needs the frame after the seed
    poses = (0.3 * torch.randn(1, 165, generator=generator)).repeat(num_frames, 1)
    poses[4:] += 0.3 * torch.randn(num_frames - 4, 165, generator=generator)
    trans = torch.tensor([0.1, 1.3, -0.2]).repeat(num_frames, 1)
    trans[4:] += 0.2
    arrays = {
        "poses": poses.numpy(),
        "trans": trans.double().numpy(),
        "expressions": torch.randn(num_frames, 100, generator=generator).double().numpy(),
        "betas": np.zeros(300, np.float32),
        "mocap_frame_rate": np.array(30, dtype=np.int32),
        "gender": np.array("neutral"),
        "model": np.array("smplx2020"),
    }
    path = write_smplx_npz(tmp_path / "seed.npz", arrays)
    motion, expressions = seed_from_npz(path, num_frames=4)
    assert motion.shape == (1, 4, 337) and expressions.shape == (1, 4, 100)
    assert motion.dtype == expressions.dtype == torch.float32
    rot6d = axis_angle_to_rot6d(poses[:4].reshape(4, NUM_JOINTS, 3)).reshape(4, 330)
    torch.testing.assert_close(motion[0, :, :330], rot6d)
    torch.testing.assert_close(motion[0, :, 330:333], trans[:4])
    assert torch.equal(motion[0, :, 333:], torch.tensor([1.0, 1.0, 1.0, 0.0]).reshape(4, 1).expand(4, 4))
    torch.testing.assert_close(expressions[0], torch.from_numpy(arrays["expressions"][:4]).float())
    with pytest.raises(ValueError, match="seed.npz: has 10 frame"):
        seed_from_npz(path, num_frames=12)


@needs_shared
def test_seed_from_the_real_sample(synthesizer):
    motion, expressions = seed_from_npz(SAMPLE)
    assert motion.shape == (1, 4, 337) and expressions.shape == (1, 4, 100)
    sample = read_motion(SAMPLE)
    torch.testing.assert_close(motion[0, :, 330:333], torch.from_numpy(sample["trans"][:4]))
    torch.testing.assert_close(expressions[0], torch.from_numpy(sample["expressions"][:4]))
    assert set(motion[0, :, 333:].unique().tolist()) <= {0.0, 1.0}
    low, high = speech(20)
    output = synthesizer.generate(low, high, torch.tensor([2]), motion, expressions)
    assert output["motion"].shape == (1, 20, 337)
