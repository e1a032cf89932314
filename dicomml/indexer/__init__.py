"""The indexer: DICOM sources to a Parquet manifest, and the `Manifest` that reads it.

``index(sources, out)`` walks local folders or fsspec URLs, reads headers
only (a lean validating walk, see :mod:`dicomml.indexer.header`) in worker
processes or on Dask, and streams rows into partitioned Parquet; reruns read
only new or changed files. ``Manifest(path)`` opens the result.
"""

from dicomml.indexer.manifest import Manifest
from dicomml.indexer.run import index

__all__ = ["Manifest", "index"]
