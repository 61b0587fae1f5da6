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
  syllables are louder and pitched up; each speaker has its own pitch and tempo;
* beat gestures: each arm loops through joint-angle space once per interval between stressed-syllable
  onsets, slowest (the stroke's end, a speed minimum) exactly at each stressed onset;
* head nods peak on phrase starts (and, smaller, on stressed syllables);
* jaw opening and the first expression coefficients follow the syllable envelope and vowel shape;
* finger curl opens and closes with each gesture; the lower body shifts weight slowly, feet planted;
* speakers differ in pitch, tempo, gesture amplitude, handedness and posture.

Every random draw comes from a generator seeded by ``(seed, speaker, sequence)``, so the same seed gives
the same bytes, and adding sequences leaves the existing ones unchanged.
"""

from __future__ import annotations

import logging
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from einops import rearrange, repeat
from scipy.spatial.transform import Rotation

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
    gesture_amplitude: float  # radians: size of the beat-gesture loop of the dominant arm
    dominant_hand: str  # "left" or "right"
    both_hands_probability: float  # chance that the other arm joins a beat
    nod_amplitude: float  # radians: head pitch of a nod at a phrase start
    sway_amplitude: float  # radians: idle sway of the torso and head
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
        sway_amplitude=0.03,
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
        sway_amplitude=0.05,
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
        sway_amplitude=0.04,
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
        sway_amplitude=0.06,
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
CONSONANTS = "lmnbdt"
VOWELS = tuple(VOWEL_FORMANTS_HZ)


def _vowel_features(vowel: str) -> np.ndarray:
    """(3,) openness (from F1), frontness (from F2), rounding, each in [0, 1]."""
    first, second = np.array(list(VOWEL_FORMANTS_HZ.values()))[:, :2].T
    openness = (VOWEL_FORMANTS_HZ[vowel][0] - first.min()) / np.ptp(first)
    frontness = (VOWEL_FORMANTS_HZ[vowel][1] - second.min()) / np.ptp(second)
    return np.array([openness, frontness, VOWEL_ROUNDED[vowel]])


STRESSED_LEVEL = 1.0
UNSTRESSED_LEVEL = 0.45
STRESSED_PITCH_FACTOR = 1.25  # stressed syllables are pitched up (§4.6)
MIN_BEAT_INTERVAL_S = 0.4  # two stressed onsets closer than this would need an impossibly fast gesture
SYLLABLE_SECONDS = (0.10, 0.25)  # §4.6: syllables of 100–250 ms
SYLLABLES_PER_PHRASE = (3, 9)
PAUSE_SECONDS = (0.3, 0.8)  # silence added between phrases, times the speaker's pause_scale
LEADING_SILENCE_SECONDS = (0.3, 0.6)
RATE_JITTER = 0.2  # syllable intervals vary by ±20% around 1 / syllable_rate_hz
PHRASE_START_STRESS_PROBABILITY = 0.85


@dataclass(frozen=True)
class SpeechPlan:
    """The syllables of one recording, in time order (all arrays (S,))."""

    onsets_s: np.ndarray  # syllable start times
    durations_s: np.ndarray  # syllable lengths (§4.6: 100–250 ms)
    stressed: np.ndarray  # bool
    phrase_start: np.ndarray  # bool: first syllable of a phrase
    phrase_position: np.ndarray  # 0 at a phrase's first syllable, 1 at its last (pitch declination)
    words: tuple[str, ...]  # text of each syllable, e.g. "la"

    @property
    def vowels(self) -> tuple[str, ...]:
        return tuple(word[-1] for word in self.words)

    @property
    def vowel_features(self) -> np.ndarray:
        """(S, 3) openness, frontness and rounding of each syllable's vowel."""
        return np.array([_vowel_features(vowel) for vowel in self.vowels]).reshape(-1, 3)

    @property
    def levels(self) -> np.ndarray:
        """(S,) loudness of each syllable: stressed ones are louder, open vowels a little louder."""
        openness = self.vowel_features[:, 0]
        stress_gain = np.where(self.stressed, STRESSED_LEVEL, UNSTRESSED_LEVEL)
        return stress_gain * (0.75 + 0.25 * openness)


def _plan_speech(rng: np.random.Generator, style: SpeakerStyle, speech_end_s: float) -> SpeechPlan:
    """Lay out phrases of syllables separated by pauses, from a short silence up to `speech_end_s`."""
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
            stress_probability = PHRASE_START_STRESS_PROBABILITY if index == 0 else style.stress_probability
            is_stressed = rng.random() < stress_probability and time - last_stress >= MIN_BEAT_INTERVAL_S
            last_stress = time if is_stressed else last_stress
            onsets.append(time)
            durations.append(duration)
            stressed.append(is_stressed)
            phrase_start.append(index == 0)
            phrase_position.append(index / max(num_syllables - 1, 1))
            words.append(CONSONANTS[rng.integers(len(CONSONANTS))] + VOWELS[rng.integers(len(VOWELS))])
            time += interval
        time += rng.uniform(*PAUSE_SECONDS) * style.pause_scale


def _syllable_shape(elapsed_s: np.ndarray, duration_s: float) -> np.ndarray:
    """Amplitude shape of one syllable at `elapsed_s` after its onset: a 15 ms attack, a slow decay to
    half, a 30 ms release; zero outside the syllable."""
    attack, release = 0.015, 0.03
    inside = (elapsed_s >= 0) & (elapsed_s < duration_s)
    rise = 0.5 - 0.5 * np.cos(np.pi * np.clip(elapsed_s / attack, 0, 1))
    fall = 0.5 + 0.5 * np.cos(np.pi * np.clip((elapsed_s - (duration_s - release)) / release, 0, 1))
    decay = 1.0 - 0.5 * np.clip(elapsed_s / duration_s, 0, 1)
    return np.where(inside, rise * fall * decay, 0.0)


def _syllable_signals(plan: SpeechPlan, times: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Sum over syllables of shape(t) * weight: (S, C) weights at (N,) times -> (N, C)."""
    signal = np.zeros((len(times), weights.shape[1]))
    for onset, duration, weight in zip(plan.onsets_s, plan.durations_s, weights):
        window = slice(np.searchsorted(times, onset), np.searchsorted(times, onset + duration))
        signal[window] += _syllable_shape(times[window] - onset, duration)[:, None] * weight
    return signal


# --------------------------------------------------------------------------- audio

SPEECH_RMS = 0.12  # waveform RMS of a stressed syllable (the real sample's overall RMS is 0.12)
MAX_PARTIAL_HZ = 4000.0  # harmonics above this are left out
FORMANT_GAINS = (1.0, 0.6, 0.3)
FORMANT_WIDTHS_HZ = (90.0, 120.0, 180.0)
CONSONANT_BURST_S = 0.015  # noise burst at each syllable onset
NOISE_RMS = 0.002  # background noise
BURST_LEVEL = 0.5  # consonant burst relative to the vowel
FORMANT_FLOOR = 0.02  # gain of harmonics far from every formant
PHRASE_DECLINATION = 0.12  # pitch falls by this fraction from a phrase's first syllable to its last
SYLLABLE_PITCH_FALL = 0.08  # and by this fraction across each syllable


def _synthesize_speech(
    plan: SpeechPlan, style: SpeakerStyle, num_samples: int, sample_rate: int, rng: np.random.Generator
) -> np.ndarray:
    """(num_samples,) float32 waveform: each syllable a harmonic tone shaped by its vowel's formants."""
    wave = rng.normal(0.0, NOISE_RMS, num_samples)
    for onset, duration, level, stressed, position, vowel in zip(
        plan.onsets_s, plan.durations_s, plan.levels, plan.stressed, plan.phrase_position, plan.vowels
    ):
        start = int(round(onset * sample_rate))
        elapsed = np.arange(int(round(duration * sample_rate))) / sample_rate
        # Pitch: speaker's f0, raised when stressed, falling across the phrase and within the syllable.
        f0 = style.f0_hz * (STRESSED_PITCH_FACTOR if stressed else 1.0) * (1.0 - PHRASE_DECLINATION * position)
        pitch = f0 * (1.0 + SYLLABLE_PITCH_FALL * (0.5 - elapsed / duration))
        phase = 2 * np.pi * np.cumsum(pitch) / sample_rate
        harmonics = np.arange(1, int(min(MAX_PARTIAL_HZ, 0.45 * sample_rate) // f0) + 1)
        gains = sum(
            gain * np.exp(-0.5 * ((harmonics * f0 - formant) / width) ** 2)
            for formant, gain, width in zip(VOWEL_FORMANTS_HZ[vowel], FORMANT_GAINS, FORMANT_WIDTHS_HZ)
        )
        gains = (gains + FORMANT_FLOOR) / np.sqrt(harmonics)
        gains *= np.sqrt(2.0 / np.sum(gains**2))  # unit RMS
        voiced = gains @ np.sin(np.outer(harmonics, phase))
        burst = np.diff(rng.normal(0.0, 0.5, len(elapsed) + 1)) * np.exp(-elapsed / CONSONANT_BURST_S)
        shape = _syllable_shape(elapsed, duration)
        wave[start : start + len(elapsed)] += SPEECH_RMS * level * (shape * voiced + BURST_LEVEL * burst)
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
SPINE = (3, 6, 9)
LEFT_LEG, RIGHT_LEG = (1, 4, 7), (2, 5, 8)  # hip, knee, ankle
LEFT_ARM = (13, 16, 18, 20)  # collar, shoulder, elbow, wrist
RIGHT_ARM = tuple(LEFT_TO_RIGHT[joint] for joint in LEFT_ARM)
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


# --------------------------------------------------------------------------- motion: signals


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
    """The gesture phase of every frame: one loop per interval between consecutive beats."""

    phase: np.ndarray  # (T,) radians, 2*pi*k exactly at beat k
    cycle: np.ndarray  # (T,) index of the interval each frame lies in
    durations_s: np.ndarray  # (K,) length of each interval


BEAT_SLOWDOWN = 0.7  # the phase runs (1 - this) times its mean speed at a beat and (1 + this) mid-cycle
MAX_GESTURE_CYCLE_S = 1.6  # longer intervals (pauses) get only a small, slow movement


def _beat_cycles(beats_s: np.ndarray, times: np.ndarray) -> BeatCycles:
    """Gesture phase for beats at `beats_s` (sorted): slowest at the beats, fastest between them.

    Virtual beats one second before the start and after the end close the first and last interval.
    """
    bounds = np.concatenate([[min(times[0], *beats_s[:1]) - 1.0], beats_s, [times[-1] + 1.0]])
    cycle = np.searchsorted(bounds, times, side="right") - 1
    durations = np.diff(bounds)
    progress = (times - bounds[cycle]) / durations[cycle]
    warped = progress - BEAT_SLOWDOWN * np.sin(2 * np.pi * progress) / (2 * np.pi)
    return BeatCycles(phase=2 * np.pi * (cycle + warped), cycle=cycle, durations_s=durations)


# Beat-gesture directions in (collar, shoulder, elbow, wrist) axis-angle of the LEFT arm, per radian of
# gesture amplitude. LIFT raises the hand up and forward (shoulder and elbow flexion); SWEEP carries it
# outwards (shoulder abduction), a little further than LIFT raises it.
GESTURE_LIFT = np.array([[0.0, 0.0, 0.08], [0.0, -0.35, 0.15], [0.0, -0.75, 0.0], [-0.25, 0.0, 0.1]])
GESTURE_SWEEP = np.array([[0.0, 0.0, 0.05], [-0.3, 0.1, 0.6], [0.15, 0.0, 0.0], [0.0, 0.2, 0.0]])
SWEEP_RATIO = 1.5  # sideways extent of the loop relative to its height: wide enough that the
# hand never slows down at the top of the loop (one speed minimum per beat, at the beat)
IDLE_ARM_FACTOR = 0.2  # relative amplitude of an arm that does not take part in a beat
JOINING_ARM_FACTOR = 0.7  # relative amplitude of the other arm when it joins a beat
BEAT_SIZE_JITTER = (0.7, 1.1)  # each beat's amplitude varies in this range around the speaker's
PAUSE_GESTURE_FACTOR = 0.25  # relative amplitude over an interval longer than MAX_GESTURE_CYCLE_S


def _arm_amplitudes(
    rng: np.random.Generator, cycles: BeatCycles, style: SpeakerStyle
) -> dict[str, np.ndarray]:
    """Per interval and arm, the gesture amplitude in radians: {"left": (K,), "right": (K,)}."""
    num_cycles = len(cycles.durations_s)
    beat_size = style.gesture_amplitude * rng.uniform(*BEAT_SIZE_JITTER, num_cycles)
    beat_size[cycles.durations_s > MAX_GESTURE_CYCLE_S] *= PAUSE_GESTURE_FACTOR
    beat_size[[0, -1]] *= IDLE_ARM_FACTOR  # before the first and after the last beat
    joins = rng.random(num_cycles) < style.both_hands_probability
    other = beat_size * np.where(joins, JOINING_ARM_FACTOR, IDLE_ARM_FACTOR)
    if style.dominant_hand == "left":
        return {"left": beat_size, "right": other}
    return {"left": other, "right": beat_size}


def _arm_gesture(amplitude: np.ndarray, phase: np.ndarray) -> np.ndarray:
    """(T,) amplitude and phase -> (T, 4, 3) left-arm axis-angle offsets tracing one loop per cycle.

    At phase 2*pi*k the offset is zero (the hold point) whatever the amplitude, so amplitudes may change
    from one cycle to the next without a jump; the loop's top is reached mid-cycle.
    """
    lift = amplitude * (1.0 - np.cos(phase))
    sweep = -amplitude * SWEEP_RATIO * np.sin(phase)
    return lift[:, None, None] * GESTURE_LIFT + sweep[:, None, None] * GESTURE_SWEEP


def _hand_pose(rng: np.random.Generator, cycles: BeatCycles, activity: np.ndarray) -> np.ndarray:
    """(T, 15, 3) left-hand axis-angle: a base curl, plus per cycle a hand shape reached mid-gesture.

    `activity` (T,) in [0, 1] scales the hand shape (an idle arm's hand barely moves).
    """
    shapes = rng.uniform(*HAND_SHAPE_CURL, (len(cycles.durations_s), len(FINGER_BASE_CURL)))
    opening = 0.5 * (1.0 - np.cos(cycles.phase))  # 0 at beats, 1 mid-gesture
    curl = np.asarray(FINGER_BASE_CURL) + (activity * opening)[:, None] * shapes[cycles.cycle]  # (T, 5)
    axes = np.stack([FINGER_CURL_AXIS] * 4 + [THUMB_CURL_AXIS])  # (5, 3)
    per_segment = curl[:, :, None, None] * np.asarray(FINGER_SEGMENT_WEIGHTS)[:, None] * axes[:, None, :]
    return rearrange(per_segment, "t finger segment xyz -> t (finger segment) xyz")


NOD_WIDTH_S = 0.12
BEAT_NOD_FACTOR = 0.3  # a stressed syllable nods this much relative to a phrase start


def _nods(plan: SpeechPlan, times: np.ndarray, style: SpeakerStyle) -> np.ndarray:
    """(T,) head pitch in radians: a Gaussian nod peaking on every phrase start, smaller ones on stresses."""
    sizes = style.nod_amplitude * np.where(plan.phrase_start, 1.0, np.where(plan.stressed, BEAT_NOD_FACTOR, 0.0))
    offsets = (times[:, None] - plan.onsets_s[None, :]) / NOD_WIDTH_S
    return (np.exp(-0.5 * offsets**2) * sizes).sum(axis=1)


WEIGHT_SHIFT_SECONDS = 1.2  # duration of one shift from leg to leg


def _weight_shift(rng: np.random.Generator, times: np.ndarray, style: SpeakerStyle) -> np.ndarray:
    """(T,) weight position in [-1, 1] (+1: on the left leg), moving smoothly from side to side."""
    shift = np.full(len(times), rng.uniform(-1.0, 1.0))
    change = rng.uniform(0.2, 1.0) * style.weight_shift_period_s
    while change < times[-1]:
        target = -np.sign(shift[-1] or 1.0) * rng.uniform(0.5, 1.0)
        progress = np.clip((times - change) / WEIGHT_SHIFT_SECONDS, 0.0, 1.0)
        shift = shift + (target - shift[-1]) * (0.5 - 0.5 * np.cos(np.pi * progress))
        change += rng.uniform(0.7, 1.3) * style.weight_shift_period_s
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


# --------------------------------------------------------------------------- motion: assembly

ARM_JITTER_RAD = 0.01  # slow wander of every arm joint on top of the gestures
SPINE_TWIST_RAD = 0.06  # the upper back turns towards a gesturing arm
NECK_SHARE_OF_NOD = 0.4  # the head joint takes the rest
JAW_OPEN_RAD = 0.06  # jaw opening of a loud open vowel (the real sample's jaw stays within 0.05 rad)
JAW_LOUDNESS_SHARE = 0.4  # the jaw follows loudness this much and the vowel's openness the rest
EYE_JITTER_RAD = 0.01  # eyes stay near identity
EXPRESSION_WANDER = 0.08  # slow wander of every expression coefficient
EXPRESSION_LOUDNESS_GAIN = 0.3  # the speech-driven coefficients also rise with loudness
ENVELOPE_OVERSAMPLING = 8  # speech signals are averaged over each motion frame from this many points
FACING_RANGE_RAD = 0.3  # each recording faces a random direction within ± this
FACING_DRIFT_RAD = 0.04  # slow turning during a recording
PLACE_STD_M = 0.05  # where the speaker stands, per recording
TRANS_SWAY_M = 0.004  # slow sway of the pelvis position


def _frame_average(plan: SpeechPlan, weights: np.ndarray, num_frames: int, fps: int) -> np.ndarray:
    """Syllable signals (weights (S, C)) averaged over each motion frame's 1/fps window: (T, C)."""
    offsets = (np.arange(ENVELOPE_OVERSAMPLING) + 0.5) / ENVELOPE_OVERSAMPLING - 0.5
    fine_times = (np.arange(num_frames)[:, None] + offsets[None, :]).reshape(-1) / fps
    fine = _syllable_signals(plan, fine_times, weights)
    return fine.reshape(num_frames, ENVELOPE_OVERSAMPLING, -1).mean(axis=1)


def _compose(rest: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Apply (T, J, 3) axis-angle offsets in each joint's rest-rotated frame: R = R_rest · R_offset."""
    rest_rotations = Rotation.from_rotvec(repeat(rest, "joint xyz -> (t joint) xyz", t=len(offsets)))
    rotations = rest_rotations * Rotation.from_rotvec(rearrange(offsets, "t joint xyz -> (t joint) xyz"))
    return rotations.as_rotvec().reshape(offsets.shape)


def _gesture_offsets(rng: np.random.Generator, plan: SpeechPlan, style: SpeakerStyle, times: np.ndarray) -> np.ndarray:
    """(T, 55, 3) axis-angle offsets of both arms, hands and the upper back: one beat loop per interval
    between stressed onsets."""
    offsets = np.zeros((len(times), NUM_JOINTS, 3))
    cycles = _beat_cycles(plan.onsets_s[plan.stressed], times)
    amplitudes = _arm_amplitudes(rng, cycles, style)
    for side, arm, hand_first in (("left", LEFT_ARM, LEFT_HAND_FIRST), ("right", RIGHT_ARM, RIGHT_HAND_FIRST)):
        amplitude = amplitudes[side][cycles.cycle]
        gesture = _arm_gesture(amplitude, cycles.phase) + _smooth_noise(rng, times, (len(arm), 3), ARM_JITTER_RAD)
        hand = _hand_pose(rng, cycles, np.clip(amplitude / style.gesture_amplitude, 0.0, 1.0))
        if side == "right":
            gesture, hand = mirror_to_right(gesture), mirror_to_right(hand)
        offsets[:, list(arm)] += gesture
        offsets[:, hand_first : hand_first + HAND_JOINTS_PER_SIDE] += hand
    left_minus_right = (amplitudes["left"] - amplitudes["right"])[cycles.cycle] / style.gesture_amplitude
    offsets[:, SPINE3, 1] += SPINE_TWIST_RAD * left_minus_right * 0.5 * (1.0 - np.cos(cycles.phase))
    return offsets


def _head_and_torso_offsets(
    rng: np.random.Generator, plan: SpeechPlan, style: SpeakerStyle, times: np.ndarray
) -> np.ndarray:
    """(T, 55, 3) axis-angle offsets: nods on phrase starts and stresses, slow look-around, torso sway."""
    offsets = np.zeros((len(times), NUM_JOINTS, 3))
    nod = _nods(plan, times, style)
    offsets[:, NECK, 0] += NECK_SHARE_OF_NOD * nod
    offsets[:, HEAD, 0] += (1.0 - NECK_SHARE_OF_NOD) * nod
    offsets[:, [NECK, HEAD]] += _smooth_noise(rng, times, (2, 3), style.sway_amplitude, max_hz=0.6)
    offsets[:, list(SPINE)] += _smooth_noise(rng, times, (len(SPINE), 3), style.sway_amplitude, max_hz=0.6)
    return offsets


def _face(
    rng: np.random.Generator, plan: SpeechPlan, identity: SpeakerIdentity, num_frames: int, fps: int
) -> tuple[np.ndarray, np.ndarray]:
    """Jaw and eyes ((T, 55, 3) axis-angle offsets) and expressions ((T, 100)) following the syllables'
    loudness and vowel shape."""
    times = np.arange(num_frames) / fps
    mouth = _frame_average(plan, plan.levels[:, None] * plan.vowel_features, num_frames, fps)  # (T, 3)
    loudness = _frame_average(plan, plan.levels[:, None], num_frames, fps)[:, 0]  # (T,)
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
    lower_offsets, sideways_m = _lower_body_offsets(_weight_shift(rng, times, style))
    face_offsets, expressions = _face(rng, plan, identity, num_frames, fps)
    offsets = (
        _gesture_offsets(rng, plan, style, times)
        + _head_and_torso_offsets(rng, plan, style, times)
        + lower_offsets
        + face_offsets
    )
    poses = _compose(_rest_pose() + identity.posture, offsets)
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
