"""`dicomml index` and `dicomml info` as a user runs them: real processes, exit codes, one-line errors."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import dicomml


def _dicomml(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-c", "from dicomml.cli.main import main; main()", *args]
    return subprocess.run(command, capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=300)


def test_index_with_some_bad_files_exits_0_and_says_how_many(data_dir: Path, tmp_path: Path):
    tree = tmp_path / "tree"
    shutil.copytree(data_dir / "dcmqi/data/segmentations/24x38x3/image", tree)
    (tree / "bad.dcm").write_bytes(b"\x00" * 10)
    (tree / "empty.dcm").write_bytes(b"")
    out = tmp_path / "m"
    result = _dicomml("index", str(tree), "-o", str(out), "--workers", "1", env={"DICOMML_SALT": "cli test"})
    assert result.returncode == 0, result.stderr
    assert "3 instance rows, 1 series" in result.stdout
    assert "2 files or entries could not be indexed" in result.stdout
    assert "dicomml index" in result.stderr  # the progress bar
    m = dicomml.Manifest(out)
    assert sorted(Path(p).name for p in m.errors.path) == ["bad.dcm", "empty.dcm"]


def test_missing_source_exits_1_with_one_line(tmp_path: Path):
    result = _dicomml("index", str(tmp_path / "nowhere"), "-o", str(tmp_path / "m"))
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0
    assert "source does not exist" in result.stderr


def test_unwritable_output_exits_1_with_one_line(data_dir: Path, tmp_path: Path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = _dicomml("index", str(data_dir / "dcmqi/data/segmentations/24x38x3/image"), "-o", str(blocker / "m"))
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0 and "cannot be written" in result.stderr


def test_info_summarizes_counts_reasons_and_errors(data_dir: Path, tmp_path: Path):
    tree = tmp_path / "tree"
    shutil.copytree(data_dir / "dicom2nifti/tests/data/failing", tree)
    (tree / "notes.txt").write_text("not DICOM")
    dicomml.index(tree, tmp_path / "m", workers=1, salt="cli test", progress=False)
    result = _dicomml("info", str(tmp_path / "m"))
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert "series by modality" in text and "CT Image Storage" in text and "SIEMENS" in text
    assert "gantry tilt" in text and "4 images at one position (not a volume)" in text and "(gap)" in text
    assert "read not_dicom 1" in " ".join(text.split())


def test_info_on_a_folder_without_manifest_exits_1(tmp_path: Path):
    result = _dicomml("info", str(tmp_path))
    assert result.returncode == 1 and "manifest.json missing" in result.stderr


def test_index_of_an_empty_folder_says_so_and_exits_1(tmp_path: Path):
    (tmp_path / "empty").mkdir()
    result = _dicomml("index", str(tmp_path / "empty"), "-o", str(tmp_path / "m"), "--quiet", env={"DICOMML_SALT": "t"})
    assert result.returncode == 1 and result.stdout == ""  # no summary of a run that found nothing
    assert result.stderr == (
        f"dicomml: error: {tmp_path / 'empty'}: no DICOM file found: no files at all (an empty folder, a query matching nothing?); check the path\n"
    )


def test_index_of_a_folder_without_dicom_says_so_and_exits_1(tmp_path: Path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("not DICOM")
    (tmp_path / "notes" / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 200)
    result = _dicomml("index", str(tmp_path / "notes"), "-o", str(tmp_path / "m"), "--quiet", env={"DICOMML_SALT": "t"})
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"dicomml: error: {tmp_path / 'notes'}: no DICOM file found among 2 files; "
        f"`dicomml info {tmp_path / 'm'} --errors` says why each was refused"
    ]
