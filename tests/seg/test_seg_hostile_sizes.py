"""Hostile sizes: SEG frames far apart or at infinity, and write-back label values far past the labels' range.

Each is one dicomml error line naming the file, raised before anything sized by the hostile value is allocated.
"""

from __future__ import annotations

import time
from pathlib import Path

import highdicom as hd
import nibabel as nib
import numpy as np
import pydicom
import pytest
from seg_refs import header_grid, write_ct, write_seg

import dicomml
from dicomml.dicom.synthetic import write_series
from dicomml.errors import ConfigError, DicomMLError, InvalidDicomFileError, ResourceLimitError, SegReferenceError
from dicomml.seg import seg_to_grid
from dicomml.seg._grid import stack_grid
from dicomml.seg.write import source_grid


def _one_line(exc: pytest.ExceptionInfo, path: Path) -> str:
    message = str(exc.value)
    assert isinstance(exc.value, DicomMLError) and "\n" not in message
    assert message.startswith(f"{path}: ") and exc.value.path == str(path)
    return message


@pytest.fixture(scope="module")
def box_seg(tmp_path_factory):
    """A one-segment BINARY SEG of a box on every slice of a 4 x 16 x 16 CT (1 mm), and that CT's grid."""
    folder = tmp_path_factory.mktemp("box")
    files = write_ct(folder / "ct", (4, 16, 16), 1.0)
    box = np.zeros((4, 16, 16), np.uint8)
    box[:, 4:10, 4:10] = 1
    path = write_seg(folder / "seg.dcm", [pydicom.dcmread(f) for f in files], box, "BINARY", 1)
    return path, header_grid(files)


def _moved(path: Path, out: Path, zs: list[float]) -> Path:
    """The SEG with frame k at z = ``zs[k]`` (x, y kept)."""
    ds = pydicom.dcmread(path)
    for item, z in zip(ds.PerFrameFunctionalGroupsSequence, zs):
        position = item.PlanePositionSequence[0]
        position.ImagePositionPatient = [float(v) for v in position.ImagePositionPatient[:2]] + [z]
    ds.save_as(out)
    return out


@pytest.mark.parametrize(("z", "shown"), [(float("inf"), "inf"), (float("nan"), "nan")])
def test_a_seg_frame_at_an_infinite_or_nan_position_is_refused_naming_the_frame(box_seg, tmp_path, z, shown) -> None:
    """An infinite position reached the sheared-stack grid, whose step count OverflowError'd converting to int."""
    path, reference = box_seg
    bad = _moved(path, tmp_path / "bad.dcm", [0.0, 0.11, 0.22, z])
    with pytest.raises(InvalidDicomFileError) as exc:
        seg_to_grid(bad, reference)
    message = _one_line(exc, bad)
    assert "frame 4 has (0020,0032) Image Position (Patient) [" in message and shown in message
    assert exc.value.tag == "(0020,0032)"


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # highdicom's own geometry overflows on the way
def test_seg_frames_too_far_apart_to_count_in_steps_are_refused(box_seg, tmp_path) -> None:
    path, reference = box_seg
    far = _moved(path, tmp_path / "far.dcm", [0.0, 0.11, 0.22, 1e308])
    with pytest.raises(SegReferenceError) as exc:
        seg_to_grid(far, reference)
    assert "do not form a regular volume" in _one_line(exc, far)
    assert stack_grid([1, 0, 0, 0, 1, 0], [1, 1], np.array([[0, 0, 0], [0, 0, 0.11], [0, 0, 1e308]]), (4, 4)) is None


def test_a_seg_whose_frames_lie_far_apart_is_refused_before_its_own_grid_is_allocated(box_seg, tmp_path) -> None:
    """Frames at z = 0, 0.11, 0.22 and 1e8 mm are one regular stack of 909,090,910 slices: 217 GiB of canvas."""
    path, reference = box_seg
    far = _moved(path, tmp_path / "far.dcm", [0.0, 0.11, 0.22, 1e8])
    with pytest.raises(ResourceLimitError) as exc:
        seg_to_grid(far, reference)
    assert "a mask on the grid of its frames: a volume of 909090910x16x16 voxels exceeds" in _one_line(exc, far)
    # 100 mm: 910 slices, 232,960 voxels; under the limit given, over a smaller one
    near = _moved(path, tmp_path / "near.dcm", [0.0, 0.11, 0.22, 100.0])
    assert seg_to_grid(near, reference, max_voxels=300_000).meta["resampled"]
    with pytest.raises(ResourceLimitError, match="910x16x16 voxels exceeds the limit of 200000"):
        seg_to_grid(near, reference, max_voxels=200_000)


def test_a_seg_mask_counts_its_channels_against_max_voxels(box_seg) -> None:
    path, reference = box_seg  # 4 x 16 x 16 = 1024 voxels
    assert seg_to_grid(path, reference, max_voxels=1024).array.shape == (4, 16, 16)
    assert seg_to_grid(path, reference, as_channels=True, max_voxels=1024).array.shape == (1, 4, 16, 16)
    with pytest.raises(ResourceLimitError, match=r"a mask on .*: a volume of 1x4x16x16 voxels exceeds the limit of 1000"):
        seg_to_grid(path, reference, as_channels=True, max_voxels=1000)


# write-back -------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def series(tmp_path_factory):
    folder = tmp_path_factory.mktemp("series") / "CT"
    write_series(folder, np.zeros((4, 16, 16), np.uint16), spacing=2.0)
    return folder


def _one_voxel(grid, value, dtype) -> np.ndarray:
    array = np.zeros(grid.shape, dtype)
    array[1, 2, 3] = value
    return array


@pytest.mark.parametrize(
    ("value", "dtype", "shown"),
    [
        (2**40, np.int64, "[1099511627776]"),  # a table as long as the value: 1 TiB
        (2**31, np.int64, "[2147483648]"),  # 2.4 GiB and 9 s before the error
        (1e12, np.float32, "[999999995904]"),  # float32's nearest to 1e12
        (1e30, np.float64, "[1e+30]"),  # was int64's minimum after the cast
        (2**63 + 5, np.uint64, "[9223372036854775813]"),  # was numpy's "Maximum allowed dimension exceeded"
        (-7, np.int16, "[-7]"),
    ],
)
def test_a_label_value_far_past_the_labels_is_refused_quickly_saying_what_it_is(series, tmp_path, value, dtype, shown) -> None:
    grid = source_grid(series)
    path = tmp_path / "prediction.nii.gz"
    array = _one_voxel(grid, value, dtype)
    nib.save(nib.Nifti1Image(array, grid.affine, dtype=array.dtype), path)
    started = time.perf_counter()
    with pytest.raises(ConfigError) as exc:
        dicomml.write_seg(path, series, {"liver": 1, "tumor": 2}, tmp_path / "x.dcm")
    assert time.perf_counter() - started < 5
    assert f"the prediction holds label values {shown} that labels=" in _one_line(exc, path)


def test_a_complex_prediction_is_refused_naming_the_file(series, tmp_path) -> None:
    grid = source_grid(series)
    path = tmp_path / "complex.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros(grid.shape, np.complex64), grid.affine, dtype=np.complex64), path)
    for channels in (False, True):
        if channels:
            nib.save(nib.Nifti1Image(np.zeros(grid.shape + (2,), np.complex64), grid.affine, dtype=np.complex64), path)
        with pytest.raises(ConfigError, match="a prediction of dtype complex64; expected integer") as exc:
            dicomml.write_seg(path, series, {"liver": 1, "tumor": 2}, tmp_path / "x.dcm")
        _one_line(exc, path)


@pytest.mark.parametrize(
    "labels",
    [
        {"liver": 1, "tumor": 2},  # segment numbers already: no lookup
        {"liver": 3, "tumor": 9},  # a table
        {"liver": 3, "tumor": 2**40},  # past a table's 64 Ki entries: binary search
        {"liver": 5, "tumor": 70000},
    ],
)
def test_label_values_become_segment_numbers_whatever_their_size(series, tmp_path, labels) -> None:
    grid = source_grid(series)
    (liver, first), (tumor, second) = labels.items()
    array = np.zeros(grid.shape, np.int64)
    array[1:3, 2:8, 2:8] = first
    array[2, 4:6, 4:6] = second
    expected = np.stack([array == first, array == second], axis=-1)
    uids = [ds.SOPInstanceUID for ds in grid.datasets]
    for prediction in (array, array.astype(np.float64)):
        out = dicomml.write_seg(prediction, series, labels, tmp_path / "s.dcm", affine=grid.affine)
        back = hd.seg.segread(out).get_pixels_by_source_instance(uids, segment_numbers=[1, 2])
        np.testing.assert_array_equal(back, expected)
        assert [s.segment_label for s in hd.seg.segread(out).SegmentSequence] == [liver, tumor]
