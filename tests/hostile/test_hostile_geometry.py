"""Geometry lies: the group becomes unusable with a reason, the index goes on, loading raises a typed error."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest

import dicomml
from dicomml.errors import DicomMLError, GeometryError
from dicomml.geometry.checks import geometry_problem

SOURCE = "dcmqi/data/segmentations/24x38x3/image"

LIES = {
    "spacing_zero": ("PixelSpacing", lambda i: [0.0, 0.0], "(0028,0030)"),
    "spacing_negative": ("PixelSpacing", lambda i: [-0.5, -0.5], "(0028,0030)"),
    "spacing_huge": ("PixelSpacing", lambda i: [1e308, 1e308], "(0028,0030)"),
    "spacing_tiny": ("PixelSpacing", lambda i: [1e-308, 1e-308], "(0028,0030)"),
    "iop_not_unit": ("ImageOrientationPatient", lambda i: [1.002, 0, 0, 0, 1, 0], "(0020,0037)"),
    "iop_not_orthogonal": ("ImageOrientationPatient", lambda i: [1, 0, 0, 0.05, 0.99875, 0], "(0020,0037)"),
    "position_huge": ("ImagePositionPatient", lambda i: [1e308, 0, i], "(0020,0032)"),
    "positions_spread": ("ImagePositionPatient", lambda i: [0, 0, (i - 1) * 1e308], "(0020,0032)"),
    "slices_far_apart": ("ImagePositionPatient", lambda i: [0, 0, i * 2e5 + 50], "(0020,0032)"),
}


@pytest.fixture(scope="module")
def lied(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dicomml.Manifest]:
    root = tmp_path_factory.mktemp("geometry")
    files = sorted((data_dir / SOURCE).glob("*.dcm"))
    shutil.copytree(data_dir / SOURCE, root / "honest")
    for name, (keyword, value, _) in LIES.items():
        (root / name).mkdir()
        for i, path in enumerate(files):
            ds = pydicom.dcmread(path)
            setattr(ds, keyword, value(i))
            ds.save_as(root / name / path.name)
    return root, dicomml.index(root, root.parent / f"{root.name}-m", workers=1, progress=False)


def test_each_lie_makes_its_group_unusable_with_a_reason(lied):
    root, m = lied
    series = m.series.set_index(m.series.folder.str.rsplit("/", n=1).str[-1])
    assert bool(series.loc["honest", "usable"])
    for name, (_, _, tag) in LIES.items():
        row = series.loc[name]
        assert not row.usable and row.reason.startswith("invalid geometry") and tag in row.reason, (name, row.reason)
    assert m.errors.empty


@pytest.mark.parametrize("name", sorted(LIES))
def test_loading_a_lie_raises_a_typed_error_naming_file_and_tag(lied, name):
    root, _ = lied
    tag = LIES[name][2]
    with pytest.raises(GeometryError) as caught:
        dicomml.load_files(sorted((root / name).glob("*.dcm")))
    assert isinstance(caught.value, DicomMLError) and caught.value.tag == tag
    assert "\n" not in str(caught.value)
    if name != "slices_far_apart":  # a per-file value: the message names the file
        assert ".dcm" in str(caught.value)


def test_tolerance_is_stated_and_holds_both_ways():
    assert geometry_problem([1.0009, 0, 0, 0, 1, 0]) is None
    assert geometry_problem([1.0011, 0, 0, 0, 1, 0]).tag == "(0020,0037)"
    assert geometry_problem([np.nan, 0, 0, 0, 1, 0]).tag == "(0020,0037)"
    assert geometry_problem([1, 0, 0, 0, 1, 0], [[np.nan, np.nan]]) is None  # absent, not a lie
    assert geometry_problem([1, 0, 0, 0, 1, 0], [0.5, 0.5], [[0, 0, np.inf]]).tag == "(0020,0032)"


@pytest.mark.parametrize("lost", ["IMG0001.dcm", "IMG0002.dcm", "IMG0003.dcm"])
def test_a_series_that_lost_a_slice_to_a_bad_file_is_not_usable(data_dir: Path, tmp_path: Path, lost: str):
    root = tmp_path / "s"
    shutil.copytree(data_dir / SOURCE, root)
    data = (root / lost).read_bytes()
    (root / lost).write_bytes(data[:200])  # an end slice too: no gap would show it
    (root / "README.txt").write_text("not DICOM, not a lost slice")
    m = dicomml.index(root, tmp_path / "m", workers=1, progress=False)
    (row,) = m.series.itertuples()
    assert not row.usable and (lost in row.reason or "missing slices" in row.reason), row.reason
    assert set(m.errors.error_type) == {"invalid", "not_dicom"}
