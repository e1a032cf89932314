"""Write small, valid DICOM series with pydicom (classic slices, an Enhanced MR object): for tests, benchmarks and demos.

Real scanners' files are in the test corpus; these cover the cases it lacks
(a given gap, tilt, time series, shuffled order, malformed tag) with geometry
known exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import UID, CTImageStorage, ExplicitVRLittleEndian, MRImageStorage, generate_uid

__all__ = ["one_item", "write_enhanced_mr", "write_slice", "write_series"]

ENHANCED_MR = UID("1.2.840.10008.5.1.4.1.1.4.1")


def write_slice(
    path: str | Path,
    pixels: np.ndarray,
    *,
    position: Sequence[float],
    orientation: Sequence[float] = (1, 0, 0, 0, 1, 0),
    pixel_spacing: Sequence[float] = (1.0, 1.0),
    series_uid: str,
    instance: int = 1,
    modality: str = "CT",
    rescale: tuple[float, float] | None = (1.0, -1024.0),
    extra: dict[str, object] | None = None,
) -> Path:
    """Write one single-frame image (CT or MR Image Storage, Explicit VR LE).

    Parameters
    ----------
    path
        File to write.
    pixels
        (rows, columns) uint16 or int16 stored values.
    position, orientation, pixel_spacing
        ImagePositionPatient (LPS+ mm), ImageOrientationPatient, PixelSpacing (mm).
    series_uid
        SeriesInstanceUID shared by the series.
    instance
        InstanceNumber.
    modality
        ``"CT"`` or ``"MR"``.
    rescale
        (slope, intercept), or None to leave the rescale tags out.
    extra
        More elements by keyword, e.g. ``{"EchoNumbers": 2}``.

    Returns
    -------
    pathlib.Path
        ``path``.

    Examples
    --------
    >>> write_slice(tmp / "a.dcm", np.zeros((4, 4), np.uint16), position=(0, 0, 0), series_uid="1.2.3")  # doctest: +SKIP
    """
    pixels = np.ascontiguousarray(pixels)
    ds = _instance(CTImageStorage if modality == "CT" else MRImageStorage)
    ds.Modality = modality
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.StudyInstanceUID = generate_uid(entropy_srcs=[series_uid, "study"])
    ds.SeriesInstanceUID = series_uid
    ds.FrameOfReferenceUID = generate_uid(entropy_srcs=[series_uid, "frame of reference"])
    ds.PatientID = "SYNTHETIC"
    ds.InstanceNumber = instance
    ds.ImagePositionPatient = [float(v) for v in position]
    ds.ImageOrientationPatient = [float(v) for v in orientation]
    ds.PixelSpacing = [float(v) for v in pixel_spacing]
    ds.SliceThickness = 1.0
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1 if pixels.dtype.kind == "i" else 0
    if rescale is not None:
        ds.RescaleSlope, ds.RescaleIntercept = rescale
    for keyword, value in (extra or {}).items():
        setattr(ds, keyword, value)
    ds.PixelData = pixels.astype("<i2" if pixels.dtype.kind == "i" else "<u2").tobytes()
    ds.save_as(path, enforce_file_format=True)
    return Path(path)


def write_series(
    folder: str | Path,
    volume: np.ndarray,
    *,
    positions: np.ndarray | None = None,
    spacing: float = 2.0,
    series_uid: str | None = None,
    shuffle: int | None = None,
    **kwargs: object,
) -> list[Path]:
    """Write a stack of slices, one file each, with known geometry.

    Parameters
    ----------
    folder
        Folder to write into (created).
    volume
        (slices, rows, columns) stored values.
    positions
        (slices, 3) ImagePositionPatient, LPS+ mm; default ``(0, 0, k * spacing)``.
    spacing
        Slice step in mm when ``positions`` is not given.
    series_uid
        SeriesInstanceUID; a new one by default.
    shuffle
        Seed that permutes file names and InstanceNumbers against position;
        None keeps them in position order.
    **kwargs
        Passed to :func:`write_slice`.

    Returns
    -------
    list of pathlib.Path
        The files, in position order.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    n = volume.shape[0]
    if positions is None:
        positions = np.array([[0.0, 0.0, k * spacing] for k in range(n)])
    uid = series_uid or generate_uid()
    names = np.arange(n) if shuffle is None else np.random.default_rng(shuffle).permutation(n)
    return [
        write_slice(
            folder / f"IM{names[k]:05d}.dcm",
            volume[k],
            position=positions[k],
            series_uid=uid,
            instance=int(names[k]) + 1,
            **kwargs,  # type: ignore[arg-type]
        )
        for k in range(n)
    ]


def _instance(sop_class: UID) -> Dataset:
    """An empty instance of ``sop_class`` with its file meta (a new SOP Instance UID, Explicit VR Little Endian)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, meta.MediaStorageSOPInstanceUID
    return ds


def one_item(**elements: object) -> DicomSequence:
    """A sequence of one item holding ``elements`` (keyword = value), as a functional group macro is."""
    holder = Dataset()
    for keyword, value in elements.items():
        setattr(holder, keyword, value)
    return DicomSequence([holder])


def write_enhanced_mr(
    path: str | Path,
    frames: Sequence[tuple[int, int]],
    frame_groups: Callable[[int, Dataset], None] | None = None,
    header: Mapping[str, object] | None = None,
) -> Path:
    """Write one Enhanced MR object (Philips-like headers, no TemporalPositionIndex) of 4 x 4 frames.

    Parameters
    ----------
    path
        File to write.
    frames
        (volume, slice) of each frame, in file order; slices are 5 mm apart,
        and each frame's pixels are ``100 * (volume + 1) + slice``, so a test
        reads back which frame landed where.
    frame_groups
        Called as ``frame_groups(volume, groups)`` on each frame's
        per-frame functional groups (to add cardiac or diffusion macros).
    header
        Top-level elements to set or replace (keyword = value).

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    ds = _instance(ENHANCED_MR)
    ds.Modality, ds.Manufacturer, ds.ImageType = "MR", "Philips Medical Systems", ["ORIGINAL", "PRIMARY", "M", "NONE"]
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = generate_uid(), generate_uid(), generate_uid()
    ds.PatientID, ds.SeriesNumber, ds.InstanceNumber = "E1", 7, 1
    ds.AcquisitionDateTime = "20240101100000.00"
    ds.Rows = ds.Columns = 4
    ds.NumberOfFrames = len(frames)
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    for keyword, value in (header or {}).items():
        setattr(ds, keyword, value)
    shared = Dataset()
    shared.PlaneOrientationSequence = one_item(ImageOrientationPatient=[1, 0, 0, 0, 1, 0])
    shared.PixelMeasuresSequence = one_item(PixelSpacing=[1.5, 1.5], SliceThickness=5, SpacingBetweenSlices=5)
    shared.PixelValueTransformationSequence = one_item(RescaleSlope=1, RescaleIntercept=0, RescaleType="US")
    ds.SharedFunctionalGroupsSequence = DicomSequence([shared])
    groups = []
    for volume, k in frames:
        frame = Dataset()
        # every frame shares one acquisition time, as a cine of one breath-hold: only the macros tell volumes apart
        frame.FrameContentSequence = one_item(
            StackID="1", InStackPositionNumber=k + 1, FrameAcquisitionDateTime="20240101100000.00", DimensionIndexValues=[1, k + 1]
        )
        frame.PlanePositionSequence = one_item(ImagePositionPatient=[0.0, 0.0, 5.0 * k])
        if frame_groups is not None:
            frame_groups(volume, frame)
        groups.append(frame)
    ds.PerFrameFunctionalGroupsSequence = DicomSequence(groups)
    ds.PixelData = np.stack([np.full((4, 4), 100 * (volume + 1) + k, np.uint16) for volume, k in frames]).astype("<u2").tobytes()
    ds.save_as(path, enforce_file_format=True)
    return Path(path)
