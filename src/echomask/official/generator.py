"""The release's stage-2 checkpoint (``best_echomask.bin``) as one echomask generator checkpoint.

The release file holds ``{"model_state": state dict}`` of its class ``echomask`` (names maybe prefixed
``module.``; read with torch's weights-only unpickler, official/release_files.py). Its keys are mapped onto
:class:`~echomask.models.masked_generator.MaskedGenerator` by official/generator_keys.py: the keys of the modules
no forward pass or loss of the release reaches (85 M parameters at paper size), the positional-encoding tables and
the positive-only MAM match classifier (left out by default) are dropped and counted.

The written checkpoint is a :class:`~echomask.lit.generator_module.GeneratorModule` checkpoint like one of
``echomask fit``: its hyper-parameters hold the network's sizes (the release's, with the speaker count read from
the file), the stage-1 architectures and the speech settings; its state dict holds the generator, the stage-1
models imported from the release's stage-1 files, the EMA copy (= the imported weights) and the speech projection
of the speech settings. ``echomask generate``, ``echomask test`` and the notebook read it unchanged.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import lightning.pytorch as pl

from echomask.audio.speech_settings import SpeechSettings
from echomask.checkpoints import CheckpointError
from echomask.lit.generator_module import GeneratorModule
from echomask.lit.translation_module import translation_arguments
from echomask.lit.vqvae_module import rvqvae_arguments
from echomask.official.generator_keys import convert_release_generator
from echomask.official.release_files import read_release_state
from echomask.official.stage1 import STAGE1_NAMES

SPEAKER_TABLE = "spearker_encoder_face.weight"  # the release's spelling


@dataclass
class ImportedGenerator:
    """module: the generator module holding the release's weights. dropped: why -> how many release tensors were
    left out for that reason; dropped_parameters: their number of values."""

    module: GeneratorModule
    dropped: dict[str, int]
    dropped_parameters: int


def import_generator(
    path: str | Path, stage1: Mapping[str, pl.LightningModule], speech: SpeechSettings
) -> ImportedGenerator:
    """The release's generator file at ``path`` with the imported stage-1 modules (``official/stage1.py``,
    names face, upper, hands, lower, translation) and the speech settings the features are made with.

    Raises:
        FileNotFoundError / CheckpointError: a one-line message naming the file and the problem (not a torch file,
            not the release's layout, a tensor of another shape, missing tensors, sizes that disagree with stage 1).
    """
    path = Path(path)
    missing = [name for name in STAGE1_NAMES if name not in stage1]
    if missing:
        raise ValueError(f"importing the generator needs all five stage-1 files; missing: {missing}")
    state = read_release_state(path)
    if SPEAKER_TABLE not in state:
        raise CheckpointError(path, f"not the release's generator (models/echomask.py): no tensor {SPEAKER_TABLE}")
    stage1_hparams = {
        name: translation_arguments(module.hparams) if name == "translation" else rvqvae_arguments(module.hparams, name)
        for name, module in stage1.items()
    }
    module = GeneratorModule(num_speakers=state[SPEAKER_TABLE].shape[0], stage1_hparams=stage1_hparams, speech=speech)
    try:
        converted = convert_release_generator(state, module.generator)
    except ValueError as error:
        raise CheckpointError(path, str(error)) from None
    module.generator.load_state_dict(converted.state_dict)
    module.ema.module.load_state_dict(converted.state_dict)
    for name, imported in stage1.items():
        target = module.synthesizer.translation if name == "translation" else module.synthesizer.vqvaes[name]
        target.load_state_dict(imported.model.state_dict())
    module.speech_projection = speech.extractor().projection.clone()
    reasons = Counter(converted.dropped.values())
    dropped_parameters = sum(state[key].numel() for key in converted.dropped)
    return ImportedGenerator(module=module.eval(), dropped=dict(reasons), dropped_parameters=dropped_parameters)
