"""The indexer: DICOM sources to a Parquet manifest, and the `Manifest` that reads it.

``index(sources, out)`` walks local folders or fsspec URLs, reads headers
only (a lean validating walk, see :mod:`dicomml.indexer.header`) in worker
processes or on Dask, and streams rows into partitioned Parquet; reruns read
only new or changed files. ``Manifest(path)`` opens the result. Names are
imported on first use: a Dataset over an unchanged manifest never imports
pyarrow's compute functions or the indexer's workers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dicomml._lazy import lazy_exports

if TYPE_CHECKING:
    from dicomml.indexer.manifest import Manifest as Manifest
    from dicomml.indexer.run import index as index

_EXPORTS = {"Manifest": "dicomml.indexer.manifest", "index": "dicomml.indexer.run"}

__all__ = ["Manifest", "index"]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
