"""Edge-aligned grids (voxel edges of target and input coincide: torch's fused kernel) pad as the other paths."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dicomml.transforms.functional.spatial import resample_image


@pytest.mark.parametrize("factor", [2, 3])
@pytest.mark.parametrize("padding", ["zeros", "border", "reflection"])
def test_edge_aligned_upsampling_pads_as_grid_sample(factor, padding):
    """Target centres past the outer input centres (within the outer voxel's half) blend with 0 under "zeros"."""
    x = torch.rand(1, 5, 6, 4, generator=torch.Generator().manual_seed(2)) * 100 + 50
    shape = tuple(factor * n for n in x.shape[-3:])
    target = np.diag([1 / factor] * 3 + [1.0])
    target[:3, 3] = (1 / factor - 1) / 2  # the first target voxel's low edge on the input's: -0.5
    ours = resample_image(x, np.eye(4), target, shape, padding=padding)
    axes = [torch.linspace(target[a, 3], target[a, 3] + (shape[a] - 1) / factor, shape[a], dtype=torch.float64) for a in range(3)]
    grid = torch.stack(torch.meshgrid(*axes, indexing="ij")[::-1], -1)  # (k, j, i) order
    sizes = torch.tensor(x.shape[-3:][::-1], dtype=torch.float64)
    theirs = F.grid_sample(x[None].double(), (2 * grid / (sizes - 1) - 1)[None], mode="bilinear", padding_mode=padding, align_corners=True)
    torch.testing.assert_close(ours, theirs[0].float(), atol=1e-3, rtol=1e-5)
    if padding == "zeros":  # the corner voxel lies outside the outer centres on all three axes
        assert float(ours[0, 0, 0, 0]) < float(x[0, 0, 0, 0])
