"""Write-back defects: a mosaic source, overlapping channels as a label map, a prediction off the source grid,
RTSTRUCT IOD conformance, repeated labels, label order, a source folder holding other files, float label maps."""

from __future__ import annotations

import logging
import shutil

import highdicom as hd
import nibabel as nib
import numpy as np
import pydicom
import pytest
import torch
from highdicom._standard_utils import get_iod_module_map, get_module_attribute_map

import dicomml
from dicomml.cli.main import main
from dicomml.config import Label, parse_labels
from dicomml.dicom.synthetic import write_series
from dicomml.errors import ConfigError, InvalidDicomFileError, SegReferenceError
from dicomml.seg import rtstruct_to_grid
from dicomml.seg.labelmap import overlay_channels
from dicomml.seg.write import PATIENT_STUDY, source_grid
from dicomml.volume import Volume

SHAPE = (6, 24, 28)


@pytest.fixture(scope="module")
def series(tmp_path_factory):
    """A synthetic CT series of 6 slices of 24 x 28 (2 mm), its header holding PatientID only of the patient and
    study attributes (write_series), so that every other Type 2 one is absent."""
    folder = tmp_path_factory.mktemp("series") / "CT"
    write_series(folder, np.zeros(SHAPE, np.uint16), spacing=2.0)
    return folder


def _nested(shape: tuple[int, int, int]) -> np.ndarray:
    """Multi-hot (2, ...) channels: a liver box with a tumour box inside it."""
    channels = np.zeros((2,) + shape, np.uint8)
    channels[0, 1:5, 4:20, 4:24] = 1
    channels[1, 2:4, 8:14, 10:16] = 1
    return channels


def _combined(path, grid) -> np.ndarray:
    """highdicom's label map of a SEG: segment numbers, (slices, rows, columns) in the source grid's slice order."""
    uids = [ds.SOPInstanceUID for ds in grid.datasets]
    return hd.seg.segread(path).get_pixels_by_source_instance(uids, combine_segments=True, relabel=False)


# 1. a Siemens mosaic ---------------------------------------------------------------------------------------------


def test_a_siemens_mosaic_source_is_refused_naming_the_file(data_dir, tmp_path) -> None:
    """A mosaic is 35 slices in one image: frame_table gave 35 planes for one file, and the stack indexed the files
    with them (IndexError). A SEG or RTSTRUCT can reference the whole image only, so write-back refuses it."""
    mosaic = data_dir / "dcm_qa_ts/In/1.dcm"
    volume = dicomml.load_files([mosaic])
    labels = np.zeros(volume.spatial_shape, np.uint8)
    labels[10:25, 20:40, 20:40] = 1
    for write in (dicomml.write_seg, dicomml.write_rtstruct):
        with pytest.raises(SegReferenceError, match=r"In/1\.dcm: a Siemens mosaic \(35 slices tiled in one image\)") as caught:
            write(labels, [mosaic], {"brain": 1}, tmp_path / "out.dcm", affine=volume.affine)
        assert "\n" not in str(caught.value) and "convert" in str(caught.value)
        assert caught.value.path == str(mosaic)
    assert not (tmp_path / "out.dcm").exists()


# 2. overlapping channels written as one label map ----------------------------------------------------------------


@pytest.mark.parametrize("form", ["multi-hot", "probabilities"])
def test_labelmap_from_overlapping_channels_keeps_the_higher_value(series, tmp_path, form) -> None:
    """The tumour inside the liver vanished: argmax over tied channels picked the first. The rule of mode: label_map
    (the higher value wins) now decides, for multi-hot channels and for probabilities without a background channel."""
    grid = source_grid(series)
    channels = _nested(grid.shape)
    prediction = channels if form == "multi-hot" else channels.astype(np.float32) * 0.9
    out = dicomml.write_seg(prediction, series, {"liver": 1, "tumor": 2}, tmp_path / "lm.dcm", kind="labelmap", affine=grid.affine)
    expected = np.where(channels[1] != 0, 2, np.where(channels[0] != 0, 1, 0))
    np.testing.assert_array_equal(_combined(out, grid), expected)
    assert np.count_nonzero(expected == 2) == 2 * 6 * 6


def test_the_higher_value_wins_whatever_the_order_of_the_labels() -> None:
    """One rule for dataset_mask and write-back; it ranks by value, not by the order the labels come in."""
    liver, tumour = np.array([1, 1, 1, 0], np.uint8), np.array([0, 1, 0, 0], np.uint8)
    np.testing.assert_array_equal(overlay_channels(np.stack([liver, tumour]), [1, 2]), [1, 2, 1, 0])
    np.testing.assert_array_equal(overlay_channels(np.stack([tumour, liver]), [2, 1]), [1, 2, 1, 0])
    assert overlay_channels(np.stack([liver]), [300]).dtype == np.uint16


# 3. a prediction off the source grid ------------------------------------------------------------------------------


def test_a_prediction_wholly_off_the_source_grid_is_refused(series, tmp_path) -> None:
    """A 500 mm shift (an origin or LPS/RAS mix-up) gave an empty SEG and an empty RTSTRUCT without a word."""
    grid = source_grid(series)
    labels = _nested(grid.shape)[0]
    shifted = grid.affine.copy()
    shifted[:3, 3] += [500.0, 0.0, 0.0]
    for write in (dicomml.write_seg, dicomml.write_rtstruct):
        with pytest.raises(SegReferenceError, match="none of the prediction's labelled voxels lands on the source series' grid") as caught:
            write(labels, series, {"organ": 1}, tmp_path / "out.dcm", affine=shifted)
        assert "\n" not in str(caught.value) and "RAS+" in str(caught.value)
        with pytest.raises(SegReferenceError, match="none of the prediction's labelled voxels"):  # channels too
            write(labels[None].astype(np.float32), series, {"organ": 1}, tmp_path / "out.dcm", affine=shifted)
    assert not (tmp_path / "out.dcm").exists()


def test_a_label_that_falls_off_the_grid_alone_is_written_empty_with_a_warning(series, tmp_path, caplog) -> None:
    grid = source_grid(series)
    wider = np.zeros((SHAPE[0] + 10,) + SHAPE[1:], np.uint8)  # the source's grid, 10 slices longer
    wider[1:5, 4:20, 4:24] = 1
    wider[12:14, 8:14, 10:16] = 2  # beyond the source's last slice
    with caplog.at_level(logging.WARNING, logger="dicomml.seg.write"):
        out = dicomml.write_seg(wider, series, {"organ": 1, "lost": 2}, tmp_path / "s.dcm", affine=grid.affine)
    assert [r.getMessage() for r in caplog.records if "'lost'" in r.getMessage()], caplog.text
    assert not any("'organ'" in r.getMessage() for r in caplog.records)
    seg = hd.seg.segread(out)
    assert int(seg.get_volume(segment_numbers=[1]).array.sum()) == 4 * 16 * 20


# 4. RTSTRUCT conformance ------------------------------------------------------------------------------------------


def _missing_type_1_and_2(ds: pydicom.Dataset, modules: list[str]) -> list[str]:
    """Type 1 and 2 attributes of ``modules`` (PS3.3, as highdicom carries its tables) absent from ``ds`` (Type 1:
    or empty), at the root and in every item of the sequences present; conditional ones (1C, 2C) are not checked."""
    attributes = get_module_attribute_map()
    problems = []
    for module in modules:
        for entry in attributes[module]:
            if entry["type"] not in ("1", "2"):
                continue
            items = [ds]
            for keyword in entry["path"]:
                items = [child for item in items for child in (item.get(keyword) or [])]
            for item in items:
                if entry["keyword"] not in item:
                    problems.append(f"{module}: {'/'.join([*entry['path'], entry['keyword']])} missing")
                elif entry["type"] == "1" and item[entry["keyword"]].is_empty:
                    problems.append(f"{module}: {'/'.join([*entry['path'], entry['keyword']])} empty (Type 1)")
    return problems


def _empty_sequences(ds: pydicom.Dataset) -> list[str]:
    found = []
    for element in ds.iterall():
        if element.VR == "SQ" and len(element.value) == 0:
            found.append(element.keyword)
    return found


def test_rtstruct_has_every_type_1_and_2_attribute_and_no_empty_sequence(series, tmp_path) -> None:
    """dciodvfy found a ContourSequence of 0 items for an empty label, OperatorsName and PositionReferenceIndicator
    missing, and the Type 2 patient and study attributes the source lacks left out (the SEG writes them empty)."""
    grid = source_grid(series)
    labels = _nested(grid.shape)[0]  # label "empty" (2) has no voxel
    out = dicomml.write_rtstruct(labels, series, {"organ": 1, "empty": 2}, tmp_path / "rt.dcm", affine=grid.affine)
    rt = pydicom.dcmread(out)
    iod = get_iod_module_map()["rt-structure-set"]
    modules = [m["key"] for m in iod if m["usage"] == "M"]
    assert "FrameOfReferenceUID" in rt  # so its (user optional) Frame of Reference module must be whole
    assert _missing_type_1_and_2(rt, [*modules, "frame-of-reference"]) == []
    assert _empty_sequences(rt) == []
    assert "ContourSequence" in rt.ROIContourSequence[0] and "ContourSequence" not in rt.ROIContourSequence[1]
    assert [roi.ROIName for roi in rt.StructureSetROISequence] == ["organ", "empty"]
    back = rtstruct_to_grid(out, Volume(np.zeros(grid.shape, np.int16), grid.affine), as_channels=True)
    np.testing.assert_array_equal(back.array[0], labels)
    assert not back.array[1].any()
    seg = pydicom.dcmread(dicomml.write_seg(labels, series, {"organ": 1}, tmp_path / "seg.dcm", affine=grid.affine))
    for keyword in PATIENT_STUDY:  # the patient and study attributes come from one shared list and cleaning
        assert keyword in rt and keyword in seg, keyword
        assert str(rt[keyword].value) == str(seg[keyword].value), keyword


def test_a_source_without_frame_of_reference_is_refused_by_both_writers(series, tmp_path) -> None:
    """write_seg refused through highdicom; write_rtstruct wrote empty Type 1 Frame of Reference UIDs."""
    folder = tmp_path / "nofor"
    folder.mkdir()
    for path in sorted(series.iterdir()):
        ds = pydicom.dcmread(path)
        del ds.FrameOfReferenceUID
        ds.save_as(folder / path.name)
    grid = source_grid(folder)
    for write in (dicomml.write_seg, dicomml.write_rtstruct):
        with pytest.raises(SegReferenceError, match=r"no \(0020,0052\) Frame Of Reference UID") as caught:
            write(_nested(grid.shape)[0], folder, {"a": 1}, tmp_path / "out.dcm", affine=grid.affine)
        assert caught.value.tag == "(0020,0052)" and "\n" not in str(caught.value)
    assert not (tmp_path / "out.dcm").exists()


# 5. repeated labels -----------------------------------------------------------------------------------------------


def test_labels_repeating_a_value_or_a_name_are_refused_naming_both(series, tmp_path) -> None:
    with pytest.raises(ConfigError, match="labels: 'a' and 'b' both have value 1"):
        parse_labels({"a": 1, "b": 1})
    with pytest.raises(ConfigError, match=r"'liver' \(value 1\) and 'Liver' \(value 2\) are one name"):
        parse_labels(["liver", "Liver"])
    with pytest.raises(ConfigError, match="'x' and 'y' both have value 3"):
        parse_labels([Label("x", 3), Label("y", 3)])
    grid = source_grid(series)
    with pytest.raises(ConfigError, match="'a' and 'b' both have value 1"):
        dicomml.write_seg(_nested(grid.shape)[0], series, {"a": 1, "b": 1}, tmp_path / "x.dcm", affine=grid.affine)
    assert not (tmp_path / "x.dcm").exists()


@pytest.mark.parametrize(
    ("pairs", "message"), [(["a=1", "b=1"], "'a' and 'b' both have value 1"), (["a=1", "a=2"], "'a' (value 1) and 'a' (value 2)")]
)
def test_cli_labels_given_twice_are_one_error_line(series, tmp_path, capsys, pairs, message) -> None:
    """`--label a=1 --label a=2` kept the last silently; `--label a=1 --label b=1` wrote 'a' empty."""
    grid = source_grid(series)
    nib.save(nib.Nifti1Image(_nested(grid.shape)[0], grid.affine), tmp_path / "pred.nii.gz")
    argv = ["write-seg", str(tmp_path / "pred.nii.gz"), "--source", str(series), "-o", str(tmp_path / "x.dcm")]
    with pytest.raises(SystemExit) as exit_:
        main([*argv, *(f"--label={pair}" for pair in pairs)])
    [line] = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 1 and message in line and line.startswith("dicomml: error: --label:")
    assert not (tmp_path / "x.dcm").exists()


# 6. label order ---------------------------------------------------------------------------------------------------


def test_channels_and_segments_follow_label_values_as_the_datasets_channels_do(series, tmp_path, make_config) -> None:
    """Channels are the labels sorted by value, whatever order the mapping gives them in: as a Dataset's."""
    labels = {"spleen": 3, "liver": 1}
    config = make_config("ct_seg", deterministic={"annotations": {"labels": labels}})
    assert [label.name for label in config.deterministic.labels()] == ["liver", "spleen"]
    grid = source_grid(series)
    channels = np.zeros((2,) + grid.shape, np.uint8)
    channels[0, 1:3, 2:6, 2:6] = 1  # liver
    channels[1, 2:5, 10:20, 10:20] = 1  # spleen
    seg = hd.seg.segread(dicomml.write_seg(channels, series, labels, tmp_path / "s.dcm", affine=grid.affine))
    assert [seg.get_segment_description(n).segment_label for n in (1, 2)] == ["liver", "spleen"]
    assert [int(seg.get_volume(segment_numbers=[n]).array.sum()) for n in (1, 2)] == [2 * 4 * 4, 3 * 10 * 10]


# 7. a source folder holding other files ---------------------------------------------------------------------------


def test_a_source_folder_skips_files_that_are_not_dicom_images(series, tmp_path, capsys) -> None:
    """A README, .DS_Store, the NIfTI prediction, a SEG and an RTSTRUCT beside the series aborted write-back."""
    folder = tmp_path / "CT"
    shutil.copytree(series, folder)
    grid = source_grid(series)
    labels = _nested(grid.shape)[0]
    dicomml.write_seg(labels, series, {"organ": 1}, folder / "seg.dcm", affine=grid.affine)
    dicomml.write_rtstruct(labels, series, {"organ": 1}, folder / "rt.dcm", affine=grid.affine)
    (folder / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1" + bytes(200))
    (folder / "README").write_text("CT for the liver study\n")
    nib.save(nib.Nifti1Image(labels, grid.affine), folder / "pred.nii.gz")
    found = source_grid(folder)
    assert [ds.SOPInstanceUID for ds in found.datasets] == [ds.SOPInstanceUID for ds in grid.datasets]
    main(["write-rtstruct", str(folder / "pred.nii.gz"), "--source", str(folder), "--label", "organ=1", "-o", str(tmp_path / "rt.dcm")])
    assert "wrote" in capsys.readouterr().out
    referenced = pydicom.dcmread(tmp_path / "rt.dcm").ReferencedFrameOfReferenceSequence[0]
    images = referenced.RTReferencedStudySequence[0].RTReferencedSeriesSequence[0].ContourImageSequence
    assert len(images) == SHAPE[0]


def test_a_source_folder_with_two_series_or_a_truncated_slice_is_still_refused(series, tmp_path) -> None:
    grid = source_grid(series)
    two = tmp_path / "two"
    shutil.copytree(series, two)
    write_series(two / "other", np.zeros((2, 8, 8), np.uint16))
    for path in (two / "other").iterdir():
        path.rename(two / f"other_{path.name}")
    with pytest.raises(SegReferenceError, match=r"two: the source holds images of 2 series") as caught:
        source_grid(two)
    assert "\n" not in str(caught.value)
    truncated = tmp_path / "truncated"
    shutil.copytree(series, truncated)
    first = sorted(truncated.iterdir())[0]
    first.write_bytes(first.read_bytes()[:400])  # a CT slice cut short in its header is a slice lost, not a file to skip
    with pytest.raises(InvalidDicomFileError, match=rf"{first.name}: \(0028,0010\) Rows"):
        dicomml.write_seg(_nested(grid.shape)[0], truncated, {"a": 1}, tmp_path / "x.dcm", affine=grid.affine)


# 8. floating-point label maps -------------------------------------------------------------------------------------


def test_a_float_label_map_of_whole_numbers_is_a_label_map(series, tmp_path) -> None:
    """MONAI's SaveImage writes float32, and an int16 NIfTI with scl_slope loads as float64: both were refused."""
    grid = source_grid(series)
    channels = _nested(grid.shape)
    labels = np.where(channels[1] != 0, 2, np.where(channels[0] != 0, 1, 0)).astype(np.uint8)
    nib.save(nib.Nifti1Image(labels.astype(np.float32), grid.affine), tmp_path / "float32.nii.gz")
    scaled = nib.Nifti1Image((labels * 2).astype(np.int16), grid.affine)
    scaled.header.set_slope_inter(0.5, 0.0)
    nib.save(scaled, tmp_path / "scaled.nii.gz")
    assert np.asanyarray(nib.load(tmp_path / "scaled.nii.gz").dataobj).dtype == np.float64
    expected = np.stack([labels == 1, labels == 2], axis=-1)
    uids = [ds.SOPInstanceUID for ds in grid.datasets]
    for name, prediction in {
        "float32": tmp_path / "float32.nii.gz",
        "scaled int16": tmp_path / "scaled.nii.gz",
        "float64 array, off by 1e-6": labels.astype(np.float64) + 1e-6,
        "MONAI AsDiscrete(argmax=True): float (1, i, j, k)": torch.from_numpy(labels[None].astype(np.float32)),
    }.items():
        affine = grid.affine if isinstance(prediction, (np.ndarray, torch.Tensor)) else None
        out = dicomml.write_seg(prediction, series, {"liver": 1, "tumor": 2}, tmp_path / "s.dcm", affine=affine)
        back = hd.seg.segread(out).get_pixels_by_source_instance(uids, segment_numbers=[1, 2])
        np.testing.assert_array_equal(back, expected, err_msg=name)


def test_a_3d_float_prediction_that_is_not_whole_numbers_is_still_refused(series, tmp_path) -> None:
    grid = source_grid(series)
    soft = _nested(grid.shape)[0].astype(np.float32) * 0.7
    with pytest.raises(ConfigError, match="a 3-D prediction must be integer label values, got float32") as caught:
        dicomml.write_seg(soft, series, {"a": 1}, tmp_path / "x.dcm", affine=grid.affine)
    assert "(C, i, j, k)" in str(caught.value)
    soft[0, 0, 0] = np.nan
    with pytest.raises(ConfigError, match="integer label values"):
        dicomml.write_rtstruct(np.round(soft), series, {"a": 1}, tmp_path / "x.dcm", affine=grid.affine)
