"""load_image checks voi, display and facing as ImageConfig does (one place): a value that does not fit is a one-line
ConfigError naming the parameter, not a ValueError from int() or an IndexError while the LUT is applied."""

from __future__ import annotations

import numpy as np
import pytest

from dicomml.errors import ConfigError
from dicomml.imaging2d import ImageConfig, load_image
from dicomml.imaging2d.synthetic import write_image2d

BAD = [
    ({"voi": "bogus"}, r"^load_image\(voi='bogus'\): voi must be 'header', 'none' or a preset of"),
    ({"voi": (40,)}, r"^load_image\(voi=\(40,\)\): voi must be 'header', 'none', a preset name, an index >= 0 or \(center, width\)$"),
    ({"voi": (40, 0)}, r"^load_image\(voi\[1\]=0\): voi\[1\] must be a finite number > 0"),
    ({"voi": -1}, r"^load_image\(voi=-1\): voi must be an integer >= 0"),
    ({"display": "breasts"}, r"^load_image\(display='breasts'\): display must be one of None, 'breast', 'chest'; did you mean 'breast'\?$"),
    ({"display": "breast", "facing": "up"}, r"^load_image\(facing='up'\): facing must be one of 'right', 'left'$"),
]


@pytest.mark.parametrize(("options", "message"), BAD, ids=[str(o) for o, _ in BAD])
def test_a_display_option_that_does_not_fit_is_a_config_error_naming_it(tmp_path, options, message):
    path = write_image2d(tmp_path / "dx.dcm", np.arange(256, dtype=np.uint16).reshape(16, 16), modality="DX")
    with pytest.raises(ConfigError, match=message) as raised:
        load_image(path, **options)
    assert "\n" not in str(raised.value)
    with pytest.raises(ConfigError, match=message.replace("load_image", "ImageConfig")):  # the same check, its own name
        ImageConfig(**{"display": "breast", **options})


def test_a_preset_name_is_the_same_window_as_for_image_config(tmp_path):
    path = write_image2d(tmp_path / "ct.dcm", np.arange(256, dtype=np.uint16).reshape(16, 16) * 8, modality="DX")
    by_name = load_image(path, voi="lung", dtype=np.float64)
    by_window = load_image(path, voi=ImageConfig(voi="lung").window(), dtype=np.float64)
    assert np.array_equal(by_name.pixels, by_window.pixels) and by_name.meta["window"] == [-600.0, 1500.0]
