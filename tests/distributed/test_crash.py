"""SIGKILL of `dicomml preprocess`, once with its Dask cluster and twenty times at random moments.

Afterwards `dicomml cache verify` trusts no torn entry, and a rerun finishes
without recomputing anything that was complete (its report says ``skipped``
and the entries' publish markers keep their modification times).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

import dicomml
from dicomml.cache import Cache
from dicomml.cli.main import main
from dicomml.config import PipelineConfig

_CLI = [sys.executable, "-c", "from dicomml.cli.main import main; main()"]

#: Imports dicomml once, then forks one `dicomml preprocess` (the CLI's main) per line of
#: JSON argv on stdin and prints its pid, so that twenty runs do not pay twenty interpreter starts.
_ZYGOTE = r"""
import json, os, signal, sys
import dicomml.cli.main, dicomml.cli.preprocess, dicomml.distributed.run, dicomml.pipeline, dicomml.assemble, dicomml.seg
signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps the children
for line in sys.stdin:
    pid = os.fork()
    if pid == 0:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 1)
        os.dup2(null, 2)
        try:
            dicomml.cli.main.main(json.loads(line))
        finally:
            os._exit(0)
    print(pid, flush=True)
"""


def _markers(cache_dir: Path) -> dict[str, int]:
    """Published keys and the modification time (ns) of their publish markers."""
    return {p.stem: p.stat().st_mtime_ns for p in (cache_dir / "entries").glob("*.json")}


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:  # gone, also between two looks at it
        return False


def _wait_gone(pids: list[int], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive = [p for p in pids if _alive(p)]
        if not alive:
            return
        time.sleep(0.02)
    raise AssertionError(f"processes {alive} outlived SIGKILL")


def _verify_cli(cache_dir: Path) -> None:
    """`dicomml cache verify CACHE`: exits 1 (SystemExit) if any published entry is torn."""
    main(["cache", "verify", str(cache_dir)])


def _rerun_recomputes_nothing_complete(cohort, config, cache_dir: Path, four_d_key: str) -> None:
    before = _markers(cache_dir)
    report = dicomml.preprocess(cohort, config, cache_dir, workers=0, progress=False).table.set_index("cache_key")
    assert set(report.index[report["status"] == "skipped"]) == set(before)
    assert report.set_index("series_key").loc[four_d_key, "status"] == "failed"
    assert (report.drop(index=list(before))["status"] != "skipped").all()
    assert report["status"].isin(["done", "skipped"]).sum() == len(report) - 1  # the run finished
    after = _markers(cache_dir)
    assert {k: after[k] for k in before} == before  # complete entries were not rewritten
    cache = Cache(cache_dir)
    assert sorted(after) == cache.keys() and len(after) == len(report) - 1
    _verify_cli(cache_dir)


def test_sigkill_of_the_whole_run_then_a_rerun_recomputes_nothing_complete(cohort, fails_4d, four_d_key, tmp_path):
    cache_dir = tmp_path / "c"
    config_path = tmp_path / "ct_1mm_b1000.yaml"
    config_path.write_text(json.dumps(fails_4d.to_dict()))  # YAML is a superset of JSON; the 4D MR fails under it
    proc = subprocess.Popen(
        [*_CLI, "preprocess", str(cohort.path), "--config", str(config_path), "--cache", str(cache_dir), "--workers", "2", "--quiet"],
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 240
    group: list[int] = []
    while not (cache_dir / "entries").is_dir() or not any((cache_dir / "entries").iterdir()):
        assert proc.poll() is None and time.monotonic() < deadline, "the run ended before publishing anything"
        # the session's processes, looked up while waiting: looked up after the first entry, on a loaded machine
        # the lookup let the run publish everything before the kill
        group = [p.pid for p in psutil.process_iter() if _sid(p.pid) == proc.pid]
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)  # the run, its scheduler and its Dask workers, as a job scheduler does
    proc.wait()
    _wait_gone(group)
    assert len(group) >= 3  # the CLI process and two Dask workers (at least) were killed
    assert 0 < len(_markers(cache_dir)) < 5, "the kill came mid-run"
    _verify_cli(cache_dir)
    _rerun_recomputes_nothing_complete(cohort, fails_4d, cache_dir, four_d_key)


def test_twenty_random_sigkills_leave_no_torn_entry_and_a_rerun_completes(cohort, four_d_key, with_b1000, tmp_path):
    # 0.4 mm makes the sample CT 640 x 640 x 500 voxels: seconds of resampling and a long write
    # (2.5 s here, at least 2.5x the latest kill), so no run gets past it within its kill, and the
    # kills land at every stage before and in it
    config = with_b1000(PipelineConfig.from_dict({"name": "ct_04mm", "deterministic": {"spacing": [0.4, 0.4, 0.4]}}))
    config_path = tmp_path / "ct_04mm.yaml"
    config_path.write_text(json.dumps(config.to_dict()))  # YAML is a superset of JSON
    cache_dir = tmp_path / "c"
    argv = ["preprocess", str(cohort.path), "--config", str(config_path), "--cache", str(cache_dir), "--workers", "0", "--quiet"]
    rng = random.Random(20)
    zygote = subprocess.Popen([sys.executable, "-c", _ZYGOTE], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert zygote.stdin is not None and zygote.stdout is not None
    published = []
    try:
        for i in range(20):
            tokens = _data_tokens(cache_dir)
            zygote.stdin.write(json.dumps(argv) + "\n")
            zygote.stdin.flush()
            pid = int(zygote.stdout.readline())
            if i % 5 == 4:  # mid-write: a random instant after this run starts writing an entry
                while _data_tokens(cache_dir) <= tokens:
                    assert psutil.pid_exists(pid), f"run {i} ended without writing"
                    time.sleep(0.002)
                time.sleep(rng.uniform(0.0, 0.05))
            else:  # a random instant of the run: the manifest, reading, resampling, small writes
                time.sleep(rng.uniform(0.1, 1.0))
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                raise AssertionError(f"run {i} ended before its kill; the cohort is too light for this machine") from None
            _wait_gone([pid])
            published.append(len(_markers(cache_dir)))
            _verify_cli(cache_dir)  # after every kill, no published entry is torn
    finally:
        zygote.stdin.close()
        zygote.wait(timeout=60)
    assert Cache(cache_dir).info()["unreferenced_bytes"] > 0  # the torn copies are there, and not trusted
    assert published == sorted(published)  # no kill unpublished anything
    _rerun_recomputes_nothing_complete(cohort, config, cache_dir, four_d_key)


def _data_tokens(cache_dir: Path) -> set[Path]:
    """Data folders of written (or half-written) entry copies."""
    return {p for p in (cache_dir / "data").glob("*/*") if p.is_dir()}


def _sid(pid: int) -> int:
    try:
        return os.getsid(pid)
    except OSError:
        return -1
