"""Colour of more than 8 bits is drawn scaled by its full scale (2**BitsStored - 1), not clipped at 255:
each pixel of the PNG has the colour of pydicom's decoded value scaled to 8 bits."""

from __future__ import annotations

import io

import numpy as np
import pydicom
import pytest
from matplotlib.image import imread
from pydicom.data import get_testdata_file

from dicomml.imaging2d import load_image
from dicomml.imaging2d.synthetic import write_image2d
from dicomml.viz import render_images


def _drawn_colours(path) -> np.ndarray:
    """The PNG's colour (0-255) at the centre of each of the image's pixels, ``(H, W, 3)``."""
    image = load_image(path)
    fig = render_images([image])
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", facecolor=fig.get_facecolor())
    png = np.rint(imread(io.BytesIO(buffer.getvalue()))[..., :3] * 255)
    rows, columns = image.pixels.shape[1:3]
    r, c = np.mgrid[0:rows, 0:columns]
    x, y = fig.axes[0].transData.transform(np.column_stack([c.ravel(), r.ravel()])).T  # display: origin bottom left
    return png[np.floor(png.shape[0] - y).astype(int), np.floor(x).astype(int)].reshape(rows, columns, 3)


def test_pydicoms_16_bit_rgb_is_drawn_in_its_colours_not_clipped():
    path = get_testdata_file("SC_rgb_16bit.dcm", download=False)
    expected = pydicom.dcmread(path).pixel_array / 65535 * 255
    assert len(np.unique(expected)) > 2  # halves and quarters of full scale, which clipping turns to 255
    np.testing.assert_allclose(_drawn_colours(path), expected, atol=1)


@pytest.mark.filterwarnings("error:Clipping input data")
def test_12_bit_rgb_in_16_is_drawn_by_its_stored_bits_full_scale(tmp_path):
    y, x = np.mgrid[0:32, 0:48]
    rgb = np.stack([x * 4095 // 47, y * 4095 // 31, np.full_like(x, 4095)], -1).astype(np.uint16)
    path = write_image2d(tmp_path / "rgb12.dcm", rgb, modality="SC", photometric="RGB", bits_stored=12)
    expected = pydicom.dcmread(path).pixel_array / 4095 * 255
    np.testing.assert_allclose(_drawn_colours(path), expected, atol=1)
