"""`index`: sources in, manifest out; crawl, diff, parallel scan, then series and annotations.

A rerun on an unchanged tree only walks it: the header reader (pydicom), the
worker processes and the progress bar start once there are files to read,
DuckDB once the tables change. The batches run on :mod:`dicomml.executor`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from dicomml.executor import Backend, Dask, InProcess, Processes, Progress, connect, run
from dicomml.indexer.crawl import Entry, Source, crawl, open_sources
from dicomml.indexer.manifest import Manifest
from dicomml.indexer.privacy import resolve_salt, salt_id, storable_source
from dicomml.indexer.schema import DERIVED_RULES
from dicomml.indexer.store import ManifestStore, Plan
from dicomml.paths import local_path
from dicomml.sources import Remote, with_options

if TYPE_CHECKING:
    from dicomml.indexer.scan import ScanOptions

__all__ = ["index"]

#: Files per task sent to a worker; local files of a large run go in batches of up to MAX_BATCH_FILES.
BATCH_FILES = 256
MAX_BATCH_FILES = 1024
#: Batches per worker a large local run is cut into: fewer round trips to the workers, still balanced at the end.
BATCHES_PER_WORKER = 8
#: Rows buffered before a partition is written.
PARTITION_ROWS = 20_000


def _tasks(
    rows: Iterator[tuple[str, str, int, int, str, int]], sources: Sequence[Source], options: ScanOptions, local_batch: int
) -> Iterator[tuple[list[Entry], ScanOptions]]:
    pending: list[Entry] = []
    current = None
    for path, folder, size, mtime_ns, open_path, source in rows:
        if current is not None and (source != current or len(pending) >= (local_batch if sources[current].local else BATCH_FILES)):
            yield pending, _with_fs(options, sources[current])
            pending = []
        current = source
        pending.append(Entry(local_path(path), local_path(folder), size, mtime_ns, local_path(open_path)))
    if pending and current is not None:
        yield pending, _with_fs(options, sources[current])


def _with_fs(options: ScanOptions, source: Source) -> ScanOptions:
    return options if source.local else dataclasses.replace(options, fs=source.fs)


def _scan(options: ScanOptions, entries: Sequence[Entry], started: Any) -> tuple[pa.Table, pa.Table]:
    """One batch (looked up at call time, so a patched scan_batch is used)."""
    from dicomml.indexer import scan

    return scan.scan_batch(entries, options, started)


def _describe(entry: Entry) -> str:
    return entry.path


@contextlib.contextmanager
def _backend(scheduler: Any, in_process: bool, workers: int, timeout_s: float) -> Iterator[Backend]:
    """Where the batches run: a Dask cluster, this process (no limit; memory:// and DICOMweb), or killable workers."""
    if scheduler is not None:
        with connect(scheduler) as client:
            yield Dask(client, name="dicomml-index")
    elif in_process:
        yield InProcess()
    else:  # a file that hangs or kills its worker becomes an error row
        yield Processes(workers, timeout_s=timeout_s)


def index(
    sources: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    *,
    workers: int | None = None,
    scheduler: Any = None,
    include_phi: bool = False,
    salt: str | bytes | None = None,
    timeout_s: float = 30.0,
    progress: bool = True,
    storage_options: dict[str, Any] | None = None,
    auth: Any = None,
    remote: Remote | None = None,
) -> Manifest:
    """Index DICOM files into a manifest folder, incrementally.

    Parameters
    ----------
    sources
        Local folders or files, fsspec URLs (``file://``, ``memory://``,
        ``s3://``, ``gs://``), DICOMweb servers (``dicomweb+https://host/root``,
        narrowed by ``/studies/{uid}``, ``/series/{uid}`` and QIDO-RS query
        parameters), or a :class:`dicomml.sources.ObjectList`; one or several.
        The manifest mirrors the sources of its last run: rows of a source
        not named again are dropped, so name every source on each run.
    out
        The manifest folder; created if absent, updated if it holds a manifest.
    workers
        Worker processes reading headers; default ``os.cpu_count()``.
        ``memory://`` and DICOMweb sources are read in this process.
    scheduler
        A Dask scheduler address (``"tcp://host:8786"``) or a
        ``distributed.Client``: read on that cluster instead.
    include_phi
        Keep direct identifiers (names, IDs, birth date, addresses, accession,
        institution and physicians). Default: not stored.
    salt
        Salt of ``patient_key``; default: the user's salt in
        ``~/.config/dicomml/salt``, created on first use.
    timeout_s
        Per-file time limit in seconds: a worker process still reading a
        file after it is stopped and replaced, and the file becomes an error
        row (``timeout``); a worker that dies gives a ``crashed`` row. ``0``
        reads in this process, without a limit.
    progress
        Show a progress bar.
    storage_options
        fsspec options of bucket sources (``{"anon": True}``,
        ``{"endpoint_url": ...}``, ``{"profile": ...}``).
    auth
        Credentials of DICOMweb sources: a bearer token or ``(user, password)``.
        Neither is written anywhere.
    remote
        How to reach remote sources (concurrency, retries, time limits; see
        :class:`dicomml.sources.Remote`); ``storage_options`` and ``auth``
        replace its own where given.

    Returns
    -------
    Manifest
        Carrying ``remote`` (with the options and credentials), so loads from it read the same way.

    Raises
    ------
    SourceNotFoundError
        If a source does not exist.
    ManifestError
        If ``out`` cannot be written, is being updated by another run, is
        damaged, or holds a manifest built with another ``include_phi`` or salt.

    Examples
    --------
    >>> m = dicomml.index("/data/dicom", "manifest")  # doctest: +SKIP
    >>> m.series[["series_key", "modality", "usable", "reason"]]  # doctest: +SKIP
    """
    started = time.perf_counter()
    remote = with_options(remote, storage_options, auth)
    resolved = open_sources(sources, remote=remote)
    salt_bytes = resolve_salt(salt)
    with ManifestStore.open(out, include_phi=include_phi, salt_id=salt_id(salt_bytes)) as store:  # locked for the run
        n_listed = store.write_listing(crawl(resolved))
        source_names = [storable_source(os.fspath(s), include_phi) for s in _source_names(sources)]
        renamed = store.meta.get("sources") not in (None, source_names)
        # a remote root is not spelled as its rows' URLs: its rows are never counted as of sources no longer named
        plan = store.plan(n_listed, roots=[s.root if s.local else "" for s in resolved] if renamed else None)
        derived = store.meta.get("derived_rules") == DERIVED_RULES  # series and annotations follow this dicomml's rules
        if plan.unchanged and derived:  # the recorded counts stand: nothing is written, unless the sources are named otherwise
            if store.meta.get("sources") != source_names:
                store.mark_complete(sources=source_names)
            unchanged = Manifest(store.root, remote=remote)
            unchanged.meta["last_run"] = _last_run(plan, started)  # this run's, not kept: manifest.json keeps the last change's
            return unchanged
        buffered: dict[str, list[pa.Table]] = {"instances": [], "errors": []}
        # a run that only removes rows or rebuilds the derived tables never imports the header reader
        retried = plan.n_to_read > 0 and _read(
            store, resolved, plan.n_to_read, buffered, include_phi, salt_bytes, workers, scheduler, timeout_s, progress
        )
        with ThreadPoolExecutor(1) as pool:  # the last partition is written (Parquet releases the GIL) while DuckDB is imported
            last = pool.submit(_flush, store, buffered)
            from dicomml.indexer.series import annotations_table, series_table

            last.result()
        # a run that did not complete may have changed the rows without rebuilding the tables derived from them
        if plan.n_to_read or plan.n_removed or plan.resumed or not derived or not store.parts("series"):
            store.changing(sources=source_names)  # Manifest reads the sources
            con = Manifest(store.root).connect()
            try:
                series = series_table(con)
                store.write_single("series", series)
                store.write_single("annotations", annotations_table(con, series))
            finally:
                con.close()
        store.mark_complete(
            sources=source_names,
            counts={table: store.count(table) for table in ("instances", "series", "annotations", "errors")},
            derived_rules=DERIVED_RULES,
            last_run=_last_run(plan, started),
            **({"listing_digest": None} if retried else {}),  # not the listing's final state: a rerun diffs again
        )
        return Manifest(store.root, remote=remote)


def _read(
    store: ManifestStore,
    resolved: Sequence[Source],
    n_to_read: int,
    buffered: dict[str, list[pa.Table]],
    include_phi: bool,
    salt: bytes,
    workers: int | None,
    scheduler: Any,
    timeout_s: float,
    progress: bool,
) -> bool:
    """Read the planned files on their backend into ``buffered`` (flushed by partition).

    True if a file failed in a way the next run reads it again for (:data:`~dicomml.indexer.scan.RETRIED_ERRORS`:
    a server or bucket unreachable, a permission, a time limit, a worker killed).
    """
    from dicomml.indexer.scan import RETRIED_ERRORS, ScanOptions, failure_rows

    options = ScanOptions(include_phi=include_phi, salt=salt)
    n_workers = min(workers or os.cpu_count() or 1, -(-n_to_read // BATCH_FILES))
    local_batch = min(MAX_BATCH_FILES, max(BATCH_FILES, -(-n_to_read // (BATCHES_PER_WORKER * max(n_workers, 1)))))
    tasks = ((options, entries) for entries, options in _tasks(store.to_read(), resolved, options, local_batch))
    # memory:// lives in this process; a DICOMweb source keeps here the metadata its walk read
    in_memory = any(s.fs is not None and {"memory", "dicomweb"} & set(s.fs.protocol) for s in resolved)
    retried = False
    with (
        Progress(n_to_read, unit="file", desc="dicomml index", enabled=progress) as bar,
        _backend(scheduler, timeout_s <= 0 or in_memory, n_workers, timeout_s) as backend,
    ):
        for outcome in run(_scan, tasks, backend, describe=_describe, progress=bar, failed_in=lambda r: r[1].num_rows):
            instances, errors = outcome.result or (None, failure_rows([]))
            if instances is not None:
                buffered["instances"].append(instances)
            errors = pa.concat_tables([errors, failure_rows(outcome.failures)]) if outcome.failures else errors
            buffered["errors"].append(errors)
            retried = retried or not RETRIED_ERRORS.isdisjoint(errors.column("error_type").to_pylist())
            if sum(t.num_rows for t in buffered["instances"]) >= PARTITION_ROWS:
                _flush(store, buffered)
    return retried


def _last_run(plan: Plan, started: float) -> dict[str, Any]:
    return {
        "files_listed": plan.n_listed,
        "files_read": plan.n_to_read,
        "rows_removed": plan.n_removed,
        "rows_of_unnamed_sources": plan.n_unnamed,
        "seconds": round(time.perf_counter() - started, 3),
    }


def _source_names(sources: Any) -> list[Any]:
    return [sources] if isinstance(sources, (str, os.PathLike)) else list(sources)


def _flush(store: ManifestStore, buffered: dict[str, list[pa.Table]]) -> None:
    for table, parts in buffered.items():
        if parts:
            store.write_part(table, pa.concat_tables(parts))
        parts.clear()
