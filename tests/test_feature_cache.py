"""echomask.audio.cache: round trip, stale and corrupt entries are reported and rebuilt, atomic writes."""
import shutil

import numpy as np
import pytest

from echomask.audio.cache import FeatureCache, FeatureCacheWarning

KEY = {"extractor": "hubert", "low_layer": 11, "fps": 30, "projection": ["orthonormal", 0]}


def make_arrays(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"low": rng.standard_normal((90, 256)).astype(np.float32), "envelope": rng.random(90)}


def assert_same_arrays(actual: dict, expected: dict) -> None:
    assert actual.keys() == expected.keys()
    for name in expected:
        assert actual[name].dtype == expected[name].dtype
        np.testing.assert_array_equal(actual[name], expected[name])


def test_round_trip(tmp_path):
    cache = FeatureCache(tmp_path)
    arrays = make_arrays()
    path = cache.put("2_scott_0_1_1", KEY, arrays)
    assert path.parent.parent == tmp_path and path.name == "2_scott_0_1_1.npz"
    assert (path.parent / "key.json").exists()
    assert_same_arrays(cache.get("2_scott_0_1_1", KEY), arrays)
    assert not list(path.parent.glob("*.tmp"))  # the temporary file was renamed away


def test_missing_entry_is_none(tmp_path):
    assert FeatureCache(tmp_path).get("absent", KEY) is None


def test_other_key_is_a_miss_and_gets_rebuilt(tmp_path):
    cache = FeatureCache(tmp_path)
    cache.put("item", KEY, make_arrays(0))
    other_key = {**KEY, "low_layer": 10}
    assert cache.get("item", other_key) is None
    calls = []
    rebuilt = cache.get_or_compute("item", other_key, lambda: calls.append(1) or make_arrays(1))
    assert_same_arrays(rebuilt, make_arrays(1))
    assert_same_arrays(cache.get_or_compute("item", other_key, lambda: calls.append(1) or make_arrays(2)), rebuilt)
    assert len(calls) == 1  # the second call was served from the cache
    assert_same_arrays(cache.get("item", KEY), make_arrays(0))  # the first key's entry is untouched


def test_stale_entry_at_the_keys_path_is_rejected_and_rebuilt(tmp_path):
    """An entry whose stored key differs from the requested one (e.g. copied in by hand) is never used."""
    cache = FeatureCache(tmp_path)
    other_key = {**KEY, "fps": 25}
    made_with_other_key = cache.put("item", other_key, make_arrays(0))
    target = cache.path("item", KEY)
    target.parent.mkdir(parents=True)
    shutil.copy(made_with_other_key, target)
    with pytest.warns(FeatureCacheWarning, match=r"item\.npz.*stale"):
        assert cache.get("item", KEY) is None
    with pytest.warns(FeatureCacheWarning, match="stale"):
        rebuilt = cache.get_or_compute("item", KEY, lambda: make_arrays(1))
    assert_same_arrays(rebuilt, make_arrays(1))
    assert_same_arrays(cache.get("item", KEY), make_arrays(1))


@pytest.mark.parametrize("keep_fraction", [0.0, 0.1, 0.5, 0.99])
def test_truncated_file_is_rejected_with_a_warning_naming_it(tmp_path, keep_fraction):
    cache = FeatureCache(tmp_path)
    path = cache.put("seq_7", KEY, make_arrays())
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * keep_fraction)])
    with pytest.warns(FeatureCacheWarning, match=r"seq_7\.npz.*unreadable"):
        assert cache.get("seq_7", KEY) is None


def test_flipped_byte_is_rejected(tmp_path):
    cache = FeatureCache(tmp_path)
    path = cache.put("seq_7", KEY, make_arrays())
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # inside the "low" array's bytes
    path.write_bytes(bytes(data))
    with pytest.warns(FeatureCacheWarning, match=r"seq_7\.npz"):
        assert cache.get("seq_7", KEY) is None


def test_checksum_mismatch_is_rejected(tmp_path):
    """A well-formed file whose arrays do not match the stored checksum (zip CRCs alone would pass it)."""
    cache = FeatureCache(tmp_path)
    path = cache.put("seq_7", KEY, make_arrays())
    with np.load(path) as npz:
        contents = {name: npz[name] for name in npz.files}
    contents["envelope"] = contents["envelope"] + 1.0
    np.savez(path, **contents)
    with pytest.warns(FeatureCacheWarning, match=r"seq_7\.npz.*checksum"):
        assert cache.get("seq_7", KEY) is None


def test_file_without_key_or_checksum_is_rejected(tmp_path):
    cache = FeatureCache(tmp_path)
    path = cache.path("seq_7", KEY)
    path.parent.mkdir(parents=True)
    np.savez(path, **make_arrays())
    with pytest.warns(FeatureCacheWarning, match=r"seq_7\.npz.*no stored key or checksum"):
        assert cache.get("seq_7", KEY) is None


def test_bad_item_ids_keys_and_arrays_are_refused(tmp_path):
    cache = FeatureCache(tmp_path)
    for item_id in ("", "..", "a/b"):
        with pytest.raises(ValueError, match="item id"):
            cache.get(item_id, KEY)
    with pytest.raises(ValueError, match="JSON-able"):
        cache.put("item", {"layer": object()}, make_arrays())
    with pytest.raises(ValueError, match="reserved"):
        cache.put("item", KEY, {"__key__": np.zeros(2)})
    with pytest.raises(ValueError, match="numeric"):
        cache.put("item", KEY, {"ragged": np.array([[1], [1, 2]], dtype=object)})
