"""The golden folder's weight recipe (shared/golden/official/README.md)."""
import json
import math
import zlib

import numpy as np
import pytest
import torch

from echomask.official.recipe import StateEntry, read_state_dict_table, recipe_state_dict, recipe_tensor


def test_recipe_scales_by_kind():
    weight = recipe_tensor("a.weight", (64, 8, 3), weight_seed=5)
    bias = recipe_tensor("a.bias", (4096,), weight_seed=5)
    norm = recipe_tensor("norm.weight", (4096,), weight_seed=5)
    other = recipe_tensor("query", (4096,), weight_seed=5)
    assert weight.dtype == torch.float32 and weight.shape == (64, 8, 3)
    assert weight.std().item() == pytest.approx(1 / math.sqrt(24), rel=0.05)
    assert bias.std().item() == pytest.approx(0.02, rel=0.05)
    assert norm.mean().item() == pytest.approx(1.0, abs=0.01) and norm.std().item() == pytest.approx(0.1, rel=0.05)
    assert other.std().item() == pytest.approx(0.5, rel=0.05)


def test_recipe_is_seeded_by_weight_seed_and_key():
    expected = np.random.default_rng(np.random.SeedSequence([3, zlib.crc32(b"x.bias")])).standard_normal((5,)) * 0.02
    assert torch.equal(recipe_tensor("x.bias", (5,), 3), torch.from_numpy(expected.astype(np.float32)))
    assert not torch.equal(recipe_tensor("x.bias", (5,), 3), recipe_tensor("y.bias", (5,), 3))
    assert not torch.equal(recipe_tensor("x.bias", (5,), 3), recipe_tensor("x.bias", (5,), 4))


def test_table_rejects_a_malformed_file(tmp_path):
    bad = tmp_path / "state_dict.tsv"
    bad.write_text("key\tshape\n")
    with pytest.raises(ValueError, match="state_dict.tsv: expected the header"):
        read_state_dict_table(bad)
    bad.write_text("key\tshape\tsource\tdtype\nw\t(2, x)\trecipe\tfloat32\n")
    with pytest.raises((ValueError, SyntaxError)):
        read_state_dict_table(bad)
    bad.write_text("key\tshape\tsource\tdtype\nw\t(2,)\tguess\tfloat32\n")
    with pytest.raises(ValueError, match="unknown source 'guess'"):
        read_state_dict_table(bad)


def test_golden_translation_table(shared_dir):
    folder = shared_dir / "golden" / "official"
    seed = json.loads((folder / "golden.json").read_text())["weight_seed"]
    entries = read_state_dict_table(folder / "translation" / "state_dict.tsv")
    state, built = recipe_state_dict(entries, seed)
    assert built == [] and list(state) == [entry.key for entry in entries]
    assert all(tuple(state[entry.key].shape) == entry.shape for entry in entries)
    kept, _ = recipe_state_dict(entries, seed, keep=lambda key: key.startswith("encoder."))
    assert set(kept) == {key for key in state if key.startswith("encoder.")}
    assert isinstance(entries[0], StateEntry)
