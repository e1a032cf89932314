"""Orient + resample by torch's fused kernel in slabs of output planes, each relaid into the target from cache."""

from __future__ import annotations

import threading
from itertools import permutations, product

import nibabel as nib
import numpy as np
import pytest
import torch

from dicomml.geometry import axcodes
from dicomml.transforms import Resample
from dicomml.transforms.functional import spatial

#: The 48 orientation codes: each axis order of L/R, P/A, I/S, each direction.
_ALL_CODES = [
    "".join(pair[d] for pair, d in zip(order, dirs)) for order in permutations(("LR", "PA", "IS")) for dirs in product((0, 1), repeat=3)
]


def _stored_grid() -> tuple[torch.Tensor, np.ndarray]:
    """Two channels on an LPS-stored axial grid whose spacings divide the field of view; ratios 10/7, 2 and 4/5 to 1 mm."""
    x = torch.from_numpy(np.random.default_rng(1).random((2, 16, 30, 24), dtype=np.float32))
    affine = np.diag([-0.7, -0.5, 1.25, 1.0])[:, [2, 0, 1, 3]]  # slices (S), rows (P), columns (L)
    affine[:3, 3] = [30.0, -20.0, 10.0]
    return x, affine


@pytest.mark.parametrize("code", _ALL_CODES)
def test_slabs_equal_interpolate_then_nibabel_reorientation(monkeypatch, code):
    # Slabs of one period of output planes (7 along the 0.7 mm axis, 5 along the upsampled 1.25 mm one),
    # and the whole-volume kernel made to fail: every relaid code must take the slab path.
    monkeypatch.setattr(spatial, "_OUT_SLAB_BYTES", 10_000)
    x, affine = _stored_grid()
    if code != axcodes(affine):
        monkeypatch.setattr(spatial, "_trilinear", None)
    out = Resample(spacing=1.0, axcodes=code)({"image": x, "affine": affine})
    floor = torch.nn.functional.interpolate(x[None], size=(20, 21, 12), mode="trilinear", align_corners=False)[0].numpy()
    transform = nib.orientations.ornt_transform(nib.orientations.io_orientation(affine), nib.orientations.axcodes2ornt(tuple(code)))
    theirs = np.stack([nib.orientations.apply_orientation(channel, transform) for channel in floor])
    assert out["image"].is_contiguous() and axcodes(out["affine"]) == code
    # a slab counts its float32 sample positions from its own first plane: they differ from the
    # whole kernel's by float32 rounding of positions below 32 (values in [0, 1))
    np.testing.assert_allclose(out["image"].numpy(), theirs, rtol=0, atol=1e-5)


def test_slabs_leave_torch_thread_count_as_it_was(monkeypatch):
    monkeypatch.setattr(spatial, "_OUT_SLAB_BYTES", 10_000)
    monkeypatch.setattr(spatial, "_trilinear", None)
    x, affine = _stored_grid()
    before = torch.get_num_threads()
    Resample(spacing=1.0, axcodes="RAS")({"image": x, "affine": affine})
    seen: list[int] = []
    later = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
    later.start()
    later.join()
    assert torch.get_num_threads() == before and seen == [before]


def test_irrational_ratios_take_the_whole_kernel(monkeypatch):
    # 0.683594 mm columns: no slab boundary before the end lands on a whole input plane
    monkeypatch.setattr(spatial, "_OUT_SLAB_BYTES", 10_000)
    monkeypatch.setattr(spatial, "_trilinear_to_target", None)
    x, affine = _stored_grid()
    affine[:, 1] *= 0.683594 / 0.7
    affine[:, 2] *= 0.683594 / 0.5
    out = Resample(spacing=1.0, axcodes="RAS")({"image": x, "affine": affine})
    assert axcodes(out["affine"]) == "RAS"
