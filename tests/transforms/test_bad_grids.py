"""Bad grids (singular or non-finite affines, empty axes) are one-line dicomml errors naming the transform, not numpy,
torch or nibabel errors, nor silent results."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dicomml.errors import ConfigError, GeometryError
from dicomml.geometry.checks import affine_problem
from dicomml.transforms import CropForeground, CropOrPad, Orient, RandomAffine, RandomCrop, RandomFlip, Resample
from dicomml.transforms.functional import orient_grid, resample_image, resample_mask, spacing_grid

SINGULAR = np.diag([1.0, 1.0, 0.0, 1.0])
NAN = np.diag([np.nan, 1.0, 1.0, 1.0])
IMAGE = torch.arange(120.0).reshape(1, 4, 5, 6)


def test_a_singular_reference_grid_is_refused_when_resample_is_made():
    with pytest.raises(ConfigError, match=r"^Resample\(like=.*singular") as info:
        Resample(like=(SINGULAR, (2, 3, 4)))
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("affine, problem", [(SINGULAR, "singular"), (NAN, "not finite")])
@pytest.mark.parametrize(
    "transform",
    [Orient("RAS"), Resample(spacing=1.0), RandomAffine(seed=0), CropOrPad(2), RandomFlip(p=1.0), RandomCrop(2), CropForeground()],
    ids=lambda t: type(t).__name__,
)
def test_a_bad_sample_affine_is_a_geometry_error_naming_the_transform(transform, affine, problem):
    with pytest.raises(GeometryError, match=rf"^{type(transform).__name__}: the sample's affine .* {problem}") as info:
        transform({"image": IMAGE, "affine": affine})
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "transform",
    [Resample(spacing=1.0), RandomAffine(seed=0), CropOrPad(2), Orient("LPS"), RandomFlip(p=1.0)],
    ids=lambda t: type(t).__name__,
)
def test_an_empty_spatial_axis_is_a_geometry_error_naming_the_transform(transform):
    with pytest.raises(GeometryError, match=rf"^{type(transform).__name__}: the sample's spatial shape \(0, 4, 4\) has an empty axis"):
        transform(torch.zeros(1, 0, 4, 4))


def test_the_kernels_refuse_bad_affines_with_geometry_errors():
    with pytest.raises(GeometryError, match="input affine .* not finite"):
        resample_image(IMAGE, NAN, np.eye(4), (4, 5, 6))
    with pytest.raises(GeometryError, match="target affine .* singular"):
        resample_mask(IMAGE.byte(), np.eye(4), SINGULAR, (4, 5, 6))
    with pytest.raises(GeometryError, match="singular"):
        orient_grid(SINGULAR, (4, 5, 6), "RAS")
    with pytest.raises(GeometryError, match="not finite"):
        spacing_grid(NAN, (4, 5, 6), 1.0)


def test_affine_problem_accepts_oblique_and_flipped_grids():
    oblique = np.eye(4)
    oblique[:3, :3] = [[0.7, -0.1, 0.0], [0.1, 0.7, 0.0], [0.0, 0.0, -5.0]]
    assert affine_problem(oblique) is None and affine_problem(np.diag([1e-5, 1e3, 1.0, 1.0])) is None
    assert "4x4" in affine_problem(np.eye(3))
