"""Entries unpublished or replaced by another process between a listing and a read: gc, info and verify go on."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from dicomml.cache import Cache, CacheEntry
from dicomml.cli.cache import command
from dicomml.errors import CacheIntegrityError, CacheMissError
from dicomml.testing.cache import corrupt_chunk

_IMAGE = np.arange(16 * 16 * 8, dtype=np.int16).reshape(16, 16, 8)


def _delete_after_listing(monkeypatch: pytest.MonkeyPatch, other: Cache, key: str) -> None:
    """Every ``Cache.keys()`` lists, then ``other`` (another process) deletes ``key``, as if it ran right after the listing."""
    listed = Cache.keys

    def keys_then_delete(self: Cache) -> list[str]:
        keys = listed(self)
        other.delete(key)
        return keys

    monkeypatch.setattr(Cache, "keys", keys_then_delete)


def test_gc_and_info_skip_an_entry_deleted_after_listing(tmp_path, monkeypatch):
    cache, other = Cache(tmp_path / "c"), Cache(tmp_path / "c")
    for key in ("a", "b"):
        cache.put(key, _IMAGE, np.eye(4), chunks=(8, 8, 8))
    _delete_after_listing(monkeypatch, other, "b")
    summary = cache.info()
    assert (summary["entries"], summary["invalid_entries"]) == (1, 0) and summary["unreferenced_bytes"] > 0
    cache.put("b", _IMAGE, np.eye(4), chunks=(8, 8, 8))
    removed = cache.gc(grace_seconds=0)
    assert len(removed) == 2 and all(path.startswith("data/b/") for path in removed)  # both copies of b: no marker names them
    assert not other.has("b")
    cache.verify("a")


def test_cli_info_gc_and_verify_skip_an_entry_deleted_after_listing(tmp_path, monkeypatch):
    cache, other = Cache(tmp_path / "c"), Cache(tmp_path / "c")
    runner = CliRunner()
    for sub in ("info", "gc", "verify"):
        for key in ("a", "b"):
            cache.put(key, _IMAGE, np.eye(4), chunks=(8, 8, 8))
        with monkeypatch.context() as patch:
            _delete_after_listing(patch, other, "b")
            result = runner.invoke(command, [sub, str(tmp_path / "c")])
        assert result.exit_code == 0, (sub, result.output)
    assert "1 of 1 entries verified" in result.output


def test_verify_delete_spares_an_entry_published_while_it_checked_the_one_it_failed(tmp_path, monkeypatch):
    cache, other = Cache(tmp_path / "c"), Cache(tmp_path / "c")
    cache.put("k", _IMAGE, np.eye(4), chunks=(8, 8, 8))
    corrupt_chunk(cache, "k")
    read = CacheEntry.read

    def republished_while_read(self: CacheEntry, *args, **kwargs):
        if not other.has("k") or other.open("k")._path == self._path:  # the corrupt copy: replaced by a good one meanwhile
            other.delete("k")
            other.put("k", _IMAGE, np.eye(4), chunks=(8, 8, 8))
        return read(self, *args, **kwargs)

    monkeypatch.setattr(CacheEntry, "read", republished_while_read)
    result = CliRunner().invoke(command, ["verify", "--delete", str(tmp_path / "c")])
    assert result.exit_code == 0, result.output
    assert "1 of 1 entries verified" in result.output
    monkeypatch.undo()
    cache.verify("k")  # the good copy is still published
    np.testing.assert_array_equal(cache.open("k").read(), _IMAGE)


def test_verify_of_an_entry_deleted_and_collected_while_checked_is_a_miss(tmp_path, monkeypatch):
    cache, other = Cache(tmp_path / "c"), Cache(tmp_path / "c")
    cache.put("k", _IMAGE, np.eye(4), chunks=(8, 8, 8))
    read = CacheEntry.read

    def collected_first(self: CacheEntry, *args, **kwargs):
        other.delete("k")
        other.gc(grace_seconds=0)
        return read(self, *args, **kwargs)

    monkeypatch.setattr(CacheEntry, "read", collected_first)
    with pytest.raises(CacheMissError, match="no entry k"):
        cache.verify("k", delete=True)


def test_verify_delete_unpublishes_the_failed_entry(tmp_path):
    cache = Cache(tmp_path / "c")
    cache.put("k", _IMAGE, np.eye(4), chunks=(8, 8, 8))
    corrupt_chunk(cache, "k")
    with pytest.raises(CacheIntegrityError, match="checksum mismatch"):
        cache.verify("k", delete=True)
    assert not cache.has("k")
