"""The released EchoMask generator's state-dict keys (class ``echomask`` in ``models/echomask.py``) mapped onto
:class:`~echomask.models.masked_generator.MaskedGenerator`.

Three kinds of release keys:

- live weights: renamed by the rules in ``RULES`` (e.g. ``predict_res_face.cross_attn_2.layers.0.linear1.weight``
  -> ``heads.face.decoders.1.layers.0.linear1.weight``); two are reshaped (the mask embedding and the MAM
  queries are stored as (1, 1, D), ours are (D,));
- weights no forward pass or loss of the release reaches (``DEAD_PREFIXES``: ``wordhints_decoder``, the
  ``nn.TransformerDecoder`` template layers, ``hubert_encoder*``, the cons MLPs, ``joint_dim_reducer``, …,
  84.85 M parameters at paper size): dropped, since we never build them;
- deterministic buffers (the positional-encoding tables): dropped, our modules rebuild them.

The release's MAM match classifiers are live (their positive-only loss is part of its ``loss_moau``); a model
built without them (``mam_match_classifier=False``, our default) drops them, and the report says so.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
from torch import nn

from echomask.models.masked_generator import PARTS

PART_PATTERN = "(face|upper|hands|lower)"
BODY_PATTERN = "(upper|hands|lower)"

DEAD_PREFIXES = (
    "wordhints_decoder.",  # built, never called
    "transformer_de_layer.",  # templates that nn.TransformerDecoder/Encoder deep-copy
    "transformer_de_fu_layer.",
    "transformer_en_layer.",
    "MAM.transformer_en_layer.",
    "MAM.transformer_de_layer.",
    *(f"predict_res_{part}.cross_layer." for part in PARTS),
    "hubert_encoder.",  # commented out in the release's forward
    "hubert_encoder_body.",
    "face_cons_mlp.",
    "hands_cons_mlp.",
    "audio_pre_encoder_face.",
    "audio_pre_encoder_body.",
    "at_attn_face.",
    "at_attn_body.",
    "joint_dim_reducer.",
)
BUFFER_KEYS = ("position_embeddings.pe", "MAM.position_embeddings.pe", "MAM.position_embeddings_hubert.pe")
MATCH_CLASSIFIER = re.compile(rf"MAM\.match_{PART_PATTERN}_classifier\.")
RESHAPED = re.compile(rf"mask_embeddings|MAM\.moau_query_{PART_PATTERN}")  # (1, 1, D) in the release, (D,) here

# the sub-modules of a release MyTransformerDecoderLayer (an nn.TransformerDecoderLayer); ours have the same names
SQA_LAYER_MODULES = "(?:self_attn|multihead_attn|linear1|linear2|norm1|norm2|norm3)"


def _fixed(target: str) -> Callable[[re.Match], str]:
    """A rule whose target is a template of the pattern's groups: ``{1}``, ``{2}``, …"""
    return lambda match: target.format(*match.groups())


def _motion_encoder(match: re.Match) -> str:
    # the release's VQEncoderV6.main = [conv, LeakyReLU, ResBlock] × blocks
    index, rest = int(match[1]), match[2]
    block, slot = divmod(index, 3)
    if slot == 0:
        return f"motion_encoder.blocks.{block}.conv.{rest}"
    inner = re.fullmatch(r"model\.(\d+)\.(.+)", rest)
    if slot == 2 and inner:
        return f"motion_encoder.blocks.{block}.residual.{inner[1]}.{inner[2]}"
    raise KeyError(match[0])


def _code_head(match: re.Match) -> str:
    part, kind, number, rest = match.groups()
    number = int(number)
    module, index = {
        "classfier_": ("classifiers", number),
        "cross_attn_": ("decoders", number - 1),
        "map_zq": ("merges", number - 2),
    }[kind]
    rest = rest.removeprefix("mlp.") if module == "classifiers" else rest
    return f"heads.{part}.{module}.{index}.{rest}"


def _mam_encoder(match: re.Match) -> str:
    part, number, rest = match.groups()  # the release numbers E1, E2, E3 from 1
    return f"mam.branches.{part}.encoders.{int(number) - 1}.{rest}"


RULES: tuple[tuple[re.Pattern, Callable[[re.Match], str]], ...] = tuple(
    (re.compile(pattern), target if callable(target) else _fixed(target))
    for pattern, target in (
        (r"mask_embeddings", "mask_embedding"),
        (r"motion_encoder\.main\.(\d+)\.(.+)", _motion_encoder),
        (r"spearker_encoder_face\.weight", "speaker_face.weight"),
        (r"spearker_encoder_body\.weight", "speaker_body.weight"),
        (r"bodyhints_face\.mlp\.(.+)", "face.hint_mlp.{0}"),
        (r"feature2face\.(.+)", "face.memory_projection.{0}"),
        (r"face_decoder\.(.+)", "face.decoder.{0}"),
        (r"face2latent\.(.+)", "face.to_latent.{0}"),
        (r"face1d\.(.+)", "face.downsample_1.conv.{0}"),
        (r"face_latent_mlp\.mlp\.(.+)", "face.latent_mlp.{0}"),
        (r"face1d_2\.(.+)", "face.downsample_2.conv.{0}"),
        (r"bodyhints_body\.mlp\.(.+)", "body.hint_mlp.{0}"),
        (r"feature2motion\.(.+)", "body.to_hidden.{0}"),
        (r"motion_self_encoder\.(.+)", "body.encoder.{0}"),
        (r"body1d\.(.+)", "body.downsample.conv.{0}"),
        (r"spearker_encoder_body1d\.(.+)", "body.speaker_downsample.conv.{0}"),
        (rf"motion2latent_{BODY_PATTERN}\.mlp\.(.+)", "body.parts.{0}.input_mlp.{1}"),
        (rf"{BODY_PATTERN}_decoder\.(.+)", "body.parts.{0}.decoder.{1}"),
        (rf"motion_down_{BODY_PATTERN}\.(.+)", "body.parts.{0}.to_latent.{1}"),
        (rf"{BODY_PATTERN}1d\.(.+)", "body.parts.{0}.downsample.conv.{1}"),
        (rf"audio_feature2motion_{BODY_PATTERN}\.(.+)", "sqa.query_projections.{0}.{1}"),
        (r"mask_generator\.fusion_weights", "sqa.part_weights"),
        (
            rf"mask_generator\.shared_transformer_decoder\.layers\.(\d+)\.({SQA_LAYER_MODULES}\..+)",
            "sqa.decoder.layers.{0}.{1}",
        ),
        (r"hands_face_decoder\.(.+)", "fusion.decoders.hands.{0}"),
        (r"face_hands_decoder\.(.+)", "fusion.decoders.face.{0}"),
        (r"upper_hands_decoder\.(.+)", "fusion.decoders.upper.{0}"),
        (r"lower_hands_decoder\.(.+)", "fusion.decoders.lower.{0}"),
        (rf"{PART_PATTERN}_classifier\.mlp\.(.+)", "heads.{0}.classifiers.0.{1}"),
        (rf"predict_res_{PART_PATTERN}\.(classfier_|cross_attn_|map_zq)(\d+)\.(.+)", _code_head),
        (rf"MAM\.moau_query_{PART_PATTERN}", "mam.branches.{0}.query"),
        (rf"MAM\.motion_encoder_{PART_PATTERN}_([123])\.(.+)", _mam_encoder),
        (rf"MAM\.{PART_PATTERN}_decoder_low\.(.+)", "mam.branches.{0}.attend_low.{1}"),
        (rf"MAM\.{PART_PATTERN}_decoder_high\.(.+)", "mam.branches.{0}.attend_high.{1}"),
        (rf"MAM\.predict_motion_{PART_PATTERN}\.mlp\.(.+)", "mam.branches.{0}.speech_to_motion.{1}"),
        (rf"MAM\.match_{PART_PATTERN}_classifier\.mlp\.(.+)", "mam.branches.{0}.match_classifier.{1}"),
    )
)


def is_dead_release_key(key: str) -> bool:
    """Whether a release key belongs to a module that no forward pass or loss of the release reaches."""
    return key.startswith(DEAD_PREFIXES)


def our_key(release_key: str) -> str:
    """Our key for a live release key.

    Raises:
        KeyError: the key matches no rule (not a key of the release's generator).
    """
    for pattern, target in RULES:
        match = pattern.fullmatch(release_key)
        if match:
            try:
                return target(match)
            except KeyError:
                break
    raise KeyError(f"{release_key!r} is not a key of the release's generator (models/echomask.py, class echomask)")


@dataclass
class ConvertedGenerator:
    """state_dict: our keys -> tensors (every persistent entry of the model). dropped: release key -> why it
    was left out."""

    state_dict: dict[str, torch.Tensor]
    dropped: dict[str, str]


def convert_release_generator(release_state: Mapping[str, torch.Tensor], model: nn.Module) -> ConvertedGenerator:
    """Map a release generator state dict onto ``model`` (a :class:`MaskedGenerator` of matching sizes).

    Raises:
        ValueError: a key the rules do not know, a key ``model`` lacks, a shape that differs (the message names
            the key and both shapes), or entries of ``model`` that the release state does not provide.
    """
    ours = model.state_dict()
    converted: dict[str, torch.Tensor] = {}
    dropped: dict[str, str] = {}
    for key, value in release_state.items():
        if is_dead_release_key(key):
            dropped[key] = "never reached by the release's forward passes or losses"
            continue
        if key in BUFFER_KEYS:
            dropped[key] = "deterministic buffer (positional-encoding table), rebuilt by our modules"
            continue
        try:
            target = our_key(key)
        except KeyError as error:
            raise ValueError(f"unexpected key in the release generator state: {error.args[0]}") from None
        if target not in ours:
            if MATCH_CLASSIFIER.match(key):
                dropped[key] = "the model is built without the MAM match classifier (mam_match_classifier false)"
                continue
            raise ValueError(f"release key {key!r} maps to {target!r}, which the model does not have")
        expected = tuple(ours[target].shape)
        reshapeable = RESHAPED.fullmatch(key) and value.numel() == ours[target].numel()
        if tuple(value.shape) != expected and not reshapeable:
            raise ValueError(
                f"shape mismatch for release key {key!r} -> {target!r}: the release has {tuple(value.shape)}, "
                f"the model expects {expected}"
            )
        converted[target] = value.reshape(expected).to(ours[target].dtype)
    missing = [key for key in ours if key not in converted]
    if missing:
        shown = ", ".join(missing[:8]) + (f", … ({len(missing)} in all)" if len(missing) > 8 else "")
        raise ValueError(f"the release generator state does not provide these model entries: {shown}")
    return ConvertedGenerator(state_dict=converted, dropped=dropped)
