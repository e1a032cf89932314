"""Arrow tables from the indexer's rows, built from buffers.

pyarrow imports pandas the first time it converts Python objects to an array
(``pa.array``, ``Table.from_pylist``, even ``Schema.empty_table``), which costs
an index process more than reading thousands of small headers. The columns the
manifest uses (strings, 32/64-bit integers, doubles, booleans and lists of
them) are simple enough to lay out with numpy instead, so an index never
imports pandas unless it links annotation objects.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

__all__ = ["column", "empty", "from_rows"]

_NUMBERS = {pa.int64(): np.int64, pa.int32(): np.int32, pa.float64(): np.float64}


def from_rows(rows: Sequence[Mapping[str, Any]], schema: pa.Schema) -> pa.Table:
    """``pa.Table.from_pylist(rows, schema=schema)`` (a missing key is a null), without pandas.

    Examples
    --------
    >>> from_rows([{"a": 1}, {}], pa.schema([("a", pa.int64())])).column("a").to_pylist()
    [1, None]
    """
    return pa.Table.from_arrays([column([row.get(name) for row in rows], schema.field(name).type) for name in schema.names], schema=schema)


def empty(schema: pa.Schema) -> pa.Table:
    """``schema.empty_table()``, without pandas."""
    return from_rows([], schema)


def column(values: list[Any], arrow_type: pa.DataType) -> pa.Array:
    """``pa.array(values, arrow_type)`` for the manifest's types (None is a null), without pandas.

    Raises
    ------
    TypeError
        If a value does not fit ``arrow_type``, or it is not one of those types.
    """
    n = len(values)
    present = [v for v in values if v is not None]
    nulls = n - len(present)
    if not present:
        return pa.nulls(n, arrow_type)
    bitmap = pa.py_buffer(np.packbits([v is not None for v in values], bitorder="little")) if nulls else None
    if pa.types.is_string(arrow_type):
        encoded = list(map(str.encode, present))
        lengths = _scatter(list(map(len, encoded)), values, nulls)
        return pa.Array.from_buffers(arrow_type, n, [bitmap, _offsets(lengths), pa.py_buffer(b"".join(encoded))], nulls)
    if pa.types.is_list(arrow_type):
        child = column([x for v in present for x in v], arrow_type.value_type)
        lengths = _scatter(list(map(len, present)), values, nulls)
        return pa.Array.from_buffers(arrow_type, n, [bitmap, _offsets(lengths)], nulls, children=[child])
    data = np.array(_scatter(present, values, nulls))
    if pa.types.is_boolean(arrow_type) and data.dtype.kind == "b":
        return pa.Array.from_buffers(arrow_type, n, [bitmap, pa.py_buffer(np.packbits(data, bitorder="little"))], nulls)
    if arrow_type in _NUMBERS and data.dtype.kind in ("biu" if pa.types.is_integer(arrow_type) else "biuf"):
        return pa.Array.from_buffers(arrow_type, n, [bitmap, pa.py_buffer(data.astype(_NUMBERS[arrow_type]))], nulls)
    raise TypeError(f"cannot build a {arrow_type} column from values such as {present[0]!r}")


def _scatter(present: list[Any], values: list[Any], nulls: int) -> list[Any]:
    """``present`` (one item per non-null value) with a zero-like filler at each null of ``values``."""
    if not nulls:
        return present
    filler = False if isinstance(present[0], bool) else 0
    it = iter(present)
    return [filler if v is None else next(it) for v in values]


def _offsets(lengths: list[int]) -> pa.Buffer:
    offsets = np.zeros(len(lengths) + 1, np.int64)
    np.cumsum(np.array(lengths, np.int64), out=offsets[1:])
    if offsets[-1] > np.iinfo(np.int32).max:
        raise TypeError("more than 2 GiB of values in one column; write fewer rows per table")
    return pa.py_buffer(offsets.astype(np.int32))
