"""RTSTRUCT contours on 2D images become masks in the image's pixel grid (rt-utils and scikit-image as references)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

import dicomml
from dicomml.errors import SegReferenceError
from dicomml.imaging2d import ImageConfig, ImageDataset
from dicomml.imaging2d.masks import rtstruct_masks
from dicomml.imaging2d.synthetic import write_image2d

_RTSTRUCT = "1.2.840.10008.5.1.4.1.1.481.3"
_NONE = ImageConfig(size=None, resize="none")


def _disk(shape: tuple[int, int], centre: tuple[float, float], radius: float) -> np.ndarray:
    rows, columns = np.mgrid[: shape[0], : shape[1]]
    return (rows - centre[0]) ** 2 + (columns - centre[1]) ** 2 <= radius**2


def test_contours_on_an_image_plane_match_rt_utils(tmp_path: Path) -> None:
    rt_utils = pytest.importorskip("rt_utils")
    shape = (64, 64)  # square: rt-utils builds its masks columns-first
    series = tmp_path / "image"
    image = write_image2d(
        series / "sc.dcm",
        np.random.default_rng(0).integers(0, 1000, shape, dtype=np.uint16),
        modality="SC",
        extra={
            "ImagePositionPatient": [-20.0, 7.5, 42.0],
            "ImageOrientationPatient": [1, 0, 0, 0, 0, -1],  # a coronal plane: rows run down the patient
            "PixelSpacing": [0.5, 0.5],
            "FrameOfReferenceUID": generate_uid(),
            "SeriesDescription": "coronal capture",
        },
    )
    drawn = {"lesion": _disk(shape, (20, 40), 9), "organ": np.zeros(shape, bool)}
    drawn["organ"][30:55, 8:30] = True
    rt = rt_utils.RTStructBuilder.create_new(dicom_series_path=str(series))
    for name, mask in drawn.items():
        rt.add_roi(mask=mask[:, :, None], name=name, approximate_contours=False)
    rt.save(str(tmp_path / "rt.dcm"))
    reference = rt_utils.RTStructBuilder.create_from(str(series), str(tmp_path / "rt.dcm"))
    expected = np.stack([reference.get_roi_mask_by_name(name)[:, :, 0] for name in drawn]).astype(np.uint8)
    assert expected.sum() > 0

    dicomml.index(tmp_path, tmp_path / "manifest", workers=1, progress=False)
    sample = ImageDataset(tmp_path / "manifest", None, _NONE, masks=True)[0]
    assert sample["meta"]["path"] == str(image)
    assert sample["meta"]["mask_labels"] == list(drawn)
    np.testing.assert_array_equal(sample["mask"].numpy(), expected)
    np.testing.assert_array_equal(expected.astype(bool), np.stack(list(drawn.values())))  # rt-utils kept the drawing


def _contour(points_xy: np.ndarray, image_uid: str, sop_class: str) -> Dataset:
    item = Dataset()
    ref = Dataset()
    ref.ReferencedSOPClassUID, ref.ReferencedSOPInstanceUID = sop_class, image_uid
    item.ContourImageSequence = Sequence([ref])
    item.ContourGeometricType = "CLOSED_PLANAR"
    item.NumberOfContourPoints = len(points_xy)
    item.ContourData = [float(v) for xy in points_xy for v in (*xy, 0.0)]
    return item


def _write_projection_rtstruct(path: Path, image: Dataset, contours: dict[str, list[Dataset]]) -> Path:
    """An RT Structure Set written with pydicom whose contours name a projection image."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = _RTSTRUCT
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID, ds.SOPInstanceUID = _RTSTRUCT, ds.file_meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.StructureSetLabel = "RTSTRUCT", "projection"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = image.StudyInstanceUID, generate_uid()
    ds.PatientID, ds.PatientName = image.PatientID, image.PatientName
    frame = generate_uid()
    ref = Dataset()
    ref.ReferencedSOPClassUID, ref.ReferencedSOPInstanceUID = image.SOPClassUID, image.SOPInstanceUID
    series = Dataset()
    series.SeriesInstanceUID, series.ContourImageSequence = image.SeriesInstanceUID, Sequence([ref])
    study = Dataset()
    study.ReferencedSOPInstanceUID, study.RTReferencedSeriesSequence = image.StudyInstanceUID, Sequence([series])
    frame_item = Dataset()
    frame_item.FrameOfReferenceUID, frame_item.RTReferencedStudySequence = frame, Sequence([study])
    ds.ReferencedFrameOfReferenceSequence = Sequence([frame_item])
    rois, roi_contours = [], []
    for number, (name, items) in enumerate(contours.items(), start=1):
        roi = Dataset()
        roi.ROINumber, roi.ROIName, roi.ReferencedFrameOfReferenceUID, roi.ROIGenerationAlgorithm = number, name, frame, "MANUAL"
        rois.append(roi)
        roi_contour = Dataset()
        roi_contour.ReferencedROINumber, roi_contour.ContourSequence = number, Sequence(items)
        roi_contours.append(roi_contour)
    ds.StructureSetROISequence, ds.ROIContourSequence = Sequence(rois), Sequence(roi_contours)
    ds.save_as(path, enforce_file_format=True)
    return path


def test_projection_contours_are_pixel_positions_as_scikit_image_fills_them(tmp_path: Path) -> None:
    draw = pytest.importorskip("skimage.draw")
    import pydicom

    shape = (80, 60)
    path = write_image2d(
        tmp_path / "dx.dcm",
        np.random.default_rng(1).integers(0, 4096, shape, dtype=np.uint16),
        modality="DX",
        bits_stored=12,
        extra={"ImagerPixelSpacing": [0.15, 0.15], "ViewPosition": "PA", "PatientOrientation": ["R", "F"]},
    )
    image = pydicom.dcmread(path, stop_before_pixels=True)
    # vertices off the pixel centres (x.5 / x.3), so no centre lies on an edge and every rasterizer agrees
    nodule = np.array([[10.5, 12.3], [40.5, 8.5], [52.3, 30.5], [30.5, 60.5], [8.5, 40.5]])  # (x = column, y = row)
    square, hole = (
        np.array([[5.5, 62.5], [25.5, 62.5], [25.5, 77.5], [5.5, 77.5]]),
        np.array([[10.5, 66.5], [18.5, 66.5], [18.5, 72.5], [10.5, 72.5]]),
    )
    other_image = _contour(np.array([[1.5, 1.5], [50.5, 1.5], [50.5, 70.5]]), generate_uid(), image.SOPClassUID)
    rt = _write_projection_rtstruct(
        tmp_path / "rt.dcm",
        image,
        {
            "nodule": [_contour(nodule, image.SOPInstanceUID, image.SOPClassUID), other_image],
            "ring": [_contour(square, image.SOPInstanceUID, image.SOPClassUID), _contour(hole, image.SOPInstanceUID, image.SOPClassUID)],
        },
    )
    ring = draw.polygon2mask(shape, square[:, ::-1]) & ~draw.polygon2mask(shape, hole[:, ::-1])
    expected = np.stack([draw.polygon2mask(shape, nodule[:, ::-1]), ring]).astype(np.uint8)

    masks, labels = rtstruct_masks(str(rt), image, shape)
    assert labels == ["nodule", "ring"]
    np.testing.assert_array_equal(masks, expected)

    dicomml.index(tmp_path, tmp_path / "manifest", workers=1, progress=False)
    sample = ImageDataset(tmp_path / "manifest", tmp_path / "cache", ImageConfig(size=None, resize="none", display="chest"), masks=True)[0]
    assert sample["meta"]["flips"] == ["horizontal"]  # rows ran to the patient's right (R\\F); chest puts it on the left
    np.testing.assert_array_equal(sample["mask"].numpy(), expected[:, :, ::-1])


def test_a_contour_off_the_image_plane_is_refused(tmp_path: Path) -> None:
    import pydicom

    path = write_image2d(
        tmp_path / "sc.dcm",
        np.zeros((16, 16), np.uint16),
        modality="SC",
        extra={"ImagePositionPatient": [0.0, 0.0, 0.0], "ImageOrientationPatient": [1, 0, 0, 0, 1, 0], "PixelSpacing": [1.0, 1.0]},
    )
    image = pydicom.dcmread(path, stop_before_pixels=True)
    item = _contour(np.array([[2.0, 2.0], [8.0, 2.0], [8.0, 8.0]]), image.SOPInstanceUID, image.SOPClassUID)
    item.ContourData = [v if i % 3 != 2 else 5.0 for i, v in enumerate(item.ContourData)]  # 5 mm above the axial plane
    rt = _write_projection_rtstruct(tmp_path / "rt.dcm", image, {"off": [item]})
    with pytest.raises(SegReferenceError, match=r"5\.00 mm off its plane"):
        rtstruct_masks(str(rt), image, (16, 16))


@pytest.mark.parametrize("series_only", [False, True], ids=["images-listed-once", "series-only"])
def test_contours_without_contour_image_sequence_are_matched_by_plane(tmp_path: Path, series_only: bool) -> None:
    """rt-utils draws on two parallel images; with every contour's Contour Image Sequence removed (and, series-only,
    the structure set's own list of images too) each image still gets exactly its own contours, as rt-utils reads them
    from the referenced original."""
    rt_utils = pytest.importorskip("rt_utils")
    import pydicom

    shape, series_uid, frame = (64, 64), generate_uid(), generate_uid()
    data = tmp_path / "data"
    for k, y in enumerate((7.5, 9.5)):  # two coronal planes 2 mm apart; half a pixel is 0.25 mm
        write_image2d(
            data / "image" / f"sc{k}.dcm",
            np.random.default_rng(k).integers(0, 1000, shape, dtype=np.uint16),
            modality="SC",
            extra={
                "SeriesInstanceUID": series_uid,
                "ImagePositionPatient": [-20.0, y, 42.0],
                "ImageOrientationPatient": [1, 0, 0, 0, 0, -1],
                "PixelSpacing": [0.5, 0.5],
                "FrameOfReferenceUID": frame,
                "InstanceNumber": k + 1,
            },
        )
    drawn = {"lesion": np.zeros((*shape, 2), bool), "organ": np.zeros((*shape, 2), bool)}
    drawn["lesion"][..., 0] = _disk(shape, (20, 40), 9)
    drawn["lesion"][..., 1] = _disk(shape, (44, 20), 6)
    drawn["organ"][30:55, 8:30, 1] = True
    rt = rt_utils.RTStructBuilder.create_new(dicom_series_path=str(data / "image"))
    for name, mask in drawn.items():
        rt.add_roi(mask=mask, name=name, approximate_contours=False)
    original = tmp_path / "original" / "rt.dcm"
    original.parent.mkdir()
    rt.save(str(original))
    reference = rt_utils.RTStructBuilder.create_from(str(data / "image"), str(original))
    expected = {
        str(image.SOPInstanceUID): np.stack([reference.get_roi_mask_by_name(name)[:, :, k] for name in drawn]).astype(np.uint8)
        for k, image in enumerate(reference.series_data)
    }
    assert all(mask.sum() > 0 for mask in expected.values())

    stripped = pydicom.dcmread(original)
    for roi in stripped.ROIContourSequence:
        for item in roi.ContourSequence:
            del item.ContourImageSequence
    if series_only:
        for frame_item in stripped.ReferencedFrameOfReferenceSequence:
            for study in frame_item.RTReferencedStudySequence:
                for series in study.RTReferencedSeriesSequence:
                    del series.ContourImageSequence
    stripped.save_as(data / "rt.dcm")
    dicomml.index(data, tmp_path / "manifest", workers=1, progress=False)
    dataset = ImageDataset(tmp_path / "manifest", None, _NONE, masks=True)
    assert len(dataset) == 2
    for sample in dataset:
        assert sample["meta"]["mask_labels"] == list(drawn)
        np.testing.assert_array_equal(sample["mask"].numpy(), expected[sample["meta"]["sop_instance_uid"]])


def test_a_projection_image_takes_no_contour_that_names_no_image(tmp_path: Path) -> None:
    import pydicom

    path = write_image2d(tmp_path / "dx.dcm", np.zeros((40, 30), np.uint16), modality="DX", extra={"ImagerPixelSpacing": [0.15, 0.15]})
    image = pydicom.dcmread(path, stop_before_pixels=True)
    square = np.array([[5.5, 5.5], [20.5, 5.5], [20.5, 25.5], [5.5, 25.5]])
    unnamed = _contour(square, image.SOPInstanceUID, image.SOPClassUID)
    del unnamed.ContourImageSequence
    rtstruct = _write_projection_rtstruct(
        tmp_path / "rt.dcm", image, {"named": [_contour(square, image.SOPInstanceUID, image.SOPClassUID)], "unnamed": [unnamed]}
    )
    masks, labels = rtstruct_masks(str(rtstruct), image, (40, 30))
    assert labels == ["named", "unnamed"]
    assert masks[0].sum() > 0 and masks[1].sum() == 0
