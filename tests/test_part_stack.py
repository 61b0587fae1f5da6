"""Stacked execution of per-part modules (models/part_stack.py) and the SDPA layers it runs through
(models/attention.py): the same numbers as the modules one by one, and as torch's own transformer layers."""
import pytest
import torch
from torch import nn

from echomask.models.attention import Decoder, Encoder
from echomask.models.code_heads import ResidualCodeHead
from echomask.models.part_stack import LayerNorm, Linear, StackedCopy, stack_modules


def test_layers_equal_torchs_transformer_layers_and_load_their_state():
    """Same parameter names, same initial values for the same seed, same outputs (training mode, dropout 0)."""
    torch.manual_seed(0)
    reference = nn.TransformerDecoder(nn.TransformerDecoderLayer(32, 4, 64, 0.0, batch_first=True), num_layers=2)
    torch.manual_seed(0)
    ours = Decoder(32, 4, 64, num_layers=2, dropout=0.0)
    assert {key: value.shape for key, value in reference.state_dict().items()} == {
        key: value.shape for key, value in ours.state_dict().items()
    }
    assert all(torch.equal(value, ours.state_dict()[key]) for key, value in reference.state_dict().items())
    target, memory = torch.randn(4, 10, 32), torch.randn(2, 7, 32)
    band = torch.rand(10, 7) > 0.6
    band[:, 0] = False
    expected = reference(target, memory.repeat(2, 1, 1), memory_mask=band)
    # memory rows tile over the target rows; keys/values projected once give the same result
    torch.testing.assert_close(ours(target, memory, memory_mask=band), expected)
    torch.testing.assert_close(ours(target, kv=ours.memory_kv(memory), memory_mask=band), expected)

    torch.manual_seed(1)
    encoder_reference = nn.TransformerEncoder(
        nn.TransformerEncoderLayer(32, 4, 64, 0.0, batch_first=True), num_layers=2, enable_nested_tensor=False
    )
    encoder = Encoder(32, 4, 64, num_layers=2, dropout=0.0)
    encoder.load_state_dict(encoder_reference.state_dict())
    torch.testing.assert_close(encoder(target), encoder_reference(target))


def test_cross_attention_weights_are_softmax_rows_of_every_layer():
    torch.manual_seed(0)
    decoder = Decoder(16, 2, 32, num_layers=3, dropout=0.0)
    target, memory = torch.randn(2, 5, 16), torch.randn(2, 9, 16)
    weights = decoder.cross_attention_weights(target, memory)
    assert weights.shape == (3, 2, 2, 5, 9)
    torch.testing.assert_close(weights.sum(-1), torch.ones(3, 2, 2, 5))
    # the first layer's weights read only the target and the memory
    first = decoder.layers[0]
    expected = first.multihead_attn.weights(first.self_block(target), memory)
    torch.testing.assert_close(weights[0], expected)


def test_stacked_leaves_equal_the_modules_one_by_one():
    torch.manual_seed(0)
    linears = [Linear(6, 4) for _ in range(3)]
    norms = [LayerNorm(4) for _ in range(3)]
    with torch.no_grad():
        for norm in norms:
            norm.weight.normal_()
            norm.bias.normal_()
    x = torch.randn(3, 2, 5, 6)
    stacked_linear, stacked_norm = stack_modules(linears), stack_modules(norms)
    assert stacked_linear.weight.shape == (3, 4, 6) and not stacked_linear.weight.requires_grad
    with torch.no_grad():
        torch.testing.assert_close(stacked_linear(x), torch.stack([m(x[i]) for i, m in enumerate(linears)]))
        y = stacked_linear(x)
        torch.testing.assert_close(stacked_norm(y), torch.stack([m(y[i]) for i, m in enumerate(norms)]))


def test_stacked_code_heads_equal_the_heads_one_by_one():
    torch.manual_seed(0)
    sizes = dict(latent_dim=8, codebook_size=5, num_layers=4, base_classifier_hidden=12, classifier_hidden=8,
                 decoder_layers=2, num_heads=2, dim_feedforward=16, dropout=0.0)
    heads = [ResidualCodeHead(**sizes).eval() for _ in range(4)]
    base, speech = torch.randn(4, 2, 3, 8), torch.randn(4, 2, 12, 8)
    stacked = stack_modules(heads)
    # every matrix the batched matmuls multiply by is stored as its transpose, the layout they read
    matrices = {name: value for name, value in stacked.named_parameters() if name.endswith("weight") and value.ndim == 3}
    assert any(name.endswith("in_proj_weight") for name in matrices)
    assert all(value.transpose(1, 2).is_contiguous() for value in matrices.values()), sorted(matrices)
    with torch.no_grad():
        logits, vectors = stacked(base, kv=stacked.memory_kv(speech))
        for index, head in enumerate(heads):
            expected_logits, expected_vectors = head(base[index], speech[index])
            torch.testing.assert_close(logits[index], expected_logits)
            torch.testing.assert_close(vectors[index], expected_vectors)


def test_stacked_copy_is_rebuilt_only_when_a_parameter_changes():
    torch.manual_seed(0)
    modules = [Linear(3, 2) for _ in range(2)]
    copies = StackedCopy()
    first = copies(modules)
    assert copies(modules) is first
    with torch.no_grad():
        modules[1].bias.add_(1.0)  # in place, as an optimizer step
    second = copies(modules)
    assert second is not first and torch.equal(second.bias[1], modules[1].bias)
    modules[0].load_state_dict({"weight": torch.zeros(2, 3), "bias": torch.zeros(2)})
    assert torch.equal(copies(modules).weight[0], torch.zeros(2, 3))
    copies.clear()
    assert copies(modules) is not second


def test_stack_modules_names_a_structure_mismatch():
    with pytest.raises(ValueError, match="differs in structure"):
        stack_modules([Linear(3, 2), Linear(3, 4)])
    with pytest.raises(ValueError, match="at least one module"):
        stack_modules([])
