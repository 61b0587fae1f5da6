"""MaskPolicy: the release's mask of passes B and C (group sizes as fractions of the whole window, U3)."""
import pytest
import torch

from echomask.models.masking import MASK_STRATEGIES, MaskPolicy, seed_mask, select_frames, window_group_sizes

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


def test_soft_sampling_is_proportional_to_score():
    scores = torch.zeros(2000, T)
    scores[:, :10] = 1.0
    scores[:, 0] = 20.0  # in the pool, far more likely than the other 9 (the floor is 0)
    selection = select_frames(scores, 0, 1, 23, soft_pool_factor=10.0, generator=torch.Generator().manual_seed(3))
    frequency = selection.soft.float().mean(0)
    assert frequency[0] == pytest.approx(20 / 29, abs=0.04)
    assert frequency[1:10].sum() == pytest.approx(9 / 29, abs=0.04)


def test_selection_is_reproducible_with_a_generator_and_random_covers_frames_evenly():
    scores = torch.rand(4, T)
    first, second = (
        MaskPolicy().select(4, T, 0.5, scores, generator=torch.Generator().manual_seed(5)) for _ in range(2)
    )
    assert torch.equal(first.mask, second.mask)
    mask = MaskPolicy(strategy="random").select(3000, T, 0.5, generator=torch.Generator().manual_seed(6)).mask
    assert (mask.sum(-1) == 24).all()
    assert ((mask.float().mean(0) - 24 / T).abs() < 0.05).all()


def test_seed_mask_hides_everything_but_the_seed_frames():
    mask = seed_mask(2, T, 4)
    assert not mask[:, :4].any() and mask[:, 4:].all()
