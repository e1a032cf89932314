"""label_balanced patches keep entries' foreground indexes per process within FOREGROUND_KEPT bytes, not every one forever."""

from __future__ import annotations

from dicomml.cache import CacheEntry
from dicomml.data import PatchDataset
from dicomml.data import datasets as data


def test_foreground_indexes_kept_are_bounded_per_process_across_datasets(study, make_config, tmp_path, monkeypatch):
    _, manifest = study

    def patches(chunks: int) -> PatchDataset:  # the series under two chunkings: two entries, each with its foreground index
        config = make_config("ct_seg", deterministic={"chunks": [chunks] * 3}, at_load={"augment": []})
        return PatchDataset(manifest, config, tmp_path / "c", patch_size=(8, 8, 8), samples_per_volume=4, sampler="label_balanced")

    first, second = patches(32), patches(16)
    a, b = first.entry(0), second.entry(0)
    assert a._path != b._path
    read, plain = [], CacheEntry.read

    def counted(entry: CacheEntry, name: str = "image", *args, **kwargs):
        if name == "foreground":
            read.append(entry._path)
        return plain(entry, name, *args, **kwargs)

    monkeypatch.setattr(CacheEntry, "read", counted)
    monkeypatch.setattr(data, "FOREGROUND_KEPT", max(a.read("foreground").nbytes, b.read("foreground").nbytes))  # room for one
    read.clear()
    first[0], first[1], second[0], second[1], first[2]
    assert read == [a._path, b._path, a._path]  # kept for the next patch of its series, dropped for the other's
    monkeypatch.setattr(data, "FOREGROUND_KEPT", 256 << 20)
    read.clear()
    first[3], second[2], first[0], second[3]
    assert read == [b._path]  # room for both: each read once
