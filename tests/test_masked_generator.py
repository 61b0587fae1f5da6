"""The released EchoMask network at a tiny size (models/masked_generator.py and its parts); the paper size is
golden-verified in test_generator_golden.py."""
import pytest
import torch

from echomask.models.alignment import MotionAudioAlignment, token_infonce
from echomask.models.code_heads import ResidualCodeHead
from echomask.models.masked_generator import PARTS, MaskedGenerator
from echomask.official.generator_keys import is_dead_release_key, our_key

B, T, D = 3, 16, 32  # windows, frames, latent/speech size
TINY = dict(
    motion_dim=20,
    num_speakers=5,
    latent_dim=D,
    codebook_size=24,
    num_rvq_layers=3,
    hidden_dim=32,
    hidden_heads=2,
    hidden_feedforward=64,
    encoder_width=16,
    face_decoder_layers=1,
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
    period=T,
)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return MaskedGenerator(**TINY).eval()


def inputs(seed: int = 1):
    generator = torch.Generator().manual_seed(seed)
    motion = torch.randn(B, T, TINY["motion_dim"], generator=generator)
    speaker = torch.randint(0, TINY["num_speakers"], (B,), generator=generator)
    low, high = torch.randn(2, B, T, D, generator=generator)
    mask = torch.zeros(B, T, dtype=torch.bool)
    mask[:, 4:] = True
    return motion, mask, speaker, low, high


def test_pass_shapes_and_indices(model):
    motion, mask, speaker, low, high = inputs()
    with torch.no_grad():
        output = model(motion, mask, speaker, model.mam.speech_features(low, high))
    tokens, layers, codes = T // 4, TINY["num_rvq_layers"], TINY["codebook_size"]
    for part in PARTS:
        assert output.logits[part].shape == (B, tokens, layers, codes)
        assert output.code_vectors[part].shape == (B, layers, tokens, D)
        assert output.prefusion[part].shape == (B, tokens, D)
        assert torch.equal(output.indices()[part], output.logits[part].argmax(-1))


def test_masked_frames_are_never_seen(model):
    motion, mask, speaker, low, high = inputs()
    speech = model.mam.speech_features(low, high)
    changed = motion.clone()
    changed[:, 10] += 5.0  # a masked frame
    with torch.no_grad():
        first = model(motion, mask, speaker, speech)
        second = model(changed, mask, speaker, speech)
        changed[:, 2] += 5.0  # a visible frame
        third = model(changed, mask, speaker, speech)
    for part in PARTS:
        assert torch.equal(first.logits[part], second.logits[part])
        assert not torch.allclose(first.logits[part], third.logits[part])


def test_injection_rows_equal_separate_passes(model):
    motion, mask, speaker, low, high = inputs()
    speech = model.mam.speech_features(low, high)
    rows = torch.tensor([False, True, False])
    with torch.no_grad():
        plain = model(motion, mask, speaker, speech, inject=False)
        injected = model(motion, mask, speaker, speech, inject=True)
        mixed = model(motion, mask, speaker, speech, inject=rows)
    for part in PARTS:
        torch.testing.assert_close(mixed.logits[part][rows], injected.logits[part][rows])
        torch.testing.assert_close(mixed.logits[part][~rows], plain.logits[part][~rows])
        assert not torch.allclose(plain.logits[part], injected.logits[part])
        assert torch.equal(plain.prefusion["face"], injected.prefusion["face"])  # the face branch has no injection
    assert torch.equal(mixed.rows(slice(1, 2)).logits["face"], mixed.logits["face"][1:2])


def test_frame_scores_read_the_unmasked_window_and_sum_to_the_mean_part_weight(model):
    motion, _, speaker, low, high = inputs()
    speech = model.mam.speech_features(low, high)
    with torch.no_grad():
        scores = model.frame_scores(motion, speaker, speech)
        motion[:, 7] += 3.0
        moved = model.frame_scores(motion, speaker, speech)
    assert scores.shape == (B, T)
    # each part's attention rows sum to 1 over the key frames; parts are weighted by raw w_p and averaged
    torch.testing.assert_close(scores.sum(-1), model.sqa.part_weights.mean().expand(B), rtol=1e-5, atol=1e-6)
    assert not torch.allclose(scores, moved)


def test_dropout_only_in_training():
    torch.manual_seed(0)
    model = MaskedGenerator(**TINY, dropout=0.5)
    motion, mask, speaker, low, high = inputs()
    speech = model.mam.speech_features(low, high)
    with torch.no_grad():
        train = [model(motion, mask, speaker, speech).logits["face"] for _ in range(2)]
        model.eval()
        speech = model.mam.speech_features(low, high)
        evaluated = [model(motion, mask, speaker, speech).logits["face"] for _ in range(2)]
    assert not torch.equal(*train)
    assert torch.equal(*evaluated)


def test_code_head_layers_read_only_the_layers_below():
    torch.manual_seed(0)
    head = ResidualCodeHead(latent_dim=8, codebook_size=5, num_layers=4, base_classifier_hidden=12,
                            classifier_hidden=8, decoder_layers=1, num_heads=2, dim_feedforward=16, dropout=0.0)
    base, speech = torch.randn(2, 4, 8), torch.randn(2, 16, 8)
    logits, vectors = head(base, speech)
    assert logits.shape == (2, 4, 4, 5) and vectors.shape == (2, 4, 4, 8)
    assert torch.equal(vectors[:, 0], base)  # layer 0's code vector is the base latent itself
    with torch.no_grad():
        head.merges[0].weight.add_(1.0)  # the merge that feeds layer 2
    new_logits, new_vectors = head(base, speech)
    assert torch.equal(new_vectors[:, :2], vectors[:, :2]) and torch.equal(new_logits[:, :, :2], logits[:, :, :2])
    assert not torch.allclose(new_vectors[:, 2:], vectors[:, 2:])


def test_token_infonce_softmax_runs_over_tokens():
    """As the release's F.cross_entropy on (B, tokens, groups): each pooled speech group picks among the tokens."""
    frames = torch.eye(2).repeat_interleave(2, dim=0)[None]  # 4 frames, pooled in pairs to the axes e0, e1
    assert token_infonce(torch.eye(2)[None], frames, temperature=0.01).item() < 1e-6
    twins = torch.tensor([[[1.0, 0.0], [1.0, 0.0]]])  # both tokens along e0
    # per group, the two tokens are equally similar: log 2 (over groups per token it would be ~1/temperature)
    assert token_infonce(twins, frames, temperature=0.01).item() == pytest.approx(torch.log(torch.tensor(2.0)).item())


def test_mam_losses_and_match_classifier_switch():
    torch.manual_seed(0)
    motion_codes = {part: torch.randn(2, 3, 4, 8) for part in PARTS}
    low, high = torch.randn(2, 2, 16, 8)
    common = dict(d_model=8, num_heads=2, dim_feedforward=16, layers_per_block=1, period=16, dropout=0.0)
    plain = MotionAudioAlignment(**common)(low, high, motion_codes).losses
    with_match = MotionAudioAlignment(**common, match_classifier=True)(low, high, motion_codes).losses
    assert set(plain) == {f"{p}/{t}" for p in PARTS for t in ("infonce", "mse")} | {"total"}
    assert {f"{p}/match" for p in PARTS} <= set(with_match)
    torch.testing.assert_close(plain["total"], sum(value for key, value in plain.items() if key != "total"))


def test_bad_inputs_are_named(model):
    motion, mask, speaker, low, high = inputs()
    speech = model.mam.speech_features(low, high)
    with pytest.raises(ValueError, match="mask must be a bool tensor"):
        model(motion, mask.float(), speaker, speech)
    with pytest.raises(ValueError, match=r"speaker ids must lie in \[0, 5\)"):
        model(motion, mask, speaker + 5, speech)
    with pytest.raises(ValueError, match="speech features missing for part 'lower'"):
        model(motion, mask, speaker, {part: speech[part] for part in ("face", "upper", "hands")})
    with pytest.raises(ValueError, match="inject must be a bool"):
        model(motion, mask, speaker, speech, inject=torch.ones(B))
    with pytest.raises(ValueError, match="not a multiple of frames_per_token"):
        model(motion[:, :6], mask[:, :6], speaker, {part: value[:, :6] for part, value in speech.items()})
    with pytest.raises(ValueError, match="first_stride=3 must divide frames_per_token=4"):
        MaskedGenerator(**TINY, first_stride=3)


def test_release_key_rules():
    assert our_key("motion_encoder.main.3.weight") == "motion_encoder.blocks.1.conv.weight"
    assert our_key("motion_encoder.main.8.model.2.bias") == "motion_encoder.blocks.2.residual.2.bias"
    assert our_key("predict_res_hands.cross_attn_3.layers.2.norm1.weight") == (
        "heads.hands.decoders.2.layers.2.norm1.weight"
    )
    assert our_key("predict_res_face.map_zq5.weight") == "heads.face.merges.3.weight"
    assert our_key("predict_res_lower.classfier_1.mlp.2.bias") == "heads.lower.classifiers.1.2.bias"
    assert our_key("lower_classifier.mlp.0.weight") == "heads.lower.classifiers.0.0.weight"
    assert our_key("mask_generator.shared_transformer_decoder.layers.7.multihead_attn.in_proj_weight") == (
        "sqa.decoder.layers.7.multihead_attn.in_proj_weight"
    )
    assert our_key("MAM.motion_encoder_upper_3.layers.0.linear2.bias") == (
        "mam.branches.upper.encoders.2.layers.0.linear2.bias"
    )
    assert our_key("hands_face_decoder.layers.0.norm3.bias") == "fusion.decoders.hands.layers.0.norm3.bias"
    assert our_key("upper1d.weight") == "body.parts.upper.downsample.conv.weight"
    assert is_dead_release_key("predict_res_face.cross_layer.linear1.weight")
    assert is_dead_release_key("wordhints_decoder.layers.0.norm1.weight")
    assert not is_dead_release_key("face_decoder.layers.0.norm1.weight")
    for unknown in ("motion_encoder.main.1.weight", "mask_generator.shared_transformer_decoder.layers.0.dropout.p"):
        with pytest.raises(KeyError, match="not a key of the release's generator"):
            our_key(unknown)


def test_infer_equals_the_forward_pass_and_keeps_no_state():
    torch.manual_seed(0)
    model = MaskedGenerator(**TINY).eval()
    motion, mask, speaker, low, high = inputs()
    keys = set(model.state_dict())
    with torch.no_grad():
        expected = model(motion, mask, speaker, model.mam.speech_features(low, high))
    stacked = model.infer(motion, mask, speaker, low, high)
    part_by_part = model.infer(motion, mask, speaker, low, high, stack_parts=False)
    for output in (stacked, part_by_part):
        for part in PARTS:
            torch.testing.assert_close(output.logits[part], expected.logits[part])
            torch.testing.assert_close(output.code_vectors[part], expected.code_vectors[part])
    assert set(model.state_dict()) == keys  # the stacked copies are no state
    with torch.no_grad():
        model.heads["hands"].classifiers[0][2].bias.add_(1.0)  # a changed weight reaches the next inference
        changed = model(motion, mask, speaker, model.mam.speech_features(low, high))
    torch.testing.assert_close(model.infer(motion, mask, speaker, low, high).logits["hands"], changed.logits["hands"])


# ------------------------------------------------------------------ the paper's ablation switches


def test_without_speech_injection_passes_with_and_without_it_agree(model):
    ablated = MaskedGenerator(**TINY, speech_injection=False).eval()
    ablated.load_state_dict(model.state_dict())  # the same parameters: the switch builds nothing else
    motion, mask, speaker, low, high = inputs()
    with torch.no_grad():
        for network, same in ((ablated, True), (model, False)):
            speech = network.mam.speech_features(low, high)
            injected, plain = (network(motion, mask, speaker, speech, inject=inject) for inject in (True, False))
            assert torch.equal(injected.logits["upper"], plain.logits["upper"]) == same
        inferred = ablated.infer(motion, mask, speaker, low, high).logits["hands"]
    torch.testing.assert_close(inferred, plain.logits["hands"])  # model's pass without the injection


@pytest.mark.parametrize("levels", ["both", "low", "high"])
def test_mam_speech_levels_choose_which_features_the_speech_branch_reads(model, levels):
    network = MaskedGenerator(**TINY, mam_speech_levels=levels).eval()
    network.load_state_dict(model.state_dict())
    _, _, _, low, high = inputs()
    with torch.no_grad():
        reference = network.mam.speech_features(low, high)["face"]
        changed_low = network.mam.speech_features(low + 1.0, high)["face"]
        changed_high = network.mam.speech_features(low, high + 1.0)["face"]
    assert torch.equal(reference, changed_low) == (levels == "high")
    assert torch.equal(reference, changed_high) == (levels == "low")
    if levels != "both":  # one level read by both cross-attention decoders
        used = low if levels == "low" else high
        torch.testing.assert_close(reference, model.mam.speech_features(used, used)["face"])
    with pytest.raises(ValueError, match="speech_levels must be one of"):
        MotionAudioAlignment(speech_levels="middle")
