"""RTSTRUCT contours onto image grids, against rt-utils' own rasterization and matplotlib."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from matplotlib.path import Path as PolygonPath
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from rt_utils import RTStructBuilder
from seg_refs import header_grid, nifti_grid, onto

from dicomml.errors import SegmentNotFoundError, SegmentOverlapError, SegReferenceError
from dicomml.seg import fill_polygons, rtstruct_to_grid

MOCK = "rt-utils/tests/mock_data"


def dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(bool), b.astype(bool)
    return 2.0 * np.count_nonzero(a & b) / (np.count_nonzero(a) + np.count_nonzero(b))


def _rt_utils_mask(series: Path, rtstruct: Path, name: str) -> np.ndarray:
    """rt-utils' mask (row, column, slice) as (slice, row, column)."""
    return np.moveaxis(RTStructBuilder.create_from(str(series), str(rtstruct)).get_roi_mask_by_name(name), -1, 0)


def test_rt_utils_round_trip_rois_with_a_hole_match_rt_utils_exactly(data_dir, tmp_path) -> None:
    series = data_dir / MOCK
    reference = header_grid(sorted(series.glob("ct_*.dcm")))
    rows, cols = np.mgrid[:512, :512]
    radius2 = (rows - 200) ** 2 + (cols - 260) ** 2
    ring = (radius2 < 60**2) & ~(radius2 < 25**2)
    ellipse = ((rows - 380) / 40.0) ** 2 + ((cols - 120) / 70.0) ** 2 < 1
    triangle = (rows > 50) & (rows < 150) & (cols > 350) & (cols - 350 < rows - 50)
    drawn = {
        "ring": np.stack([ring, np.zeros_like(ring)]),
        "ellipse": np.stack([ellipse, ellipse]),
        "triangle": np.stack([np.zeros_like(triangle), triangle]),
    }
    builder = RTStructBuilder.create_new(dicom_series_path=str(series))
    for name, mask in drawn.items():
        builder.add_roi(mask=np.moveaxis(mask, 0, -1), name=name)
    builder.save(str(tmp_path / "rt.dcm"))
    ours = rtstruct_to_grid(tmp_path / "rt.dcm", reference, as_channels=True)
    assert list(ours.meta["labels"].values()) == list(drawn)
    for channel, name in enumerate(drawn):
        theirs = _rt_utils_mask(series, tmp_path / "rt.dcm", name)
        assert dice(ours.array[channel], theirs) >= 0.99
        np.testing.assert_array_equal(ours.array[channel].astype(bool), theirs)  # in fact identical
        np.testing.assert_array_equal(ours.array[channel].astype(bool), drawn[name])  # and the drawn mask


def test_rt_utils_mock_rtstruct_is_the_pixel_centre_rule_and_differs_from_rt_utils_only_at_the_edge(data_dir) -> None:
    """The one real RTSTRUCT (rt.dcm, MIM-like hand contours: a 24 mm square with a 15 mm hole).

    Dice with rt-utils is 0.93, below 0.99, and the difference is rt-utils' convention,
    not a placement error: rt-utils rounds each vertex to the nearest pixel (moving edges
    by up to half a pixel, here 0.45 px outward on the outer square and 0.3-0.5 px inward
    on the hole) and OpenCV's fillPoly paints the outline pixels too. On this thin
    ring (about 7 pixels wide at 0.49 mm) those half pixels are 13% of the area. Every
    voxel we mark is also marked by rt-utils; every extra rt-utils voxel is within one
    pixel of a contour; and ours equals matplotlib's point-in-polygon test of the pixel
    centres, whose area matches the polygons' exact area within the boundary's half pixels.
    """
    series = data_dir / MOCK
    reference = header_grid(sorted(series.glob("ct_*.dcm")))
    ours = rtstruct_to_grid(series / "rt.dcm", reference).array.astype(bool)
    theirs = _rt_utils_mask(series, series / "rt.dcm", "ROI-1")
    assert 0.92 < dice(ours, theirs) < 0.99
    assert not np.any(ours & ~theirs)
    ds = pydicom.dcmread(series / "rt.dcm")
    contours = [np.asarray(c.ContourData, float).reshape(-1, 3) for c in ds.ROIContourSequence[0].ContourSequence]
    to_grid = np.linalg.inv(reference.affine)
    polygons = [(np.c_[p[:, :2] * [-1, -1], p[:, 2], np.ones(len(p))] @ to_grid.T)[:, 1:3] for p in contours]
    centres = np.stack(np.mgrid[:512, :512], axis=-1).reshape(-1, 2)
    inside = np.zeros(512 * 512, bool)
    for polygon in polygons:
        inside ^= PolygonPath(polygon).contains_points(centres)
    np.testing.assert_array_equal(ours[0], inside.reshape(512, 512))
    assert not ours[1].any()
    extra = np.argwhere(theirs[0] & ~ours[0])
    vertices = np.concatenate([np.c_[p, np.roll(p, -1, axis=0)] for p in polygons])
    for point in extra:
        a, b = vertices[:, :2], vertices[:, 2:]
        t = np.clip(np.sum((point - a) * (b - a), axis=1) / np.sum((b - a) ** 2, axis=1), 0, 1)
        assert np.nanmin(np.linalg.norm(a + t[:, None] * (b - a) - point, axis=1)) <= 1.0  # nan: a repeated vertex


def _write_series(folder: Path, orientation: list[float], positions: list[list[float]], shape=(48, 48)) -> list[Path]:
    """Synthetic single-frame CT slices written with pydicom (only what geometry and rt-utils need).

    Square, with isotropic pixels: rt-utils 1.2.7 allocates its masks as (Columns, Rows) and
    scales the row index by PixelSpacing[0], which only agrees with DICOM when both are equal.
    """
    folder.mkdir(parents=True, exist_ok=True)
    series_uid, frame_uid, study_uid = generate_uid(), generate_uid(), generate_uid()
    paths = []
    for i, position in enumerate(positions):
        ds = pydicom.Dataset()
        ds.file_meta = pydicom.dataset.FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = generate_uid()
        ds.Modality, ds.PatientName, ds.PatientID = "CT", "Synthetic", "0"
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study_uid, series_uid, frame_uid
        ds.StudyDate, ds.StudyTime, ds.StudyID, ds.SeriesNumber, ds.InstanceNumber = "20260101", "000000", "1", 1, i + 1
        ds.ImageOrientationPatient, ds.ImagePositionPatient = orientation, position
        ds.PixelSpacing, ds.SliceThickness = [0.7, 0.7], 2.0
        ds.Rows, ds.Columns = shape
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.PixelData = np.zeros(shape, np.int16).tobytes()
        paths.append(folder / f"{i:03d}.dcm")
        ds.save_as(paths[-1], enforce_file_format=True)
    return paths


@pytest.mark.parametrize(
    ("orientation", "step"),
    [
        ([0, 1, 0, 0, 0, -1], [2.0, 0, 0]),  # sagittal
        ([1, 0, 0, 0, 0, -1], [0, -2.0, 0]),  # coronal
        ([0.866025, 0.5, 0, 0, 0, -1], [1.0, -1.732051, 0]),  # oblique sagittal-coronal
    ],
)
def test_non_axial_series_round_trip_through_rt_utils(tmp_path, orientation, step) -> None:
    origin = np.array([-20.0, 10.0, 30.0])
    paths = _write_series(tmp_path / "ct", orientation, [list(origin + i * np.array(step)) for i in range(5)])
    reference = header_grid(paths)
    rows, cols = np.mgrid[:48, :48]
    blob = ((rows - 20) / 9.0) ** 2 + ((cols - 26) / 14.0) ** 2 < 1
    hole = ((rows - 20) / 4.0) ** 2 + ((cols - 26) / 5.0) ** 2 < 1
    drawn = np.stack([blob & ~hole if k in (1, 3) else (blob if k == 2 else np.zeros_like(blob)) for k in range(5)])
    builder = RTStructBuilder.create_new(dicom_series_path=str(tmp_path / "ct"))
    builder.add_roi(mask=np.moveaxis(drawn, 0, -1), name="blob")
    builder.save(str(tmp_path / "rt.dcm"))
    ours = rtstruct_to_grid(tmp_path / "rt.dcm", reference, rois="blob")
    theirs = _rt_utils_mask(tmp_path / "ct", tmp_path / "rt.dcm", "blob")
    assert dice(ours.array, theirs) >= 0.99
    np.testing.assert_array_equal(ours.array.astype(bool), drawn)
    assert ours.meta["labels"] == {1: "blob"} and ours.meta["residual_mm"] < 1e-3


def test_even_odd_rule_makes_nested_contours_holes_and_islands() -> None:
    square = lambda lo, hi: np.array([[lo, lo], [lo, hi], [hi, hi], [hi, lo]], float)  # noqa: E731
    filled = fill_polygons([square(0.5, 20.5), square(5.5, 15.5), square(8.5, 12.5)], (22, 22))
    centres = np.stack(np.mgrid[:22, :22], axis=-1).reshape(-1, 2)
    expected = np.zeros(22 * 22, bool)
    for lo, hi in [(0.5, 20.5), (5.5, 15.5), (8.5, 12.5)]:
        expected ^= PolygonPath(square(lo, hi)).contains_points(centres)
    np.testing.assert_array_equal(filled, expected.reshape(22, 22))
    assert filled[10, 10] and not filled[7, 7] and filled[3, 3]


def test_rtstruct_on_the_dcm2niix_grid_equals_the_dicom_order_grid_after_reorientation(data_dir) -> None:
    series = data_dir / MOCK
    dicom_order = rtstruct_to_grid(series / "rt.dcm", header_grid(sorted(series.glob("ct_*.dcm"))))
    nifti = rtstruct_to_grid(series / "rt.dcm", nifti_grid(data_dir / "rt-utils/derived-dcm2niix/tests/mock_data/10.2_Daily_CT_QA_3.nii"))
    moved, affine = onto(nifti.array, nifti.affine, dicom_order.affine)
    np.testing.assert_allclose(affine, dicom_order.affine, atol=0.02)
    np.testing.assert_array_equal(moved, dicom_order.array)


def test_rtstruct_errors_name_the_problem(data_dir, tmp_path) -> None:
    series = data_dir / MOCK
    reference = header_grid(sorted(series.glob("ct_*.dcm")))
    with pytest.raises(SegmentNotFoundError, match="'ROI-1'"):
        rtstruct_to_grid(series / "rt.dcm", reference, rois="Liver")
    shifted = type(reference)(
        reference.array, reference.affine @ np.diag([1, 1, 1, 1.0]) + np.array([[0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 30.0], [0, 0, 0, 0]])
    )
    with pytest.raises(SegReferenceError, match=r"outside the reference \(grid \(2, 512, 512\)\)"):
        rtstruct_to_grid(series / "rt.dcm", shifted)
    ds = pydicom.dcmread(series / "rt.dcm")
    ds.ROIContourSequence.append(pydicom.Dataset())
    ds.ROIContourSequence[1].ReferencedROINumber = 2
    ds.ROIContourSequence[1].ContourSequence = [pydicom.Dataset()]
    ds.ROIContourSequence[1].ContourSequence[0].ContourGeometricType = "CLOSED_PLANAR"
    ds.ROIContourSequence[1].ContourSequence[0].ContourData = [-50, -50, 60, -20, -50, 60, -20, -20, 60, -50, -20, 60]
    ds.StructureSetROISequence.append(pydicom.Dataset())
    ds.StructureSetROISequence[1].ROINumber, ds.StructureSetROISequence[1].ROIName = 2, "overlapping"
    ds.save_as(tmp_path / "two.dcm")
    with pytest.raises(SegmentOverlapError, match="as_channels=True"):
        rtstruct_to_grid(tmp_path / "two.dcm", reference)
    both = rtstruct_to_grid(tmp_path / "two.dcm", reference, as_channels=True)
    assert both.array.shape == (2,) + reference.spatial_shape and both.array[1].sum() > 0
