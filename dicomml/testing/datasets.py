"""The conformance suite every dicomml Dataset passes (like zarr's ``StoreTests``).

A test module subclasses :class:`DatasetTests`, says how to make the Dataset
under test and whether its samples carry masks; pytest collects the inherited
tests for it::

    class TestSeriesDataset(DatasetTests):
        def make_dataset(self, manifest, config, cache, **kwargs):
            return SeriesDataset(manifest, config, cache, **kwargs)

The data is the sample study (:func:`dicomml.sample.write_sample_study`: a CT
with its SEG, and an MR), indexed once per class, and a config that caches
masks at 3 mm with a window and a random flip at load.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch.utils.data import DataLoader

from dicomml.cache import Cache
from dicomml.config import PipelineConfig
from dicomml.errors import CacheMissError
from dicomml.indexer import Manifest, index
from dicomml.sample import write_sample_study
from dicomml.transforms import Mask

__all__ = ["DatasetTests"]

_CONFIG = {
    "name": "conformance",
    "deterministic": {"orientation": "RAS", "spacing": [3.0, 3.0, 3.0], "dtype": "int16", "masks": ["*"], "chunks": [16, 16, 16]},
    "at_load": {
        "windows": [{"name": "abdomen", "center": 40, "width": 400}],
        "augment": [{"name": "RandomFlip", "params": {"axes": [0, 1, 2], "p": 0.5}}],
    },
}


class DatasetTests:
    """Tests a Dataset over a manifest and a cache: sample form, determinism, selection, cache-only reads, workers."""

    #: Whether every sample holds ``"mask"`` on the image's grid.
    with_masks = False

    def make_dataset(self, manifest: Manifest, config: PipelineConfig, cache: Cache, **kwargs: Any) -> Any:
        """The Dataset under test; ``kwargs`` are the shared options (``series_keys``, ``cache_only``, ``seed``)."""
        raise NotImplementedError

    @pytest.fixture(scope="class")
    @classmethod
    def manifest(cls, tmp_path_factory: pytest.TempPathFactory) -> Manifest:
        root = tmp_path_factory.mktemp("dataset-conformance")
        write_sample_study(root / "dicom")
        return index(str(root / "dicom"), str(root / "manifest"), workers=1, progress=False)

    @pytest.fixture(scope="class")
    @classmethod
    def config(cls) -> PipelineConfig:
        return PipelineConfig.from_dict(_CONFIG)

    @pytest.fixture(scope="class")
    @classmethod
    def cache(cls, tmp_path_factory: pytest.TempPathFactory) -> Cache:
        return Cache(tmp_path_factory.mktemp("dataset-conformance-cache") / "cache")

    def test_samples_are_dicts_of_tensors_on_one_grid_the_mask_a_label_map(
        self, manifest: Manifest, config: PipelineConfig, cache: Cache
    ) -> None:
        dataset = self.make_dataset(manifest, config, cache)
        assert len(dataset) > 0
        sample = dataset[len(dataset) - 1]
        image, affine = sample["image"], sample["affine"]
        assert type(image) is torch.Tensor and image.ndim == 4 and image.dtype == torch.float32
        assert type(affine) is torch.Tensor and affine.shape == (4, 4) and affine.dtype == torch.float64
        assert {"series_key", "cache_key", "index"} <= set(sample["meta"])
        if self.with_masks:
            mask = sample["mask"]
            assert type(mask) is Mask and mask.shape[1:] == image.shape[1:] and mask.dtype == torch.uint8  # a tagged label map
        else:
            assert "mask" not in sample

    def test_the_same_index_gives_the_same_sample(self, manifest: Manifest, config: PipelineConfig, cache: Cache) -> None:
        dataset = self.make_dataset(manifest, config, cache, seed=3)
        first, again = dataset[0], self.make_dataset(manifest, config, cache, seed=3)[0]
        for key in ("image", "affine", *(["mask"] if self.with_masks else [])):
            assert torch.equal(first[key], again[key])
        assert first["meta"] == again["meta"]

    def test_series_keys_select_the_series(self, manifest: Manifest, config: PipelineConfig, cache: Cache) -> None:
        everything = self.make_dataset(manifest, config, cache)
        key = everything[0]["meta"]["series_key"]
        chosen = self.make_dataset(manifest, config, cache, series_keys=[key])
        assert {chosen[i]["meta"]["series_key"] for i in range(len(chosen))} == {key}

    def test_cache_only_misses_then_reads_what_was_filled(self, manifest: Manifest, config: PipelineConfig, tmp_path: Path) -> None:
        empty = Cache(tmp_path / "cache")
        with pytest.raises(CacheMissError, match="cache_only=True"):
            self.make_dataset(manifest, config, empty, cache_only=True)[0]
        filled = self.make_dataset(manifest, config, empty)[0]
        again = self.make_dataset(manifest, config, empty, cache_only=True)[0]
        assert torch.equal(filled["image"], again["image"])

    def test_a_dataloader_worker_yields_the_samples_of_this_process(self, manifest: Manifest, config: PipelineConfig, cache: Cache) -> None:
        # random draws come from (seed, epoch, index), never from worker state
        dataset = self.make_dataset(manifest, config, cache, seed=5)
        loader = DataLoader(dataset, batch_size=None, num_workers=1, multiprocessing_context="fork")
        for i, sample in enumerate(loader):
            assert torch.equal(sample["image"], dataset[i]["image"])
            if i == 1:
                break
