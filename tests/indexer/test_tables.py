"""The indexer's Arrow tables built from buffers equal pyarrow's own conversion, and an index imports no pandas."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dicomml.indexer.schema import ANNOTATIONS, ERRORS, SERIES, instances_schema
from dicomml.indexer.store import LISTING
from dicomml.indexer.tables import column, empty, from_rows

_TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)  # any valid string, non-ASCII included
_FLOATS = st.floats(allow_nan=True, allow_infinity=True)


def _values(arrow_type: pa.DataType) -> st.SearchStrategy[Any]:
    """Values pyarrow converts to ``arrow_type`` (what the indexer's rows hold), None excluded."""
    if pa.types.is_list(arrow_type):
        return st.lists(_values(arrow_type.value_type), max_size=4)
    if pa.types.is_string(arrow_type):
        return _TEXT
    if pa.types.is_boolean(arrow_type):
        return st.booleans()
    if pa.types.is_floating(arrow_type):
        return _FLOATS | st.integers(-(2**40), 2**40)
    bits = arrow_type.bit_width - 1
    return st.integers(-(2**bits), 2**bits - 1)


def _rows(schema: pa.Schema) -> st.SearchStrategy[list[dict[str, Any]]]:
    row = st.fixed_dictionaries({}, optional={name: st.none() | _values(schema.field(name).type) for name in schema.names})
    return st.lists(row, max_size=4)


_SCHEMAS = {
    "instances": instances_schema(False),
    "instances_phi": instances_schema(True),
    "errors": ERRORS,
    "series": SERIES,
    "annotations": ANNOTATIONS,
    "listing": LISTING,
}


@pytest.mark.parametrize("name", sorted(_SCHEMAS))
@settings(max_examples=15, deadline=None)
@given(data=st.data())
def test_rows_make_the_table_pyarrow_makes(name: str, data: st.DataObject) -> None:
    schema = _SCHEMAS[name]
    rows = data.draw(_rows(schema))
    ours, theirs = from_rows(rows, schema), pa.Table.from_pylist(rows, schema=schema)
    ours.validate(full=True)
    assert ours.schema == theirs.schema
    assert _plain(ours.to_pylist()) == _plain(theirs.to_pylist())  # NaN is not equal to itself in Table.equals


def _plain(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def test_nan_stays_a_value_and_none_a_null() -> None:
    array = column([1.5, None, math.nan, -0.0], pa.float64())
    assert array.null_count == 1 and array.is_null().to_pylist() == [False, True, False, False]
    assert math.isnan(array[2].as_py()) and math.copysign(1, array[3].as_py()) == -1


def test_the_empty_table_is_pyarrows() -> None:
    for schema in (instances_schema(False), ERRORS, SERIES, ANNOTATIONS):
        assert empty(schema).equals(schema.empty_table())


@pytest.mark.parametrize(
    ("values", "arrow_type"),
    [(["1"], pa.int64()), ([1.5], pa.int64()), ([1], pa.string()), ([b"x"], pa.string()), ([1], pa.bool_()), (["a"], pa.float64())],
)
def test_a_value_of_the_wrong_type_is_refused(values: list[Any], arrow_type: pa.DataType) -> None:
    with pytest.raises(TypeError):
        column(values, arrow_type)


_FIRST_INDEX = """
import json, sys
import dicomml
dicomml.index(sys.argv[1], sys.argv[2], workers=2, salt=sys.argv[3], progress=False)
print(json.dumps(sorted({"pandas", "nibabel", "scipy"} & {k.split(".")[0] for k in sys.modules})))
"""


def test_indexing_images_imports_neither_pandas_nor_nibabel(data_dir: Path, tmp_path: Path, salt: str) -> None:
    tree = tmp_path / "tree"
    shutil.copytree(data_dir / "dcm_qa_philips_enh/In/cl", tree)  # 40 classic MR files, no SEG or RTSTRUCT
    run = subprocess.run(
        [sys.executable, "-c", _FIRST_INDEX, str(tree), str(tmp_path / "m"), salt], check=True, capture_output=True, text=True
    )
    assert json.loads(run.stdout) == []
