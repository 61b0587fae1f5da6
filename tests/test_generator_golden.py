"""The released EchoMask generator, golden-verified (shared/golden/official/README.md, issue 15).

The release-keyed state dict is rebuilt from the seeded recipe (its dead modules are not drawn), mapped onto
:class:`MaskedGenerator` by ``official/generator_keys.py`` and run through :class:`GeneratorObjective` (passes A,
B, C and the SQA mask scoring) and the inference call, all in eval mode under no_grad. Tolerances are the
README's: floats within 1e-4 of each array's largest magnitude; argmax indices and the top-24 mask equal wherever
the decision has a margin above 1e-4 of the array's scale. Inputs and seeds come from the golden files.
"""
import math

import numpy as np
import pytest
import torch
from einops import rearrange

from echomask.lit.generator_objective import GeneratorObjective
from echomask.models.masked_generator import PARTS, MaskedGenerator
from echomask.models.masking import MaskPolicy
from echomask.official.generator_keys import (
    BUFFER_KEYS,
    DEAD_PREFIXES,
    convert_release_generator,
    is_dead_release_key,
)
from echomask.official.recipe import RECIPE

from golden_generator import (  # noqa: F401  (fixtures)
    GOLDEN_PASSES,
    assert_close,
    check_outputs,
    decided_by_margin,
    golden,
    golden_batch,
    meta_model,
    release_model,
    release_sizes,
)


@pytest.fixture(scope="module")
def golden_run(golden, release_model, golden_batch):
    """The objective with the README's all-hard mask setting (24 top-scored frames), and the inference call."""
    batch, seed_mask = golden_batch
    ratio = 24 / batch.motion.shape[1]  # README: mask_ratio = hard_ratio = 0.375, soft_ratio = 0
    policy = MaskPolicy(mask_ratio=ratio, hard_schedule=(ratio, ratio), soft_schedule=(0.0, 0.0), soft_pool_factor=1.0)
    probes = TrailProbes(release_model)
    with torch.no_grad():
        result = GeneratorObjective(policy, seed_frames=int((~seed_mask[0]).sum()))(
            release_model, batch, progress=0.0, scorer=release_model
        )
        probes.remove()
        speech = release_model.mam.speech_features(batch.speech_low, batch.speech_high)
        inference = release_model(batch.motion, seed_mask, batch.speaker, speech)
    return {"result": result, "inference": inference, "speech": speech, "trail": probes.outputs}


def test_dropped_release_keys_are_exactly_the_dead_modules(golden):
    """What we do not build is what the release never reaches: the live count is our model's, and no dead
    top-level module is ever called in pass A (its trail names every top-level call)."""
    entries = golden["entries"]
    total = sum(math.prod(entry.shape) for entry in entries if entry.source == RECIPE)
    dead = sum(math.prod(entry.shape) for entry in entries if entry.source == RECIPE and is_dead_release_key(entry.key))
    ours = sum(parameter.numel() for parameter in meta_model(golden).parameters())
    assert ours == total - dead
    called = {name.split("#")[0] for name in golden["arrays"]["pass_a_trail"]}
    dead_top_level = {prefix.rstrip(".") for prefix in DEAD_PREFIXES if prefix.count(".") == 1}
    assert not dead_top_level & called
    # the nested dead entries are nn.Transformer* templates: their owners' deep copies are what runs
    nested = {prefix.split(".")[0] for prefix in DEAD_PREFIXES if prefix.count(".") > 1}
    assert nested <= called | {"MAM"}
    assert {entry.key for entry in entries if entry.source != RECIPE} <= set(BUFFER_KEYS) | {
        entry.key for entry in entries if is_dead_release_key(entry.key)
    }


def test_key_map_errors_name_the_key_and_both_shapes(golden):
    model = meta_model(golden)
    release = {entry.key: torch.empty(entry.shape, device="meta") for entry in golden["entries"]}
    converted = convert_release_generator(release, model)
    assert set(converted.state_dict) == set(model.state_dict())
    assert all(is_dead_release_key(key) or key in BUFFER_KEYS for key in converted.dropped)

    wrong = dict(release, **{"face2latent.weight": torch.empty(3, 4, device="meta")})
    with pytest.raises(ValueError, match=r"face2latent\.weight.*face\.to_latent\.weight.*\(3, 4\).*\(256, 768\)"):
        convert_release_generator(wrong, model)
    with pytest.raises(ValueError, match="unexpected key.*'decoder.extra.weight'"):
        convert_release_generator(dict(release, **{"decoder.extra.weight": torch.empty(1, device="meta")}), model)
    missing = {key: value for key, value in release.items() if not key.startswith("predict_res_lower.map_zq3")}
    with pytest.raises(ValueError, match=r"does not provide.*heads\.lower\.merges\.1\.weight"):
        convert_release_generator(missing, model)

    with torch.device("meta"):
        plain = MaskedGenerator(**dict(release_sizes(golden), mam_match_classifier=False))
    dropped = convert_release_generator(release, plain).dropped
    assert "MAM.match_face_classifier.mlp.0.weight" in dropped and "match classifier" in dropped[
        "MAM.match_face_classifier.mlp.0.weight"
    ]


# ------------------------------------------------------------------------- golden outputs


class TrailProbes:
    """Forward hooks that keep each probed module's FIRST output (pass A is the first generator call), keyed by
    the release's trail names (pass_a_trail.npz: ``<module>#<call>.<output>``)."""

    def __init__(self, model: MaskedGenerator) -> None:
        def transposed(x):
            return rearrange(x, "b t d -> b d t")

        probes = {
            "motion_encoder#0.0": (model.motion_encoder, None),
            "feature2face#0.0": (model.face.memory_projection, None),
            "face_decoder#0.0": (model.face.decoder, None),
            "face2latent#0.0": (model.face.to_latent, None),
            "face1d_2#0.0": (model.face.downsample_2, transposed),
            "motion_self_encoder#0.0": (model.body.encoder, None),
            "audio_feature2motion_hands#0.0": (model.sqa.query_projections["hands"], None),
            "mask_generator#0.0": (model.sqa, lambda output: output.injection),
            "body1d#0.0": (model.body.downsample, transposed),
            "spearker_encoder_body1d#0.0": (model.body.speaker_downsample, transposed),
        }
        for part in ("upper", "hands", "lower"):
            probes[f"motion2latent_{part}#0.0"] = (model.body.parts[part].input_mlp, None)
            probes[f"{part}_decoder#0.0"] = (model.body.parts[part].decoder, None)
            probes[f"{part}1d#0.0"] = (model.body.parts[part].downsample, transposed)
        for part, source in (("hands", "face"), ("face", "hands"), ("upper", "hands"), ("lower", "hands")):
            probes[f"{part}_{source}_decoder#0.0"] = (model.fusion.decoders[part], None)
        for part in PARTS:
            probes[f"{part}_classifier#0.0"] = (model.heads[part].classifiers[0], None)
            for layer in range(1, model.num_rvq_layers):
                probes[f"predict_res_{part}#0.{layer - 1}"] = (model.heads[part], lambda o, k=layer: o[1][:, k])
                probes[f"predict_res_{part}#0.{layer + 4}"] = (model.heads[part], lambda o, k=layer: o[0][:, :, k])
        self.outputs: dict[str, torch.Tensor] = {}
        self.handles = []
        for name, (module, pick) in probes.items():
            self.handles.append(module.register_forward_hook(self._keeper(name, pick)))

    def _keeper(self, name, pick):
        def keep(module, inputs, output):
            if name not in self.outputs:
                self.outputs[name] = output if pick is None else pick(output)

        return keep

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


def test_pass_a_follows_the_release_module_by_module(golden, golden_run):
    """Every probed module's pass-A output, in the release's call order: a failure names the first departure."""
    trail = golden["arrays"]["pass_a_trail"]
    mam = golden_run["result"].terms
    ours = dict(golden_run["trail"])
    for index, part in enumerate(("face", "hands", "upper", "lower")):  # MAM's outputs in the release's order
        ours[f"MAM#0.{index}"] = golden_run["speech"][part]
    ours["MAM#0.4"] = mam["A/mam"]
    ours["hubert_face_cons_loss#0.0"] = mam["A/infonce_face"]
    ours["beat_cons_loss#0.0"] = mam["A/infonce_hands"]
    unknown = sorted(set(ours) - set(trail))
    assert not unknown, f"probes the golden trail does not hold: {unknown}"
    for name in (name for name in trail if name in ours):
        assert_close(f"pass A, first departure at {name}", ours[name], trail[name])


@pytest.mark.parametrize("name", ["A", "B", "C", "inference"])
def test_passes_reproduce_the_release(golden, golden_run, name):
    output = golden_run["inference"] if name == "inference" else golden_run["result"].passes[name]
    mam_loss = None if name == "inference" else golden_run["result"].terms[f"{name}/mam"]
    check_outputs(golden, name, output, golden_run["speech"], mam_loss)


def test_sqa_scores_and_the_all_hard_mask(golden, golden_run):
    reference = golden["arrays"]["mask_scores"]
    result = golden_run["result"]
    assert_close("SQA frame scores", result.scores, reference["scores"])
    decided = decided_by_margin(reference["scores"], axis=1, rank=24)
    assert decided.all(), "a golden row whose 24th and 25th scores are too close to call"
    assert np.array_equal(result.selection.mask.numpy()[decided], reference["mask_all_hard_24"][decided] == 1)


def test_objective_sums_the_release_losses(golden, golden_run, golden_batch):
    """The objective's loss equals the release trainer's formula applied to the GOLDEN outputs."""
    batch, _ = golden_batch
    arrays, terms = golden["arrays"], golden_run["result"].terms
    expected_total = 0.0
    for name, stem in GOLDEN_PASSES.items():
        reference = {key: torch.from_numpy(value) for key, value in arrays[stem].items()}
        code_mse = sum(3 * torch.mean((reference[f"rec_{p}"][:, :, 0] - batch.codes[p]) ** 2) for p in PARTS) / 6
        num_codes, num_layers = reference["cls_face"].shape[2:]
        cross_entropy = sum(
            sum(
                torch.nn.functional.nll_loss(
                    torch.log_softmax(reference[f"cls_{p}"][..., i], dim=2).reshape(-1, num_codes),
                    batch.indices[p][..., i].reshape(-1),
                )
                for p in PARTS
            )
            / (i + 1)
            for i in range(num_layers)
        )
        expected = reference["loss_moau"] + code_mse + cross_entropy
        if name == "A":
            expected = expected + reference["hubert_cons_loss"] + reference["beat_cons_loss"]
        assert float(terms[f"{name}/loss"]) == pytest.approx(float(expected), rel=1e-5)
        expected_total += float(expected)
    assert float(golden_run["result"].loss) == pytest.approx(expected_total, rel=1e-5)
