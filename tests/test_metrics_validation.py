"""Argument and input validation of the metrics, the FGD encoder path, and the paper display helpers."""
import numpy as np
import pytest
import torch
from einops import reduce
from torch import nn

from echomask.metrics import (
    FACE_LABEL_PARAMETERS,
    PAPER_SCALE,
    BeatConsistency,
    FaceLVDPaper,
    FaceVelocityError,
    FaceVertexMSE,
    FrechetGestureDistance,
    L1Diversity,
    format_table,
    to_paper_scale,
)
from echomask.metrics.frechet import frechet_distance

MEAN_SPEED = np.full(55, 0.05)


class WindowMeanEncoder(nn.Module):
    """A stand-in FGD encoder: the mean of every 16 frames, projected to ``dim`` features."""

    def __init__(self, dim: int = 8) -> None:
        super().__init__()
        self.projection = nn.Linear(330, dim, dtype=torch.float64)
        self.dropout = nn.Dropout(0.5)  # would change the features if the metric let the encoder train

    def forward(self, motion: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.projection(reduce(motion, "b (w f) c -> b w c", "mean", f=16)))


# ------------------------------------------------------------------------------------------------------- FGD


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"feature_dim": 0}, "feature_dim"),
        ({"feature_dim": "240"}, "feature_dim"),
        ({"protocol": "emage"}, "protocol must be one of"),
        ({"encoder": "AESKConv"}, "encoder must be a torch.nn.Module"),
        ({"encoder_name": ""}, "encoder_name"),
        ({"crop_multiple": 0}, "crop_multiple"),
    ],
)
def test_fgd_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        FrechetGestureDistance(**kwargs)


def test_fgd_refuses_fewer_than_two_samples_per_set():
    fgd = FrechetGestureDistance(feature_dim=4)
    fgd.update(torch.randn(1, 4), real=True)
    fgd.update(torch.randn(5, 4), real=False)
    with pytest.raises(ValueError, match="at least 2 feature vectors per set.*got 1 real and 5 generated"):
        fgd.compute()


def test_fgd_input_checks():
    fgd = FrechetGestureDistance(feature_dim=4)
    with pytest.raises(ValueError, match=r"expected features of shape \(N, 4\), got \(3, 5\)"):
        fgd.update(torch.randn(3, 5), real=True)
    with pytest.raises(ValueError, match="NaN"):
        fgd.update(torch.tensor([[0.0, float("nan"), 0.0, 0.0]]), real=True)
    with pytest.raises(ValueError, match="real must be a bool"):
        fgd.update(torch.randn(3, 4), real=1)


def test_fgd_encoder_input_checks():
    fgd = FrechetGestureDistance(feature_dim=8, encoder=WindowMeanEncoder())
    with pytest.raises(ValueError, match=r"expected motion of shape \(B, T, 330\), got \(2, 64, 329\)"):
        fgd.update(torch.randn(2, 64, 329, dtype=torch.float64), real=True)
    with pytest.raises(ValueError, match="31 frames are fewer than the 32"):
        fgd.update(torch.randn(2, 31, 330, dtype=torch.float64), real=True)
    wrong_dim = FrechetGestureDistance(feature_dim=9, encoder=WindowMeanEncoder(dim=8))
    with pytest.raises(ValueError, match=r"encoder returned shape \(1, 2, 8\), expected \(B, T / 16, 9\)"):
        wrong_dim.update(torch.randn(1, 32, 330, dtype=torch.float64), real=True)


def test_fgd_encoder_crops_to_a_multiple_of_32_and_uses_every_latent():
    encoder = WindowMeanEncoder()
    fgd = FrechetGestureDistance(feature_dim=8, encoder=encoder, encoder_name="window-mean")
    fgd.train()  # a LightningModule's .train() reaches the metric; the encoder must stay frozen
    assert not encoder.training
    motion = torch.randn(3, 70, 330, dtype=torch.float64)
    fgd.update(motion, real=True)
    with torch.no_grad():
        expected = encoder(motion[:, :64]).reshape(-1, 8)  # 70 frames -> 64 -> 4 latents per sequence
    assert int(fgd.real_count) == 12
    torch.testing.assert_close(fgd.real_sum, expected.sum(0))
    torch.testing.assert_close(fgd.real_outer_sum, expected.T @ expected)
    assert fgd.describe() == {"encoder_name": "window-mean", "protocol": "paper", "feature_dim": 8}


def test_frechet_distance_paper_rule_refuses_a_complex_square_root():
    identity = np.eye(2)
    not_a_covariance = np.diag([-1.0, 1.0])  # the product has a negative eigenvalue: sqrtm is imaginary
    with pytest.raises(ValueError, match="imaginary diagonal parts up to 1"):
        frechet_distance(np.zeros(2), identity, np.zeros(2), not_a_covariance, protocol="paper")
    clean = frechet_distance(np.zeros(2), identity, np.zeros(2), not_a_covariance, protocol="clean")
    assert np.isfinite(clean)
    with pytest.raises(ValueError, match="protocol must be one of"):
        frechet_distance(np.zeros(2), identity, np.zeros(2), identity, protocol="new")


# -------------------------------------------------------------------------------------------------------- BC


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"protocol": "old"}, "protocol must be one of"),
        ({"joint_mean_speed": np.ones(54)}, r"joint_mean_speed must have shape \(55,\), got \(54,\)"),
        ({"joint_mean_speed": np.zeros(55)}, "finite and positive"),
        ({"threshold": -0.3}, "threshold must be a finite positive number"),
        ({"sigma": 0.0}, "sigma must be a finite positive number"),
        ({"order": 0}, "order must be a positive integer"),
        ({"hop_length": 512.0}, "hop_length must be a positive integer"),
        ({"trim_frames": -1}, "trim_frames must be a non-negative integer"),
        ({"audio_skip_s": float("nan")}, "audio_skip_s"),
        ({"upper_body": (3, 6, 60)}, r"upper_body must be distinct joint indices in \[0, 55\)"),
    ],
)
def test_bc_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        BeatConsistency(**{"joint_mean_speed": MEAN_SPEED, **kwargs})


def test_bc_protocol_thresholds():
    assert BeatConsistency(joint_mean_speed=MEAN_SPEED).threshold == 0.3
    assert BeatConsistency(joint_mean_speed=MEAN_SPEED, protocol="clean").threshold == 0.10
    assert BeatConsistency(joint_mean_speed=MEAN_SPEED, threshold=0.10).threshold == 0.10


def test_bc_input_checks():
    bc = BeatConsistency(joint_mean_speed=MEAN_SPEED)
    audio = np.zeros(16000 * 8, dtype=np.float32)
    with pytest.raises(ValueError, match=r"joints must have shape \(T, 55, 3\), got \(200, 165\)"):
        bc.update(torch.zeros(200, 165), audio)
    with pytest.raises(ValueError, match="120 frames is too short.*needs more than 120"):
        bc.update(torch.zeros(120, 55, 3), audio)
    with pytest.raises(ValueError, match=r"audio must have shape \(N,\)"):
        bc.update(torch.zeros(200, 55, 3), audio[None])
    nan_joints = torch.zeros(200, 55, 3)
    nan_joints[5, 3, 1] = float("nan")
    with pytest.raises(ValueError, match="joints contain NaN"):
        bc.update(nan_joints, audio)
    with pytest.raises(ValueError, match="audio contains NaN"):
        bc.update(torch.zeros(200, 55, 3), np.full(16000, np.nan))
    with pytest.raises(ValueError, match="list of as many audio tracks"):
        bc.update([torch.zeros(200, 55, 3)] * 2, [audio])
    with pytest.raises(ValueError, match="no sequence was added"):
        bc.compute()


def test_bc_reports_silent_and_too_short_audio():
    joints = torch.from_numpy(np.random.default_rng(0).normal(size=(200, 55, 3)).astype(np.float32))
    with pytest.raises(ValueError, match="no audio onsets"):
        BeatConsistency(joint_mean_speed=MEAN_SPEED).update(joints, np.zeros(16000 * 8, dtype=np.float32))
    with pytest.raises(ValueError, match="scored audio slice is empty"):
        BeatConsistency(joint_mean_speed=MEAN_SPEED, protocol="clean").update(joints, np.ones(16000, dtype=np.float32))


# ----------------------------------------------------------------------------------------------------- L1div


def test_l1div_input_checks():
    div = L1Diversity()
    with pytest.raises(ValueError, match="no frames were added"):
        div.compute()
    with pytest.raises(ValueError, match=r"\(T, 55, 3\) or \(T, 165\).*got \(10, 54, 3\)"):
        div.update(torch.zeros(10, 54, 3))
    with pytest.raises(ValueError, match="NaN"):
        div.update(torch.full((10, 165), float("nan")))
    with pytest.raises(ValueError, match="torch tensors"):
        div.update(np.zeros((10, 165)))


# ------------------------------------------------------------------------------------------------------ face


@pytest.mark.parametrize("metric_class", [FaceVertexMSE, FaceLVDPaper, FaceVelocityError])
def test_face_input_checks(metric_class):
    metric = metric_class(label=FACE_LABEL_PARAMETERS)
    assert metric.label == FACE_LABEL_PARAMETERS
    with pytest.raises(ValueError, match="no sequence was added"):
        metric.compute()
    with pytest.raises(ValueError, match=r"same shape, got \(10, 30\) and \(10, 33\)"):
        metric.update(torch.zeros(10, 30), torch.zeros(10, 33))
    with pytest.raises(ValueError, match=r"rec must have shape \(T, V\*3\) or \(T, V, 3\)"):
        metric.update(torch.zeros(10, 4, 4, 3), torch.zeros(10, 4, 4, 3))
    with pytest.raises(ValueError, match="tar contains NaN"):
        metric.update(torch.zeros(10, 30), torch.full((10, 30), float("nan")))
    with pytest.raises(ValueError, match="label must be a non-empty string"):
        metric_class(label="")


@pytest.mark.parametrize("metric_class", [FaceLVDPaper, FaceVelocityError])
def test_face_velocity_metrics_need_two_frames(metric_class):
    with pytest.raises(ValueError, match="T >= 2, got \\(1, 30\\)"):
        metric_class().update(torch.zeros(1, 30), torch.zeros(1, 30))


def test_face_mse_rejects_an_unknown_protocol():
    with pytest.raises(ValueError, match="protocol must be one of"):
        FaceVertexMSE(protocol="new")


# --------------------------------------------------------------------------------------------------- display


def test_to_paper_scale_multiplies_only_the_metric_entries():
    raw = {"fgd": torch.tensor(0.5514, dtype=torch.float64), "bc": 0.7, "face_mse": 5.4e-8, "protocol": "paper"}
    scaled = to_paper_scale(raw)
    assert scaled["fgd"] == pytest.approx(5.514)  # SPEC §8.1: header says ×10⁻¹, the value printed is raw × 10
    assert scaled["bc"] == pytest.approx(7.0)
    assert scaled["face_mse"] == pytest.approx(5.4)
    assert scaled["protocol"] == "paper"
    assert raw["bc"] == 0.7  # the input is not modified
    assert set(PAPER_SCALE) >= {"fgd", "bc", "l1div", "face_mse", "face_lvd_paper", "face_velocity_error"}


def test_format_table_shows_paper_scaled_values_and_provenance():
    rows = [
        {"name": "GT", "bc": 0.7, "l1div": 12.5},
        {"name": "ours", "fgd": 0.5514, "bc": 0.78, "protocol": "paper", "fgd_encoder": "AESKConv_240_100"},
    ]
    table = format_table(rows)
    lines = table.splitlines()
    assert "FGD ×10⁻¹" in lines[0] and "BC ×10⁻¹" in lines[0] and "MSE" not in lines[0]
    assert lines[2].split("|")[1].strip() == "–"  # GT has no FGD
    assert "5.514" in lines[3] and "7.800" in lines[3]
    assert lines[-1] == "ours: protocol=paper, fgd_encoder=AESKConv_240_100"
    with pytest.raises(ValueError, match="no rows"):
        format_table([])
    with pytest.raises(ValueError, match="row 0 has no 'name'"):
        format_table([{"fgd": 1.0}])
