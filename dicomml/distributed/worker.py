"""Set-up of a preprocessing worker process: a Dask preload module.

:func:`~dicomml.distributed.run.local_cluster` preloads it in its workers
with ``--local-cluster``; ``dask worker --preload dicomml.distributed.worker``
sets up the workers of any other cluster the same way (and leaves their
Ctrl-C as Dask has it).
"""

from __future__ import annotations

import gc
import importlib
import logging
import signal
import threading
from collections.abc import Callable
from typing import Any

import click

from dicomml.distributed.run import WORKER_MODULES

__all__ = ["dask_setup", "leave_interrupts_to_the_run", "prepare_worker", "quiet_logs"]


def prepare_worker() -> None:
    """Import :data:`~dicomml.distributed.run.WORKER_MODULES`, then freeze what they allocated out of the cyclic GC.

    The imports (torch, MONAI, pydicom, Dask) leave hundreds of thousands of
    objects that every full collection of the cyclic garbage collector walks,
    a noticeable share of the time of a loop of
    :func:`~dicomml.pipeline.preprocess_one`. :func:`gc.freeze` after the imports
    moves them to a generation that is never collected (they live as long as
    the process anyway), so a full collection walks only what tasks allocate.
    """
    for module in WORKER_MODULES:
        importlib.import_module(module)
    gc.collect()
    gc.freeze()


def leave_interrupts_to_the_run(worker: Any) -> None:
    """Make a worker of the run's own cluster ignore Ctrl-C, and log nothing once it is closing.

    Ctrl-C in a terminal reaches every process of its group, the workers
    too: each would print the traceback of its interrupted event loop, and
    each task cancelled as it closes a warning, before the run's one line
    ``dicomml: aborted``. The run closes its cluster itself (as
    :class:`~dicomml.executor.Processes` workers are closed by their parent).
    """
    from distributed.core import Status

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    closing = (Status.closing, Status.closed)
    quiet_logs(lambda: getattr(worker, "status", None) in closing)  # for the life of the process


def quiet_logs(when: Callable[[], bool]) -> Callable[[], None]:
    """Drop the log records that reach the handlers of Dask's ``distributed`` logger (and the root's) while ``when()`` holds.

    Returns
    -------
    callable
        Removes the filter again.
    """
    quiet = _QuietWhen(when)
    handlers = {*logging.getLogger("distributed").handlers, *logging.getLogger().handlers}
    for handler in handlers:
        handler.addFilter(quiet)

    def remove() -> None:
        for handler in handlers:
            handler.removeFilter(quiet)

    return remove


class _QuietWhen(logging.Filter):
    def __init__(self, when: Callable[[], bool]) -> None:
        super().__init__()
        self.when = when

    def filter(self, record: logging.LogRecord) -> bool:
        return not self.when()


@click.command()
@click.option(
    "--local-cluster",
    "local",
    is_flag=True,
    help="A worker of the run's own LocalCluster: ignore Ctrl-C and log nothing while closing (the run closes it).",
)
def dask_setup(worker: Any, local: bool = False) -> None:
    """Dask's preload hook: :func:`prepare_worker` when the worker starts (with ``--local-cluster``,
    :func:`leave_interrupts_to_the_run` too)."""
    prepare_worker()
    if local:
        leave_interrupts_to_the_run(worker)
