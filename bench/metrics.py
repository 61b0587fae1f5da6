"""Evaluation speed: `echomask evaluate`'s scoring (FGD, BC, L1div, face metrics) per second of motion."""
from __future__ import annotations

import logging
import tempfile

import torch

from bench.harness import summarize, time_call
from echomask.data.beat2 import MOTION_FPS
from echomask.evaluation import evaluate_predictions
from echomask.models.motion_autoencoder import AESKCONV_PREFIX, MotionAutoencoder

EVALUATED_SPLIT = "train"  # the workspace's largest split (4 recordings, 80 s)


def _write_random_fgd_encoder(path: str) -> None:
    """A randomly initialised AESKConv autoencoder in the released file's layout (its cost is the real one's)."""
    torch.manual_seed(0)
    state = {AESKCONV_PREFIX + name: tensor for name, tensor in MotionAutoencoder().state_dict().items()}
    torch.save({"model_state": state}, path)


def evaluation_rate(device: torch.device, workspace, repeats: int) -> dict:
    """Seconds of motion scored per second by `evaluate_predictions` (paper protocol, approximate skeleton),
    the ground truth scored against itself. The first call (not timed) loads librosa and the encoder."""
    logging.getLogger("echomask").setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory(dir=workspace.root) as folder:
        encoder = f"{folder}/AESKConv_random.bin"
        _write_random_fgd_encoder(encoder)

        def evaluate() -> dict:
            return evaluate_predictions(
                None, workspace.corpus, split=EVALUATED_SPLIT, fgd_checkpoint=encoder, progress=False
            )

        first = evaluate()
        seconds = summarize([time_call(evaluate, device) for _ in range(repeats)])
    motion_seconds = first["num_frames"] / MOTION_FPS
    return {
        "motion_seconds": motion_seconds,
        "sequences": first["num_sequences"],
        "seconds": seconds,
        "motion_seconds_per_second": motion_seconds / seconds["median"],
        "how": f"evaluate_predictions of the {EVALUATED_SPLIT} split (ground truth vs itself), paper protocol, "
        "random AESKConv encoder",
    }
