"""A cache in an S3 bucket (moto's server on 127.0.0.1, faults from a FaultProxy): forked readers, a publish whose
cleanup fails, listings written by another process, the run report beside it, store failures retried or not."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

import dicomml
from dicomml.cache import Cache
from dicomml.distributed.run import failure_row, report_location, settle
from dicomml.errors import CacheError, CacheIntegrityError, DicomMLError
from dicomml.executor import Failure
from dicomml.sources import Remote
from dicomml.testing.servers import FaultProxy, s3_bucket

BUCKET = "caches"
AFFINE = np.eye(4)


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    with s3_bucket(BUCKET, {}) as url:
        yield url


def _options(endpoint: str) -> dict[str, Any]:
    return {"endpoint_url": endpoint, "key": "test", "secret": "test"}


def _image(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(-1000, 1000, size=(6, 7, 8), dtype=np.int16)


class _Decided(FaultProxy):
    """A FaultProxy whose fault for each request is ``decide(method, path)`` (None: forwarded as is)."""

    def __init__(self, upstream: str, decide: Callable[[str, str], str | None]) -> None:
        super().__init__(upstream)
        self.decide = decide
        self._order = threading.Lock()

    def _forward(self, handler: Any) -> None:
        with self._order:  # one request at a time: the fault injected is the one this request takes
            fault = self.decide(handler.command, handler.path)
            if fault:
                self.inject(fault)
            super()._forward(handler)


class _Entries(Dataset):
    def __init__(self, cache: Cache, keys: list[str]) -> None:
        self.cache, self.keys = cache, keys

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, i: int) -> torch.Tensor:
        return torch.from_numpy(self.cache.open(self.keys[i]).read())


def test_dataloader_workers_started_by_fork_read_an_s3_cache_the_parent_used(endpoint):
    cache = Cache(f"s3://{BUCKET}/fork", storage_options=_options(endpoint))
    keys = [f"k{i}" for i in range(4)]
    for i, key in enumerate(keys):
        cache.put(key, _image(i), AFFINE)  # the parent's s3fs has its event loop and sessions now
    loader = DataLoader(_Entries(cache, keys), batch_size=None, num_workers=2, multiprocessing_context="fork", timeout=60)
    got = list(loader)
    assert all(torch.equal(g, torch.from_numpy(_image(i))) for i, g in enumerate(got)) and len(got) == 4


def test_a_marker_published_before_its_tmp_file_could_be_deleted_is_a_done_put_whose_data_stays(endpoint):
    url, armed = f"s3://{BUCKET}/publish", []

    def decide(method: str, path: str) -> str | None:
        if method == "PUT" and "/entries/" in path:  # S3's move: the marker is copied into place, then its source deleted
            armed.append(path)
        elif armed and (method == "DELETE" or "delete" in path):
            return "503"  # every delete from then on: the tmp/ source, the cleanup, the lease
        return None

    with _Decided(endpoint, decide) as proxy:
        entry = Cache(url, storage_options=_options(proxy.url)).put("k", _image(1), AFFINE)
    assert armed, "the marker was not published through the proxy"
    reader = Cache(url, storage_options=_options(endpoint))
    assert reader.keys() == ["k"] and reader.open("k")._path == entry._path
    np.testing.assert_array_equal(reader.open("k").read(), _image(1))
    reader.verify("k")


def test_keys_has_info_and_settle_see_entries_another_process_published(endpoint):
    url = f"s3://{BUCKET}/listing"
    cache = Cache(url, storage_options=_options(endpoint))
    cache.put("k1", _image(1), AFFINE)

    class Source:
        def __init__(self, key: str) -> None:
            self.series_key = self.key = key

    with FaultProxy(endpoint) as proxy:  # another endpoint, another s3fs instance: as another process writes
        other = Cache(url, storage_options=_options(proxy.url))

        def published_elsewhere(key: str) -> None:
            cache.fs.ls(f"{cache.root}/entries")  # a listing fsspec keeps, as one made earlier in a long-lived process
            other.put(key, _image(int(key[1:])), AFFINE)

        published_elsewhere("k2")
        assert cache.has("k2")
        published_elsewhere("k3")
        assert cache.keys() == ["k1", "k2", "k3"]
        published_elsewhere("k4")
        assert cache.info()["entries"] == 4
        published_elsewhere("k5")
        rows, todo = settle([Source("k5"), Source("k6")], cache)
    assert [r["cache_key"] for r in rows] == ["k5"] and [s.key for s in todo] == ["k6"]


def test_a_report_url_on_the_cache_store_uses_the_cache_storage_options(endpoint, monkeypatch):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # no credentials but the cache's: AWS itself is never asked
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    cache = Cache(f"s3://{BUCKET}/reported", storage_options=_options(endpoint))
    fs, path = report_location(cache, f"s3://{BUCKET}/reports/run.parquet", None)
    fs.pipe_file(path, b"report")
    assert cache.fs.cat_file(f"{BUCKET}/reports/run.parquet") == b"report"


def test_a_cache_on_a_bucket_has_the_timeout_and_single_attempt_of_bucket_sources(endpoint, tmp_path):
    cache = Cache(f"s3://{BUCKET}/timeouts", storage_options=_options(endpoint))
    config = cache.fs.config_kwargs
    assert config["read_timeout"] == config["connect_timeout"] == Remote().timeout_s
    assert config["retries"]["total_max_attempts"] == 1 and cache.fs.retries == 1  # not 5 x 5 tries, each with its own timeout
    assert Cache(tmp_path / "local").storage_options == {}


@pytest.fixture(scope="module")
def coarse(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("config") / "coarse.yaml"
    path.write_text("name: coarse\ndeterministic: {spacing: [4, 4, 4]}\n")
    return str(path)


@pytest.mark.parametrize(
    ("fault", "times", "status", "tries"),
    [("503", 2, "done", 3), ("503", 99, "failed", 3), ("403", 99, "failed", 1)],
    ids=["transient-then-ok", "transient-lasting", "permanent"],
)
def test_a_transient_store_failure_is_retried_by_the_run_a_permanent_one_fails_at_once(
    endpoint, dcmqi_manifest, coarse, fault, times, status, tries
):
    url, given = f"s3://{BUCKET}/retry-{fault}-{times}", []

    def decide(method: str, path: str) -> str | None:
        if method == "PUT" and "/data/" in path and "/image/" in path:  # a shard of the entry, once per try of the task
            if len(given) < times:
                given.append(path)
                return fault
        return None

    with _Decided(endpoint, decide) as proxy:
        try:
            table = dicomml.preprocess(
                dcmqi_manifest, coarse, url, workers=0, retries=2, progress=False, storage_options=_options(proxy.url)
            ).table
        except DicomMLError as exc:  # its one series failed: the report is written first
            table = pd.read_parquet(exc.path, storage_options=_options(endpoint))
    (row,) = table.to_dict("records")
    assert row["status"] == status
    assert len(given) == min(times, tries)
    if status == "failed":
        assert row["error_type"] == "CacheError"
        assert f"writing entry {row['cache_key']} failed" in row["message"] and "\n" not in row["message"]


@pytest.mark.parametrize("fault", ["503", "truncate"])
def test_a_read_of_an_entry_is_asked_again_as_a_source_asks_then_is_one_cache_error_naming_the_entry(endpoint, fault, monkeypatch):
    monkeypatch.setattr("dicomml.cache.store._READS", Remote(backoff_s=0.0))  # the same tries, without their waits
    url = f"s3://{BUCKET}/reads-{fault}"
    Cache(url, storage_options=_options(endpoint)).put("k", _image(3), AFFINE)
    with _Decided(endpoint, lambda method, path: None) as proxy:
        entry = Cache(url, storage_options=_options(proxy.url)).open("k")
        box = {"start": (1, 1, 1), "size": (2, 3, 4)}
        proxy.inject(fault, fault)  # two failed tries: the third reads
        np.testing.assert_array_equal(entry.read("image"), _image(3))
        proxy.inject(fault, fault)
        np.testing.assert_array_equal(entry.read("image", **box), _image(3)[1:3, 1:4, 1:5])
        proxy.rules.append(("/image/", fault))  # every try
        for kwargs in ({}, box):
            with pytest.raises(CacheError, match=f"{url}: entry k array image: .*reading the shard file failed") as caught:
                entry.read("image", **kwargs)
            assert not isinstance(caught.value, CacheIntegrityError)  # the entry is fine: `verify --delete` must keep it


def test_a_task_whose_workers_all_died_is_reported_as_likely_out_of_memory():
    class Source:
        series_key, key = "s1", "k1"

    dask_text = "Attempted to run task 'dicomml-preprocess-0' on 4 different workers, but all those workers died while running it."
    row = failure_row(Failure(Source(), "raised", f"s1: KilledWorker: {dask_text}", dask_text, "KilledWorker"))
    assert row["error_type"] == "KilledWorker"
    assert "memory_limit" in row["message"] and "--max-voxels" in row["message"] and "Attempted" not in row["message"]


def test_opening_a_cache_in_a_bucket_is_asked_again_after_a_5xx(endpoint, monkeypatch):
    monkeypatch.setattr("dicomml.cache.store._READS", Remote(backoff_s=0.0))
    url = f"s3://{BUCKET}/opened"
    Cache(url, storage_options=_options(endpoint))
    with FaultProxy(endpoint) as proxy:
        proxy.inject("503", "503")  # each request is tried once: the cache asks again as a source does
        assert Cache(url, storage_options=_options(proxy.url), create=False).keys() == []
        proxy.rules.append(("/opened", "403"))
        before = proxy.requests
        with pytest.raises(CacheError, match=f"{url}: cannot open the cache"):
            Cache(url, storage_options=_options(proxy.url), create=False)
        assert proxy.requests - before == 1, proxy.requests - before  # a 403 is said at once
