"""The output size of ``spacing_grid`` does not hang on float noise in the spacings; numpy scalars are spacings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import dicomml
from dicomml.transforms import Resample
from dicomml.transforms.functional.grid import spacing_grid

CT_FOLDER = "dcmqi/data/segmentations/ct-3slice"  # 3 slices 1 mm apart, as positions give 0.9999999999999929 mm


@pytest.mark.parametrize(("align", "slices"), [("edges", 2), ("centers", 2)])  # rint(3 / 2) and rint((3 - 1) / 2 + 1)
def test_ct_whose_slice_spacing_is_one_mm_but_for_float_noise_gets_the_one_mm_size(data_dir: Path, align, slices):
    ct = dicomml.load_files(sorted(p for p in (data_dir / CT_FOLDER).iterdir() if p.is_file() and not p.name.startswith(".")))
    assert ct.array.shape[0] == 3 and 0 < abs(ct.spacing[0] - 1.0) < 1e-9  # the noise is there
    assert Resample(spacing=2.0, align=align)(ct).array.shape[0] == slices


@pytest.mark.parametrize("noise", [-7.1e-15, 0.0, 7.1e-15, 3e-8])
def test_noise_either_side_of_a_half_voxel_size_gives_the_same_size(noise):
    # 5 voxels of 1 mm to 2 mm: 2.5, rounded half to even
    affine = np.diag([1.0 + noise, 0.5, 0.5, 1.0])
    assert spacing_grid(affine, (5, 4, 4), (2.0, None, None))[1] == (2, 4, 4)


@pytest.mark.parametrize("spacing", [np.float32(1.0), np.int64(1), np.float64(1.0)])
def test_numpy_scalar_spacings_are_one_isotropic_spacing(spacing):
    affine = np.diag([0.5, 0.5, 0.5, 1.0])
    assert spacing_grid(affine, (8, 8, 8), spacing)[1] == (4, 4, 4)
    out = Resample(spacing=spacing)({"image": torch.zeros(1, 8, 8, 8), "affine": affine})
    assert tuple(out["image"].shape) == (1, 4, 4, 4)
