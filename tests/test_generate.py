"""`echomask generate` end to end (SPEC §6.6): any audio file -> BEAT2/SMPL-X npz and an mp4 with the audio.

The generator checkpoint is tiny and trained for one step (random-ish weights): these tests check the
plumbing (lengths, file formats, streams, errors), not the quality of the motion.
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
from test_generator_module import make_datamodule, make_module, quiet_trainer, workspace  # noqa: F401 (fixture)

from echomask.cli import main as echomask_main
from echomask.data.beat2 import read_motion
from echomask.inference import SMPLX_NPZ_KEYS

SHARED = Path(__file__).resolve().parents[2] / "shared"
needs_shared = pytest.mark.skipif(not SHARED.exists(), reason="../shared not present")
REAL_AUDIO = SHARED / "audio" / "speech_44k_stereo_mp3.wav"
FPS = 30  # SPEC §4.1: motion frame rate
NPZ_DTYPES = {"poses": np.float32, "trans": np.float64, "expressions": np.float64, "betas": np.float32}


@pytest.fixture(scope="module")
def checkpoint(workspace, tmp_path_factory) -> Path:  # noqa: F811 (the imported fixture)
    """A tiny generator checkpoint after one training step on the synthetic corpus."""
    import lightning.pytorch as pl

    folder = tmp_path_factory.mktemp("generate")
    pl.seed_everything(0)
    module = make_module(workspace, folder)
    trainer = quiet_trainer(folder)
    trainer.fit(module, datamodule=make_datamodule(workspace))
    path = folder / "generator.ckpt"
    trainer.save_checkpoint(path)
    return path


def speech_like_wav(path: Path, seconds: float, sample_rate: int = 44100, seed: int = 0) -> Path:
    """A stereo wav of voiced 'syllables': harmonics of a wandering pitch under a ~4 Hz envelope, plus noise."""
    rng = np.random.default_rng(seed)
    time = np.arange(round(seconds * sample_rate)) / sample_rate
    pitch = 160 + 40 * np.sin(2 * np.pi * 0.7 * time)  # Hz, a speaking voice's range
    phase = 2 * np.pi * np.cumsum(pitch) / sample_rate
    voice = sum(np.sin(k * phase) / k for k in range(1, 8))
    envelope = np.clip(np.sin(2 * np.pi * 4.0 * time), 0, None)  # ~4 syllables per second
    mono = 0.2 * envelope * voice + 0.01 * rng.standard_normal(len(time))
    stereo = np.stack([mono, 0.8 * mono], axis=1)
    soundfile.write(path, stereo.astype(np.float32), sample_rate, subtype="PCM_16")
    return path


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


def test_speech_wav_gives_a_readable_npz_and_a_video_with_sound(checkpoint, tmp_path, capsys):
    audio = speech_like_wav(tmp_path / "talk.wav", seconds=3.0)
    status, stdout, _ = run_generate(capsys, "--audio", str(audio), "--ckpt", str(checkpoint), "--out", str(tmp_path))
    assert status == 0
    check_outputs(tmp_path, audio, video=True)
    assert real_time_factor(stdout) > 0


@needs_shared
def test_real_mp3_in_wav_recording(checkpoint, tmp_path, capsys):
    arguments = ["--audio", str(REAL_AUDIO), "--ckpt", str(checkpoint), "--out", str(tmp_path)]
    status, stdout, _ = run_generate(capsys, *arguments)
    assert status == 0
    check_outputs(tmp_path, REAL_AUDIO, video=True)
    assert real_time_factor(stdout) > 0
    print(stdout)  # the timings, shown with `pytest -s`


def test_no_video_writes_the_npz_only(checkpoint, tmp_path, capsys):
    audio = speech_like_wav(tmp_path / "talk.wav", seconds=2.0)
    arguments = ["--audio", str(audio), "--ckpt", str(checkpoint), "--out", str(tmp_path), "--no-video"]
    status, stdout, _ = run_generate(capsys, *arguments)
    assert status == 0
    check_outputs(tmp_path, audio, video=False)
    assert "video:" not in stdout


def test_seed_pose_npz_starts_the_motion(checkpoint, workspace, tmp_path, capsys):  # noqa: F811
    seed_file = sorted(Path(workspace["corpus"]).rglob("*.npz"))[0]
    audio = speech_like_wav(tmp_path / "talk.wav", seconds=2.0)
    arguments = ["--audio", str(audio), "--ckpt", str(checkpoint), "--out", str(tmp_path), "--no-video"]
    status, _, _ = run_generate(capsys, *arguments, "--seed-pose", str(seed_file))
    assert status == 0
    check_outputs(tmp_path, audio, video=False)
    generated, seed = read_motion(tmp_path / "talk.npz"), read_motion(seed_file)
    # the global-translation model integrates x/z from the seed's first frame (the neutral seed's is 0, 0)
    assert np.abs(seed["trans"][0, [0, 2]]).max() > 0.01
    np.testing.assert_allclose(generated["trans"][0, [0, 2]], seed["trans"][0, [0, 2]], atol=1e-5)


@pytest.mark.parametrize("speaker", ["0", "too many"])
def test_speaker_out_of_range_is_a_one_line_error(checkpoint, tmp_path, capsys, speaker):
    num_speakers = torch.load(checkpoint, map_location="cpu", weights_only=False)["hyper_parameters"]["num_speakers"]
    speaker = str(num_speakers + 1) if speaker == "too many" else speaker
    audio = speech_like_wav(tmp_path / "talk.wav", seconds=2.0)
    arguments = ["--audio", str(audio), "--ckpt", str(checkpoint), "--out", str(tmp_path), "--speaker", speaker]
    status, _, stderr = run_generate(capsys, *arguments)
    assert status == 2
    errors = [line for line in stderr.splitlines() if line.startswith("echomask generate: error:")]
    assert len(errors) == 1 and f"1..{num_speakers}" in errors[0] and speaker in errors[0]
    assert "Traceback" not in stderr
    assert not list(tmp_path.glob("talk.np*")) and not list(tmp_path.glob("talk.mp4"))


def test_long_audio_is_covered_to_the_last_frame(checkpoint, tmp_path, capsys):
    audio = speech_like_wav(tmp_path / "long.wav", seconds=70.3)  # 2109 frames: 35 windows of stride 60, cropped
    arguments = ["--audio", str(audio), "--ckpt", str(checkpoint), "--out", str(tmp_path), "--no-video"]
    status, _, _ = run_generate(capsys, *arguments)
    assert status == 0
    check_outputs(tmp_path, audio, video=False)
    motion = read_motion(tmp_path / "long.npz")
    assert np.isfinite(motion["poses"]).all()
