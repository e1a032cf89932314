"""Philips MR loaded on its floating-point scale keeps its header window usable: the window in display values is
mapped onto the voxels (meta["window_scale"] = 1 / (RS * SS)), for pictures and for HeaderWindow alike."""

from __future__ import annotations

import numpy as np
import torch

import dicomml
from dicomml.transforms import HeaderWindow
from dicomml.viz.window import window_limits


def _windowed(volume: dicomml.Volume) -> torch.Tensor:
    return HeaderWindow()({"image": torch.from_numpy(np.asarray(volume.array, np.float64))[None], "meta": volume.meta})["image"]


def test_the_header_window_follows_philips_floating_point_values(data_dir, tmp_path):
    manifest = dicomml.index(data_dir / "dcm_qa_enh/In/Philips", tmp_path / "m", workers=1, progress=False)
    for key in manifest.series.series_key:
        floating = dicomml.load_series(manifest, key)  # the default: dcm2niix's floating point
        display = dicomml.load_series(manifest, key, philips_scaling="display")
        assert "window_scale" not in display.meta
        seen = display.array != 0
        ratio = float(np.median(floating.array[seen] / display.array[seen]))  # the voxels' own scale, the oracle
        np.testing.assert_allclose(floating.meta["window_scale"], ratio, rtol=1e-5)
        np.testing.assert_allclose(
            window_limits(None, floating.array, floating.meta),
            np.multiply(window_limits(None, display.array, display.meta), ratio),
            rtol=1e-5,
        )
        torch.testing.assert_close(_windowed(floating), _windowed(display), atol=1e-3, rtol=0)
