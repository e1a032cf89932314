"""A Dataset made before its series' files were rewritten and indexed again never caches their new content under the old key."""

from __future__ import annotations

import os

import numpy as np
import pytest

import dicomml
from dicomml.cache import Cache
from dicomml.config import PipelineConfig
from dicomml.data import SeriesDataset
from dicomml.dicom.synthetic import write_series, write_slice
from dicomml.errors import ManifestError
from dicomml.pipeline import series_sources

_CONFIG = {
    "name": "stale",
    "deterministic": {"orientation": "RAS", "spacing": None, "dtype": "int16", "masks": [], "chunks": [16, 16, 8]},
    "at_load": {"windows": [], "normalize": "none"},
}


def test_a_dataset_refuses_to_cache_rewritten_files_under_the_key_it_resolved_before(tmp_path):
    config = PipelineConfig.from_dict(_CONFIG)
    old = np.random.default_rng(1).integers(0, 2000, size=(4, 16, 16)).astype(np.int16)
    files = write_series(tmp_path / "dicom", old, series_uid="1.2.3.9")
    manifest = tmp_path / "manifest"
    dicomml.index(str(tmp_path / "dicom"), str(manifest), workers=1, progress=False)
    cache = Cache(tmp_path / "cache")
    training = SeriesDataset(manifest, config, cache)  # keys resolved now, read later
    stale = training.sources[0].key
    for k, path in enumerate(files):
        write_slice(path, old[k] + 700, position=(0, 0, 2.0 * k), series_uid="1.2.3.9", instance=k + 1)
        os.utime(path, ns=(os.stat(path).st_atime_ns, os.stat(path).st_mtime_ns + 10**10))  # surely another mtime
    dicomml.index(str(tmp_path / "dicom"), str(manifest), workers=1, progress=False)
    assert series_sources(manifest, config)[0].key != stale
    with pytest.raises(ManifestError, match=r"changed since its cache key .* was resolved .*make a new Dataset"):
        training[0]
    assert not cache.has(stale)
    fresh = SeriesDataset(manifest, config, cache)[0]["image"].numpy()
    np.testing.assert_array_equal(np.sort(fresh.ravel()), np.sort((old + 700 - 1024).ravel()))  # the new files, reoriented
