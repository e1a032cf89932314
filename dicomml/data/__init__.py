"""PyTorch Datasets over the manifest and the cache.

They build on :mod:`dicomml.pipeline` (config to transforms, series to cache
entry; its names are re-exported here); ``samplers.py`` places patches;
``datasets.py`` holds the Datasets and :func:`collate`; ``lightning.py`` a
``LightningDataModule`` (only when Lightning is installed).
"""

from __future__ import annotations

from typing import Any

from dicomml.data.datasets import PatchDataset, SegmentationDataset, SeriesDataset, StudyDataset, collate, reach_epoch
from dicomml.pipeline import EntryInfo, SeriesSource, compute_entry, preprocess_one, series_sources

__all__ = [
    "DataModule",
    "EntryInfo",
    "PatchDataset",
    "SegmentationDataset",
    "SeriesDataset",
    "SeriesSource",
    "StudyDataset",
    "collate",
    "compute_entry",
    "preprocess_one",
    "reach_epoch",
    "series_sources",
]


def __getattr__(name: str) -> Any:
    if name == "DataModule":  # imports Lightning, which is optional
        from dicomml.data.lightning import DataModule

        return DataModule
    raise AttributeError(f"module 'dicomml.data' has no attribute {name!r}")
