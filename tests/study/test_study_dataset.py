"""StudyDataset and study entries in the cache: channels per role, patches across channels, preprocess runs."""

from __future__ import annotations

import numpy as np
import pytest

import dicomml
from dicomml.cache import Cache
from dicomml.errors import CacheMissError, ConfigError
from dicomml.study import compute_study, study_sources

A, B = "1.2.826.0.1.3680043.8.498.1", "1.2.826.0.1.3680043.8.498.2"


@pytest.fixture()
def empty_policy(roles_config):
    return roles_config(missing="empty", deterministic={"dtype": "float32", "chunks": [4, 4, 4]})


def test_study_dataset_returns_roles_as_channels_from_one_cache_entry(cohort, empty_policy, tmp_path):
    dataset = dicomml.StudyDataset(cohort, empty_policy, tmp_path / "c")
    assert len(dataset) == 2 and list(dataset.match.skipped["study_instance_uid"]) == ["1.2.826.0.1.3680043.8.498.3"]
    first = [dataset[i] for i in range(2)]
    warm = dicomml.StudyDataset(cohort, empty_policy, tmp_path / "c", cache_only=True)
    for sample, again, uid in zip(first, (warm[0], warm[1]), (A, B)):
        assert sample["meta"]["study_uid"] == uid and sample["meta"]["roles"] == ["t1", "t2", "flair"]
        assert sample["meta"]["axes"] == ["role"] and sample["image"].shape[0] == 3
        assert torch_equal(sample["image"], again["image"])
    assert first[1]["meta"]["role_present"] == {"t1": True, "t2": True, "flair": False}
    # the entry equals the study computed without the cache
    source = {s.study_uid: s for s in study_sources(cohort, empty_policy)}[A]
    np.testing.assert_array_equal(first[0]["image"].numpy(), compute_study(cohort, source, empty_policy).image)
    entry = Cache(tmp_path / "c").open(source.key)
    assert entry.layouts["image"].chunks == (1, 4, 4, 4) and entry.meta["roles"]["t2"]["series_key"]


def torch_equal(a, b) -> bool:
    return bool((a == b).all())


def test_patches_span_every_channel_and_read_only_touched_chunks(cohort, empty_policy, tmp_path):
    whole = dicomml.StudyDataset(cohort, empty_policy, tmp_path / "c")[0]["image"].numpy()
    patches = dicomml.PatchDataset(cohort, empty_policy, tmp_path / "c", patch_size=(4, 4, 4), samples_per_volume=3, cache_only=True)
    assert len(patches) == 6
    for i in range(3):
        patch = patches[i]
        start = patch["meta"]["patch_start"]
        box = (slice(None),) + tuple(slice(s, s + 4) for s in start)
        assert patch["image"].shape == (3, 4, 4, 4)
        np.testing.assert_array_equal(patch["image"].numpy(), whole[box])


def test_preprocess_runs_one_task_per_study_and_is_resumable(cohort, empty_policy, tmp_path):
    first = dicomml.preprocess(cohort, empty_policy, tmp_path / "c", workers=0, progress=False)
    assert sorted(first.table["series_key"]) == [A, B] and first.counts == {"done": 2, "skipped": 0, "failed": 0}
    again = dicomml.preprocess(cohort, empty_policy, tmp_path / "c", workers=0, progress=False)
    assert again.counts == {"done": 0, "skipped": 2, "failed": 0}
    shards = [dicomml.preprocess(cohort, empty_policy, tmp_path / "s", shard=(i, 2), progress=False) for i in range(2)]
    assert sorted(k for r in shards for k in r.table["series_key"]) == [A, B]
    assert set(Cache(tmp_path / "s").keys()) == set(Cache(tmp_path / "c").keys())


def test_preprocess_on_a_dask_cluster_writes_the_same_entries(cohort, empty_policy, tmp_path):
    report = dicomml.preprocess(cohort, empty_policy, tmp_path / "dask", workers=2, progress=False)
    dicomml.preprocess(cohort, empty_policy, tmp_path / "here", workers=0, progress=False)
    assert report.counts["done"] == 2
    here, dask = Cache(tmp_path / "here"), Cache(tmp_path / "dask")
    assert here.keys() == dask.keys()
    for key in here.keys():
        assert here.open(key).checksums == dask.open(key).checksums
        dask.verify(key)


def test_cache_only_miss_and_misuse_are_typed_errors(cohort, empty_policy, roles_config, tmp_path):
    with pytest.raises(CacheMissError, match="no entry for study"):
        dicomml.StudyDataset(cohort, empty_policy, tmp_path / "c", cache_only=True)[0]
    with pytest.raises(ConfigError, match="drop where= and series_keys="):
        dicomml.SeriesDataset(cohort, empty_policy, tmp_path / "c", where="modality = 'MR'")
    # the key follows the roles: another rule for t2 is another entry
    other = roles_config(missing="empty", deterministic={"dtype": "float32", "chunks": [4, 4, 4]}, role_t2={"prefer": "oldest"})
    keys = {s.study_uid: s.key for s in study_sources(cohort, empty_policy)}
    assert {s.study_uid: s.key for s in study_sources(cohort, other)}[A] != keys[A]


def test_a_study_dataset_reads_its_kept_list_in_a_fresh_interpreter_without_pandas(cohort, tmp_path):
    import json
    import subprocess
    import sys

    config = {  # the cohort's roles (conftest), as a mapping both interpreters read
        "name": "brain",
        "roles": {"t1": {"where": "series_description = 't1'"}, "t2": {"where": "series_description LIKE 't2%'"}},
        "reference": "t1",
        "deterministic": {"dtype": "float32", "chunks": [4, 4, 4]},
    }
    filled = dicomml.StudyDataset(cohort, config, tmp_path / "c")
    assert [filled[i]["meta"]["study_uid"] for i in range(len(filled))] == [A, B]
    warm = dicomml.StudyDataset(cohort.path, config, tmp_path / "c", cache_only=True)
    assert warm.sources == filled.sources == study_sources(cohort, warm.config)  # read back; what the manifest says
    assert "match" not in vars(warm) and list(warm.match.skipped["study_instance_uid"]) == ["1.2.826.0.1.3680043.8.498.3"]
    code = (
        "import json, sys\nfrom dicomml.data import StudyDataset\n"
        "ds = StudyDataset(sys.argv[1], json.loads(sys.argv[2]), sys.argv[3], cache_only=True)\n"
        "assert [ds[i]['meta']['study_uid'] for i in range(len(ds))] == json.loads(sys.argv[4])\n"
        "print(sorted(m for m in ('pandas', 'pyarrow', 'duckdb', 'pydicom') if m in sys.modules))"
    )
    args = [str(cohort.path), json.dumps(config), str(tmp_path / "c"), json.dumps([A, B])]
    assert subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, check=True).stdout.strip() == "[]"
