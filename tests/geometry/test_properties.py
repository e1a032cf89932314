"""Hypothesis properties of the geometry: file order, orientation round trips, resampling.

Oracles are analytic, not dicomml's own output: the affine a DICOM series must
have follows from PS3.3 C.7.6.2.1.1 (position of pixel (r, c) is
``IPP + c * dc * row_cosine + r * dr * col_cosine``, LPS+, turned to RAS+), the
48 orientation codes are enumerated independently, and trilinear resampling
must reproduce a linear function of world position exactly.
"""

from __future__ import annotations

from itertools import permutations, product

import numpy as np
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import dicomml
from dicomml.dicom.synthetic import write_series
from dicomml.transforms import Orient, Resample
from dicomml.transforms.functional.spatial import _TOL
from dicomml.volume import Volume

#: Every orientation code: one letter of each pair L/R, P/A, I/S, in any axis order (6 x 8 = 48).
ALL_CODES = sorted(
    "".join(pair[flip] for pair, flip in zip(pairs, flips))
    for pairs in permutations(("LR", "PA", "IS"))
    for flips in product((0, 1), repeat=3)
)
_SETTINGS = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow]}


def _rotation(angles: tuple[float, float, float]) -> np.ndarray:
    """Rotation matrix of intrinsic x-y-z angles in radians."""
    ax, ay, az = angles
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rx @ ry @ rz


#: Rotations up to 35 degrees about each axis (away from the 45-degree ties between closest axes), often none.
_angle = st.one_of(st.just(0.0), st.floats(-0.6, 0.6, allow_nan=False))
angles = st.tuples(_angle, _angle, _angle)
spacings = st.floats(0.3, 4.0, allow_nan=False)
origins = st.tuples(*[st.floats(-200, 200, allow_nan=False)] * 3)


@st.composite
def series_geometry(draw: st.DrawFn) -> dict:
    """A random oblique stack: IOP cosines, pixel spacing, slice step along +/- normal, origin, pixels, shuffle seed."""
    rotation = _rotation(draw(angles))
    shape = (draw(st.integers(2, 6)), draw(st.integers(2, 7)), draw(st.integers(2, 7)))
    return {
        "row_cosine": rotation[:, 0],
        "col_cosine": rotation[:, 1],
        "pixel_spacing": (draw(spacings), draw(spacings)),
        "step": draw(spacings) * draw(st.sampled_from((1.0, -1.0))),  # files may run against the normal
        "origin": np.array(draw(origins)),
        "pixels": draw(arrays(np.uint16, shape, elements=st.integers(0, 4095))),
        "seed": draw(st.integers(0, 2**32 - 1)),
    }


@given(geometry=series_geometry())
@settings(max_examples=30, **_SETTINGS)
def test_volume_does_not_depend_on_file_order(tmp_path_factory, geometry):
    g = geometry
    normal = np.cross(g["row_cosine"], g["col_cosine"])
    n = g["pixels"].shape[0]
    positions = g["origin"] + np.outer(np.arange(n) * g["step"], normal)
    folder = tmp_path_factory.mktemp("series")
    paths = write_series(
        folder,
        g["pixels"],
        positions=positions,
        shuffle=g["seed"],
        rescale=None,
        orientation=[*g["row_cosine"], *g["col_cosine"]],
        pixel_spacing=g["pixel_spacing"],
    )
    rng = np.random.default_rng(g["seed"])
    first = dicomml.load_files([paths[i] for i in rng.permutation(n)])
    second = dicomml.load_files([paths[i] for i in rng.permutation(n)][::-1])

    # The expected volume: slices ascending along the normal, whatever the names and InstanceNumbers say.
    order = np.argsort(positions @ normal)
    dr, dc = g["pixel_spacing"]
    lps = np.eye(4)
    lps[:3, 0] = normal * abs(g["step"])
    lps[:3, 1] = g["col_cosine"] * dr
    lps[:3, 2] = g["row_cosine"] * dc
    lps[:3, 3] = positions[order[0]]
    expected_affine = np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps
    for volume in (first, second):
        np.testing.assert_array_equal(volume.array, g["pixels"][order])
        np.testing.assert_allclose(volume.affine, expected_affine, rtol=0, atol=1e-4)  # IPP/IOP are decimal strings
    np.testing.assert_array_equal(first.affine, second.affine)


@st.composite
def grids(draw: st.DrawFn) -> tuple[np.ndarray, tuple[int, int, int]]:
    """A random oblique affine (RAS+ mm, any axis order, any flips) and a small shape."""
    rotation = _rotation(draw(angles))
    axes = draw(st.permutations(range(3)))
    flips = np.array([draw(st.sampled_from((1.0, -1.0))) for _ in range(3)])
    affine = np.eye(4)
    affine[:3, :3] = rotation[:, axes] * flips * np.array([draw(spacings) for _ in range(3)])
    affine[:3, 3] = draw(origins)
    shape = tuple(draw(st.integers(1, 6)) for _ in range(3))
    return affine, shape  # type: ignore[return-value]


@given(grid=grids(), seed=st.integers(0, 2**32 - 1))
@settings(max_examples=25, **_SETTINGS)
def test_orient_to_each_of_the_48_codes_and_back_restores_array_and_affine(grid, seed):
    affine, shape = grid
    array = np.random.default_rng(seed).integers(-1000, 1000, size=(2, *shape)).astype(np.int16)
    volume = Volume(array, affine, axes=("time",))
    start = volume.orientation
    for code in ALL_CODES:
        there = Orient(code)(volume)
        assert there.orientation == code
        assert there.array.dtype == array.dtype
        assert sorted(there.array.shape[1:]) == sorted(shape)
        back = Orient(start)(there)
        np.testing.assert_array_equal(back.array, array)
        np.testing.assert_array_equal(back.affine[:3, :3], affine[:3, :3])
        # The origin goes through t + a (n - 1) and back: exact up to float64 rounding (a few ulp of 1 mm).
        np.testing.assert_allclose(back.affine[:3, 3], affine[:3, 3], rtol=0, atol=1e-12 * (1 + np.abs(affine).max() * max(shape)))
        np.testing.assert_array_equal(back.affine[3], [0, 0, 0, 1])


def _world(affine: np.ndarray, index: np.ndarray) -> np.ndarray:
    return index @ affine[:3, :3].T + affine[:3, 3]


def _corners(shape: tuple[int, ...]) -> np.ndarray:
    """The 8 outer voxel-edge corners of a grid and its center, in (fractional) indices."""
    edges = np.array(list(product(*[(-0.5, n - 0.5) for n in shape])))
    return np.vstack([edges, (np.array(shape) - 1) / 2.0])


def _resample_ramp(affine: np.ndarray, shape: tuple[int, ...], target) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Resample the image ``g . x`` (x the RAS+ voxel centre); return the output affine, image and the same ramp at its centres."""
    gradient = np.array([0.3, -0.2, 0.5])
    centers = _world(affine, np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1).reshape(-1, 3))
    image = torch.from_numpy((centers @ gradient).reshape(1, *shape))
    out = Resample(spacing=list(target) if np.ndim(target) else target)({"image": image, "affine": affine})
    out_affine, out_image = np.asarray(out["affine"]), out["image"].numpy()[0]
    out_index = np.stack(np.meshgrid(*[np.arange(n) for n in out_image.shape], indexing="ij"), -1)
    return out_affine, out_image, _world(out_affine, out_index) @ gradient


def _inside(affine: np.ndarray, shape: tuple[int, ...], out_affine: np.ndarray, out_shape: tuple[int, ...]) -> np.ndarray:
    """Output voxels whose centre lies within the input's voxel centres (no border clamp)."""
    out_index = np.stack(np.meshgrid(*[np.arange(n) for n in out_shape], indexing="ij"), -1)
    source = (_world(out_affine, out_index) - affine[:3, 3]) @ np.linalg.inv(affine[:3, :3]).T
    return np.all((source >= -1e-9) & (source <= np.array(shape) - 1 + 1e-9), axis=-1)


@given(grid=grids(), target=st.tuples(*[st.floats(0.4, 5.0, allow_nan=False)] * 3))
@settings(max_examples=40, **_SETTINGS)
def test_resample_keeps_the_field_of_view_and_a_linear_world_function(grid, target):
    affine, shape = grid
    # A field of view under half an output voxel still gets one voxel (never zero), which overshoots it.
    assume(np.all(np.array(shape) * np.linalg.norm(affine[:3, :3], axis=0) >= np.array(target) / 2))
    # A spacing within 1e-5 of the input's is copied, not interpolated, by design (see
    # test_a_spacing_within_the_tolerance_of_the_input_is_copied): interpolation is what is checked here.
    ratio = np.array(target) / np.linalg.norm(affine[:3, :3], axis=0)
    assume(not np.any((ratio != 1) & (np.abs(ratio - 1) < _TOL)))
    out_affine, out_image, expected = _resample_ramp(affine, shape, target)

    # The affine: requested spacing, same directions.
    np.testing.assert_allclose(np.linalg.norm(out_affine[:3, :3], axis=0), target, rtol=1e-9)
    np.testing.assert_allclose(out_affine[:3, :3] / target, affine[:3, :3] / np.linalg.norm(affine[:3, :3], axis=0), atol=1e-12)
    # The field of view: the first corner exactly, the others and the center within half an output voxel.
    moved = _world(out_affine, _corners(out_image.shape)) - _world(affine, _corners(shape))
    in_output_voxels = np.abs(moved @ np.linalg.inv(out_affine[:3, :3]).T)
    assert np.all(in_output_voxels <= 0.5 + 1e-9), in_output_voxels
    np.testing.assert_allclose(moved[0], 0, atol=1e-9)

    # The values: trilinear interpolation is exact for a linear function wherever no border clamp applies.
    inside = _inside(affine, shape, out_affine, out_image.shape)
    np.testing.assert_allclose(out_image[inside], expected[inside], atol=1e-6)


def test_resample_axis_keeping_its_voxel_count_is_still_interpolated():
    affine, shape = np.diag([0.97, 0.97, 0.97, 1.0]), (16, 16, 16)
    out_affine, out_image, expected = _resample_ramp(affine, shape, 1.0)
    assert out_image.shape == shape  # 16 * 0.97 / 1.0 = 15.52 rounds to 16
    inside = _inside(affine, shape, out_affine, out_image.shape)
    np.testing.assert_allclose(out_image[inside], expected[inside], atol=1e-6)
