"""Write-back as an RT Structure Set: one ROI per label, CLOSED_PLANAR contours per source slice.

Contours come from marching squares (scikit-image ``find_contours``) on each
slice, once the prediction is on the source grid. Probabilities are traced at
the threshold's iso-line, between pixel centres (sub-voxel). Masks are traced
a hair inside their boundary pixels' centres, where OpenCV and rt-utils trace
them, so both the centre-inside rule (dicomml, most planning systems) and
rt-utils' rounding fill give the mask back. Holes follow the convention dicomml's and rt-utils' readers fill by: an inner
contour on the same slice is a hole (even-odd rule). highdicom has no
RTSTRUCT encoder, so the dataset is built here with pydicom.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.tag import Tag
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian, generate_uid

from dicomml._optional import require
from dicomml.config import Label
from dicomml.paths import atomic_output
from dicomml.seg.write import PATIENT_STUDY, Labels, Prediction, SourceGrid, hold_text, prediction_file, prepare, to_source_grid

if TYPE_CHECKING:
    from dicomml.indexer.manifest import Manifest
    from dicomml.sources import Remote

_FEATURE = "write-back to RTSTRUCT (dicomml.write_rtstruct)"
find_contours = require("skimage.measure", extra="seg", feature=_FEATURE).find_contours
find_objects = require("scipy.ndimage", extra="seg", feature=_FEATURE).find_objects

__all__ = ["MASK_LEVEL", "slice_contours", "write_rtstruct"]

#: Iso-level a binary mask is traced at: 1e-3 pixel outside its boundary pixels' centres.
MASK_LEVEL = 1.0 - 1e-3

RT_STRUCTURE_SET = "1.2.840.10008.5.1.4.1.1.481.3"
_CONTOUR_DATA = 0x30060050
#: Display colours for labels without one (RGB).
_PALETTE = ((255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255), (255, 0, 255), (255, 128, 0))
#: Copied from the source: the names are in its repertoire; the Type 2 patient and study attributes, empty
#: where the source lacks them (the SEG's, made so by the shared header cleaning); the Frame of Reference
#: module (user optional in the RT Structure Set IOD, kept complete as the SEG has it).
_COPIED = ("SpecificCharacterSet", *PATIENT_STUDY, "StudyInstanceUID", "FrameOfReferenceUID", "PositionReferenceIndicator")


def slice_contours(plane: np.ndarray, level: float = MASK_LEVEL) -> list[np.ndarray]:
    """Closed contours of one 2D plane at ``level``, in pixel indices.

    Parameters
    ----------
    plane
        (rows, columns): a binary mask or probabilities.
    level
        The iso-value traced (:data:`MASK_LEVEL` for a mask; the threshold
        for probabilities).

    Returns
    -------
    list of numpy.ndarray
        Each (n, 2) of (row, column) vertices, not repeating the first at the
        end; outer boundaries and holes alike (filled by the even-odd rule).

    Examples
    --------
    >>> square = np.zeros((5, 5)); square[1:4, 1:4] = 1
    >>> [c.shape for c in slice_contours(square, MASK_LEVEL)]
    [(12, 2)]
    """
    padded = np.pad(np.asarray(plane, dtype=np.float64), 1)  # closes contours that touch the border
    return [c[:-1] - 1.0 for c in find_contours(padded, level) if len(c) > 3]


def _roi_contours(stack: np.ndarray, box: tuple[slice, ...], grid: SourceGrid, level: float) -> list[tuple[int, np.ndarray]]:
    """(slice, LPS+ mm points) for every contour of one label; ``stack`` is the label's ``box`` of the grid."""
    out = []
    above = stack >= level
    for k in np.flatnonzero(above.reshape(above.shape[0], -1).any(axis=1)):
        slice_index = int(k) + box[0].start
        to_lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ grid.planes[slice_index]
        for contour in slice_contours(stack[k], level):
            contour = contour + (box[1].start, box[2].start)
            index = np.column_stack([np.zeros(len(contour)), contour, np.ones(len(contour))])
            out.append((slice_index, (index @ to_lps.T)[:, :3]))
    return out


def _padded(box: tuple[slice, ...], shape: tuple[int, ...]) -> tuple[slice, ...]:
    """A bounding box grown by one pixel in-plane (every crossing of the level lies within it)."""
    rows, columns = box[1], box[2]
    return (
        box[0],
        slice(max(rows.start - 1, 0), min(rows.stop + 1, shape[1])),
        slice(max(columns.start - 1, 0), min(columns.stop + 1, shape[2])),
    )


def _label_contours(channels: np.ndarray, count: int, grid: SourceGrid, level: float) -> list[list[tuple[int, np.ndarray]]]:
    """Contours of every label, each traced within its own bounding box."""
    if channels.ndim == 3:  # segment numbers: one pass finds every label's box
        boxes = find_objects(channels, max_label=count)
        stacks = [None if box is None else channels[_padded(box, channels.shape)] == n + 1 for n, box in enumerate(boxes)]
    else:
        boxes = [find_objects((channels[..., c] >= level).astype(np.uint8), max_label=1)[0] for c in range(count)]
        stacks = [None if box is None else channels[_padded(box, grid.shape) + (c,)] for c, box in enumerate(boxes)]
    return [
        [] if box is None or stack is None else _roi_contours(stack, _padded(box, grid.shape), grid, level)
        for box, stack in zip(boxes, stacks)
    ]


def _sequence_item(**values: Any) -> Dataset:
    item = Dataset()
    for keyword, value in values.items():
        setattr(item, keyword, value)
    return item


def _contour(image: Dataset, points: np.ndarray) -> Dataset:
    """One CLOSED_PLANAR contour item; Contour Data written as raw DS bytes (pydicom's DS objects are slow)."""
    item = _sequence_item(ContourImageSequence=[image], ContourGeometricType="CLOSED_PLANAR", NumberOfContourPoints=len(points))
    text = "\\".join(map("{:.4f}".format, points.ravel().tolist())).encode()
    text += b" " * (len(text) % 2)
    item[_CONTOUR_DATA] = RawDataElement(Tag(_CONTOUR_DATA), "DS", len(text), text, 0, False, True)
    # the encoding it will be written in: pydicom writes raw elements as they are instead of re-parsing them
    item.set_original_encoding(False, True, item._character_set)
    return item


def _structure_set(
    grid: SourceGrid,
    labels: Sequence[Label],
    contours: list[list[tuple[int, np.ndarray]]],
    algorithm: str,
    description: str,
    series_number: int,
) -> Dataset:
    first = grid.datasets[0]
    now = datetime.datetime.now()
    ds = Dataset()
    for keyword in _COPIED:
        if keyword in first:
            setattr(ds, keyword, first[keyword].value)
    hold_text(ds, [description, algorithm, *(label.name for label in labels)])
    ds.SOPClassUID, ds.SOPInstanceUID = RT_STRUCTURE_SET, generate_uid()
    ds.Modality, ds.SeriesInstanceUID, ds.SeriesNumber = "RTSTRUCT", generate_uid(), series_number
    ds.OperatorsName = ""  # Type 2 in the RT Series module: unknown
    ds.SeriesDescription, ds.InstanceNumber = description, 1
    ds.Manufacturer, ds.ManufacturerModelName = "dicomml", algorithm
    ds.StructureSetLabel = description[:16]
    ds.StructureSetDate, ds.StructureSetTime = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    ds.InstanceCreationDate, ds.InstanceCreationTime = ds.StructureSetDate, ds.StructureSetTime
    if grid.frames:  # an enhanced source: each slice is a frame of its one image (PS3.3 C.8.8.5, Referenced Frame Number)
        images = [
            _sequence_item(ReferencedSOPClassUID=first.SOPClassUID, ReferencedSOPInstanceUID=first.SOPInstanceUID, ReferencedFrameNumber=f)
            for f in grid.frames
        ]
    else:
        images = [_sequence_item(ReferencedSOPClassUID=d.SOPClassUID, ReferencedSOPInstanceUID=d.SOPInstanceUID) for d in grid.datasets]
    series = _sequence_item(SeriesInstanceUID=first.SeriesInstanceUID, ContourImageSequence=images)
    study = _sequence_item(
        ReferencedSOPClassUID="1.2.840.10008.3.1.2.3.1",  # Detached Study Management
        ReferencedSOPInstanceUID=first.StudyInstanceUID,
        RTReferencedSeriesSequence=[series],
    )
    frame = str(first.FrameOfReferenceUID)  # present: prepare() refuses a source without one
    ds.ReferencedFrameOfReferenceSequence = [_sequence_item(FrameOfReferenceUID=frame, RTReferencedStudySequence=[study])]
    ds.StructureSetROISequence = [
        _sequence_item(ROINumber=n, ReferencedFrameOfReferenceUID=frame, ROIName=label.name, ROIGenerationAlgorithm="AUTOMATIC")
        for n, label in enumerate(labels, start=1)
    ]
    ds.ROIContourSequence = [
        _sequence_item(ReferencedROINumber=n, ROIDisplayColor=list(label.color or _PALETTE[(n - 1) % len(_PALETTE)]))
        for n, label in enumerate(labels, start=1)
    ]
    for item, roi in zip(ds.ROIContourSequence, contours):
        if roi:  # Type 3, one item or more: an empty label is an ROI without contours (PS3.3 C.8.8.6)
            item.ContourSequence = [_contour(images[k], points) for k, points in roi]
    ds.RTROIObservationsSequence = [
        _sequence_item(ObservationNumber=n, ReferencedROINumber=n, RTROIInterpretedType="ORGAN", ROIInterpreter="")
        for n in range(1, len(labels) + 1)
    ]
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = ds.SOPClassUID, ds.SOPInstanceUID
    meta.TransferSyntaxUID, meta.ImplementationClassUID = ExplicitVRLittleEndian, PYDICOM_IMPLEMENTATION_UID
    ds.file_meta = meta
    return ds


def write_rtstruct(
    prediction: Prediction,
    source: Any,
    labels: Labels,
    out: str | os.PathLike[str],
    *,
    manifest: Manifest | str | os.PathLike[str] | None = None,
    affine: Any = None,
    threshold: float = 0.5,
    algorithm: str = "dicomml",
    series_description: str = "Structures",
    series_number: int = 301,
    remote: Remote | None = None,
) -> Path:
    """Write a prediction as an RT Structure Set on its source series' slices.

    Parameters
    ----------
    prediction, source, labels, manifest, affine, remote
        As for :func:`dicomml.write_seg`: channels are in the order of the
        labels sorted by value, and ROI ``n`` is the ``n``-th label by value.
        A label without voxels is an ROI without contours.
    out
        Path of the RTSTRUCT file to write.
    threshold
        Probabilities are contoured at this iso-value (sub-voxel).
    algorithm
        Written as the ManufacturerModelName.
    series_description, series_number
        Of the new RTSTRUCT series (the description is also its label).

    Returns
    -------
    pathlib.Path
        ``out``.

    Raises
    ------
    ConfigError
        As for :func:`dicomml.write_seg`.
    SegReferenceError
        As for :func:`dicomml.write_seg`: a source that is not one stack of
        planes of one series, or has no Frame of Reference UID; a prediction
        whose labelled voxels all fall outside it.

    Examples
    --------
    >>> dicomml.write_rtstruct(mask, files, {"liver": 1}, "rt.dcm", affine=affine)  # doctest: +SKIP
    PosixPath('rt.dcm')
    """
    chosen, array, found, grid = prepare(prediction, source, labels, manifest, affine, remote)
    soft = array.ndim == 4 and array.dtype.kind == "f"
    channels = to_source_grid(array, found, grid, chosen, "fractional" if soft else "binary", threshold, name=prediction_file(prediction))
    level = threshold if soft else MASK_LEVEL
    contours = _label_contours(channels, len(chosen), grid, level)
    ds = _structure_set(grid, chosen, contours, algorithm, series_description, series_number)
    path = Path(out)
    with atomic_output(path) as tmp:
        ds.save_as(tmp, enforce_file_format=True)
    return path
