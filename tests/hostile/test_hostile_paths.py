"""File-system traps: non-UTF-8 names, quotes in folder names, dangling symlinks."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import dicomml
from dicomml.paths import local_path, storable_path

SOURCE = "dcmqi/data/segmentations/24x38x3/image"


def _copy_series(data_dir: Path, folder: Path) -> list[Path]:
    folder.mkdir(parents=True)
    return [Path(shutil.copy(p, folder)) for p in sorted((data_dir / SOURCE).glob("*.dcm"))]


def test_storable_path_round_trips_undecodable_bytes():
    raw = os.fsdecode(b"/d/\xff%20 x.dcm")
    stored = storable_path(raw)
    stored.encode("utf-8")  # a UTF-8 store takes it
    assert stored.startswith("file://") and local_path(stored) == raw
    assert storable_path("/d/plain é.dcm") == "/d/plain é.dcm"


def test_non_utf8_names_are_indexed_and_loaded(data_dir: Path, tmp_path: Path):
    root = tmp_path / "src"
    files = _copy_series(data_dir, root / os.fsdecode(b"s\xfe"))
    for i, f in enumerate(files):  # each name holds a byte that is not UTF-8
        f.rename(f.with_name(os.fsdecode(b"\xff%d.dcm" % i)))
    m = dicomml.index(root, tmp_path / "m", workers=1, progress=False)
    assert m.errors.empty, m.errors.message.tolist()
    stored = sorted(m.instances.path)
    assert [local_path(p) for p in stored] == sorted(str(p) for p in (root / os.fsdecode(b"s\xfe")).iterdir())
    (key,) = m.series.series_key
    from_manifest = dicomml.load_series(m, key)
    from_files = dicomml.load_files([local_path(p) for p in stored])
    assert from_files.meta["series_key"] == key
    assert (from_manifest.array == from_files.array).all()
    (root / "notes.txt").write_text("x")  # a changed listing is diffed against the stored paths: the others are not read again
    dicomml.index(root, tmp_path / "m", workers=1, progress=False)
    assert json.loads((tmp_path / "m" / "manifest.json").read_text())["last_run"]["files_read"] == 1


def test_quote_in_folder_names_of_source_and_manifest(data_dir: Path, tmp_path: Path):
    root = tmp_path / "it's"
    _copy_series(data_dir, root / "a'b\"c")
    m = dicomml.index(root, tmp_path / "man'ifest", workers=1, progress=False)
    assert len(m.instances) == 3 and m.errors.empty
    assert m.sql("SELECT count(*) AS n FROM instances WHERE path LIKE ?", "%a'b\"c%").n[0] == 3
    (root / "a'b\"c" / "IMG0001.dcm").unlink()  # a rerun diffs listing and partitions through DuckDB
    again = dicomml.index(root, tmp_path / "man'ifest", workers=1, progress=False)
    assert len(again.instances) == 2


def test_dangling_symlink_is_not_called_a_loop(tmp_path: Path):
    root = tmp_path / "src"
    root.mkdir()
    (root / "gone.dcm").symlink_to(tmp_path / "nowhere.dcm")
    (root / "loop").symlink_to(root / "loop")
    m = dicomml.index(root, tmp_path / "m", workers=1, progress=False)
    kinds = dict(zip(m.errors.path.map(os.path.basename), m.errors.error_type))
    assert kinds == {"gone.dcm": "broken_symlink", "loop": "symlink_loop"}
