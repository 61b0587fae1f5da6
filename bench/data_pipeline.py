"""Data speed: building the corpus cache, verifying it, and reading training batches from it."""
from __future__ import annotations

import logging
import shutil
import time
import warnings

import torch

from bench.configs import compose_stage, workspace_options
from bench.harness import rates, summarize, time_call
from echomask.data.datamodule import BEAT2DataModule


def _folder_bytes(folder) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def _build_and_verify(workspace, cache_dir, device: torch.device) -> dict:
    """Build a cache in the empty `cache_dir`, then run `prepare_data` again on it; both timed."""
    builder, checker = (BEAT2DataModule(root=str(workspace.corpus), cache_dir=str(cache_dir)) for _ in range(2))
    cache = builder.cache  # lists the corpus and loads HuBERT before the clock starts
    build = time_call(builder.prepare_data, device)
    verify = time_call(checker.prepare_data, device)
    sequences = cache.sequences(("train", "val", "test"))
    measured = {
        "build": build,
        "verify": verify,
        "corpus_seconds": sum(sequence.num_frames for sequence in sequences) / cache.fps,
        "sequences": len(sequences),
        "cache_mib": _folder_bytes(cache_dir) / 2**20,
    }
    shutil.rmtree(cache_dir)
    return measured


def cache_build_rate(device: torch.device, workspace, repeats: int) -> dict:
    """Seconds of corpus cached per second by `BEAT2DataModule.prepare_data` into an empty cache folder
    (motion, joints, tiny-random HuBERT features, envelope/onsets, checksums), and the rate of a later
    `prepare_data` on the complete cache (corpus listing, HuBERT load, sha256 of every array).

    The first build of the process is timed apart (`first_build_seconds`): it also pays for lazy imports
    (librosa's onset detection), as a user's first build does; the `repeats` builds after it give the rate.
    """
    logging.getLogger("echomask").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=UserWarning)
    first = _build_and_verify(workspace, workspace.root / "cache-build-first", device)
    runs = [_build_and_verify(workspace, workspace.root / f"cache-build-{repeat}", device) for repeat in range(repeats)]
    build = summarize([run["build"] for run in runs])
    verify = summarize([run["verify"] for run in runs])
    corpus_seconds = first["corpus_seconds"]
    return {
        "corpus_seconds": corpus_seconds,
        "sequences": first["sequences"],
        "cache_mib": first["cache_mib"],
        "first_build_seconds": first["build"],
        "build_seconds": build,
        "corpus_seconds_per_second": corpus_seconds / build["median"],
        "verify_seconds": verify,
        "verify_corpus_seconds_per_second": corpus_seconds / verify["median"],
        "how": "BEAT2DataModule.prepare_data into an empty cache folder (tiny-random HuBERT); "
        "verify = prepare_data again on the complete cache",
    }


def loader_throughput(
    device: torch.device,
    workspace,
    stage: str,
    num_workers: int,
    batches: int,
    repeats: int,
    size: str = "paper",
) -> dict:
    """Training windows per second that `stage`'s configured training loader delivers (its items, its
    batch size) with `num_workers` worker processes, epochs chained until `batches` batches were read.
    The first batch (worker start-up) is timed apart."""
    options = workspace_options(workspace, num_workers=num_workers)
    config = compose_stage(stage, size, *options, instantiate=False).config  # the data only: no model is built
    module = BEAT2DataModule(**config.data.init_args.as_dict())
    module.prepare_data()
    module.setup("fit")
    loader = module.train_dataloader()

    def read_batches() -> int:
        windows, epoch = 0, 0
        iterator = iter(loader)
        for _ in range(batches):
            batch = next(iterator, None)
            if batch is None:
                epoch += 1
                loader.sampler.set_epoch(epoch)
                iterator = iter(loader)
                batch = next(iterator)
            windows += len(batch["motion"])
        return windows

    start = time.perf_counter()
    next(iter(loader))
    first_batch = time.perf_counter() - start
    windows = read_batches()
    seconds = summarize([time_call(read_batches, device) for _ in range(repeats)])
    return {
        "stage": stage,
        "num_workers": num_workers,
        "items": list(module.items),
        "batch_size": module.hparams.batch_size,
        "windows_per_read": windows,
        "seconds": seconds,
        "windows_per_second": rates(windows, seconds),
        "first_batch_seconds": first_batch,
        "how": f"{batches} batches of the {stage} config's training loader",
    }
