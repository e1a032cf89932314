"""Read a batch of files into ``instances`` and ``errors`` rows; runs in worker processes.

The failure policy is the indexer's: a bad file becomes an ``errors`` row and
the batch goes on. The per-file time limit is kept by :mod:`dicomml.executor`,
which stops the worker process itself; :func:`failure_rows` records those files.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from dicomml.errors import DicomMLError, InvalidDicomFileError, RemoteSourceError, SourceNotFoundError
from dicomml.executor import Failure
from dicomml.indexer.crawl import Entry
from dicomml.indexer.header import Layouts, is_dicom_prefix, read_file_header
from dicomml.indexer.records import DICOMDIR_SOP_CLASS, instance_rows
from dicomml.indexer.schema import ERRORS, instances_schema
from dicomml.indexer.tables import from_rows
from dicomml.paths import printable, storable_path

__all__ = ["RETRIED_ERRORS", "ScanOptions", "failure_rows", "scan_batch"]

#: Error types of a failure that need not happen again (a permission fixed, a disk or server less loaded, a worker
#: process killed by the system): their rows record a size no listing has, so that the next run reads the file again.
RETRIED_ERRORS = frozenset({"unreadable", "timeout", "crashed", "unreachable"})


@dataclass(frozen=True)
class ScanOptions:
    """What a worker needs to read files.

    Attributes
    ----------
    include_phi
        Keep direct identifiers.
    salt
        Salt of ``patient_key``.
    fs
        The :mod:`dicomml.sources` object of remote entries (bucket, DICOMweb
        server); None for local files.
    """

    include_phi: bool
    salt: bytes = field(repr=False)  # a repr lands in logs and tracebacks (Dask's too); the salt must not
    fs: Any = None


def _read_entry(
    entry: Entry, options: ScanOptions, memo: dict[tuple[Any, ...], Any], layouts: Layouts, fetched: dict[str, Any]
) -> list[dict[str, Any]]:
    if options.fs is None:
        f = open(entry.open_path, "rb")  # noqa: SIM115 - closed below
        size = os.fstat(f.fileno()).st_size
    else:  # a remote source fetched the batch's headers together
        f = fetched.pop(entry.open_path, None) or options.fs.open(entry.open_path, "rb")
        size = f.size
    with f:
        header = read_file_header(f, size, entry.path, layouts)
    if header.media_storage_sop_class == DICOMDIR_SOP_CLASS:
        raise _DicomDir()
    rows = instance_rows(header, entry.path, entry.folder, include_phi=options.include_phi, salt=options.salt, memo=memo)
    for row in rows:
        row.update(path=storable_path(entry.path), folder=storable_path(entry.folder), size=entry.size, mtime_ns=entry.mtime_ns)
    return rows


class _DicomDir(Exception):
    """A DICOMDIR: recognized, recorded, not indexed as an image."""


def _error_type(exc: BaseException, entry: Entry, options: ScanOptions) -> str:
    if isinstance(exc, _DicomDir):
        return "dicomdir"
    if isinstance(exc, RemoteSourceError):
        return "unreachable"
    if isinstance(exc, OSError) and not isinstance(exc, DicomMLError):
        return "unreadable"
    if isinstance(exc, InvalidDicomFileError) and not _starts_like_dicom(entry, options):
        return "not_dicom"
    return "invalid"


def _starts_like_dicom(entry: Entry, options: ScanOptions) -> bool:
    opener = open if options.fs is None else options.fs.open
    try:
        with opener(entry.open_path, "rb") as f:
            return is_dicom_prefix(f.read(132))
    except OSError:
        return False


def _message(exc: BaseException, entry: Entry, options: ScanOptions) -> str:
    if isinstance(exc, _DicomDir):
        return f"{entry.path}: DICOMDIR (Media Storage Directory); recognized, not indexed as an image"
    if isinstance(exc, OSError) and not isinstance(exc, DicomMLError):  # open or read refused: the OS's reason, not its repr
        reason = exc.strerror or type(exc).__name__
        if isinstance(exc, FileNotFoundError):
            return f"{entry.path}: cannot be read ({reason}); it was removed or renamed while the index ran, index again"
        hint = "check permissions" if isinstance(exc, PermissionError) else "check the disk"
        return f"{entry.path}: cannot be read ({reason}); {hint}, the next index reads it again"
    text = str(exc) or type(exc).__name__
    return text if entry.path in text else f"{entry.path}: {text}"


def _exception(exc: BaseException) -> str | None:
    """The ``exception`` column: dicomml's class where one fits (a file gone), else the builtin's; None for a DICOMDIR, no failure."""
    if isinstance(exc, _DicomDir):
        return None
    if isinstance(exc, FileNotFoundError) and not isinstance(exc, DicomMLError):
        return SourceNotFoundError.__name__
    return type(exc).__name__


def _error_row(entry: Entry, error_type: str, exception: str | None, tag: str | None, message: str) -> dict[str, Any]:
    return {
        "path": storable_path(entry.path),
        "folder": storable_path(entry.folder),
        "size": -1 if error_type in RETRIED_ERRORS else entry.size,  # a size no listing has: the next run reads the file again
        "mtime_ns": entry.mtime_ns,
        "stage": "read",
        "error_type": error_type,
        "exception": exception,
        "tag": tag,
        "message": printable(message),
    }


def failure_rows(failures: Sequence[Failure[Entry]]) -> pa.Table:
    """``errors`` rows of files whose worker was stopped (``timeout``), died or raised outside the per-file capture (``crashed``)."""
    return from_rows(
        [_error_row(f.item, "timeout" if f.kind == "timeout" else "crashed", f.error_type, None, f.message) for f in failures],
        ERRORS,
    )


def scan_batch(entries: Sequence[Entry], options: ScanOptions, started: Callable[[int], None] | None = None) -> tuple[pa.Table, pa.Table]:
    """Read a batch of files.

    Parameters
    ----------
    entries
        Files to read.
    options
        See :class:`ScanOptions`.
    started
        Called with ``i`` before file ``i`` is read (the executor's clock).

    Returns
    -------
    (pyarrow.Table, pyarrow.Table)
        ``instances`` rows and ``errors`` rows of the batch.

    Examples
    --------
    >>> inst, errs = scan_batch(entries, ScanOptions(include_phi=False, salt=b"s"))  # doctest: +SKIP
    """
    rows: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    memo: dict[tuple[Any, ...], Any] = {}  # decoded header values and rows, shared within the batch
    layouts = Layouts()
    fetched = options.fs.prefetch(entries) if options.fs is not None else {}
    for i, entry in enumerate(entries):
        if started is not None:
            started(i)
        try:
            rows.extend(_read_entry(entry, options, memo, layouts, fetched))
        except Exception as exc:  # the indexer's policy: record and go on
            errors.append(
                _error_row(
                    entry, _error_type(exc, entry, options), _exception(exc), getattr(exc, "tag", None), _message(exc, entry, options)
                )
            )
    return (
        from_rows(rows, instances_schema(options.include_phi)),
        from_rows(errors, ERRORS),
    )
