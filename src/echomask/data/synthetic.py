"""A synthetic BEAT2-format corpus whose motion answers its speech (SPEC §4.6).

BEAT2 cannot be downloaded here, so the demo and the tests train on this corpus instead. It is written
in exactly the BEAT2 layout (SPEC §4.1), so the real reader reads it unchanged::

    <out>/beat_english_v2.0.0/
        smplxflame_30/<id>.npz     poses (T,165) float32, trans (T,3) float64, expressions (T,100) float64,
                                   betas (300,) float32, mocap_frame_rate 30, gender, model
        wave16k/<id>.wav           16 kHz mono, 32-bit float, 0.5–1 s longer than the motion
        textgrid/<id>.TextGrid     Praat long text format, one "words" tier (one word per syllable)
        train_test_split.csv       id,type

Ids follow BEAT2: ``<speaker>_<name>_0_<k>_<k>``, speakers numbered from 1 (1_wayne, 2_scott, ...).

What makes the corpus learnable (every relation is deterministic given the speech plan):

* speech: phrases of voiced syllables (harmonic, formant-shaped, ~4 Hz) separated by pauses; stressed
  syllables are louder, pitched up and start with a plosive (a closure, a burst and a sharp attack), while
  unstressed ones start with a sonorant and glide in from the voicing before them, so that an onset detector
  (librosa's, which the BC metric uses) fires on the stressed syllables and rarely on the others;
* beat gestures: the whole upper body (pelvis, spine, neck, collars, arms) traces one loop per interval
  between stressed-syllable onsets, coming to rest exactly on each stressed onset and slowing down nowhere
  else; loops alternate sides around the hold pose from beat to beat (see "motion: beat loops");
* head nods peak on phrase starts (and, smaller, on stressed syllables);
* jaw opening and the first expression coefficients follow the syllable envelope and vowel shape;
* finger curl opens and closes with each gesture; weight shifts from leg to leg run over one beat interval
  each, feet planted;
* speakers differ in pitch, tempo, gesture amplitude, handedness and posture.

The beat structure is what the beat-consistency metric (SPEC §8.1) measures: on this corpus the ground
truth scores far higher with its own audio than with another recording's (tests/test_synthetic.py).

Every random draw comes from a generator seeded by ``(seed, speaker, sequence)``, so the same seed gives
the same bytes, and adding sequences leaves the existing ones unchanged.
"""

from __future__ import annotations

import logging
import struct
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
from einops import rearrange, reduce, repeat
from scipy.spatial.transform import Rotation
from scipy.special import betainc

from echomask.data.beat2 import (
    AUDIO_DIR_NAME,
    CORPUS_DIR_NAME,
    MOTION_DIR_NAME,
    NUM_BETAS,
    SPLIT_CSV_NAME,
    TEXTGRID_DIR_NAME,
)
from echomask.motion.skeleton import EYE_JOINTS, JAW_JOINT, NUM_JOINTS

logger = logging.getLogger(__name__)

NUM_EXPRESSIONS = 100  # FLAME coefficients in BEAT2 (§4.1)
SPEECH_DRIVEN_EXPRESSIONS = 10  # the first coefficients follow the speech (§4.6)
STANDING_TRANS_Y = 1.30  # metres: BEAT2's trans y for a standing speaker (mean of 2_scott_0_1_1)

# BEAT2's English speakers, in their numbering (speaker k is SPEAKER_NAMES[k - 1]).
SPEAKER_NAMES = ("wayne", "scott", "solomon", "lawrence", "stewart", "carla", "sophie", "catherine", "miranda", "kieks")


# --------------------------------------------------------------------------- speaker styles


@dataclass(frozen=True)
class SpeakerStyle:
    """How one speaker talks and moves."""

    f0_hz: float  # speaking pitch of an unstressed syllable
    syllable_rate_hz: float  # syllables per second inside a phrase (§4.6: about 4 Hz)
    stress_probability: float  # chance that a syllable after the first of a phrase is stressed
    pause_scale: float  # multiplies the pause between phrases
    gesture_amplitude: float  # radians: size of the beat loop of the dominant arm
    dominant_hand: str  # "left" or "right"
    both_hands_probability: float  # chance that the other arm joins a beat
    nod_amplitude: float  # radians: head pitch of a nod at a phrase start
    weight_shift_period_s: float  # mean time between two weight shifts


STYLE_PRESETS = (
    SpeakerStyle(
        f0_hz=115.0,
        syllable_rate_hz=3.6,
        stress_probability=0.32,
        pause_scale=1.2,
        gesture_amplitude=0.34,
        dominant_hand="right",
        both_hands_probability=0.35,
        nod_amplitude=0.08,
        weight_shift_period_s=6.0,
    ),
    SpeakerStyle(
        f0_hz=190.0,
        syllable_rate_hz=4.4,
        stress_probability=0.42,
        pause_scale=0.8,
        gesture_amplitude=0.4,
        dominant_hand="left",
        both_hands_probability=0.55,
        nod_amplitude=0.14,
        weight_shift_period_s=4.0,
    ),
    SpeakerStyle(
        f0_hz=220.0,
        syllable_rate_hz=4.0,
        stress_probability=0.36,
        pause_scale=1.0,
        gesture_amplitude=0.38,
        dominant_hand="right",
        both_hands_probability=0.4,
        nod_amplitude=0.11,
        weight_shift_period_s=5.0,
    ),
    SpeakerStyle(
        f0_hz=140.0,
        syllable_rate_hz=3.8,
        stress_probability=0.38,
        pause_scale=1.0,
        gesture_amplitude=0.46,
        dominant_hand="left",
        both_hands_probability=0.7,
        nod_amplitude=0.07,
        weight_shift_period_s=3.5,
    ),
)


def speaker_style(speaker: int) -> SpeakerStyle:
    """Style of speaker `speaker` (numbered from 1); the presets repeat after the fourth speaker."""
    return STYLE_PRESETS[(speaker - 1) % len(STYLE_PRESETS)]


@dataclass(frozen=True)
class SpeakerIdentity:
    """What stays fixed for one speaker across sequences: body shape, face and posture."""

    betas: np.ndarray  # (300,) float32 SMPL-X shape
    neutral_expression: np.ndarray  # (100,) resting face
    vowel_to_expression: np.ndarray  # (3, 10) how openness, frontness, rounding move the first coefficients
    posture: np.ndarray  # (55, 3) small axis-angle offsets added to the rest pose
    height_offset: float  # metres added to trans y


def _speaker_identity(rng: np.random.Generator) -> SpeakerIdentity:
    """Draw one speaker's identity; sizes follow the real sample (betas decay, expressions ~0.5)."""
    betas = rng.normal(0.0, 1.0, NUM_BETAS) * np.exp(-np.arange(NUM_BETAS) / 60.0)
    vowel_to_expression = rng.normal(0.0, 0.3, (3, SPEECH_DRIVEN_EXPRESSIONS))
    vowel_to_expression[0, 0] = 0.9  # coefficient 0 is always the mouth opening
    posture = rng.normal(0.0, 0.03, (NUM_JOINTS, 3))
    posture[[JAW_JOINT, *EYE_JOINTS]] = 0.0  # the face's rest is not part of the posture
    return SpeakerIdentity(
        betas=betas.astype(np.float32),
        neutral_expression=rng.normal(0.0, 0.5, NUM_EXPRESSIONS),
        vowel_to_expression=vowel_to_expression,
        posture=posture,
        height_offset=float(rng.normal(0.0, 0.01)),
    )


# --------------------------------------------------------------------------- speech plan

# Vowels: formants F1, F2, F3 in Hz (adult averages, Peterson & Barney) and lip rounding.
VOWEL_FORMANTS_HZ = {"a": (730, 1090, 2440), "e": (530, 1840, 2480), "i": (270, 2290, 3010),
                     "o": (570, 840, 2410), "u": (300, 870, 2240)}  # fmt: skip
VOWEL_ROUNDED = {"a": 0.0, "e": 0.0, "i": 0.0, "o": 1.0, "u": 1.0}
PLOSIVES = "bdgkpt"  # start stressed syllables: a closure, then a burst
SONORANTS = "lmnr"  # start unstressed syllables: voicing runs on from the syllable before
VOWELS = tuple(VOWEL_FORMANTS_HZ)


def _vowel_features(vowel: str) -> np.ndarray:
    """(3,) openness (from F1), frontness (from F2), rounding, each in [0, 1]."""
    first, second = np.array(list(VOWEL_FORMANTS_HZ.values()))[:, :2].T
    openness = (VOWEL_FORMANTS_HZ[vowel][0] - first.min()) / np.ptp(first)
    frontness = (VOWEL_FORMANTS_HZ[vowel][1] - second.min()) / np.ptp(second)
    return np.array([openness, frontness, VOWEL_ROUNDED[vowel]])


STRESSED_LEVEL = 1.0
UNSTRESSED_LEVEL = 0.4
STRESSED_PITCH_FACTOR = 1.25  # stressed syllables are pitched up (§4.6)
MIN_BEAT_INTERVAL_S = 0.4  # two stressed onsets closer than this would need an impossibly fast gesture
SYLLABLE_SECONDS = (0.10, 0.25)  # §4.6: syllables of 100–250 ms
SYLLABLES_PER_PHRASE = (3, 9)
PAUSE_SECONDS = (0.3, 0.8)  # silence added between phrases, times the speaker's pause_scale
LEADING_SILENCE_SECONDS = (0.3, 0.6)
RATE_JITTER = 0.2  # syllable intervals vary by ±20% around 1 / syllable_rate_hz


@dataclass(frozen=True)
class SpeechPlan:
    """The syllables of one recording, in time order (all arrays (S,))."""

    onsets_s: np.ndarray  # syllable start times
    durations_s: np.ndarray  # syllable lengths (§4.6: 100–250 ms)
    stressed: np.ndarray  # bool
    phrase_start: np.ndarray  # bool: first syllable of a phrase (stressed unless a stress came just before)
    phrase_position: np.ndarray  # 0 at a phrase's first syllable, 1 at its last (pitch declination)
    words: tuple[str, ...]  # text of each syllable, e.g. "ba" (stressed: plosive) or "la" (sonorant)

    @property
    def vowels(self) -> tuple[str, ...]:
        return tuple(word[-1] for word in self.words)

    @cached_property
    def vowel_features(self) -> np.ndarray:
        """(S, 3) openness, frontness and rounding of each syllable's vowel."""
        return np.array([_vowel_features(vowel) for vowel in self.vowels]).reshape(-1, 3)

    @property
    def levels(self) -> np.ndarray:
        """(S,) loudness of each syllable: stressed ones are louder, open vowels a little louder."""
        openness = self.vowel_features[:, 0]
        stress_gain = np.where(self.stressed, STRESSED_LEVEL, UNSTRESSED_LEVEL)
        return stress_gain * (0.75 + 0.25 * openness)

    @property
    def stressed_onsets_s(self) -> np.ndarray:
        """(B,) onsets of the stressed syllables: the beats the gestures land on."""
        return self.onsets_s[self.stressed]


def _plan_speech(rng: np.random.Generator, style: SpeakerStyle, speech_end_s: float) -> SpeechPlan:
    """Lay out phrases of syllables separated by pauses, from a short silence up to `speech_end_s`.

    A phrase's first syllable is stressed; later ones are stressed with the speaker's probability, unless
    the previous stress is closer than MIN_BEAT_INTERVAL_S.
    """
    onsets, durations, stressed, phrase_start, phrase_position, words = [], [], [], [], [], []
    time = rng.uniform(*LEADING_SILENCE_SECONDS)
    last_stress = -np.inf
    while True:
        num_syllables = int(rng.integers(SYLLABLES_PER_PHRASE[0], SYLLABLES_PER_PHRASE[1] + 1))
        for index in range(num_syllables):
            interval = rng.uniform(1 - RATE_JITTER, 1 + RATE_JITTER) / style.syllable_rate_hz
            duration = min(rng.uniform(*SYLLABLE_SECONDS), 0.85 * interval)  # keep a gap to the next one
            if time + duration > speech_end_s:
                return SpeechPlan(
                    onsets_s=np.array(onsets),
                    durations_s=np.array(durations),
                    stressed=np.array(stressed, dtype=bool),
                    phrase_start=np.array(phrase_start, dtype=bool),
                    phrase_position=np.array(phrase_position),
                    words=tuple(words),
                )
            wants_stress = index == 0 or rng.random() < style.stress_probability
            is_stressed = wants_stress and time - last_stress >= MIN_BEAT_INTERVAL_S
            last_stress = time if is_stressed else last_stress
            consonants = PLOSIVES if is_stressed else SONORANTS
            onsets.append(time)
            durations.append(duration)
            stressed.append(is_stressed)
            phrase_start.append(index == 0)
            phrase_position.append(index / max(num_syllables - 1, 1))
            words.append(consonants[rng.integers(len(consonants))] + VOWELS[rng.integers(len(VOWELS))])
            time += interval
        time += rng.uniform(*PAUSE_SECONDS) * style.pause_scale


# --------------------------------------------------------------------------- loudness envelope

STRESSED_ATTACK_S = 0.008  # a plosive release: the vowel starts at once
UNSTRESSED_ATTACK_S = 0.06  # a sonorant: the vowel swells slowly out of the murmur before it
RELEASE_S = 0.03
MURMUR_LEVEL = 0.35  # voicing between two syllables of a stretch, relative to the following syllable's level


def _syllable_shape(elapsed_s: np.ndarray, duration_s: float, attack_s: float) -> np.ndarray:
    """Amplitude shape of one syllable at `elapsed_s` after its onset: a raised-cosine attack, a slow decay
    to half, a raised-cosine release; zero outside the syllable."""
    inside = (elapsed_s >= 0) & (elapsed_s < duration_s)
    rise = 0.5 - 0.5 * np.cos(np.pi * np.clip(elapsed_s / attack_s, 0, 1))
    fall = 0.5 + 0.5 * np.cos(np.pi * np.clip((elapsed_s - (duration_s - RELEASE_S)) / RELEASE_S, 0, 1))
    decay = 1.0 - 0.5 * np.clip(elapsed_s / duration_s, 0, 1)
    return np.where(inside, rise * fall * decay, 0.0)


def _attacks_s(plan: SpeechPlan) -> np.ndarray:
    """(S,) attack time of each syllable: short for stressed (plosive) ones, long for unstressed ones."""
    return np.where(plan.stressed, STRESSED_ATTACK_S, UNSTRESSED_ATTACK_S)


def _syllable_signals(plan: SpeechPlan, times: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Sum over syllables of shape(t) * weight: (S, C) weights at (N,) sorted times -> (N, C)."""
    signal = np.zeros((len(times), weights.shape[1]))
    for onset, duration, attack, weight in zip(plan.onsets_s, plan.durations_s, _attacks_s(plan), weights):
        window = slice(np.searchsorted(times, onset), np.searchsorted(times, onset + duration))
        signal[window] += _syllable_shape(times[window] - onset, duration, attack)[:, None] * weight
    return signal


def _voiced_stretches(plan: SpeechPlan) -> list[np.ndarray]:
    """Runs of syllable indices voiced without a break: a stressed syllable and the unstressed ones that
    follow it in its phrase. A stretch starts after silence, so only its first onset is abrupt."""
    starts = np.flatnonzero(plan.stressed | plan.phrase_start)  # the first syllable starts a phrase
    return np.split(np.arange(len(plan.onsets_s)), starts[1:]) if len(starts) else []


def _loudness(plan: SpeechPlan, times: np.ndarray) -> np.ndarray:
    """(N,) amplitude envelope at sorted `times`: the syllables, joined inside each voiced stretch by a murmur
    (the sonorant) that lasts until the next syllable has swelled to its level."""
    envelope = _syllable_signals(plan, times, plan.levels[:, None])[:, 0]
    attacks, levels = _attacks_s(plan), plan.levels
    for stretch in _voiced_stretches(plan):
        for before, after in zip(stretch[:-1], stretch[1:]):
            start = plan.onsets_s[before] + plan.durations_s[before] - RELEASE_S
            window = slice(np.searchsorted(times, start), np.searchsorted(times, plan.onsets_s[after] + attacks[after]))
            envelope[window] = np.maximum(envelope[window], MURMUR_LEVEL * levels[after])
    return envelope


# --------------------------------------------------------------------------- audio

SPEECH_RMS = 0.12  # waveform RMS of a stressed syllable (the real sample's overall RMS is 0.12)
MAX_PARTIAL_HZ = 4000.0  # harmonics above this are left out
FORMANT_GAINS = (1.0, 0.6, 0.3)
FORMANT_WIDTHS_HZ = (90.0, 120.0, 180.0)
CONSONANT_BURST_S = 0.015  # decay time of the noise burst of a plosive
BURST_SECONDS = 0.1  # length of the burst's noise segment (≈ 7 decay times)
NOISE_RMS = 0.002  # background noise
BURST_LEVEL = 0.5  # plosive burst relative to the vowel
FORMANT_FLOOR = 0.02  # gain of harmonics far from every formant
PHRASE_DECLINATION = 0.12  # pitch falls by this fraction from a phrase's first syllable to its last
SYLLABLE_PITCH_FALL = 0.08  # and by this fraction across each syllable
CONSONANT_SECONDS = 0.03  # the formants reach the vowel's this long after the onset
CONTROL_SECONDS = 0.004  # formant gains are computed at this step and interpolated in between


def _stretch_pitch_and_formants(
    plan: SpeechPlan, stretch: np.ndarray, style: SpeakerStyle, times: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Pitch (N,) in Hz and formants (N, 3) in Hz of one voiced stretch at `times`, gliding between syllables.

    Pitch: the speaker's f0, raised when stressed, falling across the phrase and within each syllable.
    """
    stretch_f0 = (
        style.f0_hz
        * np.where(plan.stressed[stretch], STRESSED_PITCH_FACTOR, 1.0)
        * (1.0 - PHRASE_DECLINATION * plan.phrase_position[stretch])
    )
    onsets, ends = plan.onsets_s[stretch], plan.onsets_s[stretch] + plan.durations_s[stretch]
    pitch_knots = rearrange(np.stack([onsets, ends]), "knot syllable -> (syllable knot)")
    start_and_end_f0 = np.outer([1 + SYLLABLE_PITCH_FALL / 2, 1 - SYLLABLE_PITCH_FALL / 2], stretch_f0)
    pitch_values = rearrange(start_and_end_f0, "knot syllable -> (syllable knot)")
    formant_knots = rearrange(np.stack([onsets + CONSONANT_SECONDS, ends]), "knot syllable -> (syllable knot)")
    vowel_formants = np.array([VOWEL_FORMANTS_HZ[plan.vowels[index]] for index in stretch], dtype=np.float64)
    formant_values = repeat(vowel_formants, "syllable formant -> (syllable knot) formant", knot=2)
    pitch = np.interp(times, pitch_knots, pitch_values)
    formants = np.stack([np.interp(times, formant_knots, column) for column in formant_values.T], axis=1)
    return pitch, formants


def _harmonic_tone(pitch: np.ndarray, formants: np.ndarray, sample_rate: int) -> np.ndarray:
    """(N,) voiced tone of unit RMS: harmonics of `pitch` (N,) weighted by three `formants` (N, 3) peaks.

    Formant gains are computed every CONTROL_SECONDS and linearly interpolated; the phase is continuous.
    """
    harmonics = np.arange(1, int(MAX_PARTIAL_HZ // pitch.min()) + 1)
    hop = max(1, int(CONTROL_SECONDS * sample_rate))
    control = np.arange(0, len(pitch) + hop, hop).clip(max=len(pitch) - 1)  # past the end: the last sample's
    frequencies = np.outer(pitch[control], harmonics)  # (C, H)
    gains = sum(
        gain * np.exp(-0.5 * ((frequencies - formants[control, index, None]) / width) ** 2)
        for index, (gain, width) in enumerate(zip(FORMANT_GAINS, FORMANT_WIDTHS_HZ))
    )
    gains = (gains + FORMANT_FLOOR) / np.sqrt(harmonics) * (frequencies < MAX_PARTIAL_HZ)
    gains *= np.sqrt(2.0 / np.sum(gains**2, axis=1, keepdims=True))  # unit RMS at every control point
    position = np.arange(len(pitch)) / hop
    left = np.minimum(position.astype(np.int64), len(control) - 2)
    fraction = (position - left)[:, None]
    sample_gains = (gains[left] * (1 - fraction) + gains[left + 1] * fraction).astype(np.float32)  # (N, H)
    rotor = np.exp(1j * 2 * np.pi * np.cumsum(pitch) / sample_rate).astype(np.complex64)  # e^{i phase}
    partials = np.cumprod(repeat(rotor, "n -> n h", h=len(harmonics)), axis=1)  # e^{i h phase}
    return np.einsum("nh,nh->n", sample_gains, partials.imag)


def _synthesize_speech(
    plan: SpeechPlan, style: SpeakerStyle, num_samples: int, sample_rate: int, rng: np.random.Generator
) -> np.ndarray:
    """(num_samples,) float32 waveform: voiced stretches shaped by the loudness envelope, a burst per plosive."""
    wave = rng.normal(0.0, NOISE_RMS, num_samples)
    times = np.arange(num_samples) / sample_rate
    envelope = _loudness(plan, times)
    for stretch in _voiced_stretches(plan):
        start = int(np.searchsorted(times, plan.onsets_s[stretch[0]]))
        stop = int(np.searchsorted(times, plan.onsets_s[stretch[-1]] + plan.durations_s[stretch[-1]]))
        pitch, formants = _stretch_pitch_and_formants(plan, stretch, style, times[start:stop])
        wave[start:stop] += SPEECH_RMS * envelope[start:stop] * _harmonic_tone(pitch, formants, sample_rate)
    burst_elapsed = np.arange(int(BURST_SECONDS * sample_rate)) / sample_rate
    for onset, level in zip(plan.stressed_onsets_s, plan.levels[plan.stressed]):
        start = int(np.searchsorted(times, onset))
        noise = np.diff(rng.normal(0.0, 0.5, len(burst_elapsed) + 1)) * np.exp(-burst_elapsed / CONSONANT_BURST_S)
        segment = wave[start : start + len(noise)]
        segment += SPEECH_RMS * level * BURST_LEVEL * noise[: len(segment)]
    return wave.astype(np.float32)


# --------------------------------------------------------------------------- motion: rest pose

# Rest pose, axis-angle: rounded per-joint means of the real sample, made left/right symmetric.
# Centre joints (pelvis 0, spine 3/6/9, neck 12, head 15, jaw) as given; left joints (hip 1, knee 4,
# ankle 7, foot 10, collar 13, shoulder 16, elbow 18, wrist 20) as given and mirrored onto the right side.
REST_CENTRE = {0: (-0.29, 0.0, 0.0), 3: (0.25, 0.0, 0.0), 6: (0.10, 0.0, 0.0), 9: (0.10, 0.0, 0.0),
               12: (0.16, 0.0, 0.0), 15: (-0.05, 0.0, 0.0), JAW_JOINT: (0.01, 0.0, 0.0)}  # fmt: skip
REST_LEFT = {1: (0.23, 0.21, 0.15), 4: (0.07, 0.0, -0.07), 7: (0.0, 0.19, -0.13), 10: (-0.15, 0.10, 0.11),
             13: (0.0, -0.20, -0.18), 16: (0.02, -0.26, -0.89), 18: (0.05, -0.80, 0.28),
             20: (-0.28, -0.05, 0.08)}  # fmt: skip
LEFT_TO_RIGHT = {1: 2, 4: 5, 7: 8, 10: 11, 13: 14, 16: 17, 18: 19, 20: 21, 23: 24}
PELVIS, SPINE1, SPINE3, NECK, HEAD = 0, 3, 9, 12, 15
LEFT_HIP, RIGHT_HIP = 1, 2
LEFT_LEG, RIGHT_LEG = (1, 4, 7), (2, 5, 8)  # hip, knee, ankle
LEFT_ARM = (13, 16, 18, 20)  # collar, shoulder, elbow, wrist
RIGHT_ARM = tuple(LEFT_TO_RIGHT[joint] for joint in LEFT_ARM)
TORSO = (0, 3, 6, 9, 12)  # pelvis, spine1-3, neck: they lean with the dominant arm's beats
LEFT_HAND_FIRST, RIGHT_HAND_FIRST = 25, 40
HAND_JOINTS_PER_SIDE = 15  # index, middle, pinky, ring, thumb x 3 segments
FINGER_BASE_CURL = (0.10, 0.15, 0.25, 0.20, 0.05)  # radians per segment, index .. thumb
FINGER_SEGMENT_WEIGHTS = (1.0, 1.1, 0.8)
HAND_SHAPE_CURL = (-0.35, 0.45)  # radians added to a finger's curl mid-gesture: from an open hand to a fist
# Curl axes of the left hand (fingers along +x curl towards the palm, -y); the right hand is mirrored.
FINGER_CURL_AXIS = np.array([0.0, 0.0, -1.0])
THUMB_CURL_AXIS = np.array([0.0, 0.6, -0.8])


def mirror_to_right(rotvec: np.ndarray) -> np.ndarray:
    """Mirror left-side axis-angle rotations (..., 3) onto the right side (x -> -x): (a, b, c) -> (a, -b, -c)."""
    return rotvec * np.array([1.0, -1.0, -1.0])


def _rest_pose() -> np.ndarray:
    """(55, 3) axis-angle of the standing rest pose (hands zero: BEAT2 hands are relative to the mean hand)."""
    rest = np.zeros((NUM_JOINTS, 3))
    for joint, rotvec in REST_CENTRE.items():
        rest[joint] = rotvec
    for joint, rotvec in REST_LEFT.items():
        rest[joint] = rotvec
        rest[LEFT_TO_RIGHT[joint]] = mirror_to_right(np.array(rotvec))
    return rest


# --------------------------------------------------------------------------- motion: beat cycles


def _smooth_noise(
    rng: np.random.Generator,
    times: np.ndarray,
    shape: tuple[int, ...],
    std: float,
    max_hz: float = 0.4,
    num_sines: int = 3,
) -> np.ndarray:
    """(T, *shape) slow random wander of standard deviation `std`: a sum of `num_sines` random sinusoids."""
    frequencies = rng.uniform(0.05, max_hz, (num_sines, *shape))
    phases = rng.uniform(0.0, 2 * np.pi, (num_sines, *shape))
    sines = np.sin(2 * np.pi * frequencies * times.reshape(-1, 1, *[1] * len(shape)) + phases)
    return std * np.sqrt(2.0 / num_sines) * sines.sum(axis=1)


@dataclass(frozen=True)
class BeatCycles:
    """Where every frame lies relative to the beats: one gesture per interval between consecutive beats."""

    cycle: np.ndarray  # (T,) index of the interval each frame lies in
    progress: np.ndarray  # (T,) in [0, 1): 0 exactly at the interval's first beat, rising linearly in time
    starts_s: np.ndarray  # (K,) start time of each interval
    durations_s: np.ndarray  # (K,) length of each interval


def _beat_cycles(beats_s: np.ndarray, times: np.ndarray) -> BeatCycles:
    """Intervals between the beats at `beats_s` (sorted) and each frame's progress through its interval.

    Virtual beats one second before the start and after the end close the first and last interval.
    """
    first = min(times[0], beats_s[0]) if len(beats_s) else times[0]
    bounds = np.concatenate([[first - 1.0], beats_s, [times[-1] + 1.0]])
    cycle = np.searchsorted(bounds, times, side="right") - 1
    durations = np.diff(bounds)
    progress = (times - bounds[cycle]) / durations[cycle]
    return BeatCycles(cycle=cycle, progress=progress, starts_s=bounds[:-1], durations_s=durations)


# --------------------------------------------------------------------------- motion: beat loops

# The beat loop. Over each interval between two beats every upper-body joint traces one loop that starts and
# ends at the hold pose (offset zero), with speed ∝ (q (1 - q)) ** BEAT_SPEED_EXPONENT at progress q: zero
# exactly on the beats, one smooth maximum in between. In the plane of two loop coordinates (lift, sweep)
# the loop leaves the hold along the lift axis, turns three quarters of a circle and comes back along the
# sweep axis, so both coordinates keep one sign during a beat; the sign alternates from beat to beat (the
# arm swings forward-up and out, then back-down and in), so that the hold pose is also the centre of the
# motion. That makes the BC protocol's folding of the positions about their mean (SPEC §8.1) harmless: a
# joint crosses its mean, where folding cuts its speed for a frame, only next to a beat.
BEAT_SPEED_EXPONENT = 1.0

# Loop directions, axis-angle per radian of gesture amplitude: the offset is amplitude * (lift * LIFT +
# sweep * SWEEP). Rows: the left arm (collar, shoulder, elbow, wrist) and the torso (pelvis, spine1-3,
# neck) as the dominant arm of a left-handed speaker moves it; right sides and right-handed speakers are
# mirrored. The numbers were chosen numerically, with the approximate skeleton, so that every upper-body
# joint's speed has no minimum inside a beat interval, whether the other arm idles, joins or mirrors the
# dominant one: the shoulder swings the arm forward (LIFT) and out (SWEEP), collar and elbow follow, the
# torso leans forward and sideways.
ARM_LOOP_LIFT = np.array([[0.122, -0.077, 0.076], [-0.015, -0.584, 0.026], [0.11, -0.13, 0.072], [-0.25, 0.0, 0.1]])
ARM_LOOP_SWEEP = np.array([[-0.015, 0.016, 0.018], [-0.007, 0.032, 0.557], [-0.04, 0.018, 0.122], [0.0, 0.3, 0.0]])
TORSO_LOOP_LIFT = np.array([[0.038, -0.003, 0.0]] * 4 + [[0.065, 0.0, 0.0]])  # pitch forward
TORSO_LOOP_SWEEP = np.array([[0.0, -0.001, 0.039]] * 4 + [[0.0, 0.0, 0.065]])  # roll sideways
IDLE_ARM_FACTOR = 0.6  # relative amplitude of an arm that does not take part in a beat
JOINING_ARM_FACTOR = 0.8  # relative amplitude of the other arm when it joins a beat
BEAT_SIZE_JITTER = (0.7, 1.1)  # each beat's amplitude varies in this range around the speaker's
NOMINAL_CYCLE_S = 0.8  # a beat interval of this length gets the speaker's amplitude ...
CYCLE_SIZE_EXPONENT = 0.8  # ... others in proportion to (duration / NOMINAL_CYCLE_S) ** this,
CYCLE_SIZE_RANGE = (0.6, 2.0)  # clipped to this range: long intervals move further, so never crawl


def _arm_amplitudes(rng: np.random.Generator, cycles: BeatCycles, style: SpeakerStyle) -> dict[str, np.ndarray]:
    """Per interval and arm, the gesture amplitude in radians: {"left": (K,), "right": (K,)}."""
    num_cycles = len(cycles.durations_s)
    duration_scale = np.clip((cycles.durations_s / NOMINAL_CYCLE_S) ** CYCLE_SIZE_EXPONENT, *CYCLE_SIZE_RANGE)
    beat_size = style.gesture_amplitude * rng.uniform(*BEAT_SIZE_JITTER, num_cycles) * duration_scale
    joins = rng.random(num_cycles) < style.both_hands_probability
    other = beat_size * np.where(joins, JOINING_ARM_FACTOR, IDLE_ARM_FACTOR)
    if style.dominant_hand == "left":
        return {"left": beat_size, "right": other}
    return {"left": other, "right": beat_size}


def _loop_coordinates(arc_fraction: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(lift, sweep) of the beat loop at `arc_fraction` in [0, 1] of its length, both in [0, 1]: straight out
    along lift to 1/2, three quarters of a circle of radius 1/2 centred at (1/2, 1/2), straight back along
    sweep (the tangent turns smoothly all the way)."""
    radius = 0.5
    arc = 1.5 * np.pi * radius
    distance = arc_fraction * (2 * radius + arc)
    angle = np.clip((distance - radius) / radius, 0.0, 1.5 * np.pi)  # turned so far on the circle
    on_arc = distance < radius + arc
    back = 2 * radius + arc - distance  # left to go on the way back
    lift = np.where(distance < radius, distance, np.where(on_arc, radius + radius * np.sin(angle), 0.0))
    sweep = np.where(distance < radius, 0.0, np.where(on_arc, radius - radius * np.cos(angle), back))
    return lift, sweep


def _beat_loop(amplitude: np.ndarray, cycles: BeatCycles, lift: np.ndarray, sweep: np.ndarray) -> np.ndarray:
    """(T,) amplitude and the beat cycles, (J, 3) directions -> (T, J, 3) axis-angle offsets, one loop per cycle.

    The offset and its velocity are zero on every beat whatever the amplitude, so amplitudes may change from
    one cycle to the next without a jump.
    """
    arc_fraction = betainc(1 + BEAT_SPEED_EXPONENT, 1 + BEAT_SPEED_EXPONENT, cycles.progress)
    along_lift, along_sweep = _loop_coordinates(arc_fraction)
    signed = amplitude * np.where(cycles.cycle % 2 == 0, 1.0, -1.0)  # alternate sides from beat to beat
    return (signed * along_lift)[:, None, None] * lift + (signed * along_sweep)[:, None, None] * sweep


def _hand_pose(rng: np.random.Generator, cycles: BeatCycles, activity: np.ndarray) -> np.ndarray:
    """(T, 15, 3) left-hand axis-angle: a base curl, plus per cycle a hand shape reached mid-gesture.

    `activity` (T,) in [0, 1] scales the hand shape (an idle arm's hand moves less).
    """
    shapes = rng.uniform(*HAND_SHAPE_CURL, (len(cycles.durations_s), len(FINGER_BASE_CURL)))
    opening = 0.5 * (1.0 - np.cos(2 * np.pi * cycles.progress))  # 0 at beats, 1 mid-gesture
    curl = np.asarray(FINGER_BASE_CURL) + (activity * opening)[:, None] * shapes[cycles.cycle]  # (T, 5)
    axes = np.stack([FINGER_CURL_AXIS] * 4 + [THUMB_CURL_AXIS])  # (5, 3)
    per_segment = curl[:, :, None, None] * np.asarray(FINGER_SEGMENT_WEIGHTS)[:, None] * axes[:, None, :]
    return rearrange(per_segment, "t finger segment xyz -> t (finger segment) xyz")


def _gesture_offsets(rng: np.random.Generator, cycles: BeatCycles, style: SpeakerStyle) -> np.ndarray:
    """(T, 55, 3) axis-angle offsets of both arms, hands and the torso: one beat loop per beat interval."""
    offsets = np.zeros((len(cycles.progress), NUM_JOINTS, 3))
    amplitudes = _arm_amplitudes(rng, cycles, style)
    for side, arm, hand_first in (("left", LEFT_ARM, LEFT_HAND_FIRST), ("right", RIGHT_ARM, RIGHT_HAND_FIRST)):
        amplitude = amplitudes[side][cycles.cycle]
        gesture = _beat_loop(amplitude, cycles, ARM_LOOP_LIFT, ARM_LOOP_SWEEP)
        hand = _hand_pose(rng, cycles, np.clip(amplitude / style.gesture_amplitude, 0.0, 1.0))
        if side == "right":
            gesture, hand = mirror_to_right(gesture), mirror_to_right(hand)
        offsets[:, list(arm)] += gesture
        offsets[:, hand_first : hand_first + HAND_JOINTS_PER_SIDE] += hand
    torso = _beat_loop(amplitudes[style.dominant_hand][cycles.cycle], cycles, TORSO_LOOP_LIFT, TORSO_LOOP_SWEEP)
    offsets[:, list(TORSO)] += torso if style.dominant_hand == "left" else mirror_to_right(torso)
    return offsets


NOD_WIDTH_S = 0.12
BEAT_NOD_FACTOR = 0.3  # a stressed syllable nods this much relative to a phrase start
NECK_SHARE_OF_NOD = 0.4  # the head joint takes the rest


def _nod_offsets(plan: SpeechPlan, times: np.ndarray, style: SpeakerStyle) -> np.ndarray:
    """(T, 55, 3) neck and head pitch: a Gaussian nod peaking on every phrase start, smaller ones on stresses
    (zero speed at the peak, so the nods keep the head's speed minima on the beats)."""
    sizes = style.nod_amplitude * np.where(plan.phrase_start, 1.0, np.where(plan.stressed, BEAT_NOD_FACTOR, 0.0))
    nod = (np.exp(-0.5 * ((times[:, None] - plan.onsets_s[None, :]) / NOD_WIDTH_S) ** 2) * sizes).sum(axis=1)
    offsets = np.zeros((len(times), NUM_JOINTS, 3))
    offsets[:, NECK, 0] = NECK_SHARE_OF_NOD * nod
    offsets[:, HEAD, 0] = (1.0 - NECK_SHARE_OF_NOD) * nod
    return offsets


# --------------------------------------------------------------------------- motion: lower body

SHIFT_CYCLE_SECONDS = (0.5, 2.0)  # a weight shift takes one whole beat interval of about this length


def _weight_shift(rng: np.random.Generator, cycles: BeatCycles, style: SpeakerStyle) -> np.ndarray:
    """(T,) weight position in [-1, 1] (+1: on the left leg), shifting from leg to leg every few seconds.

    Each shift runs over one beat interval, from a standstill at its first beat to a standstill at the next,
    so the body's sideways travel also slows down on the beats only.
    """
    shift = np.full(len(cycles.progress), rng.uniform(-1.0, 1.0))
    next_shift_s = rng.uniform(0.2, 1.0) * style.weight_shift_period_s
    for index, (start, duration) in enumerate(zip(cycles.starts_s, cycles.durations_s)):
        if start < next_shift_s or not SHIFT_CYCLE_SECONDS[0] <= duration <= SHIFT_CYCLE_SECONDS[1]:
            continue
        target = -np.sign(shift[-1] or 1.0) * rng.uniform(0.5, 1.0)
        progress = 0.5 - 0.5 * np.cos(np.pi * cycles.progress)  # 0 -> 1 over each interval
        progress = np.where(cycles.cycle < index, 0.0, np.where(cycles.cycle > index, 1.0, progress))
        shift = shift + (target - shift[-1]) * progress
        next_shift_s = start + rng.uniform(0.7, 1.3) * style.weight_shift_period_s
    return shift


WEIGHT_SHIFT_M = 0.025  # sideways pelvis travel of a full weight shift
HIP_HIKE_RAD = 0.04  # pelvis roll of a full weight shift
LEG_LENGTH_M = 0.9
KNEE_BEND_RAD = 0.06  # the unloaded knee bends this much


def _lower_body_offsets(shift: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weight shift (T,) -> ((T, 55, 3) axis-angle offsets of pelvis, legs and spine1, (T,) sideways metres).

    The legs tilt against the pelvis travel and roll so that the feet stay where they are.
    """
    offsets = np.zeros((len(shift), NUM_JOINTS, 3))
    leg_tilt = -WEIGHT_SHIFT_M / LEG_LENGTH_M * shift
    offsets[:, PELVIS, 2] = HIP_HIKE_RAD * shift
    offsets[:, SPINE1, 2] = -0.75 * HIP_HIKE_RAD * shift  # keep the torso upright
    for (hip, knee, ankle), unloaded in ((LEFT_LEG, np.maximum(-shift, 0)), (RIGHT_LEG, np.maximum(shift, 0))):
        offsets[:, hip, 2] = leg_tilt - HIP_HIKE_RAD * shift
        offsets[:, ankle, 2] = -leg_tilt
        bend = KNEE_BEND_RAD * unloaded
        offsets[:, hip, 0] = -0.5 * bend
        offsets[:, knee, 0] = bend
        offsets[:, ankle, 0] = -0.5 * bend
    return offsets, WEIGHT_SHIFT_M * shift


def _hips_countering_pelvis(pelvis: np.ndarray, rest: np.ndarray) -> np.ndarray:
    """(T, 3) pelvis offsets of the beat loop -> (T, 2, 3) hip offsets that undo them, so the legs (and feet)
    keep their orientation: R_hip_offset = R_hip_rest^-1 · R_pelvis_offset^-1 · R_hip_rest (as axis-angle)."""
    return np.stack([Rotation.from_rotvec(rest[hip]).inv().apply(-pelvis) for hip in (LEFT_HIP, RIGHT_HIP)], axis=1)


# --------------------------------------------------------------------------- motion: assembly

JAW_OPEN_RAD = 0.06  # jaw opening of a loud open vowel (the real sample's jaw stays within 0.05 rad)
JAW_LOUDNESS_SHARE = 0.4  # the jaw follows loudness this much and the vowel's openness the rest
EYE_JITTER_RAD = 0.01  # eyes stay near identity
EXPRESSION_WANDER = 0.08  # slow wander of every expression coefficient
EXPRESSION_LOUDNESS_GAIN = 0.3  # the speech-driven coefficients also rise with loudness
ENVELOPE_OVERSAMPLING = 8  # speech signals are averaged over each motion frame from this many points
FACING_RANGE_RAD = 0.3  # each recording faces a random direction within ± this
FACING_DRIFT_RAD = 0.04  # slow turning during a recording
PLACE_STD_M = 0.05  # where the speaker stands, per recording
TRANS_SWAY_M = 0.001  # slow sway of the pelvis position (small: the weight shifts carry the sway)


def _fine_times(num_frames: int, fps: int) -> np.ndarray:
    """(T * ENVELOPE_OVERSAMPLING,) sorted instants spread evenly over each motion frame's 1/fps window."""
    offsets = (np.arange(ENVELOPE_OVERSAMPLING) + 0.5) / ENVELOPE_OVERSAMPLING - 0.5
    return (np.arange(num_frames)[:, None] + offsets[None, :]).reshape(-1) / fps


def _frame_average(fine: np.ndarray) -> np.ndarray:
    """Signals at `_fine_times` ((T * ENVELOPE_OVERSAMPLING, C)) averaged over each motion frame: (T, C)."""
    return reduce(fine, "(frame point) channel -> frame channel", "mean", point=ENVELOPE_OVERSAMPLING)


def _compose(rest: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Apply (T, J, 3) axis-angle offsets in each joint's rest-rotated frame: R = R_rest · R_offset."""
    rest_rotations = Rotation.from_rotvec(repeat(rest, "joint xyz -> (t joint) xyz", t=len(offsets)))
    rotations = rest_rotations * Rotation.from_rotvec(rearrange(offsets, "t joint xyz -> (t joint) xyz"))
    return rotations.as_rotvec().reshape(offsets.shape)


def _face(
    rng: np.random.Generator, plan: SpeechPlan, identity: SpeakerIdentity, num_frames: int, fps: int
) -> tuple[np.ndarray, np.ndarray]:
    """Jaw and eyes ((T, 55, 3) axis-angle offsets) and expressions ((T, 100)) following the syllables'
    loudness and vowel shape."""
    times = np.arange(num_frames) / fps
    fine_times = _fine_times(num_frames, fps)
    mouth = _frame_average(_syllable_signals(plan, fine_times, plan.levels[:, None] * plan.vowel_features))  # (T, 3)
    loudness = _frame_average(_loudness(plan, fine_times)[:, None])[:, 0]  # (T,)
    offsets = np.zeros((num_frames, NUM_JOINTS, 3))
    openness = mouth[:, 0]
    offsets[:, JAW_JOINT, 0] = JAW_OPEN_RAD * (JAW_LOUDNESS_SHARE * loudness + (1 - JAW_LOUDNESS_SHARE) * openness)
    offsets[:, list(EYE_JOINTS)] = _smooth_noise(rng, times, (1, 3), EYE_JITTER_RAD, max_hz=1.0)
    expressions = identity.neutral_expression + _smooth_noise(rng, times, (NUM_EXPRESSIONS,), EXPRESSION_WANDER)
    speech_driven = EXPRESSION_LOUDNESS_GAIN * loudness[:, None] + mouth @ identity.vowel_to_expression
    expressions[:, :SPEECH_DRIVEN_EXPRESSIONS] += speech_driven
    return offsets, expressions


def _place_in_world(
    rng: np.random.Generator, poses: np.ndarray, sideways_m: np.ndarray, height_m: float, times: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Turn the body to a per-recording facing with a slow drift and place it: (T, 55, 3) poses and
    (T,) sideways weight-shift travel -> turned poses (T, 55, 3) and trans (T, 3), y constant."""
    facing = rng.uniform(-FACING_RANGE_RAD, FACING_RANGE_RAD) + _smooth_noise(
        rng, times, (), FACING_DRIFT_RAD, max_hz=0.15
    )
    yaw = Rotation.from_rotvec(np.outer(facing, [0.0, 1.0, 0.0]))
    poses = poses.copy()
    poses[:, PELVIS] = (yaw * Rotation.from_rotvec(poses[:, PELVIS])).as_rotvec()
    place = rng.normal(0.0, PLACE_STD_M, 2)
    sway = _smooth_noise(rng, times, (2,), TRANS_SWAY_M, max_hz=0.2)
    along, forward = sideways_m + sway[:, 0], sway[:, 1]  # in the speaker's frame, turned by `facing`
    trans = np.stack(
        [
            place[0] + np.cos(facing) * along + np.sin(facing) * forward,
            np.full(len(times), height_m),
            place[1] - np.sin(facing) * along + np.cos(facing) * forward,
        ],
        axis=1,
    )
    return poses, trans


def _synthesize_motion(
    plan: SpeechPlan,
    style: SpeakerStyle,
    identity: SpeakerIdentity,
    num_frames: int,
    fps: int,
    rng: np.random.Generator,
) -> dict[str, np.ndarray]:
    """Motion answering `plan`: poses (T, 165) float32, trans (T, 3) float64, expressions (T, 100) float64."""
    times = np.arange(num_frames) / fps
    rest = _rest_pose() + identity.posture
    cycles = _beat_cycles(plan.stressed_onsets_s, times)
    lower_offsets, sideways_m = _lower_body_offsets(_weight_shift(rng, cycles, style))
    face_offsets, expressions = _face(rng, plan, identity, num_frames, fps)
    gesture_offsets = _gesture_offsets(rng, cycles, style)
    gesture_offsets[:, [LEFT_HIP, RIGHT_HIP]] = _hips_countering_pelvis(gesture_offsets[:, PELVIS], rest)
    offsets = gesture_offsets + _nod_offsets(plan, times, style) + lower_offsets + face_offsets
    poses = _compose(rest, offsets)
    poses, trans = _place_in_world(rng, poses, sideways_m, STANDING_TRANS_Y + identity.height_offset, times)
    return {
        "poses": rearrange(poses, "t joint xyz -> t (joint xyz)").astype(np.float32),
        "trans": trans,
        "expressions": expressions,
    }


# --------------------------------------------------------------------------- files


def _praat_number(value: float) -> str:
    return f"{value:.4f}".rstrip("0").rstrip(".")


def textgrid_text(plan: SpeechPlan, duration_s: float) -> str:
    """Praat long-text TextGrid with one "words" tier: one interval per syllable, empty ones between."""
    bounds = [(0.0, "")]  # (start, text) of each interval; syllables start after a silence (_plan_speech)
    for onset, duration, word in zip(plan.onsets_s, plan.durations_s, plan.words):
        bounds += [(onset, word), (onset + duration, "")]
    starts = [start for start, _ in bounds]
    ends = starts[1:] + [duration_s]
    xmax = _praat_number(duration_s)
    lines = [
        'File type = "ooTextFile"',
        'Object class = "TextGrid"',
        "",
        "xmin = 0 ",
        f"xmax = {xmax} ",
        "tiers? <exists> ",
        "size = 1 ",
        "item []: ",
        "    item [1]:",
        '        class = "IntervalTier" ',
        '        name = "words" ',
        "        xmin = 0 ",
        f"        xmax = {xmax} ",
        f"        intervals: size = {len(bounds)} ",
    ]
    for number, ((start, text), end) in enumerate(zip(bounds, ends), start=1):
        lines += [
            f"        intervals [{number}]:",
            f"            xmin = {_praat_number(start)} ",
            f"            xmax = {_praat_number(end)} ",
            f'            text = "{text}" ',
        ]
    return "\n".join(lines) + "\n"


def _write_npz(path: Path, motion: dict[str, np.ndarray], betas: np.ndarray, fps: int) -> None:
    """Write one motion file with BEAT2's keys, dtypes and key order (np.savez output is byte-stable)."""
    np.savez(
        path,
        betas=betas,
        poses=motion["poses"],
        expressions=motion["expressions"],
        trans=motion["trans"],
        model=np.array("smplx2020"),
        gender=np.array("neutral"),
        mocap_frame_rate=np.array(fps, dtype=np.int32),
    )


def write_float_wav(path: Path, wave: np.ndarray, sample_rate: int) -> None:
    """Write a mono 32-bit float WAV laid out like BEAT2's (a 16-byte fmt chunk, then data; no chunk with a
    time stamp, such as the PEAK chunk libsndfile adds, so the bytes depend on the samples only)."""
    samples = np.ascontiguousarray(wave, dtype="<f4").tobytes()
    float_format, channels, bytes_per_sample = 3, 1, 4  # WAVE_FORMAT_IEEE_FLOAT, mono, float32
    fmt = struct.pack(
        "<HHIIHH",
        float_format,
        channels,
        sample_rate,
        sample_rate * channels * bytes_per_sample,  # byte rate
        channels * bytes_per_sample,  # block align
        8 * bytes_per_sample,  # bits per sample
    )
    chunks = b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(samples)) + samples
    path.write_bytes(b"RIFF" + struct.pack("<I", 4 + len(chunks)) + b"WAVE" + chunks)


EXTRA_AUDIO_SECONDS = (0.5, 1.0)  # the audio outlasts the motion by this much, as in BEAT2 (§4.1)
FINAL_SILENCE_S = 0.2  # speech ends this long before the motion does


def _sequence_rng(seed: int, speaker: int, take: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, speaker, take]))


def write_synthetic_corpus(
    out: str | Path,
    *,
    num_speakers: int = 2,
    sequences_per_speaker: int = 8,
    seconds_per_sequence: float = 20.0,
    val_per_speaker: int = 1,
    test_per_speaker: int = 1,
    seed: int = 0,
    sample_rate: int = 16000,
    fps: int = 30,
) -> Path:
    """Write a BEAT2-format corpus under ``<out>/beat_english_v2.0.0`` and return that folder.

    Args:
        out: parent folder (created if needed); existing files of the same names are overwritten.
        num_speakers: speakers 1 .. num_speakers (at most len(SPEAKER_NAMES)).
        sequences_per_speaker: recordings per speaker, ids ``<speaker>_<name>_0_<k>_<k>`` for k = 1 ..
        seconds_per_sequence: motion length; the audio is 0.5–1 s longer, like BEAT2's.
        val_per_speaker, test_per_speaker: the last recordings of each speaker go to val, then test;
            the rest to train.
        seed: everything is a deterministic function of the arguments.
        sample_rate: audio rate (§4.1: 16 kHz).
        fps: motion rate (§4.1: 30).
    """
    if not 1 <= num_speakers <= len(SPEAKER_NAMES):
        raise ValueError(f"num_speakers must be between 1 and {len(SPEAKER_NAMES)}, got {num_speakers}")
    if sequences_per_speaker < 1:
        raise ValueError(f"sequences_per_speaker must be at least 1, got {sequences_per_speaker}")
    if val_per_speaker < 0 or test_per_speaker < 0 or val_per_speaker + test_per_speaker > sequences_per_speaker:
        raise ValueError(
            f"val_per_speaker ({val_per_speaker}) and test_per_speaker ({test_per_speaker}) must be non-negative "
            f"and together at most sequences_per_speaker ({sequences_per_speaker})"
        )
    if seconds_per_sequence < 1.0:
        raise ValueError(f"seconds_per_sequence must be at least 1 s, got {seconds_per_sequence}")
    if sample_rate < 2 * MAX_PARTIAL_HZ or fps < 1:
        raise ValueError(f"need sample_rate >= {2 * MAX_PARTIAL_HZ:.0f} Hz and fps >= 1, got {sample_rate}, {fps}")

    root = Path(out) / CORPUS_DIR_NAME
    folders = {name: root / name for name in (MOTION_DIR_NAME, AUDIO_DIR_NAME, TEXTGRID_DIR_NAME)}
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
    num_train = sequences_per_speaker - val_per_speaker - test_per_speaker
    splits = ["train"] * num_train + ["val"] * val_per_speaker + ["test"] * test_per_speaker
    num_frames = int(round(seconds_per_sequence * fps))

    split_rows = ["id,type"]
    for speaker in range(1, num_speakers + 1):
        style = speaker_style(speaker)
        identity = _speaker_identity(_sequence_rng(seed, speaker, 0))
        for take, split in enumerate(splits, start=1):
            seq_id = f"{speaker}_{SPEAKER_NAMES[speaker - 1]}_0_{take}_{take}"
            rng = _sequence_rng(seed, speaker, take)
            audio_seconds = num_frames / fps + rng.uniform(*EXTRA_AUDIO_SECONDS)
            plan = _plan_speech(rng, style, speech_end_s=num_frames / fps - FINAL_SILENCE_S)
            wave = _synthesize_speech(plan, style, int(round(audio_seconds * sample_rate)), sample_rate, rng)
            motion = _synthesize_motion(plan, style, identity, num_frames, fps, rng)
            _write_npz(folders[MOTION_DIR_NAME] / f"{seq_id}.npz", motion, identity.betas, fps)
            write_float_wav(folders[AUDIO_DIR_NAME] / f"{seq_id}.wav", wave, sample_rate)
            (folders[TEXTGRID_DIR_NAME] / f"{seq_id}.TextGrid").write_text(
                textgrid_text(plan, len(wave) / sample_rate), encoding="utf-8"
            )
            split_rows.append(f"{seq_id},{split}")
            logger.debug("wrote %s (%s, %d syllables)", seq_id, split, len(plan.words))
    (root / SPLIT_CSV_NAME).write_text("\n".join(split_rows) + "\n", encoding="utf-8")
    logger.info(
        "synthetic BEAT2 corpus: %d speakers x %d sequences x %.1f s -> %s",
        num_speakers,
        sequences_per_speaker,
        seconds_per_sequence,
        root,
    )
    return root
