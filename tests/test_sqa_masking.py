"""SQA (speech-queried attention) and the frame-mask selection functions (SPEC §6.3)."""

import pytest
import torch
from torch import nn

from echomask.models.masking import (
    MASK_STRATEGIES,
    group_sizes,
    loss_based_mask,
    make_mask,
    mask_schedule,
    random_mask,
    seed_mask,
    select_mask,
    select_mask_parts,
)
from echomask.models.sqa import SQA_PARTS, SpeechQueriedAttention
from echomask.models.transformer_blocks import AttentionDecoderLayer

T = 64


# ---------------------------------------------------------------- attention decoder layer


def test_attention_decoder_layer_matches_torch_decoder_layer_and_returns_weights():
    torch.manual_seed(0)
    ours = AttentionDecoderLayer(d_model=16, num_heads=4, dim_feedforward=32, dropout=0.0).eval()
    reference = nn.TransformerDecoderLayer(16, 4, 32, dropout=0.0, batch_first=True).eval()
    reference.self_attn.load_state_dict(ours.self_attn.state_dict())
    reference.multihead_attn.load_state_dict(ours.cross_attn.state_dict())
    reference.linear1.load_state_dict(ours.feedforward[0].state_dict())
    reference.linear2.load_state_dict(ours.feedforward[3].state_dict())
    reference.norm1.load_state_dict(ours.norm_self.state_dict())
    reference.norm2.load_state_dict(ours.norm_cross.state_dict())
    reference.norm3.load_state_dict(ours.norm_feedforward.state_dict())
    target, memory = torch.randn(2, 5, 16), torch.randn(2, 7, 16)
    output, weights = ours(target, memory)
    torch.testing.assert_close(output, reference(target, memory))
    assert weights.shape == (2, 4, 5, 7)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 4, 5))


# ---------------------------------------------------------------- SQA


def tiny_sqa(**overrides) -> SpeechQueriedAttention:
    sizes = dict(
        motion_dim=11,
        speech_dim=8,
        encoder_width=16,
        d_model=16,
        num_heads=2,
        dim_feedforward=32,
        num_layers=3,
        num_speakers=3,
        dropout=0.0,
    )
    sizes.update(overrides)
    return SpeechQueriedAttention(**sizes)


def test_sqa_shapes_and_score_normalisation():
    sqa = tiny_sqa().eval()
    motion = torch.randn(2, T, 11)
    speech = {part: torch.randn(2, T, 8) for part in SQA_PARTS}
    output = sqa(motion, torch.tensor([0, 2]), speech)
    assert output.scores.shape == (2, T)
    assert output.part_scores.shape == (3, 2, T)
    assert output.attention.shape == (2, T, T)
    assert output.injection.shape == (2, T, 16)
    assert (output.scores >= 0).all()
    torch.testing.assert_close(output.scores.sum(-1), torch.ones(2))
    torch.testing.assert_close(output.part_scores.sum(-1), torch.ones(3, 2))
    torch.testing.assert_close(output.attention.mean(1), output.scores)
    with pytest.raises(ValueError, match="speaker ids"):
        sqa(motion, torch.tensor([0, 3]), speech)
    with pytest.raises(ValueError, match="missing"):
        sqa(motion, torch.tensor([0, 1]), {"hands": speech["hands"]})


def make_attention_transparent(sqa: SpeechQueriedAttention) -> None:
    """Every decoder layer: self-attention, cross-attention output and feed-forward contribute zero,
    the cross-attention query/key projections are the identity. Each layer's cross-attention then
    compares the layer-normalised target directly with the memory."""
    d = sqa.query_projection.out_features
    with torch.no_grad():
        for layer in sqa.decoder.layers:
            for attention in (layer.self_attn, layer.cross_attn):
                attention.out_proj.weight.zero_()
                attention.out_proj.bias.zero_()
            layer.cross_attn.in_proj_weight[: 2 * d] = torch.cat([torch.eye(d), torch.eye(d)])
            layer.cross_attn.in_proj_bias.zero_()
            layer.feedforward[3].weight.zero_()
            layer.feedforward[3].bias.zero_()


def zero_mean_unit(vector: torch.Tensor) -> torch.Tensor:
    vector = vector - vector.mean()
    return vector / vector.norm()


def test_the_frame_whose_key_matches_the_queries_gets_the_highest_score():
    sqa = tiny_sqa().eval()
    make_attention_transparent(sqa)
    d = 16
    generator = torch.Generator().manual_seed(0)
    direction = [zero_mean_unit(torch.randn(d, generator=generator)) for _ in SQA_PARTS]
    batch = 2
    keys = 0.1 * torch.randn(batch, T, d, generator=generator)
    key_frames = [10, 40, 55]  # the frame each part's query matches
    for frame, vector in zip(key_frames, direction):
        keys[:, frame] = 12.0 * vector
    queries = torch.stack([vector.expand(batch, T, d) for vector in direction])
    output = sqa.attend(queries, keys)
    for part_index, frame in enumerate(key_frames):
        assert (output.part_scores[part_index].argmax(-1) == frame).all()
        assert (output.part_scores[part_index, :, frame] > 0.5).all()
    torch.testing.assert_close(output.scores.sum(-1), torch.ones(batch))
    # the learnable part weights decide which part's frame wins the combined score
    for favoured, frame in enumerate(key_frames):
        with torch.no_grad():
            sqa.part_logits.fill_(0.0)
            sqa.part_logits[favoured] = 5.0
        assert (sqa.attend(queries, keys).scores.argmax(-1) == frame).all()


def test_sqa_injection_carries_gradients_to_every_parameter():
    sqa = tiny_sqa()
    speech = {part: torch.randn(2, T, 8) for part in SQA_PARTS}
    output = sqa(torch.randn(2, T, 11), torch.tensor([0, 1]), speech)
    output.injection.pow(2).mean().backward()
    for name, parameter in sqa.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, f"no gradient reaches {name}"


# ---------------------------------------------------------------- mask selection


def test_group_sizes_add_up():
    assert group_sizes(24, 0.2, 0.0) == (5, 0, 19)
    assert group_sizes(24, 0.0, 0.2) == (0, 5, 19)
    assert group_sizes(24, 0.1, 0.1) == (2, 2, 20)
    with pytest.raises(ValueError, match="fractions"):
        group_sizes(24, 0.7, 0.5)


def test_mask_schedule_endpoints_and_midpoint():
    assert mask_schedule(0.0) == pytest.approx((0.0, 0.2))
    assert mask_schedule(1.0) == pytest.approx((0.2, 0.0))
    assert mask_schedule(0.5) == pytest.approx((0.1, 0.1))
    with pytest.raises(ValueError, match="progress"):
        mask_schedule(1.5)


@pytest.mark.parametrize("keep_first", [0, 4])
def test_exactly_num_masked_frames_for_many_scores_and_schedules(keep_first):
    generator = torch.Generator().manual_seed(0)
    for trial, progress in enumerate(torch.linspace(0, 1, 11).tolist()):
        hard_fraction, soft_fraction = mask_schedule(progress)
        scores = torch.rand(32, T, generator=generator) ** (1 + trial)
        scores[:4] = 0.0  # all-zero rows
        scores[4:8] = scores[4:8].round(decimals=1)  # many ties
        for num_masked in (1, 24, 40):
            parts = select_mask_parts(
                scores, num_masked, hard_fraction, soft_fraction, keep_first=keep_first, generator=generator
            )
            assert (parts.mask.sum(-1) == num_masked).all()
            assert not (parts.hard & parts.soft).any()
            assert not (parts.hard & parts.uniform).any()
            assert not (parts.soft & parts.uniform).any()
            assert not parts.mask[:, :keep_first].any()
            assert not (parts.soft & ~parts.soft_pool).any()


def test_hard_part_picks_the_frames_with_huge_attention():
    scores = torch.rand(8, T, generator=torch.Generator().manual_seed(1)) * 0.01
    peaks = [3, 8, 17, 50, 61]
    scores[:, peaks] = 10.0
    parts = select_mask_parts(scores, 24, hard_fraction=0.2, soft_fraction=0.0)  # 5 hard frames
    expected = torch.zeros(8, T, dtype=torch.bool)
    expected[:, peaks] = True
    assert torch.equal(parts.hard, expected)
    assert not parts.soft.any()


def test_soft_group_is_drawn_from_a_pool_larger_than_the_group():
    rows = 400
    scores = torch.linspace(1.0, 0.1, T).repeat(rows, 1)  # frame i has rank i
    parts = select_mask_parts(
        scores,
        num_masked=24,
        hard_fraction=2 / 24,
        soft_fraction=5 / 24,
        soft_pool_factor=2.0,
        generator=torch.Generator().manual_seed(2),
    )
    assert parts.hard[:, :2].all() and parts.hard.sum() == 2 * rows
    pool = torch.zeros(T, dtype=torch.bool)
    pool[2:12] = True  # the next-best 10 = 2 × 5 frames after the 2 hard ones
    assert (parts.soft_pool == pool).all()
    assert (parts.soft.sum(-1) == 5).all()
    assert not parts.soft[:, ~pool].any()  # never outside the pool
    chosen_often = parts.soft.float().mean(0)
    # frames outside the top-`group` but inside the pool are chosen sometimes
    assert (chosen_often[7:12] > 0.05).all()
    # and the better-scored frames more often than the worse ones (sampling ∝ score)
    assert chosen_often[2:7].mean() > chosen_often[7:12].mean()


def test_soft_sampling_is_proportional_to_score():
    scores = torch.zeros(1, T)
    scores[0, :10] = 1.0
    scores[0, 0] = 20.0  # in the pool (hard = 0), far more likely than the other 9
    scores = scores.repeat(2000, 1)
    parts = select_mask_parts(
        scores, 24, 0.0, 1 / 24, soft_pool_factor=10.0, generator=torch.Generator().manual_seed(3)
    )
    frequency = parts.soft.float().mean(0)
    assert frequency[0] == pytest.approx(20 / 29, abs=0.04)
    assert frequency[1:10].sum() == pytest.approx(9 / 29, abs=0.04)


def test_select_mask_rejects_bad_arguments():
    scores = torch.rand(2, T)
    with pytest.raises(ValueError, match="soft_pool_factor"):
        select_mask(scores, soft_pool_factor=1.0)
    with pytest.raises(ValueError, match="non-negative"):
        select_mask(scores - 1.0)
    with pytest.raises(ValueError, match="cannot mask"):
        select_mask(scores, num_masked=62, keep_first=4)


def test_select_mask_is_reproducible_with_a_generator():
    scores = torch.rand(4, T)
    first = select_mask(scores, 24, 0.1, 0.1, generator=torch.Generator().manual_seed(5))
    second = select_mask(scores, 24, 0.1, 0.1, generator=torch.Generator().manual_seed(5))
    assert torch.equal(first, second)


def test_random_mask_counts_and_covers_all_frames_evenly():
    mask = random_mask(3000, T, 24, generator=torch.Generator().manual_seed(6))
    assert (mask.sum(-1) == 24).all()
    frequency = mask.float().mean(0)
    assert ((frequency - 24 / T).abs() < 0.05).all()


def test_loss_based_mask_uses_the_loss_as_score():
    loss = torch.rand(5, T) * 0.1
    worst = [0, 20, 33, 47, 63]
    loss[:, worst] = 5.0
    mask = loss_based_mask(loss, 24, hard_fraction=0.2, soft_fraction=0.0)
    assert mask[:, worst].all() and (mask.sum(-1) == 24).all()


def test_seed_mask_hides_everything_but_the_seed_frames():
    mask = seed_mask(2, T, 4)
    assert not mask[:, :4].any() and mask[:, 4:].all()


def test_make_mask_dispatches_every_strategy():
    scores = torch.rand(3, T)
    common = dict(batch_size=3, num_frames=T, progress=1.0, generator=torch.Generator().manual_seed(7))
    for strategy in MASK_STRATEGIES:
        mask = make_mask(strategy, scores=scores, per_frame_loss=scores, **common)
        assert mask.shape == (3, T) and mask.dtype == torch.bool
        assert (mask.sum(-1) == (0 if strategy == "none" else 24)).all()
    # at progress 1 the hard part (5 frames) is the 5 top-scored frames
    top5 = scores.topk(5, dim=-1).indices
    assert make_mask("speech_queried", scores=scores, **common).gather(1, top5).all()
    with pytest.raises(ValueError, match="SQA frame scores"):
        make_mask("speech_queried", **common)
    with pytest.raises(ValueError, match="per-frame loss"):
        make_mask("loss_based", **common)
    with pytest.raises(ValueError, match="unknown masking strategy"):
        make_mask("everything", **common)
