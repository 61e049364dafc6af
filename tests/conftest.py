import numpy as np
import pytest


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def blobs(rng, n=600, d=20, classes=4, spread=3.0):
    """A small separable problem: Gaussian blobs around random class centres."""
    centres = rng.standard_normal((classes, d)) * spread
    y = rng.integers(0, classes, n)
    X = (centres[y] + rng.standard_normal((n, d))).astype(np.float32)
    return X, y.astype(np.int64)
