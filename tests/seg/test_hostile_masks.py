"""Malformed RTSTRUCT and SEG files: one dicomml error line naming the file and the item at fault, never a wrong mask."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pydicom
import pytest
from seg_refs import header_grid, write_ct, write_seg

from dicomml.errors import DicomMLError, InvalidDicomFileError, SegReferenceError
from dicomml.seg import rtstruct_to_grid, seg_to_grid

MOCK = "rt-utils/tests/mock_data"
#: An eight-byte Contour Data value of the mock RTSTRUCT's first point, swapped for hostile bytes after writing.
PLACEHOLDER = b"-777.125"


def _one_line(exc: pytest.ExceptionInfo, path: Path) -> str:
    message = str(exc.value)
    assert isinstance(exc.value, DicomMLError) and "\n" not in message
    assert message.startswith(f"{path}: ") and exc.value.path == str(path)
    return message


def _mock(data_dir: Path):
    series = data_dir / MOCK
    return pydicom.dcmread(series / "rt.dcm"), header_grid(sorted(series.glob("ct_*.dcm")))


@pytest.mark.parametrize(
    ("values", "raw", "problem"),
    [
        (None, b"NaN     ", "NaN or infinite"),
        (None, b"Inf     ", "NaN or infinite"),
        (None, b"abcdefgh", "not a number"),
        (None, b"1e30    ", "1 km"),
        ([], None, "has 0 values"),
        (["-51", "-51", "60", "-51", "-27", "60", "0"], None, "has 7 values"),
    ],
)
def test_rtstruct_contour_data_that_is_not_finite_xyz_triplets_raises_naming_the_contour(data_dir, tmp_path, values, raw, problem) -> None:
    ds, reference = _mock(data_dir)
    contour = ds.ROIContourSequence[0].ContourSequence[0]
    if raw is not None:
        contour.ContourData = [PLACEHOLDER.decode()] + list(contour.ContourData)[1:]
    else:
        contour.ContourData = values
    path = tmp_path / "rt.dcm"
    ds.save_as(path)
    if raw is not None:
        path.write_bytes(path.read_bytes().replace(PLACEHOLDER, raw))
    with pytest.raises(InvalidDicomFileError) as exc:
        rtstruct_to_grid(path, reference)
    message = _one_line(exc, path)
    assert "(3006,0050) Contour Data of contour 1 of ROI 'ROI-1'" in message and problem in message


@pytest.mark.parametrize("number", [70000, -3, 0])
def test_rtstruct_roi_number_that_no_label_map_holds_raises_and_as_channels_still_draws_it(data_dir, tmp_path, number) -> None:
    ds, reference = _mock(data_dir)
    expected = rtstruct_to_grid(data_dir / MOCK / "rt.dcm", reference).array
    ds.StructureSetROISequence[0].ROINumber = number
    ds.ROIContourSequence[0].ReferencedROINumber = number
    path = tmp_path / "rt.dcm"
    ds.save_as(path)
    with pytest.raises(InvalidDicomFileError, match=rf"\(3006,0022\) ROI Number {number} of ROI 'ROI-1' .*as_channels=True") as exc:
        rtstruct_to_grid(path, reference)
    _one_line(exc, path)
    channels = rtstruct_to_grid(path, reference, as_channels=True)
    assert channels.meta["labels"] == {number: "ROI-1"}
    np.testing.assert_array_equal(channels.array[0], expected)


def test_rtstruct_contours_of_a_roi_the_structure_set_lacks_raise_instead_of_an_empty_mask(data_dir, tmp_path) -> None:
    ds, reference = _mock(data_dir)
    ds.ROIContourSequence[0].ReferencedROINumber = 99
    path = tmp_path / "rt.dcm"
    ds.save_as(path)
    with pytest.raises(InvalidDicomFileError, match=r"\(3006,0084\) ROI 99 but .* has only \[1\]") as exc:
        rtstruct_to_grid(path, reference)
    _one_line(exc, path)


def test_rtstruct_two_rois_with_one_number_raise_instead_of_cancelling_out(data_dir, tmp_path) -> None:
    ds, reference = _mock(data_dir)
    # a copied ROI: its contours, drawn twice, would cancel out under the even-odd rule
    ds.StructureSetROISequence.append(copy.deepcopy(ds.StructureSetROISequence[0]))
    ds.StructureSetROISequence[1].ROIName = "copy"
    ds.ROIContourSequence.append(copy.deepcopy(ds.ROIContourSequence[0]))
    path = tmp_path / "rt.dcm"
    ds.save_as(path)
    with pytest.raises(InvalidDicomFileError, match=r"\(3006,0022\) ROI Number 1 is used by ROIs 'ROI-1' and 'copy'") as exc:
        rtstruct_to_grid(path, reference)
    _one_line(exc, path)


def test_rtstruct_contour_beside_every_voxel_of_its_slice_raises_instead_of_an_empty_mask(data_dir, tmp_path) -> None:
    ds, reference = _mock(data_dir)
    for contour in ds.ROIContourSequence[0].ContourSequence:
        points = np.asarray(contour.ContourData, dtype=float).reshape(-1, 3)
        points[:, 0] += 1000.0  # 1 m to the patient's left, on the same slice
        contour.ContourData = [f"{v:.3f}" for v in points.ravel()]
    path = tmp_path / "rt.dcm"
    ds.save_as(path)
    with pytest.raises(SegReferenceError, match="beside the rows and columns of slice") as exc:
        rtstruct_to_grid(path, reference)
    _one_line(exc, path)


@pytest.fixture
def binary_seg(tmp_path):
    """A two-segment BINARY SEG written by highdicom on a small CT, and that CT's grid."""
    files = write_ct(tmp_path / "ct", (3, 16, 16), 1.0)
    masks = np.zeros((3, 16, 16, 2), np.uint8)
    masks[1, 4:8, 4:8, 0] = 1
    masks[2, 8:12, 8:12, 1] = 1
    path = write_seg(tmp_path / "seg.dcm", [pydicom.dcmread(f) for f in files], masks, "BINARY", 2)
    return path, header_grid(files)


def test_seg_frame_of_a_segment_the_seg_does_not_describe_raises_naming_the_frame(binary_seg, tmp_path) -> None:
    path, reference = binary_seg
    ds = pydicom.dcmread(path)
    ds.PerFrameFunctionalGroupsSequence[0].SegmentIdentificationSequence[0].ReferencedSegmentNumber = 99
    ds.save_as(tmp_path / "bad.dcm")
    with pytest.raises(InvalidDicomFileError, match=r"frame 1 has \(0062,000B\) Referenced Segment Number 99, .*\[1, 2\]") as exc:
        seg_to_grid(tmp_path / "bad.dcm", reference)
    _one_line(exc, tmp_path / "bad.dcm")


@pytest.mark.parametrize("maximum", [0, None])
def test_fractional_seg_without_a_positive_maximum_fractional_value_raises(tmp_path, maximum) -> None:
    files = write_ct(tmp_path / "ct", (3, 16, 16), 1.0)
    probabilities = np.zeros((3, 16, 16), np.float32)
    probabilities[1, 4:8, 4:8] = 0.75
    path = write_seg(tmp_path / "seg.dcm", [pydicom.dcmread(f) for f in files], probabilities, "FRACTIONAL", 1)
    ds = pydicom.dcmread(path)
    if maximum is None:
        del ds.MaximumFractionalValue
    else:
        ds.MaximumFractionalValue = maximum
    ds.save_as(tmp_path / "bad.dcm")
    with pytest.raises(InvalidDicomFileError, match=r"\(0062,000E\) Maximum Fractional Value") as exc:
        seg_to_grid(tmp_path / "bad.dcm", header_grid(files))
    _one_line(exc, tmp_path / "bad.dcm")


def test_seg_of_an_unknown_segmentation_type_raises_instead_of_reading_it_as_binary(binary_seg, tmp_path) -> None:
    path, reference = binary_seg
    ds = pydicom.dcmread(path)
    ds.SegmentationType = "BANANA"
    ds.save_as(tmp_path / "bad.dcm")
    with pytest.raises(InvalidDicomFileError, match=r"\(0062,0001\) Segmentation Type 'BANANA' is not one of") as exc:
        seg_to_grid(tmp_path / "bad.dcm", reference)
    _one_line(exc, tmp_path / "bad.dcm")


def test_seg_without_segments_raises_instead_of_an_empty_label_map(binary_seg, tmp_path) -> None:
    path, reference = binary_seg
    ds = pydicom.dcmread(path)
    ds.SegmentSequence = pydicom.Sequence([])
    ds.save_as(tmp_path / "bad.dcm")
    with pytest.raises(InvalidDicomFileError, match=r"\(0062,0002\) Segment Sequence is empty") as exc:
        seg_to_grid(tmp_path / "bad.dcm", reference)
    _one_line(exc, tmp_path / "bad.dcm")


def test_seg_whose_rows_the_pixel_data_cannot_hold_raises_instead_of_a_reshape_error(binary_seg, tmp_path) -> None:
    path, reference = binary_seg
    ds = pydicom.dcmread(path)
    ds.Rows = ds.Rows * 10
    ds.save_as(tmp_path / "bad.dcm")
    with pytest.raises(InvalidDicomFileError, match=r"\(0028,0008\) Number of Frames .* needs at least") as exc:
        seg_to_grid(tmp_path / "bad.dcm", reference)
    _one_line(exc, tmp_path / "bad.dcm")


def test_seg_with_a_nan_frame_position_raises_instead_of_highdicoms_sqlite_error(binary_seg, tmp_path) -> None:
    path, reference = binary_seg
    ds = pydicom.dcmread(path)
    ds.PerFrameFunctionalGroupsSequence[0].PlanePositionSequence[0].ImagePositionPatient = ["NaN", 0, 0]
    ds.save_as(tmp_path / "bad.dcm")
    with pytest.raises(InvalidDicomFileError, match=r"frame 1 has \(0020,0032\) Image Position \(Patient\) \[nan") as exc:
        seg_to_grid(tmp_path / "bad.dcm", reference)
    _one_line(exc, tmp_path / "bad.dcm")
