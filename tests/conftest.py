"""Shared fixtures: small seeded random artifacts (no downloads needed)."""
import zlib

import numpy as np
import pytest

from bitaccel.golden.random_artifact import random_artifact


@pytest.fixture(scope="session")
def tiny_artifacts():
    """Tiny random artifacts at every activation width: {bits: Artifact}."""
    return {bits: random_artifact("tiny", seed=10 + bits, act_bits=bits) for bits in (1, 2, 4, 8)}


@pytest.fixture
def rng(request):
    """A generator seeded from the test's name (stable across runs); the seed is printed."""
    seed = zlib.crc32(request.node.name.encode())
    print(f"seed={seed}")
    return np.random.default_rng(seed)


@pytest.fixture
def one_torch_thread():
    """Tiny tensors: one torch thread avoids OpenMP overhead on a busy 2-core machine (restored after)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
