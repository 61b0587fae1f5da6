"""`echomask generate` end to end (SPEC §6.6): any audio file -> BEAT2/SMPL-X npz and an mp4 with the audio.

The generator checkpoint is the session's `echomask fit` of the tiny configs for one step (`generator_fit` in
tests/conftest.py: random-ish weights): these tests check the plumbing (lengths, file formats, streams, errors),
not the quality of the motion.
"""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest
import soundfile
import torch

from echomask.cli import main as echomask_main
from echomask.data.beat2 import read_motion
from echomask.inference import SMPLX_NPZ_KEYS

pytestmark = pytest.mark.e2e
FPS = 30  # SPEC §4.1: motion frame rate
# bf16 vs fp32 `generate` of the one-step test checkpoint (stage-1 decoding in fp32 in both): per frame, the largest
# axis-angle difference had median 7e-5 and maximum 2e-4 rad; a code flipped by bf16 rounding (near-tied logits)
# would move a few frames by more, so a small share of frames may lie outside the tolerance
BF16_POSE_TOLERANCE = 0.01  # radians
BF16_AGREEING_FRAMES = 0.9  # the least share of frames whose every entry is within BF16_POSE_TOLERANCE
NPZ_DTYPES = {"poses": np.float32, "trans": np.float64, "expressions": np.float64, "betas": np.float32}


@pytest.fixture(scope="module")
def checkpoint(generator_fit) -> Path:
    return generator_fit.checkpoint


def audio_seconds(path: Path) -> float:
    info = soundfile.info(str(path))
    return info.frames / info.samplerate


def probe(path: Path) -> str:
    """The stream listing `ffmpeg -i` prints on stderr."""
    ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    return subprocess.run([ffmpeg, "-hide_banner", "-i", str(path)], capture_output=True, text=True).stderr


def probed_seconds(listing: str) -> float:
    hours, minutes, seconds = re.search(r"Duration: (\d+):(\d+):([\d.]+)", listing).groups()
    return 3600 * int(hours) + 60 * int(minutes) + float(seconds)


def run_generate(capsys, *arguments: str) -> tuple[int, str, str]:
    status = echomask_main(["generate", *arguments])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def real_time_factor(stdout: str) -> float:
    return float(re.search(r"real-time factor ([\d.]+)x", stdout).group(1))


def check_outputs(out: Path, audio: Path, video: bool) -> None:
    seconds = audio_seconds(audio)
    motion = read_motion(out / f"{audio.stem}.npz")
    assert len(motion["poses"]) == int(seconds * FPS)
    assert motion["trans"].shape == (int(seconds * FPS), 3) and motion["expressions"].shape[0] == int(seconds * FPS)
    with np.load(out / f"{audio.stem}.npz") as archive:
        assert sorted(archive.files) == sorted(SMPLX_NPZ_KEYS)
        for key, dtype in NPZ_DTYPES.items():
            assert archive[key].dtype == dtype, key
        assert int(archive["mocap_frame_rate"]) == FPS
    mp4 = out / f"{audio.stem}.mp4"
    if not video:
        assert not mp4.exists()
        return
    listing = probe(mp4)
    assert re.search(r"Stream #0:\d.*: Video", listing), listing
    assert re.search(r"Stream #0:\d.*: Audio", listing), listing
    assert probed_seconds(listing) == pytest.approx(seconds, abs=0.15)


def test_speech_wav_gives_a_readable_npz_and_a_video_with_sound(checkpoint, speech_wav, tmp_path, capsys):
    audio = speech_wav(tmp_path / "talk.wav", seconds=3.0)
    status, stdout, _ = run_generate(capsys, "--audio", str(audio), "--ckpt", str(checkpoint), "--out", str(tmp_path))
    assert status == 0
    check_outputs(tmp_path, audio, video=True)
    assert real_time_factor(stdout) > 0


def test_real_mp3_in_wav_recording(checkpoint, shared_dir, tmp_path, capsys):
    real_audio = shared_dir / "audio" / "speech_44k_stereo_mp3.wav"
    arguments = ["--audio", str(real_audio), "--ckpt", str(checkpoint), "--out", str(tmp_path)]
    status, stdout, _ = run_generate(capsys, *arguments)
    assert status == 0
    check_outputs(tmp_path, real_audio, video=True)
    assert real_time_factor(stdout) > 0
    print(stdout)  # the timings, shown with `pytest -s`


def test_no_video_writes_the_npz_only(checkpoint, speech_wav, tmp_path, capsys):
    audio = speech_wav(tmp_path / "talk.wav", seconds=2.0)
    arguments = ["--audio", str(audio), "--ckpt", str(checkpoint), "--out", str(tmp_path), "--no-video"]
    status, stdout, _ = run_generate(capsys, *arguments)
    assert status == 0
    check_outputs(tmp_path, audio, video=False)
    assert "video:" not in stdout


def test_seed_pose_npz_starts_the_motion(checkpoint, synthetic_corpus, speech_wav, tmp_path, capsys):
    seed_file = sorted(Path(synthetic_corpus).rglob("*.npz"))[0]
    audio = speech_wav(tmp_path / "talk.wav", seconds=2.0)
    arguments = ["--audio", str(audio), "--ckpt", str(checkpoint), "--out", str(tmp_path), "--no-video"]
    status, _, _ = run_generate(capsys, *arguments, "--seed-pose", str(seed_file))
    assert status == 0
    check_outputs(tmp_path, audio, video=False)
    generated, seed = read_motion(tmp_path / "talk.npz"), read_motion(seed_file)
    # the global-translation model integrates x/z from the seed's first frame (the neutral seed's is 0, 0)
    assert np.abs(seed["trans"][0, [0, 2]]).max() > 0.01
    np.testing.assert_allclose(generated["trans"][0, [0, 2]], seed["trans"][0, [0, 2]], atol=1e-5)


@pytest.mark.parametrize("speaker", ["0", "too many"])
def test_speaker_out_of_range_is_a_one_line_error(checkpoint, speech_wav, tmp_path, capsys, speaker):
    num_speakers = torch.load(checkpoint, map_location="cpu", weights_only=False)["hyper_parameters"]["num_speakers"]
    speaker = str(num_speakers + 1) if speaker == "too many" else speaker
    audio = speech_wav(tmp_path / "talk.wav", seconds=2.0)
    arguments = ["--audio", str(audio), "--ckpt", str(checkpoint), "--out", str(tmp_path), "--speaker", speaker]
    status, _, stderr = run_generate(capsys, *arguments)
    assert status == 2
    errors = [line for line in stderr.splitlines() if line.startswith("echomask generate: error:")]
    assert len(errors) == 1 and f"1..{num_speakers}" in errors[0] and speaker in errors[0]
    assert "Traceback" not in stderr
    assert not list(tmp_path.glob("talk.np*")) and not list(tmp_path.glob("talk.mp4"))


def test_long_audio_is_covered_to_the_last_frame(checkpoint, speech_wav, tmp_path, capsys):
    audio = speech_wav(tmp_path / "long.wav", seconds=70.3)  # 2109 frames: 35 windows of stride 60, cropped
    arguments = ["--audio", str(audio), "--ckpt", str(checkpoint), "--out", str(tmp_path), "--no-video"]
    status, _, _ = run_generate(capsys, *arguments)
    assert status == 0
    check_outputs(tmp_path, audio, video=False)
    motion = read_motion(tmp_path / "long.npz")
    assert np.isfinite(motion["poses"]).all()


def test_fp32_and_bf16_generation_both_run_and_agree(checkpoint, speech_wav, tmp_path, capsys, caplog):
    """`--precision 32-true` forces fp32 and `--precision bf16-mixed` runs the windows under bf16 autocast (what
    `auto` picks on a CPU with AMX); both write the same kind of npz, and the motion agrees (the
    checkpoint's argmax codes may flip where two logits are within bf16's rounding, so the check is on the share of
    frames, not every frame)."""
    audio = speech_wav(tmp_path / "talk.wav", seconds=2.0)
    poses = {}
    for precision in ("32-true", "bf16-mixed"):
        out = tmp_path / precision
        arguments = ["--audio", str(audio), "--ckpt", str(checkpoint), "--out", str(out), "--no-video"]
        with caplog.at_level("INFO", logger="echomask.generate"):
            status, _, _ = run_generate(capsys, *arguments, "--precision", precision)
        assert status == 0
        assert f"precision {precision} -> {precision}" in caplog.text
        check_outputs(out, audio, video=False)
        poses[precision] = read_motion(out / "talk.npz")["poses"]
    difference = np.abs(poses["32-true"] - poses["bf16-mixed"]).max(axis=1)
    close = difference < BF16_POSE_TOLERANCE
    assert close.mean() >= BF16_AGREEING_FRAMES, close.mean()
