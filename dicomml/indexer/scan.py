"""Read a batch of files into ``instances`` and ``errors`` rows; runs in worker processes.

The failure policy is the indexer's: a bad file becomes an ``errors`` row and
the batch goes on. A per-file time limit (``SIGALRM``, where the worker runs
tasks on its main thread) turns a hang into an error row too.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, BinaryIO

import pyarrow as pa

from dicomml.paths import printable, storable_path
from dicomml.errors import DicomMLError, InvalidDicomFileError
from dicomml.indexer.crawl import Entry
from dicomml.indexer.header import Header, NeedMoreBytes, is_dicom_prefix, read_header
from dicomml.indexer.records import DICOMDIR_SOP_CLASS, instance_rows
from dicomml.indexer.schema import ERRORS, instances_schema

__all__ = ["FileTimeoutError", "ScanOptions", "scan_batch"]

#: Bytes read first; most classic headers fit, and the walk asks for more when not.
PREFIX_BYTES = 64 * 1024


class FileTimeoutError(TimeoutError):
    """Reading one file took longer than the per-file limit."""


@dataclass(frozen=True)
class ScanOptions:
    """What a worker needs to read files.

    Attributes
    ----------
    include_phi
        Keep direct identifiers.
    salt
        Salt of ``patient_key``.
    timeout_s
        Per-file time limit, seconds.
    fs
        fsspec filesystem of the entries; None for local files.
    """

    include_phi: bool
    salt: bytes
    timeout_s: float = 30.0
    fs: Any = None


def _alarm(signum: int, frame: Any) -> None:
    raise FileTimeoutError("per-file time limit reached")


@contextmanager
def _time_limits(enabled: bool) -> Iterator[bool]:
    """Install the SIGALRM handler for the batch (main thread only); yields whether limits apply."""
    usable = enabled and hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
    if not usable:
        yield False
        return
    previous = signal.signal(signal.SIGALRM, _alarm)
    try:
        yield True
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _read_header(f: BinaryIO, size: int, path: str) -> Header:
    buf = f.read(min(size, PREFIX_BYTES)) if size else b""

    def read_at(offset: int, n: int) -> bytes:
        f.seek(offset)
        return f.read(n)

    while True:
        try:
            return read_header(buf, size, path, read_at)
        except NeedMoreBytes as more:
            want = min(size, max(int(more.args[0]), 2 * len(buf)))
            f.seek(len(buf))
            chunk = f.read(want - len(buf))
            if not chunk:
                raise InvalidDicomFileError(
                    f"{path}: the file ended at byte {len(buf)} while {size} bytes were expected; "
                    "it changed while being indexed, index again",
                    path=path,
                ) from None
            buf += chunk


def _read_entry(entry: Entry, options: ScanOptions, memo: dict[tuple[Any, ...], Any]) -> list[dict[str, Any]]:
    if options.fs is None:
        f = open(entry.open_path, "rb")  # noqa: SIM115 - closed below
        size = os.fstat(f.fileno()).st_size
    else:
        f = options.fs.open(entry.open_path, "rb")
        size = entry.size
    with f:
        header = _read_header(f, size, entry.path)
    if header.media_storage_sop_class == DICOMDIR_SOP_CLASS:
        raise _DicomDir()
    rows = instance_rows(
        header, entry.path, entry.folder, include_phi=options.include_phi, salt=options.salt, memo=memo
    )
    for row in rows:
        row.update(path=storable_path(entry.path), folder=storable_path(entry.folder), size=entry.size, mtime_ns=entry.mtime_ns)
    return rows


class _DicomDir(Exception):
    """A DICOMDIR: recognized, recorded, not indexed as an image."""


def _error_type(exc: BaseException, entry: Entry, options: ScanOptions) -> str:
    if isinstance(exc, _DicomDir):
        return "dicomdir"
    if isinstance(exc, FileTimeoutError):
        return "timeout"
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
    if isinstance(exc, FileTimeoutError):
        return f"{entry.path}: reading the header took over {options.timeout_s:g} s; skipped"
    text = str(exc) or type(exc).__name__
    return text if entry.path in text else f"{entry.path}: {text}"


def scan_batch(entries: Sequence[Entry], options: ScanOptions) -> tuple[pa.Table, pa.Table]:
    """Read a batch of files.

    Parameters
    ----------
    entries
        Files to read.
    options
        See :class:`ScanOptions`.

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
    memo: dict[tuple[Any, ...], Any] = {}  # decoded header values, shared within the batch
    with _time_limits(options.timeout_s > 0) as limited:
        for entry in entries:
            try:
                if limited:
                    signal.setitimer(signal.ITIMER_REAL, options.timeout_s)
                try:
                    rows.extend(_read_entry(entry, options, memo))
                finally:
                    if limited:
                        signal.setitimer(signal.ITIMER_REAL, 0)
            except Exception as exc:  # the indexer's policy: record and go on
                errors.append(
                    {
                        "path": storable_path(entry.path),
                        "folder": storable_path(entry.folder),
                        "size": entry.size,
                        "mtime_ns": entry.mtime_ns,
                        "stage": "read",
                        "error_type": _error_type(exc, entry, options),
                        "exception": type(exc).__name__,
                        "tag": getattr(exc, "tag", None),
                        "message": printable(_message(exc, entry, options)),
                    }
                )
    return (
        pa.Table.from_pylist(rows, schema=instances_schema(options.include_phi)),
        pa.Table.from_pylist(errors, schema=ERRORS),
    )
