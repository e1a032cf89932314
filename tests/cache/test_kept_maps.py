"""Memory maps of shard files (each holding a file descriptor) kept per process, not per Cache, and within the open-files limit."""

from __future__ import annotations

import errno
import mmap
import os
import resource

import numpy as np

from dicomml.cache import Cache, store

IMAGE = np.arange(16**3, dtype=np.int16).reshape(16, 16, 16)


def _open_files() -> int:
    return len(os.listdir("/proc/self/fd"))


def _kept_of(*caches: Cache) -> list[str]:
    return [path for owner, path in store._maps if any(owner is c._maps_of for c in caches)]


def test_maps_kept_are_bounded_per_process_across_caches_and_by_a_quarter_of_the_open_files_limit(tmp_path, monkeypatch):
    caches = [Cache(tmp_path / f"site{c}") for c in range(2)]
    entries = [cache.put(f"k{i}", IMAGE + i, np.eye(4), chunks=(8, 8, 8)) for cache in caches for i in range(5)]
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    monkeypatch.setattr(resource, "getrlimit", lambda which: (16, hard))  # macOS's 256 scaled down: 4 maps
    before = _open_files()
    for i, entry in enumerate(entries):  # a patch of each: read from the entry's map
        np.testing.assert_array_equal(entry.read("image", (4, 4, 4), (8, 8, 8)), IMAGE[4:12, 4:12, 4:12] + i % 5)
    assert _open_files() - before <= 4  # not 5 per Cache
    assert len(_kept_of(*caches)) == 4


def test_a_map_refused_for_want_of_file_descriptors_drops_the_kept_maps_and_is_tried_once_more(tmp_path, monkeypatch):
    cache = Cache(tmp_path / "c")
    entries = [cache.put(f"k{i}", IMAGE + i, np.eye(4), chunks=(8, 8, 8)) for i in range(3)]
    for entry in entries[:2]:
        entry.read("image", (0, 0, 0), (8, 8, 8))
    real, open_when_mapped = mmap.mmap, []

    def out_of_descriptors_once(*args, **kwargs):
        open_when_mapped.append(_open_files())
        if len(open_when_mapped) == 1:
            raise OSError(errno.EMFILE, os.strerror(errno.EMFILE))
        return real(*args, **kwargs)

    monkeypatch.setattr(mmap, "mmap", out_of_descriptors_once)
    np.testing.assert_array_equal(entries[2].read("image", (0, 0, 0), (8, 8, 8)), IMAGE[:8, :8, :8] + 2)
    assert len(open_when_mapped) == 2 and open_when_mapped[1] <= open_when_mapped[0] - 2  # tried again without the two kept maps
    assert _kept_of(cache) == [f"{entries[2]._path}/image/c/0/0/0"]


def test_kept_values_are_bounded_by_their_weights_least_recently_used_dropped_first():
    limit = [10]
    kept: store.Kept[str, bytes] = store.Kept(lambda: limit[0], len)
    for key in "abc":
        kept.put(key, bytes(4))
    assert list(kept) == ["b", "c"]  # 12 bytes > 10: a dropped
    assert kept.get("b") == bytes(4)  # b now the most recent
    kept.put("d", bytes(4))
    assert list(kept) == ["b", "d"]
    kept.put("e", bytes(11))  # alone above the limit: not kept, and nothing else either
    assert list(kept) == [] and kept.get("e") is None
    limit[0] = 4  # asked at each put
    kept.put("f", bytes(3))
    kept.put("g", bytes(3))
    assert list(kept) == ["g"]
