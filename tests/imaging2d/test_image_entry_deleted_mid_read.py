"""An ImageDataset whose entry is deleted and collected by another process between opening and reading it: a miss, not a broken entry."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import dicomml
from dicomml.cache import Cache
from dicomml.errors import CacheMissError
from dicomml.imaging2d import ImageConfig, ImageDataset
from dicomml.imaging2d.synthetic import write_image2d


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("films_midread")
    write_image2d(root / "dx" / "0.dcm", np.arange(40 * 48, dtype=np.uint16).reshape(40, 48) % 4096, bits_stored=12)
    dicomml.index(root / "dx", root / "manifest", workers=1, progress=False)
    return root / "manifest"


def _collected_after_open(monkeypatch: pytest.MonkeyPatch, other: Cache) -> None:
    """The first entry an ImageDataset opens is then unpublished and its files removed (another process's delete and gc)."""
    opened = ImageDataset._open

    def open_then_collect(self: ImageDataset, key: str, index: int):
        entry = opened(self, key, index)
        monkeypatch.setattr(ImageDataset, "_open", opened)
        other.delete(entry.key)
        other.gc(grace_seconds=0)
        return entry

    monkeypatch.setattr(ImageDataset, "_open", open_then_collect)


def test_an_image_entry_collected_while_read_is_computed_again(manifest, tmp_path, monkeypatch):
    config = ImageConfig(size=(32, 32))
    first = ImageDataset(manifest, tmp_path / "c", config)[0]
    dataset = ImageDataset(manifest, tmp_path / "c", config)
    _collected_after_open(monkeypatch, Cache(tmp_path / "c"))
    torch.testing.assert_close(dataset[0]["image"], first["image"], rtol=0, atol=0)
    assert dataset.cache is not None and dataset.cache.has(dataset[0]["key"])


def test_with_cache_only_an_image_entry_collected_while_read_is_a_miss(manifest, tmp_path, monkeypatch):
    config = ImageConfig(size=(32, 32))
    ImageDataset(manifest, tmp_path / "c", config)[0]
    dataset = ImageDataset(manifest, tmp_path / "c", config, cache_only=True)
    _collected_after_open(monkeypatch, Cache(tmp_path / "c"))
    with pytest.raises(CacheMissError, match="preprocess_images"):
        dataset[0]
