"""The default window of a picture: finite values only (NaN and infinity blank no panel), and the header's window
on the voxels' scale (Philips' floating-point values are the display values times ``meta["window_scale"]``)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dicomml import Volume
from dicomml.imaging2d.load import Image2D
from dicomml.imaging2d.spacing import Spacing
from dicomml.viz import render, render_images
from dicomml.viz.window import window_limits

AFFINE = np.diag([2.0, 1.0, 1.0, 1.0])


def _noise() -> np.ndarray:
    return np.random.default_rng(0).normal(100, 20, (20, 32, 32)).astype(np.float32)


def _clim(fig, label: str) -> tuple[float, float]:
    return next(ax for ax in fig.axes if ax.get_label() == label).get_images()[0].get_clim()


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_a_non_finite_voxel_leaves_the_automatic_window_as_the_finite_voxels_give_it(bad: float) -> None:
    image = _noise()
    clean = window_limits(None, image, {})
    image[5, 10, 10] = bad
    low, high = window_limits(None, image, {})
    assert math.isfinite(low) and math.isfinite(high) and low < high
    assert (low, high) == pytest.approx(clean, rel=1e-3)  # one voxel of 20,480 moves the percentiles by little
    vmin, vmax = _clim(render(Volume(image, AFFINE), montage=0), "axial")
    assert math.isfinite(vmin) and math.isfinite(vmax) and vmin < vmax


def test_an_image_with_no_finite_value_gets_a_defined_window() -> None:
    assert window_limits(None, np.full((3, 4, 4), np.nan, np.float32), {}) == (0.0, 1.0)
    assert window_limits(None, np.full((3, 4, 4), 7, np.int16), {}) == (7.0, 8.0)  # constant: width 1


def test_a_2d_picture_is_windowed_like_a_volume_with_infinity_left_out() -> None:
    frame = _noise()[0].copy()
    frame[0, 0], frame[0, 1] = np.inf, np.nan
    image = Image2D(pixels=frame[None], spacing=Spacing(None, None, "none"), meta={"modality": "OT"})
    low, high = _clim(render_images([image]), "image-0")
    assert math.isfinite(low) and math.isfinite(high) and low < high
    assert (low, high) == window_limits(None, frame, {})


def test_header_window_is_mapped_onto_philips_floating_point_values() -> None:
    """FP = DV / (RS * SS): the display-value window [0, 200] covers the same voxels as [0, 0.5] * 1/400."""
    meta = {"window_center": [100.0], "window_width": [200.0], "window_scale": 0.0025}
    assert window_limits(None, _noise(), meta) == pytest.approx((0.0, 0.5))
    display = window_limits(None, _noise(), {**meta, "window_scale": None})  # display values: the header's own
    assert display == (0.0, 200.0)


def test_header_window_on_a_scale_that_varies_by_slice_falls_back_to_the_percentiles() -> None:
    image = _noise()
    meta = {"window_center": [100.0], "window_width": [200.0], "window_scale": [0.5] * 10 + [0.25] * 10}
    assert window_limits(None, image, meta) == window_limits(None, image, {})
    assert window_limits(None, image, {**meta, "window_scale": [0.5] * 20}) == (0.0, 100.0)
