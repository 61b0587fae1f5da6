"""The released generator's golden folder (shared/golden/official/generator) as fixtures and checks, shared by the
golden, inference and import tests (a helper module, not a test module).

Tolerances are the folder README's: floats within 1e-4 of each array's largest magnitude; argmax indices and the
top-24 mask equal wherever the decision has a margin above 1e-4 of the array's scale.
"""
import json

import numpy as np
import pytest
import torch
from einops import rearrange

from echomask.lit.generator_objective import GeneratorBatch
from echomask.models.alignment import token_infonce
from echomask.models.masked_generator import PARTS, GeneratorPass, MaskedGenerator
from echomask.official.generator_keys import convert_release_generator, is_dead_release_key
from echomask.official.recipe import read_state_dict_table, recipe_state_dict

RELATIVE_TOLERANCE = 1e-4  # README: "relative 1e-4 of each array's largest magnitude"
GOLDEN_PASSES = {"A": "pass_a", "B": "pass_b", "C": "pass_c"}
MAX_UNDECIDED_INDICES = 4  # argmax entries of one pass allowed below the margin (measured: 2)


@pytest.fixture(scope="module")
def golden(shared_dir):
    folder = shared_dir / "golden" / "official"
    info = json.loads((folder / "golden.json").read_text())
    generator = folder / "generator"
    arrays = {name.stem: dict(np.load(name)) for name in sorted(generator.glob("*.npz"))}
    return {"info": info, "entries": read_state_dict_table(generator / "state_dict.tsv"), "arrays": arrays}


def release_sizes(golden) -> dict:
    """MaskedGenerator sizes from golden.json's paper arguments and the state table (speaker count)."""
    args = golden["info"]["paper_args"]
    shapes = {entry.key: entry.shape for entry in golden["entries"]}
    return {
        "num_speakers": shapes["spearker_encoder_face.weight"][0],
        "latent_dim": args["vae_codebook_size"],
        "codebook_size": args["vae_codebook_size"],
        "hidden_dim": args["hidden_size"],
        "encoder_width": args["motion_f"],
        "period": args["pose_length"],
        "mam_match_classifier": True,  # part of the release's loss_moau
    }


def meta_model(golden) -> MaskedGenerator:
    with torch.device("meta"):
        return MaskedGenerator(**release_sizes(golden))


@pytest.fixture(scope="module")
def release_model(golden):
    """The recipe's release weights in our network, eval mode."""
    seed = golden["info"]["weight_seed"]
    state, _ = recipe_state_dict(golden["entries"], seed, keep=lambda key: not is_dead_release_key(key))
    model = meta_model(golden)
    converted = convert_release_generator(state, model)
    model.load_state_dict(converted.state_dict, assign=True)
    return model.eval()


@pytest.fixture(scope="module")
def golden_batch(golden):
    inputs = {name: torch.from_numpy(value) for name, value in golden["arrays"]["inputs"].items()}
    codes = {part: inputs[f"{part}_zq"][:, :, 0] for part in PARTS}  # (B, L, 1, N, d) -> (B, L, N, d)
    batch_size, num_layers, num_tokens, _ = codes["face"].shape
    # the golden files hold no ground-truth indices (the passes do not read them): draw targets for the loss
    draw = torch.Generator().manual_seed(golden["info"]["input_seed"])
    codebook = golden["info"]["paper_args"]["vae_codebook_size"]
    indices = {part: torch.randint(0, codebook, (batch_size, num_tokens, num_layers), generator=draw) for part in PARTS}
    assert (inputs["speaker"] == inputs["speaker"][:, :1]).all(), "one speaker per window"
    batch = GeneratorBatch(
        motion=inputs["in_motion"],
        speaker=inputs["speaker"][:, 0, 0],
        speech_low=inputs["speech_low"],
        speech_high=inputs["speech_high"],
        codes=codes,
        indices=indices,
    )
    seed_visible = inputs["seed_mask"] == 0
    assert (seed_visible == seed_visible[..., :1]).all(), "the seed mask hides whole frames"
    return batch, ~seed_visible[..., 0]


def assert_close(name: str, ours: torch.Tensor, reference: np.ndarray) -> None:
    """Max |difference| within 1e-4 of the reference's largest magnitude."""
    ours = ours.detach().double().numpy()
    reference = np.asarray(reference, dtype=np.float64)
    assert ours.shape == reference.shape, f"{name}: shape {ours.shape} vs golden {reference.shape}"
    difference = float(np.abs(ours - reference).max())
    scale = float(np.abs(reference).max())
    assert difference <= RELATIVE_TOLERANCE * scale, f"{name}: max difference {difference:.3g} > 1e-4 × {scale:.3g}"


def decided_by_margin(values: np.ndarray, axis: int, rank: int) -> np.ndarray:
    """Where the gap between the ``rank``-th and the next largest value along ``axis`` exceeds 1e-4 of the
    array's scale (README's margin rule; rank 1: argmax, rank 24: the top-24 mask)."""
    ordered = -np.sort(-values, axis=axis)
    gap = np.take(ordered, rank - 1, axis=axis) - np.take(ordered, rank, axis=axis)
    return gap > RELATIVE_TOLERANCE * np.abs(values).max()


def check_outputs(golden, name: str, output: GeneratorPass, speech: dict, mam_loss: torch.Tensor | None = None) -> None:
    """One generator output against the golden arrays of pass ``name`` ("A", "B", "C" or "inference"): code vectors,
    logits, argmax indices (where decided by margin), the two InfoNCE terms and, for passes, MAM's loss."""
    reference = golden["arrays"][GOLDEN_PASSES.get(name, name)]
    excluded = 0
    for part in PARTS:
        assert_close(f"{name} rec_{part}", output.code_vectors[part], reference[f"rec_{part}"][:, :, 0])
        logits = reference[f"cls_{part}"]  # (B, N, K, L)
        assert_close(f"{name} cls_{part}", output.logits[part], rearrange(logits, "b n k l -> b n l k"))
        decided = decided_by_margin(logits, axis=2, rank=1)
        ours = output.indices()[part].numpy()
        assert (ours == reference[f"idx_{part}"])[decided].all(), f"{name} idx_{part}"
        excluded += int((~decided).sum())
    assert excluded <= MAX_UNDECIDED_INDICES, f"{excluded} argmax entries too close to call"
    for term, part in (("hubert_cons_loss", "face"), ("beat_cons_loss", "hands")):
        assert_close(f"{name} {term}", token_infonce(output.prefusion[part], speech[part]), reference[term])
    if mam_loss is not None:
        assert_close(f"{name} loss_moau", mam_loss, reference["loss_moau"])
