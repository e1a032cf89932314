"""Per-frame geometry and grouping attributes of one DICOM object, from its header.

One row per image plane the object holds: one for a classic single-frame
image, one per frame of an enhanced multi-frame object (per-frame functional
groups, falling back to the shared ones), one per slice of a Siemens mosaic
(unpacked with the CSA image header). Reading needs the header only, so it
works on a dataset read with ``stop_before_pixels=True``; the indexer and
assembly both build on it.

Absent geometry (a secondary capture, an ultrasound frame) gives NaN;
geometry that is present but malformed raises :class:`InvalidDicomFileError`.
"""

from __future__ import annotations

import datetime
import functools
import math
import os
import re
import struct
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pydicom
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.tag import BaseTag

from dicomml.dicom.philips import scale_slope
from dicomml.errors import InvalidDicomFileError
from dicomml.geometry import slice_normal

__all__ = [
    "FrameTable",
    "frame_count",
    "frame_size",
    "frame_table",
    "functional_item",
    "header_numbers",
    "header_value",
    "shown_value",
    "source_name",
]


@dataclass(frozen=True)
class FrameTable:
    """Per-frame geometry and grouping attributes of one DICOM object, from its header alone.

    All positions and directions are DICOM patient coordinates (LPS+, mm).

    Attributes
    ----------
    rows, columns
        Size of one image plane (for a mosaic, of one tile).
    positions
        (n, 3) float64 ImagePositionPatient of each plane, LPS+ mm; NaN if absent.
    orientations
        (n, 6) float64 ImageOrientationPatient (row cosine, column cosine); NaN if absent.
    pixel_spacing
        (n, 2) float64 PixelSpacing (between rows, between columns), mm; NaN if absent.
    echo
        (n,) float64 echo number (EchoNumbers). Enhanced frames carry no echo
        number, so their EffectiveEchoTime (ms) stands in. NaN if neither.
    temporal
        (n,) float64 ordering key of time points: TemporalPositionIdentifier,
        else TemporalPositionIndex, else the cardiac trigger delay (an enhanced
        frame's NominalCardiacTriggerDelayTime, else TriggerTime), else the
        acquisition date and time in seconds since 0001-01-01 (the time of day
        alone where no date is given); NaN if none.
    kind
        Per-plane image kind: value 3 of ImageType (FrameType for enhanced
        frames), upper-case, e.g. ``"M"``, ``"P"``, ``"B0 MAP"``; ``""`` if absent.
    frame_numbers
        (n,) int64 1-based frame number in the file; every slice of a mosaic
        names frame 1, and ``mosaic`` says how to cut it.
    mosaic
        (tiles per side, number of slices) for a Siemens mosaic, else None.
    instance
        (n,) float64 InstanceNumber; NaN if absent. Breaks ties in time order.
    rescale_slope, rescale_intercept
        (n,) float64 RescaleSlope / RescaleIntercept of each plane (per-frame
        Pixel Value Transformation for enhanced objects); 1 and 0 if absent.
    philips_scale_slope
        (n,) float64 Philips' private MR Scale Slope (2005,100E) of each plane
        (see :mod:`dicomml.dicom.philips`); NaN for other manufacturers or if absent.
    display_scale
        (n,) float64 factor from the header's display values (the scale of its
        window) to the values the rescale gives, where the rescale is not the
        header's own (Philips' floating point: ``1 / (RS * SS)``); None where it is.
    """

    rows: int
    columns: int
    positions: np.ndarray
    orientations: np.ndarray
    pixel_spacing: np.ndarray
    echo: np.ndarray
    temporal: np.ndarray
    kind: tuple[str, ...]
    frame_numbers: np.ndarray
    mosaic: tuple[int, int] | None
    instance: np.ndarray
    rescale_slope: np.ndarray
    rescale_intercept: np.ndarray
    philips_scale_slope: np.ndarray
    display_scale: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.frame_numbers.size)


def source_name(ds: Dataset) -> str:
    """The file a dataset was read from, for messages (``"<dataset>"`` if unknown)."""
    name = getattr(ds, "filename", None)
    return str(name) if name else "<dataset>"


def header_value(ds: Dataset, keyword: str) -> Any:
    """One element's value, read cheaply: numbers, code strings, UIDs and times still raw
    from the file are parsed directly instead of through pydicom's conversion.

    Parameters
    ----------
    ds
        A dataset (or a functional group item).
    keyword
        The element's keyword, e.g. ``"BitsStored"``.

    Returns
    -------
    object
        A number or str, a list of them when multi-valued, None when absent or empty.

    Raises
    ------
    InvalidDicomFileError
        If the value cannot be parsed.

    Examples
    --------
    >>> header_value(ds, "Rows")  # doctest: +SKIP
    512
    """
    return _Reader(source_name(ds))._value(ds, keyword, "a valid value")


def header_numbers(ds: Dataset, keyword: str, count: int | None = None, *, path: str | None = None) -> list[float] | None:
    """All values of a numeric element as finite floats, None when absent or empty.

    Parameters
    ----------
    ds
        A dataset, or an item of one of its sequences (a functional group macro).
    keyword
        The element's keyword, e.g. ``"WindowCenter"``.
    count
        How many values the element must hold; None for any number.
    path
        The file to name in messages; by default ``ds``'s, which an item of a sequence does not know.

    Raises
    ------
    InvalidDicomFileError
        Naming the file and the tag, if a value is not a number or is NaN or infinite,
        or there are not ``count`` of them; the value is shown only if it holds nothing but numbers.

    Examples
    --------
    >>> header_numbers(ds, "WindowCenter")  # doctest: +SKIP
    [40.0, 300.0]
    """
    reader = _Reader(path or source_name(ds))
    if count is None:
        return reader.numbers(ds, keyword, "finite numbers")
    values = reader.floats(ds, keyword, count)
    return None if values is None else values.tolist()


def frame_size(ds: Dataset) -> tuple[int, int]:
    """(Rows, Columns) of one image plane, checked.

    Raises
    ------
    InvalidDicomFileError
        If Rows or Columns is missing, empty, not a number or below 1.
    """
    reader = _Reader(source_name(ds))
    rows = reader.integer(ds, "Rows")
    columns = reader.integer(ds, "Columns")
    if rows is None or columns is None or rows < 1 or columns < 1:
        raise InvalidDicomFileError(
            f"{reader.path}: (0028,0010) Rows / (0028,0011) Columns missing or zero "
            f"(got {rows!r} x {columns!r}); this is not an image object",
            path=reader.path,
            tag="(0028,0010)",
        )
    return rows, columns


def frame_count(ds: Dataset) -> int:
    """NumberOfFrames (1 when absent), checked as :func:`frame_table` checks it: a whole number up to
    :data:`MAX_FRAMES` that the pixel bytes present can hold.

    Raises
    ------
    InvalidDicomFileError
        Naming the file and (0028,0008).
    """
    rows, columns = frame_size(ds)
    return _frame_count(ds, _Reader(source_name(ds)), rows, columns)


def frame_table(ds: Dataset) -> FrameTable:
    """Read the per-plane geometry and grouping attributes of one DICOM object.

    Parameters
    ----------
    ds
        A dataset, possibly read with ``stop_before_pixels=True``.

    Returns
    -------
    FrameTable
        One row per frame (per slice for a Siemens mosaic).

    Raises
    ------
    InvalidDicomFileError
        If Rows/Columns are missing, or a geometry, rescale or time element is
        present but malformed (wrong number of values, not a number), or a
        mosaic lacks the CSA header that says how to cut it.

    Examples
    --------
    >>> ds = pydicom.dcmread(path, stop_before_pixels=True)  # doctest: +SKIP
    >>> t = frame_table(ds)  # doctest: +SKIP
    >>> t.positions.shape  # doctest: +SKIP
    (1, 3)
    """
    reader = _Reader(source_name(ds))
    rows, columns = frame_size(ds)
    if "PerFrameFunctionalGroupsSequence" in ds or "SharedFunctionalGroupsSequence" in ds:
        return _enhanced_table(ds, reader, rows, columns)
    mosaic = _mosaic_layout(ds, reader, rows, columns)
    if mosaic is not None:
        return _mosaic_table(ds, reader, rows, columns, mosaic)
    return _classic_table(ds, reader, rows, columns)


_NOT_PARSED = object()
#: Multi-valued element values (a plain tuple check: the ``Sequence`` ABC check costs more than the parse).
_MULTI = (list, tuple, MultiValue)
_TEXT_VRS = frozenset({"DS", "IS", "CS", "TM", "DT", "UI"})  # ASCII by definition
_BINARY_VRS = {"US": "H", "SS": "h", "UL": "I", "SL": "i", "FL": "f", "FD": "d"}


@functools.cache
def _tag(keyword: str) -> BaseTag:
    """The tag of a keyword, as the BaseTag that pydicom's look-ups take without converting."""
    tag = pydicom.datadict.tag_for_keyword(keyword)
    if tag is None:
        raise KeyError(f"{keyword} is not a DICOM keyword")
    return BaseTag(tag)


def _parse_raw(element: RawDataElement) -> Any:
    """The value of a raw numeric, code-string or time element; _NOT_PARSED for other VRs.

    Text VRs give a str, or a list of str / float (DS, IS) when multi-valued;
    binary numbers give a number or a list.
    """
    if element.value is None:  # deferred: let pydicom read it
        return _NOT_PARSED
    vr = element.VR or pydicom.datadict.dictionary_VR(element.tag)
    raw: bytes = element.value
    if vr in _TEXT_VRS:
        parts = [p.strip(" \x00") for p in raw.decode("latin-1").split("\\")]
        if vr in ("DS", "IS"):
            values: list[Any] = [float(p) if p else None for p in parts]
        else:
            values = parts
        return values[0] if len(values) == 1 else values
    if vr in _BINARY_VRS:
        code = _BINARY_VRS[vr]
        count = len(raw) // struct.calcsize(code)
        numbers = struct.unpack(("<" if element.is_little_endian else ">") + code * count, raw[: count * struct.calcsize(code)])
        return numbers[0] if count == 1 else list(numbers)
    return _NOT_PARSED


#: A DT's date parts, the time after a whole date, and a UTC offset: YYYY[MM[DD[HHMMSS.F]]][&ZZXX].
_DT = re.compile(r"(\d{4})(?:(\d{2})(?:(\d{2})([^+-]*))?)?([+-]\d{4})?")
#: What a number or number list can hold; a malformed value made of anything else may be a name or an ID.
_NUMBER_TEXT = re.compile(r"(?i)([0-9+\-.e \\]|nan|inf)*")


def shown_value(value: Any) -> str:
    """A malformed header value as a message may show it: quoted when it holds only what numbers hold, else described.

    A value in the wrong element can be a patient's name or ID, and messages are stored
    (the manifest's ``errors`` table) and printed.

    Examples
    --------
    >>> print(shown_value(["1.5", "2..0"]))
    '1.5\\2..0'
    >>> print(shown_value("DOE^JANE"))
    not a number (8 characters, not shown)
    """
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple, MultiValue)):
        text = "\\".join("" if v is None else str(v) for v in value)
    else:
        text = value.decode("latin-1") if isinstance(value, bytes) else str(value)
    if len(text) <= 64 and _NUMBER_TEXT.fullmatch(text):
        return f"'{text}'"
    return f"not a number ({len(text)} characters, not shown)"


class _Reader:
    """Typed element access that names the file and tag when a value is malformed."""

    def __init__(self, path: str) -> None:
        self.path = path

    def _fail(self, item: Dataset, keyword: str, expected: str) -> InvalidDicomFileError:
        tag = pydicom.datadict.tag_for_keyword(keyword)
        tag_text = f"({tag >> 16:04X},{tag & 0xFFFF:04X})" if tag is not None else keyword
        try:
            shown = shown_value(item[keyword].value) if keyword in item else "absent"
        except (ValueError, TypeError):
            shown = "unreadable"
        return InvalidDicomFileError(
            f"{self.path}: {tag_text} {keyword} is {shown}, expected {expected}; the header is malformed, fix or exclude the file",
            path=self.path,
            tag=tag_text,
        )

    def _value(self, item: Dataset, keyword: str, expected: str) -> Any:
        """The element's value, None when absent or empty.

        Numbers, code strings and times still raw from the file are parsed
        here, because pydicom's general value conversion is most of the cost of
        reading a classic header; anything else goes through pydicom.
        """
        try:
            if not isinstance(item, Dataset):  # a read-only look-alike (the indexer's lean header view)
                value = item.get(keyword)
            else:
                element = item.get_item(_tag(keyword), keep_deferred=True)
                if element is None:
                    return None
                value = _parse_raw(element) if isinstance(element, RawDataElement) else _NOT_PARSED
                if value is _NOT_PARSED:
                    value = item[_tag(keyword)].value
        except (ValueError, TypeError, struct.error) as exc:
            raise self._fail(item, keyword, expected) from exc
        return None if value is None or value == "" else value

    def numbers(self, item: Dataset, keyword: str, expected: str) -> list[float] | None:
        """Every value of a numeric element, finite, or None when absent or empty."""
        value = self._value(item, keyword, expected)
        if value is None:
            return None
        try:
            numbers = [float(v) for v in (value if isinstance(value, _MULTI) else [value])]
        except (ValueError, TypeError) as exc:
            raise self._fail(item, keyword, expected) from exc
        if not all(map(math.isfinite, numbers)):
            raise self._fail(item, keyword, expected)
        return numbers

    def floats(self, item: Dataset, keyword: str, n: int) -> np.ndarray | None:
        """``n`` numbers of a multi-valued element, or None when absent or empty."""
        numbers = self.numbers(item, keyword, f"{n} finite numbers")
        if numbers is None:
            return None
        if len(numbers) != n:
            raise self._fail(item, keyword, f"{n} finite numbers")
        return np.array(numbers, dtype=np.float64)

    def number(self, item: Dataset, keyword: str) -> float | None:
        """The first value of a numeric element, or None when absent or empty."""
        value = self._value(item, keyword, "a number")
        if value is None:
            return None
        try:
            if isinstance(value, _MULTI):
                if len(value) == 0:
                    return None
                value = value[0]
            out = float(value)
        except (ValueError, TypeError) as exc:
            raise self._fail(item, keyword, "a number") from exc
        if not math.isfinite(out):
            raise self._fail(item, keyword, "a finite number")
        return out

    def integer(self, item: Dataset, keyword: str) -> int | None:
        value = self.number(item, keyword)
        return None if value is None else int(value)

    def moment(self, item: Dataset, keyword: str) -> float | None:
        """Seconds since 0001-01-01 of a DT (``*DateTime``), or of AcquisitionTime on its AcquisitionDate;
        the time of day alone where no date is given. None if absent.

        A DT is YYYY[MM[DD[HH[MM[SS[.F]]]]]][&ZZXX] (PS3.5 Table 6.2-1): a part
        left out takes its lowest value, and the UTC offset is ignored.
        """
        is_dt = keyword.endswith("DateTime")
        expected = "a date and time YYYYMMDDHHMMSS.FFFFFF" if is_dt else "a time HHMMSS.FFFFFF"
        value = self._value(item, keyword, expected)
        if value is None:
            return None
        text = str(value).strip()
        if is_dt:
            match = _DT.fullmatch(text)
            if match is None:
                raise self._fail(item, keyword, expected)
            year, month, day, text = match.group(1), match.group(2) or "01", match.group(3) or "01", match.group(4) or "00"
            date = year + month + day
        else:
            date = str(self._value(item, "AcquisitionDate", "a date YYYYMMDD") or "").strip().replace(".", "")
        text = text.split("+")[0].split("-")[0].replace(":", "")
        try:
            hh, mm, ss = int(text[0:2]), int(text[2:4] or 0), float(text[4:] or 0)
        except ValueError as exc:
            raise self._fail(item, keyword, expected) from exc
        day_number = 0
        if date:  # the date orders time points across midnight
            try:
                day_number = datetime.date(int(date[0:4]), int(date[4:6]), int(date[6:8])).toordinal()
            except ValueError as exc:
                raise self._fail(item, keyword if is_dt else "AcquisitionDate", expected if is_dt else "a date YYYYMMDD") from exc
        return day_number * 86400.0 + hh * 3600.0 + mm * 60.0 + ss

    def kind(self, item: Dataset, keyword: str) -> str:
        """Value 3 of ImageType / FrameType, upper-case; "" if absent."""
        value = self._value(item, keyword, "code strings")
        if value is None or isinstance(value, str):
            return ""
        return str(value[2]).strip().upper() if len(value) > 2 else ""

    def codes(self, item: Dataset, keyword: str) -> list[str]:
        """All values of a code string element, upper-case; [] if absent."""
        value = self._value(item, keyword, "code strings")
        if value is None:
            return []
        return [str(v).strip().upper() for v in ([value] if isinstance(value, str) else value)]


def _temporal(reader: _Reader, items: Sequence[Dataset], enhanced: bool = False) -> float:
    """The first time key found, in the order documented on FrameTable.temporal (the cardiac trigger delay of
    an enhanced frame's Cardiac Synchronization macro only where there is one: a classic file has none)."""
    keys: tuple[tuple[str, Callable[[Dataset, str], float | None]], ...] = (
        ("TemporalPositionIdentifier", reader.number),
        ("TemporalPositionIndex", reader.number),
        *((("NominalCardiacTriggerDelayTime", reader.number),) if enhanced else ()),
        ("TriggerTime", reader.number),
        ("FrameAcquisitionDateTime", reader.moment),
        ("AcquisitionDateTime", reader.moment),
        ("AcquisitionTime", reader.moment),
    )
    for keyword, read in keys:
        for item in items:
            value = read(item, keyword)
            if value is not None:
                return value
    return np.nan


def _is_philips(reader: _Reader, ds: Dataset) -> bool:
    element = ds.get_item(_tag("Manufacturer"), keep_deferred=True) if isinstance(ds, Dataset) else None
    if isinstance(element, RawDataElement) and element.value is not None:  # an ASCII word: no charset decoding needed
        return b"PHILIPS" in element.value.upper()
    return "PHILIPS" in str(reader._value(ds, "Manufacturer", "text") or "").upper()


def _or_nan(value: np.ndarray | float | None, n: int = 1) -> np.ndarray | float:
    if value is None:
        return np.full(n, np.nan) if n > 1 else np.nan
    return value


#: Frames one object may declare: every per-frame array is allocated from this count.
MAX_FRAMES = 1 << 20
_PIXEL_DATA = 0x7FE00010


def _pixel_bytes(ds: Dataset) -> tuple[int, bool] | None:
    """(bytes of pixel data present, whether encapsulated), or None when the pixel data was not read."""
    if not isinstance(ds, Dataset) or _PIXEL_DATA not in ds:
        return None
    element = ds.get_item(_PIXEL_DATA, keep_deferred=True)
    if isinstance(element, RawDataElement):
        undefined = element.length == 0xFFFFFFFF
        if element.value is None:  # deferred: its length was read from the file, or is bounded by the file's
            if not undefined:
                return int(element.length), False
            filename = getattr(ds, "filename", None)
            return (os.path.getsize(filename), True) if isinstance(filename, str) and os.path.isfile(filename) else None
        return len(element.value), undefined
    return len(element.value or b""), bool(element.is_undefined_length)


def _frame_count(ds: Dataset, reader: _Reader, rows: int, columns: int) -> int:
    """NumberOfFrames, checked before anything is allocated per frame: a whole number up to
    :data:`MAX_FRAMES` that the pixel bytes present can hold (each frame of encapsulated data
    takes at least an 8-byte item header)."""
    value = reader.number(ds, "NumberOfFrames")
    if value is not None and (value != int(value) or not 0 <= value <= MAX_FRAMES):
        raise reader._fail(ds, "NumberOfFrames", f"a whole number from 1 to {MAX_FRAMES}")
    n = int(value or 1)
    present = _pixel_bytes(ds)
    if present is None:
        return n
    available, encapsulated = present
    bits = reader.integer(ds, "BitsAllocated") or 8
    samples = reader.integer(ds, "SamplesPerPixel") or 1
    if samples == 3 and str(ds.get("PhotometricInterpretation", "")).strip() == "YBR_FULL_422":
        samples = 2  # uncompressed 4:2:2 holds two values per pixel: Y for each, Cb and Cr for every other
    needed = n * 8 if encapsulated else (n * rows * columns * samples * max(bits, 1) + 7) // 8
    if needed > available:
        raise InvalidDicomFileError(
            f"{reader.path}: (0028,0008) Number of Frames {n} of {rows}x{columns} needs at least {needed} bytes "
            f"of pixel data, the file holds {available}; the header lies or the file is truncated",
            path=reader.path,
            tag="(0028,0008)",
        )
    return n


def _classic_table(ds: Dataset, reader: _Reader, rows: int, columns: int) -> FrameTable:
    n = _frame_count(ds, reader, rows, columns)
    ones = np.ones(n)
    slope = reader.number(ds, "RescaleSlope")
    intercept = reader.number(ds, "RescaleIntercept")
    return FrameTable(
        rows=rows,
        columns=columns,
        positions=np.tile(_or_nan(reader.floats(ds, "ImagePositionPatient", 3), 3), (n, 1)),
        orientations=np.tile(_or_nan(reader.floats(ds, "ImageOrientationPatient", 6), 6), (n, 1)),
        pixel_spacing=np.tile(_or_nan(reader.floats(ds, "PixelSpacing", 2), 2), (n, 1)),
        echo=ones * _or_nan(reader.number(ds, "EchoNumbers")),
        temporal=ones * _temporal(reader, [ds]),
        kind=(reader.kind(ds, "ImageType"),) * n,
        frame_numbers=np.arange(1, n + 1, dtype=np.int64),
        mosaic=None,
        instance=ones * _or_nan(reader.number(ds, "InstanceNumber")),
        rescale_slope=ones * (1.0 if slope is None else slope),
        rescale_intercept=ones * (0.0 if intercept is None else intercept),
        philips_scale_slope=ones * (scale_slope(ds) if _is_philips(reader, ds) else np.nan),
    )


def functional_item(ds: Dataset, frame: int, sequence: str) -> Dataset | None:
    """The item of a functional group macro (e.g. ``"FrameVOILUTSequence"``) for a 0-based frame.

    Looks in the frame's Per-frame Functional Groups item, then in the Shared
    Functional Groups; None when neither has it (or the object is not enhanced).
    """
    per_frame = ds.get("PerFrameFunctionalGroupsSequence") or []
    shared = ds.get("SharedFunctionalGroupsSequence") or []
    return _functional_item(per_frame[frame] if frame < len(per_frame) else None, shared[0] if len(shared) else None, sequence)


def _functional_item(frame: Dataset | None, shared: Dataset | None, sequence: str) -> Dataset | None:
    """The one item of a functional group macro, per-frame first, then shared."""
    for group in (frame, shared):
        if group is not None and sequence in group and len(group[sequence].value) > 0:
            return group[sequence].value[0]
    return None


def _frame_type_item(frame: Dataset | None, shared: Dataset | None) -> Dataset | None:
    """The item holding FrameType: MR/CT/... Image Frame Type Sequence, whichever is used."""
    for group in (frame, shared):
        if group is None:
            continue
        for element in group:
            if element.VR == "SQ" and len(element.value) > 0 and "FrameType" in element.value[0]:
                return element.value[0]
    return None


def _enhanced_table(ds: Dataset, reader: _Reader, rows: int, columns: int) -> FrameTable:
    n = _frame_count(ds, reader, rows, columns)
    shared_seq = ds.get("SharedFunctionalGroupsSequence") or []
    shared = shared_seq[0] if len(shared_seq) else None
    per_frame: list[Dataset | None] = list(ds.get("PerFrameFunctionalGroupsSequence") or [])
    if per_frame and len(per_frame) != n:
        raise InvalidDicomFileError(
            f"{reader.path}: (5200,9230) Per-frame Functional Groups Sequence has {len(per_frame)} items, "
            f"expected NumberOfFrames = {n}; the file is truncated or inconsistent",
            path=reader.path,
            tag="(5200,9230)",
        )
    per_frame = per_frame or [None] * n
    positions = np.full((n, 3), np.nan)
    orientations = np.full((n, 6), np.nan)
    spacing = np.full((n, 2), np.nan)
    echo = np.full(n, np.nan)
    temporal = np.full(n, np.nan)
    slope = np.ones(n)
    intercept = np.zeros(n)
    philips = _is_philips(reader, ds)
    philips_slope = np.full(n, scale_slope(ds) if philips else np.nan)  # per frame below, where given
    kinds: list[str] = []
    top_echo = reader.number(ds, "EchoNumbers")
    top_kind = reader.kind(ds, "ImageType")
    for i, frame in enumerate(per_frame):
        plane = _functional_item(frame, shared, "PlanePositionSequence")
        if plane is not None:
            positions[i] = _or_nan(reader.floats(plane, "ImagePositionPatient", 3), 3)
        orient = _functional_item(frame, shared, "PlaneOrientationSequence")
        if orient is not None:
            orientations[i] = _or_nan(reader.floats(orient, "ImageOrientationPatient", 6), 6)
        measures = _functional_item(frame, shared, "PixelMeasuresSequence")
        if measures is not None:
            spacing[i] = _or_nan(reader.floats(measures, "PixelSpacing", 2), 2)
        mr_echo = _functional_item(frame, shared, "MREchoSequence")
        effective_te = None if mr_echo is None else reader.number(mr_echo, "EffectiveEchoTime")
        echo[i] = _or_nan(top_echo if top_echo is not None else effective_te)
        content = _functional_item(frame, shared, "FrameContentSequence")
        cardiac = _functional_item(frame, shared, "CardiacSynchronizationSequence")
        temporal[i] = _temporal(reader, [item for item in (content, cardiac, ds) if item is not None], enhanced=cardiac is not None)
        transform = _functional_item(frame, shared, "PixelValueTransformationSequence") or ds
        s, b = reader.number(transform, "RescaleSlope"), reader.number(transform, "RescaleIntercept")
        slope[i] = 1.0 if s is None else s
        intercept[i] = 0.0 if b is None else b
        frame_slope = scale_slope(frame) if philips else np.nan
        if np.isfinite(frame_slope):
            philips_slope[i] = frame_slope
        frame_type = _frame_type_item(frame, shared)
        kinds.append(reader.kind(frame_type, "FrameType") if frame_type is not None else top_kind)
    return FrameTable(
        rows=rows,
        columns=columns,
        positions=positions,
        orientations=orientations,
        pixel_spacing=spacing,
        echo=echo,
        temporal=temporal,
        kind=tuple(kinds),
        frame_numbers=np.arange(1, n + 1, dtype=np.int64),
        mosaic=None,
        instance=np.full(n, _or_nan(reader.number(ds, "InstanceNumber"))),
        rescale_slope=slope,
        rescale_intercept=intercept,
        philips_scale_slope=philips_slope,
    )


@functools.cache
def _csareader() -> Any:
    """nibabel's CSA header reader, imported for the first mosaic only: nibabel's import costs more than most indexes' headers."""
    with warnings.catch_warnings():  # nibabel.nicom warns on import that its readers are experimental
        warnings.simplefilter("ignore", UserWarning)
        from nibabel.nicom import csareader
    return csareader


def _csa_image_header(ds: Dataset, reader: _Reader) -> dict[str, Any] | None:
    csareader = _csareader()
    try:
        return csareader.get_csa_header(ds, "image")
    except (csareader.CSAReadError, ValueError, TypeError, IndexError) as exc:
        raise InvalidDicomFileError(
            f"{reader.path}: (0029,1010) Siemens CSA Image Header cannot be parsed ({exc}); "
            "the mosaic cannot be unpacked, exclude the file",
            path=reader.path,
            tag="(0029,1010)",
        ) from exc


def _mosaic_layout(ds: Dataset, reader: _Reader, rows: int, columns: int) -> tuple[int, int] | None:
    """(tiles per side, slices) of a Siemens mosaic, or None when the image is not one."""
    if "MOSAIC" not in reader.codes(ds, "ImageType"):
        return None
    header = _csa_image_header(ds, reader)
    count = _csareader().get_n_mosaic(header) if header else None
    if not count:
        raise InvalidDicomFileError(
            f"{reader.path}: (0008,0008) ImageType says MOSAIC but the CSA Image Header (0029,1010) "
            "has no NumberOfImagesInMosaic; the mosaic cannot be unpacked, exclude the file",
            path=reader.path,
            tag="(0029,1010)",
        )
    side = int(np.ceil(np.sqrt(count)))
    if rows % side or columns % side:
        raise InvalidDicomFileError(
            f"{reader.path}: mosaic of {rows}x{columns} pixels cannot hold {count} tiles "
            f"on a {side}x{side} grid; the CSA header and Rows/Columns disagree",
            path=reader.path,
            tag="(0029,1010)",
        )
    return side, int(count)


def _mosaic_table(ds: Dataset, reader: _Reader, rows: int, columns: int, mosaic: tuple[int, int]) -> FrameTable:
    side, count = mosaic
    base = _classic_table(ds, reader, rows // side, columns // side)
    iop, spacing, ipp = base.orientations[0], base.pixel_spacing[0], base.positions[0]
    positions = np.full((count, 3), np.nan)
    if np.all(np.isfinite(np.concatenate([iop, spacing, ipp]))):
        # ImagePositionPatient of a mosaic names the corner of the whole mosaic
        # as if it were one large image centred on the slices; move it to tile 1.
        shift_rows = (rows - rows // side) / 2.0
        shift_cols = (columns - columns // side) / 2.0
        origin = ipp + iop[:3] * spacing[1] * shift_cols + iop[3:] * spacing[0] * shift_rows
        header = _csa_image_header(ds, reader)
        normal = _csareader().get_slice_normal(header) if header else None
        normal = slice_normal(iop) if normal is None else np.asarray(normal, dtype=np.float64)
        step = reader.number(ds, "SpacingBetweenSlices") or reader.number(ds, "SliceThickness") or 1.0
        positions = origin + np.arange(count)[:, None] * step * normal
    return FrameTable(
        rows=base.rows,
        columns=base.columns,
        positions=positions,
        orientations=np.tile(iop, (count, 1)),
        pixel_spacing=np.tile(spacing, (count, 1)),
        echo=np.full(count, base.echo[0]),
        temporal=np.full(count, base.temporal[0]),
        kind=base.kind[:1] * count,
        frame_numbers=np.ones(count, dtype=np.int64),
        mosaic=mosaic,
        instance=np.full(count, base.instance[0]),
        rescale_slope=np.full(count, base.rescale_slope[0]),
        rescale_intercept=np.full(count, base.rescale_intercept[0]),
        philips_scale_slope=np.full(count, base.philips_scale_slope[0]),
    )
