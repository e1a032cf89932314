"""Write-back: predictions on any grid -> SEG / RTSTRUCT on the source grid, read back by outside readers."""

from __future__ import annotations

import warnings

import highdicom as hd
import nibabel as nib
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
import torch
from rt_utils import RTStructBuilder
from seg_refs import dice, to_sitk, write_ct

import dicomml
from dicomml.config import Label
from dicomml.errors import ConfigError, SegReferenceError
from dicomml.seg import rtstruct_to_grid
from dicomml.seg.write import source_grid
from dicomml.volume import Volume

LABELS = {"liver": 1, "tumor": 2}


@pytest.fixture(scope="module")
def ct(tmp_path_factory):
    """A 0.7 mm axial CT, 24 slices of 48 x 56."""
    folder = tmp_path_factory.mktemp("ct07")
    write_ct(folder, (24, 48, 56), 0.7)
    return folder


def _label_map(shape: tuple[int, int, int]) -> np.ndarray:
    """Two blobs on a grid of ``shape``: an ellipsoid (1) with a smaller one (2) inside it."""
    k, j, i = np.meshgrid(*(np.linspace(-1, 1, n) for n in shape), indexing="ij")
    labels = np.zeros(shape, np.uint8)
    labels[(k / 0.8) ** 2 + (j / 0.7) ** 2 + (i / 0.6) ** 2 < 1] = 1
    labels[((k - 0.1) / 0.35) ** 2 + ((j + 0.1) / 0.3) ** 2 + (i / 0.3) ** 2 < 1] = 2
    return labels


@pytest.fixture(scope="module")
def square_ct(tmp_path_factory):
    """A 0.7 mm axial CT of 24 slices of 56 x 56: rt-utils 1.2.7 swaps rows and columns of non-square images."""
    folder = tmp_path_factory.mktemp("ct07square")
    write_ct(folder, (24, 56, 56), 0.7, seed=1)
    return folder


def _read_back(path, grid) -> np.ndarray:
    """highdicom's pixels of the SEG, (slices, rows, columns, segments), in the source grid's slice order."""
    seg = hd.seg.segread(path)
    uids = [ds.SOPInstanceUID for ds in grid.datasets]
    return seg.get_pixels_by_source_instance(uids, segment_numbers=list(seg.segment_numbers))


@pytest.mark.parametrize("kind", ["binary", "labelmap"])
def test_mask_on_the_source_grid_comes_back_voxel_exact(ct, tmp_path, kind) -> None:
    grid = source_grid(ct)
    labels = _label_map(grid.shape)
    out = dicomml.write_seg(labels, ct, LABELS, tmp_path / "seg.dcm", kind=kind, affine=grid.affine)
    back = _read_back(out, grid)
    np.testing.assert_array_equal(back, np.stack([labels == 1, labels == 2], axis=-1))
    seg = hd.seg.segread(out)
    assert seg.segmentation_type.value == kind.upper()
    assert [seg.get_segment_description(n).segment_label for n in (1, 2)] == ["liver", "tumor"]
    assert {str(ds.SOPInstanceUID) for ds in grid.datasets} == {
        str(item.ReferencedSOPInstanceUID) for item in seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence
    }
    assert seg.get_segment_description(1).algorithm_identification[0].AlgorithmName == "dicomml"


def test_probabilities_come_back_within_one_step_of_255(ct, tmp_path) -> None:
    grid = source_grid(ct)
    rng = np.random.default_rng(3)
    probabilities = rng.random((2,) + grid.shape).astype(np.float32)
    out = dicomml.write_seg(probabilities, ct, LABELS, tmp_path / "soft.dcm", kind="fractional", affine=grid.affine)
    back = _read_back(out, grid)
    assert np.max(np.abs(back - np.moveaxis(probabilities, 0, -1))) <= 1 / 255 + 1e-6


def test_probabilities_are_thresholded_for_binary_and_argmaxed_for_a_label_map(ct, tmp_path) -> None:
    grid = source_grid(ct)
    probabilities = np.random.default_rng(4).random((3,) + grid.shape).astype(np.float32)  # background first
    binary = dicomml.write_seg(probabilities, ct, LABELS, tmp_path / "b.dcm", affine=grid.affine, threshold=0.7)
    np.testing.assert_array_equal(_read_back(binary, grid), np.moveaxis(probabilities[1:] >= 0.7, 0, -1))
    labelmap = dicomml.write_seg(probabilities, ct, LABELS, tmp_path / "l.dcm", kind="labelmap", affine=grid.affine)
    best = np.argmax(probabilities, axis=0)
    np.testing.assert_array_equal(_read_back(labelmap, grid), np.stack([best == 1, best == 2], axis=-1))


def test_prediction_on_a_1p5mm_ras_grid_agrees_with_simpleitk_nearest(ct, tmp_path) -> None:
    grid = source_grid(ct)
    # a RAS+ grid of 1.5 mm covering the CT (whose voxels are 0.7 mm, LPS+ rows and columns, slices feet to head)
    corners = (
        np.array([[a, b, c, 1] for a in (0, grid.shape[0] - 1) for b in (0, grid.shape[1] - 1) for c in (0, grid.shape[2] - 1)])
        @ grid.affine.T
    )
    low = corners[:, :3].min(axis=0) - 2.0
    shape = tuple(int(n) for n in np.ceil((corners[:, :3].max(axis=0) + 2.0 - low) / 1.5) + 1)
    affine = np.diag([1.5, 1.5, 1.5, 1.0])
    affine[:3, 3] = low
    prediction = _label_map(shape)
    out = dicomml.write_seg(prediction, ct, LABELS, tmp_path / "ras.dcm", affine=affine)
    back = _read_back(out, grid)
    reference = to_sitk(np.zeros(grid.shape, np.uint8), grid.affine)
    theirs = sitk.GetArrayFromImage(sitk.Resample(to_sitk(prediction, affine), reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0))
    for value in (1, 2):
        assert np.count_nonzero(theirs == value) > 100
        assert dice(back[..., value - 1], theirs == value) >= 0.99


def test_every_prediction_form_gives_the_same_seg(ct, tmp_path) -> None:
    from monai.data import MetaTensor

    grid = source_grid(ct)
    labels = _label_map(grid.shape)
    expected = np.stack([labels == 1, labels == 2], axis=-1)
    nib.save(nib.Nifti1Image(labels, grid.affine), tmp_path / "pred.nii.gz")
    nib.save(nib.Nifti1Image(labels.astype(np.int16), grid.affine), tmp_path / "int16.nii.gz")  # label files are often int16
    logits = torch.from_numpy(np.stack([labels == n for n in (0, 1, 2)]).astype(np.float32))
    forms = {
        "nifti": (tmp_path / "pred.nii.gz", None),
        "int16 nifti": (tmp_path / "int16.nii.gz", None),
        "argmax (int64)": (logits.argmax(0), grid.affine),
        "volume": (Volume(labels, grid.affine), None),
        "metatensor": (MetaTensor(torch.from_numpy(labels)[None], affine=torch.from_numpy(grid.affine)), None),
        "tensor": (torch.from_numpy(labels), grid.affine),
        "batched one-hot": (torch.from_numpy(np.stack([labels == 1, labels == 2]))[None], grid.affine),
    }
    files = sorted(ct.iterdir())
    for name, (prediction, affine) in forms.items():
        out = dicomml.write_seg(prediction, files, LABELS, tmp_path / f"{name}.dcm", affine=affine)
        np.testing.assert_array_equal(_read_back(out, grid), expected, err_msg=name)


def test_codes_colours_and_the_manifest_source_are_written(ct, tmp_path) -> None:
    manifest = dicomml.index(ct, tmp_path / "manifest")
    key = manifest.series.series_key.iloc[0]
    grid = source_grid(key, manifest=manifest)
    labels = [Label("liver", 1, codes=("SCT:10200004",), color=(200, 100, 0)), Label("tumor", 2)]
    out = dicomml.write_seg(
        _label_map(grid.shape),
        key,
        labels,
        tmp_path / "coded.dcm",
        manifest=manifest,
        affine=grid.affine,
        algorithm="unet",
        algorithm_version="2.1",
    )
    seg = hd.seg.segread(out)
    liver = seg.get_segment_description(1)
    assert liver.segmented_property_type.value == "10200004" and liver.segmented_property_type.scheme_designator == "SCT"
    assert liver.algorithm_identification[0].AlgorithmVersion == "2.1"
    assert "RecommendedDisplayCIELabValue" in liver
    assert seg.get_segment_numbers(segmented_property_type=hd.sr.CodedConcept("10200004", "SCT", "Liver")) == [1]


def test_bad_predictions_raise_one_line_errors(ct, tmp_path) -> None:
    grid = source_grid(ct)
    labels = _label_map(grid.shape)
    with pytest.raises(ConfigError, match="no affine"):
        dicomml.write_seg(labels, ct, LABELS, tmp_path / "x.dcm")
    with pytest.raises(ConfigError, match="3 channels for 1 labels"):
        dicomml.write_seg(np.zeros((3,) + grid.shape, np.float32), ct, {"liver": 1}, tmp_path / "x.dcm", affine=grid.affine)
    with pytest.raises(ConfigError, match=r"label values \[2\]"):
        dicomml.write_seg(labels, ct, {"liver": 1}, tmp_path / "x.dcm", affine=grid.affine)
    with pytest.raises(ConfigError, match="kind="):
        dicomml.write_seg(labels, ct, LABELS, tmp_path / "x.dcm", affine=grid.affine, kind="soft")
    with pytest.raises(SegReferenceError, match="no source files"):
        dicomml.write_seg(labels, [], LABELS, tmp_path / "x.dcm", affine=grid.affine)


def test_a_source_without_patient_geometry_is_refused_in_one_line(tmp_path) -> None:
    """A radiograph has no ImagePositionPatient: write-back raised a bare AttributeError from pydicom."""
    from dicomml.imaging2d.synthetic import write_image2d

    dx = write_image2d(tmp_path / "dx.dcm", np.zeros((30, 20), np.uint16), modality="DX", extra={"ImagerPixelSpacing": [0.1, 0.1]})
    for write in (dicomml.write_seg, dicomml.write_rtstruct):
        with pytest.raises(SegReferenceError, match=r"dx\.dcm: a source plane has no ImagePositionPatient") as info:
            write(np.ones((1, 30, 20), np.uint8), [dx], {"lesion": 1}, tmp_path / "out.dcm", affine=np.eye(4))
        assert "\n" not in str(info.value)
    assert not (tmp_path / "out.dcm").exists()


def _rings(shape: tuple[int, int, int]) -> np.ndarray:
    """Per slice: a ring (1, with a hole) and a disc (2) beside it, radii growing along the slices."""
    rows, columns = np.mgrid[: shape[1], : shape[2]]
    labels = np.zeros(shape, np.uint8)
    for k in range(3, shape[0] - 3):
        radius = 12 + 0.3 * k
        distance = np.hypot(rows - 24.3, columns - 22.7)
        labels[k][distance < radius] = 1
        labels[k][distance < radius / 2.5] = 0
        labels[k][np.hypot(rows - 40, columns - 47) < 5.5] = 2
    return labels


def test_write_back_quotes_no_patient_value_and_empties_what_highdicom_cannot_parse(ct, tmp_path) -> None:
    """A one-word PatientName (valid DICOM) made highdicom warn with the name quoted, a malformed birth
    date made pydicom warn with it quoted and highdicom refuse the SEG: identity in the logs, no SEG."""
    source = tmp_path / "named"
    source.mkdir()
    for path in ct.iterdir():
        ds = pydicom.dcmread(path)
        ds.PatientName, ds.PatientBirthDate, ds.PatientSex, ds.StudyTime = "Zebulonsky", "19XX0704", "male", "25XX"
        ds.save_as(source / path.name)
    grid = source_grid(source)
    labels = _label_map(grid.shape)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        seg = dicomml.write_seg(labels, source, LABELS, tmp_path / "seg.dcm", affine=grid.affine)
        rt = dicomml.write_rtstruct(labels, source, LABELS, tmp_path / "rt.dcm", affine=grid.affine)
    assert not [str(w.message) for w in caught if "Zebulonsky" in str(w.message) or "19XX" in str(w.message)]
    for written in (pydicom.dcmread(seg), pydicom.dcmread(rt)):
        assert written.PatientName == "Zebulonsky" and written.StudyDate == grid.datasets[0].StudyDate  # the reference is kept
        assert written.PatientBirthDate == written.PatientSex == written.StudyTime == ""  # unknown, as Type 2 allows


def test_a_source_without_slice_thickness_still_becomes_a_seg(ct, tmp_path) -> None:
    """SliceThickness is Type 2 and absent in real CTs: highdicom read it as an attribute and failed."""
    source = tmp_path / "thin"
    source.mkdir()
    for path in ct.iterdir():
        ds = pydicom.dcmread(path)
        del ds.SliceThickness
        ds.save_as(source / path.name)
    grid = source_grid(source)
    labels = _label_map(grid.shape)
    out = dicomml.write_seg(labels, source, LABELS, tmp_path / "seg.dcm", affine=grid.affine)
    np.testing.assert_array_equal(_read_back(out, grid), np.stack([labels == 1, labels == 2], axis=-1))
    measures = pydicom.dcmread(out).SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0]
    assert measures.SliceThickness is None and "SliceThickness" not in pydicom.dcmread(next(source.iterdir()))  # unknown, not made up


@pytest.mark.parametrize(
    ("charset", "name", "label", "written"),
    [
        # PS3.5 H.3.1: an empty first value is the default repertoire
        (["", "ISO 2022 IR 87"], "Yamada^Tarou=山田^太郎=やまだ^たろう", "tumor", ["ISO 2022 IR 6", "ISO 2022 IR 87"]),
        ("ISO_IR 100", "Müller^Jörg", "Läsion", "ISO_IR 100"),  # the source's repertoire holds the label: kept
        (None, "Doe^John", "Läsion", "ISO_IR 192"),  # none named (ASCII) and a non-ASCII label: UTF-8
        ("ISO_IR 6", "Doe^John", "Läsion", "ISO_IR 192"),  # ASCII named (pydicom would read it as Latin-1)
        (None, "Doe^John", "肝臓", "ISO_IR 192"),
        ("ISO_IR 100", "Müller^Jörg", "肝臓", "ISO_IR 192"),  # Latin-1 has no kanji: UTF-8, the name written again in it
    ],
)
def test_write_back_keeps_names_in_their_character_set(ct, tmp_path, charset, name, label, written) -> None:
    """A label the source's repertoire could not hold was written as '??' (pydicom's replacement) in a SEG."""
    source = tmp_path / "named"
    source.mkdir()
    for path in ct.iterdir():
        ds = pydicom.dcmread(path)
        if charset is not None:
            ds.SpecificCharacterSet = charset
        elif "SpecificCharacterSet" in ds:
            del ds.SpecificCharacterSet
        ds.PatientName = name
        ds.save_as(source / path.name)
    grid = source_grid(source)
    labels = _label_map(grid.shape).clip(0, 1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # pydicom warns when it replaces characters it cannot encode
        seg = pydicom.dcmread(dicomml.write_seg(labels, source, {label: 1}, tmp_path / "seg.dcm", affine=grid.affine))
        rt = pydicom.dcmread(dicomml.write_rtstruct(labels, source, {label: 1}, tmp_path / "rt.dcm", affine=grid.affine))
    assert str(seg.PatientName) == str(rt.PatientName) == name
    assert seg.SegmentSequence[0].SegmentLabel == rt.StructureSetROISequence[0].ROIName == label
    assert seg.SpecificCharacterSet == rt.SpecificCharacterSet == written


def test_rtstruct_round_trip_with_rt_utils_and_dicomml_rasterizers(square_ct, tmp_path) -> None:
    grid = source_grid(square_ct)
    labels = _rings(grid.shape)
    out = dicomml.write_rtstruct(labels, square_ct, LABELS, tmp_path / "rt.dcm", affine=grid.affine)
    ours = rtstruct_to_grid(out, Volume(np.zeros(grid.shape, np.int16), grid.affine), as_channels=True)
    rt = RTStructBuilder.create_from(str(square_ct), str(out))
    assert rt.get_roi_names() == ["liver", "tumor"]
    order = {str(ds.SOPInstanceUID): k for k, ds in enumerate(grid.datasets)}
    theirs_order = [order[str(ds.SOPInstanceUID)] for ds in rt.series_data]
    for channel, name in enumerate(["liver", "tumor"]):
        expected = labels == channel + 1
        theirs = np.zeros(grid.shape, bool)
        theirs[theirs_order] = np.moveaxis(rt.get_roi_mask_by_name(name), -1, 0)  # (rows, columns, slices)
        assert dice(ours.array[channel], expected) >= 0.97
        assert dice(theirs, expected) >= 0.97
    assert not ours.array[0][10, 24, 23]  # the hole stays a hole
    ds = pydicom.dcmread(out)
    assert ds.StructureSetROISequence[0].ROIName == "liver" and ds.ROIContourSequence[0].ROIDisplayColor == [255, 0, 0]
    assert ds.PatientID == grid.datasets[0].PatientID and ds.FrameOfReferenceUID == grid.datasets[0].FrameOfReferenceUID


def test_rtstruct_contours_probabilities_between_pixel_centres(ct, tmp_path) -> None:
    grid = source_grid(ct)
    # a linear ramp along the columns: the 0.5 iso-line lies at column 20.25, between two centres
    ramp = np.clip((np.arange(grid.shape[2]) - 15.25) / 10.0, 0, 1).astype(np.float32)
    probabilities = np.broadcast_to(ramp, grid.shape)[None].copy()
    probabilities[:, :, :5] = 0
    out = dicomml.write_rtstruct(probabilities, ct, {"liver": 1}, tmp_path / "soft.dcm", affine=grid.affine)
    ds = pydicom.dcmread(out)
    points = np.asarray(ds.ROIContourSequence[0].ContourSequence[0].ContourData, float).reshape(-1, 3)
    to_index = np.linalg.inv(grid.affine) @ np.diag([-1.0, -1.0, 1.0, 1.0])
    index = np.column_stack([points, np.ones(len(points))]) @ to_index.T
    left = index[:, 2].min()
    assert abs(left - 20.25) < 1e-3


def _dicomml(*args: str):
    import os
    import subprocess
    import sys

    command = [sys.executable, "-c", "from dicomml.cli.main import main; main()", *args]
    return subprocess.run(command, capture_output=True, text=True, env=dict(os.environ), timeout=300)


def test_write_seg_and_write_rtstruct_cli(ct, tmp_path) -> None:
    grid = source_grid(ct)
    labels = _label_map(grid.shape)
    nib.save(nib.Nifti1Image(labels, grid.affine), tmp_path / "pred.nii.gz")
    manifest = dicomml.index(ct, tmp_path / "manifest")
    key = manifest.series.series_key.iloc[0]
    result = _dicomml(
        "write-seg",
        str(tmp_path / "pred.nii.gz"),
        "--manifest",
        str(manifest.path),
        "--series",
        key,
        "--label",
        "liver=1",
        "--label",
        "tumor=2",
        "--kind",
        "labelmap",
        "-o",
        str(tmp_path / "s.dcm"),
    )
    assert result.returncode == 0, result.stderr
    np.testing.assert_array_equal(_read_back(tmp_path / "s.dcm", grid), np.stack([labels == 1, labels == 2], axis=-1))
    (tmp_path / "labels.yaml").write_text("liver: {value: 1, codes: ['SCT:10200004']}\ntumor: 2\n")
    result = _dicomml(
        "write-rtstruct",
        str(tmp_path / "pred.nii.gz"),
        "--source",
        str(ct),
        "--label",
        str(tmp_path / "labels.yaml"),
        "-o",
        str(tmp_path / "rt.dcm"),
    )
    assert result.returncode == 0, result.stderr
    assert [roi.ROIName for roi in pydicom.dcmread(tmp_path / "rt.dcm").StructureSetROISequence] == ["liver", "tumor"]
    result = _dicomml("write-seg", str(tmp_path / "pred.nii.gz"), "--source", str(ct), "--label", "liver=1", "-o", str(tmp_path / "x.dcm"))
    assert result.returncode == 1 and result.stderr.strip().count("\n") == 0
    assert "label values [2]" in result.stderr


def test_label_map_seg_is_highdicoms_own_frame_for_frame(ct, tmp_path) -> None:
    """write_seg skips highdicom's comparisons for segments a plane lacks: the frames must be exactly highdicom's."""
    grid = source_grid(ct)
    labels = np.zeros(grid.shape, np.uint8)
    for value, (k, j) in enumerate([(2, 5), (6, 20), (12, 30), (18, 8), (20, 40)], start=1):
        labels[k : k + 3 + value, j : j + 6, 10 + 7 * value : 16 + 7 * value] = value
    names = {f"s{value}": value for value in range(1, 6)}
    ours = pydicom.dcmread(dicomml.write_seg(labels, ct, names, tmp_path / "ours.dcm", affine=grid.affine))
    direct = hd.seg.Segmentation(
        source_images=list(grid.datasets),
        pixel_array=labels,
        segmentation_type="BINARY",
        segment_descriptions=[hd.seg.SegmentDescription.from_dataset(item) for item in ours.SegmentSequence],
        series_instance_uid=hd.UID(),
        series_number=1,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="direct",
        manufacturer_model_name="direct",
        software_versions="0",
        device_serial_number="0",
    )

    def frames(seg) -> list[tuple[int, str]]:
        return [
            (
                int(item.SegmentIdentificationSequence[0].ReferencedSegmentNumber),
                str(item.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID),
            )
            for item in seg.PerFrameFunctionalGroupsSequence
        ]

    assert int(ours.NumberOfFrames) == int(direct.NumberOfFrames) < 5 * grid.shape[0]
    assert frames(ours) == frames(direct)
    assert ours.PixelData == direct.PixelData
