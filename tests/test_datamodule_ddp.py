"""BEAT2DataModule under DDP (2 CPU processes, gloo): the cache is built once, each rank reads its own shard."""
import json
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch

from echomask.audio.speech_settings import SpeechSettings
from echomask.data.datamodule import BEAT2DataModule
from echomask.lit.quiet_trainer import quiet_trainer

pytestmark = pytest.mark.ddp
SPEECH = SpeechSettings(hubert_low_layer=1, feature_dim=16)


class RecordingDataModule(BEAT2DataModule):
    """Appends a line to `<cache_dir>/prepare_calls` every time prepare_data runs, in any process."""

    def prepare_data(self) -> None:
        with open(Path(self.hparams.cache_dir) / "prepare_calls", "a") as record:
            record.write("called\n")
        super().prepare_data()


class RecordingModule(pl.LightningModule):
    """Writes the (sequence id, window start) pairs each rank trains on to `<out>/rank<r>.json`."""

    def __init__(self, out: str):
        super().__init__()
        self.out = out
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.seen: list[tuple[str, int]] = []

    def training_step(self, batch, batch_idx):
        self.seen += list(zip(batch["id"], batch["start"].tolist()))
        return (self.weight * batch["motion"].mean()).sum()

    def on_train_end(self) -> None:
        Path(self.out, f"rank{self.global_rank}.json").write_text(json.dumps(self.seen))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)


def test_cache_built_once_and_ranks_read_disjoint_shards(synthetic_corpus, tmp_path):
    cache_dir = tmp_path / "cache"
    cache_dir.mkdir()
    datamodule = RecordingDataModule(
        root=str(synthetic_corpus),
        cache_dir=str(cache_dir),
        items=["motion", "id", "start"],
        batch_size=4,
        speech=SPEECH,
    )
    trainer = quiet_trainer(devices=2, strategy="ddp_spawn", max_epochs=1, limit_val_batches=0)
    trainer.fit(RecordingModule(str(tmp_path)), datamodule=datamodule)

    assert (cache_dir / "prepare_calls").read_text().splitlines() == ["called"]
    shards = [set(map(tuple, json.loads((tmp_path / f"rank{rank}.json").read_text()))) for rank in (0, 1)]
    assert shards[0] and shards[1] and not shards[0] & shards[1]
    single = BEAT2DataModule(root=str(synthetic_corpus), cache_dir=str(cache_dir), speech=SPEECH)
    single.setup("fit")
    all_windows = {(s.id, start) for number, start in single.datasets["train"].index for s in [single.datasets["train"].sequences[number]]}
    assert shards[0] | shards[1] == all_windows
