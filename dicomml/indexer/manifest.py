"""`Manifest`: open an indexed folder and query it with pandas or DuckDB."""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar

import pyarrow as pa
import pyarrow.parquet as pq

from dicomml.errors import ManifestError, SeriesNotFoundError
from dicomml.indexer.folder import TABLES, table_files
from dicomml.indexer.schema import ANNOTATIONS, ERRORS, SCHEMA_VERSION, SERIES, instances_schema
from dicomml.indexer.tables import column, empty
from dicomml.sources._remote import Remote

if TYPE_CHECKING:
    import duckdb
    import pandas as pd

__all__ = ["Manifest", "TABLES", "damaged", "duckdb_connection", "parquet_view", "read_meta"]

_T = TypeVar("_T")
_P = ParamSpec("_P")


def duckdb_connection() -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection without the terminal progress bar.

    Inside a Jupyter kernel DuckDB refuses to change that setting unless
    ipywidgets is installed; the default is kept then, which is harmless.
    """
    import duckdb  # on first query: opening a manifest stays cheap

    con = duckdb.connect()
    try:
        con.execute("SET enable_progress_bar = false")
    except duckdb.InvalidInputException:
        pass
    return con


def parquet_view(con: duckdb.DuckDBPyConnection, name: str, files: list[str], **options: Any) -> None:
    """Create (or replace) the view ``name`` over Parquet ``files``; the paths are passed as values, never pasted into SQL.

    Raises
    ------
    ManifestError
        If a file read here (the first; with ``union_by_name``, each) is not Parquet: the manifest is damaged.
    """
    import duckdb

    try:
        con.read_parquet(files, **options).create_view(name, replace=True)
    except duckdb.InvalidInputException as exc:  # DuckDB names the file: "No magic bytes found at end of file '...'"
        reason = " ".join(str(exc).split())
        named = next((f for f in files if f in reason), files[0])
        raise damaged(named, reason.replace(f" '{named}'", "")) from exc


def damaged(file: str | os.PathLike[str], reason: str) -> ManifestError:
    """The error for a manifest file that cannot be parsed (truncated, overwritten), with the way out."""
    file = Path(file)
    root = file.parent if file.name == "manifest.json" else file.parent.parent
    return ManifestError(
        f"{file}: the manifest is damaged ({reason}); delete the manifest folder {root} and index again",
        path=str(file),
    )


def read_meta(path: Path) -> dict[str, Any]:
    """``manifest.json`` at ``path``, parsed.

    Raises
    ------
    ManifestError
        If it does not hold a JSON object.
    """
    try:
        meta = json.loads(path.read_bytes())
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError alike
        raise damaged(path, " ".join(str(exc).split())) from exc
    if not isinstance(meta, dict):
        raise damaged(path, f"a JSON {type(meta).__name__}, not an object")
    return meta


def _stamp(meta_path: Path) -> tuple[int, ...] | None:
    """What changes whenever ``manifest.json`` is replaced (it is written to a temporary name and renamed); None without one."""
    try:
        info = os.stat(meta_path)
    except FileNotFoundError:
        return None
    return (info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)


def _missing(root: Path) -> ManifestError:
    return ManifestError(f"{root}: no manifest here (manifest.json missing); build one with `dicomml index`", path=str(root))


def _changed(root: Path) -> ManifestError:
    return ManifestError(
        f"{root}: the manifest changed while it was read (a `dicomml index` run updated it); read it again", path=str(root)
    )


def _of_complete_run(
    method: Callable[Concatenate[Manifest, _P], _T],
) -> Callable[Concatenate[Manifest, _P], _T]:
    """Rows that series are loaded or cached from: only from a manifest whose last index run finished
    (a run under way has dropped the changed files' rows and not yet read them again)."""

    @functools.wraps(method)
    def read(self: Manifest, *args: _P.args, **kwargs: _P.kwargs) -> _T:
        with self.snapshot(complete=True):
            return method(self, *args, **kwargs)

    return read


class Manifest:
    """A manifest folder written by :func:`dicomml.index`.

    Tables are read on demand, never cached: ``.instances``, ``.series``,
    ``.annotations`` and ``.errors`` return pandas DataFrames, and
    :meth:`sql` queries them in DuckDB without loading them into pandas.
    polars and any Parquet reader read the same files
    (``MANIFEST/<table>/*.parquet``).

    Parameters
    ----------
    path
        The manifest folder.
    remote
        How loads from this manifest reach remote files (buckets, DICOMweb
        servers): storage options, credentials, retries; see
        :class:`dicomml.sources.Remote`. Default: no credentials, default
        options. :func:`dicomml.index` returns a manifest carrying the
        options it was given.

    Raises
    ------
    ManifestError
        If the folder holds no manifest, one of another schema version, or
        a damaged ``manifest.json``. Reading a damaged table file raises it
        too, and so does a read that a :func:`dicomml.index` run into the
        folder changed; series are not loaded from a manifest whose last
        index run has not finished (:attr:`complete`).

    Examples
    --------
    >>> m = Manifest("manifest")  # doctest: +SKIP
    >>> m.sql("SELECT modality, count(*) n FROM series GROUP BY modality")  # doctest: +SKIP
    """

    @classmethod
    def open(cls, manifest: Manifest | str | os.PathLike[str]) -> Manifest:
        """``manifest`` itself when it is a Manifest, else the Manifest at that path."""
        return manifest if isinstance(manifest, Manifest) else cls(manifest)

    def __init__(self, path: str | os.PathLike[str], *, remote: Remote | None = None) -> None:
        self.path = Path(path).expanduser().absolute()
        self.remote = remote or Remote()
        meta_path = self.path / "manifest.json"
        self._stamp = _stamp(meta_path)
        if self._stamp is None or not meta_path.is_file():
            raise _missing(self.path)
        self.meta = read_meta(meta_path)
        if self.meta.get("schema_version") != SCHEMA_VERSION:
            raise ManifestError(
                f"{self.path}: manifest schema version {self.meta.get('schema_version')!r} is not "
                f"{SCHEMA_VERSION}; index again into a new folder",
                path=str(self.path),
            )

    @property
    def complete(self) -> bool:
        """False while the last :func:`dicomml.index` into it has not finished (or was killed): its tables may be
        partial or stale until a rerun completes. Only a complete run records its listing's digest."""
        return "listing_digest" in self.meta

    @contextmanager
    def snapshot(self, complete: bool = False) -> Iterator[None]:
        """Reads inside see one state of the manifest, or raise: an index run rewrites ``manifest.json`` before
        it changes a table and again when it is done, so the file is the same one after consistent reads.

        ``meta`` is read again when the file changed since it was last read.

        Raises
        ------
        ManifestError
            If ``manifest.json`` changed during the reads (any error they
            raised then is its consequence), or with ``complete``, if the
            last index run has not finished.
        """
        meta_path = self.path / "manifest.json"
        before = _stamp(meta_path)
        if before is None:
            raise _missing(self.path)
        if before != self._stamp:
            self.meta, self._stamp = read_meta(meta_path), before
        if complete and not self.complete:
            raise ManifestError(
                f"{self.path}: the manifest is incomplete (a `dicomml index` run into it is under way, or stopped before "
                "its end); wait for the run, or index again to finish it",
                path=str(self.path),
            )
        try:
            yield
        except Exception as exc:
            if _stamp(meta_path) != before:
                raise _changed(self.path) from exc
            raise
        if _stamp(meta_path) != before:
            raise _changed(self.path)

    def __repr__(self) -> str:
        counts = self.meta.get("counts", {})
        return f"Manifest({str(self.path)!r}, {', '.join(f'{k}={v}' for k, v in counts.items())})"

    def schema(self, table: str) -> pa.Schema:
        """Arrow schema of one table."""
        if table == "instances":
            return instances_schema(bool(self.meta.get("include_phi")))
        return {"series": SERIES, "annotations": ANNOTATIONS, "errors": ERRORS}[table]

    def files(self, table: str) -> list[str]:
        """The Parquet files of one table."""
        if table not in TABLES:
            raise ManifestError(f"{self.path}: no table {table!r}; tables are {', '.join(TABLES)}")
        return table_files(self.path, table)

    def table(self, table: str, columns: list[str] | None = None, filters: Any = None) -> pa.Table:
        """One table as Arrow; ``columns`` and ``filters`` as for :func:`pyarrow.parquet.read_table`."""
        with self.snapshot():
            files = self.files(table)
            schema = self.schema(table)
            if not files:
                none = empty(schema)
                return none if columns is None else none.select(columns)
            wanted = schema if columns is None else pa.schema([schema.field(c) for c in columns])
            parts = []
            for f in files:
                try:
                    if filters is None:  # each file read whole: pyarrow's dataset reader, needed for filters, imports pandas
                        parts.append(pq.ParquetFile(f).read(columns=columns).cast(wanted))
                    else:
                        parts.append(pq.read_table(f, schema=schema, columns=columns, filters=filters))
                except pa.ArrowInvalid as exc:  # not Parquet (truncated, overwritten), or not this table's columns
                    raise damaged(f, " ".join(str(exc).split())) from exc
            return pa.concat_tables(parts)

    @property
    def instances(self) -> pd.DataFrame:
        """One row per file (per volume group for a file whose frames fall in several)."""
        return self.table("instances").to_pandas()

    @property
    def series(self) -> pd.DataFrame:
        """One row per volume group (``series_key``)."""
        return self.table("series").to_pandas()

    @property
    def annotations(self) -> pd.DataFrame:
        """One row per SEG / RTSTRUCT object, with the group it references."""
        return self.table("annotations").to_pandas()

    @property
    def errors(self) -> pd.DataFrame:
        """Files (and crawl entries) that could not be indexed, with the reason."""
        return self.table("errors").to_pandas()

    def connect(self) -> duckdb.DuckDBPyConnection:
        """A new DuckDB connection with one view per table."""
        con = duckdb_connection()
        for table in TABLES:
            files = self.files(table)
            if files:
                parquet_view(con, table, files, union_by_name=True)
            else:
                con.register(f"_{table}_empty", empty(self.schema(table)))
                con.execute(f"CREATE VIEW {table} AS SELECT * FROM _{table}_empty")
        return con

    def sql(self, query: str, *params: Any) -> pd.DataFrame:
        """Run a DuckDB query over the views ``instances``, ``series``, ``annotations``, ``errors``.

        Parameters
        ----------
        query
            SQL; ``?`` placeholders take ``params``.
        *params
            Values of the placeholders.

        Returns
        -------
        pandas.DataFrame

        Examples
        --------
        >>> m.sql("SELECT path FROM instances WHERE series_key = ?", key)  # doctest: +SKIP
        """
        return self._execute(query, params, lambda result: result.df())

    def _execute(self, query: str, params: Sequence[Any], fetch: Callable[[duckdb.DuckDBPyConnection], _T]) -> _T:
        """``fetch`` of the result of ``query`` (``?`` placeholders: ``params``) on a new connection, closed after."""
        with self.snapshot():
            con = self.connect()
            try:
                return fetch(con.execute(query, list(params)))
            finally:
                con.close()

    @_of_complete_run
    def annotation(self, annotation_key: str) -> dict[str, Any]:
        """The ``annotations`` row of one SEG or RTSTRUCT object, as a dict (nulls as None).

        Raises
        ------
        SeriesNotFoundError
            If no annotation has this key.
        """
        # a filtered Parquet read, as series_files does: no DuckDB connection per mask
        rows = self.table("annotations", filters=[("annotation_key", "==", annotation_key)]).to_pylist()
        if not rows:
            raise SeriesNotFoundError(
                f"{self.path}: no annotation_key {annotation_key!r} in the manifest; list them with "
                f"`dicomml list {self.path} annotations` or dicomml.pairs(manifest)",
                path=str(self.path),
                series_uid=annotation_key,
            )
        return dict(rows[0])

    @_of_complete_run
    def series_files(self, series_key: str) -> pd.DataFrame:
        """Files of one volume group, ordered by path.

        Parameters
        ----------
        series_key
            A ``series_key`` of the ``series`` table.

        Returns
        -------
        pandas.DataFrame
            Columns ``path``, ``frame_numbers`` (1-based frames of the file in
            this group, or None when all of its frames are), and ``size`` and
            ``mtime_ns`` as indexed.

        Raises
        ------
        SeriesNotFoundError
            If no file has this key.
        """
        # pyarrow's filtered read: cheaper than opening a DuckDB connection, which every series a Dataset loads would pay
        wanted = self.table("instances", ["path", "frame_numbers", "size", "mtime_ns"], [("series_key", "==", series_key)])
        rows = wanted.sort_by("path").to_pandas()
        if rows.empty:
            raise SeriesNotFoundError(
                f"{self.path}: no series_key {series_key!r} in the manifest; list them with `dicomml list {self.path} series` "
                "or Manifest(...).series",
                path=str(self.path),
                series_uid=series_key,
            )
        return rows

    def rows(
        self, table: str, *, where: str | None = None, columns: list[str] | None = None, order_by: list[str] | None = None
    ) -> pd.DataFrame:
        """Rows of one table, filtered by an SQL predicate: what ``dicomml list`` prints.

        Parameters
        ----------
        table
            ``"series"``, ``"annotations"``, ``"errors"`` or ``"instances"``.
        where
            A DuckDB predicate on the table's columns, e.g. ``"modality = 'CT' AND usable"``.
        columns
            Columns to return (default: all), in this order.
        order_by
            Columns to sort by (default: the first of ``columns``, or none).

        Returns
        -------
        pandas.DataFrame

        Raises
        ------
        ManifestError
            If the table or a column is unknown, or ``where`` is not a valid predicate.

        Examples
        --------
        >>> m.rows("series", where="modality = 'CT'", columns=["series_key", "series_description"])  # doctest: +SKIP
        """
        if table not in TABLES:
            raise ManifestError(f"{self.path}: no table {table!r}; tables are {', '.join(TABLES)}", path=str(self.path))
        names = self.schema(table).names
        unknown = [c for c in [*(columns or []), *(order_by or [])] if c not in names]
        if unknown:
            raise ManifestError(
                f"{self.path}: {table} has no column {', '.join(map(repr, unknown))}; its columns are {', '.join(names)}",
                path=str(self.path),
            )
        order = order_by if order_by is not None else (columns or [])[:1]
        query = f"SELECT {', '.join(_quoted(c) for c in columns) if columns else '*'} FROM {table}"
        query += f" WHERE ({where})" if where else ""
        query += f" ORDER BY {', '.join(_quoted(c) for c in order)}" if order else ""
        return self._filtered(query, where, table)

    def _filtered(self, query: str, where: str | None, table: str, params: Sequence[Any] = ()) -> pd.DataFrame:
        """Run ``query``, which holds the caller's ``where``, as one statement; a DuckDB error is the predicate's.

        ``params`` are the values of the query's own ``?`` placeholders.
        """
        import duckdb

        with self.snapshot():
            con = self.connect()
            try:
                if len(con.extract_statements(query)) != 1:
                    raise duckdb.ParserException("the predicate ends the statement")
                return con.execute(query, list(params)).df()
            except duckdb.Error as exc:
                first_line = str(exc).strip().splitlines()[0]
                raise ManifestError(
                    f"{self.path}: where {where!r} is not a valid predicate on the {table} table ({first_line}); "
                    f"its columns are {', '.join(self.schema(table).names)}",
                    path=str(self.path),
                ) from None
            finally:
                con.close()

    # Typed queries: the SQL that the rest of the package needs lives here, behind named methods.

    @_of_complete_run
    def usable_series_keys(self, where: str | None = None) -> list[str]:
        """Keys of the usable series, sorted, optionally filtered.

        Parameters
        ----------
        where
            An SQL predicate on the ``series`` table (DuckDB), e.g.
            ``"modality = 'CT' AND n_slices >= 64"``; ANDed with ``usable``.
            It is the caller's own query on the caller's own manifest, run as
            one statement over read-only views.

        Returns
        -------
        list of str

        Raises
        ------
        ManifestError
            If ``where`` is not one valid predicate on the ``series`` table.

        Examples
        --------
        >>> m.usable_series_keys("modality = 'CT'")  # doctest: +SKIP
        ['0c2f...', '3f2a9c0d1e4b5a67']
        """
        if where is None:  # no DuckDB connection, no pandas: a Dataset over a filled cache starts sooner
            series = self.table("series", ["series_key", "usable"])
            return sorted(str(k) for k, usable in zip(*(series.column(c).to_pylist() for c in series.column_names)) if usable)
        # the predicate filters a subquery of the usable series: it cannot reach past them
        usable = "(SELECT * FROM series WHERE usable) AS series"
        query = f"SELECT series_key FROM {usable}" + (f" WHERE ({where})" if where else "") + " ORDER BY series_key"
        return [str(k) for k in self._filtered(query, where, "series")["series_key"]]

    @_of_complete_run
    def instance_fingerprints(self, series_keys: Sequence[str]) -> list[tuple[Any, ...]]:
        """What identifies the files of some series, one tuple per file (per volume group), in no particular order.

        Each is ``(series_key, sop_instance_uid, size, mtime_ns, frame_numbers)``
        (``frame_numbers`` None for every frame); series not in the manifest
        have none. Filtered in Arrow (only the chosen rows become Python
        objects), without DuckDB or pandas: a Dataset opening a filled cache
        starts sooner.
        """
        import pyarrow.compute as pc  # here: an index run, which never filters, does without its import

        rows = self.table("instances", ["series_key", "sop_instance_uid", "size", "mtime_ns", "frame_numbers"])
        keys = column(sorted(set(series_keys)), rows.schema.field("series_key").type)  # pa.array would import pandas
        chosen = rows.filter(pc.is_in(rows.column("series_key"), value_set=keys))
        return list(zip(*(chosen.column(c).to_pylist() for c in chosen.column_names)))

    @_of_complete_run
    def annotation_fingerprints(self, annotation_keys: Sequence[str]) -> list[tuple[Any, ...]]:
        """What identifies the files of some annotations: ``(annotation_key, sop_instance_uid, size, mtime_ns, frame_numbers)`` tuples."""
        query = (
            "SELECT annotation_key, sop_instance_uid, i.size, i.mtime_ns, a.frame_numbers FROM annotations a "
            "JOIN instances i USING (path, sop_instance_uid) WHERE list_contains(?, annotation_key)"
        )
        return self._execute(query, [sorted(set(annotation_keys))], lambda result: result.fetchall())

    @_of_complete_run
    def image_instances(self, modalities: Sequence[str], where: str | None = None, without_sop_classes: Sequence[str] = ()) -> pd.DataFrame:
        """Distinct ``instances`` rows of some modalities (the 2D images), ordered by path.

        Parameters
        ----------
        modalities
            The modalities kept, e.g. ``("DX", "MG")``.
        where
            An SQL predicate on the ``instances`` table (DuckDB), e.g.
            ``"view = 'CC' AND NOT burned_in"``; ANDed with the modalities.
            It filters a subquery of the rows of these modalities, run as one
            statement over read-only views.
        without_sop_classes
            Files holding an object of these SOP classes are left out (the
            predicate cannot bring them back).

        Returns
        -------
        pandas.DataFrame
            Columns ``path``, ``folder``, ``sop_instance_uid``, ``size``,
            ``mtime_ns``, ``modality``, ``photometric_interpretation``,
            ``view``, ``laterality``, ``burned_in``, ``spacing_source``,
            ``number_of_frames``, ``rows``, ``columns``, ``series_instance_uid``.

        Raises
        ------
        ManifestError
            If ``where`` is not one valid predicate on the ``instances`` table.

        Examples
        --------
        >>> m.image_instances(("MG",), "view = 'CC'")  # doctest: +SKIP
        """
        # the predicate filters a subquery of these modalities' rows: it cannot reach past them
        chosen = (
            "(SELECT * FROM instances WHERE list_contains(?, modality) AND path NOT IN "
            "(SELECT path FROM instances WHERE list_contains(?, sop_class_uid))) AS instances"
        )
        query = f"SELECT DISTINCT {_IMAGE_COLUMNS} FROM {chosen}" + (f" WHERE ({where})" if where else "") + " ORDER BY path"
        return self._filtered(query, where, "instances", [list(modalities), list(without_sop_classes)])

    @_of_complete_run
    def seg_instances(self, modalities: Sequence[str] = ("SEG",)) -> pd.DataFrame:
        """Distinct DICOM SEG files of the manifest (or of other annotation modalities, e.g. RTSTRUCT), ordered by path.

        Returns
        -------
        pandas.DataFrame
            Columns ``path``, ``sop_instance_uid``, ``size``, ``mtime_ns``,
            ``referenced_sop_uids`` (the SOP Instance UIDs of the images the
            SEG references, or None; an RTSTRUCT's from its Contour Image Sequences)
            and ``referenced_series_uids``.

        Examples
        --------
        >>> m.seg_instances()[["path", "referenced_sop_uids"]]  # doctest: +SKIP
        """
        return self.sql(
            "SELECT DISTINCT path, sop_instance_uid, size, mtime_ns, referenced_sop_uids, referenced_series_uids FROM instances "
            "WHERE list_contains(?, modality) ORDER BY path",
            list(modalities),
        )

    @_of_complete_run
    def usable_studies(self) -> pd.DataFrame:
        """Studies with at least one usable series, sorted by study UID.

        Returns
        -------
        pandas.DataFrame
            Columns ``study_instance_uid`` and ``patient_key`` (any one of
            the study's usable series).

        Examples
        --------
        >>> m.usable_studies()  # doctest: +SKIP
          study_instance_uid patient_key
        0         1.2.3.4...    a1b2c3...
        """
        return self.sql(
            "SELECT study_instance_uid, any_value(patient_key) AS patient_key FROM series WHERE usable "
            "GROUP BY study_instance_uid ORDER BY study_instance_uid"
        )

    @_of_complete_run
    def series_acquired(self, series_keys: Sequence[str]) -> pd.DataFrame:
        """Geometry of some series and the latest acquisition time of each: what picks a study's series for a role.

        Parameters
        ----------
        series_keys
            Keys of the ``series`` table; keys not in the manifest have no row.

        Returns
        -------
        pandas.DataFrame
            One row per series, in no particular order: ``study_instance_uid``,
            ``series_key``, ``series_number``, ``n_slices``, ``n_volumes``,
            ``slice_spacing``, ``pixel_spacing``, ``frame_of_reference_uid``
            and ``acquired`` (the latest ``acquisition_time`` of its files, or
            None).

        Examples
        --------
        >>> m.series_acquired(m.usable_series_keys("modality = 'MR'"))  # doctest: +SKIP
        """
        keys = list(series_keys)
        return self.sql(_SERIES_ACQUIRED, keys, keys)

    @_of_complete_run
    def pairs(self) -> pd.DataFrame:
        """Image series and the annotations linked to them; see :func:`dicomml.pairs`."""
        return self.sql(
            "SELECT s.series_key, a.annotation_key, a.modality, a.segmentation_type, a.labels, "
            "a.path AS annotation_path, a.link_method, a.link_problem, s.usable, s.reason "
            "FROM annotations a JOIN series s ON s.series_key = a.referenced_series_key "
            "ORDER BY s.series_key, a.annotation_key"
        )

    def summary(self) -> dict[str, pd.DataFrame]:
        """Counts that describe the manifest, by title (what ``dicomml info`` prints).

        Returns
        -------
        dict of str to pandas.DataFrame
            Each frame ends with a count column ``n``: series by modality,
            instances by SOP class, series by manufacturer, series usable or
            not by reason, annotations by link, errors by type, and SOP
            Instance UIDs found in more than one file.
        """
        with self.snapshot():
            con = self.connect()
            try:
                return {title: con.execute(query).df() for title, query in _SUMMARY.items()}
            finally:
                con.close()


def _quoted(column: str) -> str:
    return '"' + column.replace('"', '""') + '"'


_IMAGE_COLUMNS = (
    "path, folder, sop_instance_uid, size, mtime_ns, modality, photometric_interpretation, view, laterality, "
    "burned_in, spacing_source, number_of_frames, rows, columns, series_instance_uid"
)

_SERIES_ACQUIRED = """
WITH acquired AS (SELECT series_key, max(acquisition_time) AS acquired FROM instances
                  WHERE list_contains(?, series_key) GROUP BY series_key)
SELECT s.study_instance_uid, s.series_key, s.series_number, s.n_slices, s.n_volumes, s.slice_spacing,
       s.pixel_spacing, s.frame_of_reference_uid, a.acquired
FROM series s LEFT JOIN acquired a USING (series_key)
WHERE list_contains(?, s.series_key)
"""

_SUMMARY = {
    "series by modality": "SELECT coalesce(modality, '?') AS modality, count(*) AS n FROM series GROUP BY 1 ORDER BY n DESC, 1",
    "instances by SOP class": "SELECT sop_class_uid, count(*) AS n FROM instances GROUP BY 1 ORDER BY n DESC, 1",
    "series by manufacturer": (
        "SELECT coalesce(manufacturer, '?') AS manufacturer, count(*) AS n FROM series GROUP BY 1 ORDER BY n DESC, 1"
    ),
    "series usable or not, by reason": (
        "SELECT CASE WHEN usable THEN 'usable' ELSE reason END AS status, count(*) AS n FROM series GROUP BY 1 ORDER BY n DESC, 1"
    ),
    "annotations by link": (
        "SELECT modality, coalesce(link_method, 'not linked') AS link, count(*) AS n FROM annotations GROUP BY 1, 2 ORDER BY n DESC, 1, 2"
    ),
    "errors by type": "SELECT stage, error_type, count(*) AS n FROM errors GROUP BY 1, 2 ORDER BY n DESC, 1, 2",
    "SOP Instance UIDs in more than one file": (
        "SELECT count(*) AS n FROM (SELECT sop_instance_uid FROM instances WHERE sop_instance_uid IS NOT NULL "
        "GROUP BY 1 HAVING count(DISTINCT path) > 1)"
    ),
}
