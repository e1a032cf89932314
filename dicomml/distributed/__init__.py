"""Distributed preprocessing: fill the cache for a whole manifest on Dask or as static shards.

``run.py`` holds :func:`preprocess` (one task per series, mapping the pure
:func:`dicomml.pipeline.preprocess_one`), ``images.py`` :func:`preprocess_images`
(2D images, many per task), ``shard.py`` the stable split of series
keys into shards (torchrun ranks, SLURM tasks), ``report.py`` the Parquet run
report.
"""

from dicomml.distributed.images import preprocess_images
from dicomml.distributed.report import REPORT_SCHEMA, RunReport
from dicomml.distributed.run import preprocess
from dicomml.distributed.shard import select_shard, shard_of

__all__ = ["REPORT_SCHEMA", "RunReport", "preprocess", "preprocess_images", "select_shard", "shard_of"]
