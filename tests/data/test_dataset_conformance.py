"""Every Dataset runs the shared suite of dicomml.testing."""

from __future__ import annotations

from typing import Any

from dicomml.cache import Cache
from dicomml.config import PipelineConfig
from dicomml.data import PatchDataset, SegmentationDataset, SeriesDataset
from dicomml.indexer import Manifest
from dicomml.testing.datasets import DatasetTests


class TestSeriesDataset(DatasetTests):
    def make_dataset(self, manifest: Manifest, config: PipelineConfig, cache: Cache, **kwargs: Any) -> Any:
        return SeriesDataset(manifest, config, cache, **kwargs)


class TestSegmentationDataset(DatasetTests):
    with_masks = True

    def make_dataset(self, manifest: Manifest, config: PipelineConfig, cache: Cache, **kwargs: Any) -> Any:
        return SegmentationDataset(manifest, config, cache, **kwargs)


class TestPatchDataset(DatasetTests):
    with_masks = True

    def make_dataset(self, manifest: Manifest, config: PipelineConfig, cache: Cache, **kwargs: Any) -> Any:
        return PatchDataset(manifest, config, cache, patch_size=(16, 16, 16), samples_per_volume=2, sampler="label_balanced", **kwargs)
