"""A Dataset whose entry is deleted and collected by another process between opening it and reading it: a miss, not a broken entry."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import dicomml
from dicomml.cache import Cache
from dicomml.config import PipelineConfig
from dicomml.data import PatchDataset, SeriesDataset
from dicomml.dicom.synthetic import write_series
from dicomml.errors import CacheIntegrityError, CacheMissError

_CONFIG = {
    "name": "midread",
    "deterministic": {"orientation": "RAS", "spacing": None, "dtype": "int16", "masks": [], "chunks": [8, 8, 4]},
    "at_load": {"windows": [], "normalize": "none"},
}


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("midread")
    write_series(root / "dicom", np.random.default_rng(2).integers(0, 2000, size=(6, 16, 16)).astype(np.int16), series_uid="1.2.3.7")
    dicomml.index(str(root / "dicom"), str(root / "manifest"), workers=1, progress=False)
    return root / "manifest"


def _collected_after_open(monkeypatch: pytest.MonkeyPatch, dataset, other: Cache) -> None:
    """The first entry the Dataset opens is then unpublished and its files removed (another process's delete and gc)."""
    opened = type(dataset).entry

    def open_then_collect(self, series_index: int):
        entry = opened(self, series_index)
        monkeypatch.setattr(type(dataset), "entry", opened)
        other.delete(entry.key)
        other.gc(grace_seconds=0)
        return entry

    monkeypatch.setattr(type(dataset), "entry", open_then_collect)


def _dataset(kind: str, manifest: Path, cache: Path) -> SeriesDataset | PatchDataset:
    config = PipelineConfig.from_dict(_CONFIG)
    if kind == "series":
        return SeriesDataset(manifest, config, cache)
    return PatchDataset(manifest, config, cache, patch_size=(8, 8, 4), samples_per_volume=2)


@pytest.mark.parametrize("kind", ["series", "patch"])
def test_an_entry_collected_while_read_is_computed_again(manifest, tmp_path, monkeypatch, kind):
    first = _dataset(kind, manifest, tmp_path / "c")[-1]
    dataset = _dataset(kind, manifest, tmp_path / "c")
    _collected_after_open(monkeypatch, dataset, Cache(tmp_path / "c"))
    again = dataset[-1]  # a patch drawn as before: its draws are made anew for the entry computed again
    torch.testing.assert_close(again["image"], first["image"], rtol=0, atol=0)
    assert dataset.cache.has(dataset.sources[0].key)


def test_with_cache_only_an_entry_collected_while_read_is_a_miss(manifest, tmp_path, monkeypatch):
    config = PipelineConfig.from_dict(_CONFIG)
    SeriesDataset(manifest, config, tmp_path / "c")[0]
    dataset = SeriesDataset(manifest, config, tmp_path / "c", cache_only=True)
    _collected_after_open(monkeypatch, dataset, Cache(tmp_path / "c"))
    with pytest.raises(CacheMissError, match="cache_only=True"):
        dataset[0]


def test_a_published_entry_with_a_missing_shard_still_raises(manifest, tmp_path):
    config = PipelineConfig.from_dict(_CONFIG)
    dataset = SeriesDataset(manifest, config, tmp_path / "c")
    dataset[0]
    shutil.rmtree(Path(dataset.cache.open(dataset.sources[0].key)._path) / "image")
    with pytest.raises(CacheIntegrityError, match="is missing; delete the entry and recompute"):
        SeriesDataset(manifest, config, tmp_path / "c")[0]
