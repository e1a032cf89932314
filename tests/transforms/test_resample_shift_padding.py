"""Whole-voxel shifts out of the input (the crop/pad path) pad as ``grid_sample`` does: any distance, every mode."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import dicomml
from dicomml.transforms import Resample
from dicomml.transforms.functional.spatial import crop_pad, resample_image

CT_FOLDER = "dcmqi/data/segmentations/ct-3slice"  # (3, 512, 512) int16


def _grid_sample(x: torch.Tensor, index_map: np.ndarray, shape: tuple[int, int, int], padding: str) -> torch.Tensor:
    """torch's ``grid_sample`` (float64, corners aligned) at source indices ``index_map @ (i, j, k, 1)``."""
    n = np.asarray(x.shape[-3:], dtype=np.float64)
    at = np.einsum("ab,b...->...a", index_map[:3, :3], np.indices(shape)) + index_map[:3, 3]
    norm = np.where(n > 1, 2 * at / np.maximum(n - 1, 1) - 1, 0.0)[..., ::-1].copy()  # (x=k, y=j, z=i)
    mode = "zeros" if padding == "fov" else padding  # a whole voxel out is beyond the outer voxel edges
    out = F.grid_sample(x[None].double(), torch.from_numpy(norm)[None], mode="bilinear", padding_mode=mode, align_corners=True)
    return out[0]


@pytest.mark.parametrize("padding", ["border", "zeros", "reflection", "fov"])
@pytest.mark.parametrize("start", [(0, 0, 2), (0, 0, 6), (0, 0, -9), (-4, 3, 11), (7, -2, -1)])
def test_whole_voxel_shifts_pad_as_grid_sample_at_any_distance(padding, start):
    x = torch.arange(1.0, 1 + 3 * 4 * 5).reshape(1, 3, 4, 5)
    index_map = np.eye(4)
    index_map[:3, 3] = start
    shape = (6, 5, 9)
    out = resample_image(x, np.eye(4), index_map, shape, padding=padding)
    np.testing.assert_allclose(out.numpy(), _grid_sample(x, index_map, shape, padding).numpy(), atol=1e-9)


@pytest.mark.parametrize("mode", ["replicate", "reflect"])
def test_crop_pad_pads_boxes_of_any_width_and_boxes_outside_the_input_as_numpy(mode):
    x = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)
    start, shape = (-7, 2, 9), (17, 9, 3)  # wider than the input, and along k wholly past it
    width = 20
    padded = np.pad(x, [(0, 0)] + [(width, width)] * 3, mode={"replicate": "edge", "reflect": "reflect"}[mode])
    expected = padded[(slice(None), *(slice(width + s, width + s + m) for s, m in zip(start, shape)))]
    np.testing.assert_array_equal(crop_pad(torch.from_numpy(x), start, shape, mode=mode).numpy(), expected)


@pytest.mark.parametrize("padding", ["border", "zeros", "reflection", "fov"])
def test_reference_grid_past_the_last_ct_slice_pads_as_grid_sample(data_dir: Path, padding):
    ct = dicomml.load_files(sorted(p for p in (data_dir / CT_FOLDER).iterdir() if p.is_file() and not p.name.startswith(".")))
    assert ct.array.shape == (3, 512, 512)
    out = Resample(like=(ct.affine, (9, 512, 512)), padding=padding)(ct)  # 6 slices beyond the last, at a whole-voxel offset
    x = torch.from_numpy(ct.array[:, 200:264, 300:364].astype(np.float64))[None]
    expected = _grid_sample(x, np.eye(4), (9, 64, 64), padding)[0].numpy()
    np.testing.assert_allclose(out.array[:, 200:264, 300:364], expected, atol=1e-9)
