"""The series_key rule: echoes, kinds, orientations, folders, series numbers and encodings split;
time points do not."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pydicom
from nibabel.orientations import apply_orientation, io_orientation, ornt_transform

import dicomml
from dicomml.dicom.series_key import dataset_group_keys
from dicomml.dicom.synthetic import write_series


def _keys(path, folder=None):
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    return dataset_group_keys(ds, folder or str(path.parent))


def test_time_points_share_one_key(data_dir):
    files = sorted((data_dir / "dcm_qa_nih/In/20180918GE/mr_0004").glob("*.dcm"))
    keys = {k for f in files for k in _keys(f)}
    assert len(files) == 150 and len(keys) == 1
    assert len(next(iter(keys))) == 16 and int(next(iter(keys)), 16) >= 0


def test_echoes_split_as_dcm2niix_e1_e2(data_dir):
    files = sorted((data_dir / "dcm_qa_xa30/In/8_gre_field_mapping").glob("*.dcm"))
    per_file = [set(_keys(f)) for f in files]
    assert all(len(k) == 1 for k in per_file) and per_file[0] != per_file[1]


def test_philips_field_map_magnitude_and_map_split(data_dir):
    keys = _keys(data_dir / "dcm_qa_enh/In/Philips/IM_0027_fMAP.dcm")
    assert len(keys) == 64 and len(set(keys)) == 2
    assert keys.count(keys[0]) == 32


def test_reencoded_copy_in_other_folder_is_other_group(data_dir):
    name = "dcmqi/data/segmentations/ct-3slice"
    original = sorted((data_dir / name).glob("*.dcm"))[0]
    copy = data_dir / "derived-dcmtk/dcmqi/rle-lossless/data/segmentations/ct-3slice" / original.name
    assert pydicom.dcmread(copy).SeriesInstanceUID == pydicom.dcmread(original).SeriesInstanceUID
    assert _keys(original) != _keys(copy)


def test_copies_of_one_series_with_other_numbers_and_encodings_split(data_dir):
    """dcm_qa_ts: one SeriesInstanceUID, nine SeriesNumbers and transfer syntaxes, one folder."""
    files = [data_dir / f"dcm_qa_ts/In/{n}.dcm" for n in range(1, 10)]
    assert len({pydicom.dcmread(f, stop_before_pixels=True).SeriesInstanceUID for f in files}) == 1
    assert len({k for f in files for k in _keys(f)}) == 9


def test_reencoded_copy_in_same_folder_is_other_group(tmp_path):
    """Same UIDs and SeriesNumber, another transfer syntax (as dcmtk's lossless re-encodes keep them)."""
    vol = np.arange(2 * 8 * 8, dtype=np.uint16).reshape(2, 8, 8)
    plain = write_series(tmp_path / "a", vol, series_uid="1.2.3")
    copy = pydicom.dcmread(plain[0])
    copy.compress(pydicom.uid.RLELossless)
    copy.save_as(tmp_path / "a" / "copy.dcm")
    assert _keys(plain[0]) == _keys(plain[1]) != _keys(tmp_path / "a" / "copy.dcm")


def test_orientation_and_matrix_changes_split(tmp_path):
    vol = np.zeros((2, 8, 8), np.uint16)
    axial = write_series(tmp_path / "s", vol, series_uid="1.2.3")
    tilted = write_series(tmp_path / "t", vol, series_uid="1.2.3", orientation=(1, 0, 0, 0, 0.6, 0.8))
    small = write_series(tmp_path / "u", np.zeros((1, 4, 8), np.uint16), series_uid="1.2.3")
    keys = [_keys(f, folder="same")[0] for f in (*axial, tilted[0], small[0])]
    assert keys[0] == keys[1]
    assert len({keys[0], keys[2], keys[3]}) == 3


def test_tiny_orientation_noise_does_not_split(tmp_path):
    vol = np.zeros((1, 4, 4), np.uint16)
    a = write_series(tmp_path / "a", vol, series_uid="1.2.3", orientation=(1, 0, 0, 0, 1, 0))
    b = write_series(tmp_path / "b", vol, series_uid="1.2.3", orientation=(1, 0, 0, 0, 1, -0.000001))
    assert _keys(a[0], folder="f") == _keys(b[0], folder="f")


def test_index_of_dcm_qa_ts_gives_nine_volumes_like_dcm2niix(data_dir, tmp_path):
    """dcm2niix writes Ref/1.nii ... 9.nii, one 3D volume per SeriesNumber; so does the manifest."""
    manifest = dicomml.index(data_dir / "dcm_qa_ts/In", tmp_path / "m")
    series = manifest.series.sort_values("series_number")
    assert series["series_number"].tolist() == list(range(1, 10))
    assert (series["n_volumes"] == 1).all() and series["usable"].all()
    for key, number in zip(series["series_key"], series["series_number"]):
        volume = dicomml.load_series(manifest, key)
        reference = nib.load(data_dir / f"dcm_qa_ts/Ref/{number}.nii")
        assert volume.axes == () and volume.array.shape == (35, 64, 64)
        to_reference = ornt_transform(io_orientation(volume.affine), io_orientation(reference.affine))
        np.testing.assert_array_equal(apply_orientation(volume.array, to_reference), np.asarray(reference.dataobj))
