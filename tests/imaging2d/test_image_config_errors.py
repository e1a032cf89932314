"""An ImageConfig value that does not fit is a one-line ConfigError naming the field and its form when the config is
made, not a TypeError, IndexError or silently ignored value when images are prepared; 2D images of different sizes
that cannot be batched get the ImageConfig advice, not the 3D one."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

import dicomml
from dicomml.cli.main import main
from dicomml.data import collate
from dicomml.errors import ConfigError
from dicomml.imaging2d import ImageConfig
from dicomml.imaging2d.synthetic import write_image2d

BAD = [
    ({"size": 512}, r"size=512\): size must be \(rows, columns\), two integers >= 1"),
    ({"size": [512, 512, 3]}, r"size must be \(rows, columns\)"),
    ({"size": [512, "a"]}, r"size\[1\]='a'\): size\[1\] must be an integer >= 1"),
    ({"size": [512, 0]}, r"size\[1\] must be an integer >= 1"),
    ({"size": [512.5, 512]}, r"size\[0\] must be an integer"),
    ({"voi": [40]}, r"voi=\[40\]\): voi must be 'header', 'none', a preset name, an index >= 0 or \(center, width\)"),
    ({"voi": [40, 400, 3]}, r"voi must be .* or \(center, width\)"),
    ({"voi": [40, "a"]}, r"voi\[1\] must be a finite number > 0 \(the window width\)"),
    ({"voi": [40, 0]}, r"voi\[1\] must be a finite number > 0"),
    ({"voi": [float("nan"), 400]}, r"voi\[0\] must be a finite number"),
    ({"voi": -1}, r"voi must be an integer >= 0"),
    ({"voi": True}, r"voi must be 'header'"),
    ({"voi": "lungs"}, r"voi must be 'header', 'none' or a preset of"),
    ({"resize": "crop"}, r"resize must be one of 'letterbox', 'stretch', 'none'"),
    ({"display": "spine"}, r"display must be one of None, 'breast', 'chest'"),
    ({"facing": "up"}, r"facing must be one of 'right', 'left'"),
    ({"reduced_decode": "yes"}, r"reduced_decode must be true or false"),
    ({"dtype": "float16"}, r"dtype must be one of 'uint16', 'float32'"),
]


@pytest.mark.parametrize(("values", "message"), BAD, ids=[str(v) for v, _ in BAD])
def test_a_value_that_does_not_fit_is_a_config_error_naming_the_field(values, message):
    with pytest.raises(ConfigError, match=f"^<dict>: ImageConfig\\(.*{message}") as exc:
        ImageConfig.from_dict(values)
    assert "\n" not in str(exc.value)
    with pytest.raises(ConfigError, match=message):  # the same from Python
        ImageConfig(**values)


def test_yaml_and_python_values_make_one_config():
    """A YAML list and a Python tuple, ints and floats, make the same config and so the same cache key."""
    from_yaml = ImageConfig.from_dict({"size": [256, 128], "voi": [40, 400]})
    from_python = ImageConfig(size=(np.int64(256), 128), voi=(40.0, np.float32(400)))
    assert from_yaml == from_python and from_yaml.size == (256, 128) and from_yaml.voi == (40.0, 400.0)
    assert from_yaml.cache_hash() == from_python.cache_hash()
    assert ImageConfig(voi=np.int64(1)).voi == 1 and ImageConfig(voi="lung").window() == (-600.0, 1500.0)


def test_preprocess_reports_a_bad_image_config_in_one_line(tmp_path, capsys):
    write_image2d(tmp_path / "dicom" / "dx.dcm", np.zeros((16, 16), np.uint16), modality="DX")
    dicomml.index(tmp_path / "dicom", tmp_path / "manifest", workers=1, progress=False)
    (tmp_path / "bad.yaml").write_text("size: 512\nresize: letterbox\n")
    args = ["preprocess", str(tmp_path / "manifest"), "--images", "--config", str(tmp_path / "bad.yaml")]
    with pytest.raises(SystemExit) as exit_info:
        main([*args, "--cache", str(tmp_path / "cache"), "--workers", "0", "--quiet"])
    assert exit_info.value.code == 1
    error = capsys.readouterr().err.strip()
    assert (
        error == f"dicomml: error: {tmp_path / 'bad.yaml'}: ImageConfig(size=512): size must be (rows, columns), two integers >= 1, or None"
    )


@pytest.mark.parametrize("cached", [False, True])
def test_2d_images_of_different_sizes_get_the_image_config_advice(tmp_path, cached):
    for name, shape in (("a", (16, 24)), ("b", (20, 20))):
        write_image2d(tmp_path / "dicom" / f"{name}.dcm", np.zeros(shape, np.uint16), modality="DX")
    dicomml.index(tmp_path / "dicom", tmp_path / "manifest", workers=1, progress=False)
    dataset = dicomml.ImageDataset(tmp_path / "manifest", tmp_path / "cache" if cached else None, ImageConfig(size=None, resize="none"))
    advice = re.escape("differ; set ImageConfig(size=(rows, columns), resize='letterbox' or 'stretch'), or batch_size=1")
    with pytest.raises(ValueError, match=f"^cannot batch 'image': shapes .* {advice}$"):
        collate([dataset[0], dataset[1]])
    with pytest.raises(ValueError, match="deterministic.shape in the config"):  # volumes keep theirs
        collate([{"image": torch.zeros(1, 2, 2, 2), "meta": {}}, {"image": torch.zeros(1, 2, 2, 3), "meta": {}}])
