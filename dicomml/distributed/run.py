"""`preprocess`: map :func:`~dicomml.pipeline.preprocess_one` over the selected series (or studies).

One task per selected usable series (per study sample, with a study config),
dispatched by :mod:`dicomml.executor` (as the indexer's batches are), on a Dask ``LocalCluster`` of worker
processes (default), on an existing Dask cluster (a scheduler address or a
``distributed.Client``: dask-jobqueue on SLURM, dask-cuda), or in this
process (``workers=0``, and the default for a static shard, where the
launcher — torchrun, ``srun``, a SLURM array — already made one process per
rank). The cache makes it resumable and idempotent: a complete entry is
skipped, a killed run leaves nothing a reader trusts, and the rerun computes
only what is missing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import socket
import sys
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

import fsspec
import numpy as np
from fsspec.implementations.local import LocalFileSystem
from fsspec.utils import get_protocol

from dicomml.cache import Cache
from dicomml.config import PipelineConfig, with_options
from dicomml.distributed.report import RunReport, check_report_path, report_table, write_report
from dicomml.distributed.shard import check_shard, select_shard
from dicomml.errors import CacheError, CacheIntegrityError, CacheMissError, ConfigError, DicomMLError, OutputError, SeriesNotFoundError
from dicomml.executor import Backend, Dask, Failure, InProcess, Outcome, Progress, connect, run
from dicomml.indexer.manifest import Manifest
from dicomml.pipeline import SeriesSource, open_cache, preprocess_one, series_sources
from dicomml.sources._remote import is_transient
from dicomml.study import StudyConfig, StudySource, load_any_config, study_sources

__all__ = [
    "DEVICES",
    "WORKER_MODULES",
    "backend",
    "check_options",
    "count_failed",
    "failure_fields",
    "finish",
    "local_cluster",
    "preprocess",
    "report_location",
    "report_rows",
    "run_task",
    "settle",
    "skipped_row",
    "Task",
    "worker_name",
]

#: Values of ``device``: where the deterministic pipeline (resampling) runs.
DEVICES = ("cpu", "cuda")

#: Modules a task uses, imported when a LocalCluster worker starts (torch, MONAI,
#: pydicom decoders, the manifest's instance schema, pyarrow's filtered reads)
#: rather than inside the first task of each worker.
WORKER_MODULES = (
    "dicomml.distributed.run",
    "dicomml.indexer",
    "dicomml.indexer.records",
    "dicomml.assemble",
    "dicomml.seg",
    "dicomml.transforms",
    "pyarrow.dataset",
)

#: The glibc setting Dask's nanny gives its workers (see :func:`local_cluster`).
_MALLOC_TRIM = "MALLOC_TRIM_THRESHOLD_"
#: Dask settings of :func:`local_cluster`: no statistical profiler (it samples the
#: running task every 10 ms), event-loop ticks, system and memory monitors at 1-2 s
#: instead of 20-500 ms, so that an idle cluster leaves the cores to the tasks.
_QUIET = {
    "distributed.worker.profile.enabled": False,
    "distributed.admin.tick.interval": "1s",
    "distributed.admin.system-monitor.interval": "2s",
    "distributed.worker.memory.monitor-interval": "1s",
}


def preprocess(
    manifest: Manifest | str | os.PathLike[str],
    config: PipelineConfig | StudyConfig | str | os.PathLike[str],
    cache: Cache | str | os.PathLike[str],
    *,
    where: str | None = None,
    workers: int | None = None,
    scheduler: Any = None,
    shard: tuple[int, int] | None = None,
    device: str = "cpu",
    threads: int | None = None,
    worker_env: Mapping[str, str] | None = None,
    retries: int = 2,
    report: str | os.PathLike[str] | None = None,
    progress: bool = True,
    max_voxels: int | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> RunReport:
    """Fill the cache for every selected usable series, in parallel, resumably.

    Parameters
    ----------
    manifest
        A :class:`dicomml.Manifest` or its folder.
    config
        The pipeline (:class:`~dicomml.config.PipelineConfig`), a study
        config (:class:`~dicomml.study.StudyConfig`: one task per study that
        makes a sample, its ``series_key`` in the report the study UID), or
        the YAML file of either.
    cache
        A :class:`~dicomml.cache.Cache` or its folder / fsspec URL.
    where
        SQL predicate on the manifest's ``series`` table (DuckDB), e.g.
        ``"modality = 'CT' AND n_slices >= 64"``; ANDed with ``usable``.
    workers
        Worker processes of the ``LocalCluster`` started for the run (default:
        one per CPU, at most one per series); ``0`` runs in this process.
    scheduler
        Address of an existing Dask scheduler (``"tcp://host:8786"``) or a
        ``distributed.Client``: the run uses that cluster unchanged.
    shard
        ``(index, count)``: only the series of shard ``index`` of ``count``
        (:func:`~dicomml.distributed.shard.shard_of`), run in this process
        unless ``workers`` or ``scheduler`` is given.
    device
        ``"cpu"``, or ``"cuda"``: resample on the worker's GPU when it has one
        (on its CPU otherwise); the report records where each series ran.
    threads
        Most threads that decode one series' compressed frames
        (:func:`~dicomml.load_series`): default 1 on a Dask cluster (its
        workers share the cores), every core when the run is in this
        process. The CLI passes ``OMP_NUM_THREADS`` when set (as torchrun
        and SLURM set it for each rank).
    worker_env
        Environment variables of the workers of the ``LocalCluster`` started
        for the run (:func:`local_cluster`).
    retries
        Tries again of a task that raised something other than a
        :class:`~dicomml.errors.DicomMLError` (an I/O hiccup), on Dask or in
        this process (:mod:`dicomml.executor`); a task whose worker died is
        rescheduled by Dask as well. A ``DicomMLError`` is a property of the
        data and is recorded at once.
    report
        Path or fsspec URL of the Parquet run report; default
        ``CACHE/reports/preprocess-<UTC time>-<run id>[-shard-I-of-N].parquet``.
    progress
        Show a progress bar and print the summary on stderr.
    max_voxels
        Replaces the config's ``deterministic.max_voxels`` (the most voxels
        one assembled volume, or its resampled grid, may have) when given;
        the cache keys stay the same.
    storage_options
        fsspec options of a ``cache`` URL (``s3://...``: ``endpoint_url``,
        ``profile``...); a :class:`~dicomml.cache.Cache` object has its own.

    Returns
    -------
    RunReport
        One row per series (done, skipped or failed), where it was written,
        and the wall time.

    Raises
    ------
    SeriesNotFoundError
        If no usable series matches ``where`` (nothing to process).
    ManifestError
        If ``where`` is not a valid predicate on the ``series`` table.
    ConfigError
        If the options are invalid (both ``workers`` and ``scheduler``, a bad
        shard, device or retries).
    CacheError
        If the cache cannot be opened, or cannot be written while a series
        is left to compute (checked once, before the run starts).
    OutputError
        If ``report`` is a folder (before the run starts), or the report
        cannot be written.
    DicomMLError
        If every selected series failed (the report is written first).

    Examples
    --------
    >>> report = dicomml.preprocess("manifest", "ct_1mm", "cache", workers=8)  # doctest: +SKIP
    >>> report.counts  # doctest: +SKIP
    {'done': 118, 'skipped': 0, 'failed': 2}
    """
    started = time.perf_counter()
    check_options(workers, scheduler, shard, device, retries)
    in_process = scheduler is None and (workers == 0 or (workers is None and shard is not None))
    if threads is None and not in_process:
        threads = 1
    manifest, config, cache = Manifest.open(manifest), load_any_config(config), open_cache(cache, storage_options)
    if max_voxels is not None:
        config = (
            dataclasses.replace(config, pipeline=with_options(config.pipeline, max_voxels=max_voxels))
            if isinstance(config, StudyConfig)
            else with_options(config, max_voxels=max_voxels)
        )
    sources: list[Any] = list(_select(manifest, config, where))
    if progress and isinstance(config, PipelineConfig) and config.deterministic.masks:
        unannotated = len(set(manifest.usable_series_keys(where)) - {s.series_key for s in sources})
        if unannotated:  # said once: the summary counts only what was selected
            print(
                f"preprocess: {unannotated} usable series{f' matching {where!r}' if where else ''} have no annotation; "
                f"config {config.name} caches masks, so they are left out",
                file=sys.stderr,
            )
    if shard is not None:
        sources = select_shard(sources, *shard)
    sources = _largest_first(manifest, config, sources)
    fs, path = report_location(cache, report, shard)
    label = "preprocess" + (f" shard {shard[0]}/{shard[1]}" if shard else "")
    # complete entries are settled here, from one listing: with nothing left to do, no cluster starts
    rows, sources = settle(sources, cache)
    if progress and not sources:
        print(f"{label}: all {len(rows)} selected series are already in the cache {cache.url}; nothing to do", file=sys.stderr)
    context = (manifest, config, cache, device, threads)
    if sources:
        cache.check_writable()  # one error now rather than one failed row per series
        with (
            Progress(len(sources), unit="series", desc=label, enabled=progress) as bar,
            backend(len(sources), workers, scheduler, in_process, retries, worker_env, "dicomml-preprocess") as place,
        ):
            batches = ((context, [s]) for s in sources)
            for outcome in run(_task, batches, place, describe=_describe, progress=bar, failed_in=count_failed):
                rows.extend(report_rows(outcome))
    return finish(rows, fs, path, cache, started, progress, "series")


def finish(
    rows: list[dict[str, Any]], fs: fsspec.AbstractFileSystem, path: str, cache: Cache, started: float, progress: bool, what: str
) -> RunReport:
    """Write the report, print its summary; raise when every one of ``rows`` failed.

    A report that cannot be written is an error (after the summary, which
    names the failures), unless the run had nothing to compute: a rerun over
    a read-only cache holding every entry only says so.
    """
    try:
        table, where = write_report(rows, fs, path), path if isinstance(fs, LocalFileSystem) else fs.unstrip_protocol(path)
    except OutputError as exc:  # what the run published stays: only the report is missing
        result = RunReport(report_table(rows).to_pandas(), None, time.perf_counter() - started, what)
        if progress:
            print(result.summary(), file=sys.stderr)
        if result.counts["skipped"] == len(rows):
            if progress:
                print(f"dicomml preprocess: {exc}; every entry was in the cache already", file=sys.stderr)
            return result
        done = result.counts["done"]
        kept = f"the {done} entries this run computed are kept" if done else "this run computed no entry"
        raise OutputError(f"{exc}; {kept}, rerun with --report elsewhere", path=path) from exc
    result = RunReport(table, where, time.perf_counter() - started, what)
    if progress:
        print(result.summary(), file=sys.stderr)
    counts = result.counts
    if rows and counts["done"] + counts["skipped"] == 0:
        first = result.failed.iloc[0]
        raise DicomMLError(
            f"{cache.url}: all {len(rows)} {what} failed, first {first.series_key}: {first.error_type}: "
            f"{first.message}; see the report {result.path}",
            path=result.path,
        )
    return result


def run_task(
    source: SeriesSource | StudySource,
    manifest: Manifest,
    config: PipelineConfig | StudyConfig,
    cache: Cache,
    device: str,
    threads: int | None = None,
) -> dict[str, Any]:
    """One task: :func:`~dicomml.pipeline.preprocess_one` on one series (or study), as a report row.

    A :class:`~dicomml.errors.DicomMLError` becomes a ``failed`` row; anything
    else propagates, so that the executor retries it. A run gives it only
    series whose entry was not complete when it listed the cache
    (:func:`settle`), so an entry found complete was published while the run
    ran: by this run (a task Dask ran again after its worker died with the
    result) or a concurrent one; its row says ``done`` as well.

    Parameters
    ----------
    source
        The series (or study) and its cache key.
    manifest, config, cache
        Opened :class:`dicomml.Manifest`, config and :class:`~dicomml.cache.Cache`.
    device
        ``"cpu"`` or ``"cuda"`` (used when this process has a GPU).
    threads
        Decoding threads of the series (:func:`~dicomml.pipeline.preprocess_one`).

    Returns
    -------
    dict
        A row of :data:`~dicomml.distributed.report.REPORT_SCHEMA`.
    """
    start = time.perf_counter()
    used = "cuda" if device == "cuda" and _has_cuda() else "cpu"
    row: dict[str, Any] = {"series_key": source.series_key, "cache_key": source.key, "worker": worker_name(), "device": used}
    try:
        info = preprocess_one(source, manifest, config, cache, threads=threads, **({} if used == "cpu" else {"device": used}))
    except DicomMLError as exc:  # the data's fault: retrying cannot help
        if store_hiccup(exc):
            raise  # the executor tries the task again, and reports this error if it lasts
        return {**row, **failure_fields(exc), "seconds": time.perf_counter() - start}
    return {**row, "status": "done", "seconds": info.seconds, "bytes": info.nbytes}


def _task(context: tuple[Any, ...], sources: Sequence[SeriesSource | StudySource], started: Any) -> list[dict[str, Any]]:
    """A batch of series for :mod:`dicomml.executor`: a report row each."""
    rows = []
    for i, source in enumerate(sources):
        started(i)
        rows.append(run_task(source, *context))
    return rows


def store_hiccup(exc: DicomMLError) -> bool:
    """Whether a task's error is a cache store's transient failure (a 503, a reset), which retrying the task may cure."""
    return isinstance(exc, CacheError) and exc.__cause__ is not None and is_transient(exc.__cause__)


#: The report's message for Dask's ``KilledWorker`` (its own text is about Dask, cut short).
_KILLED = (
    "every worker that ran it died, most often of a series too large for a worker's memory_limit; "
    "give the workers more memory (fewer --workers, a larger memory_limit) or lower --max-voxels"
)


def failure_row(failure: Failure[Any]) -> dict[str, Any]:
    """The report row of a task that raised after its retries or whose worker died."""
    item = failure.item
    return {
        "series_key": item.series_key,
        "cache_key": item.key,
        "status": "failed",
        "error_type": failure.error_type,
        "message": _KILLED if failure.error_type == "KilledWorker" else failure.reason,
    }


def report_rows(outcome: Outcome[Any]) -> list[dict[str, Any]]:
    """The report rows of one executor outcome: the batch's own rows, then its failures'."""
    return [*(outcome.result or []), *map(failure_row, outcome.failures)]


def count_failed(rows: list[dict[str, Any]]) -> int:
    """Rows of a batch's result that say ``failed`` (the progress bar's count)."""
    return sum(row["status"] == "failed" for row in rows)


@contextlib.contextmanager
def backend(
    n_tasks: int, workers: int | None, scheduler: Any, in_process: bool, retries: int, worker_env: Mapping[str, str] | None, name: str
) -> Iterator[Backend]:
    """Where preprocessing tasks run: an existing Dask cluster, this process, or a new :func:`local_cluster`."""
    if scheduler is not None:
        with connect(scheduler) as client:
            yield Dask(client, retries=retries, name=name)
    elif in_process:
        yield InProcess(retries=retries)
    else:
        with local_cluster(min(workers or os.cpu_count() or 1, max(n_tasks, 1)), worker_env=worker_env) as client:
            yield Dask(client, retries=retries, name=name)


@contextlib.contextmanager
def local_cluster(workers: int, *, worker_env: Mapping[str, str] | None = None) -> Iterator[Any]:
    """A ``distributed.Client`` on a new ``LocalCluster`` set up for preprocessing.

    ``workers`` worker processes of one thread each, set up by
    :func:`dicomml.distributed.worker.prepare_worker` when they start (the
    pipeline's imports, out of the cyclic GC's way). They ignore Ctrl-C and
    log nothing while they close
    (:func:`~dicomml.distributed.worker.leave_interrupts_to_the_run`), and
    this process's Dask loggers are quiet while a run that an exception
    ended (Ctrl-C) closes the cluster: the CLI's ``dicomml: aborted`` is the
    one line. Dask's nanny would set
    ``MALLOC_TRIM_THRESHOLD_=65536`` in the workers it spawns, to hand freed
    memory back early; a fixed threshold also turns off glibc's dynamic mmap
    threshold, so every freed volume-sized array goes back to the kernel and the
    next one is faulted in again, page by page, which slows tasks down
    (``benchmarks/bench_preprocess.py``). These workers keep glibc's defaults
    unless ``worker_env`` names the variable. A variable already in this
    process's environment reaches the workers too (a Dask nanny leaves its
    own there: start earlier clusters of the session with this function).
    Dask's own bookkeeping is slowed down too (:data:`_QUIET`): at its
    defaults it keeps a core busy while the cluster is idle, and the
    statistical profiler samples every running task. An existing cluster is
    used unchanged.

    Parameters
    ----------
    workers
        Number of worker processes.
    worker_env
        Environment variables set in each worker process before it starts
        (Dask's ``distributed.nanny.pre-spawn-environ``, so that glibc and
        OpenMP read them); a variable of this process's environment keeps
        its value there (Dask gives the environment precedence).
    """
    import dask
    from distributed import Client, LocalCluster

    from dicomml.distributed.worker import quiet_logs

    environ = {_MALLOC_TRIM: None, **(worker_env or {})}
    settings = {f"distributed.nanny.pre-spawn-environ.{k}": v for k, v in environ.items()}
    ended: list[BaseException] = []
    with contextlib.ExitStack() as stack:
        # entered before the cluster, so left after it: what it logs while an interrupted run closes it is not news
        stack.callback(quiet_logs(lambda: bool(ended)))
        stack.enter_context(dask.config.set({**settings, **_QUIET}))
        cluster = stack.enter_context(
            LocalCluster(
                n_workers=workers,
                threads_per_worker=1,
                processes=True,
                dashboard_address=":0",
                preload=["dicomml.distributed.worker"],
                preload_argv=[["--local-cluster"]],
            )
        )
        client = stack.enter_context(Client(cluster))
        client.wait_for_workers(workers)
        try:
            yield client
        except BaseException as exc:  # Ctrl-C, or an error the caller raises
            ended.append(exc)
            raise


def _select(manifest: Manifest, config: PipelineConfig | StudyConfig, where: str | None) -> list[SeriesSource] | list[StudySource]:
    """The usable series matching ``where`` (the studies that make a sample); raise when there is nothing to do."""
    if isinstance(config, StudyConfig):
        if where is not None:
            raise ConfigError(f"{config.name}: a study config selects series by its roles; drop --where")
        studies = study_sources(manifest, config)
        if not studies:
            raise SeriesNotFoundError(
                f"{manifest.path}: no study makes a sample under {config.name}; see `dicomml studies` for each role's matches",
                path=str(manifest.path),
            )
        return studies
    sources = series_sources(manifest, config, where=where)
    if not sources:
        raise SeriesNotFoundError(
            f"{manifest.path}: no usable series"
            + (f" matches {where!r}" if where else "")
            + (f" with an annotation (config {config.name} caches masks)" if config.deterministic.masks else "")
            + "; check the selection with Manifest.series (the CLI's `dicomml list MANIFEST`, with --where)",
            path=str(manifest.path),
        )
    return sources


def _largest_first(manifest: Manifest, config: PipelineConfig | StudyConfig, sources: list[Any]) -> list[Any]:
    """``sources`` by decreasing expected cost, input plus output voxels.

    Dask starts tasks in submission order, so the last ones to start are the
    cheapest, and workers finish close together instead of one waiting on a
    large series that started last.
    """
    if isinstance(config, StudyConfig):
        return sources  # studies are alike in cost: several series each
    det = config.deterministic
    columns = ["series_key", "rows", "columns", "n_slices", "pixel_spacing", "slice_spacing"]
    table = manifest.table("series", columns).to_pandas().set_index("series_key")
    voxels = (table["rows"] * table["columns"] * table["n_slices"]).astype(float)
    if det.shape is not None:
        out: Any = float(np.prod(det.shape))
    elif det.spacing is not None:
        spacing = np.array([np.prod(p) if p is not None else np.nan for p in table["pixel_spacing"]])
        mm3 = voxels * spacing * table["slice_spacing"].astype(float).fillna(1.0)
        out = (mm3 / float(np.prod(det.spacing))).fillna(voxels)
    else:
        out = voxels
    cost = (voxels + out).to_dict()
    return sorted(sources, key=lambda s: -cost[s.series_key])


def check_options(workers: int | None, scheduler: Any, shard: tuple[int, int] | None, device: str, retries: int) -> None:
    if workers is not None and scheduler is not None:
        raise ConfigError(f"workers={workers} and scheduler={scheduler!r}: give one, the cluster's size is its own")
    if workers is not None and workers < 0:
        raise ConfigError(f"workers={workers}: give a number of worker processes, or 0 to run in this process")
    if shard is not None:
        check_shard(*shard)
    if device not in DEVICES:
        raise ConfigError(f"device {device!r} is not one of {', '.join(DEVICES)}")
    if retries < 0:
        raise ConfigError(f"retries={retries}: must be 0 or more")


def report_location(
    cache: Cache, report: str | os.PathLike[str] | None, shard: tuple[int, int] | None
) -> tuple[fsspec.AbstractFileSystem, str]:
    """Where the run report goes: ``report`` (a file path or URL), else a new name under ``CACHE/reports/``.

    A ``report`` URL of the cache's protocol (``s3://``) is opened with the
    cache's storage options: the same object store.

    Raises
    ------
    OutputError
        If ``report`` is an existing folder (checked before the run starts).
    """
    if report is not None:
        report = os.fspath(report)
        same = get_protocol(report) == get_protocol(cache.url)
        fs, path = fsspec.core.url_to_fs(report, **(cache.storage_options if same else {}))
        check_report_path(fs, path)
        return fs, path
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    suffix = f"-shard-{shard[0]}-of-{shard[1]}" if shard else ""
    return cache.fs, f"{cache.root}/reports/preprocess-{stamp}-{uuid.uuid4().hex[:8]}{suffix}.parquet"


def _describe(source: Task) -> str:
    return source.series_key


class Task(Protocol):
    """What a report row names: the task's ``series_key`` (series, study or image) and its cache ``key``."""

    @property
    def series_key(self) -> str: ...

    @property
    def key(self) -> str: ...


T = TypeVar("T", bound=Task)


def settle(sources: Sequence[T], cache: Cache) -> tuple[list[dict[str, Any]], list[T]]:
    """The ``skipped`` rows of the sources whose entry is complete, and the sources left to compute, from one listing.

    An entry whose marker does not parse (cut short by a crash on a store
    without atomic renames), or whose shard files are missing or cut short
    (a partial copy of the cache), is unpublished and left to compute,
    whatever the task (a series, a study, an image).

    Parameters
    ----------
    sources
        The run's series, studies or images (their ``key``).
    cache
        The run's cache.

    Returns
    -------
    (rows, todo)
        Report rows of the complete entries; the other sources, in their order.
    """
    published = set(cache.keys())
    rows: list[dict[str, Any]] = []
    todo: list[T] = []
    for source in sources:
        if source.key in published:
            try:
                rows.append(skipped_row(source, cache))
                continue
            except CacheMissError:  # unpublished since the listing (`dicomml cache verify --delete` elsewhere): a miss
                pass
            except CacheIntegrityError:  # an invalid marker: its task computes the entry again
                with contextlib.suppress(OSError):  # a read-only cache: the run stops at its write check
                    cache.delete(source.key)
        todo.append(source)
    return rows, todo


def skipped_row(source: Task, cache: Cache) -> dict[str, Any]:
    """The report row of a series whose entry was already complete.

    Raises
    ------
    CacheMissError
        If the entry is not published (any more).
    CacheIntegrityError
        If its marker is invalid or its files are missing or cut short.
    """
    start = time.perf_counter()
    nbytes = cache.open(source.key).nbytes()
    row = {"series_key": source.series_key, "cache_key": source.key, "status": "skipped", "worker": worker_name()}
    return {**row, "seconds": time.perf_counter() - start, "bytes": nbytes}


def failure_fields(exc: BaseException) -> dict[str, Any]:
    """``status``, ``error_type`` and ``message`` of a report row for ``exc``."""
    message = str(exc).strip().splitlines()
    return {"status": "failed", "error_type": type(exc).__name__, "message": message[0] if message else repr(exc)}


def worker_name() -> str:
    """``host:pid`` of this process, the report's ``worker``."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _has_cuda() -> bool:
    import torch

    return bool(torch.cuda.is_available())
