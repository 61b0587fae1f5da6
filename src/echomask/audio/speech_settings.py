"""`SpeechSettings`: the five settings that say how speech becomes features (SPEC §4.4), as one object.

The data module computes (and caches) the features with them, the generator module records them so that a
checkpoint can compute the same features for new audio (`echomask generate`), and the ablation script rebuilds a
trained model's test data with them. In a config they are one mapping, set once under the data module and
interpolated into the model::

    data:
      init_args:
        speech: {hubert: signal, feature_dim: 64}
    model:
      init_args:
        speech: ${data.init_args.speech}

Checkpoints store them as a plain dict (:meth:`SpeechSettings.as_dict`), which `torch.load(weights_only=True)`
reads; :meth:`SpeechSettings.of` takes either form back.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields

from echomask.audio.features import MOTION_FPS


@dataclass(frozen=True)
class SpeechSettings:
    """How speech becomes the generator's features.

    Args:
        hubert: "tiny-random", a local HuBERT folder, a hub name already in the local cache, or "signal" (no
            HuBERT: log-mel, envelope and onset features, `echomask.audio.signal_features`; the synthetic demo).
        hubert_low_layer: index of the low-level hidden state (paper: 11).
        hubert_high_layer: index of the high-level hidden state (None: the last, the paper's).
        feature_dim: projected speech feature size (paper: 1024 -> 256).
        projection_seed: seed of the fixed orthonormal projection.
    """

    hubert: str = "tiny-random"
    hubert_low_layer: int = 11
    hubert_high_layer: int | None = None
    feature_dim: int = 256
    projection_seed: int = 0

    @classmethod
    def of(cls, settings: SpeechSettings | Mapping | None) -> SpeechSettings:
        """``settings`` as a `SpeechSettings` (a mapping is checked for unknown names; None: the defaults)."""
        if settings is None:
            return cls()
        if isinstance(settings, cls):
            return settings
        if not isinstance(settings, Mapping):
            raise ValueError(f"speech settings must be a mapping of {cls.names()}, got {type(settings).__name__}")
        unknown = sorted(set(settings) - set(cls.names()))
        if unknown:
            raise ValueError(f"speech settings: unknown name(s) {unknown}; known: {list(cls.names())}")
        return cls(**settings)

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(field.name for field in fields(cls))

    def as_dict(self) -> dict:
        """The settings as a plain dict (what checkpoints and hparams hold)."""
        return asdict(self)

    def differences(self, other: SpeechSettings) -> dict[str, tuple]:
        """name -> (this value, the other's) for every setting the two disagree on."""
        return {
            name: (getattr(self, name), getattr(other, name))
            for name in self.names()
            if getattr(self, name) != getattr(other, name)
        }

    def extractor(self, fps: float = MOTION_FPS, progress: bool = False, precision: str = "auto"):
        """The feature extractor these settings name (`echomask.audio.signal_features.speech_features`), HuBERT at
        ``precision`` (default auto: `echomask.precision`); imported here because HuBERT pulls in transformers."""
        from echomask.audio.signal_features import speech_features

        return speech_features(
            self.hubert,
            self.hubert_low_layer,
            self.hubert_high_layer,
            self.feature_dim,
            self.projection_seed,
            fps=fps,
            progress=progress,
            precision=precision,
        )
