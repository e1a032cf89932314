"""A published entry whose data files are gone or cut short (a partial copy of the cache) is computed again by a
rerun, not reported as skipped forever."""

from __future__ import annotations

import shutil
from pathlib import Path

import dicomml
from dicomml.cache import Cache
from dicomml.cache.array import shard_key
from dicomml.data import SeriesDataset


def _data_folder(cache: Cache, key: str) -> Path:
    return Path(cache.open(key)._path)


def test_a_rerun_recomputes_entries_whose_shards_are_missing_or_short(cohort, ct_1mm, tmp_path):
    where = "modality = 'CT'"
    first = dicomml.preprocess(cohort, ct_1mm, tmp_path / "cache", where=where, workers=0, progress=False)
    cache = Cache(tmp_path / "cache")
    keys = sorted(first.table.cache_key)
    assert len(keys) >= 2 and first.counts["done"] == len(keys)
    gone, short = keys[0], keys[1]
    shutil.rmtree(_data_folder(cache, gone))
    shard = _data_folder(cache, short) / shard_key("image", len(cache.open(short).layouts["image"].shape))
    shard.write_bytes(shard.read_bytes()[:10])
    again = dicomml.preprocess(cohort, ct_1mm, tmp_path / "cache", where=where, workers=0, progress=False)
    status = dict(zip(again.table.cache_key, again.table.status, strict=True))
    assert status[gone] == status[short] == "done"
    assert all(status[k] == "skipped" for k in keys[2:])
    dataset = SeriesDataset(cohort, ct_1mm, tmp_path / "cache", where=where, cache_only=True)
    assert all(dataset[i]["image"].numel() > 0 for i in range(len(dataset)))
