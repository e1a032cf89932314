"""A DICOMweb source's QIDO-RS filter on an identifier (``?PatientID=``) stays out of its error messages, as it stays
out of ``manifest.json``: the URL and the HTTP client's reason both name it. Against a closed loopback port."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import dicomml
from dicomml.errors import RemoteSourceError
from dicomml.sources import DicomWebSource, Remote

#: Nothing listens on the discard port of loopback: every connection is refused at once.
CLOSED = "dicomweb+http://127.0.0.1:9/dicom-web"
FILTER = "?PatientID=LEAKPIDURL&Modality=CT"


def _no_patient(exc: RemoteSourceError) -> None:
    assert "LEAKPIDURL" not in str(exc) and "LEAKPIDURL" not in str(exc.path)
    assert "PatientID=WITHHELD&Modality=CT" in str(exc)


def test_an_unreachable_server_is_named_without_the_patient_of_its_filter(tmp_path):
    with pytest.raises(RemoteSourceError, match="searching for studies failed") as raised:
        dicomml.index(CLOSED + FILTER, tmp_path / "m", progress=False, remote=Remote(retries=0))
    _no_patient(raised.value)


def test_a_failed_series_search_withholds_the_filter_in_the_clients_reason_too(tmp_path, monkeypatch):
    """requests says ``Max retries exceeded with url: /dicom-web/series?PatientID=...``: the query as it was sent."""
    monkeypatch.setattr(DicomWebSource, "check", lambda self: None)  # the search is the first request
    with pytest.raises(RemoteSourceError, match=r"searching for series \(QIDO-RS\) failed") as raised:
        dicomml.index(CLOSED + FILTER, tmp_path / "m", progress=False, remote=Remote(retries=0))
    assert "url: /dicom-web/series?" in str(raised.value)  # the reason still says what was asked
    _no_patient(raised.value)


def test_refusals_of_the_url_itself_withhold_the_filter():
    with pytest.raises(RemoteSourceError, match="an instance URL") as raised:
        DicomWebSource(f"{CLOSED}/studies/1/series/2/instances/3{FILTER}", Remote())
    _no_patient(raised.value)
    with pytest.raises(RemoteSourceError, match="on another server") as raised:
        DicomWebSource(["dicomweb+http://127.0.0.1:8/dicom-web" + FILTER, CLOSED + FILTER], Remote())
    _no_patient(raised.value)
    with pytest.raises(RemoteSourceError, match="credentials in the URL") as raised:
        DicomWebSource(f"dicomweb+http://user:pw@127.0.0.1:9/dicom-web{FILTER}", Remote())
    assert "LEAKPIDURL" not in str(raised.value) and "pw@" not in str(raised.value)


def test_the_cli_line_of_an_unreachable_server_withholds_the_filter(tmp_path):
    command = [sys.executable, "-c", "from dicomml.cli.main import main; main()", "index", CLOSED + FILTER, "-o", str(tmp_path / "m")]
    result = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "DICOMML_SALT": "test salt"}, timeout=300)
    assert result.returncode == 1
    assert "LEAKPIDURL" not in result.stderr + result.stdout and "PatientID=WITHHELD" in result.stderr


def test_the_cli_line_of_a_filter_matching_nothing_withholds_the_patient(orthanc_root, tmp_path):
    url = f"dicomweb+{orthanc_root}/dicom-web?PatientID=LEAKPIDNONE"
    command = [sys.executable, "-c", "from dicomml.cli.main import main; main()", "index", url, "-o", str(tmp_path / "m"), "--quiet"]
    result = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "DICOMML_SALT": "test salt"}, timeout=300)
    assert result.returncode == 1 and "no DICOM file found" in result.stderr
    assert "LEAKPIDNONE" not in result.stderr + result.stdout and "PatientID=WITHHELD" in result.stderr
