"""`preprocess --images`: the 2D images of a manifest through the same executor, backends and report as series.

Images are cheap one by one, so a task is a batch of ``batch_size`` images;
the report has one row per image (its SOP Instance UID in ``series_key``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from dicomml.cache import Cache
from dicomml.distributed.report import RunReport
from dicomml.distributed.run import (
    backend,
    check_options,
    count_failed,
    failure_fields,
    finish,
    report_location,
    report_rows,
    settle,
    store_hiccup,
    worker_name,
)
from dicomml.errors import DicomMLError, SeriesNotFoundError
from dicomml.executor import Progress, run
from dicomml.indexer.manifest import Manifest
from dicomml.limits import DEFAULT_MAX_VOXELS, check_voxels
from dicomml.pipeline import open_cache

if TYPE_CHECKING:
    from dicomml.sources import Remote

__all__ = ["ImageSource", "image_task", "preprocess_images"]

#: ``instances`` columns a worker needs to compute an image's entry.
_ROW = ("path", "sop_instance_uid", "size", "mtime_ns")


class ImageSource:
    """One image of a run: its manifest row, cache key, size in pixels (all frames) and the rows of its masks."""

    def __init__(self, row: Mapping[str, Any], key: str, shape: tuple[int, ...], masks: Sequence[Mapping[str, Any]] = ()) -> None:
        self.row, self.key, self.shape, self.masks = {k: row[k] for k in _ROW}, key, shape, list(masks)

    @property
    def series_key(self) -> str:
        """The report's ``series_key``: the image's SOP Instance UID."""
        return str(self.row["sop_instance_uid"])


def preprocess_images(
    manifest: Manifest | str | os.PathLike[str],
    config: Any,
    cache: Cache | str | os.PathLike[str],
    *,
    where: str | None = None,
    modalities: Sequence[str] | None = None,
    masks: bool = False,
    workers: int | None = None,
    scheduler: Any = None,
    shard: tuple[int, int] | None = None,
    batch_size: int = 64,
    device: str = "cpu",
    retries: int = 2,
    report: str | os.PathLike[str] | None = None,
    progress: bool = True,
    max_voxels: int | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> RunReport:
    """Fill the cache for the selected 2D images of a manifest, ``batch_size`` images per task.

    Parameters
    ----------
    manifest
        A :class:`dicomml.Manifest` or its folder.
    config
        An :class:`~dicomml.imaging2d.ImageConfig` or the YAML file of its keys.
    cache
        A :class:`~dicomml.cache.Cache` or its folder / fsspec URL.
    where
        SQL predicate on the ``instances`` table (DuckDB), ANDed with the 2D modalities.
    modalities, masks
        As :class:`~dicomml.imaging2d.ImageDataset`'s (default: its 2D
        modalities; masks of the SEGs and RTSTRUCTs referencing each image),
        so that the run fills the entries that Dataset reads.
    workers, scheduler, shard, retries, report, progress, storage_options
        As :func:`dicomml.preprocess`; ``shard`` takes every ``count``-th image from ``index``.
    batch_size
        Images per task.
    device
        ``"cpu"`` or ``"cuda"``, as :func:`dicomml.preprocess`; the 2D
        pipeline runs on the CPU, and the report's ``device`` says so.
    max_voxels
        Most pixels of one image, all frames and samples together (default
        :data:`~dicomml.limits.DEFAULT_MAX_VOXELS`): a larger one is a
        ``failed`` row (``ResourceLimitError``) before it is decoded.

    Returns
    -------
    RunReport
        One row per image (done, skipped or failed).

    Raises
    ------
    SeriesNotFoundError
        If no 2D image matches ``where``.
    CacheError, OutputError
        As :func:`dicomml.preprocess`.
    DicomMLError
        If every selected image failed (the report is written first).

    Examples
    --------
    >>> report = preprocess_images("manifest", "mammo.yaml", "cache", workers=2)  # doctest: +SKIP
    """
    from dicomml.imaging2d import ImageConfig
    from dicomml.imaging2d.modalities import IMAGE_MODALITIES
    from dicomml.imaging2d.prepare import image_key
    from dicomml.imaging2d.selection import mask_rows, referencing_segs, select_images

    started = time.perf_counter()
    check_options(workers, scheduler, shard, device, retries)
    in_process = scheduler is None and (workers == 0 or (workers is None and shard is not None))
    manifest, cache = Manifest.open(manifest), open_cache(cache, storage_options)
    config = config if isinstance(config, ImageConfig) else ImageConfig.from_yaml(config)
    rows = select_images(manifest, where, IMAGE_MODALITIES if modalities is None else tuple(modalities))
    if shard is not None:
        rows = rows.iloc[shard[0] :: shard[1]]
    if rows.empty:
        raise SeriesNotFoundError(f"{manifest.path}: no 2D image" + (f" matches {where!r}" if where else ""), path=str(manifest.path))
    segs = referencing_segs(manifest) if masks else None
    sources = [ImageSource(r, image_key(r, config, mask_rows(segs, r)), _shape(r), mask_rows(segs, r)) for r in rows.to_dict("records")]
    fs, path = report_location(cache, report, shard)
    out, todo = settle(sources, cache)
    context = (cache, config, device, DEFAULT_MAX_VOXELS if max_voxels is None else max_voxels, manifest.remote)
    batches = [(context, todo[i : i + batch_size]) for i in range(0, len(todo), batch_size)]
    label = "preprocess images" + (f" shard {shard[0]}/{shard[1]}" if shard else "")
    if todo:
        cache.check_writable()  # one error now rather than one failed row per image
        with (
            Progress(len(todo), unit="image", desc=label, enabled=progress) as bar,
            backend(len(batches), workers, scheduler, in_process, retries, None, "dicomml-images") as where_run,
        ):
            for outcome in run(_images, batches, where_run, describe=lambda s: str(s.row["path"]), progress=bar, failed_in=count_failed):
                out.extend(report_rows(outcome))
    return finish(out, fs, path, cache, started, progress, "images")


def _images(context: tuple[Any, ...], sources: Sequence[ImageSource], started: Any) -> list[dict[str, Any]]:
    """A batch of images for :mod:`dicomml.executor`: a report row each."""
    rows = []
    for i, source in enumerate(sources):
        started(i)
        rows.append(image_task(source, *context))
    return rows


def _shape(row: Mapping[str, Any]) -> tuple[int, ...]:
    """Frames, rows and columns of an ``instances`` row (1 frame when the header has no count)."""
    frames = row.get("number_of_frames")
    return tuple(int(v) if v == v and v is not None else 1 for v in (frames, row.get("rows"), row.get("columns")))


def image_task(
    source: ImageSource, cache: Cache, config: Any, device: str, max_voxels: int, remote: Remote | None = None
) -> dict[str, Any]:
    """One image as a report row (``remote``: how to reach a URL); a :class:`~dicomml.errors.DicomMLError` is a ``failed`` row, anything else propagates."""
    from dicomml.imaging2d.prepare import preprocess_image

    start = time.perf_counter()
    row: dict[str, Any] = {"series_key": source.series_key, "cache_key": source.key, "worker": worker_name(), "device": "cpu"}
    try:
        check_voxels(source.shape, f"image {source.row['path']}", max_voxels, path=source.row["path"])
        preprocess_image(source.row, cache, config, source.masks, remote)
        nbytes = cache.open(source.key).nbytes()
    except DicomMLError as exc:  # the data's fault (or an invalid marker of the entry): retrying cannot help
        if store_hiccup(exc):
            raise  # the executor tries the task again, and reports this error if it lasts
        return {**row, **failure_fields(exc), "seconds": time.perf_counter() - start}
    return {**row, "status": "done", "seconds": time.perf_counter() - start, "bytes": nbytes}
