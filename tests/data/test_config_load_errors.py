"""A config's augmentations are checked when it loads, and a YAML error is one line naming file, line and problem."""

from __future__ import annotations

import re

import pytest

from dicomml.config import PipelineConfig, load_config
from dicomml.errors import ConfigError


@pytest.mark.parametrize(
    "augment,message",
    [
        ("[{name: NoSuch}]", r"at_load\.augment\[0\]\.name: 'NoSuch' is not a dicomml\.transforms transform"),
        ("[{name: RandomFlip}, {name: Mask}]", r"at_load\.augment\[1\]\.name: 'Mask' is not a dicomml\.transforms transform"),
        (
            "[{name: RandomFlip, params: {axis: 3, bogus: 1}}]",
            r"at_load\.augment\[0\]\.params: RandomFlip\.__init__\(\) got an unexpected keyword argument 'axis'",
        ),
        ("[{name: RandomFlip, params: {axes: [3]}}]", r"at_load\.augment\[0\]\.params: RandomFlip\(axes=\[3\], p=0\.5\): axes are spatial"),
    ],
)
def test_an_augmentation_that_cannot_be_built_is_a_config_error_at_load(tmp_path, augment, message):
    path = tmp_path / "aug.yaml"
    path.write_text(f"name: aug\nat_load: {{augment: {augment}}}\n")
    with pytest.raises(ConfigError, match=f"^{re.escape(str(path))}: {message}") as info:
        load_config(path)
    assert len(str(info.value).splitlines()) == 1


def test_a_valid_augmentation_still_loads():
    config = PipelineConfig.from_dict(
        {"name": "ok", "at_load": {"augment": [{"name": "RandomFlip", "params": {"axes": [0, 1], "p": 0.3}}]}}
    )
    assert config.at_load.augment[0].kwargs() == {"axes": [0, 1], "p": 0.3}


@pytest.mark.parametrize(
    "text,message",
    [
        (
            "name: [unclosed\n",
            r"line 2, column 1: not valid YAML \(expected ',' or '\]', but got '<stream end>', "
            r"while parsing a flow sequence at line 1, column 7\); fix the syntax",
        ),
        ("name: x\n deterministic: {}\n", r"line 2, column 15: not valid YAML \(mapping values are not allowed here\); fix the syntax"),
        (
            'name: !!python/object/apply:os.system ["echo PWNED"]\n',
            r"line 1, column 7: could not determine a constructor for the tag 'tag:yaml\.org,2002:python/object/apply:os\.system'; "
            r"a config is plain YAML \(mappings, lists, strings, numbers\), without tags",
        ),
    ],
)
def test_a_yaml_error_is_one_line_naming_the_file_line_and_problem(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=f"^{re.escape(str(path))}: {message}$") as info:
        load_config(path)
    assert "\n" not in str(info.value)
