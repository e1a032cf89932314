"""uint16 (and uint32/uint64 where torch has them) through every transform: the same result as int64, dtype kept where
int64's is. dicomml makes uint16 itself: MR above 32767, label maps of over 255 segments, a uint16 cache."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dicomml.transforms import (
    ClipIntensity,
    Compose,
    CropForeground,
    CropOrPad,
    HeaderWindow,
    Mask,
    MultiWindow,
    Orient,
    RandomAffine,
    RandomCrop,
    RandomFlip,
    RandomIntensity,
    RandomNoise,
    Resample,
    ScaleIntensity,
    Window,
    ZNormalize,
)
from dicomml.transforms.functional import crop_pad

UNSIGNED = [getattr(torch, f"uint{b}") for b in (16, 32, 64) if hasattr(torch, f"uint{b}")]
AFFINE = np.array([[1.0, 0, 0, 3], [0, 1.2, 0, -2], [0, 0, 0.9, 1], [0, 0, 0, 1]])
SHIFT = np.array([[1.0, 0, 0, 1], [0, 1.2, 0, -4.4], [0, 0, 0.9, 3.7], [0, 0, 0, 1]])  # whole voxels, leaving the input
ROTATED = np.array([[0.8, -0.6, 0, 2], [0.6, 0.8, 0, -2], [0, 0, 1, 1], [0, 0, 0, 1.0]])

TRANSFORMS = {
    "Orient": lambda: Orient("PLI"),
    "Resample spacing": lambda: Resample(spacing=0.7),
    "Resample zeros": lambda: Resample(spacing=(0.7, 1.3, 0.6), padding="zeros"),
    "Resample fov": lambda: Resample(spacing=0.7, padding="fov"),
    "Resample axcodes": lambda: Resample(spacing=(0.8, 1.3, 1.0), axcodes="PLI"),
    **{f"Resample shift {p}": (lambda p=p: Resample(like=(SHIFT, (6, 7, 8)), padding=p)) for p in ("border", "zeros", "reflection", "fov")},
    "Resample rotated": lambda: Resample(like=(ROTATED, (6, 7, 8))),
    "RandomAffine": lambda: RandomAffine(degrees=20, seed=0),
    "CropOrPad": lambda: CropOrPad((4, 9, 8)),
    "RandomCrop": lambda: RandomCrop((8, 3, 3), seed=1),
    "CropForeground": lambda: CropForeground(source="x", threshold=30000, margin=1),
    "RandomFlip": lambda: RandomFlip(p=1.0, seed=0),
    "ClipIntensity": lambda: ClipIntensity(100, 40000),
    "ClipIntensity fraction": lambda: ClipIntensity(100.5, 40000),
    "ClipIntensity beyond range": lambda: ClipIntensity(-5, 1e12),
    "Window": lambda: Window(3000, 2000),
    "Window uint8": lambda: Window(3000, 2000, output="uint8"),
    "MultiWindow": lambda: MultiWindow([(3000, 2000), (100, 50)]),
    "HeaderWindow": lambda: HeaderWindow(),
    "ScaleIntensity": lambda: ScaleIntensity(0, 60000),
    "ZNormalize": lambda: ZNormalize(nonzero=True),
    "RandomIntensity": lambda: RandomIntensity(shift=1, seed=0),
    "RandomNoise": lambda: RandomNoise(seed=0),
    "Compose": lambda: Compose([Orient("LPS"), Resample(spacing=0.7)]),
}


def _values(x: torch.Tensor) -> torch.Tensor:
    """``x`` in a dtype torch compares: int64 (uint64 by its bits, the test's values being below 2**63) or float64."""
    if x.is_floating_point():
        return x.double()
    return x.view(torch.int64) if x.dtype == getattr(torch, "uint64", None) else x.long()


@pytest.mark.parametrize("name", sorted(TRANSFORMS))
@pytest.mark.parametrize("kind", ["image", "mask"])
@pytest.mark.parametrize("dtype", UNSIGNED)
def test_unsigned_input_gives_what_int64_does(dtype, kind, name):
    values = np.random.default_rng(0).integers(0, 60000, (2, 6, 7, 8))
    values[:, :1] = 0

    def run(tensor: torch.Tensor) -> torch.Tensor:
        entry = Mask(tensor) if kind == "mask" else tensor
        sample = {"x": entry, "affine": AFFINE, "meta": {"window_center": [3000], "window_width": [2000]}}
        return TRANSFORMS[name]()(sample)["x"]

    ours, wide = run(torch.from_numpy(values).to(dtype)), run(torch.from_numpy(values))
    assert ours.dtype == (dtype if wide.dtype == torch.int64 else wide.dtype)
    assert torch.equal(_values(ours), _values(wide))


@pytest.mark.parametrize("dtype", UNSIGNED)
def test_flips_and_clips_keep_values_beyond_the_signed_range(dtype):
    numpy_dtype = np.dtype(str(dtype).removeprefix("torch."))
    top = int(np.iinfo(numpy_dtype).max)
    x = torch.from_numpy(np.array([0, 1, top // 2, top // 2 + 1, top - 1, top], dtype=numpy_dtype).reshape(1, 1, 2, 3))
    flipped = RandomFlip(p=1.0, seed=0)(x)
    assert flipped.dtype == dtype and flipped.numpy().tolist() == x.numpy()[:, :, ::-1, ::-1].tolist()
    clipped = ClipIntensity(2, 2 ** (8 * x.element_size() - 1))(x)
    assert clipped.dtype == dtype
    assert clipped.numpy().ravel().tolist() == np.clip(x.numpy().ravel(), 2, 2 ** (8 * x.element_size() - 1)).tolist()
    reflected = crop_pad(x, (0, 0, -2), (1, 2, 7), mode="reflect")
    assert reflected.numpy().tolist() == x.numpy()[..., [2, 1, 0, 1, 2, 1, 0]].tolist()
