"""Every SEG highdicom writes, read voxel-exact against highdicom's own reading of the same file.

SEGs are generated with highdicom over corpus CTs and MRs for each type x
segment count x transfer syntax highdicom can encode; the oracle is
``Segmentation.get_volume`` of the file just written.
"""

from __future__ import annotations

import copy
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    RLELossless,
)
from seg_refs import write_seg

from dicomml.errors import SegmentOverlapError
from dicomml.geometry import LPS_TO_RAS
from dicomml.seg import seg_to_grid
from dicomml.volume import Volume

CT = "dcmqi/data/segmentations/24x38x3/image"  # 38 x 24, 3 slices
MR = "dcm_qa_philips_enh/In/cl"  # 96 x 96 oblique, the first 4 slices
SYNTAXES = {
    "explicit": ExplicitVRLittleEndian,
    "rle": RLELossless,
    "deflated": DeflatedExplicitVRLittleEndian,
    "jpegls": JPEGLSLossless,
    "j2k": JPEG2000Lossless,
}
# highdicom encodes BINARY uncompressed or as JPEG 2000 only
BINARY_SYNTAXES = ("explicit", "deflated", "j2k")


def _series(data_dir: Path, folder: str, count: int) -> list[pydicom.Dataset]:
    datasets = [pydicom.dcmread(p) for p in sorted((data_dir / folder).iterdir())]
    datasets.sort(
        key=lambda ds: float(
            np.dot(
                ds.ImagePositionPatient,
                np.cross(np.asarray(ds.ImageOrientationPatient[:3], float), np.asarray(ds.ImageOrientationPatient[3:], float)),
            )
        )
    )
    return datasets[:count]


def _odd(datasets: list[pydicom.Dataset]) -> list[pydicom.Dataset]:
    """The CT cut to 13 x 11 pixels: 143-bit BINARY frames that do not start on a byte."""
    out = []
    for ds in datasets:
        ds = copy.deepcopy(ds)
        ds.PixelData = np.ascontiguousarray(ds.pixel_array[:13, :11]).tobytes()
        ds.Rows, ds.Columns = 13, 11
        out.append(ds)
    return out


def _pixels(kind: str, count: int, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    if kind == "LABELMAP":
        return rng.integers(0, count + 1, shape).astype(np.uint8)
    if kind == "FRACTIONAL":
        return rng.random(shape + (count,)).astype(np.float32)
    return (rng.random(shape + (count,)) > 0.6).astype(np.uint8)


def _grid(volume: hd.Volume) -> Volume:
    return Volume(np.zeros(volume.spatial_shape, np.int16), LPS_TO_RAS @ volume.affine)


def _write(path: Path, sources: list[pydicom.Dataset], kind: str, count: int, syntax: str, **kwargs) -> Path:
    shape = (len(sources), int(sources[0].Rows), int(sources[0].Columns))
    pixels = _pixels(kind, count, shape, np.random.default_rng(count))
    if count == 1 and kind != "LABELMAP":
        pixels = pixels[..., 0]  # a lone segment: highdicom identifies it in the shared functional groups
    encoded = ExplicitVRLittleEndian if syntax == "deflated" else SYNTAXES[syntax]
    write_seg(path, sources, pixels, kind, count, transfer_syntax_uid=encoded, **kwargs)
    if syntax == "deflated":  # highdicom does not deflate; pydicom does on save
        ds = pydicom.dcmread(path)
        ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
        ds.save_as(path, enforce_file_format=True)
    return path


def _assert_as_highdicom(path: Path, kind: str) -> None:
    theirs = hd.seg.segread(path)
    reference = _grid(theirs.get_volume())
    if kind == "LABELMAP":
        expected = theirs.get_volume(combine_segments=True).array
        ours = seg_to_grid(path, reference).array
    else:
        expected = np.moveaxis(theirs.get_volume().array, -1, 0)
        ours = seg_to_grid(path, reference, as_channels=True).array
    assert ours.shape == expected.shape
    assert np.count_nonzero(expected) > 0
    np.testing.assert_array_equal(ours, expected)


CASES = [
    (kind, count, syntax)
    for kind in ("BINARY", "FRACTIONAL", "LABELMAP")
    for count in (1, 2, 20)
    for syntax in (BINARY_SYNTAXES if kind == "BINARY" else tuple(SYNTAXES))
]


@pytest.mark.parametrize(("kind", "count", "syntax"), CASES)
def test_generated_seg_equals_highdicom_get_volume(data_dir, tmp_path, kind, count, syntax) -> None:
    # JPEG 2000 needs frames of 32 pixels or more: the MR; the others use the small CT
    sources = _series(data_dir, MR, 4) if syntax == "j2k" else _series(data_dir, CT, 3)
    path = _write(tmp_path / "seg.dcm", sources, kind, count, syntax)
    assert pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID == SYNTAXES[syntax]
    _assert_as_highdicom(path, kind)


@pytest.mark.parametrize("count", [1, 2, 20])
def test_binary_frames_of_an_odd_pixel_count_are_unpacked_across_bytes(data_dir, tmp_path, count) -> None:
    path = _write(tmp_path / "odd.dcm", _odd(_series(data_dir, CT, 3)), "BINARY", count, "explicit")
    _assert_as_highdicom(path, "BINARY")


def test_binary_seg_of_the_oblique_mr_equals_highdicom(data_dir, tmp_path) -> None:
    _assert_as_highdicom(_write(tmp_path / "mr.dcm", _series(data_dir, MR, 4), "BINARY", 2, "explicit"), "BINARY")


def test_fractional_occupancy_equals_highdicom(data_dir, tmp_path) -> None:
    path = _write(
        tmp_path / "occ.dcm", _series(data_dir, CT, 3), "FRACTIONAL", 2, "explicit", fractional_type="OCCUPANCY", max_fractional_value=255
    )
    assert pydicom.dcmread(path).SegmentationFractionalType == "OCCUPANCY"
    _assert_as_highdicom(path, "FRACTIONAL")


def test_labelmap_with_a_palette_reads_its_label_values(data_dir, tmp_path) -> None:
    palette = hd.PaletteColorLUTTransformation.from_colors(["black", "red", "green", "blue"], palette_color_lut_uid=hd.UID())
    path = _write(tmp_path / "palette.dcm", _series(data_dir, CT, 3), "LABELMAP", 3, "explicit", palette_color_lut_transformation=palette)
    assert pydicom.dcmread(path).PhotometricInterpretation == "PALETTE COLOR"
    _assert_as_highdicom(path, "LABELMAP")


def test_frames_without_a_dimension_index_are_placed_by_position(data_dir, tmp_path) -> None:
    path = _write(tmp_path / "seg.dcm", _series(data_dir, CT, 3), "BINARY", 2, "explicit")
    theirs = hd.seg.segread(path).get_volume()
    ds = pydicom.dcmread(path)
    del ds.DimensionIndexSequence
    for item in ds.PerFrameFunctionalGroupsSequence:
        del item.FrameContentSequence[0].DimensionIndexValues
    ds.save_as(tmp_path / "no_index.dcm")
    ours = seg_to_grid(tmp_path / "no_index.dcm", _grid(theirs), as_channels=True)
    np.testing.assert_array_equal(ours.array, np.moveaxis(theirs.array, -1, 0))


def test_seg_over_two_series_takes_only_the_reference_series_frames(data_dir, tmp_path) -> None:
    ct = _series(data_dir, CT, 3)
    # a second series in the same frame of reference, turned 90 degrees (coronal) so its frames cannot fit the CT
    other = []
    for i, ds in enumerate(ct):
        ds = copy.deepcopy(ds)
        ds.SeriesInstanceUID, ds.SOPInstanceUID = "1.2.826.0.1.3680043.10.511.9.1", f"1.2.826.0.1.3680043.10.511.9.1.{i}"
        ds.ImageOrientationPatient = [1, 0, 0, 0, 0, -1]
        ds.ImagePositionPatient = [0, 10.0 * i, 0]
        other.append(ds)
    first = _write(tmp_path / "a.dcm", ct, "BINARY", 2, "explicit")
    second = _write(tmp_path / "b.dcm", other, "BINARY", 2, "explicit")
    merged, extra = pydicom.dcmread(first), pydicom.dcmread(second)
    frames = merged.pixel_array.reshape(int(merged.NumberOfFrames), -1)
    frames = np.concatenate([frames, extra.pixel_array.reshape(int(extra.NumberOfFrames), -1)])
    merged.PerFrameFunctionalGroupsSequence = list(merged.PerFrameFunctionalGroupsSequence) + list(extra.PerFrameFunctionalGroupsSequence)
    for item in merged.PerFrameFunctionalGroupsSequence:  # orientation per frame once the frames differ
        item.PlaneOrientationSequence = merged.SharedFunctionalGroupsSequence[0].PlaneOrientationSequence
    for item in extra.PerFrameFunctionalGroupsSequence:
        item.PlaneOrientationSequence = extra.SharedFunctionalGroupsSequence[0].PlaneOrientationSequence
    del merged.SharedFunctionalGroupsSequence[0].PlaneOrientationSequence
    merged.NumberOfFrames = len(frames)
    merged.PixelData = pydicom.pixels.pack_bits(frames)
    merged.ReferencedSeriesSequence.append(extra.ReferencedSeriesSequence[0])
    merged.save_as(tmp_path / "both.dcm")
    for single, series in ((first, ct), (second, other)):
        theirs = hd.seg.segread(single).get_volume()
        reference = _grid(theirs)
        reference.meta["series_uid"] = str(series[0].SeriesInstanceUID)
        ours = seg_to_grid(tmp_path / "both.dcm", reference, as_channels=True)
        np.testing.assert_array_equal(ours.array, np.moveaxis(theirs.array, -1, 0))


def test_overlapping_generated_segments_are_kept_as_channels_and_refused_as_one_label_map(data_dir, tmp_path) -> None:
    sources = _series(data_dir, CT, 3)
    pixels = np.zeros((3, 38, 24, 2), np.uint8)
    pixels[:, 5:20, 5:15, 0] = 1
    pixels[:, 10:30, 10:20, 1] = 1
    path = write_seg(tmp_path / "overlap.dcm", sources, pixels, "BINARY", 2)
    theirs = hd.seg.segread(path).get_volume()
    ours = seg_to_grid(path, _grid(theirs), as_channels=True)
    np.testing.assert_array_equal(ours.array, np.moveaxis(theirs.array, -1, 0))
    with pytest.raises(SegmentOverlapError, match="segments 2 and 1 overlap"):
        seg_to_grid(path, _grid(theirs))
