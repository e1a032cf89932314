"""Cache faults: a full disk (a real small tmpfs) and gc racing live writers."""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import traceback
from pathlib import Path

import numpy as np
import pytest

from dicomml.cache import Cache

# Runs inside a private mount namespace (unshare): a 6 MiB tmpfs that vanishes with the process.
_FULL_DISK = r"""
import json, os, subprocess, sys
import numpy as np
from dicomml.cache import Cache
from dicomml.errors import CacheError

where = sys.argv[1]
subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", where], check=True)

def free():
    st = os.statvfs(where)
    return st.f_bavail * st.f_frsize

def used_files():
    return sorted(os.path.relpath(os.path.join(d, f), where) for d, _, fs in os.walk(where) for f in fs)

rng = np.random.default_rng(0)
cache = Cache(os.path.join(where, "c"))
empty_free, empty_files = free(), used_files()
out = {}
try:  # incompressible: 8 MiB of int16 noise cannot fit
    cache.put("big", rng.integers(-30000, 30000, size=(64, 256, 256), dtype=np.int16), np.eye(4))
    out["big"] = "published"
except CacheError as exc:
    out["big"] = [type(exc).__name__, str(exc)]
out["after_failure"] = {"free": free(), "files": used_files(), "keys": cache.keys(), "has": cache.has("big")}
out["empty"] = {"free": empty_free, "files": empty_files}
small = [rng.integers(-1000, 1000, size=(16, 64, 64), dtype=np.int16) for _ in range(3)]
with open(os.path.join(where, "filler"), "wb") as f:  # someone else fills the disk
    try:
        while True:
            f.write(b"\0" * 65536)
            f.flush()
    except OSError:
        pass
try:
    cache.put("s0", small[0], np.eye(4))
    out["while_full"] = "published"
except CacheError as exc:
    out["while_full"] = [type(exc).__name__, str(exc)]
os.remove(os.path.join(where, "filler"))  # space returns
for i, image in enumerate(small):
    cache.put(f"s{i}", image, np.eye(4))
    cache.verify(f"s{i}")
out["later"] = {"keys": cache.keys(), "equal": [bool((cache.open(f"s{i}").read() == small[i]).all()) for i in range(3)]}
out["final_gc"] = cache.gc(grace_seconds=0)
print(json.dumps(out))
"""


def _in_private_mount(tmp_path: Path) -> subprocess.CompletedProcess[str]:
    where = tmp_path / "disk"
    where.mkdir()
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.fail("util-linux `unshare` is needed to mount a private tmpfs for the ENOSPC test")
    user = [] if os.geteuid() == 0 else ["--map-root-user"]  # unprivileged: a user namespace grants the mount
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.run(
        [unshare, *user, "--mount", sys.executable, "-c", _FULL_DISK, str(where)], capture_output=True, text=True, timeout=300, env=env
    )


def test_full_disk_gives_cache_error_cleans_up_and_recovers(tmp_path: Path):
    run = _in_private_mount(tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    out = json.loads(run.stdout.strip().splitlines()[-1])
    kind, message = out["big"]
    assert kind == "CacheError" and "disk is full" in message and "\n" not in message
    after = out["after_failure"]
    assert after["keys"] == [] and not after["has"]
    # nothing half-written left behind: only the key's (complete) Zarr group document, which gc removes
    assert set(after["files"]) - set(out["empty"]["files"]) <= {"c/data/big/zarr.json"}
    assert after["free"] >= out["empty"]["free"] - 64 * 1024  # its space is back (directory blocks aside)
    assert out["while_full"][0] == "CacheError"
    assert out["later"] == {"keys": ["s0", "s1", "s2"], "equal": [True, True, True]}
    assert out["final_gc"] == []


def _writer(root: str, writer: int, barrier, report) -> None:
    try:
        cache = Cache(root)
        barrier.wait()
        done = []
        for n in range(25):
            key = f"shared-{n}" if n % 5 == 0 else f"w{writer}-{n}"  # some keys raced by all writers
            image = np.full((8, 24, 24), n, dtype=np.int16)
            cache.put(key, image, np.eye(4), chunks=(8, 8, 8))
            done.append(key)
        report.put((writer, done, None))
    except BaseException:
        report.put((writer, [], traceback.format_exc()))


def test_gc_with_grace_zero_racing_eight_writers_loses_and_tears_nothing(tmp_path: Path):
    root = str(tmp_path / "c")
    Cache(root)
    ctx = multiprocessing.get_context("fork")
    barrier, report = ctx.Barrier(9), ctx.Queue()
    writers = [ctx.Process(target=_writer, args=(root, w, barrier, report)) for w in range(8)]
    for p in writers:
        p.start()
    barrier.wait()
    cache = Cache(root)
    rounds = 0
    while any(p.is_alive() for p in writers) or rounds < 3:
        cache.gc(grace_seconds=0)
        rounds += 1
    results = [report.get(timeout=60) for _ in writers]
    for p in writers:
        p.join()
    assert [error for _, _, error in results if error] == []
    published = {key for _, keys, _ in results for key in keys}
    assert len(published) == 8 * 20 + 5
    assert sorted(cache.keys()) == sorted(published)  # 0 lost
    for key in published:  # 0 torn
        cache.verify(key)
        n = int(key.rsplit("-", 1)[1])
        assert (cache.open(key).read() == n).all()
    cache.gc(grace_seconds=0)
    for key in published:
        cache.verify(key)
    assert rounds >= 3
