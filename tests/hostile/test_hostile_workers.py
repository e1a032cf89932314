"""The per-file time limit holds whatever the parser does: a worker that hangs or dies is replaced."""

from __future__ import annotations

import os
import shutil
import signal
import time
from pathlib import Path

import pytest

import dicomml
from dicomml.executor import Processes, run
from dicomml.indexer import scan

SOURCE = "dcmqi/data/segmentations/24x38x3/image"


def _work(context, items, started):
    out = []
    for i, item in enumerate(items):
        started(i)
        if item == "hang":
            signal.signal(signal.SIGALRM, signal.SIG_IGN)  # even a parser that ignores every signal but KILL
            while True:
                pass
        if item == "die":
            os.kill(os.getpid(), signal.SIGKILL)
        if item == "raise":
            raise RecursionError("deep")
        out.append((context, item))
    return out


def test_executor_replaces_hung_and_dead_workers_and_runs_the_rest():
    batches = [("a", ["x", "hang", "y"]), ("b", ["die", "z"]), ("c", ["raise"]), ("d", ["w"])]
    started = time.perf_counter()
    outcomes = list(run(_work, batches, Processes(2, timeout_s=1.0)))
    assert time.perf_counter() - started < 20
    done = sorted(r for o in outcomes if o.result for r in o.result)
    assert done == [("a", "x"), ("a", "y"), ("b", "z"), ("d", "w")]
    failed = {f.item: (f.kind, f.error_type) for o in outcomes for f in o.failures}
    assert failed == {"hang": ("timeout", "WorkerStopped"), "die": ("crashed", "WorkerDied"), "raise": ("raised", "RecursionError")}


def test_index_records_a_hanging_and_a_killed_file_and_goes_on(data_dir: Path, tmp_path: Path, monkeypatch):
    root = tmp_path / "src"
    shutil.copytree(data_dir / SOURCE, root / "series")
    (root / "traps").mkdir()
    shutil.copy(root / "series" / "IMG0001.dcm", root / "traps" / "hangs.dcm")
    shutil.copy(root / "series" / "IMG0001.dcm", root / "traps" / "kills.dcm")
    real = scan._read_entry

    def hostile(entry, options, *rest):  # stands in for a parser loop and an OOM kill
        if entry.path.endswith("hangs.dcm"):
            time.sleep(3600)
        if entry.path.endswith("kills.dcm"):
            os.kill(os.getpid(), signal.SIGKILL)
        return real(entry, options, *rest)

    monkeypatch.setattr(scan, "_read_entry", hostile)  # forked workers inherit it
    m = dicomml.index(root, tmp_path / "m", workers=2, timeout_s=1.0, progress=False)
    kinds = dict(zip(m.errors.path.map(os.path.basename), m.errors.error_type))
    assert kinds == {"hangs.dcm": "timeout", "kills.dcm": "crashed"}
    assert sorted(m.instances.path.map(os.path.basename)) == ["IMG0001.dcm", "IMG0002.dcm", "IMG0003.dcm"]
    assert m.series.usable.all() and len(m.series) == 1  # the traps' folder lost both its files


@pytest.mark.parametrize("timeout_s", [0.0])
def test_no_limit_reads_in_this_process(data_dir: Path, tmp_path: Path, timeout_s: float):
    m = dicomml.index(data_dir / SOURCE, tmp_path / "m", workers=4, timeout_s=timeout_s, progress=False)
    assert len(m.instances) == 3 and m.errors.empty
