"""Error rows of files the indexer could not read: failures that need not recur are read again, messages
are one line, name the OS's reason and a public exception class, and never repeat a header value or file bytes
that could identify a patient."""

from __future__ import annotations

import os
import shutil
import signal
import time
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_charset_files, get_testdata_file
from pydicom.dataelem import DataElement
from pydicom.tag import Tag

import dicomml
import dicomml.indexer.run as run_module
from dicomml.cli.main import main
from dicomml.dicom.synthetic import write_series
from dicomml.indexer import scan

SALT = "dicomml tests"


def _series(folder: Path, n: int = 5) -> list[Path]:
    return write_series(folder, np.zeros((n, 4, 4), np.uint16), series_uid=pydicom.uid.generate_uid())


def _index_unable_to_read(source: Path, out: Path, honouring_modes) -> dicomml.Manifest:
    """Index ``source`` in a process that a file of mode 000 refuses."""
    code = f"import dicomml; dicomml.index({str(source)!r}, {str(out)!r}, workers=1, salt={SALT!r}, progress=False)"
    done = honouring_modes(code)
    assert done.returncode == 0, done.stderr
    return dicomml.Manifest(out)


@pytest.fixture
def unreadable_slice(tmp_path: Path, honouring_modes) -> tuple[Path, Path, dicomml.Manifest]:
    """A series of 5 whose third file had mode 000 when it was indexed, then 644 (its size and time unchanged)."""
    files = _series(tmp_path / "src" / "ct")
    files[2].chmod(0)
    manifest = _index_unable_to_read(tmp_path / "src", tmp_path / "m", honouring_modes)
    files[2].chmod(0o644)
    if list(manifest.errors.error_type) != ["unreadable"]:
        pytest.skip("a file of mode 000 is readable here")
    return tmp_path, files[2], manifest


def test_unreadable_file_says_the_os_reason_on_one_line_with_a_public_class(unreadable_slice):
    _, path, manifest = unreadable_slice
    row = manifest.errors.iloc[0]
    assert row.message == f"{path}: cannot be read (Permission denied); check permissions, the next index reads it again"
    assert row.exception == "PermissionError" and row["size"] == -1
    assert not manifest.series.usable.any()


def test_file_unreadable_then_fixed_is_read_by_the_next_run(unreadable_slice):
    root, path, _ = unreadable_slice
    _series(root / "src" / "mr", n=3)  # the archive grew: the run diffs the listing
    manifest = dicomml.index(root / "src", root / "m", workers=1, salt=SALT, progress=False)
    assert manifest.errors.empty
    assert str(path) in set(manifest.instances.path)
    assert sorted(manifest.series.n_files) == [3, 5] and manifest.series.usable.all()


def test_file_unreadable_then_fixed_is_read_by_the_next_run_of_an_unchanged_listing(unreadable_slice):
    root, path, _ = unreadable_slice
    manifest = dicomml.index(root / "src", root / "m", workers=1, salt=SALT, progress=False)
    assert manifest.errors.empty and str(path) in set(manifest.instances.path)


def test_timed_out_file_is_read_by_the_next_run(tmp_path: Path, monkeypatch):
    files = _series(tmp_path / "src" / "ct")
    real = scan._read_entry

    def hangs(entry, options, *rest):  # stands in for a disk that stalls once
        if entry.path == str(files[1]):
            time.sleep(3600)
        return real(entry, options, *rest)

    with monkeypatch.context() as patch:
        patch.setattr(scan, "_read_entry", hangs)  # forked workers inherit it
        first = dicomml.index(tmp_path / "src", tmp_path / "m", workers=1, timeout_s=1.0, salt=SALT, progress=False)
    assert list(first.errors.error_type) == ["timeout"]
    _series(tmp_path / "src" / "mr", n=3)
    manifest = dicomml.index(tmp_path / "src", tmp_path / "m", workers=1, timeout_s=30, salt=SALT, progress=False)
    assert manifest.errors.empty and str(files[1]) in set(manifest.instances.path)


def test_file_removed_between_listing_and_reading_is_a_source_not_found_row(tmp_path: Path, monkeypatch):
    files = _series(tmp_path / "src")
    listed = run_module.crawl

    def crawl_then_remove(sources):
        found = list(listed(sources))
        files[0].unlink()
        return iter(found)

    monkeypatch.setattr(run_module, "crawl", crawl_then_remove)
    manifest = dicomml.index(tmp_path / "src", tmp_path / "m", workers=1, timeout_s=0, salt=SALT, progress=False)
    row = manifest.errors.iloc[0]
    assert (row.error_type, row.exception) == ("unreadable", "SourceNotFoundError")
    assert (
        row.message == f"{files[0]}: cannot be read (No such file or directory); it was removed or renamed while the index ran, index again"
    )


def test_dicomdir_row_names_no_private_class(tmp_path: Path):
    (tmp_path / "src").mkdir()
    shutil.copy(str(get_testdata_file("DICOMDIR")), tmp_path / "src" / "DICOMDIR")  # pydicom's, without the files it lists
    manifest = dicomml.index(tmp_path / "src", tmp_path / "m", workers=1, salt=SALT, progress=False)
    assert manifest.rows("errors", columns=["error_type", "exception"]).values.tolist() == [["dicomdir", None]]


def test_newline_in_a_file_name_keeps_messages_and_listed_rows_on_one_line(tmp_path: Path, capsys):
    _series(tmp_path / "src" / "ct")
    (tmp_path / "src" / "evil\nname.dcm").write_bytes(b"junk")
    manifest = dicomml.index(tmp_path / "src", tmp_path / "m", workers=1, salt=SALT, progress=False)
    [message] = manifest.errors.message
    assert "\n" not in message and "evil\\nname.dcm" in message
    main(["list", str(tmp_path / "m"), "errors", "--no-header"])
    main(["info", str(tmp_path / "m"), "--errors"])
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and lines[1].startswith("path")  # a row of list, info's header and row
    assert "evil\\nname.dcm" in lines[0] and "evil\\nname.dcm" in lines[2]


def test_header_only_object_is_said_to_have_no_pixel_data_not_to_be_truncated(tmp_path: Path):
    (tmp_path / "src").mkdir()
    header_only = Path(shutil.copy(get_charset_files("chrJapMulti.dcm")[0], tmp_path / "src"))  # a CR header, no Pixel Data
    cut = tmp_path / "src" / "cut.dcm"
    cut.write_bytes(header_only.read_bytes()[:-3])  # the same file cut short inside its last element
    manifest = dicomml.index(tmp_path / "src", tmp_path / "m", workers=1, salt=SALT, progress=False)
    messages = dict(zip(manifest.errors.path, manifest.errors.message))
    assert "no Pixel Data element (7FE0,0010)" in messages[str(header_only)]
    assert "a header-only object, not an image (the file ends cleanly after its last element)" in messages[str(header_only)]
    assert "past the end of the file" in messages[str(cut)]


def _with_raw_value(path: Path, keyword: str, text: str, vr: str) -> None:
    """Rewrite ``path`` with ``keyword`` holding ``text`` under ``vr``, which pydicom would refuse to write."""
    ds = pydicom.dcmread(path)
    tag = Tag(keyword)
    ds[tag] = DataElement(tag, "LO", text)
    ds.save_as(path)
    raw = bytearray(path.read_bytes())
    at = raw.find(tag.to_bytes(4, "big")[1::-1] + tag.to_bytes(4, "big")[3:1:-1] + b"LO")
    raw[at + 4 : at + 6] = vr.encode()
    path.write_bytes(bytes(raw))


def test_messages_repeat_no_header_value_or_file_bytes_that_could_identify_a_patient(tmp_path: Path):
    src = tmp_path / "src"
    position, slope, thickness, number = (_series(src / name, n=1)[0] for name in ("position", "slope", "thickness", "number"))
    _with_raw_value(position, "ImagePositionPatient", "DOE^JANE\\0\\0", "DS")  # read by frame_table
    _with_raw_value(slope, "RescaleSlope", "PID12345", "DS")
    _with_raw_value(thickness, "SliceThickness", "JANE DOE", "DS")  # read by the manifest's own columns
    _with_raw_value(number, "RescaleSlope", "1..5", "DS")  # made of what numbers hold: quoted
    (src / "notes.dcm").write_text("hello DOE^JANE PID12345\n")
    manifest = dicomml.index(src, tmp_path / "m", workers=1, salt=SALT, progress=False)
    errors = manifest.errors
    assert len(errors) == 5
    stored = errors.to_csv()
    for secret in ("DOE", "JANE", "PID12345", "hello"):
        assert secret not in stored
    messages = dict(zip(errors.path, errors.message))
    assert "(0020,0032) ImagePositionPatient is not a number (12 characters, not shown)" in messages[str(position)]
    assert "(0028,1053) RescaleSlope is not a number (8 characters, not shown)" in messages[str(slope)]
    assert "(0018,0050) Slice Thickness is not a number (8 characters, not shown)" in messages[str(thickness)]
    assert "(0028,1053) RescaleSlope is '1..5', expected a number" in messages[str(number)]
    assert "not a DICOM file" in messages[str(src / "notes.dcm")]


def test_crashed_worker_row_is_read_again(tmp_path: Path, monkeypatch):
    files = _series(tmp_path / "src" / "ct")
    real = scan._read_entry

    def dies(entry, options, *rest):  # stands in for the OOM killer under a passing load
        if entry.path == str(files[3]):
            os.kill(os.getpid(), signal.SIGKILL)
        return real(entry, options, *rest)

    with monkeypatch.context() as patch:
        patch.setattr(scan, "_read_entry", dies)
        first = dicomml.index(tmp_path / "src", tmp_path / "m", workers=1, timeout_s=30, salt=SALT, progress=False)
    assert list(first.errors.error_type) == ["crashed"] and list(first.errors["size"]) == [-1]
    _series(tmp_path / "src" / "mr", n=3)
    manifest = dicomml.index(tmp_path / "src", tmp_path / "m", workers=1, timeout_s=30, salt=SALT, progress=False)
    assert manifest.errors.empty and str(files[3]) in set(manifest.instances.path)
