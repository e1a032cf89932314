"""Integer labels beyond float32's 2**24 (instance ids, bit-packed labels) come out of rotations and oblique grids exactly."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from dicomml.transforms import Mask, RandomAffine, Resample
from dicomml.transforms.functional import resample_mask

WIDE = [torch.int32, torch.int64, *(getattr(torch, f"uint{b}") for b in (32, 64) if hasattr(torch, f"uint{b}"))]


def _labels(dtype: torch.dtype) -> tuple[torch.Tensor, np.ndarray, torch.Tensor]:
    """A small-label map (uint8: 0..3), a table of four labels of ``dtype`` beyond float32, and the map through the table."""
    small = torch.zeros(1, 9, 10, 11, dtype=torch.uint8)
    small[0, 2:7, 2:8, 3:9] = 1
    small[0, 3:5, 4:6, 4:7] = 2
    small[0, 4, 5, 5] = 3
    info = torch.iinfo(dtype)
    wide = [0, 2**40 + 3 if info.bits == 64 else 2**24 + 1, info.max, info.min if info.min < 0 else info.max - 1]
    table = np.array(wide, dtype=np.dtype(str(dtype).removeprefix("torch.")))
    return small, table, torch.from_numpy(table[small.numpy()])


@pytest.mark.parametrize("dtype", WIDE)
def test_wide_labels_follow_the_small_label_map_voxel_for_voxel(dtype):
    small, table, wide = _labels(dtype)
    out_small = RandomAffine(degrees=25, scale=0.1, seed=3)({"m": Mask(small)})["m"]
    out_wide = RandomAffine(degrees=25, scale=0.1, seed=3)({"m": Mask(wide)})["m"]
    assert out_wide.dtype == dtype
    assert 0 < int(out_small.count_nonzero()) < small.numel()
    assert torch.equal(out_wide, torch.from_numpy(table[out_small.numpy()]))


@pytest.mark.parametrize("dtype", WIDE)
def test_a_dtypes_largest_label_beside_small_ones_comes_out_exactly(dtype):
    small, _, _ = _labels(dtype)
    table = np.array([0, 5, 6, torch.iinfo(dtype).max], dtype=np.dtype(str(dtype).removeprefix("torch.")))
    out = RandomAffine(degrees=25, scale=0.1, seed=3)({"m": Mask(torch.from_numpy(table[small.numpy()]))})["m"]
    expected = table[RandomAffine(degrees=25, scale=0.1, seed=3)({"m": Mask(small)})["m"].numpy()]
    assert out.dtype == dtype and np.array_equal(out.numpy(), expected)


def test_int64_labels_on_an_oblique_grid_equal_simpleitk_nearest():
    _, _, wide = _labels(torch.int64)
    angle = np.radians(17)
    target = np.eye(4)
    target[:2, :2] = [[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]
    target[:3, 3] = [1.3, -0.7, 0.4]
    ours = Resample(like=(target, (9, 10, 11)))({"m": Mask(wide)})["m"][0].numpy()
    # one world frame for both grids, source index = world (SimpleITK's LPS named RAS: a rigid renaming of both)
    image = sitk.GetImageFromArray(np.ascontiguousarray(wide[0].numpy().transpose(2, 1, 0)))
    reference = sitk.Image([9, 10, 11], sitk.sitkInt64)
    reference.SetDirection((target[:3, :3]).ravel().tolist())
    reference.SetOrigin(target[:3, 3].tolist())
    theirs = sitk.GetArrayFromImage(sitk.Resample(image, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0)).transpose(2, 1, 0)
    np.testing.assert_array_equal(ours, theirs)
    assert set(np.unique(ours).tolist()) == {0, 2**40 + 3, 2**63 - 1, -(2**63)}


def test_small_int64_labels_stay_on_the_float32_path_with_the_same_result():
    small, _, _ = _labels(torch.int64)
    rotation = np.eye(4)
    rotation[1:3, 1:3] = [[0.6, -0.8], [0.8, 0.6]]
    rotation[:3, 3] = [0.0, 6.0, 1.0]
    out = resample_mask(small.long(), np.eye(4), rotation, (9, 10, 11))
    assert out.dtype == torch.int64 and torch.equal(out, resample_mask(small, np.eye(4), rotation, (9, 10, 11)).long())
