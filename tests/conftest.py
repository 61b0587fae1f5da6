"""Shared test fixtures: the ../shared reference folder and small synthetic corpora."""
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.exists():
        pytest.skip("../shared is not present (a user's clone has none)")
    return SHARED


@pytest.fixture(scope="session")
def synthetic_corpus(tmp_path_factory) -> Path:
    """A small synthetic BEAT2-format corpus (2 speakers × 3 sequences × 6 s), made once per test session."""
    from echomask.data.synthetic import write_synthetic_corpus

    return write_synthetic_corpus(
        tmp_path_factory.mktemp("synthetic"), num_speakers=2, sequences_per_speaker=3, seconds_per_sequence=6, seed=3
    )


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    """Small tensor ops are far faster with one thread on the 2-core test machines."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
