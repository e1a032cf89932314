"""The conformance suite every cache store passes (like zarr's ``StoreTests``).

A test module subclasses :class:`CacheStoreTests` and says how to make the
store under test; pytest collects the inherited tests for it::

    class TestMemoryCache(CacheStoreTests):
        def make_cache(self, tmp_path):
            return Cache(f"memory://{tmp_path.name}")
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dicomml.cache import Cache
from dicomml.cache.array import index_nbytes
from dicomml.errors import CacheIntegrityError, CacheMissError

__all__ = ["CacheStoreTests", "corrupt_chunk"]

#: The suite's volume: an int16 image that is not a whole number of chunks, two mask channels.
_SHAPE = (40, 50, 30)
_CHUNKS = (16, 16, 16)


class CacheStoreTests:
    """Tests a :class:`~dicomml.cache.Cache` implementation: round trip, patches, misses, integrity, publication."""

    def make_cache(self, tmp_path: Path) -> Cache:
        """A cache whose location depends on ``tmp_path`` only: a second call opens the same store."""
        raise NotImplementedError

    @pytest.fixture
    def cache(self, tmp_path: Path) -> Cache:
        return self.make_cache(tmp_path)

    @pytest.fixture
    def volume(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rng = np.random.default_rng(11)
        image = rng.integers(-1024, 3000, size=_SHAPE, dtype=np.int16)
        mask = np.zeros((2, *_SHAPE), np.uint8)
        mask[0, 3:9, 20:31, 1:17] = 1
        mask[1, 35:40, 45:50, 25:30] = 1
        affine = np.array([[-0.7, 0, 0, 120.5], [0, -0.7, 0, 80.25], [0, 0, 2.5, -300.0], [0, 0, 0, 1]])
        return image, mask, affine

    def test_round_trip_is_exact(self, cache: Cache, volume: tuple[np.ndarray, ...]) -> None:
        image, mask, affine = volume
        cache.put("k", image, affine, mask=mask, meta={"series_key": "s"}, chunks=_CHUNKS)
        entry = cache.open("k")
        np.testing.assert_array_equal(entry.read(), image)
        np.testing.assert_array_equal(entry.read("mask"), mask)
        np.testing.assert_array_equal(entry.affine, affine)
        assert entry.read().dtype == image.dtype and entry.shape == _SHAPE and entry.has_mask
        assert entry.meta["series_key"] == "s" and entry.nbytes() > 0

    @pytest.mark.parametrize(("start", "size"), [((0, 0, 0), (16, 16, 16)), ((5, 15, 17), (30, 2, 13)), ((39, 49, 29), (1, 1, 1))])
    def test_patch_equals_slicing(
        self, cache: Cache, volume: tuple[np.ndarray, ...], start: tuple[int, ...], size: tuple[int, ...]
    ) -> None:
        image, mask, affine = volume
        cache.put("k", image, affine, mask=mask, chunks=_CHUNKS)
        box = tuple(slice(s, s + n) for s, n in zip(start, size))
        np.testing.assert_array_equal(cache.open("k").read("image", start, size), image[box])
        np.testing.assert_array_equal(cache.open("k").read("mask", start, size), mask[(slice(None), *box)])

    def test_threaded_read_equals_one_thread(self, cache: Cache, volume: tuple[np.ndarray, ...]) -> None:
        image, _, affine = volume
        cache.put("k", image, affine, chunks=_CHUNKS)
        np.testing.assert_array_equal(cache.open("k").read(threads=3), image)

    def test_lookup_maps_every_voxel_while_decoding(self, cache: Cache, volume: tuple[np.ndarray, ...]) -> None:
        image, _, affine = volume
        cache.put("k", image, affine, chunks=_CHUNKS)
        table = np.stack([np.arange(2**16, dtype=np.float32), -np.arange(2**16, dtype=np.float32)])
        np.testing.assert_array_equal(cache.open("k").read(lookup=table), table[:, image.view(np.uint16)])

    def test_absent_key_is_a_cache_miss(self, cache: Cache) -> None:
        assert not cache.has("absent") and "absent" not in cache.keys()
        with pytest.raises(CacheMissError):
            cache.open("absent")

    def test_published_entries_are_listed_and_seen_by_a_second_opening(
        self, tmp_path: Path, cache: Cache, volume: tuple[np.ndarray, ...]
    ) -> None:
        image, _, affine = volume
        cache.put("b", image, affine, chunks=_CHUNKS)
        cache.put("a", image[:4], affine, chunks=_CHUNKS)
        again = self.make_cache(tmp_path)
        assert again.keys() == ["a", "b"] and again.has("a")
        np.testing.assert_array_equal(again.open("a").read(), image[:4])

    def test_put_of_a_published_key_keeps_the_first_entry(self, cache: Cache, volume: tuple[np.ndarray, ...]) -> None:
        image, _, affine = volume
        cache.put("k", image, affine, chunks=_CHUNKS)
        cache.put("k", image + 1, affine, chunks=_CHUNKS)
        np.testing.assert_array_equal(cache.open("k").read(), image)

    def test_delete_unpublishes_and_gc_removes_the_data(self, cache: Cache, volume: tuple[np.ndarray, ...]) -> None:
        image, _, affine = volume
        cache.put("k", image, affine, chunks=_CHUNKS)
        cache.delete("k")
        assert not cache.has("k") and cache.keys() == []
        removed = cache.gc(grace_seconds=0)
        assert removed and cache.info()["entries"] == 0

    def test_a_corrupted_chunk_fails_the_read_and_verify(self, tmp_path: Path, cache: Cache, volume: tuple[np.ndarray, ...]) -> None:
        image, _, affine = volume
        cache.put("k", image, affine, chunks=_CHUNKS)
        cache.verify("k")
        (shard,) = [p for p in cache.fs.find(cache.root) if p.endswith("/image/c/0/0/0")]
        data = bytearray(cache.fs.cat_file(shard))
        data[20] ^= 0xFF  # inside the first chunk's compressed bytes
        cache.fs.pipe_file(shard, bytes(data))
        fresh = self.make_cache(tmp_path)
        with pytest.raises(CacheIntegrityError, match="checksum mismatch"):
            fresh.open("k").read()
        with pytest.raises(CacheIntegrityError):
            fresh.verify("k")


def corrupt_chunk(cache: Cache, key: str) -> None:
    """Flip a byte inside the first stored chunk of ``key``'s image, on disk: what ``verify`` must find."""
    entry = cache.open(key)
    shard = Path(entry._path) / "image/c/0/0/0"
    data = bytearray(shard.read_bytes())
    offset = int(np.frombuffer(bytes(data[-index_nbytes(entry.layouts["image"]) : -4]), "<u8")[0])
    data[offset + 40] ^= 0x55
    shard.write_bytes(bytes(data))
