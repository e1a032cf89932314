"""What the ``"edges"`` grid is, and is not, as docs/guide/transforms.md and ``functional/grid.py`` say: torch's
``interpolate(scale_factor=...)`` positions; TorchIO's ``Resample`` only where n / r is whole; not MONAI's
``Spacing(scale_extent=True)`` origin."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dicomml.transforms import Resample


def _line(n: int) -> torch.Tensor:
    return torch.arange(float(n)).reshape(1, n, 1, 1).expand(1, n, 3, 3).contiguous()


@pytest.mark.parametrize("n, old, new", [(20, 1.0, 2.0), (21, 0.8, 1.0), (10, 1.0, 3.0), (25, 0.7, 1.0), (20, 1.0, 0.5)])
def test_edges_samples_where_torch_interpolate_with_a_scale_factor_does(n, old, new):
    ours = Resample(spacing=(new, 1.0, 1.0))({"image": _line(n), "affine": np.diag([old, 1.0, 1.0, 1.0])})
    theirs = F.interpolate(_line(n)[None], scale_factor=(old / new, 1.0, 1.0), mode="trilinear", align_corners=False)[0]
    size = min(theirs.shape[1], ours["image"].shape[1])
    assert abs(ours["image"].shape[1] - theirs.shape[1]) <= 1  # torch floors the size, dicomml rounds it
    torch.testing.assert_close(ours["image"][:, :size], theirs[:, :size])
    assert ours["affine"][0, 3] == pytest.approx(old * ((new / old - 1) / 2))


def test_torchio_resample_gives_the_edges_grid_only_where_n_over_r_is_whole():
    import torchio as tio

    for n, new, whole in [(20, 2.0, True), (12, 3.0, True), (10, 3.0, False)]:
        ours = Resample(spacing=(new, 1.0, 1.0))({"image": _line(n), "affine": np.eye(4)})
        theirs = tio.Resample((new, 1.0, 1.0))(tio.ScalarImage(tensor=_line(n), affine=np.eye(4)))
        assert bool(theirs.affine[0, 3] == pytest.approx(ours["affine"][0, 3])) is whole
    assert (theirs.affine[0, 3], ours["affine"][0, 3]) == pytest.approx((1.5, 1.0))


def test_monai_scale_extent_keeps_the_size_but_not_the_origin():
    from monai.data import MetaTensor
    from monai.transforms import Spacing

    ours = Resample(spacing=(2.0, 1.0, 1.0))({"image": _line(20), "affine": np.eye(4)})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = Spacing(pixdim=(2.0, 1.0, 1.0), scale_extent=True)(MetaTensor(_line(20), affine=torch.eye(4, dtype=torch.float64)))
    assert theirs.shape == ours["image"].shape
    assert (float(theirs.affine[0, 3]), ours["affine"][0, 3]) == pytest.approx((-0.5, 0.5))
