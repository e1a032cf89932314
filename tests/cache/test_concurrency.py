"""Killed writers and racing writers, with real processes on a real store."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import zarr

from dicomml.cache import Cache
from dicomml.cache.key import FORMAT_VERSION
from dicomml.errors import CacheMissError

_WRITER = """
import sys, numpy as np
from dicomml.cache import Cache
image = np.random.default_rng(0).integers(-1000, 1000, size=(400, 512, 512), dtype=np.int16)
Cache(sys.argv[1]).put("big", image, np.eye(4), chunks=(32, 32, 32))
"""


def _big() -> np.ndarray:
    return np.random.default_rng(0).integers(-1000, 1000, size=(400, 512, 512), dtype=np.int16)


def test_kill_9_mid_write_leaves_no_visible_entry_and_a_rerun_completes(tmp_path):
    root = tmp_path / "c"
    Cache(root)
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(root)])
    deadline = time.monotonic() + 120
    while not any((root / "data/big").glob("*/image")) and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert any((root / "data/big").glob("*/image")), "the writer was killed after data appeared"
    cache = Cache(root)
    assert not cache.has("big") and cache.keys() == []
    try:
        cache.open("big")
        raise AssertionError("a torn entry was visible")
    except CacheMissError:
        pass
    entry = cache.put("big", _big(), np.eye(4), chunks=(32, 32, 32))  # the rerun
    cache.verify("big")
    np.testing.assert_array_equal(entry.read("image", (100, 200, 300), (8, 8, 8)), _big()[100:108, 200:208, 300:308])
    removed = cache.gc(grace_seconds=0)
    assert len(removed) == 1 and removed[0].startswith("data/big/")  # the torn copy
    cache.verify("big")


def _write_same_entries(root: str, barrier) -> None:
    cache = Cache(root)
    barrier.wait()
    for n in range(3):
        image = np.full((40, 50, 60), n, np.int16) + np.arange(60, dtype=np.int16)
        cache.put(f"key{n}", image, np.eye(4) * (n + 1), meta={"n": n}, chunks=(16, 16, 16))


def test_four_processes_writing_the_same_entries_all_verify(tmp_path):
    root = str(tmp_path / "c")
    Cache(root)
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(4)
    procs = [ctx.Process(target=_write_same_entries, args=(root, barrier)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    cache = Cache(root)
    assert cache.keys() == ["key0", "key1", "key2"]
    for n in range(3):
        cache.verify(f"key{n}")
        entry = cache.open(f"key{n}")
        np.testing.assert_array_equal(entry.read(), np.full((40, 50, 60), n, np.int16) + np.arange(60, dtype=np.int16))
        assert entry.meta == {"n": n}
    cache.gc(grace_seconds=0)
    assert cache.info()["unreferenced_bytes"] == 0
    assert sorted(p.name for p in Path(root, "data").iterdir() if p.is_dir()) == ["key0", "key1", "key2"]
    for n in range(3):
        cache.verify(f"key{n}")


def _open_new_caches(base: str, rounds: int, barrier) -> None:
    barrier.wait()
    for n in range(rounds):  # every process opens the same brand-new folders at once
        cache = Cache(f"{base}/c{n}")
        cache.put("k", np.full((4, 5, 6), n, np.int16), np.eye(4))


def test_eight_processes_creating_a_new_cache_at_once_all_succeed(tmp_path):
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(8)
    rounds = 10
    procs = [ctx.Process(target=_open_new_caches, args=(str(tmp_path), rounds, barrier)) for _ in range(8)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0] * 8
    for n in range(rounds):
        cache = Cache(tmp_path / f"c{n}")
        np.testing.assert_array_equal(cache.open("k").read(), np.full((4, 5, 6), n, np.int16))
        group = zarr.open_group(str(tmp_path / f"c{n}"), mode="r")  # zarr-python reads the root we wrote
        assert group.attrs["dicomml_cache_format"] == FORMAT_VERSION
