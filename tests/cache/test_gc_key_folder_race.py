"""gc removing a key's folder while a writer it did not see (its lease came after gc's listing) makes its data folder there."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

import dicomml.cache.store as store
from dicomml.cache import Cache

_IMAGE = np.arange(16 * 16 * 8, dtype=np.int16).reshape(16, 16, 8)


def test_gc_keeps_a_data_folder_made_after_it_found_the_key_folder_empty(tmp_path, monkeypatch):
    cache, writer = Cache(tmp_path / "c"), Cache(tmp_path / "c")
    cache.put("k", _IMAGE, np.eye(4), chunks=(8, 8, 8))
    cache.delete("k")
    folder = f"{cache.root}/data/k"
    mtime = store._mtime

    def write_in_between(fs, path):  # gc asks the key folder's age after it found it empty and saw no lease
        if path == folder:
            monkeypatch.setattr(store, "_mtime", mtime)
            writer.put("k", _IMAGE, np.eye(4), chunks=(8, 8, 8))  # the whole put: lease, data folder, marker
        return mtime(fs, path)

    monkeypatch.setattr(store, "_mtime", write_in_between)
    removed = cache.gc(grace_seconds=0)
    assert len(removed) == 1  # the deleted copy only
    cache.verify("k")
    np.testing.assert_array_equal(cache.open("k").read(), _IMAGE)
    assert (tmp_path / "c/data/k/zarr.json").is_file()  # the group above the entry, put back


def test_a_writer_makes_its_key_folder_again_when_gc_removes_it_under_makedirs(tmp_path, monkeypatch):
    cache = Cache(tmp_path / "c")
    cache.put("k", _IMAGE, np.eye(4), chunks=(8, 8, 8))
    cache.delete("k")
    cache.gc(grace_seconds=0)
    folder = tmp_path / "c/data/k"
    folder.mkdir()  # a key folder gc will find empty (a writer killed before its data folder)
    mkdir = os.mkdir

    def collected_first(path, *args, **kwargs):  # gc's removal between makedirs' check of the key folder and its mkdir
        if Path(path).parent == folder:
            monkeypatch.setattr(os, "mkdir", mkdir)
            (folder / "zarr.json").unlink(missing_ok=True)  # what gc does to a key folder it found empty
            os.rmdir(folder)
        return mkdir(path, *args, **kwargs)

    monkeypatch.setattr(os, "mkdir", collected_first)
    cache.put("k", _IMAGE, np.eye(4), chunks=(8, 8, 8))
    cache.verify("k")
    assert (folder / "zarr.json").is_file()
