"""MaskPolicy: the release's mask of passes B and C (group sizes as fractions of the whole window, U3)."""
import pytest
import torch

from echomask.models.masking import MASK_STRATEGIES, MaskPolicy, select_frames, window_group_sizes

T = 64


def sizes(selection):
    return [int(group.sum(dim=1).unique().item()) for group in (selection.hard, selection.soft, selection.uniform)]


@pytest.mark.parametrize(("progress", "expected"), [(0.0, [0, 13, 11]), (0.5, [6, 6, 12]), (1.0, [13, 0, 11])])
def test_release_group_sizes_are_fractions_of_the_window(progress, expected):
    # release: hard = round(0.2 · progress · 64), soft = round((0.2 − 0.2 · progress) · 64), 24 in all
    scores = torch.rand(5, T, generator=torch.Generator().manual_seed(0))
    selection = MaskPolicy().select(5, T, progress, scores, torch.Generator().manual_seed(1))
    assert sizes(selection) == expected
    assert (selection.mask.sum(dim=1) == 24).all()
    assert window_group_sizes(T, 24, *MaskPolicy().fractions(progress)) == tuple(expected)


def test_pool_factor_one_is_the_release_no_op():
    scores = torch.rand(50, T, generator=torch.Generator().manual_seed(2))
    selection = MaskPolicy(soft_pool_factor=1.0).select(50, T, 0.5, scores, torch.Generator().manual_seed(3))
    ranked = scores.argsort(dim=1, descending=True)
    top12 = torch.zeros_like(selection.mask).scatter(1, ranked[:, :12], True)
    assert torch.equal(selection.hard | selection.soft, top12)  # 6 hard + all 6 "soft" = the 12 best, every time


def test_a_larger_pool_samples_beyond_the_top_of_the_group():
    scores = torch.linspace(1.0, 0.0, T).repeat(400, 1)  # frame i has rank i
    selection = MaskPolicy(soft_pool_factor=2.0).select(400, T, 0.0, scores, torch.Generator().manual_seed(4))
    pool = torch.zeros(T, dtype=torch.bool)
    pool[:26] = True  # no hard frames at progress 0: the 2 × 13 best
    assert (selection.soft_pool == pool).all() and not selection.soft[:, ~pool].any()
    frequency = selection.soft.float().mean(dim=0)
    assert (frequency[13:25] > 0.05).all()  # outside the 13 best, inside the pool
    assert frequency[:13].mean() > frequency[13:26].mean()  # better scores more often


def test_negative_scores_are_valid():
    scores = -torch.rand(4, T, generator=torch.Generator().manual_seed(5)) - 1.0
    scores[:, [3, 30]] = -0.1
    selection = MaskPolicy(hard_schedule=(0.2, 0.2), soft_schedule=(0.0, 0.0)).select(4, T, 0.0, scores)
    assert selection.hard[:, [3, 30]].all()


def test_strategies():
    scores = torch.rand(3, T)
    for strategy in MASK_STRATEGIES:
        policy = MaskPolicy(strategy=strategy)
        selection = policy.select(3, T, 1.0, scores if policy.score_source else None)
        if strategy == "none":
            assert selection is None
            continue
        assert (selection.mask.sum(dim=1) == 24).all()
        if strategy == "random":
            assert not (selection.hard | selection.soft).any()
    for strategy, source in (("speech_queried", "sqa"), ("loss_based", "loss")):
        with pytest.raises(ValueError, match=rf"needs \({source}\) scores of shape \(3, 64\), got None"):
            MaskPolicy(strategy=strategy).select(3, T, 0.0)


def test_keep_first_and_bad_settings():
    selection = MaskPolicy(keep_first=4).select(8, T, 0.3, torch.rand(8, T))
    assert not selection.mask[:, :4].any() and (selection.mask.sum(dim=1) == 24).all()
    with pytest.raises(ValueError, match="unknown masking strategy 'everything'"):
        MaskPolicy(strategy="everything")
    with pytest.raises(ValueError, match="soft_pool_factor must be >= 1"):
        MaskPolicy(soft_pool_factor=0.5)
    with pytest.raises(ValueError, match="at most the 8 masked frames"):
        window_group_sizes(T, 8, 0.2, 0.0)
    with pytest.raises(ValueError, match="scores must be finite"):
        select_frames(torch.full((1, T), float("nan")), 1, 0, 0)
