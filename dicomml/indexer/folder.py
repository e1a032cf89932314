"""A manifest folder's files, named without pyarrow: what a kept series list is checked against."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

__all__ = ["TABLES", "manifest_state", "table_files"]

#: The tables of a manifest, each a folder of Parquet files.
TABLES = ("instances", "series", "annotations", "errors")


def table_files(root: str | os.PathLike[str], table: str) -> list[str]:
    """The Parquet files of one table of the manifest at ``root``, sorted."""
    return sorted(str(p) for p in (Path(root) / table).glob("*.parquet"))


def manifest_state(root: str | os.PathLike[str]) -> list[list[Any]] | None:
    """``[name, size, mtime_ns, inode]`` of ``manifest.json`` and of every table's file; None without a manifest.

    The indexer writes each file to a temporary name and renames it into
    place, so any change to a manifest changes this list (a rewritten file is
    a new inode); JSON round-trips it unchanged.
    """
    root = Path(root)
    try:
        paths = [root / "manifest.json", *(Path(f) for table in TABLES for f in table_files(root, table))]
        stats = [p.stat() for p in paths]
    except FileNotFoundError:  # no manifest here, or a file replaced while listing: nothing to compare against
        return None
    return [[p.relative_to(root).as_posix(), s.st_size, s.st_mtime_ns, s.st_ino] for p, s in zip(paths, stats)]
