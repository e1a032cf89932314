"""Write 2D images with real-looking headers (DX, MG, CR, US, SC) with pydicom: for tests, benchmarks and demos.

The headers carry what radiographs, mammograms and ultrasound carry in the
field (Imager Pixel Spacing and magnification, Presentation LUT Shape,
laterality and View Code Sequence, ultrasound regions), so cases the test
files lack are written exactly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

__all__ = ["SOP_CLASSES", "code_item", "write_image2d", "write_seg2d"]

#: For-presentation SOP classes by modality.
SOP_CLASSES: dict[str, str] = {
    "DX": "1.2.840.10008.5.1.4.1.1.1.1",
    "MG": "1.2.840.10008.5.1.4.1.1.1.2",
    "CR": "1.2.840.10008.5.1.4.1.1.1",
    "IO": "1.2.840.10008.5.1.4.1.1.1.3",
    "US": "1.2.840.10008.5.1.4.1.1.6.1",
    "XA": "1.2.840.10008.5.1.4.1.1.12.1",
    "SC": "1.2.840.10008.5.1.4.1.1.7",
    "OT": "1.2.840.10008.5.1.4.1.1.7",
}


def code_item(value: str, scheme: str, meaning: str) -> Dataset:
    """One item of a code sequence (e.g. View Code Sequence)."""
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, scheme, meaning
    return item


def write_image2d(
    path: str | Path,
    pixels: np.ndarray,
    *,
    modality: str = "DX",
    photometric: str = "MONOCHROME2",
    bits_stored: int | None = None,
    transfer_syntax: str = ExplicitVRLittleEndian,
    study_uid: str | None = None,
    series_uid: str | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write one 2D image or cine loop.

    Parameters
    ----------
    path
        File to write.
    pixels
        ``(rows, columns)``, ``(frames, rows, columns)`` grey stored values
        (uint8/uint16/int16), or ``(..., 3)`` uint8 RGB.
    modality
        A key of :data:`SOP_CLASSES`.
    photometric
        Photometric Interpretation to declare.
    bits_stored
        Bits Stored (default: all allocated bits).
    transfer_syntax
        Explicit VR Little Endian, or a compressed syntax pydicom can encode
        (JPEG 2000, JPEG-LS, RLE), in which case the file is compressed.
    study_uid, series_uid
        UIDs to share between files (new ones by default).
    extra
        More elements by keyword (laterality, view, spacing, LUTs...).

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    pixels = np.asarray(pixels)
    colour = pixels.ndim >= 3 and pixels.shape[-1] == 3 and photometric != "MONOCHROME2" and photometric != "MONOCHROME1"
    frames = pixels.shape[0] if pixels.ndim == (4 if colour else 3) else 1
    rows, columns = pixels.shape[-3:-1] if colour else pixels.shape[-2:]
    bits = pixels.dtype.itemsize * 8
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = UID(SOP_CLASSES[modality])
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = SOP_CLASSES[modality]
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.SeriesInstanceUID = series_uid or generate_uid()
    ds.Modality = modality
    ds.PatientID = "SYNTH-2D"
    ds.PatientName = "Synthetic^TwoD"
    ds.StudyDate = "20240102"
    ds.StudyTime = "101500"
    ds.PatientBirthDate = ""  # Type 2 attributes of the patient and study modules, empty as exported
    ds.PatientSex = "O"
    ds.StudyID = "1"
    ds.AccessionNumber = ""
    ds.ReferringPhysicianName = ""
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.Manufacturer = "dicomml synthetic"
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.SamplesPerPixel = 3 if colour else 1
    ds.PhotometricInterpretation = photometric
    if colour:
        ds.PlanarConfiguration = 0
    ds.Rows, ds.Columns = int(rows), int(columns)
    ds.BitsAllocated = bits
    ds.BitsStored = bits_stored or bits
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 1 if pixels.dtype.kind == "i" else 0
    if frames > 1 or modality in ("US", "XA") and pixels.ndim == (4 if colour else 3):
        ds.NumberOfFrames = frames
    for keyword, value in (extra or {}).items():
        setattr(ds, keyword, value)
    ds.PixelData = np.ascontiguousarray(pixels).tobytes()
    ds.set_original_encoding(False, True)
    if transfer_syntax != ExplicitVRLittleEndian:
        ds.compress(transfer_syntax, np.ascontiguousarray(pixels))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def write_seg2d(image: str | Path, mask: np.ndarray, path: str | Path, *, label: str = "nodule") -> Path:
    """Write a binary DICOM SEG of one 2D image with highdicom (one segment, a nodule).

    Parameters
    ----------
    image
        The segmented image's file.
    mask
        ``(rows, columns)`` bool, on the image's stored pixels.
    path
        File to write.
    label
        The segment's label.

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    import highdicom as hd
    import pydicom
    from pydicom.sr.codedict import codes

    description = hd.seg.SegmentDescription(
        segment_number=1,
        segment_label=label,
        segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
        segmented_property_type=codes.SCT.Nodule,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL,
    )
    seg = hd.seg.Segmentation(
        source_images=[pydicom.dcmread(image)],
        pixel_array=np.asarray(mask, dtype=bool)[None],
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[description],
        series_instance_uid=hd.UID(),
        series_number=2,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="dicomml",
        manufacturer_model_name="test",
        software_versions="1",
        device_serial_number="1",
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    seg.save_as(path)
    return path
