"""Windows against pydicom's VOI LUT implementation; intensity scaling and z-normalization against MONAI."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.transforms import NormalizeIntensity, ScaleIntensityRange
from pydicom import Dataset
from pydicom.pixels import apply_windowing

from dicomml.config import WindowSpec
from dicomml.errors import ConfigError
from dicomml.transforms import (
    WINDOW_PRESETS,
    ClipIntensity,
    HeaderWindow,
    Mask,
    MultiWindow,
    RandomIntensity,
    RandomNoise,
    ScaleIntensity,
    Window,
    ZNormalize,
)
from dicomml.volume import Volume

HU = np.linspace(-1100.0, 1500.0, 2601)


def _pydicom_window(values: np.ndarray, centers, widths, function: str, index: int) -> np.ndarray:
    """pydicom's windowing (PS3.3 C.11.2.1.2), rescaled from its 16-bit signed output range to [0, 1]."""
    ds = Dataset()
    ds.BitsStored, ds.PixelRepresentation, ds.PhotometricInterpretation = 16, 1, "MONOCHROME2"
    ds.WindowCenter, ds.WindowWidth, ds.VOILUTFunction = centers, widths, function
    return (apply_windowing(values.copy(), ds, index=index) + 32768.0) / 65535.0


@pytest.mark.parametrize("function", ["LINEAR", "LINEAR_EXACT", "SIGMOID"])
def test_header_window_matches_pydicom_for_each_voi_function_and_window(function):
    centers, widths = [40.0, -600.0, 400.0], [80.0, 1500.0, 1801.0]
    sample = {
        "image": torch.from_numpy(HU)[None, None, None],
        "meta": {"window_center": centers, "window_width": widths, "voi_lut_function": function},
    }
    stacked = HeaderWindow(index=None)(sample)["image"]
    assert stacked.shape == (3, 1, 1, HU.size)
    for i in range(3):
        expected = _pydicom_window(HU, centers, widths, function, i)
        np.testing.assert_allclose(stacked[i].flatten().numpy(), expected, atol=1e-6)
    second = HeaderWindow(index=1)(sample)["image"]
    np.testing.assert_array_equal(second[0].numpy(), stacked[1].numpy())


def test_header_window_defaults_to_linear_and_reads_a_volume_meta():
    volume = Volume(HU.reshape(1, 1, -1).copy(), np.eye(4), meta={"window_center": 40.0, "window_width": 80.0})
    out = HeaderWindow(output="uint8")(volume)
    assert isinstance(out, Volume) and out.array.dtype == np.uint8
    expected = np.round(_pydicom_window(HU, 40.0, 80.0, "LINEAR", 0) * 255)
    np.testing.assert_array_equal(out.array.flatten(), expected)


def test_header_window_without_a_window_names_the_tag():
    with pytest.raises(ConfigError, match=r"\(0028,1050\) Window Center") as info:
        HeaderWindow()({"image": torch.zeros(1, 1, 1, 1), "meta": {}})
    assert info.value.tag == "(0028,1050)"
    with pytest.raises(ConfigError, match="2 Window Center values but 1"):
        HeaderWindow()({"image": torch.zeros(1, 1, 1, 1), "meta": {"window_center": [1, 2], "window_width": [3]}})


def test_window_default_is_the_exact_linear_ramp_over_center_plus_minus_half_width():
    out = Window(40, 80)(torch.from_numpy(HU)[None, None, None])
    np.testing.assert_allclose(out.flatten().numpy(), _pydicom_window(HU, 40.0, 80.0, "LINEAR_EXACT", 0), atol=1e-6)
    assert Window(40, 80, output="uint8")(torch.tensor([[[[0.0, 40.0, 80.0]]]])).tolist() == [[[[0, 128, 255]]]]


def test_presets_are_the_config_window_specs_and_multiwindow_stacks_them():
    assert set(WINDOW_PRESETS) >= {"brain", "subdural", "stroke", "bone", "lung", "mediastinum", "abdomen", "liver", "soft_tissue"}
    assert all(isinstance(s, WindowSpec) for s in WINDOW_PRESETS.values())
    x = torch.from_numpy(HU).float()[None, None, None]
    stacked = MultiWindow(["brain", "subdural", WindowSpec(600, 2800, "bone")])(x)
    assert stacked.shape == (3, 1, 1, HU.size)
    for i, name in enumerate(["brain", "subdural", "bone"]):
        assert torch.equal(stacked[i], Window.preset(name)(x)[0])
    with pytest.raises(ConfigError, match="unknown"):
        MultiWindow(["brian"])


def test_windows_leave_masks_alone():
    sample = {"image": torch.full((1, 2, 2, 2), 40.0), "mask": Mask(torch.ones(1, 2, 2, 2, dtype=torch.uint8))}
    out = MultiWindow(["brain", "bone"])(sample)
    assert out["image"].shape == (2, 2, 2, 2)
    assert isinstance(out["mask"], Mask) and torch.equal(out["mask"], sample["mask"])


def test_bad_window_arguments_raise_config_errors():
    with pytest.raises(ConfigError, match="VOI LUT Function"):
        Window(40, 80, function="GAMMA")
    with pytest.raises(ConfigError, match="Window Width 0.5"):
        Window(40, 0.5, function="LINEAR")
    with pytest.raises(ConfigError, match="output"):
        Window(40, 80, output="int8")


def test_scale_intensity_matches_monai_scale_intensity_range_on_a_real_ct(nifti):
    x = torch.from_numpy(nifti("ct_3slice").array)[None]
    for clip in (True, False):
        ours = ScaleIntensity(-1000, 1000, -1.0, 1.0, clip=clip)(x)
        theirs = ScaleIntensityRange(a_min=-1000, a_max=1000, b_min=-1.0, b_max=1.0, clip=clip)(x)
        np.testing.assert_allclose(ours.numpy(), np.asarray(theirs), atol=1e-6)


def test_clip_keeps_dtype():
    out = ClipIntensity(-1024, 3071)(torch.tensor([[[[-3000, 0, 4000]]]], dtype=torch.int16))
    assert out.dtype == torch.int16 and out.flatten().tolist() == [-1024, 0, 3071]


@pytest.mark.parametrize("nonzero", [False, True])
def test_znormalize_matches_monai_normalize_intensity_on_real_mr(nifti, nonzero):
    volume = nifti("mr_oblique")
    x = torch.from_numpy(np.stack([volume.array, volume.array[::-1] * 0.5]))  # two channels, zero background
    assert bool((x == 0).any())
    ours = ZNormalize(nonzero=nonzero)(x)
    theirs = NormalizeIntensity(nonzero=nonzero, channel_wise=True)(x)
    np.testing.assert_allclose(ours.numpy(), np.asarray(theirs), atol=1e-4)


def test_random_intensity_is_drawn_once_recorded_and_reproducible():
    sample = {"image": torch.ones(1, 2, 2, 2), "second": torch.full((1, 2, 2, 2), 2.0)}
    out = RandomIntensity(scale=0.2, shift=0.5, seed=3)(sample)
    record = out["meta"]["transforms"][-1]
    assert record["name"] == "RandomIntensity" and record["applied"]
    assert torch.allclose(out["image"], torch.full((1, 2, 2, 2), record["factor"] + record["offset"]))
    assert torch.allclose(out["second"], torch.full((1, 2, 2, 2), 2 * record["factor"] + record["offset"]))
    again = RandomIntensity(scale=0.2, shift=0.5, seed=3)(sample)
    assert again["meta"]["transforms"] == out["meta"]["transforms"]
    assert torch.equal(RandomIntensity(p=0.0)(sample)["image"], sample["image"])


def test_random_noise_has_the_requested_std_and_records_its_seed():
    out = RandomNoise(std=2.0, seed=1)({"image": torch.zeros(1, 20, 20, 20)})
    assert abs(float(out["image"].std()) - 2.0) < 0.1
    assert "noise_seed" in out["meta"]["transforms"][0]


def test_multiwindow_lookup_table_equals_multiwindow_on_every_int16_value():
    values = torch.from_numpy(np.arange(-32768, 32768, dtype=np.int16)).reshape(1, 4, 128, 128)
    windows = [WindowSpec(40, 80, "brain"), WindowSpec(80, 200, "subdural"), WindowSpec(600, 2800, "bone")]
    table = MultiWindow(windows).lookup_table("int16")
    mapped = torch.from_numpy(table[:, values.numpy().view(np.uint16)].reshape(3, 4, 128, 128))
    assert torch.equal(mapped, MultiWindow(windows)(values))
    u8 = torch.arange(256, dtype=torch.uint8).reshape(1, 1, 16, 16)
    table = MultiWindow(windows[:1]).lookup_table("uint8")
    assert torch.equal(torch.from_numpy(table[:, u8.numpy()[0]]), MultiWindow(windows[:1])(u8))


def test_only_pointwise_transforms_of_small_integer_images_give_a_table():
    assert Window(40, 80).lookup_table("int32") is None and Window(40, 80).lookup_table("float32") is None
    assert ZNormalize().lookup_table("int16") is None  # depends on the image's statistics
    table = ClipIntensity(-100, 100).lookup_table("uint16")
    assert table.shape == (1, 65536) and table[0, 50] == 50 and table[0, 65535] == 100
