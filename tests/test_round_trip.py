"""`echomask round-trip` (issue 16): the stage-1 round trip of the test split, with stub tokenizers of known behaviour
and through the command line on a real tiny checkpoint."""
from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pytest
import torch

from echomask.cli import main as echomask_main
from echomask.metrics.motion_statistics import ARM_JOINTS
from echomask.motion.parts import CONTACT_DIM, NUM_EXPRESSIONS, POSE_DIM, smplx_to_whole_body
from echomask.round_trip import round_trip, round_trip_table

FRAMES = 64


def swinging_arms(seq_id: str, frames: int = FRAMES) -> dict:
    """A sequence whose arms swing (0.3 rad amplitude about x) and whose expressions change; the rest stands still."""
    poses = torch.zeros(frames, POSE_DIM, dtype=torch.float64)
    angle = 0.3 * torch.sin(torch.arange(frames, dtype=torch.float64) * 2 * math.pi / 32)
    for joint in ARM_JOINTS:
        poses[:, 3 * joint] = angle
    motion = smplx_to_whole_body(poses, torch.zeros(frames, 3, dtype=torch.float64),
                                 torch.zeros(frames, CONTACT_DIM, dtype=torch.float64))
    expressions = torch.outer(angle, torch.linspace(-1, 1, NUM_EXPRESSIONS, dtype=torch.float64))
    return {"motion": motion.float(), "expressions": expressions.float(), "id": seq_id}


class StubTokenizer(torch.nn.Module):
    """Two codes in turn (one RVQ layer of 8); decodes what it last encoded, or (still) its mean over time, or
    (shuffled) its frames in a random order: motion of the right size that does not follow the input."""

    frames_per_token = 4

    def __init__(self, still: bool, shuffled: bool = False):
        super().__init__()
        self.still, self.shuffled = still, shuffled
        self.quantizer = SimpleNamespace(codebook_size=8)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        self.encoded = x
        return (torch.arange(x.shape[1] // self.frames_per_token) % 2).view(1, -1, 1)

    def decode(self, indices: torch.Tensor) -> torch.Tensor:
        if self.shuffled:
            return self.encoded[:, torch.randperm(self.encoded.shape[1], generator=torch.Generator().manual_seed(0))]
        return self.encoded.mean(dim=1, keepdim=True).expand_as(self.encoded) if self.still else self.encoded


def test_a_faithful_tokenizer_keeps_the_motion_and_a_still_one_loses_it():
    sequences = [swinging_arms("a"), swinging_arms("b", frames=FRAMES + 3)]  # 3 frames past the last token dropped
    faithful = round_trip({"upper": StubTokenizer(still=False), "face": StubTokenizer(still=False)}, sequences)
    motion = faithful["motion"]
    assert motion["frames"] == 2 * FRAMES
    assert motion["arms_speed_gt"] > 0.01 and motion["expression_std_gt"] > 0.1
    for name in ("arms_speed", "expression_std"):
        assert motion[f"{name}_ratio"] == pytest.approx(1.0, abs=1e-4)
        assert faithful["tracking"][name] == pytest.approx(1.0, abs=1e-4)
    assert faithful["codes"]["upper"]["layer_0"] == {"distinct": 2, "perplexity": pytest.approx(2.0), "mode_share": 0.5}
    assert faithful["codebook_size"] == {"upper": 8, "face": 8}

    still_report = round_trip({"upper": StubTokenizer(still=True)}, sequences)
    still = still_report["motion"]
    assert still["arms_speed_ratio"] < 1e-3 and still_report["tracking"] == {"arms_speed": pytest.approx(0.0, abs=1e-6)}
    assert still["expression_std_ratio"] == pytest.approx(1.0)  # the face is not round-tripped: ground truth

    shuffled = round_trip({"upper": StubTokenizer(still=False, shuffled=True)}, sequences)
    assert shuffled["motion"]["arms_speed_ratio"] > 1.0  # it moves (more, and jerkily) ...
    assert abs(shuffled["tracking"]["arms_speed"]) < 0.3  # ... but not with the ground truth

    table = round_trip_table(round_trip({"upper": StubTokenizer(still=True)}, sequences))
    assert "arms_speed" in table and "2 of 8" in table and "expression_std" not in table


def test_unknown_parts_and_short_sequences_are_rejected():
    with pytest.raises(ValueError, match="keyed by some of"):
        round_trip({"tail": StubTokenizer(still=False)}, [swinging_arms("a")])
    with pytest.raises(ValueError, match="shorter than one token"):
        round_trip({"upper": StubTokenizer(still=False)}, [swinging_arms("a", frames=3)])


@pytest.mark.e2e
def test_round_trip_command_on_a_trained_checkpoint(stage1_checkpoints, synthetic_corpus, tmp_path, capsys):
    report_path = tmp_path / "round_trip.json"
    arguments = [
        "round-trip", str(stage1_checkpoints["upper"]), str(stage1_checkpoints["face"]),
        "--data-root", str(synthetic_corpus), "--cache-dir", str(tmp_path / "cache"), "--json", str(report_path),
    ]
    assert echomask_main(arguments) == 0
    printed = capsys.readouterr().out
    assert "arms_speed" in printed and "expression_std" in printed and "perplexity" in printed and "tracking" in printed
    report = json.loads(report_path.read_text())
    assert sorted(report["codes"]) == ["face", "upper"] and len(report["codes"]["upper"]) == 2  # 2 RVQ layers
    assert math.isfinite(report["motion"]["arms_speed_ratio"]) and report["motion"]["arms_speed_ratio"] >= 0
    assert report["per_sequence"]
    assert sorted(report["tracking"]) == ["arms_speed", "expression_std", "jaw_speed"]
