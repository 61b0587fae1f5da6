"""Stage 1 computes what the release computes, through `echomask import-official` (issue 14).

Golden: the release-keyed state dicts rebuilt from the golden folder's weight recipe are saved in the
release's file format, imported with `echomask import-official`, read back the way stage 2 reads stage 1
(`read_stage1_checkpoint`), and must reproduce the release's outputs (`../shared/golden/official/`,
README: relative 1e-4 of each array's largest magnitude; argmax indices equal wherever the decision margin
exceeds 1e-4 of the scale). Paper sizes, about a second per model.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from echomask.checkpoints import CheckpointError
from echomask.cli import main as echomask_main
from echomask.lit.stage1_loading import read_stage1_checkpoint
from echomask.lit.translation_module import TranslationModule, translation_arguments
from echomask.lit.vqvae_module import VQVAEModule, rvqvae_arguments
from echomask.models.conv_vqvae import RVQVAE
from echomask.models.translation import TranslationModel
from echomask.official.recipe import recipe_state_dict
from echomask.official.release_files import read_release_state
from echomask.official.stage1 import (
    RELEASE_FILE_NAMES,
    RELEASE_RVQVAE_RULES,
    RVQVAE_RENAMES,
    TRANSLATION_RENAMES,
    import_stage1,
    release_layout,
)

REPO = Path(__file__).resolve().parents[1]
PARTS = ("face", "upper", "hands", "lower")
TOLERANCE = 1e-4  # golden README: relative to each array's largest magnitude; also the index decision margin
TINY = dict(width=16, num_quantizers=2, codebook_size=8, code_dim=8)


def golden(shared_dir: Path) -> Path:
    return shared_dir / "golden" / "official"


def save_release_file(path: Path, state: dict[str, torch.Tensor], prefix: str = "module.") -> Path:
    """A file as the release writes it: {"model_state": state dict}, names prefixed by the DataParallel wrapper."""
    torch.save({"model_state": {prefix + name: tensor for name, tensor in state.items()}, "epoch": 600}, path)
    return path


def recipe_file(shared_dir: Path, model: str, path: Path, prefix: str = "module.") -> Path:
    """The recipe's release-keyed state dict of `model` ("stage1/<part>" or "translation") in the release's format."""
    folder = golden(shared_dir)
    weight_seed = json.loads((folder / "golden.json").read_text())["weight_seed"]
    state, built = recipe_state_dict(folder / model / "state_dict.tsv", weight_seed)
    assert built == [], "stage-1 models have no buffers besides their recipe-made codebooks"
    return save_release_file(path, state, prefix)


def import_official(*arguments: str) -> int:
    return echomask_main(["import-official", *map(str, arguments)])


def assert_close_to_golden(ours: torch.Tensor, reference: np.ndarray, name: str) -> float:
    """Max difference relative to the reference's largest magnitude; fails above TOLERANCE."""
    relative = float(np.abs(ours.numpy() - reference).max() / np.abs(reference).max())
    assert relative <= TOLERANCE, f"{name}: max difference {relative:.2e} of the largest magnitude"
    return relative


def decision_margins(model: RVQVAE, latents: torch.Tensor) -> torch.Tensor:
    """(B, N, L): per token and layer, the second-nearest minus the nearest code distance over the layer's
    largest distance (the scale), along the argmin cascade of eval mode."""
    residual = latents.reshape(-1, latents.shape[-1])
    margins = []
    for codebook in model.quantizer.codebooks:
        distances = codebook.squared_distances(residual)
        nearest = distances.topk(2, dim=-1, largest=False).values
        margins.append((nearest[:, 1] - nearest[:, 0]) / distances.abs().max())
        residual = residual - codebook.lookup(distances.argmin(-1))
    return torch.stack(margins, dim=-1).reshape(*latents.shape[:2], -1)


# ------------------------------------------------------------------------------------------- golden


@pytest.mark.parametrize("part", PARTS)
def test_imported_rvqvae_reproduces_the_release(shared_dir, part, tmp_path, capsys):
    source = recipe_file(shared_dir, f"stage1/{part}", tmp_path / RELEASE_FILE_NAMES[part])
    assert import_official(f"--{part}", source, "--out", tmp_path / "vqvae") == 0
    arguments, weights = read_stage1_checkpoint(part, tmp_path / "vqvae" / part / "checkpoints" / "last.ckpt")
    model = RVQVAE(**arguments)
    model.load_state_dict(weights)
    model.eval()
    reference = np.load(golden(shared_dir) / "stage1" / part / "io.npz")
    motion = torch.from_numpy(reference["input"])
    with torch.no_grad():
        latents = model.encoder(motion)
        indices = model.encode(motion)
        decoded = model.decode(torch.from_numpy(reference["indices"]))
        margins = decision_margins(model, latents)
    latent_difference = assert_close_to_golden(latents.transpose(1, 2), reference["encoder_latent"], "encoder latent")
    decoded_difference = assert_close_to_golden(decoded, reference["decoded_from_indices"], "decode(indices)")
    decided = margins > TOLERANCE
    agree = indices.numpy() == reference["indices"]
    assert agree[decided.numpy()].all(), f"{int((~agree & decided.numpy()).sum())} decided indices differ"
    print(
        f"{part}: indices agree {int(agree.sum())}/{agree.size}, {int((~decided).sum())} excluded by the margin; "
        f"max relative difference: latent {latent_difference:.1e}, decode {decoded_difference:.1e}"
    )


def test_imported_translation_model_reproduces_the_release(shared_dir, tmp_path):
    source = recipe_file(shared_dir, "translation", tmp_path / RELEASE_FILE_NAMES["translation"], prefix="")
    assert import_official("--translation", source, "--out", tmp_path / "vqvae") == 0
    arguments, weights = read_stage1_checkpoint("translation", tmp_path / "vqvae" / "translation" / "checkpoints" / "last.ckpt")
    model = TranslationModel(**arguments)
    model.load_state_dict(weights)
    reference = np.load(golden(shared_dir) / "translation" / "io.npz")
    with torch.no_grad():
        output = model.eval()(torch.from_numpy(reference["input"]))
    difference = assert_close_to_golden(output, reference["rec_pose"], "rec_pose")
    print(f"translation: max relative difference of rec_pose {difference:.1e}")


# ------------------------------------------------------------------------------------------- import


def tiny_release_state(part: str = "upper", seed: int = 0) -> dict[str, torch.Tensor]:
    """A small RVQ-VAE's weights under the release's tensor names."""
    torch.manual_seed(seed)
    model = RVQVAE(input_dim=VQVAEModule(part=part, **TINY).model.input_dim, **TINY)
    state = model.state_dict()
    return {name: state[ours] for name, ours in release_layout(model, RVQVAE_RENAMES).items()}


def tiny_translation_state() -> dict[str, torch.Tensor]:
    model = TranslationModel(width=16, layers=2)
    state = model.state_dict()
    return {name: state[ours] for name, ours in release_layout(model, TRANSLATION_RENAMES).items()}


def test_stage1_folder_imports_every_release_file_under_its_release_name(tmp_path):
    folder = tmp_path / "pretrained_vq"
    folder.mkdir()
    for part in PARTS:
        save_release_file(folder / RELEASE_FILE_NAMES[part], tiny_release_state(part))
    save_release_file(folder / RELEASE_FILE_NAMES["translation"], tiny_translation_state())
    out = tmp_path / "logs" / "vqvae"
    assert import_official("--stage1", folder, "--out", out, "--test-contact", "decoded", "--integration", "velocity") == 0
    for part in PARTS:
        path = out / part / "checkpoints" / "last.ckpt"
        module = VQVAEModule.load_from_checkpoint(path)  # Lightning reads it unchanged
        assert module.part == part and module.hparams.width == 16 and module.hparams.num_quantizers == 2
        assert module.hparams.codebook_rows == RELEASE_RVQVAE_RULES["codebook_rows"]
        assert all(bool(codebook.initialised) for codebook in module.model.quantizer.codebooks)
        release = tiny_release_state(part)
        torch.testing.assert_close(module.model.quantizer.codebooks[1].codebook, release["quantizer.layers.1.codebook"])
        torch.testing.assert_close(module.model.quantizer.codebooks[1].ema_sum, release["quantizer.layers.1.codebook"])
        assert torch.load(path, weights_only=True)["imported_from"]["file"].endswith(RELEASE_FILE_NAMES[part])
    translation = TranslationModule.load_from_checkpoint(out / "translation" / "checkpoints" / "last.ckpt")
    assert translation.hparams.layers == 2
    assert (translation.model.test_contact, translation.model.integration) == ("decoded", "velocity")


def test_import_refuses_to_overwrite_without_overwrite(tmp_path, capsys):
    source = save_release_file(tmp_path / "upper.bin", tiny_release_state())
    assert import_official("--upper", source, "--out", tmp_path) == 0
    assert import_official("--upper", source, "--out", tmp_path) == 2
    assert "already exist" in capsys.readouterr().err
    assert import_official("--upper", source, "--out", tmp_path, "--overwrite") == 0


def one_line_error(capsys, *arguments) -> str:
    assert import_official(*arguments) == 2
    error = capsys.readouterr().err.strip()
    assert "\n" not in error and error.startswith("echomask import-official: error:")
    return error


def test_bad_release_files_get_one_line_errors_naming_file_and_problem(tmp_path, capsys):
    out = ["--out", tmp_path / "out"]
    garbage = tmp_path / "garbage.bin"
    garbage.write_bytes(b"not a torch file at all")
    assert f"{garbage}: " in one_line_error(capsys, "--face", garbage, *out)

    no_state = tmp_path / "no_state.bin"
    torch.save({"weights": {}}, no_state)
    assert "no 'model_state'" in one_line_error(capsys, "--face", no_state, *out)

    upper = save_release_file(tmp_path / "upper.bin", tiny_release_state("upper"))
    error = one_line_error(capsys, "--face", upper, "--out", tmp_path / "out")
    assert str(upper) in error and "encoder.model.0.weight" in error and "(16, 78, 3)" in error and "(16, 106, 3)" in error

    state = tiny_release_state("face")
    del state["decoder.model.2.0.model.1.conv2.bias"]
    missing = save_release_file(tmp_path / "missing.bin", state)
    assert "missing: decoder.model.2.0.model.1.conv2.bias" in one_line_error(capsys, "--face", missing, *out)

    extra = save_release_file(tmp_path / "extra.bin", {**tiny_release_state("face"), "generator.weight": torch.zeros(2)})
    assert "unexpected tensor(s): generator.weight" in one_line_error(capsys, "--face", extra, *out)

    translation = save_release_file(tmp_path / "translation.bin", tiny_translation_state())
    assert "not the release's hands RVQ-VAE" in one_line_error(capsys, "--hands", translation, *out)
    assert not (tmp_path / "out").exists(), "nothing is written when a file is rejected"

    assert "nothing to import" in one_line_error(capsys, *out)
    assert "not a folder" in one_line_error(capsys, "--stage1", tmp_path / "absent", *out)


def test_a_bad_file_among_several_writes_nothing(tmp_path, capsys):
    good = save_release_file(tmp_path / "upper.bin", tiny_release_state("upper"))
    bad = save_release_file(tmp_path / "lower.bin", tiny_release_state("upper"))
    one_line_error(capsys, "--upper", good, "--lower", bad, "--out", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_release_files_are_loaded_weights_only(tmp_path):
    path = tmp_path / "pickled.bin"
    torch.save({"model_state": {"w": torch.zeros(1)}, "args": Path("x")}, path)
    with pytest.raises(CheckpointError, match="weights-only load refuses"):
        read_release_state(path)


def test_prefix_is_optional_and_stripped(tmp_path):
    state = tiny_release_state()
    with_prefix = read_release_state(save_release_file(tmp_path / "a.bin", state))
    without = read_release_state(save_release_file(tmp_path / "b.bin", state, prefix=""))
    assert sorted(with_prefix) == sorted(without) == sorted(state)


def test_imported_module_arguments_rebuild_the_same_network(tmp_path):
    source = save_release_file(tmp_path / "upper.bin", tiny_release_state("upper"))
    module = import_stage1("upper", source)
    rebuilt = RVQVAE(**rvqvae_arguments(module.hparams, "upper"))
    rebuilt.load_state_dict(module.model.state_dict())
    translation = import_stage1("translation", save_release_file(tmp_path / "t.bin", tiny_translation_state()))
    TranslationModel(**translation_arguments(translation.hparams)).load_state_dict(translation.model.state_dict())


def test_release_overlay_config_gives_the_release_rules():
    overlay = yaml.safe_load((REPO / "experiments" / "vqvae" / "release.yaml").read_text())["model"]["init_args"]
    assert {name: overlay[name] for name in RELEASE_RVQVAE_RULES} == RELEASE_RVQVAE_RULES
