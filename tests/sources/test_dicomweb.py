"""Indexing and loading over DICOMweb from a real Orthanc, directly and through a fault-injecting proxy."""

from __future__ import annotations

import json

import pytest
from remote_compare import assert_same_manifest, assert_same_volumes

import dicomml
from dicomml.errors import RemoteSourceError
from dicomml.sources import Remote
from dicomml.testing.servers import FaultProxy, orthanc


def _url(root: str) -> str:
    return f"dicomweb+{root}/dicomweb".replace("/dicomweb", "/dicom-web")


def test_manifest_volumes_masks_and_cache_over_dicomweb_equal_local(orthanc_root, local_manifest, tmp_path):
    manifest = dicomml.index(_url(orthanc_root), tmp_path / "m", progress=False)
    assert manifest.meta["counts"]["errors"] == 0
    assert all(p.startswith("dicomweb+http://127.0.0.1") for p in manifest.instances.path)
    keys = assert_same_manifest(manifest, local_manifest)
    assert_same_volumes(manifest, local_manifest, keys)
    remote_mask = dicomml.load_mask(manifest, manifest.annotations.annotation_key[0])
    local_mask = dicomml.load_mask(local_manifest, local_manifest.annotations.annotation_key[0])
    assert remote_mask.array.tobytes() == local_mask.array.tobytes()
    assert remote_mask.affine.tobytes() == local_mask.affine.tobytes()
    from dicomml.pipeline import preprocess_one

    ct_remote = next(k for k, v in keys.items() if local_manifest.series.set_index("series_key").modality[v] == "CT")
    a = preprocess_one(ct_remote, manifest, "ct_seg", str(tmp_path / "ca"))
    b = preprocess_one(keys[ct_remote], local_manifest, "ct_seg", str(tmp_path / "cb"))
    image_a = dicomml.Cache(str(tmp_path / "ca")).open(a.key).read("image")
    image_b = dicomml.Cache(str(tmp_path / "cb")).open(b.key).read("image")
    assert image_a.dtype == image_b.dtype and image_a.tobytes() == image_b.tobytes()


def test_qido_parameters_and_series_paths_narrow_the_source(orthanc_root, local_manifest, tmp_path):
    only_mr = dicomml.index(_url(orthanc_root) + "?Modality=MR", tmp_path / "mr", progress=False)
    assert set(only_mr.series.modality) == {"MR"}
    row = local_manifest.series[local_manifest.series.modality == "CT"].iloc[0]
    one = dicomml.index(
        f"{_url(orthanc_root)}/studies/{row.study_instance_uid}/series/{row.series_instance_uid}", tmp_path / "one", progress=False
    )
    assert one.series.series_instance_uid.tolist() == [row.series_instance_uid]
    assert len(one.instances) == row.n_files


def test_server_errors_become_error_rows_and_a_rerun_resumes(orthanc_proxy: FaultProxy, local_manifest, tmp_path):
    url = _url(orthanc_proxy.url)
    remote = Remote(retries=1, timeout_s=10)
    orthanc_proxy.rules = [("/metadata", "503")]
    first = dicomml.index(url, tmp_path / "m", progress=False, remote=remote)
    errors = first.errors
    assert first.meta["counts"]["instances"] == 0
    assert set(errors.error_type) == {"unreachable"}
    assert all(url in message and "HTTP 503" in message for message in errors.message)
    orthanc_proxy.rules = []
    second = dicomml.index(url, tmp_path / "m", progress=False, remote=remote)
    assert second.meta["counts"]["errors"] == 0
    assert second.meta["last_run"]["files_read"] == len(local_manifest.instances.path.unique())
    assert_same_manifest(second, local_manifest)


def test_failed_transfer_syntax_probes_become_error_rows_and_a_rerun_resumes(orthanc_proxy: FaultProxy, local_manifest, tmp_path):
    url = _url(orthanc_proxy.url)
    # the metadata answers; the SEG (alone in its series) and the mosaic's large instances are probed one by one,
    # and those probes are dropped (the small CT series is asked for whole, by its series URL, and answers)
    orthanc_proxy.rules = [("/instances/", "reset")]
    first = dicomml.index(url, tmp_path / "m", progress=False, remote=Remote(retries=1, timeout_s=10))
    errors = first.errors
    local = local_manifest.instances.drop_duplicates("path")
    assert len(errors) == (local.modality != "CT").sum() and first.meta["counts"]["instances"] == (local.modality == "CT").sum()
    assert set(errors.error_type) == {"unreachable"}
    assert all(p in m and "transfer syntax" in m and "after 2 tries" in m for p, m in zip(errors.path, errors.message))
    orthanc_proxy.rules = []
    second = dicomml.index(url, tmp_path / "m", progress=False)
    assert second.meta["counts"]["errors"] == 0
    assert_same_manifest(second, local_manifest)


def test_truncated_dropped_and_failed_answers_are_retried_on_load(orthanc_proxy, local_manifest, tmp_path):
    url = _url(orthanc_proxy.url)
    manifest = dicomml.index(url, tmp_path / "m", progress=False, remote=Remote(retries=4, timeout_s=10))
    keys = assert_same_manifest(manifest, local_manifest)
    before = orthanc_proxy.requests
    for key in keys:
        dicomml.load_series(manifest, key)
    # each instance is retrieved once, its header and pixels together
    assert orthanc_proxy.requests - before == manifest.instances[manifest.instances.series_key.isin(keys)].path.nunique()
    orthanc_proxy.inject("truncate-multipart", "reset", "truncate", "503", "delay:0.2", "429")
    assert_same_volumes(manifest, local_manifest, keys)
    assert not orthanc_proxy.faults


def test_load_names_the_url_when_the_server_keeps_failing(orthanc_proxy, tmp_path):
    url = _url(orthanc_proxy.url)
    manifest = dicomml.index(url, tmp_path / "m", progress=False, remote=Remote(retries=1, timeout_s=10))
    orthanc_proxy.rules = [("/instances/", "truncate-multipart")]
    key = manifest.series.series_key[0]
    with pytest.raises(RemoteSourceError, match=r"dicomweb\+http://127\.0\.0\.1:\d+/dicom-web/studies/.*/instances/.*truncated"):
        dicomml.load_series(manifest, key)


def test_basic_auth_is_used_and_never_written(tmp_path, corpus_files):
    files = [p for k, p in corpus_files.items() if "24x38x3/image" in k]
    with orthanc(tmp_path / "server", files, users={"reader": "s3cret-pw"}) as root:
        url = _url(root)
        with pytest.raises(RemoteSourceError, match="HTTP 401.*credentials"):
            dicomml.index(url, tmp_path / "refused", progress=False, auth=("reader", "wrong"))
        manifest = dicomml.index(url, tmp_path / "m", progress=False, auth=("reader", "s3cret-pw"))
        assert manifest.meta["counts"]["instances"] == 3
        key = manifest.series.series_key[0]
        volume = dicomml.load_series(manifest, key)  # the returned manifest carries the credentials
        assert volume.array.shape == (3, 38, 24)
        assert "s3cret" not in repr(manifest.remote) and "reader" not in repr(manifest.remote)
        with pytest.raises(RemoteSourceError, match="HTTP 401"):  # nothing kept in the process
            dicomml.load_series(dicomml.Manifest(tmp_path / "m"), key)
        again = dicomml.Manifest(tmp_path / "m", remote=Remote(auth=("reader", "s3cret-pw")))
        assert dicomml.load_series(again, key).array.tobytes() == volume.array.tobytes()
    written = b"".join(p.read_bytes() for p in (tmp_path / "m").rglob("*") if p.is_file())
    assert b"s3cret-pw" not in written and b"reader" not in written
    assert "s3cret" not in json.dumps(manifest.meta)


def test_credentials_in_the_url_are_refused(tmp_path):
    with pytest.raises(RemoteSourceError, match="credentials in the URL") as raised:
        dicomml.index("dicomweb+http://u:pw-7f3@127.0.0.1:9/dicom-web", tmp_path / "m", progress=False)
    assert str(raised.value).startswith("dicomweb+http://127.0.0.1:9/dicom-web: ") and "pw-7f3" not in str(raised.value)


def test_the_sources_time_limit_applies_to_dicomweb_client_calls(orthanc_proxy: FaultProxy, tmp_path):
    """dicomweb-client passes its own 20 s timeout: Remote(timeout_s=) was ignored for metadata and QIDO."""
    import time

    orthanc_proxy.rules = [("/metadata", "delay:25")]
    started = time.perf_counter()
    manifest = dicomml.index(_url(orthanc_proxy.url), tmp_path / "m", progress=False, remote=Remote(retries=0, timeout_s=1))
    orthanc_proxy.rules = []
    assert time.perf_counter() - started < 15 and set(manifest.errors.error_type) == {"unreachable"}


def test_instance_urls_and_repeated_query_parameters_are_refused(orthanc_root, local_manifest, tmp_path):
    row = local_manifest.instances.iloc[0]
    instance = f"{_url(orthanc_root)}/studies/{row.study_instance_uid}/series/{row.series_instance_uid}/instances/{row.sop_instance_uid}"
    with pytest.raises(RemoteSourceError, match="an instance URL; index its series"):
        dicomml.index(instance, tmp_path / "i", progress=False)
    with pytest.raises(RemoteSourceError, match=r"Modality given more than once; .* \(Modality=MR,SEG\)"):
        dicomml.index(_url(orthanc_root) + "?Modality=MR&Modality=SEG", tmp_path / "q", progress=False)


def test_the_cli_says_a_server_that_failed_listed_nothing_not_an_empty_folder(orthanc_proxy: FaultProxy, tmp_path):
    import subprocess
    import sys

    orthanc_proxy.rules = [("/metadata", "503")]
    try:
        done = subprocess.run(
            [
                sys.executable,
                "-c",
                "from dicomml.cli.main import main; main()",
                "index",
                _url(orthanc_proxy.url),
                "-o",
                str(tmp_path / "m"),
            ],
            capture_output=True,
            text=True,
            env={**__import__("os").environ, "DICOMML_SALT": "s"},
        )
    finally:
        orthanc_proxy.rules = []
    assert done.returncode == 1
    assert "could not be listed or reached; `dicomml info" in done.stderr and "empty folder" not in done.stderr


def test_one_failed_transfer_syntax_probe_fails_its_instance_only(orthanc_proxy: FaultProxy, local_manifest, tmp_path):
    """The first failed probe of a series was raised for every instance of it, each row naming that instance."""
    local = local_manifest.instances.drop_duplicates("path")
    probed = local[local.modality != "CT"].groupby("series_instance_uid").filter(lambda g: len(g) > 1)
    sop = probed.sop_instance_uid.iloc[0]
    orthanc_proxy.rules = [(f"/instances/{sop}", "reset")]
    try:
        manifest = dicomml.index(_url(orthanc_proxy.url), tmp_path / "m", progress=False, remote=Remote(retries=0, timeout_s=10))
    finally:
        orthanc_proxy.rules = []
    (path,) = manifest.errors.path
    assert path.endswith(f"/instances/{sop}") and manifest.errors.message.iloc[0].count("/instances/") == 1
    assert manifest.meta["counts"]["instances"] == len(local) - 1
