"""Rendering details: mask overlay, montage range, windows, leading axes, grid checks."""

from __future__ import annotations

import re

import numpy as np
import pytest
from matplotlib.image import imread

from dicomml.errors import ConfigError, GeometryError
from dicomml.sample.phantom import voxel_centres
from dicomml.viz import DisplayGrid, render, save_png, window_limits
from dicomml.volume import Volume

AFFINE = np.array([[0, 0, -2.0, 60], [0, -2.0, 0, 60], [3.0, 0, 0, -45], [0, 0, 0, 1]])  # (slice, row, col): SPL
SHAPE = (31, 61, 61)
BALL_RAS = np.array([20.0, -10.0, 15.0])


@pytest.fixture()
def image_and_mask():
    world = voxel_centres(AFFINE, SHAPE)
    ball = np.linalg.norm(world - BALL_RAS, axis=-1) <= 12
    image = Volume(np.where(ball, 300, 0).astype(np.int16), AFFINE, meta={"modality": "CT"})
    mask = Volume(ball.astype(np.uint8), AFFINE)
    return image, mask


def coloured_pixels(png: np.ndarray) -> np.ndarray:
    """Pixels that are neither grey nor the (anti-aliased) yellow of the side letters."""
    r, g, b = png[..., 0], png[..., 1], png[..., 2]
    yellowish = (np.abs(r - g) < 0.12) & (b < r - 0.1)
    return (np.ptp(png[..., :3], axis=-1) > 0.15) & ~yellowish


def test_mask_overlay_is_drawn_in_colour_and_centres_the_views(tmp_path, image_and_mask):
    image, mask = image_and_mask
    with_mask = imread(save_png(image, tmp_path / "mask.png", window=(150, 300), mask=mask))
    without = imread(save_png(image, tmp_path / "plain.png", window=(150, 300)))
    assert coloured_pixels(with_mask).sum() > 500
    assert coloured_pixels(without).sum() == 0
    fig = render(image, window=(150, 300), mask=mask)
    titles = {ax.get_label(): ax.get_title() for ax in fig.axes}
    for view, axis in (("sagittal", 0), ("coronal", 1), ("axial", 2)):
        coordinate = float(re.search(r"= (-?[\d.]+) mm", titles[view]).group(1))
        assert coordinate == pytest.approx(BALL_RAS[axis], abs=3.0), view


def test_montage_spans_the_mask(image_and_mask):
    image, mask = image_and_mask
    fig = render(image, mask=mask, montage=6)
    zs = [float(re.search(r"z = (-?[\d.]+) mm", ax.get_title()).group(1)) for ax in fig.axes if ax.get_label().startswith("montage")]
    assert len(zs) == 6
    assert min(zs) >= BALL_RAS[2] - 12 - 3 and max(zs) <= BALL_RAS[2] + 12 + 3
    assert max(zs) - min(zs) > 15


def test_mask_on_another_grid_is_refused(image_and_mask):
    image, mask = image_and_mask
    shifted = Volume(mask.array, mask.affine + np.pad(np.ones((3, 1)), ((0, 1), (3, 0))))
    with pytest.raises(GeometryError, match="differs from the image grid"):
        render(image, mask=shifted)


def test_channel_masks_become_labels(image_and_mask):
    image, mask = image_and_mask
    channels = Volume(np.stack([mask.array, np.zeros_like(mask.array)]), AFFINE, axes=("channel",))
    fig = render(image, mask=channels, montage=0)
    assert len(fig.axes) == 3


def test_leading_axes_show_index_zero(image_and_mask):
    image, _ = image_and_mask
    series = Volume(np.stack([image.array, image.array * 0]), AFFINE, axes=("time",))
    fig = render(series, window=(150, 300), centre=BALL_RAS, montage=0)
    assert "time index 0 shown" in fig.get_suptitle()
    axial = next(ax for ax in fig.axes if ax.get_label() == "axial")
    assert axial.images[0].get_array().max() == 300


def test_window_numbers_header_and_percentiles():
    assert window_limits((40, 400), np.zeros(3), {}) == (-160.0, 240.0)
    assert window_limits(None, np.zeros(3), {"window_center": [50.0, 500.0], "window_width": [350.0, 2000.0]}) == (-125.0, 225.0)
    low, high = window_limits(None, np.arange(1001.0), {})
    assert (low, high) == pytest.approx((5.0, 995.0))
    empty = {"window_center": [], "window_width": []}  # empty (0028,1050)/(0028,1051), as some writers leave them
    assert window_limits(None, np.arange(1001.0), empty) == pytest.approx((5.0, 995.0))
    with pytest.raises(ConfigError):
        window_limits((40, 0), np.zeros(3), {})


def test_window_presets_come_from_the_transforms_table():
    from dicomml.transforms import WINDOW_PRESETS

    lung = WINDOW_PRESETS["lung"]
    assert window_limits("lung", np.zeros(3), {}) == (lung.low, lung.high)
    with pytest.raises(ConfigError, match="unknown"):
        window_limits("no-such-window", np.zeros(3), {})


def test_display_grid_checks_its_input():
    with pytest.raises(GeometryError, match="convention"):
        DisplayGrid(np.zeros((2, 2, 2)), np.eye(4), convention="upside-down")  # type: ignore[arg-type]
    with pytest.raises(GeometryError, match="label map shape"):
        DisplayGrid(np.zeros((2, 2, 2)), np.eye(4), labels=np.zeros((2, 2, 3)))
    with pytest.raises(GeometryError, match="outside"):
        DisplayGrid(np.zeros((2, 2, 2)), np.eye(4)).plane("axial", 2)
