"""Stateless kernels under the transform classes: tensors and affines in, tensors out.

``grid`` computes target grids (pure numpy, no voxels); ``spatial`` resamples
and crops ``(C, i, j, k)`` tensors on their own device; ``intensity`` windows
and scales values.
"""

from dicomml.transforms.functional.grid import orient_grid, shape_grid, shift_grid, spacing_grid
from dicomml.transforms.functional.intensity import VOI_FUNCTIONS, scale_intensity, to_uint8, window, znormalize
from dicomml.transforms.functional.spatial import PADDINGS, crop_pad, gaussian_smooth, resample_image, resample_mask

__all__ = [
    "PADDINGS",
    "VOI_FUNCTIONS",
    "crop_pad",
    "gaussian_smooth",
    "orient_grid",
    "resample_image",
    "resample_mask",
    "scale_intensity",
    "shape_grid",
    "shift_grid",
    "spacing_grid",
    "to_uint8",
    "window",
    "znormalize",
]
