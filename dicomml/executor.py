"""Batches of items run in worker processes that can be stopped for certain.

A per-item time limit cannot be kept inside the process that parses: an
alarm's exception is swallowed or transformed by the parser (pydicom catches
broad exceptions), and a C decoder that loops never sees it. Here each worker
is a plain process fed one batch at a time over a pipe; it reports the start
of each item, and the parent kills a worker whose item runs past the limit or
that dies (a crash, the kernel's OOM killer), starts a replacement, records
the item as a :class:`Failure` and runs the rest of the batch again. No
failure of one item ends the run: ``concurrent.futures``' ``BrokenProcessPool``
cannot happen here.

The indexer reads headers through it; any per-item work (preprocessing a
series) can: ``function(context, items, started)`` must call ``started(i)``
before item ``i`` and return one picklable result for the batch.
"""

from __future__ import annotations

import multiprocessing
import signal
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any, Generic, TypeVar

__all__ = ["Failure", "Outcome", "run_batches"]

T = TypeVar("T")
BatchFunction = Callable[[Any, Sequence[Any], Callable[[int], None]], Any]


@dataclass(frozen=True)
class Failure(Generic[T]):
    """An item whose worker was killed or died while it ran.

    Attributes
    ----------
    item
        The item.
    kind
        ``"timeout"`` or ``"crashed"``.
    message
        One line: what happened, for an error row.
    """

    item: T
    kind: str
    message: str


@dataclass(frozen=True)
class Outcome(Generic[T]):
    """One batch done: the items that the result covers, the result, and the items that failed."""

    items: list[T]
    result: Any
    failures: list[Failure[T]]


def _serve(function: BatchFunction, conn: Connection) -> None:
    """Worker loop: run each batch received, reporting the start of each item."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    while True:
        try:
            task = conn.recv()
        except EOFError:
            return
        if task is None:
            return
        context, items = task
        try:
            result = function(context, items, lambda i: conn.send(("at", i)))
        except BaseException as exc:  # the parent records the item and replaces this process
            conn.send(("raised", f"{type(exc).__name__}: {str(exc)[:200]}"))
            return
        conn.send(("done", result))


class _Worker:
    def __init__(self, function: BatchFunction, mp: Any) -> None:
        self.conn, child = mp.Pipe()
        self.process = mp.Process(target=_serve, args=(function, child), daemon=True)
        self.process.start()
        child.close()
        self.items: list[Any] | None = None
        self.context: Any = None
        self.failures: list[Failure[Any]] = []
        self.current = -1
        self.since = 0.0

    def give(self, context: Any, items: list[Any], failures: list[Failure[Any]]) -> None:
        self.context, self.items, self.failures, self.current, self.since = context, items, failures, -1, time.monotonic()
        self.conn.send((context, items))

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join()
        self.conn.close()

    def stop(self) -> None:
        try:
            self.conn.send(None)
        except OSError:
            pass
        self.process.join(timeout=5)
        self.kill()


def _death(worker: _Worker) -> str:
    worker.process.join(timeout=5)
    code = worker.process.exitcode
    if code is not None and code < 0:
        return f"signal {signal.Signals(-code).name}"
    return f"exit status {code}"


def run_batches(
    function: BatchFunction,
    batches: Iterable[tuple[Any, Sequence[T]]],
    *,
    workers: int,
    timeout_s: float,
    describe: Callable[[T], str] = str,
) -> Iterator[Outcome[T]]:
    """Run ``function`` over batches in ``workers`` killable processes, yielding outcomes as batches finish.

    Parameters
    ----------
    function
        ``function(context, items, started) -> result``; a module-level
        function (it is sent to spawned workers). It calls ``started(i)``
        before item ``i``.
    batches
        ``(context, items)`` pairs (picklable), consumed lazily: the context is
        passed as it is, the items may be split on a failure. At most one batch
        per worker is taken ahead.
    workers
        Worker processes.
    timeout_s
        Seconds one item may run; 0 or less: no limit (a dead worker is still replaced).
    describe
        Names an item in failure messages.

    Yields
    ------
    Outcome
        Per batch run (a batch retried after a failure is yielded once, with
        the items it covers and the failures on the way).

    Examples
    --------
    >>> outcomes = list(run_batches(count_items, [(None, [1, 2]), (None, [3])], workers=2, timeout_s=5))  # doctest: +SKIP
    """
    mp = multiprocessing.get_context("fork" if sys.platform == "linux" else "spawn")
    pool = [_Worker(function, mp) for _ in range(max(1, workers))]
    pending: deque[tuple[Any, list[T], list[Failure[T]]]] = deque()
    source = iter(batches)
    exhausted = False
    try:
        while True:
            while not exhausted and len(pending) < len(pool):
                batch = next(source, None)
                if batch is None:
                    exhausted = True
                else:
                    pending.append((batch[0], list(batch[1]), []))
            idle = [w for w in pool if w.items is None]
            for worker in idle:
                if not pending:
                    break
                context, items, failures = pending.popleft()
                if not items:
                    yield Outcome([], None, failures)
                    continue
                worker.give(context, items, failures)
            busy = [w for w in pool if w.items is not None]
            if not busy:
                if exhausted and not pending:
                    return
                continue
            deadline = min(w.since for w in busy) + timeout_s if timeout_s > 0 else None
            ready = wait([w.conn for w in busy], None if deadline is None else max(0.0, deadline - time.monotonic()))
            now = time.monotonic()
            for i, worker in enumerate(pool):
                if worker.items is None:
                    continue
                message = None
                kind = ""
                if worker.conn in ready:
                    try:
                        tag, value = worker.conn.recv()
                    except (EOFError, OSError):
                        kind, message = "crashed", f"its worker process died ({_death(worker)})"
                    else:
                        if tag == "raised":
                            kind, message = "crashed", f"the worker raised {value}"
                        elif tag == "at":
                            worker.current, worker.since = value, now
                            continue
                        else:
                            yield Outcome(worker.items, value, worker.failures)
                            worker.items = None
                            continue
                elif timeout_s > 0 and now - worker.since > timeout_s:
                    kind, message = "timeout", f"it ran for over {timeout_s:g} s (the per-item time limit); its worker process was stopped"
                if message is None:
                    continue
                items, failures = worker.items, worker.failures
                bad = max(worker.current, 0)
                failures.append(Failure(items[bad], kind, f"{describe(items[bad])}: {message}"))
                worker.kill()
                pool[i] = _Worker(function, mp)
                pending.appendleft((worker.context, items[:bad] + items[bad + 1 :], failures))
    finally:
        for worker in pool:
            worker.stop() if worker.items is None else worker.kill()
