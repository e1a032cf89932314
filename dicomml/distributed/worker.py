"""Set-up of a preprocessing worker process: a Dask preload module.

:func:`~dicomml.distributed.run.local_cluster` preloads it in its workers;
``dask worker --preload dicomml.distributed.worker`` sets up the workers of
any other cluster the same way.
"""

from __future__ import annotations

import gc
import importlib
from typing import Any

from dicomml.distributed.run import WORKER_MODULES

__all__ = ["dask_setup", "prepare_worker"]


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


def dask_setup(worker: Any) -> None:
    """Dask's preload hook: :func:`prepare_worker` when the worker starts."""
    prepare_worker()
