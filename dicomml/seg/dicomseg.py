"""DICOM SEG (BINARY, FRACTIONAL, LABELMAP) decoded onto a reference grid.

highdicom parses the object (segment descriptions, selection by label or
property code, frame decoding in every transfer syntax it supports); this
module places each frame by its ImagePositionPatient on the grid of the image
it belongs to, so a SEG that omits empty frames, covers part of the image or
references its source only through the FrameOfReferenceUID still lands voxel
for voxel. A SEG on another grid (frames off the image's voxel centres by
more than 0.05 voxel or 0.1 mm, or several frame planes on one slice) is
decoded on its own grid and resampled nearest onto the image's, and the
residual misalignment is reported in mm.
"""

from __future__ import annotations

import os
import sqlite3
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Union

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.encaps import generate_frames
from pydicom.pixels import get_decoder, pack_bits
from pydicom.pixels.decoders.rle import _rle_decode_segment, _rle_parse_header  # no public per-segment decoder
from pydicom.sr.coding import Code
from pydicom.uid import UID, ExplicitVRLittleEndian, RLELossless

from dicomml._optional import require
from dicomml.dicom.frames import frame_count
from dicomml.dicom.io import read_dataset
from dicomml.errors import (
    InvalidDicomFileError,
    SegmentNotFoundError,
    SegmentOverlapError,
    SegReferenceError,
    UnsupportedTransferSyntaxError,
)
from dicomml.geometry import LPS_TO_RAS
from dicomml.limits import DEFAULT_MAX_VOXELS, check_voxels
from dicomml.seg._grid import (
    ALIGN_TOLERANCE_MM,
    PlaneMap,
    map_planes,
    nominal_slice_positions,
    paint_label,
    place,
    resample_nearest,
    stack_grid,
)
from dicomml.seg._link import check_frame_of_reference, describe
from dicomml.volume import Volume

if TYPE_CHECKING:
    import highdicom as hd
else:  # optional: the [seg] extra
    hd = require("highdicom", extra="seg", feature="DICOM SEG masks (dicomml.seg)")

__all__ = ["SegmentSelector", "open_segmentation", "read_segmentation", "select_segments", "seg_to_grid"]

#: One segment: its number, its label, or its segmented property type code.
SegmentSelector = int | str | Code | hd.sr.CodedConcept

_Source = Union[str, "os.PathLike[str]", Dataset]


def _name(seg: Dataset) -> str:
    return str(getattr(seg, "filename", None) or f"SEG {seg.get('SOPInstanceUID', '?')}")


#: Deflated Image Frame Compression (DICOM 2024): each frame deflated on its own; pydicom 3.0 does not know it.
DEFLATED_IMAGE_FRAME = UID("1.2.840.10008.1.2.8.1")


def _frame_bytes(frame: bytes, syntax: UID) -> bytes:
    """The native bytes of one encapsulated frame (RLE: its one segment; deflated: raw deflate)."""
    if syntax == DEFLATED_IMAGE_FRAME:
        return zlib.decompress(frame, -15)
    offsets = _rle_parse_header(frame[:64])
    if len(offsets) != 1:
        raise ValueError(f"{len(offsets)} RLE segments where a 1-bit or 8-bit frame has one")
    return bytes(_rle_decode_segment(frame[offsets[0] :]))


def _to_native(ds: Dataset, name: str) -> None:
    """Rewrite the pixel data as Explicit VR Little Endian, in place, for what highdicom cannot decode.

    That is Big Endian, and BINARY (1-bit) or any frames in RLE Lossless or
    Deflated Image Frame Compression: pydicom's RLE decoders stop at 1 bit
    allocated, and it does not know the deflated frame syntax.
    """
    syntax = UID(ds.file_meta.TransferSyntaxUID)
    ours = syntax == DEFLATED_IMAGE_FRAME or (syntax == RLELossless and ds.BitsAllocated == 1)
    if not ours and syntax.is_little_endian:
        return
    rows, columns, count = int(ds.Rows), int(ds.Columns), int(ds.get("NumberOfFrames", 1))
    if not ours:  # Big Endian
        frames = ds.pixel_array.reshape(count, rows, columns)
    else:
        dtype = np.dtype(f"<u{ds.BitsAllocated // 8}") if ds.BitsAllocated > 1 else np.dtype(np.uint8)
        decoded = []
        try:
            for frame in generate_frames(ds.PixelData, number_of_frames=count):
                data = np.frombuffer(_frame_bytes(frame, syntax), np.uint8)
                if ds.BitsAllocated == 1:
                    # each 1-bit frame is packed on its own, starting on a byte
                    decoded.append(np.unpackbits(data, bitorder="little")[: rows * columns])
                else:
                    decoded.append(data.view(dtype)[: rows * columns])
            frames = np.stack(decoded).reshape(count, rows, columns)
        except (ValueError, zlib.error) as exc:
            raise UnsupportedTransferSyntaxError(
                f"{name}: the frames cannot be decoded from (0002,0010) Transfer Syntax {syntax} ({exc}); "
                "convert the SEG to Explicit VR Little Endian (e.g. dcmconv +te)",
                path=name,
                tag="(0002,0010)",
            ) from exc
    native = pack_bits(frames) if ds.BitsAllocated == 1 else frames.astype(frames.dtype.newbyteorder("<")).tobytes()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.PixelData = native + b"\0" * (len(native) % 2)
    ds["PixelData"].VR = "OB" if ds.BitsAllocated <= 8 else "OW"
    ds["PixelData"].is_undefined_length = False


def read_segmentation(source: _Source) -> hd.seg.Segmentation:
    """Read a DICOM SEG with highdicom.

    Parameters
    ----------
    source
        A local path, fsspec URL or pydicom Dataset (a Dataset is converted in place).

    Returns
    -------
    highdicom.seg.Segmentation

    Raises
    ------
    InvalidDicomFileError
        If the file is not DICOM, or not a Segmentation highdicom can parse.
    UnsupportedTransferSyntaxError
        If its transfer syntax is not one pydicom knows.

    Examples
    --------
    >>> seg = read_segmentation(data_file("dcmqi/data/segmentations/liver.dcm"))  # doctest: +SKIP
    >>> seg.segment_numbers  # doctest: +SKIP
    [1]
    """
    ds = open_segmentation(source)
    try:
        return hd.seg.Segmentation.from_dataset(ds, copy=False)
    except (ValueError, AttributeError, KeyError, TypeError, sqlite3.Error) as exc:  # sqlite3: its frame table refuses NaN positions
        raise InvalidDicomFileError(
            f"{_name(ds)}: not a Segmentation that highdicom can parse ({exc}); check (0008,0016) SOP Class UID and the functional groups",
            path=_name(ds),
        ) from exc


#: Segmentation Storage and Label Map Segmentation Storage.
_SEG_CLASSES = ("1.2.840.10008.5.1.4.1.1.66.4", "1.2.840.10008.5.1.4.1.1.66.7")


def open_segmentation(source: _Source) -> Dataset:
    """Read a DICOM SEG as a pydicom Dataset whose pixel data pydicom decodes.

    dicomml decodes SEGs from the Dataset itself: highdicom's ``from_dataset``
    indexes every frame up front, which costs more than the whole decode.

    Parameters
    ----------
    source
        A local path, fsspec URL or pydicom Dataset (a Dataset is converted in place).

    Returns
    -------
    pydicom.dataset.Dataset
        Big Endian, 1-bit RLE and Deflated Image Frame pixel data rewritten
        as Explicit VR Little Endian.

    Raises
    ------
    InvalidDicomFileError
        If it is not a Segmentation (SOP class, Segment Sequence, per-frame groups).
    UnsupportedTransferSyntaxError
        If its transfer syntax is not one pydicom knows.
    """
    ds = source if isinstance(source, Dataset) else read_dataset(source, pixels=True)
    name = _name(ds)
    missing = [k for k in ("SegmentSequence", "PerFrameFunctionalGroupsSequence", "PixelData") if k not in ds]
    if str(ds.get("SOPClassUID", "")) not in _SEG_CLASSES or missing:
        raise InvalidDicomFileError(
            f"{name}: (0008,0016) SOP Class UID {ds.get('SOPClassUID', '(none)')} "
            f"{'without ' + ', '.join(missing) if missing else ''}; expected a Segmentation",
            path=name,
            tag="(0008,0016)",
        )
    syntax = UID(ds.file_meta.get("TransferSyntaxUID", ExplicitVRLittleEndian))
    if not syntax.is_transfer_syntax and syntax != DEFLATED_IMAGE_FRAME:
        raise UnsupportedTransferSyntaxError(
            f"{name}: (0002,0010) Transfer Syntax UID {syntax} is not one pydicom {pydicom.__version__} knows; "
            "convert the SEG to Explicit VR Little Endian (e.g. dcmconv +te)",
            path=name,
            tag="(0002,0010)",
        )
    _to_native(ds, name)
    return ds


_KINDS = ("BINARY", "FRACTIONAL", "LABELMAP")


def _kind(seg: Dataset) -> str:
    """(0062,0001) Segmentation Type (BINARY when absent), or an error when it is none that dicomml knows."""
    kind = str(seg.get("SegmentationType", "BINARY"))
    if kind not in _KINDS:
        raise InvalidDicomFileError(
            f"{_name(seg)}: (0062,0001) Segmentation Type {kind!r} is not one of {', '.join(_KINDS)}",
            path=_name(seg),
            tag="(0062,0001)",
        )
    return kind


def _segments(seg: Dataset) -> dict[int, Dataset]:
    """SegmentNumber -> its Segment Sequence item; an error when there is none."""
    if not seg.SegmentSequence:
        raise InvalidDicomFileError(
            f"{_name(seg)}: (0062,0002) Segment Sequence is empty; expected at least one segment",
            path=_name(seg),
            tag="(0062,0002)",
        )
    return {int(item.SegmentNumber): item for item in seg.SegmentSequence}


def _has_code(item: Dataset, code: Code | hd.sr.CodedConcept) -> bool:
    return any(
        str(c.get("CodeValue", "")) == str(code.value) and str(c.get("CodingSchemeDesignator", "")) == str(code.scheme_designator)
        for c in item.get("SegmentedPropertyTypeCodeSequence", [])
    )


def select_segments(seg: Dataset, segments: SegmentSelector | Sequence[SegmentSelector] | None) -> list[int]:
    """Segment numbers chosen by number, label or segmented property type.

    Parameters
    ----------
    seg
        The segmentation (a pydicom Dataset or highdicom Segmentation).
    segments
        ``None`` for all; one selector or a sequence of them, where a selector
        is a segment number (int), a SegmentLabel (str) or a segmented
        property type code (pydicom ``Code`` or highdicom ``CodedConcept``).

    Returns
    -------
    list of int
        Segment numbers, in the order asked, without repeats.

    Raises
    ------
    SegmentNotFoundError
        If a selector matches no segment.

    Examples
    --------
    >>> select_segments(seg, ["Liver", 2])  # doctest: +SKIP
    [1, 2]
    """
    described = _segments(seg)
    if segments is None:
        return list(described)
    wanted = [segments] if isinstance(segments, (int, str, Code, hd.sr.CodedConcept)) else list(segments)
    numbers: list[int] = []
    for item in wanted:
        if isinstance(item, (bool, np.bool_)):
            found: list[int] = []
        elif isinstance(item, (int, np.integer)):
            found = [int(item)] if int(item) in described else []
        elif isinstance(item, str):
            found = [n for n, d in described.items() if str(d.get("SegmentLabel", "")) == item]
        else:
            found = [n for n, d in described.items() if _has_code(d, item)]
        if not found:
            have = ", ".join(f"{n}: {str(d.get('SegmentLabel', ''))!r}" for n, d in described.items())
            raise SegmentNotFoundError(
                f"{_name(seg)}: (0062,0002) Segment Sequence has no segment matching {item!r}; it has {have}",
                path=_name(seg),
                tag="(0062,0002)",
            )
        numbers += [n for n in found if n not in numbers]
    return numbers


@dataclass(frozen=True)
class _Frames:
    """Per-frame geometry and segment of a SEG (segment 0 for LABELMAP frames)."""

    positions: np.ndarray
    segments: np.ndarray
    indices: np.ndarray  # 0-based frame numbers in the SEG
    orientation: tuple[float, ...]
    pixel_spacing: tuple[float, float]


_POSITION = (0x00209113, 0x00200032)  # PlanePositionSequence / ImagePositionPatient
_ORIENTATION = (0x00209116, 0x00200037)  # PlaneOrientationSequence / ImageOrientationPatient
_SPACING = (0x00289110, 0x00280030)  # PixelMeasuresSequence / PixelSpacing
_SEGMENT = (0x0062000A, 0x0062000B)  # SegmentIdentificationSequence / ReferencedSegmentNumber


def _functional(seg: Dataset, item: Dataset, shared: Dataset | None, pointer: tuple[int, int]) -> Any:
    """A functional group attribute of one frame (per-frame first, then shared), by tag for speed."""
    group, tag = pointer
    for source in (item, shared):
        if source is not None and group in source and tag in source[group].value[0]:
            return source[group].value[0][tag].value
    keyword = pydicom.datadict.keyword_for_tag(tag)
    raise SegReferenceError(
        f"{_name(seg)}: a frame has no {pydicom.tag.Tag(tag)} {keyword}; it cannot be placed by geometry",
        path=_name(seg),
        tag=str(pydicom.tag.Tag(tag)),
    )


def _other_series_instances(seg: Dataset, series_uid: str) -> set[str]:
    """SOP instances the SEG references in series other than ``series_uid`` (empty when it names one series)."""
    by_series: dict[str, set[str]] = {}
    studies = [seg] + list(seg.get("StudiesContainingOtherReferencedInstancesSequence", []))
    for study in studies:
        for series in study.get("ReferencedSeriesSequence", []):
            uids = {str(item.ReferencedSOPInstanceUID) for item in series.get("ReferencedInstanceSequence", [])}
            by_series.setdefault(str(series.get("SeriesInstanceUID", "")), set()).update(uids)
    if len(by_series) < 2 or series_uid not in by_series:
        return set()
    return set().union(*(uids for uid, uids in by_series.items() if uid != series_uid))


def _sources(item: Dataset) -> set[str]:
    """SOP instances a frame was derived from (Derivation Image Sequence / Source Image Sequence)."""
    return {
        str(source.ReferencedSOPInstanceUID)
        for derivation in item.get("DerivationImageSequence", [])
        for source in derivation.get("SourceImageSequence", [])
    }


def _frames(seg: Dataset, series_uid: str) -> _Frames:
    """Read each frame's plane position and segment from the functional groups.

    Frames derived only from instances of another series than ``series_uid``
    (a SEG over several series) get segment -1 and take no part.
    """
    per_frame = seg.PerFrameFunctionalGroupsSequence
    shared = seg.SharedFunctionalGroupsSequence[0] if "SharedFunctionalGroupsSequence" in seg else None
    labelmap = _kind(seg) == "LABELMAP"
    described = set(_segments(seg))
    others = _other_series_instances(seg, series_uid)
    positions = np.zeros((len(per_frame), 3))
    segments = np.zeros(len(per_frame), dtype=np.int64)
    orientations = set()
    spacings = set()
    for i, item in enumerate(per_frame):
        sources = _sources(item) if others else set()
        if sources and sources <= others:
            segments[i] = -1
            continue
        positions[i] = _functional(seg, item, shared, _POSITION)
        orientations.add(tuple(float(v) for v in _functional(seg, item, shared, _ORIENTATION)))
        spacings.add(tuple(float(v) for v in _functional(seg, item, shared, _SPACING)))
        if not labelmap:
            # highdicom puts a lone segment's identification in the shared groups
            segments[i] = int(_functional(seg, item, shared, _SEGMENT))
            if segments[i] not in described:
                raise InvalidDicomFileError(
                    f"{_name(seg)}: frame {i + 1} has (0062,000B) Referenced Segment Number {segments[i]}, which "
                    f"(0062,0002) Segment Sequence does not define (it has {sorted(described)}); its pixels belong to no segment",
                    path=_name(seg),
                    tag="(0062,000B)",
                )
    _check_finite(seg, positions, orientations, spacings)
    if len(orientations) != 1 or len(spacings) != 1:
        raise SegReferenceError(
            f"{_name(seg)}: frames differ in (0020,0037) Image Orientation or (0028,0030) Pixel Spacing "
            f"({len(orientations)} orientations, {len(spacings)} spacings); expected one plane geometry",
            path=_name(seg),
        )
    kept = segments >= 0
    return _Frames(positions[kept], segments[kept], np.flatnonzero(kept), orientations.pop(), spacings.pop())  # type: ignore[arg-type]


def _check_finite(seg: Dataset, positions: np.ndarray, orientations: set[tuple[float, ...]], spacings: set[tuple[float, ...]]) -> None:
    """Refuse NaN or infinite plane geometry: it places a frame nowhere, or on a grid of unbounded size."""
    bad = np.flatnonzero(~np.all(np.isfinite(positions), axis=1))
    found = [(f"frame {int(i) + 1}", "(0020,0032) Image Position (Patient)", positions[i].tolist()) for i in bad[:1]]
    found += [("a frame", "(0020,0037) Image Orientation (Patient)", list(v)) for v in orientations if not np.all(np.isfinite(v))]
    found += [("a frame", "(0028,0030) Pixel Spacing", list(v)) for v in spacings if not np.all(np.isfinite(v))]
    if found:
        frame, tag, values = found[0]
        raise InvalidDicomFileError(
            f"{_name(seg)}: {frame} has {tag} {values}; expected finite numbers (mm)", path=_name(seg), tag=tag[:11]
        )


def _decode_frame(seg: Dataset, index: int) -> np.ndarray:
    rows, columns = int(seg.Rows), int(seg.Columns)
    if seg.BitsAllocated == 1 and not UID(seg.file_meta.TransferSyntaxUID).is_encapsulated:
        # frames that do not start on a byte: pydicom 3.0's per-frame decoder misreads them
        size = rows * columns
        start = index * size
        data = np.frombuffer(seg.PixelData, np.uint8)[start // 8 : (start + size + 7) // 8 + 1]
        bits = np.unpackbits(data, bitorder="little")[start % 8 : start % 8 + size]
        return bits.reshape(rows, columns)
    try:
        frame, _ = get_decoder(seg.file_meta.TransferSyntaxUID).as_array(seg, index=index)
        return frame
    except (RuntimeError, ValueError, NotImplementedError) as exc:
        raise UnsupportedTransferSyntaxError(
            f"{_name(seg)}: frame {index + 1} cannot be decoded from (0002,0010) Transfer Syntax "
            f"{seg.file_meta.TransferSyntaxUID} ({' '.join(str(exc).split())}); "
            "convert the SEG to Explicit VR Little Endian",
            path=_name(seg),
            tag="(0002,0010)",
        ) from exc


class _Canvas:
    """The output array on one grid, and how each decoded frame is added to it."""

    def __init__(self, seg: Dataset, numbers: list[int], shape: tuple[int, int, int], as_channels: bool, threshold: float | None) -> None:
        self.seg = seg
        self.numbers = numbers
        self.shape = shape
        self.kind = _kind(seg)
        self.maximum = float(seg.get("MaximumFractionalValue") or 0)
        if self.kind == "FRACTIONAL" and not self.maximum > 0:
            raise InvalidDicomFileError(
                f"{_name(seg)}: (0062,000E) Maximum Fractional Value {seg.get('MaximumFractionalValue', '(absent)')} of a "
                "FRACTIONAL SEG; expected a positive value (the pixel value meaning 1.0)",
                path=_name(seg),
                tag="(0062,000E)",
            )
        self.threshold = threshold
        self.soft = self.kind == "FRACTIONAL" and threshold is None
        self.as_channels = as_channels
        self.channel = {n: i for i, n in enumerate(numbers)}
        dtype = np.float32 if self.soft else (np.uint8 if max(numbers, default=0) < 256 or as_channels else np.uint16)
        if self.kind == "LABELMAP":
            self.array = np.zeros(shape, np.uint16 if seg.BitsAllocated > 8 else np.uint8)
        elif as_channels:
            self.array = np.zeros((len(numbers),) + shape, dtype)
        else:
            self.array = np.zeros(shape, dtype)

    def add(self, frame: np.ndarray, segment: int, indexer: tuple[int | slice, ...]) -> None:
        """Add one frame (already turned and cropped to ``indexer``)."""
        if self.kind == "LABELMAP":
            region = self.array[indexer]
            np.maximum(region, frame, out=region)
            return
        if self.kind == "FRACTIONAL":
            values = frame.astype(np.float32) / np.float32(self.maximum)
            frame = values if self.threshold is None else (values >= self.threshold)
        if self.as_channels or self.soft:
            region = self.array[self.channel[segment]][indexer] if self.as_channels else self.array[indexer]
            np.maximum(region, frame.astype(region.dtype, copy=False), out=region)
            return
        clash = paint_label(self.array[indexer], frame != 0, segment)
        if clash is not None:
            raise SegmentOverlapError(
                f"{_name(self.seg)}: segments {segment} and {clash} overlap, so they cannot share one label map; pass as_channels=True",
                path=_name(self.seg),
            )

    def result(self) -> np.ndarray:
        """The finished array: LABELMAP values selected, or split into channels."""
        if self.kind != "LABELMAP":
            return self.array
        if self.as_channels:
            return np.stack([self.array == n for n in self.numbers]).astype(np.uint8)
        lut = np.zeros(int(np.iinfo(self.array.dtype).max) + 1, dtype=self.array.dtype)
        lut[self.numbers] = self.numbers
        return lut[self.array]


class _Pixels:
    """Each frame's pixels, as the window of rows and columns that holds its non-zero pixels.

    highdicom decodes frames in general. Uncompressed BINARY frames whose rows
    are whole bytes (Columns a multiple of 8, so every frame starts on a byte)
    take a shortcut: the window is found on the packed bits and only it is
    unpacked, which matters for many small segments on large images.
    """

    def __init__(self, seg: Dataset) -> None:
        frame_count(seg)  # the pixel data holds the frames the header announces (Rows, Columns, Number of Frames)
        self.seg = seg
        self.rows, self.columns = int(seg.Rows), int(seg.Columns)
        native = not UID(seg.file_meta.TransferSyntaxUID).is_encapsulated
        self.packed = np.frombuffer(seg.PixelData, np.uint8) if seg.BitsAllocated == 1 and native and self.columns % 8 == 0 else None

    def window(self, index: int) -> tuple[np.ndarray, tuple[int, int]]:
        """Frame ``index`` (0-based) cut to its non-zero window, and the window's (row, column)."""
        if self.packed is None:
            return _decode_frame(self.seg, index), (0, 0)
        size = self.rows * self.columns // 8
        packed = self.packed[index * size : (index + 1) * size].reshape(self.rows, self.columns // 8)
        rows = np.flatnonzero(packed.any(axis=1))
        if rows.size == 0:
            return np.zeros((0, 0), np.uint8), (0, 0)
        band = packed[rows[0] : rows[-1] + 1]
        columns = np.flatnonzero(band.any(axis=0))
        bits = np.unpackbits(band[:, columns[0] : columns[-1] + 1], axis=1, bitorder="little")
        return bits, (int(rows[0]), 8 * int(columns[0]))


def _paint(seg: Dataset, frames: _Frames, plane_map: PlaneMap, canvas: _Canvas, target: str) -> None:
    """Decode the frames of the chosen segments and add them to the canvas."""
    labelmap = canvas.kind == "LABELMAP"
    chosen = set(canvas.numbers)
    padding = seg.get("PixelPaddingValue") if labelmap else None
    pixels = _Pixels(seg)
    for i, (number, segment) in enumerate(zip(frames.indices.tolist(), frames.segments.tolist())):
        if not labelmap and segment not in chosen:
            continue
        frame, offset = pixels.window(number)
        if padding is not None:
            frame = np.where(frame == padding, 0, frame)
        indexer, view, whole = place(plane_map, i, frame, canvas.shape, offset)
        if not whole and np.count_nonzero(view) != np.count_nonzero(frame):
            raise SegReferenceError(
                f"{_name(seg)}: frame {number + 1} at (0020,0032) {frames.positions[i].tolist()} mm has segment "
                f"pixels outside {target}; the SEG does not belong to this image "
                "(check the referenced series, or pass the right reference=)",
                path=_name(seg),
                tag="(0020,0032)",
            )
        if view.size:
            canvas.add(view, segment, indexer)


def _refuse_nominal(seg: Dataset, frames: _Frames, plane_map: PlaneMap, reference: Volume, problem: str) -> None:
    """Raise for frames off the slices of a reference whose affine is nominal: where its slices lie is not known."""
    offsets = np.linalg.norm((plane_map.origins - np.rint(plane_map.origins)) @ np.asarray(reference.affine)[:3, :3].T, axis=1)
    worst = int(np.argmax(offsets)) if offsets.size else 0
    where = (
        f"frame {int(frames.indices[worst]) + 1} at (0020,0032) {np.round(frames.positions[worst], 2).tolist()} mm is "
        f"{offsets[worst]:.2f} mm from the nearest voxel centre"
        if offsets.size and offsets[worst] > ALIGN_TOLERANCE_MM
        else "another pixel grid or orientation, or two frame planes on one slice"
    )
    raise SegReferenceError(
        f"{_name(seg)}: its frames are not on the slices of {describe(reference)} ({where}), whose slice positions are "
        f"irregular ({problem.split(':')[0]}): kept as they are, its affine is nominal and does not say where each slice "
        "lies; load the series with on_irregular='resample'",
        path=_name(seg),
        series_uid=reference.meta.get("series_uid"),
        tag="(0020,0032)",
    )


def seg_to_grid(
    seg: _Source,
    reference: Volume,
    *,
    segments: SegmentSelector | Sequence[SegmentSelector] | None = None,
    as_channels: bool = False,
    threshold: float | None = None,
    max_voxels: int = DEFAULT_MAX_VOXELS,
) -> Volume:
    """Decode a DICOM SEG onto the grid of a reference image volume.

    Parameters
    ----------
    seg
        The SEG: a path, a pydicom Dataset or a highdicom Segmentation.
    reference
        The image volume whose spatial grid (``spatial_shape`` and ``affine``,
        indices to RAS+ mm) the mask takes; its voxels are not read.
    segments
        Which segments, by number, label or property type code (see
        :func:`select_segments`); all when ``None``.
    as_channels
        ``True``: one channel per segment, axes ``("segment",)``, in the order
        of ``segments``. ``False``: one label map whose voxels hold segment
        numbers (0 = none).
    threshold
        FRACTIONAL SEGs only: turn probabilities in [0, 1] into a binary mask
        (``value >= threshold``). Without it they stay float32 in [0, 1].
    max_voxels
        Most voxels (channels included) of the mask, and of the SEG's own
        grid when its frames are resampled; as :func:`dicomml.load_series`.

    Returns
    -------
    Volume
        ``array`` on exactly the reference grid: (slice, row, column) or
        (segment, slice, row, column); uint8 (uint16 for segment numbers over
        255) or float32 for fractional masks; ``affine`` equal to the
        reference's. ``meta``: ``kind="mask"``, ``labels`` (segment number ->
        SegmentLabel, in channel order), ``segmentation_type``,
        ``sop_instance_uid``, ``resampled`` (whether the SEG's frames were off
        the reference's voxel centres by more than 0.05 voxel or 0.1 mm, or
        several of their planes fell on one slice, so its own grid was
        resampled nearest) and ``residual_mm`` (largest distance between a
        voxel centre and the SEG pixel centre it took its value from).

    Raises
    ------
    InvalidDicomFileError
        If the SEG has no segments, an unknown Segmentation Type, a frame of a
        segment it does not describe, NaN or infinite plane geometry, or
        (FRACTIONAL) no positive Maximum Fractional Value.
    SegReferenceError
        If the SEG's frame of reference differs from the reference's, its
        frames cannot be placed on the grid (no positions, several plane
        geometries, an irregular stack off the grid), segment pixels fall
        outside the grid, or the frames are not on the slices (within the
        tolerance, one plane per slice) of a reference kept irregular, whose
        affine is nominal (``meta["nominal_affine"]``: kept with missing
        slices, uneven spacing, unequal repeats or frames without positions).
    SegmentNotFoundError
        If a selector matches no segment.
    SegmentOverlapError
        If a label map is asked for segments that overlap, or for several
        FRACTIONAL segments without ``threshold``.
    ResourceLimitError
        If the mask, or the SEG's own grid (frames far apart), would exceed ``max_voxels``.
    UnsupportedTransferSyntaxError
        If the frames cannot be decoded.

    Examples
    --------
    >>> mask = seg_to_grid("liver.dcm", load_series(manifest, key))  # doctest: +SKIP
    >>> mask.meta["labels"], mask.array.shape  # doctest: +SKIP
    ({1: 'Liver'}, (3, 512, 512))
    """
    seg = open_segmentation(seg)
    numbers = select_segments(seg, segments)
    fractional = _kind(seg) == "FRACTIONAL"
    if fractional and threshold is None and not as_channels and len(numbers) > 1:
        raise SegmentOverlapError(
            f"{_name(seg)}: {len(numbers)} FRACTIONAL segments cannot share one label map; "
            "pass as_channels=True, or threshold= to binarize them",
            path=_name(seg),
        )
    referenced = [item.get("SeriesInstanceUID") for item in seg.get("ReferencedSeriesSequence", [])]
    check_frame_of_reference(_name(seg), [seg.get("FrameOfReferenceUID")], referenced, reference, "(0020,0052)")
    frames = _frames(seg, str(reference.meta.get("series_uid") or ""))
    plane_shape = (int(seg.Rows), int(seg.Columns))
    shape = reference.spatial_shape
    plane_map = map_planes(reference.affine, frames.orientation, frames.pixel_spacing, frames.positions, plane_shape)
    resampled = not plane_map.aligned()
    grid_affine = reference.affine
    nominal = nominal_slice_positions(reference.meta)
    if resampled and nominal is not None:
        _refuse_nominal(seg, frames, plane_map, reference, nominal)
    if resampled:
        geometry = read_segmentation(seg).get_volume_geometry()
        # highdicom's needs positions along the normal; a tilted stack is regular in its own sheared affine
        own = (
            (LPS_TO_RAS @ geometry.affine, tuple(int(n) for n in geometry.spatial_shape))
            if geometry is not None
            else stack_grid(frames.orientation, frames.pixel_spacing, frames.positions, plane_shape)
        )
        if own is None:
            raise SegReferenceError(
                f"{_name(seg)}: its frames lie off the grid of {describe(reference)} and do not form a regular volume "
                "of their own (their positions are not whole steps of one vector), so they can be neither placed nor resampled",
                path=_name(seg),
                series_uid=reference.meta.get("series_uid"),
            )
        grid_affine, shape = own  # type: ignore[assignment]
        plane_map = map_planes(grid_affine, frames.orientation, frames.pixel_spacing, frames.positions, plane_shape)
    channels = (len(numbers),) if as_channels else ()
    # the SEG's own grid spans its frames: two far apart make it as large as their distance, before any pixel is read
    grids = [(shape, "the grid of its frames")] if resampled else []
    for size, where in grids + [(reference.spatial_shape, describe(reference))]:
        check_voxels(channels + tuple(size), f"{_name(seg)}: a mask on {where}", max_voxels, path=_name(seg))
    canvas = _Canvas(seg, numbers, shape, as_channels, threshold)
    _paint(seg, frames, plane_map, canvas, describe(reference))
    array = canvas.result()
    if resampled:
        array, residual = resample_nearest(array, grid_affine, reference.affine, reference.spatial_shape)
    else:
        residual = plane_map.offset_mm(reference.affine)
    meta = {
        "kind": "mask",
        "labels": {n: str(_segments(seg)[n].get("SegmentLabel", "")) for n in numbers},
        "segmentation_type": _kind(seg),
        "sop_instance_uid": str(seg.SOPInstanceUID),
        "source": _name(seg),
        "resampled": resampled,
        "residual_mm": residual,
    }
    return Volume(array, reference.affine.copy(), ("segment",) if as_channels else (), meta)
