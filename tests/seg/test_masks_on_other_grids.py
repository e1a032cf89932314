"""Masks read onto grids other than the annotation's: thick or coarser slices, and stacks kept irregular.

Oracles: highdicom's pixels per source image, SimpleITK's nearest-neighbour
resampling, and the image headers' own positions (pydicom).
"""

from __future__ import annotations

from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, RTStructureSetStorage, generate_uid
from seg_refs import ct2_files, dice, header_grid, to_sitk, write_ct, write_seg

import dicomml
from dicomml.errors import SegReferenceError
from dicomml.geometry import LPS_TO_RAS, dicom_affine
from dicomml.sample import write_sample_study
from dicomml.seg import rtstruct_to_grid, seg_to_grid
from dicomml.seg._grid import PlaneMap, map_planes
from dicomml.volume import Volume

HD = "highdicom/data/test_files"


def _ct2_by_position() -> list[Path]:
    """CT2's files in slice order along the normal (the order load_files stacks them)."""
    return sorted(ct2_files(), key=lambda p: float(pydicom.dcmread(p, stop_before_pixels=True).ImagePositionPatient[2]))


def _per_source_image(seg_path: Path, files: list[Path]) -> list[np.ndarray]:
    """highdicom's pixels of a one-segment SEG for each source image (zeros where it has no frame)."""
    seg = hd.seg.segread(seg_path)
    uids = [pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID for f in files]
    return [np.asarray(seg.get_pixels_by_source_instance([u], assert_missing_frames_are_empty=True))[0, ..., 0] for u in uids]


def _write_rtstruct(path: Path, image: Path, contours: list[np.ndarray], name: str = "roi") -> Path:
    """An RT Structure Set with one ROI of CLOSED_PLANAR contours (LPS+ mm), written with pydicom."""
    header = pydicom.dcmread(image, stop_before_pixels=True)
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = RTStructureSetStorage
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.Modality, ds.PatientID, ds.StructureSetLabel = "RTSTRUCT", str(header.get("PatientID", "")), "tests"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = header.StudyInstanceUID, generate_uid()
    ds.FrameOfReferenceUID = header.FrameOfReferenceUID
    series = Dataset()
    series.SeriesInstanceUID = header.SeriesInstanceUID
    study = Dataset()
    study.ReferencedSOPInstanceUID = header.StudyInstanceUID
    study.RTReferencedSeriesSequence = [series]
    frame = Dataset()
    frame.FrameOfReferenceUID = header.FrameOfReferenceUID
    frame.RTReferencedStudySequence = [study]
    ds.ReferencedFrameOfReferenceSequence = [frame]
    roi = Dataset()
    roi.ROINumber, roi.ROIName, roi.ReferencedFrameOfReferenceUID = 1, name, header.FrameOfReferenceUID
    ds.StructureSetROISequence = [roi]
    items = []
    for points in contours:
        item = Dataset()
        item.ContourGeometricType, item.NumberOfContourPoints = "CLOSED_PLANAR", len(points)
        item.ContourData = [f"{v:.4f}" for v in np.asarray(points, float).ravel()]
        items.append(item)
    contour = Dataset()
    contour.ReferencedROINumber, contour.ContourSequence = 1, items
    ds.ROIContourSequence = [contour]
    ds.save_as(path, enforce_file_format=True)
    return path


# --- PlaneMap: alignment bounded in millimetres, and no two planes on one slice ---


def test_a_plane_2_5_mm_off_a_68_mm_slice_is_not_aligned() -> None:
    # CT2 kept irregular: a nominal 68.33 mm step; its frame at z = 103.02 lies 2.5 mm (0.037 voxel) below slice 3
    grid = dicom_affine([1, 0, 0, 0, 1, 0], [0.488281, 0.488281], [0, 0, 0], [0, 0, 68.33])
    near = map_planes(grid, [1, 0, 0, 0, 1, 0], [0.488281, 0.488281], np.array([[0.0, 0.0, 3 * 68.33 - 2.5]]), (16, 16))
    assert abs(near.offset_mm(grid) - 2.5) < 1e-6
    assert not near.aligned()
    on = map_planes(grid, [1, 0, 0, 0, 1, 0], [0.488281, 0.488281], np.array([[0.0, 0.0, 3 * 68.33 + 0.05]]), (16, 16))
    assert on.aligned()  # 0.05 mm: DS rounding, still on the slice


def test_two_distinct_planes_that_round_to_one_slice_are_not_aligned() -> None:
    # each within 0.05 voxel and 0.1 mm of slice 1 (2 mm slices), but 0.16 mm apart: two planes, not one
    grid = dicom_affine([1, 0, 0, 0, 1, 0], [1.0, 1.0], [0, 0, 0], [0, 0, 2.0])
    planes = map_planes(grid, [1, 0, 0, 0, 1, 0], [1.0, 1.0], np.array([[0, 0, 2 - 0.08], [0, 0, 2 + 0.08]]), (4, 4))
    assert not planes.aligned()
    same = map_planes(grid, [1, 0, 0, 0, 1, 0], [1.0, 1.0], np.array([[0, 0, 2 - 0.02], [0, 0, 2 + 0.02]]), (4, 4))
    assert same.aligned()  # 0.04 mm apart: one plane written twice (two segments' frames, DS rounding)
    assert PlaneMap(same.origins, same.steps, (4, 4), (2.0, 1.0, 1.0)).slice_axis == 0


# --- SEG on a stack kept irregular ---


def test_seg_on_ct_kept_with_a_gap_is_refused_not_collapsed_onto_one_slice(data_dir: Path) -> None:
    seg_path = data_dir / HD / "seg_image_ct_binary.dcm"
    files = _ct2_by_position()
    kept = dicomml.load_files(files, on_irregular="keep")
    assert kept.meta["irregularities"]  # nominal 68.3 mm step over slices at -99.5, 103.0, 104.3, 105.5
    with pytest.raises(SegReferenceError, match=r"seg_image_ct_binary\.dcm: .*irregular.*on_irregular='resample'") as caught:
        seg_to_grid(seg_path, kept)
    assert "\n" not in str(caught.value)
    # the way out the message gives: on the regular grid, each source image's pixels land on its slice
    regular = dicomml.load_files(files, on_irregular="resample")
    mask = seg_to_grid(seg_path, regular)
    to_index = np.linalg.inv(regular.affine)
    expected = _per_source_image(seg_path, files)
    assert [int(e.sum()) for e in expected] == [0, 127, 256, 255]
    for file, pixels in zip(files, expected):
        ras = np.array([-1.0, -1.0, 1.0]) * np.asarray(pydicom.dcmread(file, stop_before_pixels=True).ImagePositionPatient, float)
        k = int(np.rint((to_index[:3, :3] @ ras + to_index[:3, 3])[0]))
        np.testing.assert_array_equal(mask.array[k], pixels)
    assert int(mask.array.sum()) == sum(int(e.sum()) for e in expected)


def test_seg_frames_on_the_exact_slices_of_a_kept_ct_still_land(tmp_path: Path) -> None:
    files = _ct2_by_position()
    sources = [pydicom.dcmread(files[0]), pydicom.dcmread(files[3])]  # the first and last slice: where the nominal affine is exact
    rows, columns = np.mgrid[:16, :16]
    pixels = np.stack([(rows < 6) & (columns > 3), np.hypot(rows - 8, columns - 8) < 5]).astype(np.uint8)
    seg_path = write_seg(tmp_path / "ends.dcm", sources, pixels, "BINARY", 1)
    mask = seg_to_grid(seg_path, dicomml.load_files(files, on_irregular="keep"))
    expected = _per_source_image(seg_path, files)
    np.testing.assert_array_equal(mask.array, np.stack(expected))
    assert not mask.meta["resampled"] and mask.meta["residual_mm"] < 1e-3


# --- SEG with two frames near one thick slice ---


def test_seg_frames_near_one_thick_slice_are_resampled_nearest_not_merged(tmp_path: Path) -> None:
    files = write_ct(tmp_path / "ct", (2, 16, 16), 0.8, seed=3)  # two slices 0.8 mm apart
    fine = header_grid(files)
    order = np.argsort([float(pydicom.dcmread(p, stop_before_pixels=True).ImagePositionPatient[2]) for p in files])
    sources = [pydicom.dcmread(files[i]) for i in order]  # header_grid's order along the normal
    rows, columns = np.mgrid[:16, :16]
    pixels = np.stack([(rows < 6) & (columns > 3), np.hypot(rows - 8, columns - 8) < 5]).astype(np.uint8)
    seg_path = write_seg(tmp_path / "two.dcm", sources, pixels, "BINARY", 1)
    thick = fine.affine.copy()
    thick[:3, 0] *= 25  # 20 mm slices through the first one: the second frame is 0.04 voxel (0.8 mm) off slice 0
    reference = Volume(np.zeros((3, 16, 16), np.int16), thick)
    mask = seg_to_grid(seg_path, reference)
    theirs = hd.seg.segread(seg_path).get_volume(combine_segments=True)
    source = to_sitk(np.asarray(theirs.array, np.uint8), LPS_TO_RAS @ theirs.affine)
    expected = sitk.GetArrayFromImage(sitk.Resample(source, to_sitk(reference.array, thick), sitk.Transform(), sitk.sitkNearestNeighbor, 0))
    np.testing.assert_array_equal(mask.array, expected)
    assert mask.meta["resampled"] and int(mask.array.sum()) == int(pixels[0].sum())  # the nearer frame only, not their union


# --- RTSTRUCT on a stack kept irregular ---


def _squares_on(files: list[Path], corner: tuple[int, int] = (3, 4), size: tuple[int, int] = (6, 8)) -> list[np.ndarray]:
    """A rectangle through pixel centres (rows, columns of ``size`` pixels) on each image's plane, LPS+ mm."""
    squares = []
    for file in files:
        ds = pydicom.dcmread(file, stop_before_pixels=True)
        origin = np.asarray(ds.ImagePositionPatient, float)
        along_row, along_column = np.asarray(ds.ImageOrientationPatient[:3], float), np.asarray(ds.ImageOrientationPatient[3:], float)
        dr, dc = (float(v) for v in ds.PixelSpacing)
        r0, c0 = corner
        r1, c1 = r0 + size[0] - 1, c0 + size[1] - 1
        corners = [(r0, c0), (r0, c1), (r1, c1), (r1, c0)]
        squares.append(np.array([origin + c * dc * along_row + r * dr * along_column for r, c in corners]))
    return squares


def test_rtstruct_on_ct_kept_with_a_gap_is_refused_not_filled_together(tmp_path: Path) -> None:
    files = _ct2_by_position()
    rt = _write_rtstruct(tmp_path / "rt.dcm", files[0], _squares_on(files[1:]))  # on the three slices 1.25 mm apart
    with pytest.raises(SegReferenceError, match=r"rt\.dcm: contours of ROI 'roi' on 3 plane\(s\) .*irregular.*on_irregular='resample'"):
        rtstruct_to_grid(rt, dicomml.load_files(files, on_irregular="keep"))
    regular = dicomml.load_files(files, on_irregular="resample")
    mask = rtstruct_to_grid(rt, regular)
    to_index = np.linalg.inv(regular.affine)
    slices = []
    for file in files[1:]:
        ras = np.array([-1.0, -1.0, 1.0]) * np.asarray(pydicom.dcmread(file, stop_before_pixels=True).ImagePositionPatient, float)
        slices.append(int(np.rint((to_index[:3, :3] @ ras + to_index[:3, 3])[0])))
    assert np.flatnonzero(mask.array.any(axis=(1, 2))).tolist() == slices
    assert [int(mask.array[k].sum()) for k in slices] == [6 * 8] * 3


# --- RTSTRUCT on coarser slices: nearest plane, as SimpleITK's nearest resampling of the fine mask ---


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory):
    """dicomml's sample study: an axial CT (80 slices of 2.5 mm, 2 mm pixels) and a highdicom SEG on it."""
    return write_sample_study(tmp_path_factory.mktemp("sample") / "study")


@pytest.fixture(scope="module")
def ball(sample, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Volume]:
    """A ball (radius 40 mm) contoured as circles on every slice of the sample CT."""
    root = tmp_path_factory.mktemp("ball")
    study = sample
    ct = dicomml.load_files(list(study.ct))
    affine, (n, rows, columns) = ct.affine, ct.spatial_shape
    centre = (affine @ [n // 2, rows // 2, columns // 2, 1])[:3]
    normal, u, v = (affine[:3, a] / np.linalg.norm(affine[:3, a]) for a in range(3))
    angles = np.linspace(0, 2 * np.pi, 73)[:-1]
    contours = []
    for k in range(n):
        middle = (affine @ [k, rows // 2, columns // 2, 1])[:3]
        height = float(np.dot(middle - centre, normal))
        if abs(height) < 40.0:
            radius = np.sqrt(40.0**2 - height**2)
            ras = middle + radius * np.cos(angles)[:, None] * u + radius * np.sin(angles)[:, None] * v
            contours.append(ras * [-1.0, -1.0, 1.0])
    return _write_rtstruct(root / "ball.dcm", study.ct[0], contours, "ball"), ct


def _coarser(ct: Volume, factor: float, offset: int) -> Volume:
    """The CT's grid with slices ``factor`` times thicker, the first through CT slice ``offset``."""
    affine = ct.affine.copy()
    affine[:3, 0] *= factor
    affine[:3, 3] = (ct.affine @ [offset, 0, 0, 1])[:3]
    n = int((ct.spatial_shape[0] - 1 - offset) / factor) + 1
    return Volume(np.zeros((n, *ct.spatial_shape[1:]), np.int16), affine)


def _simpleitk_nearest(mask: Volume, grid: Volume) -> np.ndarray:
    image = to_sitk(mask.array, mask.affine)
    return sitk.GetArrayFromImage(sitk.Resample(image, to_sitk(grid.array, grid.affine), sitk.Transform(), sitk.sitkNearestNeighbor, 0))


@pytest.mark.parametrize(("factor", "offset"), [(2, 0), (2, 1), (3, 0), (3, 1), (2.2, 0), (4, 2)])
def test_rtstruct_on_coarser_slices_equals_nearest_resampling_of_the_fine_mask(ball, factor: float, offset: int) -> None:
    path, ct = ball
    fine = rtstruct_to_grid(path, ct)  # drawn on the contours' own slices
    assert np.flatnonzero(fine.array.any(axis=(1, 2))).tolist() == list(range(25, 56))
    grid = _coarser(ct, factor, offset)
    ours = rtstruct_to_grid(path, grid)
    np.testing.assert_array_equal(ours.array, _simpleitk_nearest(fine, grid))  # no rings, no extra end slice


def test_rtstruct_on_coarser_slices_differs_from_simpleitk_only_where_a_plane_is_halfway(ball) -> None:
    path, ct = ball
    grid = _coarser(ct, 1.5, 0)  # slice 37 lies exactly halfway between CT slices 55 (the ball's last) and 56
    ours = rtstruct_to_grid(path, grid).array
    theirs = _simpleitk_nearest(rtstruct_to_grid(path, ct), grid)
    wrong = np.flatnonzero((ours != theirs).any(axis=(1, 2))).tolist()
    assert wrong == [37] and not theirs[37].any()  # SimpleITK rounds the tie up, to the empty slice 56
    assert dice(ours, theirs) > 0.995


# --- Stacks kept irregular, and the same stacks resampled ---


def _by_position(files) -> list[Path]:
    return sorted(files, key=lambda p: float(pydicom.dcmread(p, stop_before_pixels=True).ImagePositionPatient[2]))


def test_seg_on_the_sample_ct_kept_without_three_slices_is_refused_not_shifted(sample) -> None:
    files = _by_position(sample.ct)
    gapped = files[:40] + files[43:]  # three slices lost: a nominal 2.6 mm step, up to 1.5 slices off the real ones
    # (nearest resampling onto that nominal grid put 35 of the 77 slices one slice off highdicom's per source image)
    with pytest.raises(SegReferenceError, match=r"seg\.dcm: its frames are not on the slices .*3 slice\(s\) missing"):
        seg_to_grid(sample.seg, dicomml.load_files(gapped, on_irregular="keep"))
    regular = dicomml.load_files(gapped, on_irregular="resample")
    mask = seg_to_grid(sample.seg, regular, as_channels=True)
    theirs = hd.seg.segread(sample.seg)
    to_index = np.linalg.inv(regular.affine)
    for file in gapped:
        ds = pydicom.dcmread(file, stop_before_pixels=True)
        ras = np.array([-1.0, -1.0, 1.0]) * np.asarray(ds.ImagePositionPatient, float)
        k = int(np.rint((to_index[:3, :3] @ ras + to_index[:3, 3])[0]))
        expected = theirs.get_pixels_by_source_instance([ds.SOPInstanceUID], segment_numbers=[1, 2])[0]
        np.testing.assert_array_equal(mask.array[:, k], np.moveaxis(expected, -1, 0))


def test_rtstruct_on_a_resampled_irregular_ct_is_drawn_nearest_and_refused_on_the_kept_one(ball, sample, tmp_path: Path) -> None:
    path, ct = ball
    irregular = []
    for file in _by_position(sample.ct):
        ds = pydicom.dcmread(file)
        irregular.append(tmp_path / file.name)
        if len(irregular) == len(sample.ct):  # the last slice 1 mm further: uneven spacing, a 2.513 mm regular step
            ds.ImagePositionPatient = [*ds.ImagePositionPatient[:2], float(ds.ImagePositionPatient[2]) + 1.0]
        ds.save_as(irregular[-1])
    kept = dicomml.load_files(irregular, on_irregular="keep")
    with pytest.raises(SegReferenceError, match=r"ball\.dcm: contours of ROI 'ball' .*not uniform.*on_irregular='resample'"):
        rtstruct_to_grid(path, kept)
    resampled = dicomml.load_files(irregular, on_irregular="resample")
    assert resampled.array.dtype == np.float32 and resampled.meta["irregularities"]
    ours = rtstruct_to_grid(path, resampled)  # a true grid: the contours go to their nearest slices
    np.testing.assert_array_equal(ours.array, _simpleitk_nearest(rtstruct_to_grid(path, ct), resampled))
