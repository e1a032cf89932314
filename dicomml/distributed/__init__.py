"""Distributed preprocessing: fill the cache for a whole manifest on Dask or as static shards.

``run.py`` holds :func:`preprocess` (one task per series, mapping the pure
:func:`dicomml.pipeline.preprocess_one`), ``images.py`` :func:`preprocess_images`
(2D images, many per task), ``shard.py`` the stable split of series
keys into shards (torchrun ranks, SLURM tasks), ``report.py`` the Parquet run
report. Names are imported on first use: the CLI's option parsing (shards,
devices) imports neither torch nor Dask.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dicomml._lazy import lazy_exports

if TYPE_CHECKING:
    from dicomml.distributed.images import preprocess_images as preprocess_images
    from dicomml.distributed.report import REPORT_SCHEMA as REPORT_SCHEMA
    from dicomml.distributed.report import RunReport as RunReport
    from dicomml.distributed.run import preprocess as preprocess
    from dicomml.distributed.shard import select_shard as select_shard
    from dicomml.distributed.shard import shard_of as shard_of

_EXPORTS = {
    "REPORT_SCHEMA": "dicomml.distributed.report",
    "RunReport": "dicomml.distributed.report",
    "preprocess": "dicomml.distributed.run",
    "preprocess_images": "dicomml.distributed.images",
    "select_shard": "dicomml.distributed.shard",
    "shard_of": "dicomml.distributed.shard",
}

__all__ = ["REPORT_SCHEMA", "RunReport", "preprocess", "preprocess_images", "select_shard", "shard_of"]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
