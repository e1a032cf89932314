"""The preprocessing core that the Datasets and distributed preprocessing both build on.

``steps.py`` turns a config into transforms (the deterministic part before
the cache, the part at every read); ``sources.py`` selects the series of a
run and makes each one's cache key; ``compute.py`` turns one series into its
cache entry (:func:`preprocess_one`, and :func:`compute_entry` on arrays).
Names are imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dicomml._lazy import lazy_exports

if TYPE_CHECKING:
    from dicomml.pipeline.compute import EntryInfo as EntryInfo
    from dicomml.pipeline.compute import compute_entry as compute_entry
    from dicomml.pipeline.compute import open_cache as open_cache
    from dicomml.pipeline.compute import preprocess_one as preprocess_one
    from dicomml.pipeline.sources import SeriesSource as SeriesSource
    from dicomml.pipeline.sources import series_sources as series_sources
    from dicomml.pipeline.steps import at_load_transforms as at_load_transforms
    from dicomml.pipeline.steps import deterministic_transforms as deterministic_transforms

_EXPORTS = {
    "EntryInfo": "dicomml.pipeline.compute",
    "compute_entry": "dicomml.pipeline.compute",
    "open_cache": "dicomml.pipeline.compute",
    "preprocess_one": "dicomml.pipeline.compute",
    "SeriesSource": "dicomml.pipeline.sources",
    "series_sources": "dicomml.pipeline.sources",
    "at_load_transforms": "dicomml.pipeline.steps",
    "deterministic_transforms": "dicomml.pipeline.steps",
}

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

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
