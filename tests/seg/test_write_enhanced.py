"""Write-back onto enhanced multi-frame sources: the SEG and RTSTRUCT reference frames by number."""

from __future__ import annotations

import highdicom as hd
import numpy as np
import pydicom
import pytest
from seg_refs import dice

import dicomml
from dicomml.dicom.frames import frame_table
from dicomml.errors import SegReferenceError
from dicomml.seg import rtstruct_to_grid, seg_to_grid
from dicomml.seg.write import source_grid
from dicomml.volume import Volume

#: Siemens XA30 enhanced MR, 96 sagittal frames stored in reverse position order, pixel measures per frame.
XA30_T1 = "dcm_qa_xa30/In/5_anat-T1w_acq-tfl/0001_1.3.12.2.1107.5.2.43.67093.2022071112080825794102791.dcm"
ENHANCED_CT = "pydicom-data/data_store/data/eCT_Supplemental.dcm"  # NEMA enhanced CT, 2 frames of 512 x 512
LEGACY_CT = "dcmqi/data/segmentations/24x38x3/multiframe/mf.dcm"  # Legacy Converted Enhanced CT, 3 frames
LABELS = {"liver": 1, "tumor": 2}


def _blobs(shape: tuple[int, int, int]) -> np.ndarray:
    """An ellipsoid (1) with a smaller one (2) inside it, on a grid of ``shape``."""
    k, j, i = np.meshgrid(*(np.linspace(-1, 1, n) for n in shape), indexing="ij")
    labels = np.zeros(shape, np.uint8)
    labels[(k / 0.9) ** 2 + (j / 0.6) ** 2 + (i / 0.5) ** 2 < 1] = 1
    labels[(k / 0.9) ** 2 + ((j + 0.1) / 0.25) ** 2 + (i / 0.2) ** 2 < 1] = 2
    return labels


def _by_frame(path, source: pydicom.Dataset, grid) -> np.ndarray:
    """highdicom's label map of the SEG per source frame, put in the grid's (position) slice order."""
    seg = hd.seg.segread(path)
    frames = list(range(1, int(source.NumberOfFrames) + 1))
    pixels = seg.get_pixels_by_source_frame(source.SOPInstanceUID, frames, combine_segments=True, assert_missing_frames_are_empty=True)
    return pixels[np.asarray(grid.frames) - 1]


@pytest.mark.parametrize("kind", ["binary", "labelmap"])
def test_enhanced_mr_mask_comes_back_voxel_exact_by_frame(data_dir, tmp_path, kind) -> None:
    path = data_dir / XA30_T1
    source = pydicom.dcmread(path, stop_before_pixels=True)
    grid = source_grid([path])
    assert grid.shape == (96, 128, 128) and grid.frames[0] == 96  # frames run against the slice normal
    labels = _blobs(grid.shape)
    out = dicomml.write_seg(labels, [path], LABELS, tmp_path / "seg.dcm", kind=kind, affine=grid.affine)
    np.testing.assert_array_equal(_by_frame(out, source, grid), labels)
    seg = pydicom.dcmread(out, stop_before_pixels=True)
    for item in seg.PerFrameFunctionalGroupsSequence:  # each frame derived from the source frame at its position
        reference = item.DerivationImageSequence[0].SourceImageSequence[0]
        assert reference.ReferencedSOPInstanceUID == source.SOPInstanceUID
        frame = int(reference.ReferencedFrameNumber)
        position = source.PerFrameFunctionalGroupsSequence[frame - 1].PlanePositionSequence[0].ImagePositionPatient
        np.testing.assert_allclose(item.PlanePositionSequence[0].ImagePositionPatient, position, atol=1e-3)
    # dicomml reads it back onto the same grid too
    back = seg_to_grid(out, Volume(np.zeros(grid.shape, np.int16), grid.affine))
    np.testing.assert_array_equal(back.array, labels)


def test_enhanced_mr_prediction_in_ras_order_gives_the_same_seg(data_dir, tmp_path) -> None:
    path = data_dir / XA30_T1
    source = pydicom.dcmread(path, stop_before_pixels=True)
    grid = source_grid([path])
    labels = _blobs(grid.shape)
    # the same voxels as a RAS-ordered array (axes permuted and flipped), with its own affine
    import nibabel as nib

    turn = nib.orientations.ornt_transform(nib.orientations.io_orientation(grid.affine), nib.orientations.axcodes2ornt("RAS"))
    ras = nib.orientations.apply_orientation(labels, turn)
    affine = grid.affine @ nib.orientations.inv_ornt_aff(turn, labels.shape)
    out = dicomml.write_seg(ras, [path], LABELS, tmp_path / "ras.dcm", affine=affine)
    np.testing.assert_array_equal(_by_frame(out, source, grid), labels)


@pytest.mark.parametrize("name", [ENHANCED_CT, LEGACY_CT])
def test_enhanced_ct_mask_comes_back_voxel_exact(data_dir, tmp_path, name) -> None:
    path = data_dir / name
    source = pydicom.dcmread(path, stop_before_pixels=True)
    grid = source_grid([path])
    labels = np.zeros(grid.shape, np.uint8)
    labels[:, grid.shape[1] // 4 : grid.shape[1] // 2, grid.shape[2] // 3 : -2] = 1
    labels[-1, 2:5, 2:6] = 2
    out = dicomml.write_seg(labels, [path], LABELS, tmp_path / "ct.dcm", affine=grid.affine)
    np.testing.assert_array_equal(_by_frame(out, source, grid), labels)


def test_enhanced_mr_rtstruct_references_frames_and_rasterizes_back(data_dir, tmp_path) -> None:
    path = data_dir / XA30_T1
    source = pydicom.dcmread(path, stop_before_pixels=True)
    grid = source_grid([path])
    labels = _blobs(grid.shape)
    out = dicomml.write_rtstruct(labels, [path], LABELS, tmp_path / "rt.dcm", affine=grid.affine)
    mask = rtstruct_to_grid(out, Volume(np.zeros(grid.shape, np.int16), grid.affine), as_channels=True)
    for channel, value in enumerate((1, 2)):
        assert dice(mask.array[channel] != 0, labels == value) >= 0.97
    table = frame_table(source)
    normal = np.cross(table.orientations[0][:3], table.orientations[0][3:])
    rt = pydicom.dcmread(out)
    referenced = rt.ReferencedFrameOfReferenceSequence[0].RTReferencedStudySequence[0].RTReferencedSeriesSequence[0]
    assert sorted(int(item.ReferencedFrameNumber) for item in referenced.ContourImageSequence) == list(range(1, 97))
    for roi in rt.ROIContourSequence:
        for contour in roi.ContourSequence:
            image = contour.ContourImageSequence[0]
            assert image.ReferencedSOPInstanceUID == source.SOPInstanceUID
            points = np.asarray(contour.ContourData, dtype=np.float64).reshape(-1, 3)
            plane = table.positions[int(image.ReferencedFrameNumber) - 1]
            assert np.max(np.abs((points - plane) @ normal)) < 1e-3  # the contour lies on the frame it names


def test_enhanced_sources_that_are_not_one_volume_raise_one_line_errors(data_dir, tmp_path) -> None:
    dwi = data_dir / "dcm_qa_canon_61/In/enh/8000.dcm"  # 40 slices x 13 volumes in one file
    with pytest.raises(SegReferenceError, match="share a slice position") as caught:
        source_grid([dwi])
    assert "\n" not in str(caught.value)
    no_frame_of_reference = data_dir / "dicom2nifti/tests/data/philips_enhanced/anatomical/001/IM-0001-0170-0001.dcm"
    grid = source_grid([no_frame_of_reference])
    with pytest.raises(SegReferenceError, match="Frame Of Reference"):
        dicomml.write_seg(np.ones(grid.shape, np.uint8), [no_frame_of_reference], {"a": 1}, tmp_path / "x.dcm", affine=grid.affine)
