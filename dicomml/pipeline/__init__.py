"""The preprocessing core that the Datasets and distributed preprocessing both build on.

``steps.py`` turns a config into transforms (the deterministic part before
the cache, the part at every read); ``sources.py`` selects the series of a
run and makes each one's cache key; ``compute.py`` turns one series into its
cache entry (:func:`preprocess_one`, and :func:`compute_entry` on arrays).
"""

from dicomml.pipeline.compute import EntryInfo, compute_entry, open_cache, preprocess_one
from dicomml.pipeline.sources import SeriesSource, series_sources
from dicomml.pipeline.steps import at_load_transforms, deterministic_transforms

__all__ = [
    "EntryInfo",
    "SeriesSource",
    "at_load_transforms",
    "compute_entry",
    "deterministic_transforms",
    "open_cache",
    "preprocess_one",
    "series_sources",
]
