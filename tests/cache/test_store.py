"""Cache round trips, partial reads and corruption, on real stores (local folder and fsspec memory)."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import crc32c
import google_crc32c  # zarr-python's checksum package: a second implementation to compare with
import numpy as np
import pytest
import zarr
from zarr.codecs import BloscCodec, Crc32cCodec

from dicomml.cache import Cache, array
from dicomml.cache.array import ArrayLayout, array_metadata, index_nbytes
from dicomml.errors import CacheError, CacheIntegrityError, CacheMissError


def _entry_dir(cache: Cache, key: str) -> Path:
    return Path(cache.open(key)._path)


def test_round_trip_is_exact_and_readable_by_zarr(tmp_path, volume):
    image, mask, affine = volume
    cache = Cache(tmp_path / "c")
    cache.put("k", image, affine, mask=mask, meta={"series_key": "s1", "n": np.int64(3)}, chunks=(32, 32, 32))
    entry = Cache(tmp_path / "c").open("k")  # a fresh handle, as another process would
    np.testing.assert_array_equal(entry.read(), image)
    np.testing.assert_array_equal(entry.read("mask"), mask)
    np.testing.assert_array_equal(entry.affine, affine)
    assert entry.read().dtype == np.int16
    assert entry.meta == {"series_key": "s1", "n": 3}
    expected = np.concatenate([np.column_stack([np.full((m > 0).sum(), c), np.argwhere(m > 0)]) for c, m in enumerate(mask)])
    np.testing.assert_array_equal(entry.read("foreground"), expected)
    # zarr-python, an independent reader, sees the same arrays and attributes
    group = zarr.open_group(str(_entry_dir(cache, "k")), mode="r")
    np.testing.assert_array_equal(group["image"][...], image)
    np.testing.assert_array_equal(group["mask"][...], mask)
    assert group.attrs["affine"] == affine.tolist()
    assert group["image"].shards == (96, 96, 128)


@pytest.mark.parametrize("image_dtype,mask_dtype", [(np.float32, np.float32), (np.uint8, np.uint8), (np.int32, np.uint8)])
def test_every_array_and_dtype_is_read_back_by_zarr(tmp_path, volume, image_dtype, mask_dtype):
    """The shards dicomml encodes itself: zarr-python decodes each array, edge chunks and an empty foreground included."""
    image, mask, affine = volume
    image = image.astype(image_dtype)
    fractional = (mask * np.linspace(0.1, 1.0, mask.shape[-1])).astype(mask_dtype)
    empty = np.zeros((1, *image.shape), mask_dtype)
    cache = Cache(tmp_path / "c")
    for key, m in (("fractional", fractional), ("empty", empty)):
        entry = cache.put(key, image, affine, mask=m, chunks=(32, 48, 64))
        group = zarr.open_group(str(_entry_dir(cache, key)), mode="r")
        for name, expected in (("image", image), ("mask", m), ("foreground", entry.read("foreground"))):
            assert group[name].dtype == expected.dtype
            np.testing.assert_array_equal(group[name][...], expected)
        np.testing.assert_array_equal(entry.read("mask"), m)
    assert cache.open("empty").read("foreground").shape == (0, 4)  # an empty array has no shard file
    cache.verify("empty")  # so verify (and `cache verify --delete`) keeps the entry


@pytest.mark.parametrize("dtype", ["bool", "uint8", "int16", "int32", "int64", "float32", "float64"])
def test_array_metadata_is_what_zarr_python_writes(dtype):
    """dicomml writes each array's zarr.json itself; zarr-python, for the same settings, writes the same document."""
    layout = ArrayLayout((70, 90, 5), np.dtype(dtype).name, (32, 48, 5))
    reference = zarr.create_array(
        zarr.storage.MemoryStore(),
        shape=layout.shape,
        dtype=dtype,
        chunks=layout.chunks,
        shards=layout.shard_shape,
        compressors=[BloscCodec(cname="lz4", clevel=1, shuffle="shuffle"), Crc32cCodec()],
        fill_value=0,
        zarr_format=3,
    )
    assert array_metadata(layout) == json.loads(json.dumps(reference.metadata.to_dict()))


def test_the_hierarchy_walks_from_the_root_to_each_entry(tmp_path, volume):
    image, mask, affine = volume
    cache = Cache(tmp_path / "c")
    cache.put("k", image, affine, mask=mask)
    root = zarr.open_group(str(tmp_path / "c"), mode="r")
    token = Path(cache.open("k")._path).name
    assert root.attrs["dicomml_cache_format"] == 1
    group = root["data"]["k"][token]
    np.testing.assert_array_equal(group["image"][...], image)
    assert group.attrs["affine"] == affine.tolist()


@pytest.mark.parametrize("start,size", [((0, 0, 0), (70, 90, 100)), ((5, 31, 33), (40, 20, 64)), ((69, 89, 99), (1, 1, 1))])
def test_patch_equals_slicing(tmp_path, volume, start, size):
    image, mask, affine = volume
    entry = Cache(tmp_path / "c").put("k", image, affine, mask=mask, chunks=(32, 32, 32))
    box = tuple(slice(b, b + n) for b, n in zip(start, size))
    np.testing.assert_array_equal(entry.read("image", start, size), image[box])
    np.testing.assert_array_equal(entry.read("mask", start, size), mask[(slice(None), *box)])


def test_patch_outside_the_array_is_refused(tmp_path, volume):
    image, _, affine = volume
    entry = Cache(tmp_path / "c").put("k", image, affine)
    with pytest.raises(ValueError, match="leaves the image array"):
        entry.read("image", (60, 0, 0), (20, 10, 10))


def test_patch_reads_only_the_chunks_it_touches(volume):
    """On an fsspec store (a local shard is memory-mapped: only the chunks a patch touches are decoded)."""
    image, _, affine = volume
    cache = Cache("memory://patch-reads")
    entry = cache.put("k", image, affine, chunks=(32, 32, 32))
    index_reads: list[int] = []
    chunk_reads: list[tuple[int, int]] = []
    in_cat = []
    real_cat, real_open = cache.fs.cat_file, cache.fs.open

    class Recording:
        def __init__(self, f):
            self.f, self.pos = f, 0

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def seek(self, pos):
            self.pos = pos
            return self.f.seek(pos)

        def read(self, n=-1):
            if not in_cat:
                chunk_reads.append((self.pos, self.pos + n))
            return self.f.read(n)

        def __getattr__(self, name):
            return getattr(self.f, name)

    def cat(path, start=None, end=None, **kw):
        index_reads.append(start)
        in_cat.append(True)
        try:
            return real_cat(path, start=start, end=end, **kw)
        finally:
            in_cat.pop()

    cache.fs.cat_file = cat  # type: ignore[method-assign]
    cache.fs.open = lambda path, mode="rb", **kw: Recording(real_open(path, mode, **kw))  # type: ignore[method-assign]
    try:
        entry.read("image", (33, 33, 33), (20, 20, 20))  # inside one 32^3 chunk
        entry.read("image", (30, 30, 30), (4, 4, 4))  # straddles 8 chunks
    finally:
        del cache.fs.cat_file, cache.fs.open
    assert index_reads == [-index_nbytes(entry.layouts["image"])]  # the index once, then memoized
    index = _index(cache, "k")
    expected = [(1, 1, 1)] + [(i, j, k) for i in (0, 1) for j in (0, 1) for k in (0, 1)]
    assert sorted(chunk_reads) == sorted((int(index[c][0]), int(index[c][0] + index[c][1])) for c in expected)


def _index(cache: Cache, key: str) -> np.ndarray:
    """The shard index, decoded by hand from the Zarr v3 sharding spec (uint64 offset, length; CRC32C last)."""
    entry = cache.open(key)
    data = cache.fs.cat_file(f"{entry._path}/image/c/0/0/0")
    layout = entry.layouts["image"]
    return np.frombuffer(data[-index_nbytes(layout) : -4], "<u8").reshape(*layout.grid, 2)


def _corrupt_one_chunk(cache: Cache, key: str, chunk: tuple[int, int, int]) -> None:
    shard = _entry_dir(cache, key) / "image/c/0/0/0"
    offset, length = (int(v) for v in _index(cache, key)[chunk])
    data = bytearray(shard.read_bytes())
    data[offset + length // 2] ^= 0xFF
    shard.write_bytes(bytes(data))


def test_corrupted_chunk_is_detected_on_read_and_verify(tmp_path, volume):
    image, _, affine = volume
    cache = Cache(tmp_path / "c")
    cache.put("k", image, affine, chunks=(32, 32, 32))
    cache.verify("k")
    _corrupt_one_chunk(cache, "k", (1, 1, 1))
    fresh = Cache(tmp_path / "c")
    for threads in (1, 3):
        with pytest.raises(CacheIntegrityError, match=r"chunk \(1, 1, 1\) checksum mismatch"):
            fresh.open("k").read(threads=threads)
    with pytest.raises(CacheIntegrityError, match="entry k"):
        fresh.verify("k")
    # a patch that does not touch the bad chunk still reads correctly
    np.testing.assert_array_equal(fresh.open("k").read("image", (0, 0, 0), (30, 30, 30)), image[:30, :30, :30])


def test_missing_shard_file_is_an_integrity_error(tmp_path, volume):
    image, _, affine = volume
    cache = Cache(tmp_path / "c")
    cache.put("k", image, affine)
    (_entry_dir(cache, "k") / "image/c/0/0/0").unlink()
    with pytest.raises(CacheIntegrityError, match="missing"):
        cache.verify("k")


@pytest.mark.parametrize("keep", [0.5, 0.0001])
def test_truncated_shard_file_is_an_integrity_error(tmp_path, volume, keep):
    # cut mid-way (chunks and index gone) or to a few bytes (shorter than the index): never a numpy error
    image, _, affine = volume
    cache = Cache(tmp_path / "c")
    cache.put("k", image, affine, chunks=(32, 32, 32))
    shard = _entry_dir(cache, "k") / "image/c/0/0/0"
    shard.write_bytes(shard.read_bytes()[: int(shard.stat().st_size * keep)])
    entry = Cache(tmp_path / "c").open("k")
    with pytest.raises(CacheIntegrityError):
        entry.read()
    with pytest.raises(CacheIntegrityError):
        entry.read("image", (0, 0, 0), (70, 90, 100))


def test_absent_key_is_a_cache_miss(tmp_path):
    cache = Cache(tmp_path / "c")
    assert not cache.has("nope")
    with pytest.raises(CacheMissError, match="no entry nope"):
        cache.open("nope")
    with pytest.raises(KeyError):  # CacheMissError is also a KeyError
        cache.open("nope")


def test_put_of_a_published_key_keeps_the_first_entry(tmp_path, volume):
    image, _, affine = volume
    cache = Cache(tmp_path / "c")
    first = cache.put("k", image, affine)
    again = cache.put("k", image + 1, affine)
    assert again._path == first._path
    np.testing.assert_array_equal(again.read(), image)


def test_markers_are_json_and_nothing_is_pickled(tmp_path, volume):
    image, mask, affine = volume
    cache = Cache(tmp_path / "c")
    cache.put("k", image, affine, mask=mask)
    marker = json.loads((tmp_path / "c/entries/k.json").read_text())
    assert set(marker["layouts"]) == {"image", "mask", "foreground"}
    for path in (tmp_path / "c").rglob("*"):
        if path.is_file():
            assert not path.read_bytes().startswith(b"\x80"), f"{path} looks like a pickle"


def test_gc_removes_unpublished_data_but_spares_young_writers(tmp_path, volume):
    image, _, affine = volume
    cache = Cache(tmp_path / "c")
    cache.put("keep", image, affine)
    cache.put("drop", image, affine)
    cache.delete("drop")
    assert cache.gc(grace_seconds=3600) == []  # too young
    removed = cache.gc(grace_seconds=0)
    assert len(removed) == 1 and removed[0].startswith("data/drop/")
    assert not (tmp_path / "c/data/drop").exists()
    assert cache.keys() == ["keep"]
    cache.verify("keep")
    assert cache.info()["unreferenced_bytes"] == 0


def test_fsspec_url_store_round_trip(volume):
    image, mask, affine = volume
    cache = Cache("memory://dicomml-test-cache")
    cache.put("k", image, affine, mask=mask)
    entry = Cache("memory://dicomml-test-cache").open("k")
    np.testing.assert_array_equal(entry.read(), image)
    np.testing.assert_array_equal(entry.read("mask", (9, 29, 49), (3, 3, 3)), mask[:, 9:12, 29:32, 49:52])
    cache.verify("k")
    group = zarr.open_group(zarr.storage.FsspecStore.from_url("memory://dicomml-test-cache"), path=entry._path.split("/", 2)[-1], mode="r")
    np.testing.assert_array_equal(group["image"][...], image)
    cache.fs.rm("/dicomml-test-cache", recursive=True)


def test_a_cache_url_with_credentials_is_refused_unrecorded():
    with pytest.raises(CacheError, match=r"^s3://bucket/cache: credentials in the URL would be recorded") as raised:
        Cache("s3://AKIAEXAMPLE:pw-7f3@bucket/cache")
    assert "pw-7f3" not in str(raised.value)


def test_other_format_version_is_refused(tmp_path):
    Cache(tmp_path / "c")
    meta = json.loads((tmp_path / "c/zarr.json").read_text())
    meta["attributes"]["dicomml_cache_format"] = 999
    (tmp_path / "c/zarr.json").write_text(json.dumps(meta))
    with pytest.raises(CacheIntegrityError, match="cache format 999"):
        Cache(tmp_path / "c")


def test_lookup_maps_every_voxel_while_decoding(tmp_path, volume):
    image, _, affine = volume
    entry = Cache(tmp_path / "c").put("k", image, affine, chunks=(32, 32, 32))
    table = np.random.default_rng(1).random((2, 65536)).astype(np.float32)
    expected = table[:, image.view(np.uint16)]
    np.testing.assert_array_equal(entry.read(lookup=table), expected)
    np.testing.assert_array_equal(entry.read("image", (5, 31, 33), (40, 20, 64), lookup=table), expected[:, 5:45, 31:51, 33:97])


@pytest.mark.parametrize("dtype", ["int16", "uint16"])
def test_a_linear_window_is_computed_with_the_bits_of_its_table(tmp_path, dtype):
    """A table that is a clipped line is computed as one (float passes, not a gather): same bits for every stored value."""
    from dicomml.transforms import MultiWindow, Window

    values = np.arange(2**16, dtype=np.uint16).view(dtype).reshape(16, 64, 64)  # every value of the dtype once
    entry = Cache(tmp_path / "c").put("k", values, np.eye(4), chunks=(8, 32, 32))
    windows = [
        Window(40, 80),
        Window(-600, 1500),
        Window(40.5, 81, "LINEAR"),
        Window(100.25, 3.7),
        Window(20.5, 41),
        MultiWindow(["brain", "bone"]),
    ]
    for window in windows:
        table = window.lookup_table(dtype)
        assert None not in array._lines(table, np.dtype(dtype))  # the arithmetic path is taken
        expected = table[:, values.view(np.uint16)]
        for threads in (1, 2):
            assert entry.read(lookup=table, threads=threads).tobytes() == expected.tobytes()  # bit for bit, signed zeros too
        box = entry.read("image", (3, 5, 7), (9, 40, 50), lookup=table)
        assert box.tobytes() == np.ascontiguousarray(expected[:, 3:12, 5:45, 7:57]).tobytes()
    # an integer origin: clipped and shifted in the stored integers (checked the same way); a fractional one: float passes only
    assert array._lines(Window(40, 80).lookup_table(dtype), np.dtype(dtype))[0].bounds == (0, 80)
    assert array._lines(Window(100.25, 3.7).lookup_table(dtype), np.dtype(dtype))[0].bounds is None
    # 41 times float32(1/41) is not 1: the clipped integers would miss ``high``, so the float clip stays
    assert array._lines(Window(20.5, 41).lookup_table(dtype), np.dtype(dtype))[0].bounds is None


def test_a_table_that_is_not_a_line_is_gathered(tmp_path):
    from dicomml.transforms import Window

    values = np.arange(2**16, dtype=np.uint16).view(np.int16).reshape(16, 64, 64)
    entry = Cache(tmp_path / "c").put("k", values, np.eye(4), chunks=(8, 32, 32))
    table = Window(40, 80).lookup_table("int16")
    ramp = np.flatnonzero((table[0] > 0) & (table[0] < 1))
    for bent in (ramp[len(ramp) // 2], 5):  # one value of the ramp one ulp off; one clipped value raised
        other = table.copy()
        other[0, bent] = np.nextafter(other[0, bent], np.float32(2)) if bent != 5 else 0.5
        assert array._lines(other, np.dtype(np.int16)) == [None]
        assert entry.read(lookup=other).tobytes() == other[:, values.view(np.uint16)].tobytes()
    sigmoid = Window(40, 80, "SIGMOID").lookup_table("int16")
    assert entry.read(lookup=sigmoid).tobytes() == sigmoid[:, values.view(np.uint16)].tobytes()


@pytest.mark.parametrize("codec", ["raw", "blosc"])
@pytest.mark.parametrize("block", [None, 2**10])  # the default block, and blocks of a few planes
def test_windowing_while_decoding_equals_decoding_then_the_table(tmp_path, codec, block, monkeypatch):
    """Each row of chunks mapped as it is decoded gives the bits of the stored array mapped through ``np.take``."""
    from dicomml.transforms import Window

    if block is not None:
        monkeypatch.setattr(array, "_WINDOW_BLOCK", block)
        monkeypatch.setattr(array, "_SHARED_WINDOW_BLOCK", block)
    rng = np.random.default_rng(11)
    image = rng.integers(-(2**15), 2**15, size=(37, 45, 70), dtype=np.int16)  # edge chunks on every axis
    image[:, :20] = rng.integers(-100, 200, size=(37, 20, 70))  # much of it on the window's ramp
    entry = Cache(tmp_path / "c").put("k", image, np.eye(4), chunks=(16, 16, 32), codec=codec)
    assert entry.layouts["image"].codec == codec
    line, sigmoid = Window(40, 80).lookup_table("int16"), Window(40, 80, "SIGMOID").lookup_table("int16")
    halves = Window(20.5, 41).lookup_table("int16")  # a line clipped in floats: no integer bounds
    tables = {"line": line, "not a line": sigmoid, "both": np.concatenate([line, sigmoid]), "float clip": halves}
    assert array._lines(line, np.dtype(np.int16)) != [None] and array._lines(sigmoid, np.dtype(np.int16)) == [None]
    assert array._lines(line, np.dtype(np.int16))[0].bounds is not None and array._lines(halves, np.dtype(np.int16))[0].bounds is None
    boxes = [
        ((0, 0, 0), image.shape),
        ((10, 12, 25), (20, 30, 40)),
        ((30, 40, 60), (7, 5, 10)),
        ((15, 15, 31), (2, 2, 2)),
        ((5, 6, 7), (1, 1, 1)),
    ]
    for table in tables.values():
        for start, size in boxes:
            stored = entry.read("image", start, size)
            expected = np.take(table, stored.view(np.uint16), axis=1)
            for threads in (1, 2):
                got = entry.read("image", start, size, lookup=table, threads=threads)
                assert got.shape == (len(table), *size)
                assert got.tobytes() == expected.tobytes()


def test_checksums_are_crc32c():
    """The CRC32C of the cache files: the standard check value, and the same as zarr-python's implementation."""
    assert crc32c.crc32c(b"123456789") == 0xE3069283  # the catalogued check value of CRC-32C (Castagnoli)
    data = np.random.default_rng(0).integers(0, 256, size=3 * 2**20 + 5, dtype=np.uint8)
    for part in (data, data[7:], data[: 2**15 - 1]):
        assert crc32c.crc32c(part) == google_crc32c.value(part.tobytes())


def test_a_table_changed_in_place_is_read_anew(tmp_path):
    """The line found for a table is remembered per table object, and only while its values stay the same."""
    from dicomml.transforms import Window

    values = np.arange(2**16, dtype=np.uint16).view(np.int16).reshape(16, 64, 64)
    entry = Cache(tmp_path / "c").put("k", values, np.eye(4), chunks=(8, 32, 32))
    table = Window(40, 80).lookup_table("int16")
    np.testing.assert_array_equal(entry.read(lookup=table), table[:, values.view(np.uint16)])
    table[0] = Window(-600, 1500).lookup_table("int16")[0]
    np.testing.assert_array_equal(entry.read(lookup=table), table[:, values.view(np.uint16)])
    table[0, 100] = 0.25
    np.testing.assert_array_equal(entry.read(lookup=table), table[:, values.view(np.uint16)])


def test_scale_multiplies_in_float32_while_copying_out(tmp_path, volume):
    image, _, affine = volume
    entry = Cache(tmp_path / "c").put("k", image, affine, chunks=(32, 32, 32))
    expected = np.multiply(image, np.float32(1 / 65535), dtype=np.float32)
    got = entry.read(scale=1 / 65535)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, expected)
    out = np.empty(image.shape, np.float32)
    assert entry.read(out=out, scale=1 / 65535) is out
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(entry.read("image", (5, 31, 33), (40, 20, 64), scale=1 / 65535), expected[5:45, 31:51, 33:97])


def test_a_small_array_read_whole_is_read_at_once_and_nothing_of_it_is_kept(tmp_path, volume, monkeypatch):
    from dicomml.cache import store

    image, _, affine = volume
    cache = Cache(tmp_path / "c")
    entry = cache.put("k", image, affine, chunks=(32, 32, 32))
    np.testing.assert_array_equal(entry.read(), image)

    def maps() -> list[str]:  # the process keeps the maps of every Cache
        return [path for owner, path in store._maps if owner is cache._maps_of]

    assert not maps() and not cache._indexes  # no map, no memo holding the bytes of every sample read
    np.testing.assert_array_equal(entry.read("image", (0, 0, 0), (30, 30, 30)), image[:30, :30, :30])
    assert len(maps()) == 1  # a patch reads from the map
    monkeypatch.setattr(store, "READ_WHOLE_BELOW", 0)
    np.testing.assert_array_equal(Cache(tmp_path / "c").open("k").read(), image)  # above the size: mapped


def test_an_array_read_whole_again_uses_its_kept_index_and_checks_every_chunk(tmp_path, volume, monkeypatch):
    from dicomml.cache import store

    image, _, affine = volume
    cache = Cache(tmp_path / "c")
    cache.put("k", image, affine, chunks=(32, 32, 32))
    entry = cache.open("k")
    np.testing.assert_array_equal(entry.read(), image)
    assert entry._wholes["image"][3].base is None  # a copy: no view keeps the bytes read alive

    def parsed_again(*args):
        raise AssertionError("the index was parsed again")

    monkeypatch.setattr(store, "read_index", parsed_again)
    np.testing.assert_array_equal(entry.read(), image)
    _corrupt_one_chunk(cache, "k", (1, 1, 1))
    with pytest.raises(CacheIntegrityError, match=r"chunk \(1, 1, 1\) checksum mismatch"):
        entry.read()
    shard = _entry_dir(cache, "k") / "image/c/0/0/0"
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    with pytest.raises(CacheIntegrityError, match="cut short"):
        entry.read()


@pytest.mark.parametrize("codec", ["raw", "blosc"])
def test_arrays_read_whole_one_after_another_do_not_share_memory(tmp_path, volume, codec):
    image = volume[0].astype(np.uint16)
    cache = Cache(tmp_path / "c")
    first, second = cache.put("a", image, volume[2], codec=codec), cache.put("b", image[::-1].copy(), volume[2], codec=codec)
    got = [first.read(), first.read(scale=0.5), second.read(), second.read(scale=0.5)]
    got += [first.read(), second.read()]  # remembered entries: each read goes through the same read buffer again
    expected = [image, image * np.float32(0.5), image[::-1], image[::-1] * np.float32(0.5), image, image[::-1]]
    for read, want in zip(got, expected):
        np.testing.assert_array_equal(read, want)
        assert read.base is None  # the sample's own memory, not a view of the bytes read


@pytest.mark.parametrize("threads", [2, 3, 64])
def test_threaded_decoding_equals_one_thread(tmp_path, volume, threads):
    image, mask, affine = volume
    entry = Cache(tmp_path / "c").put("k", image, affine, mask=mask, chunks=(32, 32, 32))
    table = np.random.default_rng(2).random((2, 65536)).astype(np.float32)
    np.testing.assert_array_equal(entry.read(threads=threads), image)
    np.testing.assert_array_equal(entry.read("mask", threads=threads), mask)
    np.testing.assert_array_equal(entry.read(lookup=table, threads=threads), table[:, image.view(np.uint16)])
    box = entry.read("image", (5, 31, 33), (40, 20, 64), lookup=table, threads=threads)  # a box: one thread
    np.testing.assert_array_equal(box, table[:, image.view(np.uint16)][:, 5:45, 31:51, 33:97])


def test_incompressible_arrays_are_stored_raw_and_read_by_zarr(tmp_path):
    """Blosc that would save too little is skipped, recorded in the layout and in zarr.json; zarr-python reads it."""
    noise = np.random.default_rng(3).integers(0, 2**16, size=(1, 300, 200), dtype=np.uint16)
    smooth = np.add.outer(np.arange(300), np.arange(200)).astype(np.uint16)[None] // 8
    cache = Cache(tmp_path / "c")
    raw, packed = cache.put("noise", noise, np.eye(4), chunks=(1, 300, 200)), cache.put("smooth", smooth, np.eye(4))
    assert (raw.layouts["image"].codec, packed.layouts["image"].codec) == ("raw", "blosc")
    assert cache.put("smooth, raw", smooth, np.eye(4), codec="raw").layouts["image"].codec == "raw"
    np.testing.assert_array_equal(cache.open("smooth, raw").read(), smooth)
    with pytest.raises(ValueError, match="codec 'zip'"):
        cache.put("zip", smooth, np.eye(4), codec="zip")
    shard = _entry_dir(cache, "noise") / "image/c/0/0/0"
    assert shard.stat().st_size == noise.nbytes + 4 + index_nbytes(raw.layouts["image"])
    fresh = Cache(tmp_path / "c")
    for key, image in (("noise", noise), ("smooth", smooth)):
        np.testing.assert_array_equal(fresh.open(key).read(), image)
        np.testing.assert_array_equal(fresh.open(key).read("image", (0, 10, 20), (1, 50, 60)), image[:, 10:60, 20:80])
        np.testing.assert_array_equal(zarr.open_group(str(_entry_dir(cache, key)), mode="r")["image"][...], image)
        fresh.verify(key)
    _corrupt_one_chunk(fresh, "noise", (0, 0, 0))
    with pytest.raises(CacheIntegrityError, match="checksum mismatch"):
        Cache(tmp_path / "c").open("noise").read()


def test_entries_written_before_the_codec_was_recorded_read_as_blosc(tmp_path, volume):
    image, _, affine = volume
    cache = Cache(tmp_path / "c")
    cache.put("k", image, affine, chunks=(32, 32, 32))
    marker = tmp_path / "c/entries/k.json"
    document = json.loads(marker.read_text())
    assert document["layouts"]["image"].pop("codec") == "blosc"
    marker.write_text(json.dumps(document))
    np.testing.assert_array_equal(Cache(tmp_path / "c").open("k").read(), image)


def test_read_into_a_given_array(tmp_path, volume):
    image, _, affine = volume
    entry = Cache(tmp_path / "c").put("k", image, affine, chunks=(32, 32, 32))
    out = np.empty((70, 90, 100), np.int16)
    assert entry.read(out=out) is out
    np.testing.assert_array_equal(out, image)


def test_lookup_of_a_four_d_image_maps_each_volume(tmp_path):
    image = np.random.default_rng(4).integers(0, 2**12, size=(3, 40, 50, 60), dtype=np.uint16)
    entry = Cache(tmp_path / "c").put("k", image, np.eye(4), chunks=(16, 32, 32))
    table = np.random.default_rng(5).random((2, 65536)).astype(np.float32)
    expected = table[:, image]
    for threads in (1, 2):
        np.testing.assert_array_equal(entry.read(lookup=table, threads=threads), expected)
        box = entry.read("image", (3, 17, 30), (30, 20, 30), lookup=table, volumes=slice(1, 3), threads=threads)
        np.testing.assert_array_equal(box, expected[:, 1:3, 3:33, 17:37, 30:60])


def test_decoding_threads_work_in_a_forked_child(tmp_path, volume):
    """A DataLoader worker forked after the parent decoded with threads gets threads of its own (no hang)."""
    image, _, affine = volume
    entry = Cache(tmp_path / "c").put("k", image, affine, chunks=(32, 32, 32))
    np.testing.assert_array_equal(entry.read(threads=2), image)
    context = multiprocessing.get_context("fork")
    with context.Pool(1) as pool:
        crc = pool.apply_async(_crc_of_threaded_read, (str(tmp_path / "c"),)).get(timeout=60)
    assert crc == crc32c.crc32c(image.tobytes())


def _crc_of_threaded_read(url: str) -> int:
    return crc32c.crc32c(Cache(url).open("k").read(threads=2).tobytes())
