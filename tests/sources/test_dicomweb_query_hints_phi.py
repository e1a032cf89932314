"""QIDO-RS filters as written (series URLs, wildcards, spaces), the hints of failures that are not the server's, and
identifiers in source URLs kept out of the manifest; against a real Orthanc and a moto S3 bucket."""

from __future__ import annotations

import json

import pytest

import dicomml
from dicomml.errors import RemoteSourceError
from dicomml.indexer.privacy import WITHHELD, storable_source
from dicomml.sources import Remote
from dicomml.testing.servers import FaultProxy

BUCKET = "cohort"


def _url(root: str) -> str:
    return f"dicomweb+{root}/dicom-web"


def test_a_qido_filter_on_a_series_url_applies_as_on_a_study_url(orthanc_root, local_manifest, tmp_path):
    ct = local_manifest.series[local_manifest.series.modality == "CT"].iloc[0]
    series = f"{_url(orthanc_root)}/studies/{ct.study_instance_uid}/series/{ct.series_instance_uid}"
    other = dicomml.index(series + "?Modality=MR", tmp_path / "mr", progress=False)
    assert other.meta["counts"]["instances"] == 0
    same = dicomml.index(series + "?Modality=CT", tmp_path / "ct", progress=False)
    assert same.series.series_instance_uid.tolist() == [ct.series_instance_uid] and len(same.instances) == ct.n_files


@pytest.mark.parametrize("value", ["Image*", "Image?24x38x3"])
def test_qido_wildcards_reach_the_server_unescaped(orthanc_root, local_manifest, value, tmp_path):
    """dicomweb-client sent * and ? as %2A and %3F, which Orthanc does not decode: nothing matched."""
    manifest = dicomml.index(f"{_url(orthanc_root)}?SeriesDescription={value}", tmp_path / "m", progress=False)
    ct = local_manifest.series[local_manifest.series.modality == "CT"]
    assert manifest.series.series_instance_uid.tolist() == ct.series_instance_uid.tolist()


def test_a_space_in_a_qido_value_is_sent_as_percent_20_and_a_refused_query_is_not_retried(orthanc_proxy: FaultProxy, tmp_path):
    """A space went out as + (form encoding), which PS3.18 servers read as a plus sign."""
    orthanc_proxy.rules = [("/series?SeriesDescription=Image%2024x38x3&", "400")]  # seen only as %20: refused, to tell
    with pytest.raises(RemoteSourceError, match=r"searching for series \(QIDO-RS\) failed \(HTTP 400\); check the URL") as raised:
        dicomml.index(
            f"{_url(orthanc_proxy.url)}?SeriesDescription=Image+24x38x3", tmp_path / "m", progress=False, remote=Remote(retries=2)
        )
    assert "tries" not in str(raised.value)
    assert orthanc_proxy.requests == 2  # the source's check, then one search


def test_missing_bucket_credentials_say_to_check_the_storage_options(s3_endpoint, tmp_path, monkeypatch):
    """A manifest reopened without its storage options was told to check the server, or rerun to resume."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    url = f"s3://{BUCKET}/dcmqi/data/segmentations/24x38x3/image/"
    manifest = dicomml.index(url, tmp_path / "m", progress=False, storage_options={"anon": True, "endpoint_url": s3_endpoint})
    reopened = dicomml.Manifest(tmp_path / "m")  # no storage options: boto finds no credentials
    with pytest.raises(RemoteSourceError, match="NoCredentialsError.*; check the credentials and storage_options") as raised:
        dicomml.load_series(reopened, manifest.series.series_key[0])
    assert "rerun" not in str(raised.value) and "tries" not in str(raised.value)


def test_a_bucket_read_refused_as_a_bad_request_is_not_retried(s3_endpoint, corpus_files, tmp_path):
    """s3fs raises a 400 as a bare OSError (the status in its cause), which was retried, then told to rerun."""
    key = next(iter(corpus_files))
    with FaultProxy(s3_endpoint) as proxy:
        proxy.rules = [(key, "400")]
        options = {"anon": True, "endpoint_url": proxy.url}
        manifest = dicomml.index(f"s3://{BUCKET}/", tmp_path / "m", progress=False, remote=Remote(retries=3, storage_options=options))
    (message,) = manifest.errors.message
    assert key in message and "check the URL" in message and "tries" not in message and "rerun" not in message


def test_storable_source_withholds_identifier_filters_and_keeps_the_rest_as_written():
    url = "dicomweb+https://pacs/dicom-web?PatientID=crlab&Modality=CT,SEG&00100010=Doe%5EJ&patientbirthdate=19700101"
    stored = storable_source(url, include_phi=False)
    assert stored == (
        f"dicomweb+https://pacs/dicom-web?PatientID={WITHHELD}&Modality=CT,SEG&00100010={WITHHELD}&patientbirthdate={WITHHELD}"
    )
    assert storable_source(url, include_phi=False) == stored  # reruns compare equal
    nested = "dicomweb+https://pacs/dicom-web/studies/1.2?OtherPatientIDsSequence.PatientID=x&AccessionNumber=A1&StudyDate=2020"
    assert (
        storable_source(nested, False)
        == f"dicomweb+https://pacs/dicom-web/studies/1.2?OtherPatientIDsSequence.PatientID={WITHHELD}&AccessionNumber={WITHHELD}&StudyDate=2020"
    )
    assert storable_source(url, include_phi=True) == url


def test_storable_source_drops_credentials_always_and_leaves_local_paths():
    assert (
        storable_source("dicomweb+http://ann:pw@host:8042/dicom-web?PatientID=1", True) == "dicomweb+http://host:8042/dicom-web?PatientID=1"
    )
    assert storable_source("s3://key:secret@bucket/dicom", False) == "s3://bucket/dicom"
    assert storable_source("/data/scans?PatientID=1", False) == "/data/scans?PatientID=1"  # a file name, not a query


def test_qido_identifiers_are_not_stored_in_the_manifest(orthanc_root, tmp_path):
    """Needs storable_source called where dicomml.index names its sources (indexer/run.py)."""
    url = f"{_url(orthanc_root)}?PatientID=crlab&PatientName=stc_test"
    manifest = dicomml.index(url, tmp_path / "m", progress=False)
    written = (tmp_path / "m" / "manifest.json").read_text()
    assert "crlab" not in written and "stc_test" not in written
    stored = f"{_url(orthanc_root)}?PatientID={WITHHELD}&PatientName={WITHHELD}"
    assert json.loads(written)["sources"] == [stored] and manifest.meta["sources"] == [stored]
    kept = dicomml.index(url, tmp_path / "phi", progress=False, include_phi=True)
    assert kept.meta["sources"] == [url]
