"""The inference entry ``MaskedGenerator.infer`` (stacked part modules, MAM's speech branch only) reproduces the
release's inference outputs (shared/golden/official/generator/inference.npz) within the README's tolerances:
the same checks as test_generator_golden.py's inference case, on infer's output."""
import pytest

from golden_generator import check_outputs, golden, golden_batch, release_model  # noqa: F401


@pytest.mark.parametrize("stack_parts", [True, False])
def test_infer_reproduces_the_release_inference(golden, release_model, golden_batch, stack_parts):  # noqa: F811
    batch, seed_mask = golden_batch
    output = release_model.infer(
        batch.motion, seed_mask, batch.speaker, batch.speech_low, batch.speech_high, stack_parts=stack_parts
    )
    release_model.release_inference_copies()
    assert not output.logits["face"].requires_grad  # infer computes no gradients
    speech = release_model.mam.speech_features(batch.speech_low, batch.speech_high)
    check_outputs(golden, "inference", output, speech)
