"""MkDocs hook: the manifest schema page takes its column types from dicomml.indexer.schema.

A table on a page that starts after a line ``<!-- schema: TABLE -->`` lists the columns of
TABLE (``instances``, ``series``, ``annotations``, ``errors``) as ``| column | meaning |`` rows;
a first cell may name several columns separated by commas. The hook inserts a ``type`` column
read from the Arrow schema and fails the build when the page and the schema disagree on the
columns, so the page cannot drift from the code. ``<!-- schema-version -->`` becomes
the schema's version number.
"""

from __future__ import annotations

import re
from typing import Any

import pyarrow as pa

_MARKER = re.compile(r"^<!-- schema: (\w+) -->$")


def _schemas() -> dict[str, pa.Schema]:
    from dicomml.indexer import schema

    return {
        "instances": schema.instances_schema(include_phi=True),
        "series": schema.SERIES,
        "annotations": schema.ANNOTATIONS,
        "errors": schema.ERRORS,
    }


def _type(field: pa.Field) -> str:
    return str(field.type).replace("list<item: ", "list<")


def _table(name: str, rows: list[str], schema: pa.Schema, page: str) -> list[str]:
    out = ["| column | type | meaning |", "|---|---|---|"]
    seen: list[str] = []
    for row in rows[2:]:
        cells = [c.strip() for c in row.strip().strip("|").split("|")]
        columns = [c.strip(" `") for c in cells[0].split(",")]
        unknown = [c for c in columns if c not in schema.names]
        if unknown:
            raise ValueError(f"{page}: {name} table names {unknown}, which the {name} schema lacks")
        types = sorted({_type(schema.field(c)) for c in columns})
        seen += columns
        out.append(f"| {', '.join(f'`{c}`' for c in columns)} | {', '.join(types)} | {cells[1]} |")
    missing = [c for c in schema.names if c not in seen]
    if missing:
        raise ValueError(f"{page}: {name} table does not describe the schema's columns {missing}")
    return out


def on_page_markdown(markdown: str, page: Any, **_: Any) -> str:
    """Replace every marked table by one with a type column; check its columns against the schema."""
    if "<!-- schema" not in markdown:
        return markdown
    from dicomml.indexer.schema import SCHEMA_VERSION

    markdown = markdown.replace("<!-- schema-version -->", str(SCHEMA_VERSION))
    schemas = _schemas()
    lines = markdown.split("\n")
    out: list[str] = []
    i = 0
    while i < len(lines):
        match = _MARKER.match(lines[i])
        out.append(lines[i])
        i += 1
        if not match:
            continue
        name = match.group(1)
        if name not in schemas:
            raise ValueError(f"{page.file.src_path}: unknown manifest table {name!r}")
        while i < len(lines) and not lines[i].startswith("|"):
            out.append(lines[i])
            i += 1
        rows = []
        while i < len(lines) and lines[i].startswith("|"):
            rows.append(lines[i])
            i += 1
        out += _table(name, rows, schemas[name], page.file.src_path)
    return "\n".join(out)
