"""``Compose`` fusion of ``Orient`` + ``Resample(align="centers")`` keeps the two steps' grid and MONAI's values."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import Compose as MonaiCompose
from monai.transforms import Orientation, Spacing

import dicomml
from dicomml.transforms import Compose, Orient, Resample

MR_FOLDER = "dcm_qa_decubitus/In/HFS/3_t1_fl2d_sag"  # sagittal, flipped axes when oriented to RAS


@pytest.fixture(scope="module")
def mr(data_dir: Path) -> dicomml.Volume:
    return dicomml.load_files(sorted(p for p in (data_dir / MR_FOLDER).iterdir() if p.is_file() and not p.name.startswith(".")))


@pytest.mark.parametrize("spacing", [1.5, 2.0, 3.0])
def test_fused_centers_chain_equals_the_two_steps_and_monai_orientation_spacing(mr, spacing):
    x = torch.from_numpy(mr.array.astype(np.float32))[None]
    sample = {"image": x, "affine": mr.affine}
    pipeline = Compose([Orient("RAS"), Resample(spacing=spacing, align="centers")])
    assert len(pipeline.transforms) == 1  # still one resample
    fused = pipeline(sample)
    two = Resample(spacing=spacing, align="centers")(Orient("RAS")(sample))
    np.testing.assert_allclose(fused["affine"], two["affine"], atol=1e-9)
    np.testing.assert_allclose(fused["image"].numpy(), two["image"].numpy(), atol=1e-3)
    monai = MonaiCompose([Orientation(axcodes="RAS"), Spacing(pixdim=spacing)])
    theirs = monai(MetaTensor(x, affine=torch.from_numpy(mr.affine)))
    np.testing.assert_allclose(fused["affine"], theirs.affine.numpy(), atol=1e-4)
    np.testing.assert_allclose(fused["image"].numpy(), theirs.as_tensor().numpy(), atol=1e-5 * float(np.ptp(mr.array)))
