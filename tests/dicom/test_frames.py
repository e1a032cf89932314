"""frame_table on real classic, enhanced and mosaic files, and on malformed headers."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pydicom
import pytest

from dicomml.dicom import frame_table
from dicomml.dicom.synthetic import write_slice
from dicomml.errors import InvalidDicomFileError
from dicomml.geometry import LPS_TO_RAS


def _header(path):
    return pydicom.dcmread(path, stop_before_pixels=True)


def test_classic_ct_reads_position_orientation_spacing(data_dir):
    files = sorted((data_dir / "dcmqi/data/segmentations/ct-3slice").glob("*.dcm"))
    ds = pydicom.dcmread(files[0])  # full read: the oracle is pydicom's own element values
    t = frame_table(_header(files[0]))
    assert len(t) == 1 and t.mosaic is None and (t.rows, t.columns) == (512, 512)
    np.testing.assert_array_equal(t.positions[0], [float(v) for v in ds.ImagePositionPatient])
    np.testing.assert_array_equal(t.orientations[0], [float(v) for v in ds.ImageOrientationPatient])
    np.testing.assert_array_equal(t.pixel_spacing[0], [float(v) for v in ds.PixelSpacing])
    assert t.rescale_intercept[0] == float(ds.RescaleIntercept)
    assert t.frame_numbers.tolist() == [1]


def test_enhanced_frames_take_per_frame_then_shared_groups(data_dir):
    path = next((data_dir / "dcm_qa_xa30/In/5_anat-T1w_acq-tfl").glob("*.dcm"))
    ds = _header(path)
    t = frame_table(ds)
    assert len(t) == 96 and t.frame_numbers[-1] == 96
    last = ds.PerFrameFunctionalGroupsSequence[95].PlanePositionSequence[0].ImagePositionPatient
    np.testing.assert_array_equal(t.positions[95], [float(v) for v in last])
    assert np.all(np.isfinite(t.orientations)) and np.all(np.isfinite(t.pixel_spacing))
    assert len(np.unique(t.positions, axis=0)) == 96


def test_enhanced_field_map_echo_times_differ_between_files(data_dir):
    files = sorted((data_dir / "dcm_qa_xa30/In/8_gre_field_mapping").glob("*.dcm"))
    echoes = [np.unique(frame_table(_header(f)).echo).tolist() for f in files]
    assert echoes == [[10.0], [12.46]]


def test_enhanced_4d_temporal_index_per_file(data_dir):
    files = sorted((data_dir / "dcm_qa_enh/In/Siemens/XA10").glob("*.dcm"))
    temporal = sorted(float(frame_table(_header(f)).temporal[0]) for f in files)
    assert temporal == [1.0, 2.0, 3.0, 4.0]


def test_mosaic_slices_match_dcm2niix_affine(data_dir):
    path = sorted((data_dir / "dcm_qa/In/Orientation/ax/axasc35").glob("MR*"))[0]
    t = frame_table(_header(path))
    assert t.mosaic == (6, 35) and (t.rows, t.columns) == (64, 64) and len(t) == 35
    assert t.frame_numbers.tolist() == [1] * 35
    ref = nib.load(data_dir / "dcm_qa/Ref/ax_asc_35sl_6.nii").affine
    # dcm2niix flips the rows: DICOM's first pixel of slice k is NIfTI voxel (0, 63, k).
    expected = np.array([(np.linalg.inv(LPS_TO_RAS) @ ref @ [0, 63, k, 1])[:3] for k in range(35)])
    np.testing.assert_allclose(t.positions, expected, atol=0.01)


def test_secondary_capture_without_geometry_gives_nan(data_dir):
    t = frame_table(_header(data_dir / "pydicom-data/data_store/data/JPEG-LL.dcm"))
    assert len(t) == 1
    assert np.isnan(t.positions).all() and np.isnan(t.orientations).all()


def test_malformed_position_raises_with_path_and_tag(tmp_path):
    path = write_slice(tmp_path / "bad.dcm", np.zeros((4, 4), np.uint16), position=(0, 0, 0), series_uid="1.2.3")
    ds = pydicom.dcmread(path)
    ds.ImagePositionPatient = [1.0, 2.0]
    ds.save_as(path)
    with pytest.raises(InvalidDicomFileError) as info:
        frame_table(_header(path))
    assert info.value.path == str(path) and info.value.tag == "(0020,0032)"
    assert "bad.dcm" in str(info.value) and "3 finite numbers" in str(info.value)


def test_missing_rows_raises(tmp_path):
    path = write_slice(tmp_path / "norows.dcm", np.zeros((4, 4), np.uint16), position=(0, 0, 0), series_uid="1.2.3")
    ds = pydicom.dcmread(path)
    del ds.Rows
    ds.save_as(path)
    with pytest.raises(InvalidDicomFileError, match="Rows"):
        frame_table(_header(path))
