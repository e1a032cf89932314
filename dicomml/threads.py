"""One pool of threads per process for work that releases the GIL (decoding, gathers), shared by every caller.

Starting threads for each read would cost as much as a patch's decoding; a
forked child (a DataLoader worker) starts its own pool on demand.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Any

__all__ = ["parallel"]

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _threads() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(os.cpu_count() or 1, thread_name_prefix="dicomml-decode")
        return _pool


def _forget_threads() -> None:
    """In a forked child (a DataLoader worker) the parent's threads do not exist: start new ones on demand."""
    global _pool, _pool_lock
    _pool, _pool_lock = None, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_threads)


def parallel(work: Any, items: Sequence[Any], threads: int) -> None:
    """``work(share)`` on up to ``threads`` shares of ``items`` (every n-th), the calling thread taking the first."""
    n = max(1, min(threads, len(items)))
    others = [_threads().submit(work, items[i::n]) for i in range(1, n)]
    if not others:  # one thread: no pool, no futures to wait for
        work(items)
        return
    try:
        work(items[::n])
    finally:
        wait(others)  # no thread still writes into the output once the caller has it, or an error
    for other in others:
        other.result()
