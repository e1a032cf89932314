"""Preprocessing the 2D images of a manifest: selection, shard, cluster, batches (``dicomml preprocess --images``)."""

from __future__ import annotations

import os
from typing import Any

from dicomml.cache import Cache
from dicomml.imaging2d.dataset import select_images
from dicomml.imaging2d.prepare import BatchResult, ImageConfig, preprocess_images
from dicomml.indexer.manifest import Manifest

__all__ = ["preprocess_manifest_images"]


def preprocess_manifest_images(
    manifest: Manifest | str | os.PathLike[str],
    config: ImageConfig | str | os.PathLike[str],
    cache: Cache | str | os.PathLike[str],
    *,
    where: str | None = None,
    workers: int | None = None,
    scheduler: Any = None,
    shard: tuple[int, int] | None = None,
    batch_size: int = 64,
    progress: bool = True,
) -> BatchResult:
    """Fill the cache for the selected 2D images of a manifest, ``batch_size`` images per task.

    Parameters
    ----------
    manifest
        The manifest or its folder.
    config
        An :class:`~dicomml.imaging2d.ImageConfig` or a YAML file of its keys.
    cache
        The cache or its URL.
    where
        SQL predicate on the ``instances`` table.
    workers
        Worker processes of a local Dask cluster (default: one per CPU); 0 runs here.
    scheduler
        A Dask scheduler address or ``distributed.Client``, instead of a local cluster.
    shard
        ``(index, count)``: process every ``count``-th image from ``index``.
    batch_size
        Images per task.
    progress
        Show a progress bar.

    Returns
    -------
    BatchResult
    """
    config = config if isinstance(config, ImageConfig) else ImageConfig.from_yaml(config)
    rows = select_images(Manifest.open(manifest), where)
    if shard is not None:
        rows = rows.iloc[shard[0] :: shard[1]]
    cache = cache if isinstance(cache, Cache) else Cache(cache)
    from tqdm.auto import tqdm

    with tqdm(total=len(rows), unit="image", disable=not progress) as bar:
        if scheduler is not None:
            from distributed import Client

            if isinstance(scheduler, Client):
                return preprocess_images(rows, cache, config, batch_size=batch_size, client=scheduler, progress=bar.update)
            with Client(scheduler) as client:
                return preprocess_images(rows, cache, config, batch_size=batch_size, client=client, progress=bar.update)
        if workers == 0:
            return preprocess_images(rows, cache, config, batch_size=batch_size, progress=bar.update)
        from dicomml.distributed.run import local_cluster

        with local_cluster(workers or os.cpu_count() or 1) as client:
            return preprocess_images(rows, cache, config, batch_size=batch_size, client=client, progress=bar.update)
