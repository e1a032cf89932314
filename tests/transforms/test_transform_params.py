"""Constructor parameters: one-line ConfigErrors naming the parameter, numpy numbers accepted, ClipIntensity's dtype."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dicomml.errors import ConfigError
from dicomml.transforms import (
    ClipIntensity,
    CropForeground,
    HeaderWindow,
    MultiWindow,
    RandomAffine,
    RandomFlip,
    RandomNoise,
    Resample,
    ScaleIntensity,
    Window,
    ZNormalize,
)

_SAMPLE = {"image": torch.zeros(1, 4, 4, 4), "affine": np.eye(4)}
_NAN = float("nan")

BAD = {
    "degrees": (lambda: RandomAffine(degrees=(-10, 10)), r"RandomAffine\(degrees=\(-10, 10\)\): degrees must be"),
    "degrees nan": (lambda: RandomAffine(degrees=_NAN), r"RandomAffine\(degrees=nan\): degrees must be a finite number"),
    "std nan": (lambda: RandomNoise(std=_NAN), r"RandomNoise\(std=nan\): std must be a finite number"),
    "axes": (lambda: RandomFlip(axes="x"), r"RandomFlip\(axes='x', p=0.5\): axes are spatial 0, 1, 2"),
    "margin": (lambda: CropForeground(margin=(1, 1)), r"CropForeground\(margin\)=\(1, 1\) must be one or three voxel counts >= 0"),
    "source": (lambda: CropForeground(source="affine"), r"CropForeground\(source='affine'\): source must name a spatial entry"),
    "window pair": (lambda: MultiWindow([(40,)]), r"window \(40,\): give a preset name, \(center, width\)"),
    "windows str": (lambda: MultiWindow("brain"), r"MultiWindow\(windows='brain'\): give a list of windows"),
    "scale low": (lambda: ScaleIntensity(None, 1), r"ScaleIntensity\(low=None\): low must be a finite number"),
    "mean scalar": (lambda: ZNormalize(mean=1, std=1), r"ZNormalize\(mean=1, std=1\): give two lists"),
    "std negative": (lambda: ZNormalize(mean=[0.0], std=[-1.0]), r"ZNormalize\(std=-1.0\): std must be a finite number >= 0"),
    "index": (lambda: HeaderWindow(index="a"), r"HeaderWindow\(index='a'\): index must be an integer"),
    "like shape": (lambda: Resample(like=(np.eye(4), (2, 2))), r"Resample\(like=\(affine, shape\)\): shape=\(2, 2\)"),
    "like empty": (lambda: Resample(like=(np.eye(4), (0, 2, 2))), r"shape=\(0, 2, 2\) must be one or three positive voxel counts"),
    "like array": (lambda: Resample(like=np.eye(4)), r"Resample\(like=ndarray\): give a Volume or \(affine, shape\)"),
    "spacing bool": (lambda: Resample(spacing=True), r"Resample\(spacing=True\): spacing must be a finite number"),
    "window center": (lambda: Window("a", 80), r"Window\(center='a'\): center must be a finite number"),
}


@pytest.mark.parametrize("name", list(BAD))
def test_bad_parameters_raise_one_line_config_errors_naming_them(name):
    build, message = BAD[name]
    with pytest.raises(ConfigError, match=message) as raised:
        build()
    assert "\n" not in str(raised.value)


def test_mean_and_std_of_another_channel_count_raise_a_config_error_at_call():
    with pytest.raises(ConfigError, match="2 values per list for an image of 1 channels"):
        ZNormalize(mean=[1.0, 2.0], std=[1.0, 2.0])(_SAMPLE)


def test_numpy_numbers_work_wherever_python_numbers_do(nifti):
    volume = nifti("mr_sagittal")
    for spacing in (np.float32(2.0), np.int64(2), np.array([2.0, 2.0, 2.0])):
        for axcodes in (None, "RAS"):
            out, expected = Resample(spacing=spacing, axcodes=axcodes)(volume), Resample(spacing=2.0, axcodes=axcodes)(volume)
            np.testing.assert_array_equal(out.array, expected.array)
            np.testing.assert_array_equal(out.affine, expected.affine)
    assert RandomAffine(degrees=np.float32(5.0), p=np.float64(0.5), seed=np.int64(1)).degrees == 5.0
    assert ClipIntensity(np.int16(-1000), np.float32(1000.0)).high == 1000.0
    assert RandomFlip(axes=np.int64(1)).axes == (1,)
    assert CropForeground(margin=(1, 2, 3))({"image": torch.ones(1, 4, 4, 4)})["image"].shape == (1, 4, 4, 4)


@pytest.mark.parametrize("bounds", [(-1024, 3071), (-1024.0, 3071.0), (-40000, 40000)])
def test_clip_intensity_keeps_an_integer_ct_integer_and_clips_as_numpy_does(nifti, bounds):
    ct = np.rint(nifti("ct_3slice").array).astype(np.int16)
    out = ClipIntensity(*bounds)(torch.from_numpy(ct)[None])
    assert out.dtype == torch.int16 and ClipIntensity(*bounds).lookup_table("int16").dtype == np.int16
    np.testing.assert_array_equal(out[0].numpy(), np.clip(ct.astype(np.float64), *bounds))


def test_clip_intensity_to_bounds_with_a_fraction_gives_the_exact_clip_as_floats(nifti):
    ct = np.rint(nifti("ct_3slice").array).astype(np.int16)
    out = ClipIntensity(-1000.5, 1000.5)(torch.from_numpy(ct)[None])
    assert out.dtype == torch.float32 and ClipIntensity(-1000.5, 1000.5).lookup_table("int16").dtype == np.float32
    np.testing.assert_array_equal(out[0].numpy(), np.clip(ct.astype(np.float32), -1000.5, 1000.5))
