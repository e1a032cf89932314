"""``padding="fov"``: the edge value out to the input's outer voxel edges and 0 beyond, on every resampling path,
held to SimpleITK's ``Resample`` (linear, default value 0) of the same voxels."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from dicomml.transforms.functional.spatial import resample_image


def _simpleitk(x: np.ndarray, index_map: np.ndarray, shape: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """SimpleITK's result at source indices ``index_map @ (i, j, k, 1)``, and where the target leaves the input's
    voxels by more than 2e-3 voxels (inside) or lies within 2e-3 of their edges (ambiguous: either may count it)."""
    moving = sitk.GetImageFromArray(np.ascontiguousarray(x.transpose(2, 1, 0)))  # world = source index
    spacing = np.linalg.norm(index_map[:3, :3], axis=0)
    target = sitk.Image([int(n) for n in shape], sitk.sitkFloat32)
    target.SetSpacing(spacing.tolist())
    target.SetDirection((index_map[:3, :3] / spacing).ravel().tolist())
    target.SetOrigin(index_map[:3, 3].tolist())
    values = sitk.GetArrayFromImage(sitk.Resample(moving, target, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat64)).T
    at = np.einsum("ab,b...->...a", index_map[:3, :3], np.indices(shape)) + index_map[:3, 3]
    edges = np.asarray(x.shape) - 0.5
    ambiguous = np.any((np.abs(at + 0.5) < 2e-3) | (np.abs(at - edges) < 2e-3), axis=-1)
    return values, ambiguous


def _maps(rng: np.random.Generator, source_shape: tuple[int, int, int]) -> list[tuple[str, np.ndarray, tuple[int, int, int]]]:
    n = np.asarray(source_shape)
    maps = []
    for _ in range(4):  # permuted, flipped, scaled, offset, from before the input to past it: the separable path
        index_map, shape = np.eye(4), [0, 0, 0]
        index_map[:3, :3] = 0
        for out_axis, src_axis in enumerate(rng.permutation(3)):
            step, first = rng.uniform(0.4, 1.6), rng.uniform(-2.5, -0.3)
            shape[out_axis] = int(np.ceil((n[src_axis] + 1.5 - first) / step))
            flip = rng.random() < 0.5
            index_map[src_axis, out_axis] = -step if flip else step
            index_map[src_axis, 3] = n[src_axis] - 1 - first if flip else first
        maps.append(("separable", index_map, (shape[0], shape[1], shape[2])))
    for ratio in (0.5, 2.0):  # edges aligned at the first corner, the target longer than the input: the fused kernel's grid
        index_map = np.diag([ratio, ratio, ratio, 1.0])
        index_map[:3, 3] = (ratio - 1) / 2
        maps.append((f"edges-{ratio}", index_map, tuple(int(v) for v in np.ceil(n / ratio) + 3)))
    shift = np.eye(4)
    shift[:3, 3] = [-2, 3, -1]
    maps.append(("shift", shift, source_shape))
    angle = np.deg2rad(20)
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    oblique = np.eye(4)
    oblique[:3, :3] = rotation * 0.8
    oblique[:3, 3] = [-2.3, 1.7, -1.1]
    maps.append(("oblique", oblique, tuple(int(v) for v in n + 4)))
    return maps


@pytest.mark.parametrize("dtype", [torch.float32, torch.int16])
def test_fov_padding_equals_simpleitk_on_every_path(dtype):
    rng = np.random.default_rng(4)
    x = (torch.rand(1, 9, 11, 7, generator=torch.Generator().manual_seed(8)) * 1000 + 100).to(dtype)
    source = x[0].double().numpy()
    for name, index_map, shape in _maps(rng, source.shape):
        ours = resample_image(x, np.eye(4), index_map, shape, padding="fov")[0].double().numpy()
        theirs, ambiguous = _simpleitk(source, index_map, shape)
        clear = ~ambiguous
        assert np.any((theirs == 0) & clear) and np.any(theirs != 0), name
        np.testing.assert_allclose(ours[clear], theirs[clear], rtol=0, atol=1e-3, err_msg=name)
        assert np.all(ours[clear & (theirs == 0)] == 0), name  # exactly 0 outside


def test_fov_padding_of_a_single_slice_ends_half_a_slice_from_it():
    x = torch.full((1, 1, 4, 4), 50.0)
    index_map = np.eye(4)
    index_map[0, 0], index_map[0, 3] = 0.25, -1.0  # target slices at source index -1, -0.75, ..., 1
    out = resample_image(x, np.eye(4), index_map, (9, 4, 4), padding="fov")[:, :, 0, 0].flatten().tolist()
    assert out == [0.0, 0.0, 50.0, 50.0, 50.0, 50.0, 50.0, 0.0, 0.0]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_fov_padding_on_cuda_matches_cpu():
    x = torch.rand(1, 9, 11, 7, generator=torch.Generator().manual_seed(8)) * 1000
    for name, index_map, shape in _maps(np.random.default_rng(4), (9, 11, 7)):
        cpu = resample_image(x, np.eye(4), index_map, shape, padding="fov")
        gpu = resample_image(x.cuda(), np.eye(4), index_map, shape, padding="fov")
        assert gpu.is_cuda, name
        torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-2, rtol=0, msg=name)
