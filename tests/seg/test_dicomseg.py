"""DICOM SEG onto image grids: dcmqi NRRDs, highdicom's own decoding, pydicom-data encodings."""

from __future__ import annotations

import highdicom as hd
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.sr.coding import Code
from seg_refs import (
    ct2_files,
    header_grid,
    nifti_grid,
    nrrd_labels,
    onto,
    regular_grid_over,
    write_seg,
)

from dicomml.errors import (
    SegmentNotFoundError,
    SegmentOverlapError,
    SegReferenceError,
    UnsupportedTransferSyntaxError,
)
from dicomml.geometry import LPS_TO_RAS
from dicomml.seg import seg_to_grid
from dicomml.volume import Volume

SEGS = "dcmqi/data/segmentations"
CT3_NIFTI = "dcmqi/derived-dcm2niix/data/segmentations/ct-3slice/6.9_Colonoscopy_2.nii"
TINY_NIFTI = "dcmqi/derived-dcm2niix/data/segmentations/24x38x3/image/Image_24x38x3_123456.nii"
HD = "highdicom/data/test_files"


@pytest.mark.parametrize(
    ("seg", "grid", "nrrd"),
    [
        ("liver.dcm", CT3_NIFTI, "liver_seg.nrrd"),
        ("24x38x3/seg/label.seg", TINY_NIFTI, "24x38x3/nrrd/label.nrrd"),
        ("sparse-labelmap-noppv.dcm", TINY_NIFTI, "sparse_labelmap_noppv_seg.nrrd"),
        ("sparse-labelmap-ppv5.dcm", TINY_NIFTI, "sparse_labelmap_ppv5_seg.nrrd"),
    ],
)
def test_dcmqi_seg_equals_its_nrrd_label_map_on_the_dcm2niix_grid(data_dir, seg, grid, nrrd) -> None:
    reference = nifti_grid(data_dir / grid)
    mask = seg_to_grid(data_dir / SEGS / seg, reference)
    labels, affine = nrrd_labels(data_dir / SEGS / nrrd)
    expected, expected_affine = onto(labels, affine, reference.affine)
    np.testing.assert_allclose(expected_affine, reference.affine, atol=0.02)  # the same physical grid
    if "ppv5" in seg:
        # The NRRD fills the slice the SEG omits with 5, the SEG's (0028,0120) Pixel Padding Value:
        # padding, not a segment (the SEG defines segments 0 and 1 only), so it is background here.
        assert pydicom.dcmread(data_dir / SEGS / seg).PixelPaddingValue == 5
        expected = np.where(expected == 5, 0, expected)
    assert mask.array.shape == reference.spatial_shape
    assert np.count_nonzero(expected) > 0
    np.testing.assert_array_equal(mask.array, expected)
    np.testing.assert_array_equal(mask.affine, reference.affine)
    assert mask.meta["kind"] == "mask" and not mask.meta["resampled"] and mask.meta["residual_mm"] < 1e-3


def test_dcmqi_liver_on_dicom_order_grid_agrees_with_nrrd(data_dir) -> None:
    reference = header_grid(sorted((data_dir / SEGS / "ct-3slice").iterdir()))
    mask = seg_to_grid(data_dir / SEGS / "liver.dcm", reference)
    labels, affine = nrrd_labels(data_dir / SEGS / "liver_seg.nrrd")
    expected, expected_affine = onto(labels, affine, reference.affine)
    np.testing.assert_allclose(expected_affine, reference.affine, atol=0.02)
    np.testing.assert_array_equal(mask.array, expected)
    assert mask.meta["labels"] == {1: "Liver"}


def _highdicom_grid(volume: hd.Volume) -> Volume:
    return Volume(np.zeros(volume.spatial_shape, np.int16), LPS_TO_RAS @ volume.affine)


@pytest.mark.parametrize("name", ["seg_image_ct_binary.dcm", "seg_image_ct_binary_overlap.dcm"])
def test_highdicom_examples_equal_highdicom_get_volume(data_dir, name) -> None:
    theirs = hd.seg.segread(data_dir / HD / name).get_volume()
    mask = seg_to_grid(data_dir / HD / name, _highdicom_grid(theirs), as_channels=True)
    assert mask.axes == ("segment",)
    np.testing.assert_array_equal(mask.array, np.moveaxis(theirs.array, -1, 0))
    assert np.count_nonzero(mask.array) > 0


def test_overlapping_segments_refuse_one_label_map(data_dir) -> None:
    with pytest.raises(SegmentOverlapError, match="as_channels=True"):
        seg_to_grid(data_dir / HD / "seg_image_ct_binary_overlap.dcm", regular_grid_over(ct2_files(), 1.25))


def test_highdicom_masks_land_on_the_right_slices_of_the_regularized_ct2_grid(data_dir) -> None:
    files = ct2_files()
    reference = regular_grid_over(files, 1.25)  # the 202.5 mm gap is 162 steps of 1.25 mm: 165 slices
    assert reference.spatial_shape[0] == 165
    path = data_dir / HD / "seg_image_ct_binary_overlap.dcm"
    mask = seg_to_grid(path, reference, as_channels=True)
    theirs = hd.seg.segread(path)
    z0 = float(pydicom.dcmread(files[0], stop_before_pixels=True).ImagePositionPatient[2])
    seen = set()
    for file in files:
        image = pydicom.dcmread(file, stop_before_pixels=True)
        k = int(round((float(image.ImagePositionPatient[2]) - z0) / 1.25))
        seen.add(k)
        expected = theirs.get_pixels_by_source_instance([image.SOPInstanceUID], segment_numbers=[1, 2])[0]
        np.testing.assert_array_equal(mask.array[:, k], np.moveaxis(expected, -1, 0))
    assert seen == {0, 162, 163, 164}
    empty = [k for k in range(165) if k not in seen]
    assert not mask.array[:, empty].any()


@pytest.mark.parametrize(
    "name",
    ["liver_expb.dcm", "liver_nonbyte_aligned.dcm", "liver_rle.dcm", "liver_deflate.dcm", "liver_nonbyte_aligned_deflate.dcm"],
)
def test_liver_in_every_encoding_equals_the_uncompressed_liver(data_dir, name) -> None:
    # Big Endian, 1-bit RLE Lossless and Deflated Image Frame Compression: highdicom 0.28 reads none of them
    reference = nifti_grid(data_dir / CT3_NIFTI)
    liver = seg_to_grid(data_dir / SEGS / "liver.dcm", reference).array
    assert np.count_nonzero(liver) > 1000
    other = seg_to_grid(data_dir / "pydicom-data/data_store/data" / name, reference).array
    # liver_nonbyte_aligned is the 510x510 corner of the same grid: its frames land on that corner
    np.testing.assert_array_equal(other, liver)


def test_undecodable_frames_raise_unsupported_transfer_syntax(data_dir, tmp_path) -> None:
    ds = pydicom.dcmread(data_dir / "pydicom-data/data_store/data/liver_rle.dcm")
    frames = pydicom.encaps.generate_frames(ds.PixelData, number_of_frames=3)
    ds.PixelData = pydicom.encaps.encapsulate([frame[: len(frame) // 2] for frame in frames])  # truncated streams
    ds.save_as(tmp_path / "broken.dcm")
    with pytest.raises(UnsupportedTransferSyntaxError, match="Transfer Syntax") as info:
        seg_to_grid(tmp_path / "broken.dcm", nifti_grid(data_dir / CT3_NIFTI))
    assert info.value.path.endswith("broken.dcm")


def test_segments_are_chosen_by_label_property_code_or_number(data_dir) -> None:
    path = data_dir / HD / "seg_image_ct_binary_overlap.dcm"
    reference = regular_grid_over(ct2_files(), 1.25)
    by_label = seg_to_grid(path, reference, segments="second segment")
    by_code = seg_to_grid(path, reference, segments=Code("421060004", "SCT", "Spine"))
    by_number = seg_to_grid(path, reference, segments=[2])
    both = seg_to_grid(path, reference, segments=[2, 1], as_channels=True)
    assert by_label.meta["labels"] == {2: "second segment"} == by_code.meta["labels"]
    np.testing.assert_array_equal(by_label.array, by_code.array)
    np.testing.assert_array_equal(by_label.array, by_number.array)
    np.testing.assert_array_equal(by_label.array == 2, both.array[0] == 1)
    assert list(both.meta["labels"]) == [2, 1]
    with pytest.raises(SegmentNotFoundError, match="'first segment'"):
        seg_to_grid(path, reference, segments="Kidney")


def _ct2_datasets() -> list[pydicom.Dataset]:
    return [pydicom.dcmread(f) for f in ct2_files()[1:]]  # the three contiguous slices


def test_fractional_seg_is_float_or_thresholded_like_highdicom(tmp_path) -> None:
    sources = _ct2_datasets()
    rng = np.random.default_rng(1)
    probabilities = rng.random((3, 16, 16, 2)).astype(np.float32)
    path = write_seg(tmp_path / "fractional.dcm", sources, probabilities, "FRACTIONAL", 2, max_fractional_value=200)
    theirs = hd.seg.segread(path).get_volume()
    reference = _highdicom_grid(theirs)
    soft = seg_to_grid(path, reference, as_channels=True)
    assert soft.array.dtype == np.float32 and soft.array.max() <= 1.0
    np.testing.assert_array_equal(soft.array, np.moveaxis(theirs.array, -1, 0))
    hard = seg_to_grid(path, reference, as_channels=True, threshold=0.5)
    np.testing.assert_array_equal(hard.array, np.moveaxis(theirs.array, -1, 0) >= 0.5)
    one = seg_to_grid(path, reference, segments=2)
    np.testing.assert_array_equal(one.array, theirs.array[..., 1])
    with pytest.raises(SegmentOverlapError, match="threshold="):
        seg_to_grid(path, reference)


def test_seg_on_a_coarser_grid_is_resampled_nearest_like_simpleitk(tmp_path) -> None:
    sources = _ct2_datasets()
    fine = header_grid(ct2_files()[1:])
    # The SEG's own grid: 8x8 pixels of 0.976 mm, shifted by 0.3 mm, on the same three slices.
    coarse_lps = LPS_TO_RAS @ fine.affine @ np.diag([1.0, 2.0, 2.0, 1.0])
    coarse_lps[:3, 3] += [0.3, 0.0, 0.0]
    labels = np.zeros((3, 8, 8), np.uint8)
    labels[:, 2:6, 3:7] = 1
    labels[1, 0:2, 0:3] = 2
    volume = hd.Volume(labels, coarse_lps, coordinate_system="PATIENT", frame_of_reference_uid=sources[0].FrameOfReferenceUID)
    path = write_seg(tmp_path / "coarse.dcm", sources, volume, "BINARY", 2)
    mask = seg_to_grid(path, fine)
    assert mask.meta["resampled"] and mask.array.shape == fine.spatial_shape
    src = sitk.GetImageFromArray(labels)
    lps = coarse_lps[:3]
    src.SetOrigin(lps[:, 3].tolist())
    src.SetSpacing(np.linalg.norm(lps[:, :3][:, ::-1], axis=0).tolist())
    src.SetDirection((lps[:, :3][:, ::-1] / np.linalg.norm(lps[:, :3][:, ::-1], axis=0)).ravel().tolist())
    ref = sitk.GetImageFromArray(np.zeros(fine.spatial_shape, np.uint8))
    ref_lps = (LPS_TO_RAS @ fine.affine)[:3]
    ref.SetOrigin(ref_lps[:, 3].tolist())
    ref.SetSpacing(np.linalg.norm(ref_lps[:, :3][:, ::-1], axis=0).tolist())
    ref.SetDirection((ref_lps[:, :3][:, ::-1] / np.linalg.norm(ref_lps[:, :3][:, ::-1], axis=0)).ravel().tolist())
    theirs = sitk.GetArrayFromImage(sitk.Resample(src, ref, sitk.Transform(), sitk.sitkNearestNeighbor, 0))
    np.testing.assert_array_equal(mask.array, theirs)
    assert set(np.unique(mask.array)) == {0, 1, 2}
    # each fine voxel centre is within half a coarse voxel (plus the 0.3 mm shift) of its source
    assert 0.3 <= mask.meta["residual_mm"] <= np.hypot(0.3 + 0.488281, 0.488281) + 1e-6


def test_seg_referencing_only_the_frame_of_reference_is_placed_by_geometry(data_dir, tmp_path) -> None:
    ds = pydicom.dcmread(data_dir / SEGS / "liver.dcm")
    del ds.ReferencedSeriesSequence
    for item in ds.PerFrameFunctionalGroupsSequence:
        del item.DerivationImageSequence
    ds.save_as(tmp_path / "for_only.dcm")
    reference = nifti_grid(data_dir / CT3_NIFTI)
    np.testing.assert_array_equal(
        seg_to_grid(tmp_path / "for_only.dcm", reference).array,
        seg_to_grid(data_dir / SEGS / "liver.dcm", reference).array,
    )


def test_seg_off_the_reference_grid_raises_seg_reference_error(data_dir) -> None:
    reference = nifti_grid(data_dir / CT3_NIFTI)
    moved = Volume(reference.array, reference.affine @ np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 40], [0, 0, 0, 1.0]]))
    with pytest.raises(SegReferenceError, match=r"outside the reference \(grid \(512, 512, 3\)\)"):
        seg_to_grid(data_dir / SEGS / "liver.dcm", moved)
    other = Volume(reference.array, reference.affine, meta={"frame_of_reference_uid": "1.2.3"})
    with pytest.raises(SegReferenceError, match=r"\(0020,0052\)"):
        seg_to_grid(data_dir / SEGS / "liver.dcm", other)


def test_labelmap_seg_as_channels_splits_its_segments_background_included(data_dir) -> None:
    reference = nifti_grid(data_dir / TINY_NIFTI)
    mask = seg_to_grid(data_dir / SEGS / "sparse-labelmap-noppv.dcm", reference, as_channels=True)
    labels, affine = nrrd_labels(data_dir / SEGS / "sparse_labelmap_noppv_seg.nrrd")
    expected, _ = onto(labels, affine, reference.affine)
    assert mask.meta["labels"] == {0: "Background", 1: "Liver"} and mask.axes == ("segment",)
    # segment 0 (Background) covers the slice the SEG omits too: omitted LABELMAP frames are all background
    np.testing.assert_array_equal(mask.array, np.stack([expected == 0, expected == 1]).astype(np.uint8))
    only_liver = seg_to_grid(data_dir / SEGS / "sparse-labelmap-noppv.dcm", reference, segments="Liver")
    np.testing.assert_array_equal(only_liver.array, expected)
