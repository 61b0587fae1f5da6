"""Tests of the EMA residual vector quantizer (SPEC §5.1, §7)."""

from __future__ import annotations

import copy
import os
import socket
from datetime import timedelta
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from echomask.models.residual_vq import DROPPED_INDEX, EMACodebook, ResidualVQ


def _tiny_rvq(**overrides) -> ResidualVQ:
    settings = dict(num_quantizers=3, codebook_size=16, code_dim=8, quantizer_dropout=0.0)
    settings.update(overrides)
    return ResidualVQ(**settings)


def _set_codebook(codebook: EMACodebook, codes: torch.Tensor, counts: torch.Tensor) -> None:
    """Put `codebook` in a known, initialised state."""
    codebook.codebook.copy_(codes)
    codebook.ema_count.copy_(counts)
    codebook.ema_sum.copy_(codes * counts.unsqueeze(-1))
    codebook.initialised.fill_(True)


def _is_row_of(rows: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
    """(R,) bool: whether each row of `rows` equals some row of `candidates`."""
    return (rows.unsqueeze(1) == candidates.unsqueeze(0)).all(-1).any(-1)


# --- shapes and round trips ---------------------------------------------------------------


def test_forward_shapes_and_stats():
    torch.manual_seed(0)
    rvq = _tiny_rvq()
    quantized, indices, commitment, stats = rvq(torch.randn(4, 5, 8))
    assert quantized.shape == (4, 5, 8)
    assert indices.shape == (4, 5, 3) and indices.dtype == torch.long
    assert commitment.ndim == 0 and commitment > 0
    assert rvq.indices_to_codes(indices).shape == (3, 4, 5, 8)
    assert stats["active"].all()
    assert ((stats["usage"] > 0) & (stats["usage"] <= 1)).all()
    assert ((stats["perplexity"] >= 1) & (stats["perplexity"] <= 16 + 1e-4)).all()


def test_indices_to_codes_sum_equals_quantized_in_eval():
    torch.manual_seed(0)
    rvq = _tiny_rvq()
    rvq(torch.randn(8, 10, 8))  # first training batch initialises the codebooks
    rvq.eval()
    latents = torch.randn(3, 7, 8)
    quantized, indices, _, _ = rvq(latents)
    per_layer = rvq.indices_to_codes(indices)
    torch.testing.assert_close(per_layer.sum(0), quantized, atol=1e-5, rtol=0)
    torch.testing.assert_close(rvq.codes_from_indices(indices), quantized, atol=1e-5, rtol=0)
    # Layer l quantises what layers < l left over.
    for layer in range(3):
        residual = latents - per_layer[:layer].sum(0)
        expected = torch.cdist(residual.reshape(-1, 8), rvq.codebooks[layer].codebook).argmin(-1)
        assert torch.equal(indices[..., layer].reshape(-1), expected)


@pytest.mark.parametrize("rule, factor", [("per_layer", 3.0), ("once", 1.0)])
def test_straight_through_gradient_and_commitment_gradient(rule, factor):
    torch.manual_seed(0)
    rvq = _tiny_rvq(straight_through=rule)
    rvq(torch.randn(2, 6, 8))  # initialise (a batch quantises itself exactly right after that)
    latents = torch.randn(2, 6, 8, requires_grad=True)
    before_update = copy.deepcopy(rvq)
    quantized, indices, commitment, _ = rvq(latents)
    (grad_quantized,) = torch.autograd.grad(quantized.sum(), latents, retain_graph=True)
    torch.testing.assert_close(grad_quantized, torch.full_like(latents, factor))  # the release: once per layer
    (grad_commitment,) = torch.autograd.grad(commitment, latents)
    assert grad_commitment.abs().sum() > 0
    torch.testing.assert_close(quantized, before_update.codes_from_indices(indices), atol=1e-5, rtol=0)


def test_per_layer_gradient_counts_only_the_active_layers():
    torch.manual_seed(0)
    rvq = _tiny_rvq(num_quantizers=4)
    rvq(torch.randn(3, 5, 8))
    rvq.quantizer_dropout = 1.0
    latents = torch.randn(3, 5, 8, requires_grad=True)
    quantized, _, _, stats = rvq(latents)
    (gradient,) = torch.autograd.grad(quantized.sum(), latents)
    torch.testing.assert_close(gradient, torch.full_like(latents, float(stats["active"].sum())))


def test_bad_inputs_are_rejected_with_clear_errors():
    rvq = _tiny_rvq()
    with pytest.raises(ValueError, match=r"\(B, N, 8\)"):
        rvq(torch.randn(2, 3, 5))
    with pytest.raises(ValueError, match=r"\(B, N, 3\)"):
        rvq.indices_to_codes(torch.zeros(2, 3, 2, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\[0, 16\)"):
        rvq.indices_to_codes(torch.full((2, 3, 3), 16))
    with pytest.raises(ValueError, match="quantizer_dropout"):
        _tiny_rvq(quantizer_dropout=1.5)
    for option in ("straight_through", "codebook_rows", "dead_code_count"):
        with pytest.raises(ValueError, match=option):
            _tiny_rvq(**{option: "sometimes"})


# --- initialisation and state ---------------------------------------------------------------


def test_first_training_batch_initialises_codebooks_from_batch_vectors():
    torch.manual_seed(0)
    rvq = _tiny_rvq()
    for codebook in rvq.codebooks:
        assert not codebook.initialised
    latents = torch.randn(4, 10, 8)
    rvq(latents)
    first = rvq.codebooks[0]
    assert first.initialised
    assert _is_row_of(first.codebook, latents.reshape(-1, 8)).all()
    assert len(torch.unique(first.codebook, dim=0)) == 16, "40 vectors are enough for 16 distinct codes"
    # Later layers start from the residuals they see.
    assert all(bool(codebook.initialised) for codebook in rvq.codebooks)
    # A second batch does not re-initialise: codes move by EMA instead.
    before = first.codebook.clone()
    rvq(torch.randn(4, 10, 8))
    assert not torch.equal(before, first.codebook)
    assert not _is_row_of(first.codebook, before).all()


def test_in_order_rows_are_the_first_batch_vectors_as_in_the_release():
    torch.manual_seed(0)
    rvq = _tiny_rvq(codebook_rows="in_order")
    latents = torch.randn(4, 10, 8)
    rvq(latents)
    torch.testing.assert_close(rvq.codebooks[0].codebook, latents.reshape(-1, 8)[:16])
    # Fewer vectors than codes: repeated, with noise of std 0.01 / sqrt(D).
    few = EMACodebook(codebook_size=16, code_dim=8, codebook_rows="in_order")
    vectors = torch.randn(5, 8)
    few(vectors)
    copies = vectors.repeat(4, 1)[:16]
    deviation = few.codebook - copies
    assert 0 < deviation.abs().max() < 0.05 and deviation.std() == pytest.approx(0.01 / 8**0.5, rel=0.5)


def test_eval_does_not_initialise_or_update():
    torch.manual_seed(0)
    rvq = _tiny_rvq().eval()
    before = {name: value.clone() for name, value in rvq.state_dict().items()}
    rvq(torch.randn(3, 4, 8))
    for name, value in rvq.state_dict().items():
        assert torch.equal(value, before[name]), name


def test_all_state_is_in_buffers_and_state_dict_round_trip_continues_exactly():
    torch.manual_seed(0)
    rvq = _tiny_rvq(quantizer_dropout=0.3)
    assert list(rvq.parameters()) == []
    for _ in range(3):
        rvq(torch.randn(4, 6, 8))
    keys = set(rvq.state_dict())
    for layer in range(3):
        for buffer in ("codebook", "ema_sum", "ema_count", "initialised"):
            assert f"codebooks.{layer}.{buffer}" in keys

    restored = _tiny_rvq(quantizer_dropout=0.3)
    restored.load_state_dict(rvq.state_dict())
    latents = torch.randn(2, 6, 8)
    rvq.eval()
    restored.eval()
    for a, b in zip(rvq(latents), restored(latents)):
        if isinstance(a, dict):
            for key in a:
                torch.testing.assert_close(a[key], b[key], equal_nan=True)
        else:
            assert torch.equal(a, b)

    rvq.train()
    restored.train()
    for step in range(4):
        batch = torch.randn(4, 6, 8)
        torch.manual_seed(100 + step)
        out_a = rvq(batch)
        torch.manual_seed(100 + step)
        out_b = restored(batch)
        assert torch.equal(out_a[1], out_b[1])
    for name, value in rvq.state_dict().items():
        assert torch.equal(value, restored.state_dict()[name]), name


# --- quantizer dropout ----------------------------------------------------------------------


def test_quantizer_dropout_always_drops_with_probability_one():
    torch.manual_seed(0)
    rvq = _tiny_rvq(num_quantizers=4, quantizer_dropout=0.0)
    rvq(torch.randn(3, 5, 8))  # initialise every layer
    rvq.quantizer_dropout = 1.0
    seen_active_counts = set()
    for _ in range(30):
        latents = torch.randn(3, 5, 8)
        before_update = copy.deepcopy(rvq)  # training output uses the codes before this step's update
        quantized, indices, _, stats = rvq(latents)
        num_active = int(stats["active"].sum())
        seen_active_counts.add(num_active)
        assert 1 <= num_active < 4
        assert stats["active"][:num_active].all() and not stats["active"][num_active:].any()
        assert (indices[..., num_active:] == DROPPED_INDEX).all()
        assert (indices[..., :num_active] >= 0).all()
        assert torch.isnan(stats["usage"][num_active:]).all()
        torch.testing.assert_close(before_update.codes_from_indices(indices), quantized, atol=1e-5, rtol=0)
        assert (rvq.indices_to_codes(indices)[num_active:] == 0).all()
    assert seen_active_counts == {1, 2, 3}, "the cut-off is random over [1, L)"


def test_dropped_layers_are_not_updated():
    torch.manual_seed(0)
    rvq = _tiny_rvq(num_quantizers=4, quantizer_dropout=0.0)
    rvq(torch.randn(3, 5, 8))
    rvq.quantizer_dropout = 1.0
    before = [codebook.ema_count.clone() for codebook in rvq.codebooks]
    _, _, _, stats = rvq(torch.randn(3, 5, 8))
    for layer, codebook in enumerate(rvq.codebooks):
        changed = not torch.equal(before[layer], codebook.ema_count)
        assert changed == bool(stats["active"][layer])


def test_no_quantizer_dropout_with_probability_zero_or_in_eval():
    torch.manual_seed(0)
    training_without_dropout = _tiny_rvq(num_quantizers=4, quantizer_dropout=0.0)
    evaluating_with_dropout = _tiny_rvq(num_quantizers=4, quantizer_dropout=1.0).eval()
    for rvq in (training_without_dropout, evaluating_with_dropout):
        for _ in range(10):
            _, indices, _, stats = rvq(torch.randn(3, 5, 8))
            assert stats["active"].all()
            assert (indices >= 0).all()


# --- code choice ----------------------------------------------------------------------------


def test_eval_code_choice_is_the_deterministic_nearest_code():
    torch.manual_seed(0)
    codebook = EMACodebook(codebook_size=32, code_dim=4, temperature=0.5).eval()
    vectors = torch.randn(200, 4)
    first = codebook(vectors).indices
    assert torch.equal(first, codebook(vectors).indices)
    assert torch.equal(first, torch.cdist(vectors, codebook.codebook).argmin(-1))


def test_training_code_choice_is_gumbel_and_tends_to_argmin_at_zero_temperature():
    torch.manual_seed(0)
    vectors = torch.randn(500, 4)
    codebook = EMACodebook(codebook_size=32, code_dim=4, temperature=1e-6, dead_code_threshold=0.0)
    _set_codebook(codebook, torch.randn(32, 4), torch.ones(32))
    codes_before = codebook.codebook.clone()
    assert torch.equal(codebook(vectors).indices, torch.cdist(vectors, codes_before).argmin(-1))

    # A warm Gumbel sample is random and often not the nearest code, but favours near codes.
    codebook.temperature = 5.0
    codes_before = codebook.codebook.clone()
    nearest = torch.cdist(vectors, codes_before).argmin(-1)
    sampled_a = codebook(vectors).indices
    codebook.codebook.copy_(codes_before)
    sampled_b = codebook(vectors).indices
    assert not torch.equal(sampled_a, sampled_b)
    agreement = (sampled_a == nearest).float().mean()
    assert 1 / 32 < agreement < 0.95


def test_zero_temperature_means_argmin_in_training():
    torch.manual_seed(0)
    codebook = EMACodebook(codebook_size=8, code_dim=3, temperature=0.0)
    _set_codebook(codebook, torch.randn(8, 3), torch.ones(8) * 5)
    vectors = torch.randn(50, 3)
    expected = torch.cdist(vectors, codebook.codebook).argmin(-1)
    assert torch.equal(codebook(vectors).indices, expected)


# --- EMA update and dead codes ----------------------------------------------------------------


def test_ema_update_on_a_hand_checked_example():
    codebook = EMACodebook(codebook_size=2, code_dim=1, decay=0.5, dead_code_threshold=1.0, temperature=0.0)
    _set_codebook(codebook, torch.tensor([[0.0], [10.0]]), torch.tensor([1.0, 1.0]))
    out = codebook(torch.tensor([[1.0], [2.0], [9.0]]))
    # Assignment: 1, 2 -> code 0; 9 -> code 1. Output uses the codes before the update.
    assert out.indices.tolist() == [0, 0, 1]
    assert out.codes.flatten().tolist() == [0.0, 0.0, 10.0]
    assert out.counts.tolist() == [2.0, 1.0]
    # count: 0.5*1 + 0.5*2 = 1.5 and 0.5*1 + 0.5*1 = 1.0 (not below the threshold: kept)
    # sum:   0.5*0 + 0.5*3 = 1.5 and 0.5*10 + 0.5*9 = 9.5; code = sum / count
    assert codebook.ema_count.tolist() == [1.5, 1.0]
    assert codebook.ema_sum.flatten().tolist() == [1.5, 9.5]
    assert codebook.codebook.flatten().tolist() == [1.0, 9.5]
    assert out.num_reset == 0


def test_dead_codes_are_replaced_by_batch_vectors():
    torch.manual_seed(0)
    codebook = EMACodebook(codebook_size=4, code_dim=2, decay=0.5, dead_code_threshold=1.0, temperature=0.0)
    codes = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 20.0], [30.0, 30.0]])
    _set_codebook(codebook, codes, torch.full((4,), 8.0))

    def batch():  # only codes 0 and 1 are ever nearest
        centres = torch.tensor([[0.0, 0.0], [10.0, 0.0]]).repeat(10, 1)
        return centres + 0.1 * torch.randn(20, 2)

    # Unused codes' counts halve: 8 -> 4 -> 2 -> 1 (still alive) -> 0.5 (dead).
    for expected_count in (4.0, 2.0, 1.0):
        out = codebook(batch())
        assert out.num_reset == 0
        assert codebook.ema_count[2:].tolist() == [expected_count, expected_count]
        torch.testing.assert_close(codebook.codebook[2:], codes[2:])
    vectors = batch()
    out = codebook(vectors)
    assert out.num_reset == 2
    assert _is_row_of(codebook.codebook[2:], vectors).all()
    assert not torch.equal(codebook.codebook[2], codebook.codebook[3]), "drawn without replacement"
    assert codebook.ema_count[2:].tolist() == [1.0, 1.0]
    torch.testing.assert_close(codebook.ema_sum[2:], codebook.codebook[2:])
    # Live codes kept their EMA update.
    assert codebook.ema_count[:2].min() > 1.0


def test_in_order_replacement_keeping_counts_is_the_releases_rule():
    codebook = EMACodebook(
        codebook_size=4, code_dim=2, decay=0.5, dead_code_threshold=1.0, temperature=0.0,
        codebook_rows="in_order", dead_code_count="keep",
    )
    codes = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 20.0], [30.0, 30.0]])
    _set_codebook(codebook, codes, torch.tensor([8.0, 8.0, 1.0, 1.0]))
    vectors = torch.tensor([[0.1, 0.0], [9.9, 0.0], [0.2, 0.0], [10.1, 0.0], [0.0, 0.1]])
    out = codebook(vectors)
    # codes 2 and 3 are unused: count 0.5 * 1 = 0.5, dead; they take batch vectors 2 and 3 and keep their statistics
    assert out.num_reset == 2
    torch.testing.assert_close(codebook.codebook[2:], vectors[2:4])
    assert codebook.ema_count[2:].tolist() == [0.5, 0.5]
    torch.testing.assert_close(codebook.ema_sum[2:], 0.5 * codes[2:])
    out = codebook(vectors)  # now chosen, yet still dead: replaced again
    assert out.num_reset == 2 and codebook.ema_count[2:].tolist() == [0.75, 0.75]  # used once each, still < 1


def test_residual_vq_reports_dead_code_resets():
    torch.manual_seed(0)
    rvq = _tiny_rvq(num_quantizers=2, temperature=0.0)
    rvq(torch.randn(4, 10, 8))
    _, _, _, stats = rvq(torch.zeros(4, 10, 8))  # one distinct vector: one code per layer is used
    # Unused codes: count 1 -> 0.99 < 1, dead. The used one: 0.99 + 0.01 * 40 > 1.
    assert stats["dead_code_resets"].tolist() == [15.0, 15.0]
    assert (stats["usage"] == 1 / 16).all()
    torch.testing.assert_close(stats["perplexity"], torch.ones(2))


# --- DDP ------------------------------------------------------------------------------------

DDP_STEPS = 4


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _rank_batch(rank: int, step: int) -> torch.Tensor:
    """Different data on every rank; from step 2 on far away, so that codes die and get reset."""
    generator = torch.Generator().manual_seed(1000 * rank + step)
    shift = 50.0 if step >= 2 else 0.0
    return torch.randn(3, 8, 4, generator=generator) + shift


def _equivalence_rvq() -> ResidualVQ:
    """Argmin, no resets, no dropout, a fixed initialised state: the EMA statistics are deterministic."""
    rvq = ResidualVQ(
        num_quantizers=2,
        codebook_size=8,
        code_dim=4,
        temperature=0.0,
        dead_code_threshold=0.0,
        quantizer_dropout=0.0,
    )
    generator = torch.Generator().manual_seed(7)
    for codebook in rvq.codebooks:
        _set_codebook(codebook, torch.randn(8, 4, generator=generator), torch.ones(8))
    return rvq


def _ddp_worker(rank: int, world_size: int, port: int, out_dir: str) -> None:
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world_size, timeout=timedelta(seconds=60))
    try:
        torch.manual_seed(rank)  # every rank draws different random numbers
        synced = ResidualVQ(num_quantizers=2, codebook_size=8, code_dim=4, quantizer_dropout=0.5, temperature=0.5)
        snapshots, resets, active = [], [], []
        for step in range(DDP_STEPS):
            _, _, _, stats = synced(_rank_batch(rank, step))
            snapshots.append({k: v.clone() for k, v in synced.state_dict().items()})
            resets.append(stats["dead_code_resets"].clone())
            active.append(stats["active"].clone())

        equivalent = _equivalence_rvq()
        for step in range(DDP_STEPS):
            equivalent(_rank_batch(0, step)[:, :4] if rank == 0 else _rank_batch(0, step)[:, 4:])
        torch.save(
            {
                "snapshots": snapshots,
                "resets": resets,
                "active": active,
                "batches": [_rank_batch(rank, step) for step in range(DDP_STEPS)],
                "equivalent": equivalent.state_dict(),
            },
            Path(out_dir) / f"rank{rank}.pt",
        )
    finally:
        dist.destroy_process_group()


def test_ddp_two_processes_keep_identical_codebooks_and_match_one_process(tmp_path):
    mp.spawn(_ddp_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    rank0, rank1 = (torch.load(tmp_path / f"rank{rank}.pt") for rank in (0, 1))

    # Identical state on both ranks after init, every update and the resets.
    for step in range(DDP_STEPS):
        for name, value in rank0["snapshots"][step].items():
            assert torch.equal(value, rank1["snapshots"][step][name]), f"step {step}: {name} differs between ranks"
        assert torch.equal(rank0["active"][step], rank1["active"][step])
    assert sum(float(r.sum()) for r in rank0["resets"]) > 0, "the data makes codes die"
    # Initial codes (layer 0) are rank 0's batch vectors, not rank 1's.
    initial_codes = rank0["snapshots"][0]["codebooks.0.codebook"]
    assert _is_row_of(initial_codes, rank0["batches"][0].reshape(-1, 4)).all()
    assert not _is_row_of(initial_codes, rank1["batches"][0].reshape(-1, 4)).any()

    # The EMA statistics equal one process on the concatenated batch.
    single = _equivalence_rvq()
    for step in range(DDP_STEPS):
        single(_rank_batch(0, step))
    for name, value in single.state_dict().items():
        torch.testing.assert_close(rank0["equivalent"][name], value, atol=1e-5, rtol=1e-5)
    untouched = _equivalence_rvq().state_dict()["codebooks.0.ema_count"]
    assert not torch.equal(single.state_dict()["codebooks.0.ema_count"], untouched), "the updates did something"
