"""The indexer: DICOM sources to a Parquet manifest, and the `Manifest` that reads it.

``index(sources, out)`` walks local folders or fsspec URLs, reads headers
only (a lean validating walk, see :mod:`dicomml.index.header`) in worker
processes or on Dask, and streams rows into partitioned Parquet; reruns read
only new or changed files. ``Manifest(path)`` opens the result.
"""

import sys
import types
from typing import Any

from dicomml.index.manifest import Manifest
from dicomml.index.run import index

__all__ = ["Manifest", "index"]


class _CallableModule(types.ModuleType):
    """Once this subpackage is imported, ``dicomml.index`` names it rather than the function;
    calling it still runs :func:`index`, so ``dicomml.index(...)`` always works."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return index(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
