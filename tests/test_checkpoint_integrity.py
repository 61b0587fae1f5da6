"""Truncated, damaged and unsafe checkpoint files give one-line errors naming the file (issue 7).

`echomask.checkpoints.load_checkpoint` is used by the FGD feature extractor's loader
(`MotionAutoencoder.from_checkpoint`, `load_aeskconv_checkpoint`) and by the CLI's `--ckpt_path`
check (tests/test_cli_errors.py).
"""
from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from echomask.checkpoints import CheckpointError, load_checkpoint, verify_checkpoint_file
from echomask.models.motion_autoencoder import MotionAutoencoder, load_aeskconv_checkpoint


class NotATensor:
    """A pickled Python object that a weights-only load must refuse."""


@pytest.fixture
def saved(tmp_path) -> tuple[Path, dict]:
    """A small Lightning-like checkpoint and what it holds."""
    torch.manual_seed(0)
    content = {"state_dict": {"model.weight": torch.randn(64, 32)}, "epoch": 3, "hyper_parameters": {"lr": 1e-3}}
    path = tmp_path / "last.ckpt"
    torch.save(content, path)
    return path, content


def truncated_copy(path: Path, keep_bytes: int, out: Path) -> Path:
    out.write_bytes(path.read_bytes()[:keep_bytes])
    return out


def assert_names_file(error: pytest.ExceptionInfo, path: Path, problem: str) -> None:
    message = str(error.value)
    assert message.startswith(f"{path}: "), message
    assert problem in message
    assert "\n" not in message


def test_a_good_checkpoint_loads(saved):
    path, content = saved
    loaded = load_checkpoint(path)
    assert loaded["epoch"] == content["epoch"]
    assert torch.equal(loaded["state_dict"]["model.weight"], content["state_dict"]["model.weight"])
    assert verify_checkpoint_file(str(path)) == path


@pytest.mark.parametrize("kept", ["half", "all but 1 byte", "first 100 bytes"])
def test_a_truncated_checkpoint_is_reported(saved, tmp_path, kept):
    path, _ = saved
    size = path.stat().st_size
    keep = {"half": size // 2, "all but 1 byte": size - 1, "first 100 bytes": 100}[kept]
    cut = truncated_copy(path, keep, tmp_path / "cut.ckpt")
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(cut)
    assert_names_file(error, cut, "truncated or corrupt checkpoint")
    assert error.value.path == cut


def test_flipped_bytes_in_tensor_data_fail_the_crc_check(saved, tmp_path):
    """torch.load itself would return wrong weights silently."""
    path, content = saved
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        member = next(info for info in archive.infolist() if info.filename.endswith("/data/0"))
    data[member.header_offset + 200] ^= 0xFF  # inside the stored tensor bytes (after the local header)
    damaged = tmp_path / "damaged.ckpt"
    damaged.write_bytes(bytes(data))
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(damaged)
    assert_names_file(error, damaged, f"archive member {member.filename} fails its CRC-32 check")


def test_missing_empty_and_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.ckpt: checkpoint not found"):
        load_checkpoint(tmp_path / "nothing.ckpt")
    empty = tmp_path / "empty.ckpt"
    empty.touch()
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(empty)
    assert_names_file(error, empty, "truncated or corrupt checkpoint (empty file)")
    with pytest.raises(CheckpointError, match="not a checkpoint file"):
        load_checkpoint(tmp_path)


def test_random_bytes_and_a_zip_that_is_not_a_torch_file(tmp_path):
    noise = tmp_path / "noise.ckpt"
    noise.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(noise)
    assert_names_file(error, noise, "truncated or corrupt checkpoint or not a torch.save file")
    npz = tmp_path / "motion.npz"
    np.savez(npz, poses=np.zeros((2, 165)))
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(npz)
    assert_names_file(error, npz, "not a torch.save file")


def test_the_legacy_format_loads_and_its_truncation_is_reported(tmp_path):
    legacy = tmp_path / "legacy.bin"
    torch.save({"model_state": {"module.w": torch.ones(3)}}, legacy, _use_new_zipfile_serialization=False)
    assert torch.equal(load_checkpoint(legacy)["model_state"]["module.w"], torch.ones(3))
    cut = truncated_copy(legacy, legacy.stat().st_size - 8, tmp_path / "legacy_cut.bin")
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(cut)
    assert_names_file(error, cut, "truncated or corrupt checkpoint")


def test_pickled_objects_are_refused_unless_trusted(tmp_path):
    path = tmp_path / "objects.ckpt"
    torch.save({"state_dict": {}, "extra": NotATensor()}, path)
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(path)
    assert_names_file(error, path, "NotATensor")
    assert "weights_only=False" in str(error.value)
    assert isinstance(load_checkpoint(path, weights_only=False)["extra"], NotATensor)


def test_the_top_level_must_be_a_dict(tmp_path):
    path = tmp_path / "tensor.pt"
    torch.save(torch.zeros(3), path)
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(path)
    assert_names_file(error, path, "expected a dict at the top level, got Tensor")


def test_the_fgd_extractor_loaders_report_truncated_files(tmp_path):
    path = tmp_path / "AESKConv_240_100.bin"
    state = {f"module.{name}": tensor for name, tensor in MotionAutoencoder().state_dict().items()}
    torch.save({"model_state": state}, path)
    cut = truncated_copy(path, path.stat().st_size * 3 // 4, tmp_path / "AESKConv_cut.bin")
    for loader in (MotionAutoencoder.from_checkpoint, load_aeskconv_checkpoint):
        with pytest.raises(CheckpointError) as error:
            loader(cut)
        assert_names_file(error, cut, "truncated or corrupt checkpoint")
