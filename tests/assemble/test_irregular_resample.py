"""equidistant / correct_tilt on arrays whose resampled values are known exactly."""

from __future__ import annotations

import numpy as np
import pytest

from dicomml.assemble.resample import correct_tilt, equidistant


def test_equidistant_keeps_ends_and_interpolates_between():
    planes = np.array([0.0, 10.0, 30.0], np.float32)[:, None, None] * np.ones((1, 2, 3), np.float32)
    affine = np.diag([1.5, 1.0, 1.0, 1.0])  # mean step of the 3 slices over 3 mm
    out, new = equidistant(planes, np.array([0.0, 1.0, 3.0]), 1.0, affine)
    assert out.shape == (4, 2, 3) and out.dtype == np.float32
    np.testing.assert_allclose(out[:, 1, 2], [0, 10, 20, 30])
    assert new[0, 0] == pytest.approx(1.0)


def test_equidistant_handles_a_leading_time_axis():
    planes = np.stack([np.zeros((3, 1, 1)), np.ones((3, 1, 1))]).astype(np.int16)
    out, _ = equidistant(planes, np.array([0.0, 2.0, 3.0]), 1.0, np.diag([1.5, 1, 1, 1]))
    assert out.shape == (2, 4, 1, 1)
    np.testing.assert_array_equal(out[1, :, 0, 0], [1, 1, 1, 1])


def test_tilt_shift_moves_each_slice_back_onto_the_normal():
    # Slice k of the input sits k rows further on; after correction all slices line up.
    n, rows = 3, 5
    base = np.arange(rows, dtype=np.float32)[:, None] * np.ones((1, 2), np.float32)
    planes = np.stack([base] * n)
    affine = np.eye(4)
    affine[:3, 0] = [2.0, 1.0, 0.0]  # 2 mm along the normal (x), one row (y) in plane
    out, new = correct_tilt(planes, affine)
    assert out.shape == (3, rows + 2, 2)
    np.testing.assert_allclose(new[:3, 0], [2.0, 0.0, 0.0])
    # Output row r' of slice k holds input row r' - k: shifted by one row per slice, min elsewhere.
    for k in range(n):
        np.testing.assert_array_equal(out[k, k : k + rows, 0], base[:, 0])
        assert np.all(out[k, :k, 0] == 0) and np.all(out[k, k + rows :, 0] == 0)
    np.testing.assert_allclose(new[:3, 3], affine[:3, 3])
