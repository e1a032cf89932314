"""A StudyDataset made before a member series' files were rewritten and indexed again never caches their new content under the old key."""

from __future__ import annotations

import os

import numpy as np
import pydicom
import pytest

import dicomml
from dicomml.cache import Cache
from dicomml.data import StudyDataset
from dicomml.errors import ManifestError
from dicomml.study import study_sources
from dicomml.testing.studies import SeriesGrid, write_study

_CONFIG = {
    "name": "stale_study",
    "roles": {"t1": {"where": "series_description = 't1'"}, "t2": {"where": "series_description = 't2'"}},
    "reference": "t1",
    "deterministic": {"orientation": "RAS", "spacing": None, "dtype": "float32", "masks": [], "chunks": [16, 16, 8]},
    "at_load": {"windows": [], "normalize": "none"},
}


def test_a_study_dataset_refuses_to_cache_rewritten_files_under_the_key_it_resolved_before(tmp_path):
    grid = {"shape": (4, 16, 16), "spacing": (4.0, 4.0, 4.0)}
    files = write_study(tmp_path / "dicom", [SeriesGrid("t1", number=1, **grid), SeriesGrid("t2", number=2, **grid)])
    manifest = tmp_path / "manifest"
    dicomml.index(str(tmp_path / "dicom"), str(manifest), workers=1, progress=False)
    training = StudyDataset(manifest, _CONFIG, Cache(tmp_path / "cache"))  # keys resolved now, read later
    stale = training.sources[0].key
    before = StudyDataset(manifest, _CONFIG, Cache(tmp_path / "elsewhere"))[0]["image"]  # (t1, t2) as first written
    for path in files["t2"]:  # the t2 series rewritten in place, brighter
        ds = pydicom.dcmread(path)
        ds.PixelData = (ds.pixel_array + 100).astype(ds.pixel_array.dtype).tobytes()
        ds.save_as(path)
        os.utime(path, ns=(os.stat(path).st_atime_ns, os.stat(path).st_mtime_ns + 10**10))  # surely another mtime
    dicomml.index(str(tmp_path / "dicom"), str(manifest), workers=1, progress=False)
    assert study_sources(dicomml.Manifest.open(manifest), training.config)[0].key != stale
    with pytest.raises(ManifestError, match=r"study .* changed since its cache key .* was resolved .*make a new Dataset"):
        training[0]
    assert not training.cache.has(stale)
    fresh = StudyDataset(manifest, _CONFIG, Cache(tmp_path / "cache"))[0]["image"]
    np.testing.assert_array_equal(fresh[0], before[0])
    np.testing.assert_array_equal(fresh[1], before[1] + 100)  # the new files
