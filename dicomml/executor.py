"""One executor for per-item work in batches: the indexer's headers, preprocessing's series and images.

:func:`run` maps ``function(context, items, started)`` over ``(context, items)``
batches on a backend and yields an :class:`Outcome` per batch: the batch's
result and, for each item that could not be done, a :class:`Failure` (the
failure is a result, never an exception that ends the run). Progress, retries
and failure capture are written here once; the backends differ only in where
a batch runs:

- :class:`InProcess`: in this process, one batch after the other;
- :class:`Processes`: killable worker processes fed one batch at a time over a
  pipe. A per-item time limit cannot be kept inside the process that parses
  (an alarm's exception is swallowed by pydicom's broad handlers, a C decoder
  that loops never sees it), so each worker reports the start of each item and
  the parent kills a worker whose item runs past the limit or that dies (a
  crash, the kernel's OOM killer), starts a replacement and runs the rest of
  the batch again;
- :class:`Dask`: tasks on a ``distributed.Client`` (a ``LocalCluster``,
  dask-jobqueue, dask-cuda), with Dask's own retries and rescheduling of a
  dead worker's tasks.

``function`` calls ``started(i)`` before item ``i`` (the clock of the time
limit, and which item a crash is blamed on) and returns one picklable result
for the batch. A batch that raises or whose worker dies has the item it was
on recorded as failed (or retried, up to ``retries`` times) and the other
items run again; on Dask, where the item is not known, every item of the
batch is recorded.
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import multiprocessing
import signal
import sys
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any, Generic, Protocol, TypeVar

__all__ = ["Backend", "Dask", "Failure", "InProcess", "Outcome", "Processes", "Progress", "connect", "run"]

T = TypeVar("T")
BatchFunction = Callable[[Any, Sequence[Any], Callable[[int], None]], Any]

#: Seconds between fetches of finished Dask tasks' results: each fetch is one
#: request per worker for everything finished since the last, and answering
#: it takes the workers' event loops away from the running tasks.
FETCH_EVERY_S = 1.0


@dataclass(frozen=True)
class Failure(Generic[T]):
    """An item that could not be done: its worker was stopped or died, or its batch raised.

    Attributes
    ----------
    item
        The item.
    kind
        ``"timeout"`` (stopped past the time limit), ``"crashed"`` (the worker
        process died) or ``"raised"`` (the function raised).
    message
        One line naming the item and what happened, for an error row.
    reason
        What happened, without the item's name.
    error_type
        The exception's class name for ``"raised"`` (``"KilledWorker"`` when
        Dask gave up on a task whose workers kept dying), else
        ``"WorkerStopped"`` or ``"WorkerDied"``.
    """

    item: T
    kind: str
    message: str
    reason: str
    error_type: str


@dataclass(frozen=True)
class Outcome(Generic[T]):
    """One batch done: the items its result covers, the result, and the items that failed on the way."""

    items: list[T]
    result: Any
    failures: list[Failure[T]]

    @property
    def size(self) -> int:
        """Items accounted for: done and failed."""
        return len(self.items) + len(self.failures)


class Progress:
    """A progress bar over items (on stderr), with the count of failed ones.

    Parameters
    ----------
    total
        Items expected.
    unit, desc
        The bar's unit and label.
    enabled
        False: no bar (the counts are kept).

    Attributes
    ----------
    done, failed
        Items accounted for so far, and how many of them failed.
    """

    def __init__(self, total: int, *, unit: str, desc: str, enabled: bool = True) -> None:
        self.bar: Any = None
        if enabled and total:  # tqdm is imported only to draw
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, unit=unit, desc=desc, file=sys.stderr)
        self.done = self.failed = 0

    def update(self, n: int, failed: int = 0) -> None:
        """``n`` more items accounted for, ``failed`` of them failed."""
        self.done += n
        if failed:
            self.failed += failed
        if self.bar is not None:
            self.bar.update(n)
            if failed:
                self.bar.set_postfix(failed=self.failed)

    def close(self) -> None:
        """Close the bar."""
        if self.bar is not None:
            self.bar.close()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Backend(Protocol):
    """Where batches run: :class:`InProcess`, :class:`Processes` or :class:`Dask`."""

    def map(
        self, function: BatchFunction, batches: Iterable[tuple[Any, Sequence[T]]], describe: Callable[[T], str]
    ) -> Iterator[Outcome[T]]:
        """Outcomes of the batches, as they finish."""
        ...


def run(
    function: BatchFunction,
    batches: Iterable[tuple[Any, Sequence[T]]],
    backend: Backend,
    *,
    describe: Callable[[T], str] = str,
    progress: Progress | None = None,
    failed_in: Callable[[Any], int] | None = None,
) -> Iterator[Outcome[T]]:
    """Run ``function`` over batches on ``backend``, yielding an outcome per batch as batches finish.

    Parameters
    ----------
    function
        ``function(context, items, started) -> result``, module-level (it is
        sent to other processes); calls ``started(i)`` before item ``i``.
    batches
        ``(context, items)`` pairs (picklable), consumed lazily: a backend takes
        a few batches ahead of its workers, never the whole iterable.
    backend
        Where the batches run.
    describe
        Names an item in failure messages.
    progress
        Advanced by each outcome's items; failures counted.
    failed_in
        Items of a result that failed by the function's own account (an
        error row), for the progress bar's count.

    Yields
    ------
    Outcome
        Per batch (a batch run again after a failure is yielded once, with the
        items its result covers and the failures on the way).

    Examples
    --------
    >>> outcomes = list(run(count_items, [(None, [1, 2]), (None, [3])], Processes(2, timeout_s=5)))  # doctest: +SKIP
    """
    for outcome in backend.map(function, batches, describe):
        if progress is not None:
            own = failed_in(outcome.result) if failed_in is not None and outcome.result is not None else 0
            progress.update(outcome.size, len(outcome.failures) + own)
        yield outcome


@dataclass
class _Batch(Generic[T]):
    """A batch on its way: the items still to run, the failures so far, the tries of each item."""

    context: Any
    items: list[T]
    failures: list[Failure[T]] = field(default_factory=list)
    tries: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.tries = self.tries or [0] * len(self.items)

    def fail(self, at: int, kind: str, reason: str, error_type: str, retries: int, describe: Callable[[T], str]) -> None:
        """Item ``at`` failed: keep it for another try (not after a timeout) or record it and drop it."""
        if kind != "timeout" and self.tries[at] < retries:
            self.tries[at] += 1
            return
        self.failures.append(_failure(self.items[at], kind, reason, error_type, describe))
        del self.items[at], self.tries[at]


def _failure(item: T, kind: str, reason: str, error_type: str, describe: Callable[[T], str]) -> Failure[T]:
    said = f"{error_type}: {reason}" if kind == "raised" else reason
    return Failure(item, kind, f"{describe(item)}: {said}", reason, error_type)


def _one_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:300] if lines else repr(exc)


def _ignore(i: int) -> None:
    pass


@dataclass(frozen=True)
class InProcess:
    """Batches run in this process, one after the other; an exception fails the item it was on.

    Parameters
    ----------
    retries
        Tries again of an item whose batch raised, before it is recorded.
    """

    retries: int = 0

    def map(
        self, function: BatchFunction, batches: Iterable[tuple[Any, Sequence[T]]], describe: Callable[[T], str]
    ) -> Iterator[Outcome[T]]:
        """See :class:`Backend`."""
        current = [0]

        def started(i: int) -> None:
            current[0] = i

        for context, items in batches:
            batch = _Batch(context, list(items))
            while True:
                current[0] = 0
                try:
                    result = function(batch.context, batch.items, started)
                except Exception as exc:  # one item never stops the run
                    at = min(current[0], len(batch.items) - 1)
                    batch.fail(at, "raised", _one_line(exc), type(exc).__name__, self.retries, describe)
                    if batch.items:
                        continue
                    result = None
                yield Outcome(batch.items, result, batch.failures)
                break


def _serve(function: BatchFunction, conn: Connection, clock: Any, parent_end: Connection) -> None:
    """Worker loop: run each batch received, writing the start of each item to ``clock``.

    ``clock`` is shared memory (start time on the system-wide monotonic clock,
    then item index): the parent reads it when a deadline passes, so an item
    costs no message and no wake-up of the parent.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    gc.freeze()  # the caller's garbage forked with us is the caller's to finalize, not this worker's
    parent_end.close()  # a forked copy of the parent's end would keep the pipe open: no EOF when the parent is killed

    def started(i: int) -> None:
        clock[0] = time.monotonic()  # the time first: a reader that sees the new index sees its time
        clock[1] = i

    while True:
        try:
            task = conn.recv()
        except EOFError:
            return
        if task is None:
            return
        context, items = task
        try:
            result = function(context, items, started)
        except BaseException as exc:  # the parent records the item and replaces this process
            conn.send(("raised", (type(exc).__name__, _one_line(exc))))
            return
        conn.send(("done", result))


class _Worker:
    def __init__(self, function: BatchFunction, mp: Any) -> None:
        self.conn, child = mp.Pipe()
        self.clock = mp.RawArray("d", 2)  # (start of the current item, its index), written by the worker
        self.process = mp.Process(target=_serve, args=(function, child, self.clock, self.conn), daemon=True)
        self.process.start()
        child.close()
        self.batch: _Batch[Any] | None = None

    @property
    def since(self) -> float:
        """When the current item (or the batch, before its first item) started."""
        return float(self.clock[0])

    @property
    def current(self) -> int:
        """Index of the item running, -1 before the first."""
        return int(self.clock[1])

    def give(self, batch: _Batch[Any]) -> None:
        self.batch = batch
        self.clock[1], self.clock[0] = -1, time.monotonic()
        self.conn.send((batch.context, batch.items))

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join()
        self.conn.close()

    def ask_to_stop(self) -> None:
        """Tell the worker to exit after its batch (without waiting: workers told together exit together)."""
        try:
            self.conn.send(None)
        except OSError:
            pass

    def stop(self) -> None:
        """Wait for a worker told to stop; kill it if it has not exited within 5 s."""
        self.process.join(timeout=5)
        self.kill()

    def death(self) -> str:
        self.process.join(timeout=5)
        code = self.process.exitcode
        return f"signal {signal.Signals(-code).name}" if code is not None and code < 0 else f"exit status {code}"


@dataclass(frozen=True)
class Processes:
    """Batches run in killable worker processes (forked on Linux: they start with this process's imports).

    Parameters
    ----------
    workers
        Worker processes.
    timeout_s
        Seconds one item may run; 0 or less: no limit (a dead worker is still replaced).
    retries
        Tries again of an item whose worker died or whose batch raised; an
        item past the time limit is recorded at once.
    """

    workers: int
    timeout_s: float = 0.0
    retries: int = 0

    def map(
        self, function: BatchFunction, batches: Iterable[tuple[Any, Sequence[T]]], describe: Callable[[T], str]
    ) -> Iterator[Outcome[T]]:
        """See :class:`Backend`."""
        source = iter(batches)
        first = next(source, None)
        if first is None:  # nothing to run: no worker is started
            return
        mp = multiprocessing.get_context("fork" if sys.platform == "linux" else "spawn")
        with _frozen_heap():
            yield from self._map(function, itertools.chain([first], source), describe, mp)

    def _map(
        self, function: BatchFunction, batches: Iterable[tuple[Any, Sequence[T]]], describe: Callable[[T], str], mp: Any
    ) -> Iterator[Outcome[T]]:
        pool = [_Worker(function, mp) for _ in range(max(1, self.workers))]
        pending: deque[_Batch[T]] = deque()
        source = iter(batches)
        exhausted = False
        limit = self.timeout_s
        finished: list[Outcome[T]] = []
        try:
            while True:
                while not exhausted and len(pending) < len(pool):
                    batch = next(source, None)
                    if batch is None:
                        exhausted = True
                    else:
                        pending.append(_Batch(batch[0], list(batch[1])))
                for worker in [w for w in pool if w.batch is None]:
                    while pending and not pending[0].items:  # every item failed
                        done = pending.popleft()
                        finished.append(Outcome([], None, done.failures))
                    if not pending:
                        break
                    worker.give(pending.popleft())
                # Handed out only now, after the workers have their next batches: they read while the caller works.
                yield from finished
                finished.clear()
                busy = [w for w in pool if w.batch is not None]
                if not busy:
                    if exhausted and not pending:
                        return
                    continue
                deadline = min(w.since for w in busy) + limit if limit > 0 else None
                ready = wait([w.conn for w in busy], None if deadline is None else max(0.0, deadline - time.monotonic()))
                now = time.monotonic()
                for i, worker in enumerate(pool):
                    running = worker.batch
                    if running is None:
                        continue
                    failure: tuple[str, str, str] | None = None
                    if worker.conn in ready:
                        try:
                            tag, value = worker.conn.recv()
                        except (EOFError, OSError):
                            failure = ("crashed", f"its worker process died ({worker.death()})", "WorkerDied")
                        else:
                            if tag == "raised":
                                failure = ("raised", value[1], value[0])
                            else:
                                finished.append(Outcome(running.items, value, running.failures))
                                worker.batch = None
                                continue
                    elif limit > 0 and now - worker.since > limit:
                        message = f"it ran for over {limit:g} s (the per-item time limit); its worker process was stopped"
                        failure = ("timeout", message, "WorkerStopped")
                    if failure is None:
                        continue
                    running.fail(max(worker.current, 0), *failure, self.retries, describe)
                    worker.kill()
                    pool[i] = _Worker(function, mp)
                    pending.appendleft(running)
        finally:
            idle = [w for w in pool if w.batch is None]
            for worker in idle:
                worker.ask_to_stop()
            for worker in pool:
                worker.stop() if worker in idle else worker.kill()


@contextlib.contextmanager
def _frozen_heap() -> Iterator[None]:
    """This process's objects kept out of its collections while forked workers share its memory.

    A collection writes to every object it visits, so a collection in the
    parent would copy each page of the heap it shares with the workers (as
    ``gc.freeze``'s documentation describes). Objects made meanwhile are
    collected as usual; a heap the caller froze is left as it is.
    """
    if gc.get_freeze_count():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


@contextlib.contextmanager
def connect(scheduler: Any) -> Iterator[Any]:
    """A ``distributed.Client`` of ``scheduler``: a scheduler address (closed at the end) or a client, used as it is."""
    from distributed import Client

    if isinstance(scheduler, Client):
        yield scheduler
    else:
        with Client(scheduler) as client:
            yield client


def _on_worker(function: BatchFunction, context: Any, items: Sequence[Any]) -> Any:
    return function(context, items, _ignore)


@dataclass(frozen=True)
class Dask:
    """Batches run as tasks on a Dask cluster.

    Tasks are submitted in the order of the batches (Dask starts them in that
    order), at most ``in_flight`` unfinished at a time; finished results are
    fetched together every :data:`FETCH_EVERY_S` seconds and at the end.

    Parameters
    ----------
    client
        A ``distributed.Client``.
    retries
        Dask retries of a task that raised (a task whose worker died is
        rescheduled by Dask, up to its ``allowed-failures``).
    in_flight
        Most unfinished tasks; default twice the cluster's threads.
    name
        Prefix of the task keys (the dashboard shows it).
    """

    client: Any
    retries: int = 0
    in_flight: int | None = None
    name: str = "dicomml"

    def map(
        self, function: BatchFunction, batches: Iterable[tuple[Any, Sequence[T]]], describe: Callable[[T], str]
    ) -> Iterator[Outcome[T]]:
        """See :class:`Backend`."""
        from distributed import as_completed

        client, run_id = self.client, uuid.uuid4().hex[:8]
        in_flight = self.in_flight or 2 * max(1, sum(client.nthreads().values()))
        source = iter(batches)
        submitted: dict[Any, list[T]] = {}  # futures not fetched yet
        running = as_completed()
        count = 0

        def submit() -> bool:
            nonlocal count
            batch = next(source, None)
            if batch is None:
                return False
            items = list(batch[1])
            key = f"{self.name}-{run_id}-{count}" + (f"-{describe(items[0])}" if len(items) == 1 else "")
            future = client.submit(_on_worker, function, batch[0], items, key=key, retries=self.retries, pure=False)
            submitted[future] = items
            running.add(future)
            count += 1
            return True

        unfinished = 0
        while unfinished < in_flight and submit():
            unfinished += 1
        finished: list[Any] = []
        fetched = time.monotonic()
        for future in running:
            finished.append(future)
            unfinished -= 1
            while unfinished < in_flight and submit():
                unfinished += 1
            if running.is_empty() or time.monotonic() - fetched >= FETCH_EVERY_S:
                yield from _fetch(client, finished, submitted, describe)
                finished, fetched = [], time.monotonic()

    def __repr__(self) -> str:
        return f"Dask({self.client!r})"


def _fetch(client: Any, finished: list[Any], submitted: dict[Any, list[T]], describe: Callable[[T], str]) -> Iterator[Outcome[T]]:
    """Outcomes of ``finished`` futures: one gather for those that returned, failures for each that raised."""
    returned = [f for f in finished if f.status == "finished"]
    try:
        results = dict(zip(returned, client.gather(returned)))
    except Exception:  # a result lost with its worker, then failed when recomputed: each future on its own below
        results = {}
    for future in finished:
        items = submitted.pop(future)
        try:
            result = results[future] if future in results else future.result()
        except Exception as exc:  # raised after its retries, or its workers died too often (KilledWorker)
            failures = [_failure(item, "raised", _one_line(exc), type(exc).__name__, describe) for item in items]
            yield Outcome([], None, failures)
        else:
            yield Outcome(items, result, [])
        future.release()
