"""The stage-2 generator as a plain nn.Module (SPEC §6.4): shapes, masking, inference cascade,
gradients through a training-style step (passes A, B, C of SPEC §6.5) and the paper size."""

import time

import pytest
import torch
import torch.nn.functional as F

from echomask.models.decoding import choose_codes
from echomask.models.generator import GENERATOR_PARTS, EchoMaskGenerator
from echomask.models.masking import make_mask, seed_mask

T = 64
N = 16
TINY = dict(
    motion_dim=337,
    num_speakers=3,
    speech_dim=32,
    latent_dim=32,
    hidden_dim=64,
    hidden_heads=2,
    encoder_width=32,
    face_decoder_layers=1,
    num_rvq_layers=3,
    codebook_size=16,
    cascade_layers=1,
    latent_heads=2,
    mam_heads=2,
    mam_layers_per_block=1,
    sqa_layers=2,
    sqa_heads=2,
    dropout=0.0,
)
L, K, D = TINY["num_rvq_layers"], TINY["codebook_size"], TINY["latent_dim"]


def window(batch: int = 2, seed: int = 0) -> dict:
    generator = torch.Generator().manual_seed(seed)
    return dict(
        motion=torch.randn(batch, T, 337, generator=generator),
        speaker=torch.randint(0, 3, (batch,), generator=generator),
        low=torch.randn(batch, T, 32, generator=generator),
        high=torch.randn(batch, T, 32, generator=generator),
    )


def ground_truth_codes(batch: int = 2, seed: int = 1) -> tuple[dict, dict, torch.Tensor]:
    """part -> indices (B, N, L), part -> code vectors (L, B, N, D), and the codebooks (L, K, D)."""
    generator = torch.Generator().manual_seed(seed)
    codebooks = torch.randn(L, K, D, generator=generator)
    indices = {part: torch.randint(0, K, (batch, N, L), generator=generator) for part in GENERATOR_PARTS}
    vectors = {
        part: torch.stack([codebooks[layer][idx[..., layer]] for layer in range(L)]) for part, idx in indices.items()
    }
    return indices, vectors, codebooks


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Run this module on one thread: with 2 threads on a shared 2-core machine, OpenMP barriers make
    small ops ~100× slower whenever another process holds a core (the paper-size timing would measure
    the neighbours, and the tiny models are latency-bound anyway)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny() -> EchoMaskGenerator:
    torch.manual_seed(0)
    return EchoMaskGenerator(**TINY)


def test_teacher_forced_forward_shapes(tiny):
    inputs = window()
    _, codes, _ = ground_truth_codes()
    output = tiny(**inputs, mask=seed_mask(2, T), gt_codes=codes)
    for part in GENERATOR_PARTS:
        assert output.logits[part].shape == (L, 2, N, K)
        assert output.code_vectors[part].shape == (L, 2, N, D)
        assert output.latents[part].shape == (2, N, D)
        assert output.speech[part].shape == (2, T, 32)
        torch.testing.assert_close(output.code_vectors[part][0], output.latents[part])
    assert output.indices is None
    assert torch.isfinite(output.alignment_losses["total"])


def test_alignment_off_skips_only_the_mam_losses(tiny):
    tiny.eval()
    inputs = window()
    _, codes, _ = ground_truth_codes()
    mask = seed_mask(2, T)
    with_alignment = tiny(**inputs, mask=mask, gt_codes=codes)
    without = tiny(**inputs, mask=mask, gt_codes=codes, alignment=False)
    assert without.alignment_losses == {} and with_alignment.alignment_losses
    for part in GENERATOR_PARTS:
        torch.testing.assert_close(without.logits[part], with_alignment.logits[part], rtol=0, atol=0)
    tiny.train()


def test_masked_frames_are_never_seen(tiny):
    tiny.eval()
    inputs = window()
    _, codes, _ = ground_truth_codes()
    mask = seed_mask(2, T)
    reference = tiny(**inputs, mask=mask, gt_codes=codes).logits["upper"]
    hidden_changed = dict(inputs, motion=inputs["motion"].clone())
    hidden_changed["motion"][:, 4:] += 3.0
    torch.testing.assert_close(tiny(**hidden_changed, mask=mask, gt_codes=codes).logits["upper"], reference)
    visible_changed = dict(inputs, motion=inputs["motion"].clone())
    visible_changed["motion"][:, :4] += 3.0
    assert not torch.allclose(tiny(**visible_changed, mask=mask, gt_codes=codes).logits["upper"], reference)
    tiny.train()


def test_inference_cascade_feeds_looked_up_codes(tiny):
    tiny.eval()
    inputs = window()
    mask = seed_mask(2, T)
    _, codes, codebooks = ground_truth_codes()
    calls = []

    def ground_truth_lookup(part, layer, indices):
        calls.append((part, layer, tuple(indices.shape)))
        return codes[part][layer]

    # with a lookup that returns the ground-truth vectors the inference cascade equals teacher forcing
    teacher_forced = tiny(**inputs, mask=mask, gt_codes=codes)
    indices = tiny.predict_indices(**inputs, mask=mask, code_lookup=ground_truth_lookup)
    for part in GENERATOR_PARTS:
        assert indices[part].shape == (2, N, L) and indices[part].dtype == torch.int64
        assert torch.equal(indices[part], teacher_forced.logits[part].argmax(-1).permute(1, 2, 0))
    assert sorted(calls) == sorted((part, layer, (2, N)) for part in GENERATOR_PARTS for layer in range(L - 1))

    # with the real codebooks the chosen codes drive the next layers
    def codebook_lookup(part, layer, idx):
        return codebooks[layer][idx]

    output = tiny(**inputs, mask=mask, code_lookup=codebook_lookup)
    for part in GENERATOR_PARTS:
        assert torch.equal(output.indices[part][..., 0], output.logits[part][0].argmax(-1))
    assert output.alignment_losses == {}
    tiny.train()


def test_choose_codes_argmax_and_top_k():
    logits = torch.randn(3, 5, 16, generator=torch.Generator().manual_seed(2))
    assert torch.equal(choose_codes(logits), logits.argmax(-1))
    assert torch.equal(choose_codes(logits, temperature=1.0, top_k=1), logits.argmax(-1))
    repeated = logits[:1].expand(200, 5, 16)
    drawn = choose_codes(repeated, temperature=2.0, top_k=3, generator=torch.Generator().manual_seed(3))
    top3 = logits[0].topk(3, dim=-1).indices
    assert (drawn[..., None] == top3).any(-1).all()
    assert len(drawn[:, 0].unique()) > 1
    with pytest.raises(ValueError, match="temperature"):
        choose_codes(logits, temperature=-1.0)


def training_style_loss(model: EchoMaskGenerator, inputs: dict, codes: dict, indices: dict) -> torch.Tensor:
    """Passes A (seed frames visible, injection), B (SQA mask, no injection), C (SQA mask, injection)."""
    batch = inputs["motion"].shape[0]
    speech = model.mam.speech_features(inputs["low"], inputs["high"])
    attention = model.sqa(inputs["motion"], inputs["speaker"], speech)
    sqa_mask = make_mask(
        "speech_queried", scores=attention.scores.detach(), batch_size=batch, num_frames=T, progress=0.5
    )
    total = torch.zeros(())
    for mask, injection in (
        (seed_mask(batch, T), attention.injection),
        (sqa_mask, None),
        (sqa_mask, attention.injection),
    ):
        output = model(**inputs, mask=mask, injection=injection, gt_codes=codes, speech=speech)
        total = total + output.alignment_losses["total"]
        for part in GENERATOR_PARTS:
            total = total + 3 * F.mse_loss(output.code_vectors[part], codes[part]) / L
            for layer in range(L):
                logits = output.logits[part][layer].flatten(0, 1)
                cross_entropy = F.cross_entropy(logits, indices[part][..., layer].flatten())
                total = total + cross_entropy / (layer + 1)
    return total


def test_training_style_backward_reaches_every_parameter():
    torch.manual_seed(0)
    model = EchoMaskGenerator(**TINY)
    indices, codes, _ = ground_truth_codes()
    loss = training_style_loss(model, window(), codes, indices)
    assert torch.isfinite(loss)
    loss.backward()
    dead = [name for name, p in model.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert dead == [], f"parameters without gradient: {dead}"


def test_bad_inputs_are_rejected(tiny):
    inputs = window()
    _, codes, _ = ground_truth_codes()
    with pytest.raises(ValueError, match="mask must be a bool"):
        tiny(**inputs, mask=seed_mask(2, T).float(), gt_codes=codes)
    with pytest.raises(ValueError, match="speaker ids"):
        tiny(**dict(inputs, speaker=torch.tensor([0, 7])), mask=seed_mask(2, T), gt_codes=codes)
    with pytest.raises(ValueError, match="gt_codes .* or a code_lookup"):
        tiny(**inputs, mask=seed_mask(2, T))
    with pytest.raises(ValueError, match="injection must be"):
        tiny(**inputs, mask=seed_mask(2, T), gt_codes=codes, injection=torch.zeros(2, T, 5))
    with pytest.raises(ValueError, match="gt_codes\\['face'\\] must be"):
        tiny(**inputs, mask=seed_mask(2, T), gt_codes=dict(codes, face=codes["face"][:2]))
    with pytest.raises(ValueError, match="not a multiple"):
        short = {name: value[:, :62] if value.ndim == 3 else value for name, value in inputs.items()}
        tiny(**short, mask=seed_mask(2, 62), gt_codes=codes)


def decoder_layer_parameters(d: int, feedforward: int) -> int:
    attention = 4 * d * d + 4 * d  # q, k, v, out projections with biases
    return 2 * attention + (d * feedforward + feedforward + feedforward * d + d) + 3 * 2 * d


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_paper_size_generator_runs_one_window_at_batch_1():
    torch.manual_seed(0)
    model = EchoMaskGenerator().eval()  # paper defaults
    # the paper sizes are really used: d 768 / ff 1536 decoders, 8 SQA layers, 5 × 3-layer cascades at d 256
    assert count(model.face_decoder) == 4 * decoder_layer_parameters(768, 1536)
    assert count(model.sqa.decoder) == 8 * decoder_layer_parameters(768, 1536)
    assert count(model.cascade["hands"]) == 5 * 3 * decoder_layer_parameters(256, 512)
    total = count(model)
    assert 150e6 < total < 250e6, f"{total / 1e6:.1f} M parameters"

    generator = torch.Generator().manual_seed(0)
    inputs = dict(
        motion=torch.randn(1, T, 337, generator=generator),
        speaker=torch.tensor([24]),
        low=torch.randn(1, T, 256, generator=generator),
        high=torch.randn(1, T, 256, generator=generator),
    )
    codes = {part: torch.randn(6, 1, N, 256, generator=generator) for part in GENERATOR_PARTS}
    start = time.perf_counter()
    with torch.no_grad():
        speech = model.mam.speech_features(inputs["low"], inputs["high"])
        injection = model.sqa(inputs["motion"], inputs["speaker"], speech).injection
        output = model(**inputs, mask=seed_mask(1, T), injection=injection, gt_codes=codes, speech=speech)
    seconds = time.perf_counter() - start
    assert output.logits["face"].shape == (6, 1, N, 256)
    assert all(torch.isfinite(logits).all() for logits in output.logits.values())
    assert seconds < 10.0, f"one paper-size window took {seconds:.1f} s on one CPU thread"
