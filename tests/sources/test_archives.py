"""Zip and tar archives read in place through fsspec (``zip://::corpus.zip``): the same manifest and volumes as the
files on disk, members recorded with their archive so that they load again, and reruns that follow the archive."""

from __future__ import annotations

import os
import tarfile
import zipfile
from pathlib import Path

import pytest
from remote_compare import assert_same_manifest, assert_same_volumes

import dicomml


def _archive(kind: str, files: dict[str, Path], path: Path) -> str:
    """``files`` (member name -> file) written as a zip or a gzipped tar; the fsspec URL of its root."""
    if kind == "zip":
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
            for name, file in files.items():
                archive.write(file, name)
        return f"zip://::{path}"
    with tarfile.open(path, "w:gz") as archive:
        for name, file in files.items():
            archive.add(file, name)
    return f"tar://::{path}"


@pytest.mark.parametrize("kind", ["zip", "tar"])
def test_an_archive_indexes_and_loads_as_its_files_on_disk(kind, corpus_files, local_manifest, tmp_path):
    path = tmp_path / ("corpus.zip" if kind == "zip" else "corpus.tar.gz")  # fsspec infers a tar's compression from its name
    url = _archive(kind, corpus_files, path)
    manifest = dicomml.index(url, tmp_path / "m", progress=False)
    assert manifest.meta["counts"]["errors"] == 0
    assert all(p.startswith(f"{kind}://") and p.endswith(f"::{path}") for p in manifest.instances.path)
    keys = assert_same_manifest(manifest, local_manifest)
    assert_same_volumes(manifest, local_manifest, keys)
    reopened = dicomml.Manifest(tmp_path / "m")  # a new process's view: the recorded URLs alone open the members
    key = next(iter(keys))
    assert dicomml.load_series(reopened, key).array.tobytes() == dicomml.load_series(local_manifest, keys[key]).array.tobytes()


def test_a_rerun_reads_nothing_until_the_archive_changes(corpus_files, tmp_path, monkeypatch):
    archive = tmp_path / "corpus.zip"
    _archive("zip", corpus_files, archive)
    monkeypatch.chdir(tmp_path)
    url = "zip://::corpus.zip"  # relative: recorded absolute, so that it opens from anywhere
    first = dicomml.index(url, tmp_path / "m", progress=False)
    assert all(p.endswith(f"::{archive}") for p in first.instances.path)
    assert dicomml.index(url, tmp_path / "m", progress=False).meta["last_run"]["files_read"] == 0
    # the same members, rewritten: their own times may not move (zip keeps seconds), the archive's does
    _archive("zip", corpus_files, archive)
    os.utime(archive, ns=(archive.stat().st_atime_ns, archive.stat().st_mtime_ns + 1_000_000_000))
    again = dicomml.index(url, tmp_path / "m", progress=False)
    assert again.meta["last_run"]["files_read"] == len(corpus_files)
    assert again.meta["counts"] == first.meta["counts"]


@pytest.mark.parametrize("name", ["study.tar", "study.tar.gz"])
def test_a_tar_series_loads_on_several_threads_as_on_disk(tmp_path, name):
    """A tar's members are read through one file object: threads reading headers at once interleaved their reads."""
    import numpy as np

    from dicomml.sample import write_sample_study

    study = write_sample_study(tmp_path / "dicom")
    with tarfile.open(tmp_path / name, "w:gz" if name.endswith("gz") else "w") as archive:
        archive.add(tmp_path / "dicom", "dicom")
    index = dicomml.index(f"tar://::{tmp_path / name}", tmp_path / "m", progress=False)
    key = index.series.query("modality == 'CT'").series_key.iloc[0]
    expected = dicomml.load_files(study.ct).array
    for _ in range(3):
        manifest = dicomml.Manifest(tmp_path / "m")  # as another process opens it: no reader of the archive yet
        assert np.array_equal(dicomml.load_series(manifest, key).array, expected)


def test_an_archive_or_protocol_that_cannot_be_opened_is_one_line(tmp_path):
    from dicomml.errors import SourceNotFoundError

    (tmp_path / "bad.zip").write_text("not a zip")
    cases = {
        f"zip://::{tmp_path / 'none.zip'}": "does not exist",
        f"zip://::{tmp_path / 'bad.zip'}": "not a readable zip archive",
        "foo://bar": "fsspec cannot open it",
    }
    for url, problem in cases.items():
        with pytest.raises(SourceNotFoundError, match=rf"^{url}: .*{problem}[^\n]*$"):
            dicomml.index(url, tmp_path / "m", progress=False)
