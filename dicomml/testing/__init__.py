"""Test helpers shared by dicomml's own tests and by implementers of its interfaces.

``data_file(name)`` finds a file of the real test corpus (``../shared/data``,
or the folder named by the ``DICOMML_TEST_DATA`` environment variable) by its
path relative to that folder, like pydicom's ``get_testdata_file``.

The conformance suites that every implementation of an interface runs (like
zarr's ``StoreTests``) live in submodules, imported by the tests only (they
need pytest): :class:`dicomml.testing.cache.CacheStoreTests` for cache stores,
:class:`dicomml.testing.datasets.DatasetTests` for Datasets.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["data_root", "data_file"]


def data_root() -> Path:
    """The real-DICOM test corpus; missing data is an error, not a skip."""
    env = os.environ.get("DICOMML_TEST_DATA")
    root = Path(env) if env else Path(__file__).resolve().parents[2].parent / "shared" / "data"
    if not (root / "INDEX.csv").is_file():
        raise FileNotFoundError(f"test corpus not found at {root} (no INDEX.csv); set DICOMML_TEST_DATA to its folder")
    return root


def data_file(relative: str) -> Path:
    """Path of one file or folder of the corpus, which must exist."""
    path = data_root() / relative
    if not path.exists():
        raise FileNotFoundError(f"{relative} is not in the test corpus at {data_root()}")
    return path
