"""`axcodes` against nibabel's `aff2axcodes` (the oracle), on the affines a scan gives and on awkward ones."""

from __future__ import annotations

from itertools import permutations, product

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from nibabel.orientations import aff2axcodes

from dicomml.errors import GeometryError
from dicomml.geometry import axcodes


def _nibabel(affine: np.ndarray) -> str | None:
    codes = aff2axcodes(affine)
    return None if None in codes else "".join(codes)


def _affine(matrix: np.ndarray) -> np.ndarray:
    affine = np.eye(4)
    affine[:3, :3] = matrix
    affine[:3, 3] = [12.5, -80.0, 3.0]
    return affine


@pytest.mark.parametrize("order", list(permutations(range(3))))
@pytest.mark.parametrize("signs", list(product((-1.0, 1.0), repeat=3)))
def test_the_48_codes_of_permuted_flipped_scaled_axes(order: tuple[int, ...], signs: tuple[float, ...]) -> None:
    matrix = np.eye(3)[:, order] * np.array(signs) * np.array([0.7, 0.7, 2.5])
    assert axcodes(_affine(matrix)) == _nibabel(_affine(matrix))


def test_ties_and_rank_deficient_axes_choose_as_nibabel() -> None:
    c = np.sqrt(0.5)
    cases = [
        [[c, -c, 0], [c, c, 0], [0, 0, 1]],  # 45 degrees in plane: each column ties
        [[c, c, 0], [c, c, 0], [0, 0, 1]],  # two equal columns: rank 2
        [[1, 0, 0], [0, 1, 0], [0, 0, 0]],  # a zero third column
        [[1, 0.9, 0], [0, 0.1, 0], [0, 0, 1]],  # strong shear
    ]
    for matrix in cases:
        affine = _affine(np.array(matrix, dtype=float))
        expected = _nibabel(affine)
        if expected is None:
            with pytest.raises(GeometryError, match="degenerate"):
                axcodes(affine)
        else:
            assert axcodes(affine) == expected


@settings(max_examples=300, deadline=None)
@given(arrays(np.float64, (3, 3), elements=st.floats(-10, 10, allow_nan=False)))
def test_any_matrix(matrix: np.ndarray) -> None:
    affine = _affine(matrix)
    expected = _nibabel(affine)
    if expected is None:
        with pytest.raises(GeometryError):
            axcodes(affine)
    else:
        assert axcodes(affine) == expected
