"""Horizontal drift figures of generated translation (echomask.motion.drift, issue 14)."""
import numpy as np
import pytest

from echomask.motion.drift import format_drift, horizontal_ranges, translation_drift


def track(x_range: float, z_range: float, frames: int = 91) -> np.ndarray:
    ramp = np.linspace(0.0, 1.0, frames)
    return np.stack([2.0 + x_range * ramp, 1.3 + 0.5 * ramp, -1.0 + z_range * np.sin(np.pi * ramp)], axis=-1)


def test_ranges_are_max_minus_min_of_x_and_z():
    assert horizontal_ranges(track(0.3, 0.2)) == pytest.approx({"x": 0.3, "z": 0.2})


def test_target_is_twice_the_truth_plus_ten_centimetres():
    truth = {"a": track(0.05, 0.02), "b": track(0.05, 0.02)}
    drift = translation_drift({"a": track(0.19, 0.13), "b": track(1.6, 0.02)}, truth)
    assert drift["a"].within_target and not drift["b"].within_target
    table = format_drift(drift)
    assert "1.600 m vs  0.050 m" in table and table.splitlines()[2].endswith("DRIFTS")


def test_bad_input_is_rejected():
    with pytest.raises(ValueError, match="no ground truth for \\['c'\\]"):
        translation_drift({"c": track(0.1, 0.1)}, {})
    with pytest.raises(ValueError, match=r"\(T, 3\)"):
        horizontal_ranges(np.zeros((4, 2)))
