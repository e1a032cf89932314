"""Reference grids for the mask tests, built from outside references.

The grids come from dcm2niix's NIfTI files (read by nibabel), from NRRD label
maps (pynrrd), from highdicom's own volumes, or from the image files' headers;
the masks are compared with those references after nibabel's axis alignment.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import nibabel as nib
import nrrd
import numpy as np
import pydicom
from nibabel.orientations import apply_orientation, inv_ornt_aff, io_orientation, ornt_transform

from dicomml.geometry import LPS_TO_RAS, analyze_stack, dicom_affine
from dicomml.volume import Volume


def nifti_grid(path: Path) -> Volume:
    """A Volume on the grid of a NIfTI file (its (x, y, z) order, nibabel's affine)."""
    image = nib.load(str(path))
    return Volume(np.zeros(image.shape[:3], np.int16), image.affine)


def header_grid(paths: Sequence[Path]) -> Volume:
    """A Volume on the (slice, row, column) grid of single-frame files, from their headers only."""
    headers = [pydicom.dcmread(p, stop_before_pixels=True) for p in paths]
    positions = np.array([h.ImagePositionPatient for h in headers], dtype=float)
    stack = analyze_stack(positions, headers[0].ImageOrientationPatient)
    first = positions[stack.order[0]]
    affine = dicom_affine(headers[0].ImageOrientationPatient, headers[0].PixelSpacing, first, stack.step)
    shape = (stack.n_positions, int(headers[0].Rows), int(headers[0].Columns))
    return Volume(np.zeros(shape, np.int16), affine)


def nrrd_labels(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """A NRRD label map and its RAS+ affine (pynrrd; space left-posterior-superior)."""
    array, header = nrrd.read(str(path))
    assert header["space"] == "left-posterior-superior"
    lps = np.eye(4)
    lps[:3, :3] = np.asarray(header["space directions"], dtype=float).T
    lps[:3, 3] = header["space origin"]
    return array, LPS_TO_RAS @ lps


def onto(array: np.ndarray, affine: np.ndarray, target_affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Permute and flip the last three axes of ``array`` into ``target_affine``'s axis codes (nibabel)."""
    transform = ornt_transform(io_orientation(affine), io_orientation(target_affine))
    lead = array.ndim - 3
    full = np.vstack([[[i, 1] for i in range(lead)], transform + [lead, 0]]) if lead else transform
    moved = apply_orientation(array, full)
    return moved, affine @ inv_ornt_aff(transform, array.shape[-3:])


def ct2_files() -> list[Path]:
    """pydicom's own test series dicomdirtests/77654033/CT2 (4 slices, a 202.5 mm gap)."""
    from pydicom.data import get_testdata_file

    folder = Path(get_testdata_file("dicomdirtests/77654033/CT2"))
    return sorted(folder.iterdir())


def regular_grid_over(paths: Sequence[Path], spacing: float) -> Volume:
    """The equidistant grid that spans single-frame files' slices at ``spacing`` mm (headers only)."""
    headers = [pydicom.dcmread(p, stop_before_pixels=True) for p in paths]
    positions = np.array([h.ImagePositionPatient for h in headers], dtype=float)
    stack = analyze_stack(positions, headers[0].ImageOrientationPatient)
    normal = stack.step / np.linalg.norm(stack.step)
    count = int(round((stack.offsets[-1] - stack.offsets[0]) / spacing)) + 1
    affine = dicom_affine(headers[0].ImageOrientationPatient, headers[0].PixelSpacing, positions[stack.order[0]], normal * spacing)
    return Volume(np.zeros((count, int(headers[0].Rows), int(headers[0].Columns)), np.int16), affine)


def write_seg(
    path: Path,
    source_images: list,
    pixel_array,
    segmentation_type: str,
    n_segments: int,
    **kwargs,
) -> Path:
    """Write a SEG with highdicom (segment i labelled ``f"segment {i}"``, property Tissue)."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=i,
            segment_label=f"segment {i}",
            segmented_property_category=codes.SCT.Tissue,
            segmented_property_type=codes.SCT.Tissue,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL,
        )
        for i in range(1, n_segments + 1)
    ]
    seg = hd.seg.Segmentation(
        source_images=source_images,
        pixel_array=pixel_array,
        segmentation_type=segmentation_type,
        segment_descriptions=descriptions,
        series_instance_uid=hd.UID(),
        series_number=99,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="dicomml tests",
        manufacturer_model_name="none",
        software_versions="0",
        device_serial_number="0",
        **kwargs,
    )
    seg.save_as(path)
    return path


def write_ct(folder: Path, shape: tuple[int, int, int], spacing: float, *, seed: int = 0) -> list[Path]:
    """An axial CT (HFS, LPS+ tags) of ``shape`` (slices, rows, columns) with cubic ``spacing`` mm voxels."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    uid = lambda *parts: generate_uid(entropy_srcs=["dicomml-tests-ct", str(seed), *map(str, parts)])  # noqa: E731
    rng = np.random.default_rng(seed)
    paths = []
    for k in range(shape[0]):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = CTImageStorage
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = uid("image", k)
        ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = "Test^CT", "CT-1", "19700101", "O"
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = uid("study"), uid("series"), uid("for")
        ds.StudyDate = ds.SeriesDate = "20260101"
        ds.StudyTime = ds.SeriesTime = "090000"
        ds.StudyID, ds.AccessionNumber, ds.ReferringPhysicianName = "1", "A1", ""
        ds.Modality, ds.SeriesNumber, ds.InstanceNumber, ds.Manufacturer = "CT", 2, shape[0] - k, "tests"
        ds.PatientPosition = "HFS"
        ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
        ds.ImagePositionPatient = [-20.0, -25.0, 40.0 - k * spacing]  # written feet to head by InstanceNumber
        ds.PixelSpacing = [spacing, spacing]
        ds.SliceThickness = spacing
        ds.Rows, ds.Columns = shape[1], shape[2]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        ds.RescaleIntercept, ds.RescaleSlope = -1024.0, 1.0
        ds.PixelData = rng.integers(0, 4096, shape[1:], dtype=np.uint16).tobytes()
        path = folder / f"IM{k:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def to_sitk(array: np.ndarray, affine: np.ndarray):
    """A SimpleITK image of an (i, j, k) array whose affine maps indices to RAS+ mm (SimpleITK is LPS+)."""
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(np.ascontiguousarray(array))  # SimpleITK's x is the array's last axis
    lps = (LPS_TO_RAS @ np.asarray(affine, dtype=float))[:3]
    columns = lps[:, :3][:, ::-1]
    spacing = np.linalg.norm(columns, axis=0)
    image.SetOrigin(lps[:, 3].tolist())
    image.SetSpacing(spacing.tolist())
    image.SetDirection((columns / spacing).ravel().tolist())
    return image


def dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    return float(2 * np.count_nonzero(a & b) / max(np.count_nonzero(a) + np.count_nonzero(b), 1))


def write_annotated_series(folder: Path) -> dict[str, Path]:
    """A CT with five annotations that name the same structures differently, and one broken RTSTRUCT.

    ``seg_a``: segment "Liver" coded SCT:10200004; ``seg_b``: "LIVER" coded
    SRT:T-62000 (the retired code) and "Tumour"; ``seg_c``: "leber", not
    coded, written a day later; each SEG by its own creator and series
    number (``Expert^A``/50, ``Expert^B``/51, ``Resident^C``/52); ``rt_good``: ROI "liver"; ``rt_bad``: a
    contour 50 mm below the CT. The liver is the same ellipse in all of them.
    """
    import highdicom as hd
    from pydicom.sr.coding import Code

    import dicomml

    files = write_ct(folder / "ct", (6, 40, 40), 1.0, seed=7)
    sources = [pydicom.dcmread(p) for p in files]
    grid = header_grid(files)
    rows, columns = np.mgrid[:40, :40]
    liver = np.zeros(grid.spatial_shape, np.uint8)
    liver[1:5][:, np.hypot(rows - 20, columns - 18) < 9] = 1
    tumor = np.zeros_like(liver)
    tumor[2:4][:, np.hypot(rows - 20, columns - 18) < 3] = 1

    def seg(name: str, segments: list[tuple[str, Code]], masks: list[np.ndarray], date: str, creator: str, number: int) -> Path:
        descriptions = [
            hd.seg.SegmentDescription(
                segment_number=i,
                segment_label=label,
                segmented_property_category=Code("91723000", "SCT", "Anatomical Structure"),
                segmented_property_type=code,
                algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL,
            )
            for i, (label, code) in enumerate(segments, start=1)
        ]
        order = np.argsort([float(ds.ImagePositionPatient[2]) for ds in sources])
        ordered = [sources[i] for i in order]  # header_grid's slice order: along the normal
        pixels = np.stack(masks, axis=-1)
        out = hd.seg.Segmentation(
            source_images=ordered,
            pixel_array=pixels,
            segmentation_type="BINARY",
            segment_descriptions=descriptions,
            series_instance_uid=hd.UID(),
            series_number=number,
            sop_instance_uid=hd.UID(),
            instance_number=1,
            content_creator_name=creator,
            manufacturer="tests",
            manufacturer_model_name="none",
            software_versions="0",
            device_serial_number="0",
            series_description=name,
            series_date=datetime.date.fromisoformat(date),
            series_time=datetime.time(10, 0),
        )
        path = folder / f"{name}.dcm"
        out.save_as(path)
        return path

    import datetime

    sct_liver = Code("10200004", "SCT", "Liver")
    paths = {
        "seg_a": seg("seg_a", [("Liver", sct_liver)], [liver], "2026-01-01", "Expert^A", 50),
        "seg_b": seg(
            "seg_b",
            [("LIVER", Code("T-62000", "SRT", "Liver")), ("Tumour", Code("108369006", "SCT", "Neoplasm"))],
            [liver, tumor],
            "2026-01-02",
            "Expert^B",
            51,
        ),
        "seg_c": seg("seg_c", [("leber", Code("85756007", "SCT", "Tissue"))], [liver], "2026-01-03", "Resident^C", 52),
    }
    paths["rt_good"] = dicomml.write_rtstruct(liver, files, {"liver": 1}, folder / "rt_good.dcm", affine=grid.affine)
    bad = pydicom.dcmread(paths["rt_good"])
    for contour in bad.ROIContourSequence[0].ContourSequence:
        points = np.asarray(contour.ContourData, float).reshape(-1, 3)
        points[:, 2] -= 50.0
        contour.ContourData = [f"{v:.4f}" for v in points.ravel()]
    bad.SOPInstanceUID = bad.file_meta.MediaStorageSOPInstanceUID = hd.UID()
    bad.save_as(folder / "rt_bad.dcm")
    paths["rt_bad"] = folder / "rt_bad.dcm"
    paths["liver"], paths["tumor"] = liver, tumor  # type: ignore[assignment]
    return paths
