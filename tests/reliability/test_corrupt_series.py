"""One corrupted file in a real multi-file series: a typed error naming it, and a run that goes on.

The series is a copy of the corpus' classic Philips MR (40 files, 96 x 96,
Explicit VR Little Endian) in ``tmp_path``; one file is truncated inside its
pixel data, given a garbage header, or emptied.

The indexer already catches all three (each lands in ``errors`` and the series
missing a slice is not usable), so a series that fails in ``preprocess`` is
one whose file was corrupted after it was indexed: the run report must then
say ``failed`` with the typed error, and the other series must be done.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest

import dicomml
from dicomml.errors import DicomMLError, InvalidDicomFileError

SERIES = "dcm_qa_philips_enh/In/cl"
#: Good series that share the tree with the corrupted one (classic MR, 4 files each).
OTHERS = ("dicom2nifti/tests/data/generic/anatomical/002_non_isotropic", "dicom2nifti/tests/data/hitachi/anatomical/001")
BAD = 17  # index of the corrupted file in name order
_CLI = [sys.executable, "-c", "from dicomml.cli.main import main; main()"]


def _truncate_in_pixel_data(path: Path) -> None:
    """Cut the file halfway through its Pixel Data value, the last element (the header stays whole)."""
    pixels = pydicom.dcmread(path).PixelData
    raw = path.read_bytes()
    start = len(raw) - len(pixels)
    assert raw[start:] == pixels, f"{path}: Pixel Data is not the last element"
    path.write_bytes(raw[: start + len(pixels) // 2])


def _garbage_header(path: Path) -> None:
    """Keep the preamble and ``DICM``; overwrite the next 600 bytes (meta and early elements) with noise."""
    raw = bytearray(path.read_bytes())
    raw[132:732] = np.random.default_rng(7).integers(0, 256, 600, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(raw))


def _zero_length(path: Path) -> None:
    path.write_bytes(b"")


CORRUPTIONS = {"truncated-pixel-data": _truncate_in_pixel_data, "garbage-header": _garbage_header, "zero-length": _zero_length}


def _copy(source: Path, folder: Path) -> list[Path]:
    folder.mkdir(parents=True)
    for f in sorted(source.iterdir()):
        shutil.copyfile(f, folder / f.name)
    return sorted(folder.iterdir())


@pytest.mark.parametrize("corruption", sorted(CORRUPTIONS))
def test_load_files_names_the_corrupted_file(tmp_path, data_dir, corruption):
    paths = _copy(data_dir / SERIES, tmp_path / "series")
    assert len(paths) == 40
    dicomml.load_files(paths)  # the intact copy loads
    CORRUPTIONS[corruption](paths[BAD])
    rng = np.random.default_rng(0)
    with pytest.raises(DicomMLError) as caught:
        dicomml.load_files([paths[i] for i in rng.permutation(len(paths))])
    error = caught.value
    assert isinstance(error, InvalidDicomFileError), type(error)
    assert Path(error.path) == paths[BAD]
    assert str(paths[BAD]) in str(error)


def _write_config(path: Path) -> Path:
    path.write_text(
        "name: reliability\n"
        "deterministic:\n"
        "  orientation: RAS\n"
        "  spacing: null\n"
        "  shape: null\n"
        "  dtype: float32\n"
        "  masks: []\n"
        "  chunks: [64, 64, 64]\n"
    )
    return path


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*_CLI, *args], capture_output=True, text=True, timeout=180)


def test_index_records_corrupted_files_and_preprocess_fails_only_the_series_corrupted_later(tmp_path, data_dir):
    tree = tmp_path / "tree"
    paths = _copy(data_dir / SERIES, tree / "philips")
    _truncate_in_pixel_data(paths[BAD])
    for n, folder in enumerate(OTHERS):
        _copy(data_dir / folder, tree / f"other{n}")
    junk = tree / "junk"
    junk.mkdir()
    for name, corrupt in (("garbage-header", _garbage_header), ("zero-length", _zero_length)):
        shutil.copyfile(paths[0], junk / f"{name}.dcm")
        corrupt(junk / f"{name}.dcm")
    out = tmp_path / "manifest"

    # The indexer sees all three corrupted files: each is in `errors`, and the series missing one is unusable.
    indexed = _cli("index", str(tree), "-o", str(out), "--workers", "1", "--quiet")
    assert indexed.returncode == 0, indexed.stderr
    errors = dicomml.Manifest(out).sql("SELECT path, message FROM errors")
    assert {Path(p).name for p in errors["path"]} == {"garbage-header.dcm", "zero-length.dcm", paths[BAD].name}
    assert all(path in message for path, message in zip(errors["path"], errors["message"]))
    bad_uid = str(pydicom.dcmread(paths[0], stop_before_pixels=True).SeriesInstanceUID)
    series = dicomml.Manifest(out).sql("SELECT series_key, series_instance_uid, usable, reason FROM series")
    bad = series[series["series_instance_uid"] == bad_uid].iloc[0]
    assert not bad["usable"] and "missing slices" in bad["reason"]
    assert series.drop(index=bad.name)["usable"].all() and len(series) == 3

    # The file is repaired and indexed again, then truncated once more behind the manifest's back.
    shutil.copyfile(data_dir / SERIES / paths[BAD].name, paths[BAD])
    assert _cli("index", str(tree), "-o", str(out), "--workers", "1", "--quiet").returncode == 0
    manifest = dicomml.Manifest(out)
    assert set(manifest.sql("SELECT series_key FROM series WHERE usable")["series_key"]) == set(series["series_key"])
    bad_key = str(bad["series_key"])
    _truncate_in_pixel_data(paths[BAD])

    with pytest.raises(InvalidDicomFileError) as caught:  # the library call raises, naming the file
        dicomml.load_series(manifest, bad_key)
    assert Path(caught.value.path) == paths[BAD]

    report_path = tmp_path / "report.parquet"
    run = _cli(
        "preprocess",
        str(out),
        "--config",
        str(_write_config(tmp_path / "config.yaml")),
        "--cache",
        str(tmp_path / "cache"),
        "--workers",
        "0",
        "--report",
        str(report_path),
        "--quiet",
    )
    assert run.returncode == 0, run.stderr
    report = pd.read_parquet(report_path).set_index("series_key")
    assert len(report) == 3
    assert report.loc[bad_key, "status"] == "failed"
    assert report.loc[bad_key, "error_type"] == "InvalidDicomFileError"
    assert str(paths[BAD]) in report.loc[bad_key, "message"]
    assert (report.drop(index=bad_key)["status"] == "done").all(), report
    assert len(dicomml.Cache(tmp_path / "cache").keys()) == 2
