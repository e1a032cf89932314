"""The rerun of an unchanged tree: nothing written, nothing heavy imported; any change is still seen."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import dicomml
import dicomml.indexer.store as store

SERIES = "dcm_qa_philips_enh/In/cl"  # 40 classic MR files


def _stamps(out: Path) -> dict[str, int]:
    """mtime of every table file of a manifest."""
    return {str(p): p.stat().st_mtime_ns for p in out.rglob("*.parquet")}


_NO_OP = """
import json, sys
import dicomml
m = dicomml.index(sys.argv[1], sys.argv[2], workers=2, salt=sys.argv[3], progress=False)
heavy = {"pydicom", "pandas", "duckdb", "torch", "dask", "distributed", "fsspec", "tqdm"}
print(json.dumps({"last_run": m.meta["last_run"], "imported": sorted(heavy & {k.split(".")[0] for k in sys.modules})}))
"""


def test_unchanged_rerun_writes_no_table_and_imports_no_reader(data_dir: Path, tmp_path: Path, salt: str):
    tree, out = tmp_path / "tree", tmp_path / "m"
    shutil.copytree(data_dir / SERIES, tree)
    dicomml.index(tree, out, workers=1, salt=salt, progress=False)
    before = _stamps(out)
    meta_before = (out / "manifest.json").read_bytes()
    result = subprocess.run([sys.executable, "-c", _NO_OP, str(tree), str(out), salt], check=True, capture_output=True, text=True)
    report = json.loads(result.stdout)
    assert report["last_run"]["files_read"] == 0 and report["last_run"]["files_listed"] == 40
    assert report["imported"] == []
    assert _stamps(out) == before
    assert (out / "manifest.json").read_bytes() == meta_before  # last_run there stays the first run's
    assert not (out / "_work" / "listing.parquet").exists()
    assert json.loads((out / "manifest.json").read_text())["counts"]["instances"] == 40


def test_a_removal_only_rerun_updates_the_tables_without_the_header_reader(data_dir: Path, tmp_path: Path, salt: str):
    tree, out = tmp_path / "tree", tmp_path / "m"
    shutil.copytree(data_dir / SERIES, tree)
    dicomml.index(tree, out, workers=1, salt=salt, progress=False)
    gone = sorted(tree.iterdir())[-1]
    gone.unlink()
    result = subprocess.run([sys.executable, "-c", _NO_OP, str(tree), str(out), salt], check=True, capture_output=True, text=True)
    report = json.loads(result.stdout)
    assert report["last_run"]["files_read"] == 0 and report["last_run"]["rows_removed"] == 1
    assert "pydicom" not in report["imported"]  # nothing to read: the series tables come from the rows (DuckDB)
    again = dicomml.index(tree, out, workers=1, salt=salt, progress=False)
    assert len(again.instances) == 39 and str(gone) not in set(again.instances.path)
    assert again.series.n_files.sum() == 39


def test_a_new_crawl_error_alone_is_recorded(data_dir: Path, tmp_path: Path, salt: str):
    tree, out = tmp_path / "tree", tmp_path / "m"
    shutil.copytree(data_dir / SERIES, tree)
    dicomml.index(tree, out, workers=1, salt=salt, progress=False)
    os.mkfifo(tree / "pipe")  # no new file to read, but the walk meets something new
    again = dicomml.index(tree, out, workers=1, salt=salt, progress=False)
    assert again.meta["last_run"]["files_read"] == 0
    assert list(again.errors.error_type) == ["not_regular_file"] and again.meta["counts"]["errors"] == 1
    (tree / "pipe").unlink()
    third = dicomml.index(tree, out, workers=1, salt=salt, progress=False)
    assert third.errors.empty and third.meta["counts"]["errors"] == 0


def test_a_listing_too_long_for_memory_streams_to_disk_with_the_same_result(
    data_dir: Path, tmp_path: Path, salt: str, monkeypatch: pytest.MonkeyPatch
):
    tree = tmp_path / "tree"
    shutil.copytree(data_dir / SERIES, tree)
    kept = dicomml.index(tree, tmp_path / "kept", workers=1, salt=salt, progress=False)
    monkeypatch.setattr(store, "_LISTING_IN_MEMORY", 5)
    monkeypatch.setattr(store, "_LISTING_BATCH", 7)
    spilled = dicomml.index(tree, tmp_path / "spilled", workers=1, salt=salt, progress=False)
    assert spilled.meta["listing_digest"] == kept.meta["listing_digest"]
    assert sorted(spilled.instances.path) == sorted(kept.instances.path)
    files = sorted(tree.iterdir())
    stat = files[3].stat()
    os.utime(files[3], ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    again = dicomml.index(tree, tmp_path / "spilled", workers=1, salt=salt, progress=False)
    assert again.meta["last_run"]["files_read"] == 1 and again.meta["last_run"]["rows_removed"] == 1
    assert len(again.instances) == 40 and again.instances.path.is_unique


def test_an_unchanged_tree_named_otherwise_records_the_new_name(data_dir: Path, tmp_path: Path, salt: str, monkeypatch: pytest.MonkeyPatch):
    tree, out = tmp_path / "tree", tmp_path / "m"
    shutil.copytree(data_dir / SERIES, tree)
    dicomml.index(tree, out, workers=1, salt=salt, progress=False)
    before = _stamps(out)
    monkeypatch.chdir(tmp_path)
    again = dicomml.index("tree", out, workers=1, salt=salt, progress=False)
    assert again.meta["last_run"]["files_read"] == 0 and _stamps(out) == before
    assert json.loads((out / "manifest.json").read_text())["sources"] == ["tree"]


def test_a_manifest_of_older_series_rules_gets_series_rebuilt_without_reading_a_file(data_dir: Path, tmp_path: Path, salt: str):
    """A manifest indexed by an older dicomml kept that version's series reasons through every unchanged rerun."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from dicomml.indexer.schema import DERIVED_RULES

    tree, out = tmp_path / "tree", tmp_path / "m"
    shutil.copytree(data_dir / SERIES, tree)
    first = dicomml.index(tree, out, workers=1, salt=salt, progress=False)
    reasons = first.series.sort_values("series_key").reason.tolist()
    meta = json.loads((out / "manifest.json").read_text())
    assert meta.pop("derived_rules") == DERIVED_RULES
    (out / "manifest.json").write_text(json.dumps(meta))  # as the older dicomml left it, with its own reasons
    (part,) = (out / "series").glob("*.parquet")
    table = pq.read_table(part)
    pq.write_table(table.set_column(table.schema.get_field_index("reason"), "reason", pa.array(["older rule"] * table.num_rows)), part)
    rows = {p: s for p, s in _stamps(out).items() if "/instances/" in p}

    again = dicomml.index(tree, out, workers=1, salt=salt, progress=False)
    assert again.meta["last_run"]["files_read"] == 0 and again.meta["derived_rules"] == DERIVED_RULES
    assert again.series.sort_values("series_key").reason.tolist() == reasons
    assert {p: s for p, s in _stamps(out).items() if "/instances/" in p} == rows  # rebuilt from the rows it held
    stamps = _stamps(out)
    dicomml.index(tree, out, workers=1, salt=salt, progress=False)
    assert _stamps(out) == stamps  # and recorded: the next unchanged rerun writes nothing
