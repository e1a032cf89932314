"""``dicomml list MANIFEST [series|annotations|errors]``: the keys ``show`` and ``export`` take, with their key columns."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click
import numpy as np

from dicomml.indexer import Manifest

if TYPE_CHECKING:  # pandas comes with the rows: imported to run, not for --help
    import pandas as pd

__all__ = ["DEFAULT_COLUMNS", "command", "echo_rows"]

#: Columns printed when --columns is not given.
DEFAULT_COLUMNS = {
    "series": ["series_key", "modality", "series_number", "series_description", "shape", "n_volumes", "usable", "reason"],
    "annotations": ["annotation_key", "modality", "referenced_series_key", "labels", "link_method"],
    "errors": ["path", "stage", "error_type", "message"],
}


def _text(value: object) -> str:
    if isinstance(value, (list, tuple, np.ndarray)):
        return " ".join(map(str, value))
    return "-" if value is None or (isinstance(value, float) and np.isnan(value)) else str(value)


def echo_rows(frame: pd.DataFrame, *, header: bool = True) -> None:
    """Print a table as left-aligned text columns, one row per line (no rows: a note on stderr)."""
    if frame.empty:
        click.echo("(no rows)", err=True)
        return
    frame = frame.astype(object).where(frame.notna(), None)  # NaN, NaT and pandas' NA (a missing integer) as None
    lines = [[_text(v) for v in row] for row in frame.itertuples(index=False)]
    if header:
        lines.insert(0, list(map(str, frame.columns)))
    widths = [max(len(line[i]) for line in lines) for i in range(len(frame.columns))]
    for line in lines:
        click.echo("  ".join(v.ljust(w) for v, w in zip(line[:-1], widths)) + ("  " if len(line) > 1 else "") + line[-1])


@click.command("list")
@click.argument("manifest", type=click.Path(exists=True, file_okay=False))
@click.argument("table", type=click.Choice(sorted(DEFAULT_COLUMNS)), default="series")
@click.option("--where", default=None, help="SQL predicate on the table's columns, e.g. \"modality = 'CT' AND usable\".")
@click.option("--columns", default=None, help="Comma-separated columns to print instead of the key columns, e.g. series_key,folder.")
@click.option("--no-header", is_flag=True, help="Rows only (for shell scripts: `read -r KEY REST`).")
def command(manifest: str, table: str, where: str | None, columns: str | None, no_header: bool) -> None:
    """Print the rows of TABLE (series, annotations or errors; default series) of MANIFEST:
    the series keys and annotation keys that `dicomml show` and `dicomml export` take, with
    their key columns. Lists print as space-separated values, missing values as "-".

    \b
    Examples:
      dicomml list manifest/
      dicomml list manifest/ annotations --where "modality = 'SEG'"
      dicomml list manifest/ series --where usable --columns series_key,folder --no-header
    """
    chosen = [c.strip() for c in columns.split(",") if c.strip()] if columns else DEFAULT_COLUMNS[table]
    echo_rows(Manifest(manifest).rows(table, where=where, columns=chosen), header=not no_header)
