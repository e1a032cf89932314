"""Write the synthetic sample study: an axial CT, a DICOM SEG on it and a sagittal MR.

Files are real DICOM written with pydicom (the SEG with highdicom), with the
headers a scanner would write: UIDs, patient and study modules, geometry
(ImagePositionPatient, ImageOrientationPatient, PixelSpacing), rescale and
window. Everything is seeded, so two runs give the same pixels and UIDs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sr.codedict import codes
from pydicom.uid import UID, CTImageStorage, ExplicitVRLittleEndian, MRImageStorage, generate_uid

from dicomml._optional import require
from dicomml.errors import OutputError
from dicomml.geometry.affine import dicom_affine
from dicomml.paths import atomic_output, os_reason
from dicomml.sample.phantom import LABELS, TISSUES, label_at, tissue_at, voxel_centres

if TYPE_CHECKING:
    import highdicom as hd
else:  # optional: the [seg] extra
    hd = require("highdicom", extra="seg", feature="the sample study (its DICOM SEG)")

__all__ = ["SampleStudy", "write_sample_study"]

_STUDY_DATE = "20260101"
_STUDY_TIME = "093000"


@dataclass(frozen=True)
class SampleStudy:
    """Where :func:`write_sample_study` put the files, and their series UIDs.

    Attributes
    ----------
    root
        The folder given.
    ct, mr
        The CT (axial, head first supine) and MR (sagittal) slice files, in
        InstanceNumber order (the CT's runs head to feet, the MR's right to left).
    seg
        The DICOM SEG (segments ``1: lesion``, ``2: liver``) over the CT.
    ct_series_uid, mr_series_uid, seg_series_uid
        SeriesInstanceUID of each series.
    """

    root: Path
    ct: tuple[Path, ...]
    mr: tuple[Path, ...]
    seg: Path
    ct_series_uid: str
    mr_series_uid: str
    seg_series_uid: str


@dataclass(frozen=True)
class _Stack:
    """Geometry of one series: LPS+ tags and the number of slices."""

    orientation: tuple[float, ...]
    pixel_spacing: tuple[float, float]
    first_position: tuple[float, float, float]
    slice_step: tuple[float, float, float]
    n_slices: int
    rows: int
    columns: int

    def position(self, k: int) -> list[float]:
        return [float(o + k * s) for o, s in zip(self.first_position, self.slice_step)]

    def affine(self) -> np.ndarray:
        return dicom_affine(self.orientation, self.pixel_spacing, self.first_position, self.slice_step)

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.n_slices, self.rows, self.columns)


# CT: 80 axial slices of 128 x 128, 2 mm pixels, 2.5 mm apart, written head to feet.
_CT = _Stack((1, 0, 0, 0, 1, 0), (2.0, 2.0), (-127.0, -127.0, 98.75), (0.0, 0.0, -2.5), 80, 128, 128)
# MR: 28 sagittal slices of 128 x 128 (rows run posterior, columns inferior), 5 mm apart, right to left.
_MR = _Stack((0, 1, 0, 0, 0, -1), (2.0, 2.0), (-67.5, -127.0, 127.0), (5.0, 0.0, 0.0), 28, 128, 128)


def _uid(seed: int, *parts: object) -> UID:
    return generate_uid(entropy_srcs=["dicomml-sample", str(seed), *map(str, parts)])


def _patient_study(seed: int) -> Dataset:
    ds = Dataset()
    ds.PatientName = "Phantom^Sample"
    ds.PatientID = f"DICOMML-SAMPLE-{seed}"
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "O"
    ds.PatientAge = "056Y"
    ds.StudyInstanceUID = _uid(seed, "study")
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = _STUDY_DATE
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = _STUDY_TIME
    ds.StudyID = "1"
    ds.AccessionNumber = f"ACC{seed:06d}"
    ds.ReferringPhysicianName = "Referrer^Sample"
    ds.StudyDescription = "CHEST ABDOMEN sample (synthetic)"
    ds.InstitutionName = "dicomml sample hospital"
    ds.Manufacturer = "dicomml"
    ds.ManufacturerModelName = "sample phantom"
    ds.SoftwareVersions = "1"
    ds.DeviceSerialNumber = "0001"
    ds.FrameOfReferenceUID = _uid(seed, "frame-of-reference")
    ds.PositionReferenceIndicator = "XY"
    ds.PatientPosition = "HFS"
    ds.BodyPartExamined = "CHEST"
    return ds


def _slice(common: Dataset, stack: _Stack, k: int, pixels: np.ndarray, sop_class: UID, series_uid: str, seed: int, role: str) -> Dataset:
    ds = Dataset()
    ds.update(common)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = _uid(seed, role, k)
    ds.SeriesInstanceUID = series_uid
    ds.InstanceNumber = k + 1
    ds.AcquisitionNumber = 1
    ds.ImagePositionPatient = stack.position(k)
    ds.ImageOrientationPatient = [float(v) for v in stack.orientation]
    normal = np.cross(stack.orientation[:3], stack.orientation[3:])
    ds.SliceLocation = float(np.dot(normal, stack.position(k)))
    ds.PixelSpacing = list(stack.pixel_spacing)
    ds.Rows, ds.Columns = stack.rows, stack.columns
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = np.ascontiguousarray(pixels, dtype="<u2").tobytes()
    return ds


def _ct_series(seed: int, rng: np.random.Generator, common: Dataset) -> list[Dataset]:
    tissue = tissue_at(voxel_centres(_CT.affine(), _CT.shape))
    hu = np.take([t.hu for t in TISSUES], tissue) + rng.normal(0.0, 12.0, _CT.shape)
    stored = np.clip(np.rint(hu) + 1024, 0, 4095).astype(np.uint16)
    series_uid = _uid(seed, "ct-series")
    out = []
    for k in range(_CT.n_slices):
        ds = _slice(common, _CT, k, stored[k], CTImageStorage, series_uid, seed, "ct")
        ds.Modality = "CT"
        ds.SeriesNumber = 2
        ds.SeriesDescription = "CT chest abdomen 2.5mm"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.SliceThickness = 2.5
        ds.KVP = 120
        ds.XRayTubeCurrent = 200
        ds.ConvolutionKernel = "STANDARD"
        ds.GantryDetectorTilt = 0.0
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = -1024.0, 1.0, "HU"
        ds.WindowCenter, ds.WindowWidth = 40.0, 400.0
        out.append(ds)
    return out


def _mr_series(seed: int, rng: np.random.Generator, common: Dataset) -> list[Dataset]:
    tissue = tissue_at(voxel_centres(_MR.affine(), _MR.shape))
    signal = np.take([t.mr for t in TISSUES], tissue)
    # Magnitude of a complex signal with Gaussian noise, as MR magnitude images are (Rician).
    noisy = np.hypot(signal + rng.normal(0.0, 20.0, _MR.shape), rng.normal(0.0, 20.0, _MR.shape))
    stored = np.clip(np.rint(noisy), 0, 4095).astype(np.uint16)
    series_uid = _uid(seed, "mr-series")
    out = []
    for k in range(_MR.n_slices):
        ds = _slice(common, _MR, k, stored[k], MRImageStorage, series_uid, seed, "mr")
        ds.Modality = "MR"
        ds.SeriesNumber = 3
        ds.SeriesDescription = "T1 SE sagittal"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "ND"]
        ds.SliceThickness = ds.SpacingBetweenSlices = 5.0
        ds.ScanningSequence, ds.SequenceVariant, ds.ScanOptions = "SE", "NONE", ""
        ds.MRAcquisitionType = "2D"
        ds.RepetitionTime, ds.EchoTime, ds.EchoNumbers = 500.0, 12.0, 1
        ds.MagneticFieldStrength = 1.5
        ds.ImagingFrequency = 63.87
        ds.WindowCenter, ds.WindowWidth = 500.0, 1000.0
        out.append(ds)
    return out


def _seg(seed: int, ct: Sequence[Dataset]) -> hd.seg.Segmentation:
    labels = label_at(voxel_centres(_CT.affine(), _CT.shape))
    property_type = {"lesion": codes.SCT.Neoplasm, "liver": codes.SCT.Liver}
    category = {"lesion": codes.SCT.MorphologicallyAbnormalStructure, "liver": codes.SCT.AnatomicalStructure}
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=number,
            segment_label=name,
            segmented_property_category=category[name],
            segmented_property_type=property_type[name],
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL,
        )
        for number, name in LABELS.items()
    ]
    seg = hd.seg.Segmentation(
        source_images=list(ct),
        pixel_array=labels,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=_uid(seed, "seg-series"),
        series_number=100,
        sop_instance_uid=_uid(seed, "seg"),
        instance_number=1,
        manufacturer="dicomml",
        manufacturer_model_name="sample phantom",
        software_versions="1",
        device_serial_number="0001",
        series_description="Lesion and liver (synthetic)",
        content_label="SAMPLE",
    )
    # highdicom stamps the current time and a fresh dimension UID; keep the output reproducible.
    for kind in ("Series", "Content", "InstanceCreation"):
        setattr(seg, f"{kind}Date", _STUDY_DATE)
        setattr(seg, f"{kind}Time", _STUDY_TIME)
    for item in seg.get("ContributingEquipmentSequence", []):
        item.ContributionDateTime = _STUDY_DATE + _STUDY_TIME
    dimension_uid = _uid(seed, "seg-dimension-organization")
    for item in (*seg.DimensionOrganizationSequence, *seg.DimensionIndexSequence):
        item.DimensionOrganizationUID = dimension_uid
    return seg


def write_sample_study(directory: str | Path, *, seed: int = 0) -> SampleStudy:
    """Write a small synthetic study: an axial CT, a SEG on it and a sagittal MR.

    The phantom is a torso (fat, muscle, two lungs, heart, liver, spine) with a
    12 mm lesion in the right lung; CT and MR share one frame of reference and
    show it at the same patient coordinates. Stored CT values are
    ``HU + 1024`` (RescaleIntercept -1024, 12 bits). About 3.5 MB in all.

    Parameters
    ----------
    directory
        Folder to write into (created if absent); files go to ``CT/``, ``MR/``
        and ``SEG/`` under it, replacing files of the same names.
    seed
        Seeds the noise and the UIDs: the same seed gives the same files.

    Returns
    -------
    SampleStudy
        The paths written and the series UIDs.

    Raises
    ------
    OutputError
        If a folder or file cannot be written (naming it).

    Examples
    --------
    >>> study = write_sample_study(tmp_path)  # doctest: +SKIP
    >>> len(study.ct), len(study.mr), study.seg.name  # doctest: +SKIP
    (80, 28, 'seg.dcm')
    """
    root = Path(directory)
    rng = np.random.default_rng(seed)
    common = _patient_study(seed)
    ct = _ct_series(seed, rng, common)
    mr = _mr_series(seed, rng, common)
    seg = _seg(seed, ct)
    paths: dict[str, list[Path]] = {}
    for folder, datasets in (("CT", ct), ("MR", mr), ("SEG", [seg])):
        try:
            (root / folder).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(
                f"{root / folder}: cannot be created ({os_reason(exc)}); choose another folder", path=str(root / folder)
            ) from exc
        paths[folder] = []
        for ds in datasets:
            name = "seg.dcm" if folder == "SEG" else f"{folder}{ds.InstanceNumber:04d}.dcm"
            path = root / folder / name
            with atomic_output(path) as tmp:
                ds.save_as(tmp, enforce_file_format=True)
            paths[folder].append(path)
    return SampleStudy(
        root=root,
        ct=tuple(paths["CT"]),
        mr=tuple(paths["MR"]),
        seg=paths["SEG"][0],
        ct_series_uid=str(ct[0].SeriesInstanceUID),
        mr_series_uid=str(mr[0].SeriesInstanceUID),
        seg_series_uid=str(seg.SeriesInstanceUID),
    )
