"""BEAT2DataModule on the synthetic corpus and on the real one-file sample (SPEC §4.5)."""
from pathlib import Path

import numpy as np
import pytest
import torch

from echomask.audio.speech_settings import SpeechSettings
from echomask.data.corpus_cache import ARRAY_NAMES
from echomask.data.datamodule import BEAT2DataModule
from echomask.motion.parts import WHOLE_BODY_DIM

SHARED = Path(__file__).resolve().parents[2] / "shared"
needs_shared = pytest.mark.skipif(not SHARED.exists(), reason="../shared not present")

ALL_ITEMS = list(ARRAY_NAMES) + ["speaker", "id", "start"]
TINY_SPEECH = SpeechSettings(hubert="tiny-random", hubert_low_layer=1, feature_dim=32)


def make_datamodule(root, cache_dir, **overrides) -> BEAT2DataModule:
    settings = dict(root=str(root), cache_dir=str(cache_dir), batch_size=4, items=ALL_ITEMS, speech=TINY_SPEECH)
    settings.update(overrides)
    return BEAT2DataModule(**settings)


@pytest.fixture(scope="module")
def ready(synthetic_corpus, tmp_path_factory) -> BEAT2DataModule:
    splits = ["train", "val", "test"]
    datamodule = make_datamodule(synthetic_corpus, tmp_path_factory.mktemp("cache"), train_splits=splits)
    datamodule.prepare_data()
    datamodule.setup("fit")
    return datamodule


def test_window_batches_have_the_configured_shapes(ready):
    batch = next(iter(ready.train_dataloader()))
    assert batch["motion"].shape == (4, 64, WHOLE_BODY_DIM)
    assert batch["expressions"].shape == (4, 64, 100)
    assert batch["joints"].shape == (4, 64, 55, 3)
    assert batch["audio_low"].shape == (4, 64, 32) and batch["audio_high"].shape == (4, 64, 32)
    assert batch["envelope"].shape == (4, 64) and batch["onset_strength"].shape == (4, 64)
    assert batch["audio"].shape == (4, round(64 * 16000 / 30))
    assert batch["speaker"].dtype == torch.long and set(batch["speaker"].tolist()) <= {0, 1, 2}
    assert torch.isfinite(batch["motion"]).all()


def test_window_count_follows_window_and_stride(ready):
    sequences = ready.datasets["train"].sequences
    expected = sum((s.num_frames - 64) // 20 + 1 for s in sequences)
    assert len(ready.datasets["train"]) == expected
    # both streams are cropped to the shorter whole second (§4.5)
    assert all(s.num_frames % 30 == 0 for s in sequences)
    first = sequences[0]
    assert len(first.array("audio")) == first.num_frames * 16000 // 30


def test_windows_are_aligned_slices_of_the_cached_sequence(ready):
    dataset = ready.datasets["train"]
    number, start = dataset.index[3]
    item = dataset[3]
    sequence = dataset.sequences[number]
    np.testing.assert_array_equal(item["motion"].numpy(), sequence.array("motion")[start : start + 64])
    np.testing.assert_array_equal(item["audio_low"].numpy(), sequence.array("audio_low")[start : start + 64])
    assert item["start"].item() == start and item["id"] == sequence.id


def test_cache_is_memory_mapped(ready):
    assert isinstance(ready.datasets["train"].sequences[0].array("motion"), np.memmap)


def test_test_items_are_whole_sequences(ready):
    loader = ready.test_dataloader()
    batch = next(iter(loader))
    sequence = ready.datasets["test"].sequences[0]
    assert batch["motion"].shape == (1, sequence.num_frames, WHOLE_BODY_DIM)
    assert batch["audio"].shape == (1, sequence.num_frames * 16000 // 30)
    assert batch["id"] == [sequence.id]


def test_cache_is_built_once_and_reused(synthetic_corpus, tmp_path, monkeypatch):
    first = make_datamodule(synthetic_corpus, tmp_path)
    first.prepare_data()
    calls = []
    original = type(first.cache).compute_arrays
    monkeypatch.setattr(type(first.cache), "compute_arrays", lambda self, s: calls.append(s.id) or original(self, s))
    second = make_datamodule(synthetic_corpus, tmp_path)
    second.prepare_data()
    assert calls == []


def test_corrupt_cache_entry_is_detected_and_rebuilt(synthetic_corpus, tmp_path):
    datamodule = make_datamodule(synthetic_corpus, tmp_path)
    datamodule.prepare_data()
    datamodule.setup("fit")
    sequence = datamodule.datasets["train"].sequences[0]
    path = sequence.folder / "motion.npy"
    clean = np.load(path)
    raw = bytearray(path.read_bytes())
    raw[-5] ^= 0xFF
    path.write_bytes(bytes(raw))
    again = make_datamodule(synthetic_corpus, tmp_path)
    with pytest.warns(UserWarning, match=rf"{sequence.id}.*corrupt"):
        again.prepare_data()
    np.testing.assert_array_equal(np.load(path), clean)


def test_changed_feature_settings_use_another_cache(synthetic_corpus, tmp_path):
    one = make_datamodule(synthetic_corpus, tmp_path)
    other = make_datamodule(synthetic_corpus, tmp_path, speech={**TINY_SPEECH.as_dict(), "projection_seed": 1})
    assert one.cache.folder != other.cache.folder


def test_loader_works_with_worker_processes(synthetic_corpus, tmp_path):
    datamodule = make_datamodule(synthetic_corpus, tmp_path, num_workers=2, items=["motion", "audio_high", "speaker"])
    datamodule.prepare_data()
    datamodule.setup("fit")
    seen = sum(len(batch["motion"]) for batch in datamodule.train_dataloader())
    assert seen == len(datamodule.datasets["train"])


def test_empty_split_gives_a_clear_error(synthetic_corpus, tmp_path):
    datamodule = make_datamodule(synthetic_corpus, tmp_path, val_splits=["additional"])
    datamodule.prepare_data()
    datamodule.setup("fit")
    with pytest.raises(ValueError, match="no val items"):
        datamodule.val_dataloader()


def test_unknown_item_is_rejected(synthetic_corpus, tmp_path):
    with pytest.raises(ValueError, match="unknown item"):
        make_datamodule(synthetic_corpus, tmp_path, items=["motion", "mfcc"])


def test_joint_mean_speed_is_computed_from_the_train_split(ready):
    speeds, source = ready.joint_mean_speed()
    assert speeds.shape == (55,) and (speeds >= 0).all() and speeds[20] > 0
    assert source == f"train split of {ready.cache.corpus.root}"
    np.testing.assert_array_equal(speeds, ready.cache.joint_mean_speed(["train", "val", "test"]))


@needs_shared
def test_real_sample_iterates(tmp_path):
    datamodule = make_datamodule(
        SHARED / "beat2_sample", tmp_path, train_splits=["test"], val_splits=["test"], speakers=[2]
    )
    datamodule.prepare_data()
    datamodule.setup("fit")
    sequence = datamodule.datasets["test"].sequences[0]
    assert sequence.id == "2_scott_0_1_1"
    assert sequence.num_frames == 63 * 30  # 63.5 s of motion, 64.1 s of audio → 63 whole seconds
    windows = sum(len(batch["motion"]) for batch in datamodule.train_dataloader())
    assert windows == (63 * 30 - 64) // 20 + 1
    whole = next(iter(datamodule.test_dataloader()))
    assert whole["motion"].shape == (1, 1890, WHOLE_BODY_DIM)
