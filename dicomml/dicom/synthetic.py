"""Write small, valid classic DICOM series with pydicom: for tests, benchmarks and demos.

Real scanners' files are in the test corpus; these cover the cases it lacks
(a given gap, tilt, time series, shuffled order, malformed tag) with geometry
known exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, MRImageStorage, generate_uid

__all__ = ["write_slice", "write_series"]


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
    sop_class = CTImageStorage if modality == "CT" else MRImageStorage
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
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
