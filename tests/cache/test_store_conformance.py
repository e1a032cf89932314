"""Every cache store runs the shared suite: a local folder (pread path) and an fsspec URL (memory://)."""

from __future__ import annotations

from pathlib import Path

from dicomml.cache import Cache
from dicomml.testing.cache import CacheStoreTests


class TestLocalFolderCache(CacheStoreTests):
    def make_cache(self, tmp_path: Path) -> Cache:
        return Cache(tmp_path / "cache")


class TestFsspecMemoryCache(CacheStoreTests):
    def make_cache(self, tmp_path: Path) -> Cache:
        return Cache(f"memory://dicomml-conformance/{tmp_path.name}")
