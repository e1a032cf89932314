"""An axis of one voxel (a single slice) resampled onto rotated or scaled grids, held to SimpleITK's ``Resample``."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from dicomml.transforms import Mask, RandomAffine, Resample
from dicomml.transforms.functional import resample_image

LPS = np.diag([-1.0, -1.0, 1.0, 1.0])


def _sitk(array: np.ndarray, affine: np.ndarray) -> sitk.Image:
    """``array`` indexed (i, j, k) on RAS+ ``affine`` as a SimpleITK image."""
    image = sitk.GetImageFromArray(np.ascontiguousarray(array.transpose(2, 1, 0)))
    lps = LPS @ affine
    spacing = np.linalg.norm(lps[:3, :3], axis=0)
    image.SetSpacing(spacing.tolist())
    image.SetOrigin(lps[:3, 3].tolist())
    image.SetDirection((lps[:3, :3] / spacing).ravel().tolist())
    return image


def _simpleitk(array: np.ndarray, affine: np.ndarray, target: np.ndarray, shape, interpolator) -> np.ndarray:
    reference = _sitk(np.zeros(shape, np.float32), target)
    out = sitk.Resample(_sitk(array, affine), reference, sitk.Transform(), interpolator, 0.0, sitk.sitkFloat64)
    return sitk.GetArrayFromImage(out).transpose(2, 1, 0)


def _rotated(degrees: float, origin) -> np.ndarray:
    angle = np.radians(degrees)
    out = np.eye(4)
    out[:2, :2] = [[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]
    out[:3, 3] = origin
    return out


SLAB = np.diag([5.0, 1.0, 1.0, 1.0])  # one slice 5 mm thick along R


def _slice_mask() -> np.ndarray:
    m = np.zeros((1, 20, 20), np.uint8)
    m[0, 5:15, 5:15] = 1
    return m


def test_a_one_slice_mask_on_a_rotated_grid_ends_half_a_slice_from_it_as_simpleitk():
    target, shape = _rotated(30, [-10, 0, 0]), (20, 20, 20)
    m = _slice_mask()
    ours = Resample(like=(target, shape))({"mask": Mask(torch.from_numpy(m)[None]), "affine": SLAB})["mask"][0].numpy()
    theirs = _simpleitk(m, SLAB, target, shape, sitk.sitkNearestNeighbor)
    np.testing.assert_array_equal(ours, theirs)
    world = target @ np.c_[np.argwhere(ours), np.ones(int(ours.sum()))].T
    assert np.abs(world[0]).max() <= 2.5  # the slice spans -2.5..2.5 mm


def test_random_affine_of_a_one_slice_sample_moves_its_mask_as_simpleitk():
    m = np.zeros((1, 40, 40), np.uint8)
    m[0, 5:35, 5:35] = 1
    sample = {"image": torch.from_numpy(m.astype(np.float32))[None], "mask": Mask(torch.from_numpy(m)[None]), "affine": SLAB}
    out = RandomAffine(degrees=30, scale=0.0, seed=0)(sample)
    theirs = _simpleitk(m, SLAB, out["affine"], (1, 40, 40), sitk.sitkNearestNeighbor)
    np.testing.assert_array_equal(out["mask"][0].numpy(), theirs)
    assert 0 < theirs.sum() < m.sum()


def _one_slice_maps():
    """Index maps from a (1, 6, 7) input: rotated about j (the slice axis mixed with k) and scaled along the slice."""
    rotated = np.eye(4)
    angle = np.radians(25)
    rotated[[0, 0, 2, 2], [0, 2, 0, 2]] = [np.cos(angle), -np.sin(angle), np.sin(angle), np.cos(angle)]
    rotated[:3, 3] = [-1.3, 0.2, 1.1]
    scaled = np.diag([0.25, 1.0, 0.5, 1.0])
    scaled[0, 3], scaled[2, 3] = -1.2, 0.3
    return [("grid_sample", rotated, (9, 5, 9)), ("separable", scaled, (11, 6, 11))]


@pytest.mark.parametrize("name, index_map, shape", _one_slice_maps())
def test_zeros_padding_fades_a_single_slice_to_zero_a_voxel_away_as_simpleitk_of_the_zero_padded_input(name, index_map, shape):
    x = torch.rand(1, 1, 6, 7, generator=torch.Generator().manual_seed(3)) * 100 + 50
    ours = resample_image(x, np.eye(4), index_map, shape, padding="zeros")[0].double().numpy()
    # grid_sample's "zeros": linear towards a zero voxel beyond each outer voxel centre
    padded = np.pad(x[0].double().numpy(), 1)
    shift = np.eye(4)
    shift[:3, 3] = 1.0
    theirs = _simpleitk(padded, LPS, LPS @ shift @ index_map, shape, sitk.sitkLinear)
    np.testing.assert_allclose(ours, theirs, atol=1e-3, err_msg=name)
    assert np.any(ours == 0) and np.any((ours > 0) & (ours < 50)), name  # beyond the slice, and the fade towards it


@pytest.mark.parametrize("name, index_map, shape", _one_slice_maps())
def test_border_padding_repeats_a_single_slice_as_simpleitk_of_the_slice_repeated(name, index_map, shape):
    x = torch.rand(1, 1, 6, 7, generator=torch.Generator().manual_seed(5)) * 100 + 50
    ours = resample_image(x, np.eye(4), index_map, shape, padding="border")[0].double().numpy()
    repeated = np.repeat(x[0].double().numpy(), 41, axis=0)  # slices -20..20
    shift = np.eye(4)
    shift[0, 3] = 20.0
    at = np.einsum("ab,b...->...a", index_map[:3, :3], np.indices(shape)) + index_map[:3, 3]
    inside = np.all((at[..., 1:] >= 0) & (at[..., 1:] <= np.array([5, 6])), axis=-1)  # "border" elsewhere is not SimpleITK's
    theirs = _simpleitk(repeated, LPS, LPS @ shift @ index_map, shape, sitk.sitkLinear)
    np.testing.assert_allclose(ours[inside], theirs[inside], atol=1e-3, err_msg=name)
    assert inside.mean() > 0.3, name
