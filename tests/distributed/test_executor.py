"""One executor, three backends: the same batches give the same results and failures in this process,
in killable worker processes and on a real Dask LocalCluster; retries and progress are the executor's."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from dicomml.executor import Dask, InProcess, Processes, Progress, run


def _work(context, items, started):
    """Items: ``ok``, ``raise``, ``flaky:PATH`` (raises until PATH exists, then creates it: one failure), ``die``."""
    out = []
    for i, item in enumerate(items):
        started(i)
        if item == "raise":
            raise ValueError(f"{item} is bad")
        if item.startswith("flaky:"):
            marker = Path(item.split(":", 1)[1])
            if not marker.exists():
                marker.touch()
                raise OSError("read timed out")
        if item == "die":
            os.kill(os.getpid(), signal.SIGKILL)
        out.append(f"{context}/{item}")
    return out


@pytest.fixture(scope="module")
def client():
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster, Client(cluster) as client:
        yield client


@pytest.fixture(params=["in_process", "processes", "dask"])
def backend_of(request, client):
    def make(retries: int):
        return {
            "in_process": InProcess(retries=retries),
            "processes": Processes(2, timeout_s=60, retries=retries),
            "dask": Dask(client, retries=retries),
        }[request.param]

    make.name = request.param
    return make


def test_every_backend_gives_the_same_results_and_failures(backend_of, tmp_path):
    batches = [("a", ["x", "raise", "y"]), ("b", ["z"]), ("c", [f"flaky:{tmp_path / 'once'}"])]
    with Progress(5, unit="item", desc="test", enabled=False) as bar:
        outcomes = list(run(_work, batches, backend_of(0), progress=bar))
        assert (bar.done, bar.failed) == (5, 4 if backend_of.name == "dask" else 2)
    done = sorted(r for o in outcomes for r in o.result or [])
    failed = {f.item: (f.kind, f.error_type) for o in outcomes for f in o.failures}
    if backend_of.name == "dask":  # a task is a batch: where it raised is not known, so every item of it fails
        assert done == ["b/z"]
        assert failed == {"x": ("raised", "ValueError"), "raise": ("raised", "ValueError"), "y": ("raised", "ValueError")} | {
            f"flaky:{tmp_path / 'once'}": ("raised", "OSError")
        }
    else:  # the item it was on fails, the rest of the batch runs again
        assert done == ["a/x", "a/y", "b/z"]
        assert failed == {"raise": ("raised", "ValueError"), f"flaky:{tmp_path / 'once'}": ("raised", "OSError")}
    message = next(f.message for o in outcomes for f in o.failures if f.item == "raise")
    assert message == "raise: ValueError: raise is bad"


def test_retries_redo_an_item_that_failed_once(backend_of, tmp_path):
    outcomes = list(run(_work, [("a", ["x", f"flaky:{tmp_path / 'once'}"])], backend_of(1)))
    assert sorted(r for o in outcomes for r in o.result or []) == sorted(["a/x", f"a/flaky:{tmp_path / 'once'}"])
    assert not [f for o in outcomes for f in o.failures]


def test_a_dead_worker_is_replaced_and_its_item_retried_or_recorded(tmp_path):
    # dies every time: recorded after the retries, the others of the batch done once
    outcomes = list(run(_work, [("a", ["x", "die", "y"]), ("b", ["z"])], Processes(1, retries=1)))
    assert sorted(r for o in outcomes for r in o.result or []) == ["a/x", "a/y", "b/z"]
    [failure] = [f for o in outcomes for f in o.failures]
    assert (failure.item, failure.kind, failure.error_type) == ("die", "crashed", "WorkerDied")
    assert "signal SIGKILL" in failure.message


def test_dask_keeps_a_bounded_number_of_tasks_in_flight(client, monkeypatch):
    from dicomml import executor

    monkeypatch.setattr(executor, "FETCH_EVERY_S", 0.0)  # each finished task is fetched at once
    seen = []

    def batches():
        for i in range(12):
            seen.append(i)
            yield ("n", [f"i{i}"])

    outcomes = run(_work, batches(), Dask(client, in_flight=3))
    first = next(outcomes)
    assert first.result and len(seen) == 4  # three in flight, then one more as the first finished: not drained at once
    assert len([first, *outcomes]) == 12


_ORPHANS = """
import time
from dicomml.executor import Processes, run

def batches():
    yield (None, [1])  # the first batch starts the workers
    time.sleep(600)  # the run is killed here, its two workers idle
    yield (None, [2])

for _ in run(lambda context, items, started: items, batches(), Processes(2)):
    pass
"""


def test_workers_exit_when_their_run_is_killed():
    import subprocess
    import sys
    import time

    import psutil

    proc = subprocess.Popen([sys.executable, "-c", _ORPHANS])
    parent = psutil.Process(proc.pid)
    deadline = time.monotonic() + 120
    while len(parent.children()) < 2:
        assert time.monotonic() < deadline and proc.poll() is None, "the workers never started"
        time.sleep(0.05)
    workers = parent.children()
    proc.kill()  # SIGKILL: nothing of the run's own cleanup runs
    proc.wait()
    gone, alive = psutil.wait_procs(workers, timeout=60)
    assert not alive, f"workers {[p.pid for p in alive]} outlived their run"


class _Garbage:
    """A reference cycle whose finalizer records the process that ran it."""

    def __init__(self, record: Path) -> None:
        self.record, self.me = record, self

    def __del__(self) -> None:
        with open(self.record, "a") as f:
            f.write(f"{os.getpid()}\n")


def _collect(context, items, started):
    import gc

    started(0)
    gc.collect()
    return [os.getpid()]


def test_workers_leave_the_callers_garbage_to_the_caller(tmp_path):
    """Garbage of the caller's forked with a worker (an unreachable S3 filesystem, say) is not finalized there."""
    import gc

    record = tmp_path / "finalized"
    gc.disable()  # the cycle stays uncollected until after the fork, as it may in any caller
    try:
        _Garbage(record)
        outcomes = list(run(_collect, [(None, ["a"])], Processes(1)))
    finally:
        gc.enable()
    assert outcomes[0].result != [os.getpid()]  # it ran in a worker
    gc.collect()
    assert record.read_text().split() == [str(os.getpid())]  # finalized once, by the caller alone


def _ids(context, items, started):
    return list(items)


def test_the_callers_heap_is_left_out_of_collections_while_workers_share_it():
    """While forked workers run, a collection in the caller skips what existed at the fork (it would copy each
    shared page); afterwards everything is collectable again, and a heap the caller froze stays frozen."""
    import gc
    import weakref

    class Cycle:
        def __init__(self) -> None:
            self.me = self

    gc.disable()  # the cycle stays uncollected until the run, as it may in any caller
    try:
        garbage = Cycle()
        alive = weakref.ref(garbage)
        del garbage
        outcomes = run(_ids, [(None, ["a"]), (None, ["b"])], Processes(1))
        first = next(outcomes)
        gc.collect()
        assert alive() is not None  # frozen while the workers share the heap
        rest = list(outcomes)
    finally:
        gc.enable()
    assert [first.result, *(o.result for o in rest)] == [["a"], ["b"]]
    assert gc.get_freeze_count() == 0
    gc.collect()
    assert alive() is None  # unfrozen after the run

    gc.disable()
    try:
        kept = Cycle()
        alive = weakref.ref(kept)
        del kept
        gc.freeze()  # the caller's own freeze (for its own forks), a garbage cycle in it
        list(run(_ids, [(None, ["a"])], Processes(1)))
        gc.collect()
        assert alive() is not None  # still frozen: the run did not undo the caller's freeze
    finally:
        gc.unfreeze()
        gc.enable()


def test_no_batches_start_no_worker():
    """A rerun that only drops rows (or rebuilds the series) has nothing to read: it forked a worker for nothing."""
    forks = []
    os.register_at_fork(before=lambda: forks.append(1))  # counts every fork of this process from now on
    assert list(run(_ids, [], Processes(2))) == []
    assert forks == []
    assert [o.result for o in run(_ids, [(None, ["a"])], Processes(2))] == [["a"]]
    assert forks  # the hook sees a run that has work
