"""Skeleton graph and AESKConv motion autoencoder (SPEC §8.2, shared/spec/fgd_aeskconv.md)."""

from pathlib import Path

import numpy as np
import pytest
import torch

from echomask.models.motion_autoencoder import (
    AESKCONV_PREFIX,
    LIGHTNING_PREFIX,
    MotionAutoencoder,
    load_aeskconv_checkpoint,
)
from echomask.models.skeleton_graph import (
    chain_groups,
    edge_chains,
    edge_neighbourhoods,
    root_edge_list,
    skeleton_levels,
)
from echomask.motion.skeleton import SMPLX_PARENTS

SHARED = Path(__file__).resolve().parents[2] / "shared"
needs_shared = pytest.mark.skipif(not SHARED.exists(), reason="../shared not present")
AESKCONV_DIR = SHARED / "golden" / "aeskconv"

# Neighbourhood sizes |N(e)| in edge order, copied from fgd_aeskconv.md §4.
SPEC_NEIGHBOURHOOD_SIZES = {
    0: "7 8 8 8 7 7 9 4 4 9 3 3 11 9 9 8 7 7 9 9 13 13 5 5 5 13 8 3 13 8 3 13 8 3 13 8 3 13 8 3 13 8 3 13 8 3 "
    "13 8 3 13 8 3 13 8 3",
    1: "7 7 5 7 5 10 13 10 7 7 7 15 15 12 7 12 7 12 7 12 7 12 7 15 15 12 7 12 7 12 7 12 7 12 7",
    2: "7 7 7 20 20 7 7 7 20 9 9 9 9 9 20 9 9 9 9 9",
    3: "7 7 7 20 20 7 7 7 20 9 9 9 9 9 20 9 9 9 9 9",
}

# Pooling groups and edge lists, copied from fgd_aeskconv.md §6.
SPEC_LAYER0_GROUPS = (
    "[0] [1,4] [7,10] [2,5] [8,11] [3] [6,9] [12,15] [22] [23] [24] [13,16] [18,20] [25] [26,27] [28] [29,30] "
    "[31] [32,33] [34] [35,36] [37] [38,39] [14,17] [19,21] [40] [41,42] [43] [44,45] [46] [47,48] [49] [50,51] "
    "[52] [53,54]"
)
SPEC_LAYER1_EDGES = (
    "0:(0,55) 1:(0,4) 2:(4,10) 3:(0,5) 4:(5,11) 5:(0,3) 6:(3,9) 7:(9,15) 8:(15,22) 9:(15,23) 10:(15,24) "
    "11:(9,16) 12:(16,20) 13:(20,25) 14:(25,27) 15:(20,28) 16:(28,30) 17:(20,31) 18:(31,33) 19:(20,34) "
    "20:(34,36) 21:(20,37) 22:(37,39) 23:(9,17) 24:(17,21) 25:(21,40) 26:(40,42) 27:(21,43) 28:(43,45) "
    "29:(21,46) 30:(46,48) 31:(21,49) 32:(49,51) 33:(21,52) 34:(52,54)"
)
SPEC_LAYER1_GROUPS = (
    "[0] [1,2] [3,4] [5,6] [7] [8] [9] [10] [11,12] [13,14] [15,16] [17,18] [19,20] [21,22] [23,24] [25,26] "
    "[27,28] [29,30] [31,32] [33,34]"
)
SPEC_LAYER2_EDGES = (
    "0:(0,55) 1:(0,10) 2:(0,11) 3:(0,9) 4:(9,15) 5:(15,22) 6:(15,23) 7:(15,24) 8:(9,20) 9:(20,27) 10:(20,30) "
    "11:(20,33) 12:(20,36) 13:(20,39) 14:(9,21) 15:(21,42) 16:(21,45) 17:(21,48) 18:(21,51) 19:(21,54)"
)


def parse_groups(text: str) -> list[list[int]]:
    return [[int(index) for index in group.strip("[]").split(",")] for group in text.split()]


def parse_edges(text: str) -> list[tuple[int, int]]:
    edges = []
    for position, item in enumerate(text.split()):
        index, pair = item.split(":")
        assert int(index) == position
        first, second = pair.strip("()").split(",")
        edges.append((int(first), int(second)))
    return edges


@pytest.fixture(scope="module")
def levels():
    return skeleton_levels(SMPLX_PARENTS, n_levels=4)


@pytest.fixture(scope="module")
def io_arrays():
    return np.load(AESKCONV_DIR / "io.npz")


@pytest.fixture(scope="module")
def reference_model():
    return load_aeskconv_checkpoint(AESKCONV_DIR / "aeskconv_random.bin").eval()


def saved_state(model: MotionAutoencoder) -> dict[str, torch.Tensor]:
    """The model's tensors named as in an AESKConv file."""
    return {AESKCONV_PREFIX + name: tensor.clone() for name, tensor in model.state_dict().items()}


# --- skeleton graph (spec text only) ---------------------------------------------------------------


def test_root_edge_list_has_virtual_root_edge():
    edges = root_edge_list(SMPLX_PARENTS)
    assert len(edges) == 55
    assert edges[0] == (0, 55)
    assert all(edges[joint] == (SMPLX_PARENTS[joint], joint) for joint in range(1, 55))


@pytest.mark.parametrize("layer", [0, 1, 2, 3])
def test_neighbourhood_sizes_match_spec(levels, layer):
    neighbourhoods = edge_neighbourhoods(levels[layer].edges, radius=2)
    sizes = [len(neighbours) for neighbours in neighbourhoods]
    assert sizes == [int(size) for size in SPEC_NEIGHBOURHOOD_SIZES[layer].split()]
    assert all(edge in neighbours for edge, neighbours in enumerate(neighbourhoods))


def test_pooled_edge_lists_match_spec(levels):
    assert levels[0].groups == parse_groups(SPEC_LAYER0_GROUPS)
    assert levels[1].edges == parse_edges(SPEC_LAYER1_EDGES)
    assert levels[1].groups == parse_groups(SPEC_LAYER1_GROUPS)
    assert levels[2].edges == parse_edges(SPEC_LAYER2_EDGES)
    assert levels[3].edges == levels[2].edges
    assert [level.pools for level in levels] == [True, True, False, False]


def test_chain_walk_and_grouping_on_a_toy_chain():
    # A 3-bone chain 0-1-2-3: edges (0,4) virtual, (0,1), (1,2), (2,3).
    edges = root_edge_list([-1, 0, 1, 2])
    assert edge_chains(edges) == [[0], [1, 2, 3]]
    assert chain_groups([1, 2, 3], merge_whole_chain=False) == [[1], [2, 3]]
    assert chain_groups([1, 2, 3], merge_whole_chain=True) == [[1, 2, 3]]
    assert [level.groups for level in skeleton_levels([-1, 0, 1, 2], n_levels=1)] == [[[0], [1, 2, 3]]]


def test_unordered_parent_list_is_rejected():
    with pytest.raises(ValueError, match="parents\\[1\\]"):
        root_edge_list([-1, 2, 0])


# --- model shapes, training pass, input checks -----------------------------------------------------


def test_autoencoder_shapes_and_backward():
    torch.manual_seed(0)
    model = MotionAutoencoder()
    motion = torch.randn(2, 64, 330)
    latents = model.encode(motion)
    assert latents.shape == (2, 4, 240)
    assert model.decode(latents).shape == (2, 64, 330)

    reconstruction = model(motion)
    assert reconstruction.shape == (2, 64, 330)
    torch.nn.functional.mse_loss(reconstruction, motion).backward()
    named = dict(model.named_parameters())
    assert all(torch.isfinite(parameter.grad).all() for parameter in named.values() if parameter.grad is not None)
    conv = model.encoder.layers[0][0].residual[0]
    assert conv.weight.grad.abs().sum() > 0
    assert (conv.weight.grad[conv.mask == 0] == 0).all()  # masked-out taps never learn
    assert named["fc_mu.weight"].grad is None  # non-variational: fc_* unused


def test_decoder_layout_matches_checkpoint_indices():
    main = MotionAutoencoder().decoder.main
    convs = {
        index: tuple(module.weight.shape) for index, module in enumerate(main) if isinstance(module, torch.nn.Conv1d)
    }
    assert convs == {3: (240, 240, 3), 6: (240, 240, 3), 9: (240, 240, 3), 12: (330, 240, 3), 14: (330, 330, 3)}
    assert sum(isinstance(module, torch.nn.Upsample) for module in main) == 4


def test_clip_length_not_multiple_of_16_is_rejected():
    with pytest.raises(ValueError, match="multiple of 16"):
        MotionAutoencoder().encode(torch.zeros(1, 40, 330))
    with pytest.raises(ValueError, match="330"):
        MotionAutoencoder().encode(torch.zeros(1, 32, 329))


# --- checkpoint loading ----------------------------------------------------------------------------


def test_saved_model_round_trips(tmp_path):
    torch.manual_seed(1)
    model = MotionAutoencoder().eval()
    path = tmp_path / "ae.bin"
    torch.save({"model_state": saved_state(model)}, path)
    loaded = load_aeskconv_checkpoint(path).eval()
    motion = torch.randn(1, 32, 330)
    assert torch.equal(loaded.encode(motion), model.encode(motion))
    assert torch.equal(loaded(motion), model(motion))
    assert torch.equal(MotionAutoencoder.from_checkpoint(path).encode(motion), model.encode(motion))


def test_lightning_checkpoint_loads(tmp_path):
    torch.manual_seed(2)
    model = MotionAutoencoder().eval()
    state = {LIGHTNING_PREFIX + name: tensor for name, tensor in model.state_dict().items()}
    state["other_module.weight"] = torch.zeros(3)
    path = tmp_path / "evaluator.ckpt"
    torch.save({"state_dict": state, "epoch": 3}, path)
    motion = torch.randn(1, 16, 330)
    assert torch.equal(MotionAutoencoder.from_checkpoint(path).eval().encode(motion), model.encode(motion))


def corrupt(state: dict[str, torch.Tensor], how: str) -> dict[str, torch.Tensor]:
    if how == "missing":
        del state["module.decoder.main.14.bias"]
    elif how == "unexpected":
        state["module.decoder.main.15.bias"] = torch.zeros(330)
    elif how == "shape":
        state["module.fc_mu.bias"] = torch.zeros(239)
    elif how == "prefix":
        state = {"model." + name.removeprefix(AESKCONV_PREFIX): tensor for name, tensor in state.items()}
    elif how == "mask":
        state["module.encoder.layers.1.0.shortcut.mask"][0, -1, 0] = 1.0
    elif how == "pooling":
        state["module.encoder.layers.0.0.common.0.weight"][0, 0] = 0.25
    return state


@pytest.mark.parametrize(
    ("how", "message"),
    [
        ("missing", "missing \\(1\\): decoder.main.14.bias"),
        ("unexpected", "unexpected \\(1\\): decoder.main.15.bias"),
        ("shape", "wrong shape \\(1\\): fc_mu.bias \\(239,\\) \\(expected \\(240,\\)\\)"),
        ("prefix", "lack the prefix 'module.'"),
        ("mask", "encoder.layers.1.0.shortcut.mask: the stored tensor differs"),
        ("pooling", "encoder.layers.0.0.common.0.weight: the stored tensor differs"),
    ],
)
def test_loader_errors_name_file_and_problem(tmp_path, how, message):
    path = tmp_path / f"broken_{how}.bin"
    torch.save({"model_state": corrupt(saved_state(MotionAutoencoder()), how)}, path)
    with pytest.raises(ValueError, match=message) as error:
        load_aeskconv_checkpoint(path)
    assert str(path) in str(error.value)


def test_unknown_checkpoint_format_is_rejected(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save({"weights": {}}, path)
    with pytest.raises(ValueError, match="weights.pt: neither an AESKConv"):
        MotionAutoencoder.from_checkpoint(path)
    with pytest.raises(ValueError, match="weights.pt: not an AESKConv checkpoint"):
        load_aeskconv_checkpoint(path)


# --- golden fixtures -------------------------------------------------------------------------------


@needs_shared
def test_parents_match_fixture(io_arrays):
    assert list(SMPLX_PARENTS)[1:] == io_arrays["parents"].tolist()[1:]


@needs_shared
def test_rebuilt_masks_and_pooling_equal_checkpoint():
    stored = torch.load(AESKCONV_DIR / "aeskconv_random.bin", weights_only=True)["model_state"]
    rebuilt = MotionAutoencoder().state_dict()
    fixed_names = [name for name in rebuilt if name.endswith(".mask") or ".common.0." in name]
    assert len(fixed_names) == 4 * 2 + 2
    for name in fixed_names:
        assert torch.equal(rebuilt[name], stored[AESKCONV_PREFIX + name]), name


@needs_shared
@pytest.mark.parametrize(
    ("input_key", "latent_key"),
    [("input_rot6d", "expected_latent"), ("input2_rot6d", "expected_latent2")],
)
def test_latents_float32(reference_model, io_arrays, input_key, latent_key):
    with torch.no_grad():
        latents = reference_model.encode(torch.from_numpy(io_arrays[input_key]))
    assert latents.dtype == torch.float32
    torch.testing.assert_close(latents, torch.from_numpy(io_arrays[latent_key]), atol=1e-4, rtol=0)


@needs_shared
def test_latents_float64(io_arrays):
    model = load_aeskconv_checkpoint(AESKCONV_DIR / "aeskconv_random.bin").double().eval()
    for input_key, latent_key in [("input_rot6d", "expected_latent_f64"), ("input2_rot6d", "expected_latent2_f64")]:
        with torch.no_grad():
            latents = model.encode(torch.from_numpy(io_arrays[input_key]).double())
        torch.testing.assert_close(latents, torch.from_numpy(io_arrays[latent_key]), atol=1e-9, rtol=0)


@needs_shared
def test_per_layer_outputs(reference_model, io_arrays):
    hidden = torch.from_numpy(io_arrays["input_rot6d"]).permute(0, 2, 1)
    with torch.no_grad():
        for index, layer in enumerate(reference_model.encoder.layers):
            hidden = layer(hidden)
            torch.testing.assert_close(hidden, torch.from_numpy(io_arrays[f"layer{index}_out"]), atol=1e-4, rtol=0)
