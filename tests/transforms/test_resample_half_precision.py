"""Half-precision images are sampled at float32 positions and weights: only the output is rounded to their dtype."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dicomml.transforms import RandomAffine
from dicomml.transforms.functional.grid import spacing_grid
from dicomml.transforms.functional.spatial import resample_image

HALF = [torch.float16, torch.bfloat16]


def _grid_sample64(x: torch.Tensor, index_map: np.ndarray, shape: tuple[int, int, int]) -> torch.Tensor:
    """torch's ``grid_sample`` (float64, corners aligned, border) at source indices ``index_map @ (i, j, k, 1)``."""
    n = np.asarray(x.shape[-3:], dtype=np.float64)
    at = np.einsum("ab,b...->...a", index_map[:3, :3], np.indices(shape)) + index_map[:3, 3]
    norm = (2 * at / (n - 1) - 1)[..., ::-1].copy()
    grid = torch.from_numpy(norm)[None]
    return torch.nn.functional.grid_sample(x[None].double(), grid, padding_mode="border", align_corners=True)[0]


def _ramp(n: int = 256) -> torch.Tensor:
    """Value = j index (whole numbers, exact in float16 and bfloat16): an error in value is an error in voxels."""
    return torch.arange(n, dtype=torch.float32).view(1, 1, n, 1).expand(1, n, n, 8).contiguous()


@pytest.mark.parametrize("dtype", HALF)
def test_rotation_of_a_half_image_is_its_float32_result_rounded(dtype):
    x, affine = _ramp(), np.diag([0.8, 0.8, 3.0, 1.0])
    params = RandomAffine(degrees=10, scale=0.0, seed=0).make_params({"image": x, "affine": affine})
    assert np.abs(np.linalg.solve(affine, params["affine"])[:3, :3] - np.eye(3)).max() > 0.01  # grid_sample path
    expected = resample_image(x, affine, params["affine"], params["shape"])
    out = resample_image(x.to(dtype), affine, params["affine"], params["shape"])
    assert out.dtype == dtype
    torch.testing.assert_close(out, expected.to(dtype), atol=0, rtol=0)
    # and torch's grid_sample in float64 at the same positions, to the output's rounding (half an ulp)
    reference = _grid_sample64(x, np.linalg.solve(affine, params["affine"]), params["shape"])
    ulp = torch.finfo(dtype).eps * 2.0 ** torch.floor(torch.log2(reference.abs().clamp(min=1)))
    assert bool(((out.double() - reference).abs() <= ulp / 2 + 1e-3).all())


@pytest.mark.parametrize("dtype", HALF)
@pytest.mark.parametrize("padding", ["border", "fov"])
def test_centers_grid_of_a_half_image_is_its_float32_result_rounded(dtype, padding):
    x, affine = _ramp(), np.diag([0.8, 0.8, 3.0, 1.0])
    grid = spacing_grid(affine, x.shape[1:], (0.7, 0.7, 2.0), "centers")  # the separable path
    expected = resample_image(x, affine, *grid, padding=padding)
    out = resample_image(x.to(dtype), affine, *grid, padding=padding)
    assert out.dtype == dtype
    torch.testing.assert_close(out, expected.to(dtype), atol=0, rtol=0)
