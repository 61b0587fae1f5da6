"""The data every benchmark reads: a synthetic BEAT2-format corpus, its cache and a long speech recording.

`prepare_workspace` writes them once per `bench/run.py` invocation (into a temporary folder); each
benchmark process then opens the corpus and the prebuilt cache instead of paying for them again.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile

from echomask.data.beat2 import AUDIO_SAMPLE_RATE, BEAT2Corpus
from echomask.data.datamodule import BEAT2DataModule
from echomask.data.synthetic import write_synthetic_corpus

# 2 speakers x 4 recordings (2 train, 1 val, 1 test each) of 20 s: 108 training windows of 64 frames at
# stride 20 (SPEC §4.5), enough for one paper-size batch of 64; 160 s of corpus for the cache build rate.
CORPUS_SETTINGS = dict(
    num_speakers=2,
    sequences_per_speaker=4,
    seconds_per_sequence=20.0,
    seed=0,
)
SPEECH_FILE = "speech.wav"


@dataclass(frozen=True)
class Workspace:
    """Paths of the benchmark data (all under `root`).

    corpus: the synthetic corpus root (holds beat_english_v2.0.0/).
    cache: the cache folder, prebuilt for the default data settings (tiny-random HuBERT, 256-d features).
    speech: a long 16 kHz mono recording, the corpus' synthetic speech recordings one after another.
    """

    root: Path
    corpus: Path
    cache: Path
    speech: Path

    def speech_clip(self, seconds: float) -> np.ndarray:
        """The first `seconds` of `speech` as float32 (N,) at 16 kHz."""
        wave, sample_rate = soundfile.read(str(self.speech), dtype="float32")
        samples = int(round(seconds * sample_rate))
        if samples > len(wave):
            raise ValueError(f"{self.speech}: holds {len(wave) / sample_rate:.1f} s, {seconds} s were asked for")
        return wave[:samples]


def prepare_workspace(root: Path, speech_seconds: float = 60.0) -> Workspace:
    """Write the corpus, build its cache and assemble `speech_seconds` of speech under `root`."""
    root = Path(root)
    write_synthetic_corpus(root / "corpus", **CORPUS_SETTINGS)
    workspace = Workspace(root=root, corpus=root / "corpus", cache=root / "cache", speech=root / SPEECH_FILE)
    BEAT2DataModule(root=str(workspace.corpus), cache_dir=str(workspace.cache)).prepare_data()
    _write_speech(workspace, speech_seconds)
    return workspace


def _write_speech(workspace: Workspace, seconds: float) -> None:
    """Concatenate the corpus' recordings until `seconds` of audio are reached."""
    needed = int(round(seconds * AUDIO_SAMPLE_RATE))
    pieces, total = [], 0
    for sequence in BEAT2Corpus(workspace.corpus):
        wave, _ = soundfile.read(str(sequence.audio_path), dtype="float32")
        pieces.append(wave)
        total += len(wave)
        if total >= needed:
            break
    if total < needed:
        raise ValueError(f"{workspace.corpus}: has {total / AUDIO_SAMPLE_RATE:.1f} s of audio, {seconds} s are needed")
    soundfile.write(str(workspace.speech), np.concatenate(pieces)[:needed], AUDIO_SAMPLE_RATE)
