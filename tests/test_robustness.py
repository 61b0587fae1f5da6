"""NaN/inf in training inputs stop the run with a clear error before they reach the model (issue 7).

`NonFiniteBatchCheck` (echomask.lit.callbacks) is tested on a real BEAT2DataModule whose cache holds a
NaN in one sequence, and on hand-made batches. Other robustness tests live elsewhere:
a corrupt cache entry is rebuilt (tests/test_datamodule.py), an interrupted stage-1 run resumes to the
same result (tests/test_vqvae_module.py), bad files through the CLI (tests/test_cli_errors.py),
damaged checkpoints (tests/test_checkpoint_integrity.py), the BEAT2 reader fuzzed (tests/test_reader_fuzz.py).
"""
from __future__ import annotations

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from torch import nn

from echomask.data.beat2 import BEAT2Corpus, speaker_of
from echomask.data.corpus_cache import CorpusCache
from echomask.data.datamodule import BEAT2DataModule
from echomask.lit.callbacks import NonFiniteBatchCheck, NonFiniteBatchError
from echomask.lit.quiet_trainer import quiet_trainer

POISONED_FRAME = 10


class MotionMean(pl.LightningModule):
    """The smallest trainable model of `batch["motion"]`; remembers whether it was given NaN/inf."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(337, 1)
        self.saw_non_finite = False

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        self.saw_non_finite |= not bool(torch.isfinite(batch["motion"]).all())
        return self.linear(batch["motion"]).square().mean()

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self.log("val/loss", self.linear(batch["motion"]).square().mean())

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def trainer(**overrides) -> pl.Trainer:
    """One epoch with the non-finite check (`overrides` replace Trainer arguments, e.g. no callbacks)."""
    return quiet_trainer(**{"max_epochs": 1, "callbacks": [NonFiniteBatchCheck()], **overrides})


@pytest.fixture(scope="module")
def poisoned(synthetic_corpus, tmp_path_factory):
    """A data module of one training sequence (validated on itself) whose cached motion holds a NaN at frame 10."""
    target = next(sequence.id for sequence in BEAT2Corpus(synthetic_corpus, splits=["train"]))
    compute_arrays = CorpusCache.compute_arrays

    def with_nan(cache, sequence):
        arrays = compute_arrays(cache, sequence)
        if sequence.id == target:
            arrays["motion"][POISONED_FRAME, 0] = np.nan
        return arrays

    datamodule = BEAT2DataModule(
        root=str(synthetic_corpus),
        cache_dir=str(tmp_path_factory.mktemp("poisoned_cache")),
        speakers=[speaker_of(target)],
        train_splits=["train"],
        val_splits=["train"],
        test_splits=["train"],
        items=["motion", "id", "start"],
        batch_size=2,
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(CorpusCache, "compute_arrays", with_nan)
        datamodule.prepare_data()
    return datamodule, target


def test_a_nan_in_a_cached_window_stops_training_naming_its_sequence(poisoned):
    datamodule, target = poisoned
    model = MotionMean()
    with pytest.raises(NonFiniteBatchError) as error:
        trainer().fit(model, datamodule=datamodule)
    message = str(error.value)
    assert message.startswith("training batch ") and "'motion' holds 1 NaN/inf value(s)" in message
    assert f"{target} (frame 0)" in message, message  # the window starting at frame 0 holds frame 10
    assert "\n" not in message
    assert not model.saw_non_finite
    assert all(torch.isfinite(parameter).all() for parameter in model.parameters())


def test_without_the_check_the_nan_poisons_the_weights(poisoned):
    """Why the callback exists: the same run without it trains on and ends with NaN weights."""
    datamodule, _ = poisoned
    model = MotionMean()
    trainer(callbacks=[], limit_val_batches=0).fit(model, datamodule=datamodule)
    assert model.saw_non_finite
    assert not all(torch.isfinite(parameter).all() for parameter in model.parameters())


def batch_with(value: float, **extra) -> dict:
    motion = torch.zeros(3, 8, 337)
    motion[1, 2, 5] = value
    return {"motion": motion, "speaker": torch.tensor([0, 1, 2]), **extra}


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_any_non_finite_value_is_caught_and_rows_are_named_without_ids(value):
    with pytest.raises(NonFiniteBatchError) as error:
        NonFiniteBatchCheck().check(batch_with(value), "training batch 7")
    message = str(error.value)
    assert message.startswith("training batch 7: 'motion' holds 1 NaN/inf value(s), in sample(s) 1 of the batch")
    assert "add 'id' and 'start'" in message


def test_finite_batches_integers_and_strings_pass():
    check = NonFiniteBatchCheck()
    check.check(batch_with(3.0, id=["a", "b", "c"]), "training batch 0")
    check.check({"speaker": torch.tensor([1]), "id": ["a"]}, "training batch 0")
    check.check([torch.zeros(2, 3), torch.ones(2)], "training batch 0")


def test_tuple_batches_and_validation_batches():
    with pytest.raises(NonFiniteBatchError, match=r"'batch\[1\]' holds 1 NaN/inf"):
        NonFiniteBatchCheck().check((torch.zeros(2), torch.tensor([0.0, float("nan")])), "training batch 0")
    bad = batch_with(float("nan"), id=["a", "b", "c"], start=torch.tensor([0, 20, 40]))
    with pytest.raises(NonFiniteBatchError, match=r"validation batch 3: .* in sample\(s\) b \(frame 20\)"):
        NonFiniteBatchCheck().on_validation_batch_start(None, None, bad, 3)
    NonFiniteBatchCheck(check_validation=False).on_validation_batch_start(None, None, bad, 3)
