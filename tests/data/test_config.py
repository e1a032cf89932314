"""Pipeline configs: YAML loading, validation messages naming file and key, stable canonical form."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from dicomml.config import PRESET_DIR, PipelineConfig, WindowSpec, load_config, presets
from dicomml.errors import ConfigError


@pytest.mark.parametrize("name", ["ct_1mm", "head_ct_3window", "mr_brain_1mm", "ct_seg"])
def test_shipped_configs_load_and_round_trip(name):
    config = load_config(PRESET_DIR / f"{name}.yaml")
    assert config.name == name
    assert PipelineConfig.from_dict(config.to_dict()) == config
    assert yaml.safe_load(yaml.safe_dump(config.to_dict())) == config.to_dict()


def test_shipped_configs_say_what_the_issue_asks():
    ct = load_config(PRESET_DIR / "ct_1mm.yaml")
    assert (ct.deterministic.dtype, ct.deterministic.orientation, ct.deterministic.spacing) == ("int16", "RAS", (1.0, 1.0, 1.0))
    head = load_config(PRESET_DIR / "head_ct_3window.yaml")
    assert [w.name for w in head.at_load.windows] == ["brain", "subdural", "bone"]
    assert load_config(PRESET_DIR / "mr_brain_1mm.yaml").at_load.normalize == "zscore"
    seg = load_config(PRESET_DIR / "ct_seg.yaml")
    assert seg.deterministic.masks == ("*",) and seg.deterministic.chunks == (48, 48, 48)


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cfg.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "text,match",
    [
        ("name: x\ndeterministic:\n  spacin: [1, 1, 1]\n", r"deterministic\.spacin: unknown key"),
        ("name: x\ndeterministic:\n  spacing: [1, 1]\n", r"deterministic\.spacing: \[1, 1\] has 2 values, expected 3"),
        ("name: x\ndeterministic:\n  spacing: [1, -1, 1]\n", r"spacing \[1\.0, -1\.0, 1\.0\] must be three positive"),
        ("name: x\ndeterministic:\n  orientation: RAR\n", r"orientation 'RAR' is not a RAS\+ axis code"),
        ("name: x\ndeterministic:\n  dtype: int64\n", r"dtype 'int64' is not one of"),
        ("name: x\ndeterministic:\n  shape: [1, 2, a]\n", r"deterministic\.shape\[2\]: 'a' is str, expected int"),
        ("name: x\nat_load:\n  windows: [{center: 40}]\n", r"at_load\.windows\[0\]: needs center and width"),
        ("name: x\nat_load:\n  windows: [{center: 40, width: 0}]\n", r"width must be > 0"),
        ("name: x\nat_load:\n  normalize: minmax\n", r"normalize 'minmax' is not one of"),
        ("name: x\ndeterministic:\n  max_voxels: 0\n", r"max_voxels 0 must be a positive number of voxels"),
        ("name: x\ndeterministic:\n  max_voxels: 2.5\n", r"deterministic\.max_voxels: 2\.5 is float, expected int"),
        ("name: x\nat_load:\n  augment: [{name: RandomFlip, params: 3}]\n", r"at_load\.augment\[0\]\.params: got int"),
        ("deterministic: {}\n", r"name: required"),
        ("name: x\nextra: 1\n", r"extra: unknown key"),
        ("- just\n- a list\n", r"top level is list, expected a mapping"),
        ("name: [unclosed\n", r"not valid YAML"),
    ],
)
def test_invalid_yaml_names_the_file_and_the_key(tmp_path, text, match):
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError, match=match) as info:
        PipelineConfig.from_yaml(path)
    assert str(path) in str(info.value)
    assert isinstance(info.value, ValueError)


def test_preset_names_load_the_shipped_files_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the quick start run outside the repository
    assert presets() == sorted(p.stem for p in PRESET_DIR.glob("*.yaml")) and "ct_seg" in presets()
    for name in presets():
        assert load_config(name) == PipelineConfig.from_yaml(PRESET_DIR / f"{name}.yaml")


def test_unknown_preset_lists_the_presets():
    with pytest.raises(ConfigError, match=r"ct_sge: no preset of that name \(presets: ct_1mm, ct_seg, "):
        load_config("ct_sge")


def test_a_path_object_without_suffix_is_a_file_not_a_preset(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("ct_seg").write_text("name: mine\n")
    assert load_config(Path("ct_seg")).name == "mine" and load_config("ct_seg").name == "ct_seg"


def test_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read the config"):
        load_config(tmp_path / "absent.yaml")


def test_canonical_form_ignores_key_order_name_and_at_load(tmp_path):
    a = PipelineConfig.from_yaml(_write(tmp_path, "name: a\ndeterministic: {spacing: 1, orientation: las}\n"))
    b = PipelineConfig.from_dict(
        {
            "at_load": {"windows": [{"center": 40, "width": 80}]},
            "deterministic": {"orientation": "LAS", "spacing": [1.0, 1.0, 1.0]},
            "name": "b",
        }
    )
    assert a.canonical() == b.canonical() and a.cache_hash() == b.cache_hash()
    c = PipelineConfig.from_dict({"name": "c", "deterministic": {"orientation": "LAS", "spacing": [1, 1, 1], "dtype": "float32"}})
    assert c.cache_hash() != a.cache_hash()
    assert a.canonical() == (
        '{"chunks":[64,64,64],"dtype":"int16","masks":[],"orientation":"LAS","philips_scaling":"float",'
        '"shape":null,"spacing":[1.0,1.0,1.0]}'
    )


def test_max_voxels_is_read_validated_and_never_in_the_cache_key(tmp_path):
    from dicomml.config import with_options
    from dicomml.limits import DEFAULT_MAX_VOXELS

    base = PipelineConfig.from_dict({"name": "a", "deterministic": {"spacing": [1, 1, 1]}})
    assert base.deterministic.max_voxels == DEFAULT_MAX_VOXELS
    at_default = PipelineConfig.from_dict({"name": "a", "deterministic": {"spacing": [1, 1, 1], "max_voxels": DEFAULT_MAX_VOXELS}})
    raised = PipelineConfig.from_yaml(_write(tmp_path, "name: a\ndeterministic: {spacing: [1, 1, 1], max_voxels: 4000000000}\n"))
    assert raised.deterministic.max_voxels == 4_000_000_000
    # it decides whether a series loads, not what is cached: existing and new cache keys stay the same
    assert "max_voxels" not in base.canonical()
    assert base.canonical() == at_default.canonical() == raised.canonical()
    assert base.cache_hash() == raised.cache_hash() == with_options(base, max_voxels=8).cache_hash()
    assert with_options(base, max_voxels=8).deterministic.max_voxels == 8
    assert with_options(raised).deterministic.max_voxels == 4_000_000_000  # None keeps it
    assert PipelineConfig.from_dict(raised.to_dict()) == raised


def test_configs_are_frozen():
    config = PipelineConfig("x")
    with pytest.raises(AttributeError):
        config.name = "y"  # type: ignore[misc]
    assert WindowSpec(40, 80).low == 0 and WindowSpec(40, 80).high == 80
