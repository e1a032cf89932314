"""Indexing and loading from a GCS endpoint (gcp-storage-emulator on 127.0.0.1) through gcsfs."""

from __future__ import annotations

from remote_compare import assert_same_manifest, assert_same_volumes

import dicomml
from dicomml.sources import Remote

BUCKET = "cohort"


def test_manifest_and_volumes_over_gcs_equal_local(gcs_endpoint, corpus_files, local_manifest, tmp_path):
    from dicomml.testing.servers import FaultProxy

    with FaultProxy(gcs_endpoint) as proxy:
        remote = Remote(storage_options={"endpoint_url": proxy.url, "token": "anon"})
        manifest = dicomml.index(f"gs://{BUCKET}/", tmp_path / "m", progress=False, remote=remote)
        assert manifest.meta["counts"]["errors"] == 0
        assert all(p.startswith(f"gs://{BUCKET}/") for p in manifest.instances.path)
        # headers are read as byte ranges: far fewer bytes than the objects hold
        assert proxy.bytes_out < sum(p.stat().st_size for p in corpus_files.values()) / 2
        keys = assert_same_manifest(manifest, local_manifest)
        proxy.inject("503", "reset")
        before = proxy.bytes_out
        assert_same_volumes(manifest, local_manifest, keys)
        assert not proxy.faults
        # the objects themselves came through the endpoint given (not a URL the server names)
        assert proxy.bytes_out - before >= sum(p.stat().st_size for k, p in corpus_files.items() if "/seg/" not in k)
