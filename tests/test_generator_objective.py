"""GeneratorObjective: the three-pass training objective without a Trainer (lit/generator_objective.py). The
paper-size sums are checked against the release's formula on golden outputs in test_generator_golden.py."""
import copy

import pytest
import torch

from echomask.lit.generator_objective import GeneratorBatch, GeneratorObjective, LossWeights
from echomask.models.masked_generator import PARTS, MaskedGenerator
from echomask.models.masking import MaskPolicy

B, T, D, L, K = 4, 32, 16, 2, 12  # windows, frames, latent size, RVQ layers, codes
SIZES = dict(
    motion_dim=10, num_speakers=3, latent_dim=D, codebook_size=K, num_rvq_layers=L,
    hidden_dim=16, hidden_heads=2, hidden_feedforward=32, encoder_width=8, encoder_blocks=2, face_decoder_layers=1,
    fusion_heads=2, fusion_feedforward=32, base_classifier_hidden=16, classifier_hidden=16,
    cascade_layers=1, cascade_heads=2, cascade_feedforward=32,
    mam_heads=2, mam_feedforward=32, mam_layers_per_block=1, sqa_layers=1, sqa_heads=2, sqa_feedforward=32, period=T,
)


def make_model(**overrides) -> MaskedGenerator:
    torch.manual_seed(0)
    return MaskedGenerator(**{**SIZES, **overrides})


def make_batch(seed: int = 0) -> GeneratorBatch:
    draw = torch.Generator().manual_seed(seed)
    tokens = T // 4
    return GeneratorBatch(
        motion=torch.randn(B, T, SIZES["motion_dim"], generator=draw),
        speaker=torch.randint(0, SIZES["num_speakers"], (B,), generator=draw),
        speech_low=torch.randn(B, T, D, generator=draw),
        speech_high=torch.randn(B, T, D, generator=draw),
        codes={part: torch.randn(B, L, tokens, D, generator=draw) for part in PARTS},
        indices={part: torch.randint(0, K, (B, tokens, L), generator=draw) for part in PARTS},
    )


def test_every_parameter_learns_and_the_scorer_does_not():
    model = make_model(mam_match_classifier=True)
    scorer = copy.deepcopy(model).eval()
    rng = torch.Generator().manual_seed(1)
    result = GeneratorObjective()(model, make_batch(), progress=0.3, scorer=scorer, rng=rng)
    assert torch.isfinite(result.loss)
    result.loss.backward()
    silent = [name for name, value in model.named_parameters() if value.grad is None or not value.grad.any()]
    assert not silent, f"no gradient reaches {silent}"
    assert all(parameter.grad is None for parameter in scorer.parameters())
    assert set(result.passes) == {"A", "B", "C"}
    for name in "ABC":
        expected = {f"{name}/{term}" for term in ("loss", "code_mse", "cross_entropy", "mam", "accuracy_l0")}
        assert expected <= set(result.terms)
    assert {"A/infonce_face", "A/infonce_hands", "mam/face/match", "mask/hard_frames"} <= set(result.terms)
    assert "B/infonce_face" not in result.terms
    # progress 0.3 of 32 frames: hard round(0.06·32) = 2, soft round(0.14·32) = 4, 12 masked in all
    assert [result.terms[f"mask/{g}_frames"].item() for g in ("hard", "soft", "uniform")] == [2.0, 4.0, 6.0]


def test_the_loss_is_the_weighted_sum_of_the_terms():
    model = make_model().eval()
    weights = LossWeights(code_mse=0.7, cross_entropy=1.3, mam=0.4, infonce_face=2.0, infonce_hands=0.1)
    with torch.no_grad():
        result = GeneratorObjective(weights=weights)(model, make_batch(), 0.5, scorer=model)
    terms = result.terms
    expected = 0.0
    for name in "ABC":
        value = 0.7 * terms[f"{name}/code_mse"] + 1.3 * terms[f"{name}/cross_entropy"] + 0.4 * terms[f"{name}/mam"]
        if name == "A":
            value = value + 2.0 * terms["A/infonce_face"] + 0.1 * terms["A/infonce_hands"]
        torch.testing.assert_close(terms[f"{name}/loss"], value)
        expected = expected + value
    torch.testing.assert_close(result.loss, expected)


RELEASE = dict(mam_once=False, batch_passes_bc=False, share_work=False)  # three separate full passes, MAM in each
STRAIGHTFORWARD = {
    "release": RELEASE,
    "mam_once": dict(RELEASE, mam_once=True),
    "batch_passes_bc": dict(RELEASE, batch_passes_bc=True),
    "mam_once+batch_passes_bc": dict(share_work=False),
}


def losses_and_gradients(model, scorer, batch, **options):
    model.zero_grad(set_to_none=True)
    result = GeneratorObjective(**options)(model, batch, 0.2, scorer=scorer, rng=torch.Generator().manual_seed(2))
    result.loss.backward()
    return result, {name: parameter.grad.clone() for name, parameter in model.named_parameters()}


@pytest.mark.parametrize("straightforward", list(STRAIGHTFORWARD))
def test_shared_work_gives_the_straightforward_losses_and_gradients(straightforward):
    """With dropout 0 (training mode, nothing random), computing the step's shared work once (the default) gives
    every loss term and every parameter's gradient of the straightforward computation, float summation aside."""
    model = make_model(dropout=0.0, mam_match_classifier=True)
    scorer = copy.deepcopy(model).eval()
    batch = make_batch()
    shared, shared_gradients = losses_and_gradients(model, scorer, batch)
    reference, gradients = losses_and_gradients(model, scorer, batch, **STRAIGHTFORWARD[straightforward])
    assert torch.equal(shared.selection.mask, reference.selection.mask)
    assert set(shared.terms) == set(reference.terms)
    for name, value in reference.terms.items():
        torch.testing.assert_close(shared.terms[name], value, rtol=1e-5, atol=1e-6, msg=name)
    assert set(shared_gradients) == set(gradients)
    for name, gradient in gradients.items():
        assert gradient.abs().max() > 0, f"{name} gets no gradient"
        scale = gradient.abs().max().item()
        torch.testing.assert_close(shared_gradients[name], gradient, rtol=1e-4, atol=1e-5 * scale, msg=name)


def test_shared_work_needs_one_mam_and_batched_masked_passes():
    with pytest.raises(ValueError, match="share_work needs mam_once and batch_passes_bc"):
        GeneratorObjective(mam_once=False)
    with pytest.raises(ValueError, match="share_work needs mam_once and batch_passes_bc"):
        GeneratorObjective(batch_passes_bc=False)


def test_shared_work_draws_one_dropout_mask_for_passes_b_and_c():
    """In training, passes B and C read one trunk (the same face latent, dropout drawn once); the straightforward
    batch draws dropout per row, so its B and C face latents differ."""
    model = make_model(dropout=0.3)
    batch = make_batch()
    outputs = {}
    for name, options in {"shared": {}, "straightforward": dict(share_work=False)}.items():
        torch.manual_seed(5)
        outputs[name] = GeneratorObjective(MaskPolicy(strategy="random"), **options)(model, batch, 0.5).passes
    shared, straightforward = outputs["shared"], outputs["straightforward"]
    assert torch.equal(shared["B"].prefusion["face"], shared["C"].prefusion["face"])
    assert not torch.equal(straightforward["B"].prefusion["face"], straightforward["C"].prefusion["face"])


def test_strategies_and_their_scores():
    model, batch = make_model().eval(), make_batch()
    with torch.no_grad():
        none = GeneratorObjective(MaskPolicy(strategy="none"))(model, batch, 0.5)
        random = GeneratorObjective(MaskPolicy(strategy="random"))(model, batch, 0.5)
        loss_policy = MaskPolicy(strategy="loss_based", hard_schedule=(0.125, 0.125))
        loss_based = GeneratorObjective(loss_policy)(model, batch, 0.0)
        with pytest.raises(ValueError, match="needs a scorer"):
            GeneratorObjective()(model, batch, 0.5)
    assert set(none.passes) == {"A"} and none.selection is None and none.scores is None
    assert set(random.passes) == {"A", "B", "C"} and random.scores is None
    assert not (random.selection.hard | random.selection.soft).any()
    # loss_based: the scores are pass A's per-token loss spread over the token's frames; hard = the 4 worst frames
    scores = loss_based.scores
    assert scores.shape == (B, T) and torch.equal(scores[:, 0::4], scores[:, 3::4])
    worst = scores.topk(4, dim=1).values[:, -1:]
    assert (scores[loss_based.selection.hard] >= worst.expand(B, 4).flatten()).all()


@pytest.mark.parametrize("straightforward", ["release", "mam_once+batch_passes_bc"])
def test_every_path_runs_under_bf16_autocast(straightforward):
    """bf16 autocast (CPU) through the shared and the straightforward paths: the same loss as fp32 within bf16's
    precision (eval mode, nothing random)."""
    model, batch = make_model().eval(), make_batch()
    for options in ({}, STRAIGHTFORWARD[straightforward]):
        objective = GeneratorObjective(**options)
        with torch.no_grad():
            expected = objective(model, batch, 0.2, scorer=model, rng=torch.Generator().manual_seed(2))
            with torch.autocast("cpu", dtype=torch.bfloat16):
                result = objective(model, batch, 0.2, scorer=model, rng=torch.Generator().manual_seed(2))
        torch.testing.assert_close(result.loss, expected.loss, rtol=2e-2, atol=0.0)


BF16_CURVE_STEPS = 128  # per precision (4 batches, 32 times each)
BF16_CURVE_WINDOW = 16  # steps per compared mean
BF16_CURVE_TOLERANCE = 0.01  # relative; measured: 0.09 % at most over 200 steps in windows of 25


def loss_curve(bf16: bool) -> torch.Tensor:
    """Losses of BF16_CURVE_STEPS Adam steps of the tiny model (dropout 0, random masks drawn from the step number)
    with the forward pass under bf16 autocast or in fp32, as Lightning's bf16-mixed and 32-true run a step."""
    model = make_model(dropout=0.0)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.5, 0.999))
    batches = [make_batch(seed) for seed in range(4)]
    objective = GeneratorObjective(MaskPolicy(strategy="random"))
    losses = []
    for step in range(BF16_CURVE_STEPS):
        rng = torch.Generator().manual_seed(step)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            result = objective(model, batches[step % 4], step / BF16_CURVE_STEPS, rng=rng)
        optimizer.zero_grad()
        result.loss.backward()
        optimizer.step()
        losses.append(result.loss.item())
    return torch.tensor(losses)


def test_bf16_mixed_training_follows_the_fp32_loss_curve():
    """The numerical check of `precision: auto` (issue 17): training in bf16-mixed follows the fp32 loss curve, every
    mean over BF16_CURVE_WINDOW steps within BF16_CURVE_TOLERANCE of fp32's, while the loss falls. One thread: the
    tiny model's steps are per-op overhead, which a second thread only adds to."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        fp32, bf16 = loss_curve(bf16=False), loss_curve(bf16=True)
    finally:
        torch.set_num_threads(threads)
    assert not torch.equal(fp32, bf16)  # bf16 did run
    fp32_means, bf16_means = (curve.unfold(0, BF16_CURVE_WINDOW, BF16_CURVE_WINDOW).mean(1) for curve in (fp32, bf16))
    assert fp32_means[-1] < 0.8 * fp32_means[0]  # it learns
    relative = ((bf16_means - fp32_means).abs() / fp32_means).max().item()
    assert relative <= BF16_CURVE_TOLERANCE, relative
