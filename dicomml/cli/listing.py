"""``dicomml list MANIFEST [series|annotations|errors]``: the keys ``show`` and ``export`` take, with their key columns."""

from __future__ import annotations

import csv
import io
import json
from typing import TYPE_CHECKING, Any

import click
import numpy as np

from dicomml.paths import printable

if TYPE_CHECKING:  # pandas comes with the rows, pyarrow with the manifest: imported to run, not for --help
    import pandas as pd

__all__ = ["DEFAULT_COLUMNS", "command", "echo_rows"]

#: Columns printed when --columns is not given.
DEFAULT_COLUMNS = {
    "series": ["series_key", "modality", "series_number", "series_description", "shape", "n_volumes", "usable", "reason"],
    "annotations": ["annotation_key", "modality", "referenced_series_key", "labels", "link_method"],
    "errors": ["path", "stage", "error_type", "message"],
}


def _text(value: object, *, one_line: bool = False) -> str:
    if isinstance(value, (list, tuple, np.ndarray)):
        text = " ".join(map(str, value))
    else:
        text = "-" if value is None or (isinstance(value, float) and np.isnan(value)) else str(value)
    return printable(text) if one_line else text  # a table row is one line: a newline in a file name is shown as \n


def _plain(value: Any) -> Any:
    """A JSON value for what pandas holds in a cell: arrays as lists, numpy scalars as numbers, times in ISO 8601."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if hasattr(value, "isoformat"):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not a JSON value")


def echo_rows(frame: pd.DataFrame, *, header: bool = True, fmt: str = "table") -> None:
    """Print a table: left-aligned text columns (``table``), ``csv`` or JSON Lines (``jsonl``), one row per line.

    No rows: a note on stderr for ``table``, the header alone for ``csv``, nothing for ``jsonl``.
    """
    if frame.empty and fmt == "table":
        click.echo("(no rows)", err=True)
        return
    frame = frame.astype(object).where(frame.notna(), None)  # NaN, NaT and pandas' NA (a missing integer) as None
    if fmt == "jsonl":  # lists stay lists, missing values null: for jq and pandas.read_json(lines=True)
        for row in frame.itertuples(index=False):
            click.echo(json.dumps(dict(zip(frame.columns, row)), default=_plain, ensure_ascii=False))
        return
    if fmt == "csv":  # free text with spaces and commas quoted; lists space-separated, missing values empty
        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\n")
        if header:
            writer.writerow(frame.columns)
        writer.writerows([["" if v is None else _text(v) for v in row] for row in frame.itertuples(index=False)])
        click.echo(text.getvalue(), nl=False)
        return
    lines = [[_text(v, one_line=True) for v in row] for row in frame.itertuples(index=False)]
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
@click.option("--no-header", is_flag=True, help="Rows only (for shell scripts: `read -r KEY REST`); table and csv.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "csv", "jsonl"]),
    default="table",
    show_default=True,
    help="csv: quoted free text, lists space-separated; jsonl: one JSON object per row, lists as lists, missing as null.",
)
def command(manifest: str, table: str, where: str | None, columns: str | None, no_header: bool, fmt: str) -> None:
    """Print the rows of TABLE (series, annotations or errors; default series) of MANIFEST:
    the series keys and annotation keys that `dicomml show` and `dicomml export` take, with
    their key columns. In a table, lists print as space-separated values, missing values as "-".

    \b
    Examples:
      dicomml list manifest/
      dicomml list manifest/ annotations --where "modality = 'SEG'"
      dicomml list manifest/ series --where usable --columns series_key,folder --no-header
      dicomml list manifest/ errors --format csv > errors.csv
    """
    from dicomml.indexer import Manifest

    chosen = [c.strip() for c in columns.split(",") if c.strip()] if columns else DEFAULT_COLUMNS[table]
    echo_rows(Manifest(manifest).rows(table, where=where, columns=chosen), header=not no_header, fmt=fmt)
