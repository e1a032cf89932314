"""`Remote`: per-call settings of remote reads, never kept in the process, never shown."""

from __future__ import annotations

import pickle

import dicomml
import dicomml.sources
from dicomml.sources import Remote, read_instance


def test_remote_hides_credentials_and_pickles_without_its_connections():
    remote = Remote(auth=("reader", "s3cret-pw"), storage_options={"key": "AKIA-secret"}, retries=2)
    reader = dicomml.sources._reader("dicomweb+http://127.0.0.1:9/dicom-web/studies/1/series/2/instances/3", remote)
    assert remote.readers == {"dicomweb+http://127.0.0.1:9/dicom-web": reader}
    assert "s3cret" not in repr(remote) and "AKIA" not in repr(remote) and "reader" not in repr(remote)
    copy = pickle.loads(pickle.dumps(remote))
    assert copy.auth == ("reader", "s3cret-pw") and copy.retries == 2 and copy.readers == {}
    assert copy == remote  # the opened connections are not part of the settings


def test_no_process_wide_connection_table():
    assert not hasattr(dicomml.sources, "connect")
    assert callable(read_instance)


def test_a_manifest_carries_its_remote_to_worker_processes(local_manifest):
    opened = dicomml.Manifest(local_manifest.path, remote=Remote(auth="TOKEN"))
    assert pickle.loads(pickle.dumps(opened)).remote.auth == "TOKEN"
    assert dicomml.Manifest(local_manifest.path).remote.auth is None
