"""A cache that cannot be written, and a cache with a marker that does not parse.

The read-only cache is a real read-only file system: a tmpfs mounted under
``tmp_path`` and remounted ``ro`` (as root; a folder without write permission
otherwise). There, removing a file that is not there fails with EROFS, not
ENOENT, which is what a put's clean-up met.
"""

from __future__ import annotations

import contextlib
import os

import numpy as np
import pytest

from dicomml.cache import Cache
from dicomml.cli.main import main
from dicomml.errors import CacheError, CacheIntegrityError


def _put(cache: Cache, key: str) -> None:
    cache.put(key, np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6), np.eye(4))


def test_a_put_into_a_read_only_cache_is_a_cache_error_naming_the_cache_and_the_reason(read_only):
    folder, make_read_only = read_only
    _put(Cache(folder / "c"), "first")  # a cache that has been written to: leases/ and tmp/ exist
    make_read_only()
    cache = Cache(folder / "c")
    reason = "Read-only file system" if os.geteuid() == 0 else "Permission denied"
    with pytest.raises(CacheError, match=rf"^{folder / 'c'}: writing entry second failed \({reason}\); nothing was published"):
        _put(cache, "second")
    with pytest.raises(CacheError, match=rf"^{folder / 'c'}: the cache cannot be written \({reason}\); make it writable"):
        cache.check_writable()
    assert cache.keys() == ["first"]
    np.testing.assert_array_equal(cache.open("first").read(), np.arange(120, dtype=np.int16).reshape(4, 5, 6))


def test_check_writable_leaves_nothing_behind(tmp_path):
    cache = Cache(tmp_path / "c")
    cache.check_writable()
    assert list((tmp_path / "c" / "tmp").iterdir()) == []


def test_an_empty_marker_is_counted_by_info_and_replaced_by_the_next_put(tmp_path):
    cache = Cache(tmp_path / "c")
    for key in ("a", "b"):
        _put(cache, key)
    (tmp_path / "c" / "entries" / "a.json").write_bytes(b"")  # cut short by a crash on a store without atomic renames
    with pytest.raises(CacheIntegrityError, match="marker of entry a is invalid"):
        cache.open("a")
    info = cache.info()
    assert (info["entries"], info["invalid_entries"]) == (1, 1) and info["unreferenced_bytes"] > 0
    entry = cache.put("a", np.ones((4, 5, 6), np.int16), np.eye(4))  # computed again: the new marker replaces the invalid one
    np.testing.assert_array_equal(entry.read(), np.ones((4, 5, 6), np.int16))
    cache.verify("a")
    assert cache.info()["invalid_entries"] == 0
    removed = cache.gc(grace_seconds=0)  # the copy the invalid marker named
    assert len(removed) == 1 and removed[0].startswith("data/a/")
    assert cache.info()["unreferenced_bytes"] == 0


def test_cache_info_counts_an_invalid_marker_instead_of_failing(tmp_path, capsys):
    cache = Cache(tmp_path / "c")
    for key in ("a", "b"):
        _put(cache, key)
    (tmp_path / "c" / "entries" / "b.json").write_bytes(b"")
    main(["cache", "info", str(tmp_path / "c")])
    captured = capsys.readouterr()
    assert "entries: 1\ninvalid_entries: 1\n" in captured.out
    assert captured.err.strip().splitlines() == [
        f"{tmp_path / 'c'}: 1 entries have a marker that does not parse; `dicomml cache verify` names them, "
        "and the next `dicomml preprocess` computes them again"
    ]
    with contextlib.suppress(SystemExit):
        main(["cache", "verify", str(tmp_path / "c")])
    assert "FAILED" in capsys.readouterr().err  # verify names it
