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
"""

from __future__ import annotations

import json
import os
import tempfile
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from dicomml.errors import ManifestError
from dicomml.indexer.crawl import CrawlError, Entry
from dicomml.indexer.manifest import duckdb_connection
from dicomml.indexer.schema import ERRORS, SCHEMA_VERSION

__all__ = ["LISTING", "ManifestStore", "Plan"]

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
_KEY = "k.path = l.path AND k.size = l.size AND k.mtime_ns = l.mtime_ns"


@dataclass(frozen=True)
class Plan:
    """What a run must do after the diff."""

    n_listed: int
    n_to_read: int
    n_removed: int


def _listing_table(rows: list[tuple[str, str, int, int, str, int]]) -> pa.Table:
    if not rows:
        return LISTING.empty_table()
    return pa.table(dict(zip(LISTING.names, zip(*rows))), schema=LISTING)


def _write_atomic(table: pa.Table, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    pq.write_table(table, tmp, compression="zstd")
    os.replace(tmp, path)


class ManifestStore:
    """Writes one manifest folder (see :mod:`dicomml.indexer.schema` for the layout)."""

    def __init__(self, root: Path, meta: dict[str, Any]) -> None:
        self.root = root
        self.meta = meta
        self.run_id = uuid.uuid4().hex[:12]
        self._seq = 0

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
        try:
            for sub in ("instances", "errors", "series", "annotations", "_work"):
                (root / sub).mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=root / "_work"):
                pass
        except OSError as exc:
            raise ManifestError(
                f"{root}: the manifest folder cannot be written ({exc.strerror}); choose another -o folder",
                path=str(root),
            ) from exc
        meta_path = root / "manifest.json"
        meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
        if meta and meta.get("schema_version") != SCHEMA_VERSION:
            raise ManifestError(
                f"{root}: manifest schema version {meta.get('schema_version')} is not {SCHEMA_VERSION}; "
                "index into a new folder",
                path=str(root),
            )
        for key, value in (("include_phi", include_phi), ("salt_id", salt_id)):
            if meta and meta.get(key) != value:
                raise ManifestError(
                    f"{root}: the manifest was built with another {key} ({meta.get(key)!r}, now {value!r}); "
                    "rerun with the same setting or index into a new folder",
                    path=str(root),
                )
        meta.update(schema_version=SCHEMA_VERSION, include_phi=include_phi, salt_id=salt_id)
        return cls(root, meta)

    def parts(self, table: str) -> list[str]:
        """Partition files of a table, sorted."""
        return sorted(str(p) for p in (self.root / table).glob("*.parquet"))

    def count(self, table: str) -> int:
        """Rows of a table, from the Parquet footers."""
        return sum(pq.read_metadata(part).num_rows for part in self.parts(table))

    def write_part(self, table: str, data: pa.Table) -> None:
        """Add one partition to ``instances`` or ``errors``."""
        if data.num_rows:
            self._seq += 1
            _write_atomic(data, self.root / table / f"part-{self.run_id}-{self._seq:05d}.parquet")

    def write_single(self, table: str, data: pa.Table, name: str = "part-0.parquet") -> None:
        """Replace a table that is rebuilt whole each run (series, annotations, crawl errors)."""
        _write_atomic(data, self.root / table / name)

    def write_listing(self, found: Iterable[tuple[int, Entry | CrawlError]]) -> int:
        """Stream the crawl into ``_work/listing.parquet`` and ``errors/crawl.parquet``; return files found."""
        listing = self.root / "_work" / "listing.parquet"
        rows: list[tuple[str, str, int, int, str, int]] = []
        crawl_errors: list[dict[str, Any]] = []
        n = 0
        with pq.ParquetWriter(listing, LISTING) as writer:
            for source, item in found:
                if isinstance(item, CrawlError):
                    crawl_errors.append(
                        {"path": item.path, "stage": "crawl", "error_type": item.error_type, "message": item.message}
                    )
                    continue
                rows.append((item.path, item.folder, item.size, item.mtime_ns, item.open_path, source))
                n += 1
                if len(rows) >= _LISTING_BATCH:
                    writer.write_table(_listing_table(rows))
                    rows = []
            writer.write_table(_listing_table(rows))
        self.write_single("errors", pa.Table.from_pylist(crawl_errors, schema=ERRORS), "crawl.parquet")
        return n

    def _connect(self) -> duckdb.DuckDBPyConnection:
        con = duckdb_connection()
        con.execute(f"CREATE VIEW l AS SELECT * FROM read_parquet('{self.root / '_work' / 'listing.parquet'}')")
        known = [f"SELECT path, size, mtime_ns, filename FROM read_parquet({files!r}, filename=true)"
                 for files in (self.parts("instances"), [p for p in self.parts("errors") if not p.endswith("crawl.parquet")])
                 if files]
        if known:
            con.execute(f"CREATE VIEW k AS {' UNION ALL '.join(known)}")
        else:
            con.execute("CREATE VIEW k AS SELECT NULL::VARCHAR path, NULL::BIGINT size, NULL::BIGINT mtime_ns, "
                        "NULL::VARCHAR filename WHERE false")
        return con

    def plan(self, n_listed: int) -> Plan:
        """Drop recorded rows whose file is gone or changed; count the files to read.

        When the listing equals the one of the last complete run, nothing is
        compared or read. Otherwise that listing is forgotten first, so that a
        run killed while it changes the manifest is never taken for complete.
        """
        if self._listing_unchanged():
            return Plan(n_listed=n_listed, n_to_read=0, n_removed=0)
        self._indexed_listing.unlink(missing_ok=True)
        con = self._connect()
        stale = [row[0] for row in con.sql(f"SELECT DISTINCT filename FROM k ANTI JOIN l ON {_KEY}").fetchall()]
        removed = 0
        for part in stale:
            con.execute(f"CREATE OR REPLACE VIEW p AS SELECT * FROM read_parquet('{part}')")
            kept = con.sql(f"SELECT k.* FROM p k SEMI JOIN l ON {_KEY}").to_arrow_table()
            removed += pq.read_metadata(part).num_rows - kept.num_rows
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
        return Plan(n_listed=n_listed, n_to_read=int(n_to_read), n_removed=removed)

    @property
    def _indexed_listing(self) -> Path:
        return self.root / "_work" / "indexed.parquet"

    def _listing_unchanged(self) -> bool:
        """Whether this run's listing is, row for row, the listing the manifest fully reflects."""
        if not self._indexed_listing.exists():
            return False
        new, old = pq.ParquetFile(self.root / "_work" / "listing.parquet"), pq.ParquetFile(self._indexed_listing)
        if new.metadata.num_rows != old.metadata.num_rows:
            return False
        batches = zip(new.iter_batches(batch_size=_LISTING_BATCH), old.iter_batches(batch_size=_LISTING_BATCH))
        return all(a.equals(b) for a, b in batches)

    def mark_complete(self) -> None:
        """Record that the manifest now reflects this run's listing."""
        os.replace(self.root / "_work" / "listing.parquet", self._indexed_listing)

    def to_read(self) -> Iterator[pa.RecordBatch]:
        """The listed files that no recorded row matches, as listing record batches in path order."""
        con = self._connect()
        try:
            yield from con.sql(f"SELECT l.* FROM l ANTI JOIN k ON {_KEY} ORDER BY l.source, l.path").to_arrow_reader(4096)
        finally:
            con.close()

    def write_meta(self, **values: Any) -> None:
        """Update and atomically rewrite ``manifest.json``."""
        self.meta.update(values)
        tmp = self.root / "_work" / f"manifest.{self.run_id}.json"
        tmp.write_text(json.dumps(self.meta, indent=2, sort_keys=True))
        os.replace(tmp, self.root / "manifest.json")
