"""Readers during an index run: no series is loaded from a manifest whose run has not finished (it has dropped the
changed files' rows before reading them again), and a read that a run overlaps says so instead of returning a mix."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest

import dicomml
from dicomml.dicom.synthetic import write_series, write_slice
from dicomml.errors import ManifestError
from dicomml.indexer.crawl import crawl, open_sources
from dicomml.indexer.privacy import resolve_salt, salt_id
from dicomml.indexer.store import ManifestStore

INCOMPLETE = re.escape("the manifest is incomplete (a `dicomml index` run into it is under way")
CHANGED = re.escape("the manifest changed while it was read (a `dicomml index` run updated it); read it again")


def _series(tmp_path: Path, salt: str) -> tuple[Path, Path, list[Path]]:
    volume = np.arange(8 * 16 * 16, dtype=np.int16).reshape(8, 16, 16)
    files = write_series(tmp_path / "src", volume, series_uid="1.2.826.0.1.3680043.8.498.1")
    dicomml.index(tmp_path / "src", tmp_path / "m", salt=salt, progress=False)
    return tmp_path / "src", tmp_path / "m", files


def test_series_are_not_loaded_while_an_index_run_has_dropped_changed_rows(tmp_path, salt):
    src, out, files = _series(tmp_path, salt)
    manifest = dicomml.Manifest(out)
    key = manifest.usable_series_keys()[0]
    write_slice(files[7], np.full((16, 16), 7, np.int16), position=(0, 0, 14.0), series_uid="1.2.826.0.1.3680043.8.498.1", instance=8)
    # the first steps of a rerun, as dicomml.index takes them: the changed file's row is dropped, not yet read again
    with ManifestStore.open(out, include_phi=False, salt_id=salt_id(resolve_salt(salt))) as store:
        store.plan(store.write_listing(crawl(open_sources([str(src)]))))
        assert len(manifest.instances) == 7  # inspecting it still works: its rows as they are

        with pytest.raises(ManifestError, match=INCOMPLETE):  # else 7 of 8 slices, silently: the last one is dropped
            dicomml.load_series(manifest, key)
        with pytest.raises(ManifestError, match=INCOMPLETE):
            dicomml.SeriesDataset(out, "ct_1mm", cache=tmp_path / "cache")
    dicomml.index(src, out, salt=salt, progress=False)  # the run finishes
    assert dicomml.load_series(manifest, key).array.shape == (8, 16, 16)


def test_a_read_that_an_index_run_overlaps_is_refused(tmp_path, salt):
    _, out, _ = _series(tmp_path, salt)
    manifest = dicomml.Manifest(out)
    with ManifestStore.open(out, include_phi=False, salt_id=salt_id(resolve_salt(salt))) as store:
        with pytest.raises(ManifestError, match=CHANGED):
            with manifest.snapshot():
                rows = manifest.table("instances")
                store.changing()  # a run starts changing the tables after the read began
        assert rows.num_rows == 8
        with pytest.raises(ManifestError, match=CHANGED):  # an error of a read the change broke is the change's
            with manifest.snapshot():
                store.changing()
                for part in manifest.files("instances"):
                    os.remove(part)
                manifest.instance_fingerprints(["x"])  # reads no file: its parts are gone
