"""The manifest folder on disk: partitions, the file listing, and what a rerun must read.

Rows are streamed into Parquet partitions, each written to a temporary name
and renamed into place, so a reader (or a resumed run) never sees half a
partition. Incremental runs compare the new listing with the ``(path, size,
mtime_ns)`` already recorded in ``instances`` and ``errors``, in DuckDB over
the Parquet files, so memory stays bounded however large the tree:

- a listed file with no matching recorded row is read (new, changed, or left
  over by an interrupted run);
- a recorded row with no matching listed file is dropped (deleted or changed),
  by rewriting only the partitions that hold such rows.

A complete run records a digest of its listing (paths, sizes, mtimes, sources
and crawl errors) in ``manifest.json``. A rerun whose listing has the same
digest changes nothing: it writes no listing and starts no DuckDB. A run that
changes the manifest forgets the digest first, so a manifest without one was
left by a run that did not complete.

One run at a time: a run holds an advisory lock on ``_work/index.lock``
(``flock``; the OS releases it when the process ends), and a second run into
the same folder is refused. Readers take no lock: a run rewrites ``manifest.json``
(without the digest) before it changes a table and again when it is done, so a
reader finds a read that overlapped a change by comparing the file before and
after, and loads series only from a manifest that has its digest
(:meth:`~dicomml.indexer.manifest.Manifest.snapshot`).
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import json
import os
import struct
import uuid
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from operator import itemgetter
from pathlib import Path
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar

import pyarrow as pa
import pyarrow.parquet as pq

from dicomml.errors import ManifestError
from dicomml.indexer.crawl import CrawlError, Files
from dicomml.indexer.manifest import duckdb_connection, parquet_view, read_meta
from dicomml.indexer.schema import ERRORS, SCHEMA_VERSION
from dicomml.indexer.tables import column, from_rows
from dicomml.paths import os_reason, printable, storable_path

if TYPE_CHECKING:
    import duckdb

__all__ = ["LISTING", "ManifestStore", "Plan"]

_P = ParamSpec("_P")
_R = TypeVar("_R")

#: The crawl's output: one row per file found, with the source it came from.
LISTING = pa.schema(
    [
        pa.field("path", pa.string()),
        pa.field("folder", pa.string()),
        pa.field("size", pa.int64()),
        pa.field("mtime_ns", pa.int64()),
        pa.field("open_path", pa.string()),
        pa.field("source", pa.int32()),
    ]
)
_LISTING_BATCH = 50_000
#: Listing rows kept in memory; a longer listing is written to disk as it grows.
_LISTING_IN_MEMORY = 200_000
_KEY = "k.path = l.path AND k.size = l.size AND k.mtime_ns = l.mtime_ns"
#: Descriptors of the manifest locks this process holds. A forked child (a header-reading worker) closes its copies:
#: a flock lives while any copy is open, and a worker left behind by a killed run must not keep the manifest locked.
_HELD_LOCKS: set[int] = set()


def _close_held_locks() -> None:
    for fd in _HELD_LOCKS:
        os.close(fd)
    _HELD_LOCKS.clear()


os.register_at_fork(after_in_child=_close_held_locks)


@dataclass(frozen=True)
class Plan:
    """What a run must do after the diff."""

    n_listed: int
    n_to_read: int
    n_removed: int
    #: The listing is the one the manifest already reflects: nothing to do.
    unchanged: bool = False
    #: The last run did not complete: the derived tables may not match the rows.
    resumed: bool = False
    #: Rows dropped because their path is under none of this run's sources (counted when the sources were renamed).
    n_unnamed: int = 0


def _listing_table(found: list[tuple[int, Files]]) -> pa.Table:
    columns = _listing_columns(found)
    return pa.Table.from_arrays([column(columns[name], LISTING.field(name).type) for name in LISTING.names], schema=LISTING)


def _listing_columns(found: list[tuple[int, Files]]) -> dict[str, list[Any]]:
    """The listing's rows, as :data:`LISTING`'s columns, of the folders found."""
    columns: dict[str, list[Any]] = {name: [] for name in LISTING.names}
    for source, files in found:
        files = _storable(files)
        count = len(files.paths)
        columns["path"] += files.paths
        columns["folder"] += [files.folder] * count
        columns["size"] += files.sizes
        columns["mtime_ns"] += files.mtimes_ns
        columns["open_path"] += files.open_paths
        columns["source"] += [source] * count
    return columns


def _hash_files(digest: Any, source: int, files: Files) -> None:
    """Feed what defines a folder's files (``folder``, ``open_path`` follow from ``path``) to ``digest``.

    Plain bytes, not Arrow: building an Arrow array imports pandas, which a
    no-op rerun must not pay for.
    """
    digest.update(b"F" + struct.pack("<qi", len(files.paths), source))
    digest.update("\0".join(files.paths).encode("utf-8", "surrogateescape") + b"\0")
    digest.update(array("q", files.sizes).tobytes() + array("q", files.mtimes_ns).tobytes())


def _storable(files: Files) -> Files:
    """``files`` with its paths as the manifest stores them (see :func:`~dicomml.paths.storable_path`)."""
    try:  # one check per folder: nearly every name is valid UTF-8
        "\0".join([files.folder, *files.paths, *files.open_paths]).encode("utf-8")
        return files
    except UnicodeEncodeError:
        return files._replace(
            folder=storable_path(files.folder),
            paths=[storable_path(p) for p in files.paths],
            open_paths=[storable_path(p) for p in files.open_paths],
        )


def _write_atomic(table: pa.Table, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        pq.write_table(table, tmp, compression="zstd")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)  # gone once replaced; a failed write leaves no fragment


def _updating(method: Callable[Concatenate[ManifestStore, _P], _R]) -> Callable[Concatenate[ManifestStore, _P], _R]:
    """A method that changes the manifest folder: an OSError there (a full disk, a permission) becomes one ManifestError."""

    @functools.wraps(method)
    def wrapper(self: ManifestStore, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return method(self, *args, **kwargs)
        except ManifestError:
            raise
        except OSError as exc:
            raise ManifestError(
                f"{self.root}: the manifest could not be updated ({os_reason(exc)}); free space or fix the folder's "
                "permissions, then rerun: it resumes, and nothing this run wrote is taken for complete",
                path=str(self.root),
            ) from exc

    return wrapper


class ManifestStore:
    """Writes one manifest folder (see :mod:`dicomml.indexer.schema` for the layout)."""

    def __init__(self, root: Path, meta: dict[str, Any], lock: int = -1, *, resumed: bool = False) -> None:
        self.root = root
        self.meta = meta
        self._lock = lock  # the descriptor holding the run's flock; -1: none
        self.resumed = resumed  # the last run into this folder did not complete
        self.run_id = uuid.uuid4().hex[:12]
        self._seq = 0
        # This run's listing, set by write_listing: its digest, the folders found unless spilled to disk, the crawl errors.
        self._digest = ""
        self._found: list[tuple[int, Files]] = []
        self._spilled = False
        self._crawl_errors: list[dict[str, Any]] = []
        self._all_new = False  # set by plan: nothing recorded, the listing kept in memory

    @classmethod
    def open(cls, out: str | os.PathLike[str], *, include_phi: bool, salt_id: str) -> ManifestStore:
        """Open (or create) a manifest folder for writing.

        Raises
        ------
        ManifestError
            If the folder cannot be written, or holds a manifest built with
            another ``include_phi`` or another salt.
        """
        root = Path(out).expanduser().absolute()
        try:  # plain os calls: an unchanged rerun does little else
            for sub in ("instances", "errors", "series", "annotations", "_work"):
                if not os.path.isdir(root / sub):
                    os.makedirs(root / sub, exist_ok=True)
            probe = root / "_work" / f".probe-{uuid.uuid4().hex}"
            os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            os.unlink(probe)
            lock = os.open(root / "_work" / "index.lock", os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise ManifestError(
                f"{root}: the manifest folder cannot be written ({exc.strerror}); choose another -o folder",
                path=str(root),
            ) from exc
        try:  # held until close(), or the end of this process: a second run into the folder is refused
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(lock)
            busy = isinstance(exc, BlockingIOError)
            raise ManifestError(
                f"{root}: another dicomml index is updating it; wait until that run ends, or index into another folder"
                if busy
                else f"{root}: the manifest cannot be locked for this run ({os_reason(exc)}); index into a local folder",
                path=str(root),
            ) from None
        try:
            meta = cls._checked_meta(root, include_phi, salt_id)
        except BaseException:
            os.close(lock)
            raise
        _HELD_LOCKS.add(lock)
        meta_now = {**meta, "schema_version": SCHEMA_VERSION, "include_phi": include_phi, "salt_id": salt_id}
        # a manifest.json without a listing digest: the run that wrote it did not complete
        return cls(root, meta_now, lock, resumed=bool(meta) and "listing_digest" not in meta)

    @staticmethod
    def _checked_meta(root: Path, include_phi: bool, salt_id: str) -> dict[str, Any]:
        """``manifest.json`` ({} if none), refused if built with other settings than this run's."""
        meta_path = root / "manifest.json"
        meta = read_meta(meta_path) if meta_path.exists() else {}
        if meta and meta.get("schema_version") != SCHEMA_VERSION:
            raise ManifestError(
                f"{root}: manifest schema version {meta.get('schema_version')} is not {SCHEMA_VERSION}; index into a new folder",
                path=str(root),
            )
        for key, value in (("include_phi", include_phi), ("salt_id", salt_id)):
            if meta and meta.get(key) != value:
                raise ManifestError(
                    f"{root}: the manifest was built with another {key} ({meta.get(key)!r}, now {value!r}); "
                    "rerun with the same setting or index into a new folder",
                    path=str(root),
                )
        return meta

    def close(self) -> None:
        """Release the run's lock on the manifest."""
        if self._lock in _HELD_LOCKS:  # not in a forked child, which closed it
            _HELD_LOCKS.discard(self._lock)
            os.close(self._lock)
        self._lock = -1

    def __enter__(self) -> ManifestStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def parts(self, table: str) -> list[str]:
        """Partition files of a table, sorted."""
        return sorted(str(p) for p in (self.root / table).glob("*.parquet"))

    def count(self, table: str) -> int:
        """Rows of a table, from the Parquet footers."""
        return sum(pq.read_metadata(part).num_rows for part in self.parts(table))

    @_updating
    def write_part(self, table: str, data: pa.Table) -> None:
        """Add one partition to ``instances`` or ``errors``."""
        if data.num_rows:
            self._seq += 1
            _write_atomic(data, self.root / table / f"part-{self.run_id}-{self._seq:05d}.parquet")

    @_updating
    def write_single(self, table: str, data: pa.Table, name: str = "part-0.parquet") -> None:
        """Replace a table that is rebuilt whole each run (series, annotations, crawl errors)."""
        _write_atomic(data, self.root / table / name)

    @property
    def _listing(self) -> Path:
        return self.root / "_work" / "listing.parquet"

    def write_listing(self, found: Iterable[tuple[int, Files | CrawlError]]) -> int:
        """Take in the crawl and return the number of files found.

        The listing stays in memory up to ``_LISTING_IN_MEMORY`` rows (beyond,
        it streams to ``_work/listing.parquet``); :meth:`plan` writes it out
        only if it differs from the listing of the last complete run.
        """
        found_here: list[tuple[int, Files]] = []  # kept as found: a rerun that changes nothing needs only the digest
        crawl_errors: list[dict[str, Any]] = []
        digest = hashlib.blake2b(digest_size=16)
        writer = None
        n = pending = 0
        try:
            for source, item in found:
                if isinstance(item, CrawlError):
                    crawl_errors.append(
                        {
                            "path": storable_path(item.path),
                            "stage": "crawl",
                            "error_type": item.error_type,
                            "message": printable(item.message),
                        }
                    )
                    continue
                _hash_files(digest, source, item)
                found_here.append((source, item))
                n += len(item.paths)
                pending += len(item.paths)
                if n > _LISTING_IN_MEMORY and pending >= _LISTING_BATCH:
                    writer = writer or pq.ParquetWriter(self._listing, LISTING)
                    writer.write_table(_listing_table(found_here))
                    found_here, pending = [], 0
            if writer is not None:
                writer.write_table(_listing_table(found_here))
                found_here = []
        finally:
            if writer is not None:
                writer.close()
        digest.update(b"E" + json.dumps(crawl_errors).encode())
        self._digest, self._found, self._crawl_errors = digest.hexdigest(), found_here, crawl_errors
        self._spilled = writer is not None
        return n

    def _known(self) -> list[list[str]]:
        """The partitions of recorded files: ``instances``, then ``errors`` other than the crawl's, those that have any."""
        return [files for files in (self.parts("instances"), [p for p in self.parts("errors") if not p.endswith("crawl.parquet")]) if files]

    def _connect(self) -> duckdb.DuckDBPyConnection:
        con = duckdb_connection()
        parquet_view(con, "l", [str(self._listing)])
        known = self._known()
        for i, files in enumerate(known):  # union_by_name reads every footer now: a damaged partition is named here
            parquet_view(con, f"k{i}", files, filename=True, union_by_name=True)
        if known:
            con.execute(
                "CREATE VIEW k AS " + " UNION ALL ".join(f"SELECT path, size, mtime_ns, filename FROM k{i}" for i in range(len(known)))
            )
        else:
            con.execute(
                "CREATE VIEW k AS SELECT NULL::VARCHAR path, NULL::BIGINT size, NULL::BIGINT mtime_ns, NULL::VARCHAR filename WHERE false"
            )
        return con

    @_updating
    def plan(self, n_listed: int, roots: Sequence[str] | None = None) -> Plan:
        """Drop recorded rows whose file is gone or changed; count the files to read.

        When the listing has the digest of the last complete run, nothing is
        written, compared or read. Otherwise that digest is forgotten first,
        so that a run killed while it changes the manifest is never taken for
        complete; then the listing and the crawl errors are written.

        Parameters
        ----------
        n_listed
            Files found by the crawl.
        roots
            This run's source roots, given when the sources are not the last
            run's: dropped rows under none of them are counted in ``Plan.n_unnamed``.
        """
        if self.meta.get("listing_digest") == self._digest:
            self._listing.unlink(missing_ok=True)
            return Plan(n_listed=n_listed, n_to_read=0, n_removed=0, unchanged=True)
        if "listing_digest" in self.meta:  # even a None digest (an unreachable source)
            self.changing()
        self.write_single("errors", from_rows(self._crawl_errors, ERRORS), "crawl.parquet")
        if not self._spilled and not self._known():  # a new manifest: read every listed file, no diff to make
            self._all_new = True
            return Plan(n_listed=n_listed, n_to_read=n_listed, n_removed=0, resumed=self.resumed)
        if not self._spilled:
            pq.write_table(_listing_table(self._found), self._listing)
            self._found = []
        con = self._connect()
        stale = [row[0] for row in con.sql(f"SELECT DISTINCT filename FROM k ANTI JOIN l ON {_KEY}").fetchall()]
        removed = unnamed = 0
        # a root matches its own path (a file source) and what lies below it; an empty root (some remote sources) matches all
        under = " OR ".join("k.path = ? OR starts_with(k.path, ?)" for _ in roots or ())
        prefixes = [value for root in roots or () for value in (root, os.path.join(root, "") if root else "")]
        for part in stale:
            parquet_view(con, "p", [part])
            kept = con.sql(f"SELECT k.* FROM p k SEMI JOIN l ON {_KEY}").to_arrow_table()
            removed += pq.read_metadata(part).num_rows - kept.num_rows
            if under:
                unnamed += con.execute(f"SELECT count(*) FROM p k ANTI JOIN l ON {_KEY} WHERE NOT ({under})", prefixes).fetchall()[0][0]
            if kept.num_rows:
                schema = pq.read_schema(part)
                _write_atomic(kept.select(schema.names).cast(schema), Path(part))
            else:
                os.remove(part)
        if stale:  # the views named the partitions as they were
            con.close()
            con = self._connect()
        n_to_read = con.sql(f"SELECT count(*) FROM l ANTI JOIN k ON {_KEY}").fetchall()[0][0]
        con.close()
        return Plan(n_listed=n_listed, n_to_read=int(n_to_read), n_removed=removed, resumed=self.resumed, n_unnamed=unnamed)

    @_updating
    def changing(self, **values: Any) -> None:
        """Rewrite ``manifest.json`` with ``values`` and without the listing digest, before a table changes: its absence
        marks a run under way (readers load no series from it), the rewrite tells a read that overlaps it."""
        self.meta.pop("listing_digest", None)
        self.write_meta(**values)

    @_updating
    def mark_complete(self, **values: Any) -> None:
        """Write ``manifest.json`` with ``values`` and this run's listing digest (unless ``values`` give it): the run completed."""
        self.write_meta(**{"listing_digest": self._digest, **values})
        self._listing.unlink(missing_ok=True)

    def to_read(self) -> Iterator[tuple[str, str, int, int, str, int]]:
        """The listed files that no recorded row matches, as listing rows (:data:`LISTING`'s fields) in (source, path) order."""
        if self._all_new:  # the listing is still in memory and nothing is recorded: every file is read
            columns = _listing_columns(self._found)
            yield from sorted(zip(*(columns[name] for name in LISTING.names)), key=itemgetter(5, 0))
            return
        con = self._connect()
        try:
            for batch in con.sql(f"SELECT l.* FROM l ANTI JOIN k ON {_KEY} ORDER BY l.source, l.path").to_arrow_reader(4096):
                columns = batch.to_pydict()
                yield from zip(*(columns[name] for name in LISTING.names))
        finally:
            con.close()

    @_updating
    def write_meta(self, **values: Any) -> None:
        """Update and atomically rewrite ``manifest.json``."""
        self.meta.update(values)
        tmp = self.root / "_work" / f"manifest.{self.run_id}.json"
        try:
            tmp.write_text(json.dumps(self.meta, indent=2, sort_keys=True))
            os.replace(tmp, self.root / "manifest.json")
        finally:
            tmp.unlink(missing_ok=True)
