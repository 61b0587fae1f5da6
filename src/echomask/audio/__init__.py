"""Audio: file reading, low-level features at 30 fps, HuBERT speech features and their on-disk cache (SPEC §4.4).

`HubertFeatures` lives in `echomask.audio.hubert` and is not imported here, so that reading audio does not pay
for importing transformers.
"""
from echomask.audio.cache import FeatureCache, FeatureCacheWarning
from echomask.audio.features import MOTION_FPS, amplitude_envelope, onset_strength, onset_times
from echomask.audio.io import SAMPLE_RATE, AudioError, load_audio, write_audio

__all__ = [
    "SAMPLE_RATE",
    "MOTION_FPS",
    "AudioError",
    "load_audio",
    "write_audio",
    "amplitude_envelope",
    "onset_strength",
    "onset_times",
    "FeatureCache",
    "FeatureCacheWarning",
]
