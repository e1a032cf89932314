"""Transforms: windows, orientation, resampling, crop and augmentation, on CPU or GPU tensors.

One class per operation. Each takes a sample dict (``{"image": (C, i, j, k),
"mask": Mask, "affine": (4, 4), "meta": {...}}``), a tensor or a
:class:`~dicomml.Volume` and returns the same kind, so MONAI's ``Compose``
works too. Label maps (:class:`Mask`, bool tensors, Volumes with
``meta["kind"] == "mask"``) are resampled nearest, images trilinearly.
Random parameters are drawn once per sample and recorded in
``meta["transforms"]``. Stateless kernels live in
:mod:`dicomml.transforms.functional`.
"""

from dicomml.transforms.base import Mask, Transform
from dicomml.transforms.compose import Compose
from dicomml.transforms.intensity import (
    WINDOW_PRESETS,
    ClipIntensity,
    HeaderWindow,
    MultiWindow,
    RandomIntensity,
    RandomNoise,
    ScaleIntensity,
    Window,
    ZNormalize,
)
from dicomml.transforms.metatensor import from_metatensor, to_metatensor
from dicomml.transforms.spatial import CropForeground, CropOrPad, Orient, RandomAffine, RandomCrop, RandomFlip, Resample

__all__ = [
    "WINDOW_PRESETS",
    "ClipIntensity",
    "Compose",
    "CropForeground",
    "CropOrPad",
    "HeaderWindow",
    "Mask",
    "MultiWindow",
    "Orient",
    "RandomAffine",
    "RandomCrop",
    "RandomFlip",
    "RandomIntensity",
    "RandomNoise",
    "Resample",
    "ScaleIntensity",
    "Transform",
    "Window",
    "ZNormalize",
    "from_metatensor",
    "to_metatensor",
]
