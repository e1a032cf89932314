"""``dicomml sample-data DIR`` from the command line."""

from __future__ import annotations

import pydicom
from click.testing import CliRunner

from dicomml.cli.main import cli


def test_sample_data_command_writes_a_readable_study(tmp_path):
    result = CliRunner().invoke(cli, ["sample-data", str(tmp_path / "study"), "--seed", "3"])
    assert result.exit_code == 0, result.output
    assert "CT   80 files" in result.output and "SEG   1 file" in result.output
    seg = pydicom.dcmread(tmp_path / "study" / "SEG" / "seg.dcm")
    ct = pydicom.dcmread(tmp_path / "study" / "CT" / "CT0001.dcm")
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == ct.SeriesInstanceUID
    assert ct.PatientID == "DICOMML-SAMPLE-3"
