"""Indexing and loading from a real S3 endpoint (moto's server on 127.0.0.1), and the missing-extra error."""

from __future__ import annotations

import subprocess
import sys

import pytest
from remote_compare import assert_same_manifest, assert_same_volumes

import dicomml
from dicomml.errors import MissingDependencyError, RemoteSourceError
from dicomml.sources import ObjectList, Remote

BUCKET = "cohort"


def _options(endpoint: str) -> dict:
    return {"anon": True, "endpoint_url": endpoint}


def test_manifest_and_volumes_over_s3_equal_local(s3_proxy, corpus_files, local_manifest, tmp_path):
    manifest = dicomml.index(f"s3://{BUCKET}/", tmp_path / "m", progress=False, storage_options=_options(s3_proxy.url))
    assert manifest.meta["counts"]["errors"] == 0
    # headers are read as byte ranges: far fewer bytes than the objects hold
    assert s3_proxy.bytes_out < sum(p.stat().st_size for p in corpus_files.values()) / 2
    keys = assert_same_manifest(manifest, local_manifest)
    s3_proxy.inject("503", "reset", "truncate")
    assert_same_volumes(manifest, local_manifest, keys)
    assert not s3_proxy.faults


def test_a_list_of_object_urls_seeds_the_manifest_without_listing(s3_proxy, corpus_files, local_manifest, tmp_path):
    urls = [f"s3://{BUCKET}/{key}" for key in corpus_files]
    s3_proxy.rules = [("list-type", "403")]  # listing the bucket would fail
    manifest = dicomml.index(ObjectList(urls), tmp_path / "m", progress=False, storage_options=_options(s3_proxy.url))
    assert manifest.meta["counts"]["errors"] == 0
    assert sorted(manifest.instances.path.unique()) == sorted(urls)
    assert_same_manifest(manifest, local_manifest)


def test_bucket_errors_are_retried(s3_proxy, local_manifest, tmp_path):
    s3_proxy.inject("delay:0.1", "503", "503")
    remote = Remote(retries=4, storage_options=_options(s3_proxy.url))
    manifest = dicomml.index(f"s3://{BUCKET}/", tmp_path / "m", progress=False, remote=remote)
    assert manifest.meta["counts"]["errors"] == 0
    assert_same_manifest(manifest, local_manifest)


def test_missing_s3fs_is_one_line_naming_the_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "s3fs", None)
    monkeypatch.delitem(sys.modules["fsspec.registry"]._registry, "s3", raising=False)  # forget an earlier import
    with pytest.raises(MissingDependencyError, match=r"s3://bucket/x: .*pip install 'dicomml\[s3\]'"):
        dicomml.index("s3://bucket/x", tmp_path / "m", progress=False)
    code = (
        "import sys; sys.modules['s3fs'] = None; from dicomml.cli.main import main; "
        f"sys.argv = ['dicomml', 'index', 's3://bucket/x', '-o', {str(tmp_path / 'n')!r}]; main()"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert done.stderr.strip().count("\n") == 0 and "pip install 'dicomml[s3]'" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("url", ["https://ann:pw-7f3@127.0.0.1:9/dicom/", "s3://AKIAEXAMPLE:pw-7f3@bucket/dicom/"])
def test_credentials_in_a_bucket_url_are_refused_unrecorded(url, tmp_path):
    with pytest.raises(RemoteSourceError, match="credentials in the URL would be recorded; pass them in storage_options") as raised:
        dicomml.index(url, tmp_path / "m", progress=False)
    assert "pw-7f3" not in str(raised.value) and "@" not in str(raised.value)
    assert not (tmp_path / "m").exists()  # refused before anything was written
    with pytest.raises(RemoteSourceError, match="credentials in the URL") as raised:
        ObjectList(["s3://bucket/dicom/a.dcm", url + "b.dcm"])  # every URL of a list, not the first alone
    assert "pw-7f3" not in str(raised.value)


def test_header_reads_of_a_bucket_keep_to_the_sources_concurrency(s3_proxy, tmp_path):
    """cat_ranges was called without a batch size: aiobotocore's pool (10) set the requests in flight."""
    s3_proxy.latency_s, s3_proxy.peak_in_flight = 0.2, 0
    remote = Remote(concurrency=2, storage_options=_options(s3_proxy.url))
    try:
        manifest = dicomml.index(f"s3://{BUCKET}/", tmp_path / "m", progress=False, remote=remote, timeout_s=0)
    finally:
        s3_proxy.latency_s = 0.0
    assert manifest.meta["counts"]["errors"] == 0 and 1 <= s3_proxy.peak_in_flight <= 2


def test_an_object_access_denied_is_not_retried_and_says_to_check_the_credentials(s3_proxy, corpus_files, tmp_path):
    """sources.md: a 401, 403 or 404 is not retried. A 403 (s3fs: PermissionError) was retried, then told to rerun."""
    key = next(iter(corpus_files))
    s3_proxy.rules = [(key, "403")]
    try:
        manifest = dicomml.index(
            f"s3://{BUCKET}/", tmp_path / "m", progress=False, remote=Remote(retries=3, storage_options=_options(s3_proxy.url))
        )
    finally:
        s3_proxy.rules = []
    (message,) = manifest.errors.message
    assert key in message and "check the credentials" in message and "tries" not in message


def test_an_endpoint_that_cannot_be_reached_is_not_reported_as_a_missing_bucket(tmp_path):
    """s3fs's exists() answers False when it cannot connect: the source was said not to exist."""
    remote = Remote(retries=0, storage_options={"anon": True, "endpoint_url": "http://127.0.0.1:1"})  # nothing listens on port 1
    with pytest.raises(RemoteSourceError, match=r"^s3://cohort: checking the source failed .*; check the server"):
        dicomml.index(f"s3://{BUCKET}/", tmp_path / "m", progress=False, remote=remote)
