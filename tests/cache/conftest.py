"""The cache tests' volume."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture
def volume() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    image = rng.integers(-1024, 3000, size=(70, 90, 100), dtype=np.int16)
    mask = np.zeros((2, 70, 90, 100), np.uint8)
    mask[0, 10:20, 30:40, 50:60] = 1
    mask[1, 60:65, 5:9, 90:99] = 1
    affine = np.array([[-0.7, 0, 0, 120.5], [0, -0.7, 0, 80.25], [0, 0, 2.5, -300.0], [0, 0, 0, 1]])
    return image, mask, affine
