"""Files of one batch reuse each other's walked headers and rows; every row and error must equal the file read alone."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from pydicom.uid import generate_uid

from dicomml.dicom.synthetic import write_slice
from dicomml.indexer import records
from dicomml.indexer.crawl import Entry
from dicomml.indexer.scan import ScanOptions, scan_batch

OPTIONS = ScanOptions(include_phi=False, salt=b"reuse")


def _entry(path: Path) -> Entry:
    return Entry(str(path), str(path.parent), path.stat().st_size, 0, str(path))


def _patch(path: Path, tag: bytes, value: bytes) -> None:
    """Replace the value of an explicit VR element with ``value`` of the same length (a malformed but well-framed file)."""
    data = bytearray(path.read_bytes())
    at = data.index(tag) + 6
    length = int.from_bytes(data[at : at + 2], "little")
    data[at + 2 : at + 2 + length] = value.ljust(length)[:length]
    path.write_bytes(bytes(data))


def _series(folder: Path) -> list[Path]:
    """Twelve slices of one series, then files that differ from their neighbours in what reuse must notice."""
    folder.mkdir()
    uid, pixels = generate_uid(), np.zeros((4, 4), np.int16)
    files = [
        write_slice(folder / f"IM{k:03d}.dcm", pixels, position=(-1.5, 2.25, 1.25 * k), instance=k + 1, series_uid=uid) for k in range(12)
    ]
    odd = {
        "intercept": {"rescale": (1.0, -1000.0)},  # same length, another value
        "spacing": {"pixel_spacing": (0.5, 1.0)},
        "echo": {"extra": {"EchoNumbers": 2}},  # one element more: another layout and series_key
        "orientation": {"orientation": (0, 1, 0, 0, 0, -1)},
        "description": {"extra": {"SeriesDescription": "post contrast"}},
    }
    for k, (name, options) in enumerate(odd.items()):
        files.append(
            write_slice(folder / f"IX{name}.dcm", pixels, position=(-1.5, 2.25, 20.0 + k), instance=50 + k, series_uid=uid, **options)
        )
    for name, tag, value in (
        ("position", b"\x20\x00\x32\x00DS", b"1\\2\\x"),
        ("nan", b"\x20\x00\x32\x00DS", b"1\\2\\nan"),
        ("instance", b"\x20\x00\x13\x00IS", b"1x"),
        ("uid", b"\x08\x00\x18\x00UI", b"1.2.\xff"),  # read with a replacement character, not reused
    ):
        path = write_slice(folder / f"IY{name}.dcm", pixels, position=(-1.5, 2.25, 30.0), instance=60, series_uid=uid)
        _patch(path, tag, value)
        files.append(path)
    files.append(write_slice(folder / "IZlast.dcm", pixels, position=(-1.5, 2.25, 40.0), instance=70, series_uid=uid))
    return files


def _by_path(rows: list[dict]) -> list[dict]:
    return sorted(rows, key=lambda row: (row["path"], row.get("series_key") or ""))


def test_rows_and_errors_of_a_batch_equal_each_file_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    entries = [_entry(p) for p in _series(tmp_path / "s")]
    alone_rows, alone_errors = [], []
    for entry in entries:  # a batch of one: nothing to reuse
        instances, errors = scan_batch([entry], OPTIONS)
        alone_rows += instances.to_pylist()
        alone_errors += errors.to_pylist()
    built = []
    full = records._rows
    monkeypatch.setattr(records, "_rows", lambda *args: built.append(args[1]) or full(*args))
    instances, errors = scan_batch(entries, OPTIONS)
    assert _by_path(instances.to_pylist()) == _by_path(alone_rows)
    assert _by_path(errors.to_pylist()) == _by_path(alone_errors)
    assert {os.path.basename(row["path"]) for row in alone_errors} == {"IYposition.dcm", "IYnan.dcm", "IYinstance.dcm"}
    # the regular slices after the first took the first one's row; every odd file was built in full
    built_names = {os.path.basename(p) for p in built}
    assert built_names >= {
        "IM000.dcm",
        "IXintercept.dcm",
        "IXspacing.dcm",
        "IXecho.dcm",
        "IXorientation.dcm",
        "IXdescription.dcm",
        "IYuid.dcm",
    }
    assert not built_names & {f"IM{k:03d}.dcm" for k in range(1, 12)}
