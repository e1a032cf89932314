"""preprocess_one and compute_entry: the entry a Dataset writes, the transforms' own result, devices."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import dicomml
import dicomml.pipeline
from dicomml.cache import Cache
from dicomml.data import SegmentationDataset
from dicomml.errors import ConfigError, SeriesNotFoundError
from dicomml.pipeline import compute_entry, deterministic_transforms, preprocess_one

CT = "modality = 'CT'"


def test_preprocess_one_writes_what_the_dataset_writes(study, make_config, tmp_path):
    _, manifest = study
    config = make_config("ct_seg")
    ds = SegmentationDataset(manifest, config, tmp_path / "a")
    ds[0]
    key = ds.sources[0].series_key
    info = preprocess_one(key, manifest, config, tmp_path / "b")
    assert info.computed and info.key == ds.sources[0].key and info.series_key == key and info.nbytes > 0
    assert not preprocess_one({"series_key": key}, manifest, config, tmp_path / "b").computed
    a, b = Cache(tmp_path / "a").open(info.key), Cache(tmp_path / "b").open(info.key)
    assert a.checksums == b.checksums and a.layouts == b.layouts and a.meta == b.meta
    for name in a.layouts:
        image_a = (tmp_path / "a" / a._path.split("/a/", 1)[1] / name / "c").rglob("*")
        files_a = sorted(p.read_bytes() for p in image_a if p.is_file())
        image_b = (tmp_path / "b" / b._path.split("/b/", 1)[1] / name / "c").rglob("*")
        assert files_a == sorted(p.read_bytes() for p in image_b if p.is_file())  # same bytes


def test_compute_entry_equals_the_transforms_on_the_stored_integers(study, make_config):
    _, manifest = study
    config = make_config("ct_1mm")
    volume = dicomml.load_series(manifest, dicomml.pipeline.series_sources(manifest, config, where=CT)[0].series_key)
    assert volume.array.dtype.kind == "i"
    image, _, affine = compute_entry(volume, [], config)  # converts to float32 in numpy first
    sample = {"image": torch.from_numpy(np.ascontiguousarray(volume.array))[None], "affine": volume.affine}
    for step in deterministic_transforms(config):
        sample = step(sample)
    expected = np.clip(np.rint(sample["image"][0].numpy()), -32768, 32767).astype(np.int16)
    np.testing.assert_array_equal(image, expected)
    np.testing.assert_array_equal(affine, np.asarray(sample["affine"]))


def _devices() -> list[str]:
    return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", _devices())
def test_device_gives_the_default_entry(study, make_config, tmp_path, device):
    _, manifest = study
    config = make_config("ct_seg")
    key = dicomml.pipeline.series_sources(manifest, config)[0].series_key
    default = preprocess_one(key, manifest, config, tmp_path / "a")
    on_device = preprocess_one(key, manifest, config, tmp_path / "b", device=device)
    assert on_device.computed and on_device.key == default.key
    a, b = Cache(tmp_path / "a").open(default.key), Cache(tmp_path / "b").open(default.key)
    assert a.layouts == b.layouts and (device != "cpu" or a.checksums == b.checksums)
    # CUDA's fused trilinear kernel and the CPU's separable path for integer images agree to
    # float32 rounding, so an int16 voxel at .5 may round either way; masks (nearest) are exact
    image_tolerance = 0 if device == "cpu" else 1
    for name in a.layouts:
        diff = np.abs(a.read(name).astype(np.int64) - b.read(name))
        assert diff.max(initial=0) <= (image_tolerance if name == "image" else 0), name


@pytest.mark.parametrize("device", ["tpu", "cuda:x", "meta"] + ([] if torch.cuda.is_available() else ["cuda"]))
def test_unknown_device_is_a_config_error(study, make_config, tmp_path, device):
    _, manifest = study
    config = make_config("ct_1mm")
    key = dicomml.pipeline.series_sources(manifest, config, where=CT)[0].series_key
    with pytest.raises(ConfigError, match="device"):
        preprocess_one(key, manifest, config, tmp_path / "c", device=device)
    assert Cache(tmp_path / "c").keys() == []


def test_an_unknown_series_key_names_the_manifest_and_how_to_list_keys(study, make_config):
    _, manifest = study
    with pytest.raises(
        SeriesNotFoundError, match=r"manifest: no series_key 'ffff' in the manifest; list them with `dicomml list .*manifest series`"
    ):
        dicomml.pipeline.series_sources(manifest, make_config("ct_1mm"), series_keys=["ffff"])
