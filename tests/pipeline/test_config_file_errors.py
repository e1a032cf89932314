"""Every config file (pipeline, study, image) is read one way: UTF-8, no repeated key, one-line errors with suggestions."""

from __future__ import annotations

import math
import re
import textwrap

import pytest
import yaml

import dicomml.config
from dicomml.config import PipelineConfig, load_config
from dicomml.errors import ConfigError
from dicomml.imaging2d.prepare import ImageConfig
from dicomml.study.config import StudyConfig, load_study_config

READERS = {"pipeline": load_config, "study": load_study_config, "image": ImageConfig.from_yaml}


def _one_line_error(reader, path) -> str:
    with pytest.raises(ConfigError) as info:
        reader(path)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{path}: ")
    return message


@pytest.mark.parametrize(
    "kind,text,where",
    [
        ("pipeline", "name: x\ndeterministic: {dtype: float32}\ndeterministic: {spacing: 2}\n", "line 3, column 1: key 'deterministic'"),
        ("pipeline", "name: x\ndeterministic:\n  annotations:\n    labels: {liver: 1, liver: 2}\n", "line 4, column 24: key 'liver'"),
        (
            "study",
            "name: s\nroles:\n  ct: {where: \"modality = 'CT'\"}\n  ct: {where: \"modality = 'MR'\"}\n",
            "line 4, column 3: key 'ct'",
        ),
        ("image", "size: [256, 256]\nsize: [512, 512]\n", "line 2, column 1: key 'size'"),
    ],
)
def test_a_repeated_yaml_key_is_refused_naming_file_line_and_key(tmp_path, kind, text, where):
    path = tmp_path / "dup.yaml"
    path.write_text(text)
    assert where in _one_line_error(READERS[kind], path)


def test_a_yaml_merge_key_may_still_be_overridden(tmp_path):
    path = tmp_path / "merge.yaml"
    path.write_text("name: x\ndeterministic:\n  <<: {dtype: float32, spacing: 2}\n  spacing: 1\n")
    assert load_config(path).deterministic.dtype == "float32" and load_config(path).deterministic.spacing == (1.0, 1.0, 1.0)


@pytest.mark.parametrize("kind", sorted(READERS))
@pytest.mark.parametrize("content", ["name: x\n".encode("utf-16"), b"\x89PNG\r\n\x1a\n\x00\xff"], ids=["utf16", "binary"])
def test_a_config_that_is_not_utf8_is_a_one_line_config_error(tmp_path, kind, content):
    path = tmp_path / "bad.yaml"
    path.write_bytes(content)
    assert "not UTF-8 text" in _one_line_error(READERS[kind], path)


def test_an_image_config_syntax_error_is_one_line_with_line_and_column(tmp_path):
    path = tmp_path / "img.yaml"
    path.write_text("size: [512, 512\n")
    message = _one_line_error(ImageConfig.from_yaml, path)
    assert re.search(r": line 2, column 1: not valid YAML \(.*\); fix the syntax$", message)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_a_study_reference_grid_refuses_a_spacing_that_is_not_finite(bad):
    config = {"name": "s", "roles": {"ct": {"where": "modality = 'CT'"}}, "reference": {"spacing": [bad, 4, 4]}}
    with pytest.raises(ConfigError, match=r"reference\.spacing .*: give three positive, finite sizes in mm"):
        StudyConfig.from_dict(config)


@pytest.mark.parametrize(
    "data,suggestion",
    [
        ({"name": "x", "deterministic": {"spacng": [1, 1, 1]}}, "deterministic.spacng: unknown key"),
        ({"name": "x", "at_load": {"normalize": "zscor"}}, "'zscor' is not one of"),
        ({"name": "x", "deterministic": {"annotations": {"label": ["liver"]}}}, "annotations.label: unknown key"),
        ({"name": "x", "deterministic": {"dtype": "float23"}}, "dtype 'float23' is not one of"),
        ({"name": "x", "at_load": {"augment": [{"name": "RandFlip"}]}}, "'RandFlip' is not a dicomml.transforms transform"),
    ],
)
def test_a_pipeline_typo_gets_a_did_you_mean(data, suggestion):
    with pytest.raises(ConfigError) as info:
        PipelineConfig.from_dict(data)
    message = str(info.value)
    assert suggestion in message and re.search(r"; did you mean '\w+'\?$", message) and "\n" not in message


def test_study_and_image_typos_and_preset_names_get_a_did_you_mean():
    with pytest.raises(ConfigError, match=r"roles\.ct\.prefr: unknown key.*; did you mean 'prefer'\?$"):
        StudyConfig.from_dict({"name": "s", "roles": {"ct": {"where": "true", "prefr": "newest"}}})
    with pytest.raises(ConfigError, match=r"reference\.extent 'unoin' is not one of union, intersection; did you mean 'union'\?$"):
        StudyConfig.from_dict({"name": "s", "roles": {"ct": {"where": "true"}}, "reference": {"spacing": [1, 1, 1], "extent": "unoin"}})
    with pytest.raises(ConfigError, match=r"unknown image config key\(s\) \['reszie'\].*; did you mean 'resize'\?$"):
        ImageConfig.from_dict({"reszie": "stretch"})
    with pytest.raises(ConfigError, match=r"^ct_1m: no preset of that name .*; did you mean 'ct_1mm'\?$"):
        load_config("ct_1m")


def test_a_key_far_from_every_known_one_gets_no_suggestion():
    with pytest.raises(ConfigError) as info:
        PipelineConfig.from_dict({"name": "x", "deterministic": {"zzz": 1}})
    assert "did you mean" not in str(info.value)


def test_the_module_docstring_yaml_example_loads():
    doc = dicomml.config.__doc__ or ""
    block = doc.split("YAML layout (every key optional except ``name``)::\n", 1)[1].split("\nPresets ship", 1)[0]
    config = PipelineConfig.from_dict(yaml.safe_load(textwrap.dedent(block)))
    assert [a.name for a in config.at_load.augment] == ["RandomFlip"]


def test_an_image_config_choice_suggests_the_nearest():
    from dicomml.imaging2d import ImageConfig

    with pytest.raises(ConfigError, match=r"^ImageConfig\(display='breats'\): display must be one of .*; did you mean 'breast'\?$"):
        ImageConfig(display="breats")


def test_a_suggestion_ignores_case():
    from dicomml.config import did_you_mean

    assert did_you_mean("SKIP", ("raise", "skip")) == "; did you mean 'skip'?"
