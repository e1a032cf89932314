"""The real corpus, indexed: every series present, split and reported as the issue asks."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest

import dicomml
from dicomml.indexer import Manifest


def _folder(data_dir: Path, relative: str) -> str:
    return str(data_dir / relative)


def test_every_indexed_series_is_in_the_manifest(corpus_manifest: Manifest, corpus_index: pd.DataFrame, data_dir: Path):
    inst = corpus_manifest.instances
    for row in corpus_index.itertuples():
        folder = _folder(data_dir, row.folder)
        if row.files:  # one object per row: find that file
            hits = inst[inst.path == str(Path(folder) / row.files)]
        else:
            hits = inst[(inst.folder == folder) & (inst.series_instance_uid == row.series_instance_uid)]
        assert len(hits), f"{row.folder} {row.series_instance_uid} {row.files} not in instances"
        assert hits.path.nunique() == (1 if row.files else int(row.n_files)), row.folder
        if row.modality not in ("SEG", "RTSTRUCT"):
            assert hits.series_key.notna().all()


def test_instance_values_match_pydicom(corpus_manifest: Manifest):
    inst = corpus_manifest.instances
    classic = inst[inst.number_of_frames.isna() & inst.mosaic_tiles.isna() & inst.image_position.notna()]
    classic = classic.drop_duplicates("path")
    for row in classic.sample(40, random_state=0).itertuples():
        ds = pydicom.dcmread(row.path, stop_before_pixels=True)
        assert row.sop_instance_uid == ds.SOPInstanceUID
        assert row.series_instance_uid == ds.SeriesInstanceUID
        assert (row.rows, row.columns) == (ds.Rows, ds.Columns)
        assert np.allclose(row.image_position, [float(v) for v in ds.ImagePositionPatient])
        assert np.allclose(row.pixel_spacing, [float(v) for v in ds.PixelSpacing])
        assert row.modality == ds.Modality
        assert row.transfer_syntax_uid == ds.file_meta.TransferSyntaxUID
        description = None if pd.isna(row.series_description) else row.series_description
        assert description == (ds.get("SeriesDescription") or None)


def test_only_non_dicom_files_land_in_errors(corpus_manifest: Manifest):
    errors = corpus_manifest.errors
    assert set(errors.error_type) == {"not_dicom"}
    for path in errors.path:
        with pytest.raises(pydicom.errors.InvalidDicomError):
            pydicom.dcmread(path)


def test_series_shape_matches_the_corpus_index(corpus_manifest: Manifest, corpus_index: pd.DataFrame, data_dir: Path):
    series = corpus_manifest.series
    for folder in (
        "dcm_qa_decubitus/In/HFS/3_t1_fl2d_sag",
        "dcmqi/data/segmentations/ct-3slice",
        "dcm_qa_nih/In/20180918GE/mr_0004",
        "dcm_qa_philips_enh/In/cl",
    ):
        expected = corpus_index[corpus_index.folder == folder].iloc[0]
        got = series[series.folder == _folder(data_dir, folder)]
        assert len(got) == 1, folder
        got = got.iloc[0]
        assert got.n_slices == int(expected.n_unique_positions)
        assert (got.rows, got.columns) == (int(expected.rows), int(expected.cols))
        assert got.usable, got.reason


def test_failing_ct_cases_get_their_reason(corpus_manifest: Manifest, data_dir: Path):
    series = corpus_manifest.series.set_index("folder")
    base = "dicom2nifti/tests/data/failing"
    tilt = series.loc[_folder(data_dir, f"{base}/gantrytilting/001")]
    gap = series.loc[_folder(data_dir, f"{base}/sliceincrement/001")]
    stack = series.loc[_folder(data_dir, f"{base}/notavolume/001")]
    assert not tilt.usable and "gantry tilt" in tilt.reason and tilt.tilt_deg == pytest.approx(14, abs=1)
    assert not gap.usable and "missing slices (gap)" in gap.reason and gap.missing_slices == 1
    assert not stack.usable and stack.reason == "4 images at one position (not a volume)"


def test_dcmtk_copies_stay_separate_and_are_reported(corpus_manifest: Manifest, data_dir: Path):
    series = corpus_manifest.series
    original = series[series.folder == _folder(data_dir, "dcmqi/data/segmentations/ct-3slice")].iloc[0]
    copies = series[series.series_instance_uid == original.series_instance_uid]
    assert len(copies) == 4  # the original and three re-encodings
    assert sorted(original.shared_uid_keys) == sorted(set(copies.series_key) - {original.series_key})
    inst = corpus_manifest.instances
    repeated = corpus_manifest.sql(
        "SELECT sop_instance_uid, count(DISTINCT path) n FROM instances WHERE series_instance_uid = ? GROUP BY 1",
        original.series_instance_uid,
    )
    assert (repeated.n == 4).all() and len(repeated) == 3
    assert inst[inst.series_instance_uid == original.series_instance_uid].path.nunique() == 12


def test_annotations_link_to_their_image_series(corpus_manifest: Manifest, corpus_index: pd.DataFrame, data_dir: Path):
    annotations = corpus_manifest.annotations.set_index("path")
    series = corpus_manifest.series.set_index("series_key")
    linked = corpus_index[corpus_index.referenced_series_folder.str.match(r"^[a-z]") & (corpus_index.files != "")]
    checked = 0
    for row in linked.itertuples():
        path = str(data_dir / row.folder / row.files)
        if row.referenced_series_folder.startswith("pydicom"):
            continue
        ann = annotations.loc[path]
        assert ann.referenced_series_key is not None, (path, ann.link_problem)
        assert series.loc[ann.referenced_series_key].folder == _folder(data_dir, row.referenced_series_folder), path
        checked += 1
    assert checked >= 8
    liver = annotations.loc[str(data_dir / "dcmqi/data/segmentations/liver.dcm")]
    assert len(liver.other_series_keys) == 3 and "nearest folder" in liver.link_problem
    assert list(liver.labels) == ["Liver"]
    missing = annotations.loc[str(data_dir / "highdicom/data/test_files/seg_image_ct_binary.dcm")]
    assert pd.isna(missing.referenced_series_key) and "not found" in missing.link_problem
    by_for = annotations.loc[str(data_dir / "rt-utils/tests/mock_data/non_existent_reference_rt.dcm")]
    assert by_for.link_method == "frame_of_reference"


def test_two_orientations_under_one_uid_are_split(data_dir: Path, tmp_path: Path, salt: str):
    source = data_dir / "dicom2nifti/tests/data/siemens/anatomical/001"
    tree = tmp_path / "series"
    tree.mkdir()
    for i, path in enumerate(sorted(source.iterdir())):
        ds = pydicom.dcmread(path)
        if i % 2:  # a second orientation: the planes rotated 90 degrees in-plane, same SeriesInstanceUID
            iop = [float(v) for v in ds.ImageOrientationPatient]
            ds.ImageOrientationPatient = iop[3:] + [-v for v in iop[:3]]
        ds.save_as(tree / path.name)
    m = dicomml.index(tree, tmp_path / "m", workers=1, salt=salt, progress=False)
    series = m.series
    assert len(series) == 2 and series.series_instance_uid.nunique() == 1
    assert sorted(series.n_files) == [2, 2]
    for key in series.series_key:
        files = m.series_files(key)
        orientations = {tuple(pydicom.dcmread(p).ImageOrientationPatient) for p in files.path}
        assert len(orientations) == 1


def test_enhanced_file_with_two_kinds_gives_one_row_per_group(corpus_manifest: Manifest, data_dir: Path):
    path = str(data_dir / "dcm_qa_enh/In/Philips/IM_0027_fMAP.dcm")
    rows = corpus_manifest.instances[corpus_manifest.instances.path == path]
    assert len(rows) == 2
    frames = sorted(f for numbers in rows.frame_numbers for f in numbers)
    assert frames == list(range(1, 65))
    assert all(len(p) == 3 * len(f) for p, f in zip(rows.frame_positions, rows.frame_numbers))
    files = corpus_manifest.series_files(rows.series_key.iloc[0])
    assert list(files.path) == [path] and list(files.frame_numbers.iloc[0]) == list(rows.frame_numbers.iloc[0])


def test_dicomdir_is_recognized_not_indexed(data_dir: Path, tmp_path: Path, salt: str):
    from pydicom.data import get_testdata_file

    tree = tmp_path / "tree"
    tree.mkdir()
    shutil.copy(get_testdata_file("DICOMDIR"), tree / "DICOMDIR")
    shutil.copy(data_dir / "dcmqi/data/segmentations/24x38x3/image/IMG0001.dcm", tree)
    m = dicomml.index(tree, tmp_path / "m", workers=1, salt=salt, progress=False)
    assert list(m.errors.error_type) == ["dicomdir"]
    assert list(m.instances.path) == [str(tree / "IMG0001.dcm")]


def test_seg_without_series_reference_links_by_frame_of_reference_and_planes(data_dir: Path, tmp_path: Path, salt: str):
    tree = tmp_path / "tree"
    shutil.copytree(data_dir / "dcmqi/data/segmentations/ct-3slice", tree / "ct")
    shutil.copytree(data_dir / "dicom2nifti/tests/data/failing/sliceincrement/001", tree / "other")
    (tree / "shifted").mkdir()  # same FrameOfReferenceUID, planes 100 mm away: must not match
    uid = pydicom.uid.generate_uid()
    for path in sorted((tree / "ct").iterdir()):
        ds = pydicom.dcmread(path)
        ds.SeriesInstanceUID = uid
        ds.SOPInstanceUID = pydicom.uid.generate_uid()
        ds.ImagePositionPatient = [*ds.ImagePositionPatient[:2], float(ds.ImagePositionPatient[2]) + 100]
        ds.save_as(tree / "shifted" / path.name)
    seg = pydicom.dcmread(data_dir / "dcmqi/data/segmentations/liver.dcm")
    del seg.ReferencedSeriesSequence  # no series UID, no SOP instances: only FrameOfReferenceUID and geometry
    seg.save_as(tree / "liver.dcm")
    m = dicomml.index(tree, tmp_path / "m", workers=1, salt=salt, progress=False)
    ann = m.annotations.iloc[0]
    ct = m.series[m.series.folder == str(tree / "ct")].iloc[0]
    assert ann.link_method == "frame_of_reference" and ann.referenced_series_key == ct.series_key
    assert pd.isna(ann.referenced_series_uid) and list(ann.other_series_keys) == []
