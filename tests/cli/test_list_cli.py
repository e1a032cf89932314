"""`dicomml list` and `dicomml info --errors`: the keys show/export take, and the files that failed."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pydicom
import pytest

import dicomml
from dicomml.cli.main import main
from dicomml.sample import write_sample_study


@pytest.fixture(scope="module")
def indexed(tmp_path_factory) -> tuple[Path, dicomml.Manifest]:
    root = tmp_path_factory.mktemp("list")
    write_sample_study(root / "dicom")
    (root / "dicom" / "notes.txt").write_text("not DICOM")
    return root, dicomml.index([str(root / "dicom")], str(root / "manifest"), workers=1, progress=False)


def _run(argv: list[str], capsys) -> list[list[str]]:
    main(argv)
    return [line.split("  ") for line in capsys.readouterr().out.splitlines()]


def test_list_series_prints_each_key_with_what_the_headers_say(indexed, capsys):
    root, manifest = indexed
    lines = _run(["list", str(manifest.path)], capsys)
    assert [c.strip() for c in lines[0] if c] == [
        "series_key",
        "modality",
        "series_number",
        "series_description",
        "shape",
        "n_volumes",
        "usable",
        "reason",
    ]
    rows = {line[0]: [c.strip() for c in line[1:] if c.strip()] for line in lines[1:]}
    assert len(rows) == 2
    for folder in ("CT", "MR"):
        ds = pydicom.dcmread(next((root / "dicom" / folder).glob("*.dcm")), stop_before_pixels=True)
        key = manifest.rows("series", where=f"modality = '{ds.Modality}'")["series_key"].item()
        assert rows[key][:3] == [ds.Modality, str(ds.SeriesNumber), ds.SeriesDescription]


def test_list_annotations_where_and_columns_feed_a_shell_read(indexed, capsys):
    _, manifest = indexed
    argv = [
        "list",
        str(manifest.path),
        "annotations",
        "--where",
        "modality = 'SEG'",
        "--columns",
        "annotation_key,referenced_series_key",
        "--no-header",
    ]
    [[seg_key, ct_key]] = _run(argv, capsys)
    seg = pydicom.dcmread(manifest.annotations["path"].item(), stop_before_pixels=True)
    referenced = seg.ReferencedSeriesSequence[0].SeriesInstanceUID
    ct = manifest.rows("series", where=f"series_key = '{ct_key}'")
    assert ct["series_instance_uid"].item() == referenced and seg_key == manifest.annotations["annotation_key"].item()


def test_list_with_a_bad_where_or_column_is_one_line(indexed, capsys):
    _, manifest = indexed
    for extra in (["--where", "modalty = 'CT'"], ["--columns", "series_key,nope"]):
        with pytest.raises(SystemExit) as exc:
            main(["list", str(manifest.path), *extra])
        err = capsys.readouterr().err
        assert exc.value.code == 1 and err.count("\n") == 1 and "its columns are series_key, " in err


def test_info_errors_lists_each_failed_file_with_its_reason(indexed, capsys):
    root, manifest = indexed
    lines = _run(["info", str(manifest.path), "--errors"], capsys)
    assert lines[0][0].startswith("path")
    [row] = lines[1:]
    assert row[0].strip() == str(root / "dicom" / "notes.txt")
    assert "not a DICOM file: no 'DICM' marker" in row[-1]


def test_list_prints_missing_numbers_as_a_dash(tmp_path, capsys):
    """A series without SeriesNumber: pandas reads the missing integer as pd.NA, printed "-" as the help says."""
    write_sample_study(tmp_path / "dicom")
    for path in (tmp_path / "dicom" / "MR").glob("*.dcm"):
        ds = pydicom.dcmread(path)
        del ds.SeriesNumber
        ds.save_as(path)
    manifest = dicomml.index([str(tmp_path / "dicom")], str(tmp_path / "manifest"), workers=1, progress=False)
    lines = _run(["list", str(manifest.path), "--where", "modality = 'MR'", "--columns", "series_number,modality"], capsys)
    assert [c.strip() for c in lines[1] if c.strip()] == ["-", "MR"]


def test_list_as_csv_and_json_lines_reads_back_as_the_manifest_rows(tmp_path, capsys):
    """Free text with a comma, a missing number and list columns survive csv.reader and json.loads."""
    write_sample_study(tmp_path / "dicom")
    for path in (tmp_path / "dicom" / "MR").glob("*.dcm"):
        ds = pydicom.dcmread(path)
        ds.SeriesDescription = 'T1, "post" contrast'
        del ds.SeriesNumber
        ds.save_as(path)
    manifest = dicomml.index([str(tmp_path / "dicom")], str(tmp_path / "manifest"), workers=1, progress=False)
    series = manifest.rows("series", where="modality = 'MR'").iloc[0]
    argv = ["list", str(manifest.path), "--where", "modality = 'MR'", "--columns", "series_key,series_description,series_number,shape"]

    main([*argv, "--format", "csv"])
    header, row = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    assert header == ["series_key", "series_description", "series_number", "shape"]
    assert row == [series.series_key, 'T1, "post" contrast', "", " ".join(map(str, series["shape"]))]

    main([*argv, "--format", "jsonl"])
    [line] = capsys.readouterr().out.splitlines()
    assert json.loads(line) == {
        "series_key": series.series_key,
        "series_description": 'T1, "post" contrast',
        "series_number": None,
        "shape": [int(v) for v in series["shape"]],
    }
