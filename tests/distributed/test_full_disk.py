"""A full disk: the run stops before its first task with one line (an empty probe file still fits on a full disk),
and a write that fills it is recorded at once, not retried."""

from __future__ import annotations

import errno
import os
import subprocess
from pathlib import Path

import pytest

import dicomml
from dicomml.cache import Cache
from dicomml.config import PipelineConfig
from dicomml.errors import CacheError
from dicomml.sources._remote import is_transient


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 1 MiB tmpfs (as root; skipped where mounting is not allowed)."""
    folder = tmp_path / "small"
    folder.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(folder)], capture_output=True).returncode:
        pytest.skip("cannot mount a small tmpfs here")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def _fill(folder: Path) -> None:
    with open(folder / "filler", "wb") as f, pytest.raises(OSError) as caught:
        while True:
            f.write(bytes(65536))
            f.flush()
    assert caught.value.errno == errno.ENOSPC


def test_a_full_disk_stops_the_run_before_any_series(study, small_disk, tmp_path):
    _, manifest = study
    Cache(small_disk / "c")  # made while there was room
    _fill(small_disk)
    config = PipelineConfig.from_dict({"name": "coarse", "deterministic": {"spacing": [8, 8, 8]}})
    with pytest.raises(CacheError, match=r"the cache cannot be written \(No space left on device\)"):
        dicomml.preprocess(manifest, config, small_disk / "c", workers=0, progress=False, report=tmp_path / "r.parquet")
    assert not (tmp_path / "r.parquet").exists()


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT, errno.EROFS])
def test_a_full_or_read_only_disk_is_no_hiccup_to_retry(code):
    assert not is_transient(OSError(code, os.strerror(code)))
    assert is_transient(OSError(errno.ECONNRESET, os.strerror(errno.ECONNRESET)))
