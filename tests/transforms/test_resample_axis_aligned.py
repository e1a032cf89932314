"""Axis-aligned maps with any scale and offset (a sagittal series onto an axial grid) resample one axis at a time."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dicomml.transforms.functional.spatial import resample_image


def _torch_reference(x: torch.Tensor, index_map: np.ndarray, shape: tuple[int, int, int], padding: str) -> torch.Tensor:
    """torch's own grid_sample (trilinear, corners aligned) at the source indices ``index_map @ (i, j, k, 1)``."""
    if padding == "zeros":  # a one-voxel axis: a zero voxel after it, so that with corners aligned it has a scale
        x = F.pad(x, [0, int(x.shape[3] == 1), 0, int(x.shape[2] == 1), 0, int(x.shape[1] == 1)])
    grid = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1).reshape(-1, 3)
    source = grid @ index_map[:3, :3].T + index_map[:3, 3]
    sizes = np.asarray(x.shape[-3:], dtype=np.float64)
    normalized = np.where(sizes > 1, 2 * source / np.maximum(sizes - 1, 1) - 1, -1.0)[:, ::-1]  # (k, j, i) order
    g = torch.from_numpy(np.ascontiguousarray(normalized)).to(torch.float64).reshape(1, *shape, 3)
    return F.grid_sample(x[None].double(), g, mode="bilinear", padding_mode=padding, align_corners=True)[0].float()


@pytest.mark.parametrize("padding", ["zeros", "border", "reflection"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.int16])
def test_permuted_flipped_scaled_and_shifted_maps_equal_grid_sample(padding, dtype):
    rng = np.random.default_rng(7)
    x = (torch.rand(2, 13, 17, 11, generator=torch.Generator().manual_seed(3)) * 1000).to(dtype)
    for _ in range(12):
        index_map = np.eye(4)
        index_map[:3, :3] = 0
        for out_axis, src_axis in enumerate(rng.permutation(3)):
            index_map[src_axis, out_axis] = rng.uniform(0.6, 1.5) * rng.choice([-1, 1])
        index_map[:3, 3] = rng.uniform(-4, 18, 3)  # not a whole voxel, partly outside
        shape = tuple(int(v) for v in rng.integers(2, 16, 3))
        # affine = identity, so the target affine is the index map itself
        ours = resample_image(x, np.eye(4), index_map, shape, padding=padding)
        theirs = _torch_reference(x, index_map, shape, padding)
        assert ours.dtype == torch.float32 and ours.shape == theirs.shape
        torch.testing.assert_close(ours, theirs, atol=2e-3, rtol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float64, torch.int16])
def test_many_slabs_and_single_voxel_axes_equal_grid_sample(monkeypatch, dtype):
    from dicomml.transforms.functional import spatial

    monkeypatch.setattr(spatial, "_SLAB_BYTES", 700)  # a few planes per slab: every slab boundary is crossed
    rng = np.random.default_rng(11)
    x = (torch.rand(3, 23, 9, 7, generator=torch.Generator().manual_seed(5)) * 1000).to(dtype)
    for source_shape in [(23, 9, 7), (1, 9, 7), (23, 9, 1)]:
        source = x[:, : source_shape[0], : source_shape[1], : source_shape[2]]
        for _ in range(6):
            index_map = np.eye(4)
            index_map[:3, :3] = 0
            for out_axis, src_axis in enumerate(rng.permutation(3)):
                index_map[src_axis, out_axis] = rng.uniform(0.4, 1.7) * rng.choice([-1, 1])
            index_map[:3, 3] = rng.uniform(-5, 25, 3)
            shape = tuple(int(v) for v in rng.integers(1, 30, 3))
            ours = resample_image(source, np.eye(4), index_map, shape, padding="zeros")
            theirs = _torch_reference(source, index_map, shape, "zeros")
            assert ours.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
            torch.testing.assert_close(ours.float(), theirs, atol=2e-3, rtol=1e-5)


@pytest.mark.parametrize("dtype", [torch.int16, torch.uint8])
def test_integer_output_dtype_is_the_float_result_rounded_and_clipped(monkeypatch, dtype):
    from dicomml.transforms.functional import spatial

    monkeypatch.setattr(spatial, "_SLAB_BYTES", 700)  # rounded slab by slab
    x = (torch.rand(1, 11, 9, 7, generator=torch.Generator().manual_seed(2)) * 600 - 150).round() + 0.5  # halves, and past uint8's range
    separable = np.diag([0.7, -1.3, 0.9, 1.0])
    separable[:3, 3] = [0.25, 9.6, -0.4]
    for index_map, shape in [
        (separable, (15, 8, 9)),
        (np.eye(4), (11, 9, 7)),
        (np.array([[0.9, 0.1, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]), (9, 9, 7)),
    ]:
        as_float = resample_image(x, np.eye(4), index_map, shape, padding="zeros").numpy()
        info = np.iinfo(torch.empty(0, dtype=dtype).numpy().dtype)
        expected = np.rint(np.clip(as_float, info.min, info.max)).astype(info.dtype)
        ours = resample_image(x, np.eye(4), index_map, shape, padding="zeros", dtype=dtype)
        assert ours.dtype == dtype
        np.testing.assert_array_equal(ours.numpy(), expected)
    assert torch.all(x - x.floor() == 0.5)  # the input is not rounded in place
