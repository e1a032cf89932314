"""Seeded fuzzing: a hostile corpus made from real files is indexed in one run and every usable series loads
to a volume or a typed error (``scripts/fuzz.py`` runs the same at over 1,000 entries)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import dicomml
from dicomml.errors import DicomMLError
from dicomml.paths import local_path
from dicomml.testing.hostile import build_corpus, entries


@pytest.fixture(scope="module")
def corpus(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, int], dicomml.Manifest]:
    root = tmp_path_factory.mktemp("fuzz")
    counts = build_corpus(data_dir, root / "tree", scale=1, seed=18)
    manifest = dicomml.index(root / "tree", root / "m", workers=2, timeout_s=20, progress=False)
    return root / "tree", counts, manifest


def test_every_entry_is_an_instance_or_an_error_row(corpus):
    tree, counts, m = corpus
    assert len(counts) >= 25 and sum(counts.values()) >= 100
    seen = {local_path(p) for p in m.instances.path} | {local_path(p) for p in m.errors.path}
    assert entries(tree) <= seen


def test_each_category_is_recorded_as_it_should(corpus):
    tree, counts, m = corpus
    errors = m.errors.assign(category=[local_path(p)[len(str(tree)) + 1 :].split("/")[0] for p in m.errors.path])
    for category in ("frame_count_lie", "deflate_bomb", "deep_nesting", "truncated"):
        assert category in set(errors.category), category
    bomb = errors[errors.category == "deflate_bomb"]
    assert "inflates past" in bomb.message.iloc[0]
    series = m.series.assign(category=[local_path(f)[len(str(tree)) + 1 :].split("/")[0] for f in m.series.folder])
    # "one file off" splits that file into its own (single-slice) group; slices 90 m apart are a regular stack
    honest = ("series_slices_apart_in_range", "series_orientation_one_file_off")
    lied = series[series.category.str.startswith("series_") & ~series.category.isin(honest)]
    assert not lied.usable.any(), lied[lied.usable][["category", "reason"]]


def test_every_usable_series_loads_or_raises_a_typed_error(corpus):
    _, _, m = corpus
    loaded = typed = 0
    for key in m.series[m.series.usable].series_key:
        try:
            dicomml.load_series(m, key)
            loaded += 1
        except DicomMLError as exc:
            assert "\n" not in str(exc)
            typed += 1
    assert loaded


def test_every_file_alone_loads_or_raises_a_typed_error(corpus):
    tree, _, m = corpus
    untyped = []
    for path in sorted({local_path(p) for p in m.instances.path} | {local_path(p) for p in m.errors.path}):
        if not os.path.isfile(path) or os.path.basename(path).startswith("fifo"):
            continue
        try:
            dicomml.load_files([path], on_irregular="keep")
        except DicomMLError:
            pass
        except BaseException as exc:  # noqa: BLE001 - what this test looks for (a Rust panic is a BaseException)
            untyped.append(f"{path}: {type(exc).__name__}: {exc}")
    assert untyped == []


def test_an_encapsulated_frame_count_lie_is_refused_before_allocation(data_dir: Path, tmp_path: Path):
    import pydicom

    from dicomml.errors import InvalidDicomFileError

    ds = pydicom.dcmread(data_dir / "pydicom-data/data_store/data/emri_small_RLE.dcm")
    ds.NumberOfFrames = 1_000_007  # under the absolute cap: only the bytes present can refuse it
    ds.save_as(tmp_path / "lie.dcm")
    with pytest.raises(InvalidDicomFileError, match=r"\(0028,0008\).*needs at least"):
        dicomml.load_files([tmp_path / "lie.dcm"])


@pytest.mark.parametrize("group_length", ["absent", "zero", "short by 8"])
def test_a_deflate_bomb_is_refused_on_load_whatever_its_group_length_says(corpus, tmp_path: Path, group_length: str):
    """pydicom finds the dataset past the group 0002 elements, not by (0002,0000): the guard must too."""
    import struct

    from dicomml.errors import ResourceLimitError

    tree, _, _ = corpus
    (bomb,) = (tree / "deflate_bomb").iterdir()
    data = bytearray(bomb.read_bytes())
    assert data[132:136] == b"\x02\x00\x00\x00"  # (0002,0000) UL, first in the file meta
    if group_length == "absent":
        del data[132:144]
    else:
        value = 0 if group_length == "zero" else struct.unpack_from("<L", data, 140)[0] - 8
        struct.pack_into("<L", data, 140, value)
    (tmp_path / "bomb.dcm").write_bytes(data)
    with pytest.raises(ResourceLimitError, match="deflate bomb"):
        dicomml.load_files([tmp_path / "bomb.dcm"])
