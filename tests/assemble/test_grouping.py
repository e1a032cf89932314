"""group_keys: echoes, kinds, orientations and folders split; time points do not."""

from __future__ import annotations

import numpy as np
import pydicom

from dicomml.assemble.grouping import group_keys
from dicomml.dicom import frame_table
from dicomml.dicom.synthetic import write_series


def _keys(path, folder=None):
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    return group_keys(ds.SeriesInstanceUID, ds.SOPClassUID, folder or str(path.parent), frame_table(ds))


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
