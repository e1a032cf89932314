"""Plane placement and nearest resampling, against nibabel's resampler."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from dicomml.geometry import LPS_TO_RAS, dicom_affine
from dicomml.seg._grid import map_planes, place, resample_nearest


def test_plane_on_transposed_flipped_grid_lands_on_the_voxels_of_its_positions() -> None:
    # An axial grid in (x, y, z) order, LPS-like, as dcm2niix's NIfTI before its y flip.
    grid = np.array([[-1.0, 0, 0, 10], [0, -1, 0, -5], [0, 0, 2, 30], [0, 0, 0, 1]])
    positions = np.array([[-10.0, 5.0, 34.0]])  # LPS: RAS (10, -5, 34) -> index (0, 0, 2)
    planes = map_planes(grid, [1, 0, 0, 0, 1, 0], [1.0, 1.0], positions, (3, 4))
    assert planes.aligned()
    plane = np.arange(12).reshape(3, 4)
    where, view, whole = place(planes, 0, plane, (6, 5, 4))
    out = np.zeros((6, 5, 4), int)
    out[where] = view
    assert whole
    for r in range(3):
        for c in range(4):
            lps = np.array([-10.0 + c, 5.0 + r, 34.0])  # column along +x (L), row along +y (P)
            ras = lps * [-1, -1, 1]
            i, j, k = np.rint(np.linalg.solve(grid[:3, :3], ras - grid[:3, 3])).astype(int)
            if 0 <= i < 6 and 0 <= j < 5:
                assert out[i, j, k] == plane[r, c]


def test_plane_partly_off_the_grid_is_cropped_and_says_so() -> None:
    grid = dicom_affine([1, 0, 0, 0, 1, 0], [1.0, 1.0], [0, 0, 0], [0, 0, 1])
    planes = map_planes(grid, [1, 0, 0, 0, 1, 0], [1.0, 1.0], np.array([[2.0, 1.0, 1.0]]), (4, 4))
    where, view, whole = place(planes, 0, np.ones((4, 4)), (2, 3, 3))
    assert not whole and view.shape == (2, 1) and where == (1, slice(1, 3), slice(2, 3))


def test_half_voxel_shift_is_not_aligned() -> None:
    grid = dicom_affine([1, 0, 0, 0, 1, 0], [1.0, 1.0], [0, 0, 0], [0, 0, 1])
    planes = map_planes(grid, [1, 0, 0, 0, 1, 0], [1.0, 1.0], np.array([[0.5, 0, 0]]), (4, 4))
    assert not planes.aligned()


def _sitk_image(array: np.ndarray, affine: np.ndarray) -> sitk.Image:
    """A SimpleITK image of ``array`` on ``affine`` (numpy axes reversed into ITK's x, y, z)."""
    lps = (LPS_TO_RAS @ affine)[:3]
    columns = lps[:, :3][:, ::-1]
    spacing = np.linalg.norm(columns, axis=0)
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing.tolist())
    image.SetDirection((columns / spacing).ravel().tolist())
    image.SetOrigin(lps[:, 3].tolist())
    return image


@pytest.mark.parametrize("zoom", [0.7, 1.6])
def test_resample_nearest_matches_simpleitk_nearest_neighbor(zoom: float) -> None:
    rng = np.random.default_rng(0)
    source = rng.integers(1, 5, size=(9, 11, 7)).astype(np.uint8)
    affine = np.array([[0, 0, -1.2, 20], [0, 0.9, 0, -3], [1.5, 0, 0, 7], [0, 0, 0, 1]])
    target = np.diag([zoom, zoom, zoom, 1.0])
    target[:3, 3] = [8.1, -2.6, 7.9]
    shape = (12, 10, 9)
    ours, residual = resample_nearest(source, affine, target, shape)
    reference = _sitk_image(np.zeros(shape, np.uint8), target)
    theirs = sitk.GetArrayFromImage(sitk.Resample(_sitk_image(source, affine), reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0))
    assert np.count_nonzero(ours) > 100  # the grids overlap in part: both inside and outside voxels are tested
    assert np.count_nonzero(ours == 0) > 100
    assert np.array_equal(ours, theirs)
    half_diagonal = 0.5 * np.linalg.norm([1.2, 0.9, 1.5])
    assert 0 < residual <= half_diagonal + 1e-9
