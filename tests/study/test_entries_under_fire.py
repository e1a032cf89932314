"""Killed and racing writers of 4D and study entries, with real processes on a real store (as for 3D ones)."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import subprocess
import sys
import time

import numpy as np
import yaml

import dicomml
from dicomml.cache import Cache
from dicomml.errors import CacheMissError
from dicomml.testing.studies import SeriesGrid, write_study

_WRITER = """
import sys, numpy as np
from dicomml.cache import Cache
image = np.random.default_rng(0).integers(-1000, 1000, size=(6, 160, 384, 384), dtype=np.int16)
Cache(sys.argv[1]).put("four_d", image, np.eye(4), chunks=(32, 32, 32))
"""


def _four_d() -> np.ndarray:
    return np.random.default_rng(0).integers(-1000, 1000, size=(6, 160, 384, 384), dtype=np.int16)


def test_kill_9_mid_write_of_a_4d_entry_leaves_nothing_visible_and_a_rerun_completes(tmp_path):
    root = tmp_path / "c"
    Cache(root)
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(root)])
    deadline = time.monotonic() + 120
    while not any((root / "data/four_d").glob("*/image")) and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL and any((root / "data/four_d").glob("*/image"))
    cache = Cache(root)
    assert cache.keys() == []
    try:
        cache.open("four_d")
        raise AssertionError("a torn entry was visible")
    except CacheMissError:
        pass
    entry = cache.put("four_d", _four_d(), np.eye(4), chunks=(32, 32, 32))
    cache.verify("four_d")
    np.testing.assert_array_equal(
        entry.read(volumes=slice(4, 5), start=(100, 200, 300), size=(8, 8, 8))[0], _four_d()[4, 100:108, 200:208, 300:308]
    )
    assert [p.split("/")[0] for p in cache.gc(grace_seconds=0)] == ["data"]  # the torn copy, and only it


def _write_same_4d_entries(root: str, barrier) -> None:
    cache = Cache(root)
    barrier.wait()
    for n in range(3):
        cache.put(f"key{n}", np.full((3, 20, 30, 40), n, np.int16) + np.arange(40, dtype=np.int16), np.eye(4), chunks=(8, 8, 8))


def test_four_processes_writing_the_same_4d_entries_all_verify(tmp_path):
    root = str(tmp_path / "c")
    Cache(root)
    _race(_write_same_4d_entries, (root,))
    cache = Cache(root)
    assert cache.keys() == ["key0", "key1", "key2"]
    for n in range(3):
        cache.verify(f"key{n}")
        np.testing.assert_array_equal(cache.open(f"key{n}").read(), np.full((3, 20, 30, 40), n, np.int16) + np.arange(40, dtype=np.int16))
    cache.gc(grace_seconds=0)
    assert cache.info()["unreferenced_bytes"] == 0


def _race(target, args) -> None:
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(4)
    procs = [ctx.Process(target=target, args=(*args, barrier)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(300)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]


def _study_config(path) -> dict:
    data = {
        "name": "fire",
        "roles": {
            "t1": {"where": "series_description = 't1'"},
            "t2": {"where": "series_description = 't2'"},
            "flair": {"where": "series_description = 'flair'"},
        },
        "reference": "t1",
        "deterministic": {"spacing": [1.0, 1.0, 1.0], "dtype": "float32", "chunks": [32, 32, 32]},
    }
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return data


def _cohort(tmp_path, studies: int):
    sagittal = (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)
    for s in range(studies):
        write_study(
            tmp_path / f"dicom/{s}",
            [
                SeriesGrid("t1", shape=(40, 64, 64), spacing=(2.0, 2.0, 2.0)),
                SeriesGrid("t2", shape=(30, 80, 80), spacing=(2.5, 1.6, 1.6), number=2),
                SeriesGrid("flair", shape=(40, 64, 64), spacing=(2.0, 2.0, 2.0), orientation=sagittal, number=3),
            ],
        )
    return dicomml.index(str(tmp_path / "dicom"), str(tmp_path / "manifest"), workers=1, progress=False)


def _run_study(manifest: str, config: str, cache: str, barrier) -> None:
    from dicomml.pipeline import preprocess_one
    from dicomml.study import load_study_config, study_sources

    study = load_study_config(config)
    source = study_sources(dicomml.Manifest(manifest), study)[0]
    barrier.wait()
    preprocess_one(source, manifest, study, cache)


def test_study_entries_under_kill_9_and_racing_writers(tmp_path):
    manifest = _cohort(tmp_path, 3)
    config = tmp_path / "roles.yaml"
    _study_config(config)
    cache_dir = tmp_path / "c"
    argv = [
        sys.executable,
        "-c",
        "from dicomml.cli.main import main; main()",
        "preprocess",
        str(manifest.path),
        "--config",
        str(config),
        "--cache",
        str(cache_dir),
        "--workers",
        "0",
        "--quiet",
    ]
    # kill the run once a study's data is being written: nothing torn is published
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while not any((cache_dir / "data").glob("*/*/image")) and time.monotonic() < deadline:
        assert proc.poll() is None, "the run ended before writing"
        time.sleep(0.002)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    cache = Cache(cache_dir)
    published = cache.keys()
    assert len(published) < 3, "the kill came mid-run"
    for key in published:
        cache.verify(key)
    rerun = dicomml.preprocess(manifest, config, cache_dir, workers=0, progress=False)
    assert rerun.counts == {"done": 3 - len(published), "skipped": len(published), "failed": 0}
    # four processes racing on the same study into a fresh cache: one complete entry, the same bytes
    raced = tmp_path / "raced"
    Cache(raced)
    _race(_run_study, (str(manifest.path), str(config), str(raced)))
    fresh = Cache(raced)
    assert len(fresh.keys()) == 1 and set(fresh.keys()) <= set(Cache(cache_dir).keys())
    for key in fresh.keys():
        fresh.verify(key)
        assert fresh.open(key).checksums == Cache(cache_dir).open(key).checksums
    fresh.gc(grace_seconds=0)
    assert fresh.info()["unreferenced_bytes"] == 0
