"""series_sources(cache=...): the series list kept in the cache answers only for the unchanged manifest and the same arguments."""

from __future__ import annotations

import json
import os
import shutil

import pytest

import dicomml
from dicomml.cache import Cache
from dicomml.data import SeriesDataset
from dicomml.indexer.folder import manifest_state
from dicomml.pipeline import series_sources
from dicomml.sample import write_sample_study

CT = "modality = 'CT'"


@pytest.fixture
def indexed(tmp_path):
    """The sample study indexed into a manifest of this test's own (the test changes both)."""
    study = write_sample_study(tmp_path / "dicom")
    return study, dicomml.index(str(tmp_path / "dicom"), str(tmp_path / "manifest"), workers=1, progress=False)


def _lists(cache: Cache) -> list[str]:
    return sorted(path.rsplit("/", 1)[-1] for path in cache.fs.ls(f"{cache.root}/lists", detail=False))


@pytest.mark.parametrize("where_kept", ["folder", "fsspec"])
def test_a_kept_list_gives_what_the_manifest_gives(study, make_config, tmp_path, where_kept):
    _, manifest = study
    cache = Cache(tmp_path / "cache" if where_kept == "folder" else f"memory://kept-lists/{tmp_path.name}")
    for config, where in ((make_config("ct_1mm"), CT), (make_config("ct_1mm"), None), (make_config("ct_seg"), None)):
        expected = series_sources(manifest, config, where=where)
        assert expected
        assert series_sources(manifest, config, where=where, cache=cache) == expected  # resolved, then kept
        assert series_sources(manifest.path, config, where=where, cache=cache) == expected  # read back, by path too
    assert len(_lists(cache)) == 3  # one per config and predicate


def test_other_arguments_never_read_another_calls_list(study, make_config, tmp_path):
    _, manifest = study
    cache, config = Cache(tmp_path / "cache"), make_config("ct_1mm")
    every = series_sources(manifest, config, cache=cache)
    assert len(every) > 1
    first = [every[0].series_key]
    assert [s.series_key for s in series_sources(manifest, config, series_keys=first, cache=cache)] == first
    assert [s.series_key for s in series_sources(manifest, config, series_keys=first[::-1] + [every[1].series_key], cache=cache)] == [
        every[0].series_key,
        every[1].series_key,
    ]
    assert series_sources(manifest, config, cache=cache) == every
    other = make_config("ct_1mm", deterministic={"spacing": [2.0, 2.0, 2.0]})
    assert {s.key for s in series_sources(manifest, other, cache=cache)}.isdisjoint(s.key for s in every)


def test_a_reindexed_manifest_is_resolved_again(indexed, make_config, tmp_path):
    study, manifest = indexed
    cache, config = Cache(tmp_path / "cache"), make_config("ct_1mm")
    before = series_sources(manifest.path, config, where=CT, cache=cache)
    state = manifest_state(manifest.path)
    # a CT file rewritten with new content: same UIDs, another size and mtime, so another cache key
    first = study.ct[0]
    first.write_bytes(first.read_bytes() + b"\0\0")
    os.utime(first, ns=(os.stat(first).st_atime_ns, os.stat(first).st_mtime_ns + 10**9))
    dicomml.index(str(study.root), str(manifest.path), workers=1, progress=False)
    assert manifest_state(manifest.path) != state
    after = series_sources(manifest.path, config, where=CT, cache=cache)
    assert [s.series_key for s in after] == [s.series_key for s in before]
    assert [s.key for s in after] != [s.key for s in before]
    assert after == series_sources(manifest.path, config, where=CT)  # what the manifest says now
    # a series removed from the sources: gone from the next list
    shutil.rmtree(study.root / "MR")
    dicomml.index(str(study.root), str(manifest.path), workers=1, progress=False)
    assert series_sources(manifest.path, config, cache=cache) == series_sources(manifest.path, config) == after


def test_an_unreadable_list_is_resolved_again_and_rewritten(study, make_config, tmp_path):
    _, manifest = study
    cache, config = Cache(tmp_path / "cache"), make_config("ct_1mm")
    expected = series_sources(manifest, config, cache=cache)
    (name,) = _lists(cache)
    path = tmp_path / "cache" / "lists" / name
    kept = cache.read_list(name.removesuffix(".json"))
    for damaged in ('{"manifest": [', json.dumps({**kept, "items": [["only a key"]]})):  # a torn write; a list of another shape
        path.write_text(damaged)
        assert series_sources(manifest, config, cache=cache) == expected
        assert cache.read_list(name.removesuffix(".json")) == kept  # rewritten


def test_a_choose_predicate_keeps_no_list(study, make_config, tmp_path):
    _, manifest = study
    cache = Cache(tmp_path / "cache")
    config = make_config("ct_seg", deterministic={"annotations": {"choose": lambda annotation: True}})
    assert series_sources(manifest, config, cache=cache) == series_sources(manifest, config)
    assert not (tmp_path / "cache" / "lists").exists()


def test_a_dataset_keeps_its_list_and_opens_the_manifest_on_a_miss(study, make_config, tmp_path):
    _, manifest = study
    config = make_config("ct_1mm")
    filled = SeriesDataset(manifest.path, config, tmp_path / "cache", where=CT)
    assert filled[0]["image"].numel()
    again = SeriesDataset(manifest.path, config, tmp_path / "cache", where=CT, cache_only=True)
    assert again.sources == filled.sources and "manifest" not in vars(again)  # the kept list answered
    assert again.manifest.path == manifest.path  # opened when asked for
