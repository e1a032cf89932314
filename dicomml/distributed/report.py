"""The run report of a preprocessing run: one row per series, Parquet, written atomically.

Schema (:data:`REPORT_SCHEMA`)::

    series_key  string   the manifest series key
    cache_key   string   its cache entry key under the run's config
    status      string   done (computed by this run) | skipped (complete when the run started) | failed
    error_type  string   exception class of a failure, else null
    message     string   its one-line message, else null
    seconds     float64  wall time of the task (null if its worker died)
    bytes       int64    bytes of the entry on disk (null if failed)
    worker      string   host:pid of the process that ran it (null if unknown)
    device      string   cpu or cuda[:n], where resampling ran (null if unknown)
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import fsspec
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem

from dicomml.errors import OutputError
from dicomml.paths import os_reason

__all__ = ["REPORT_SCHEMA", "STATUSES", "RunReport", "check_report_path", "report_table", "write_report"]

#: Values of the ``status`` column.
STATUSES = ("done", "skipped", "failed")

REPORT_SCHEMA = pa.schema(
    [
        pa.field("series_key", pa.string(), nullable=False),
        pa.field("cache_key", pa.string()),
        pa.field("status", pa.string(), nullable=False),
        pa.field("error_type", pa.string()),
        pa.field("message", pa.string()),
        pa.field("seconds", pa.float64()),
        pa.field("bytes", pa.int64()),
        pa.field("worker", pa.string()),
        pa.field("device", pa.string()),
    ]
)


@dataclass(frozen=True)
class RunReport:
    """What :func:`dicomml.preprocess` did.

    Attributes
    ----------
    table
        One row per selected series, columns of :data:`REPORT_SCHEMA`.
    path
        Where the Parquet report was written (a path or fsspec URL); None when
        it could not be, on a run that had nothing to compute (a read-only
        cache holding every entry).
    seconds
        Wall time of the run, cluster start included.
    unit
        What a row is: ``"series"`` (a series or study) or ``"images"`` (``preprocess --images``).

    Examples
    --------
    >>> report = dicomml.preprocess("manifest", "ct_1mm", "cache")  # doctest: +SKIP
    >>> report.counts  # doctest: +SKIP
    {'done': 118, 'skipped': 0, 'failed': 2}
    """

    table: pd.DataFrame
    path: str | None
    seconds: float
    unit: str = "series"

    @property
    def counts(self) -> dict[str, int]:
        """Number of series per status (every status present, zeros included)."""
        found = self.table["status"].value_counts()
        return {s: int(found.get(s, 0)) for s in STATUSES}

    @property
    def failed(self) -> pd.DataFrame:
        """The rows of failed series."""
        return self.table[self.table["status"] == "failed"]

    def summary(self, max_failures: int = 5) -> str:
        """The final lines: counts, throughput, report path, then the first failures.

        Throughput counts every series the run settled (done or skipped) and the
        bytes it wrote (done entries only).
        """
        counts = self.counts
        settled = counts["done"] + counts["skipped"]
        written = float(self.table.loc[self.table["status"] == "done", "bytes"].fillna(0).sum())
        rate = settled / self.seconds if self.seconds > 0 else float("inf")
        lines = [
            f"dicomml preprocess: {len(self.table)} {self.unit} in {self.seconds:.1f} s: "
            + ", ".join(f"{n} {s}" for s, n in counts.items())
            + f"; {rate:.2f} {self.unit}/s, {written / 1e6 / max(self.seconds, 1e-9):.1f} MB/s written; "
            + (f"report {self.path}" if self.path is not None else "no report written")
        ]
        for row in self.failed.head(max_failures).itertuples(index=False):
            lines.append(f"  failed {row.series_key}: {row.error_type}: {row.message}")
        if len(self.failed) > max_failures:
            lines.append(f"  ... {len(self.failed) - max_failures} more failures in the report")
        return "\n".join(lines)


def check_report_path(fs: fsspec.AbstractFileSystem, path: str) -> None:
    """Refuse a report path that is an existing folder: the report is a file, and a run checks before it starts.

    Raises
    ------
    OutputError
        If ``path`` is a folder on ``fs``.

    Examples
    --------
    >>> check_report_path(*fsspec.core.url_to_fs("/data/reports"))  # doctest: +SKIP
    Traceback (most recent call last):
    ...
    dicomml.errors.OutputError: /data/reports: is a folder; give the run report a file name, e.g. /data/reports/report.parquet
    """
    try:
        folder = fs.isdir(path)
    except OSError:  # unreachable now: writing the report says why
        folder = False
    if folder:
        name = path if isinstance(fs, LocalFileSystem) else fs.unstrip_protocol(path)
        raise OutputError(f"{name}: is a folder; give the run report a file name, e.g. {name.rstrip('/')}/report.parquet", path=path)


def report_table(rows: Iterable[Mapping[str, Any]]) -> pa.Table:
    """Report rows as a table of :data:`REPORT_SCHEMA` (missing columns null)."""
    return pa.Table.from_pylist([{name: row.get(name) for name in REPORT_SCHEMA.names} for row in rows], schema=REPORT_SCHEMA)


def write_report(rows: Iterable[Mapping[str, Any]], fs: fsspec.AbstractFileSystem, path: str) -> pd.DataFrame:
    """Write report rows as Parquet at ``path`` of ``fs``, atomically (temporary name, then rename).

    Parameters
    ----------
    rows
        Mappings with the columns of :data:`REPORT_SCHEMA` (missing ones are null).
    fs, path
        The filesystem (fsspec) and the path of the ``.parquet`` file on it; its
        folder is created.

    Returns
    -------
    pandas.DataFrame
        The rows as written.

    Raises
    ------
    OutputError
        If the file cannot be written (a full disk, a permission, ``path`` is a
        folder); no partial file is left.

    Examples
    --------
    >>> fs, path = fsspec.core.url_to_fs("report.parquet")  # doctest: +SKIP
    >>> write_report([{"series_key": "3f2a", "status": "done"}], fs, path)  # doctest: +SKIP
    """
    table = report_table(rows)
    parent = path.rsplit("/", 1)[0] if "/" in path else "."
    tmp = f"{parent}/.{path.rsplit('/', 1)[-1]}.{uuid.uuid4().hex}.tmp"
    check_report_path(fs, path)  # a rename onto a folder would move the report into it
    try:
        fs.makedirs(parent, exist_ok=True)
        with fs.open(tmp, "wb") as f:
            pq.write_table(table, f)
        fs.mv(tmp, path)  # atomic rename on POSIX; one PUT on object stores
    except OSError as exc:
        with contextlib.suppress(OSError):
            fs.rm(tmp)
        raise OutputError(f"{path}: cannot write the run report ({os_reason(exc)})", path=path) from exc
    return table.to_pandas()
