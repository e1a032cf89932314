"""A run's settle: an entry unpublished by another process after the cache was listed is computed, not a crash."""

from __future__ import annotations

import numpy as np

from dicomml.cache import Cache
from dicomml.distributed.run import settle

_IMAGE = np.arange(16 * 16 * 8, dtype=np.int16).reshape(16, 16, 8)


class _Source:
    def __init__(self, key: str) -> None:
        self.series_key = self.key = key


def test_an_entry_unpublished_after_the_listing_is_left_to_compute(tmp_path, monkeypatch):
    cache, other = Cache(tmp_path / "c"), Cache(tmp_path / "c")
    for key in ("a", "b"):
        cache.put(key, _IMAGE, np.eye(4), chunks=(8, 8, 8))
    listed = Cache.keys

    def keys_then_delete(self: Cache) -> list[str]:  # `dicomml cache verify --delete` in another process, right after the listing
        keys = listed(self)
        other.delete("b")
        return keys

    monkeypatch.setattr(Cache, "keys", keys_then_delete)
    rows, todo = settle([_Source("a"), _Source("b"), _Source("c")], cache)
    assert [r["cache_key"] for r in rows] == ["a"] and rows[0]["status"] == "skipped"
    assert [s.key for s in todo] == ["b", "c"]
