"""From one file's header to its manifest rows.

The plain top-level values (UIDs, sizes, rescale, descriptions) are decoded
here straight from the raw element bytes, which is several times cheaper than
pydicom's general conversion; per-frame geometry and the ``series_key`` come
from :func:`dicomml.dicom.frame_table` and :func:`dicomml.dicom.series_key.group_keys`
on the lazily decoded pydicom Dataset, so that the indexer and assembly agree.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
import struct
from collections.abc import Iterator
from typing import Any

import numpy as np
from pydicom.charset import convert_encodings, decode_bytes
from pydicom.datadict import dictionary_description, dictionary_VM, dictionary_VR
from pydicom.dataset import Dataset
from pydicom.uid import UID

from dicomml.dicom.frames import frame_table, functional_item, header_numbers, header_value, shown_value, source_name
from dicomml.dicom.series_key import group_keys
from dicomml.errors import InvalidDicomFileError
from dicomml.indexer.annotations import annotation_fields
from dicomml.indexer.header import Header, tag_text
from dicomml.indexer.image2d import image2d_fields
from dicomml.indexer.privacy import patient_key
from dicomml.indexer.schema import ANNOTATION_MODALITIES, FIELDS, PHI_FIELDS

__all__ = ["FIELDS", "PHI_FIELDS", "DICOMDIR_SOP_CLASS", "instance_rows"]

#: Media Storage Directory Storage: a DICOMDIR, recognized and not indexed as an image.
DICOMDIR_SOP_CLASS = "1.2.840.10008.1.3.10"

_PATIENT_ID = 0x00100020
#: Columns that describe and decide nothing (no geometry, grouping, decoding, patient key or choice of series): a
#: malformed value (a date of 10 characters, a VR that lies) is stored as null rather than losing the file's rows.
_DESCRIPTIVE = frozenset(
    {
        "study_date",
        "study_description",
        "series_description",
        "body_part",
        "manufacturer",
        "model",
        "kvp",
        "convolution_kernel",
        "contrast_agent",
        "patient_position",
        "image_type",
        "rescale_type",
        *(column for column in PHI_FIELDS if column != "patient_id"),  # the ID makes patient_key: read as strictly
    }
)
#: Per-frame and Shared Functional Groups Sequences: an enhanced object, whose frames carry their own values.
_FUNCTIONAL_GROUPS = (0x52009230, 0x52009229)
#: Columns an enhanced object keeps in its functional groups rather than at the top level:
#: column -> (functional group sequence, keyword, kind), read from a group's first frame.
_FRAME_FIELDS = {
    "echo_time": ("MREchoSequence", "EffectiveEchoTime", "float"),
    "slice_thickness": ("PixelMeasuresSequence", "SliceThickness", "float"),
    "window_center": ("FrameVOILUTSequence", "WindowCenter", "floats"),
    "window_width": ("FrameVOILUTSequence", "WindowWidth", "floats"),
    "trigger_time": ("CardiacSynchronizationSequence", "NominalCardiacTriggerDelayTime", "float"),
    "acquisition_time": ("FrameContentSequence", "FrameAcquisitionDateTime", "time"),
}
_ROWS, _COLUMNS = 0x00280010, 0x00280011
_CHARSET = 0x00080005
_PLAIN_CHARSETS = frozenset({"", "ISO_IR 6", "ISO_IR 100", "ISO_IR 192"})
_CHARSET_VRS = frozenset({"LO", "LT", "PN", "SH", "ST", "UC", "UT"})
_BINARY = {"US": "H", "SS": "h", "UL": "L", "SL": "l", "FL": "f", "FD": "d"}
#: Image Pixel elements without which no decoder can read the pixels (column -> tag).
_PIXEL_MODULE = {
    "rows": 0x00280010,
    "samples_per_pixel": 0x00280002,
    "photometric_interpretation": 0x00280004,
    "bits_allocated": 0x00280100,
    "pixel_representation": 0x00280103,
}
_PIXEL_DATA = 0x7FE00010
#: Read by frame_table; their VR is checked here, as the FIELDS' are.
_GEOMETRY_TAGS = (0x00200032, 0x00200037, 0x00280030)
_SINGLE_VALUED_VRS = frozenset({"LT", "ST", "UT", "UR"})
#: Longest value of these code VRs (PS3.5 6.2); a longer one means the length field lied. Free text (LO, SH)
#: is not held to it: real archives write longer IDs and descriptions, which pydicom reads.
_MAX_CHARS = {"CS": 16, "UI": 64, "DA": 8, "AS": 4}
#: Bytes no text value holds (text keeps tabs, line breaks and ISO 2022 escapes) but every element header does.
_SWALLOWED = re.compile(rb"[\x00-\x08\x0e-\x1a\x1c-\x1f]")


@functools.lru_cache(maxsize=4096)
def _dictionary_vm(tag: int) -> str:
    try:
        return dictionary_VM(tag)
    except KeyError:
        return "1-n"


@functools.lru_cache(maxsize=4096)
def _dictionary_vrs(tag: int) -> tuple[str, ...]:
    """The VRs the DICOM dictionary allows for a tag; () for private or unknown tags."""
    try:
        return tuple(dictionary_VR(tag).split(" or "))
    except KeyError:
        return ()


class _Values:
    """Decode top-level raw elements by dictionary VR, naming the tag when one is malformed."""

    def __init__(self, header: Header, path: str, memo: dict[tuple[Any, ...], Any]) -> None:
        self.header = header
        self.memo = memo
        self.little = header.little_endian
        self.path = path
        self.charsets: list[str] = []
        self.plain = True
        self.text_encoding = "latin-1"
        if _CHARSET in header.elements:
            self.charsets = self.strings(_CHARSET)
            self.plain = all(c in _PLAIN_CHARSETS for c in self.charsets)
            self.text_encoding = "utf-8" if "ISO_IR 192" in self.charsets else "latin-1"

    def fail(self, tag: int, problem: str) -> InvalidDicomFileError:
        return InvalidDicomFileError(
            f"{self.path}: {tag_text(tag)} {dictionary_description(tag)} {problem}; the header is malformed, fix or exclude the file",
            path=self.path,
            tag=tag_text(tag),
        )

    def vr(self, tag: int) -> str:
        """The element's VR as decoded: its dictionary VR, checked against the VR in the file."""
        vr = self.header.elements[tag][0]
        allowed = _dictionary_vrs(tag)
        if not allowed:
            return vr or "UN"
        if vr not in (None, "UN", *allowed):
            raise self.fail(tag, f"has VR {vr}, expected {' or '.join(allowed)}")
        return allowed[0] if vr in (None, "UN") else vr

    def strings(self, tag: int) -> list[str]:
        """The element's values as strings (binary numbers too), [] when empty."""
        vr = self.vr(tag)
        _, start, end, _ = self.header.elements[tag]
        value = self.header.buf[start:end]
        if vr in _BINARY:
            size = struct.calcsize(_BINARY[vr])
            if len(value) % size:
                raise self.fail(tag, f"has {len(value)} bytes, not a multiple of {size}")
            fmt = ("<" if self.little else ">") + _BINARY[vr] * (len(value) // size)
            return [repr(v) for v in struct.unpack(fmt, value)]
        if vr in _CHARSET_VRS and not self.plain:
            text = decode_bytes(value, convert_encodings(self.charsets), {0x5C, 0x3D, 0x5E})  # \\ = ^
        else:
            text = value.decode(self.text_encoding, "replace")
        text = text.strip(" \x00")
        if not text:
            return []
        if vr in _MAX_CHARS and len(text) > _MAX_CHARS[vr] * (text.count("\\") + 1) + text.count("\\"):
            raise self.fail(tag, f"is {len(text)} characters long, more than a {vr} value can hold")
        if vr in _SINGLE_VALUED_VRS or "\\" not in text:
            return [text]
        return [v.strip(" \x00") for v in text.split("\\")]

    def get(self, tag: int, kind: str) -> Any:
        """The value of ``tag`` as ``kind`` (see FIELDS), None when absent or empty.

        Files of one series repeat most values byte for byte, so decoded values
        are remembered in ``memo`` by everything the decoding depends on.
        """
        element = self.header.elements.get(tag)
        if element is None:
            return None
        vr, start, end, _ = element
        key = (tag, kind, vr, self.little, self.text_encoding, self.plain, self.header.buf[start:end])
        if key not in self.memo:
            self.memo[key] = self._decode(tag, kind)
        return self.memo[key]

    def descriptive(self, tag: int, kind: str) -> Any:
        """:meth:`get` for a :data:`_DESCRIPTIVE` column: None when the value is malformed text.

        A value holding control bytes is no text a writer typed: a length that
        lies swallowed the next elements, and the file is refused as before.
        """
        try:
            return self.get(tag, kind)
        except InvalidDicomFileError:
            _, start, end, _ = self.header.elements[tag]
            if _SWALLOWED.search(self.header.buf[start:end].strip(b" \x00")):
                raise
            return None  # one bad date or description does not cost the file its rows

    def _decode(self, tag: int, kind: str) -> Any:
        values = self.strings(tag)
        if not values:
            return None
        if kind in ("int", "float") and len(values) > 1 and _dictionary_vm(tag) == "1":
            raise self.fail(tag, f"has {len(values)} values, expected 1")
        if kind == "text":
            return "\\".join(values)
        if kind == "texts":
            return values
        numbers = self.numbers(tag, values)
        if kind == "floats":
            return numbers
        return int(numbers[0]) if kind == "int" else numbers[0]

    def numbers(self, tag: int, values: list[str]) -> list[float]:
        try:
            numbers = [float(v) for v in values]
        except ValueError as exc:
            raise self.fail(tag, f"is {shown_value(values)}, expected numbers") from exc
        if not all(math.isfinite(v) for v in numbers):
            raise self.fail(tag, f"is {shown_value(values)}, expected finite numbers")
        return numbers


def _columns(values: _Values, fields: dict[str, tuple[int, str]]) -> dict[str, Any]:
    """The values of ``fields`` by column; a malformed one of a :data:`_DESCRIPTIVE` column is None."""
    try:
        return {column: values.get(tag, kind) for column, (tag, kind) in fields.items()}
    except InvalidDicomFileError:  # rare: read again (decoded values are memoized), descriptive columns forgiving
        return {
            column: values.descriptive(tag, kind) if column in _DESCRIPTIVE else values.get(tag, kind)
            for column, (tag, kind) in fields.items()
        }


def _check_pixel_module(header: Header, values: _Values, base: dict[str, Any], path: str) -> None:
    """The Image Pixel elements a decoder needs are there, and native pixel data is long enough."""
    for column, tag in _PIXEL_MODULE.items():
        if base.get(column) is None and not (column == "pixel_representation" and header.pixel_tag != _PIXEL_DATA):
            raise InvalidDicomFileError(
                f"{path}: {tag_text(tag)} {dictionary_description(tag)} is missing from an image; "
                "the pixel data cannot be decoded, fix or exclude the file",
                path=path,
                tag=tag_text(tag),
            )
    frames = base["number_of_frames"] or 1
    if header.pixel_items is not None:  # encapsulated: every frame needs a fragment after the offset table
        if frames > header.pixel_items - 1:
            raise InvalidDicomFileError(
                f"{path}: (0028,0008) Number of Frames is {frames}, but the encapsulated pixel data holds "
                f"{max(0, header.pixel_items - 1)} fragments; the header lies or the file is truncated",
                path=path,
                tag="(0028,0008)",
            )
        return
    if header.pixel_length is None:
        return
    bits = base["rows"] * values.get(_COLUMNS, "int") * frames * base["samples_per_pixel"] * base["bits_allocated"]
    expected = (bits + 7) // 8
    if header.pixel_length < expected:
        raise InvalidDicomFileError(
            f"{path}: (7FE0,0010) Pixel Data holds {header.pixel_length} bytes, expected {expected} "
            f"from Rows, Columns, frames, samples and Bits Allocated; the file is truncated or its header corrupt",
            path=path,
            tag="(7FE0,0010)",
        )


def _has_pixels(sop_class: str | None) -> bool:
    """Whether objects of this SOP class carry pixel data (images, segmentations, parametric maps)."""
    name = UID(sop_class or "").name
    return any(word in name for word in ("Image Storage", "Segmentation Storage", "Parametric Map Storage"))


def _finite_list(values: list[float]) -> list[float] | None:
    return values if all(math.isfinite(v) for v in values) else None


#: Row templates kept per batch and file context (one per series, as a rule).
_TEMPLATES = 8
_SOP_INSTANCE, _INSTANCE_NUMBER, _POSITION = 0x00080018, 0x00200013, 0x00200032
#: Elements that differ in every file of a series, with the VRs a template decodes them under; the
#: columns they feed (``sop_instance_uid``, ``instance_number``, ``image_position``) are decoded anew.
_PER_INSTANCE = {_SOP_INSTANCE: ("UI", None), _INSTANCE_NUMBER: ("IS", None), _POSITION: ("DS", None)}


class _Reads(dict[Any, Any]):
    """A header's elements that note every tag looked up, present or not, and whether anyone iterated them."""

    def __init__(self, elements: dict[int, tuple[str | None, int, int, bool]]) -> None:
        super().__init__(elements)
        self.read: set[Any] = set()
        self.iterated = False

    def __getitem__(self, tag: Any) -> Any:
        self.read.add(tag)
        return super().__getitem__(tag)

    def get(self, tag: Any, default: Any = None) -> Any:
        self.read.add(tag)
        return super().get(tag, default)

    def __contains__(self, tag: object) -> bool:
        self.read.add(tag)
        return super().__contains__(tag)

    def __iter__(self) -> Iterator[Any]:
        self.iterated = True
        return super().__iter__()

    def __len__(self) -> int:
        self.iterated = True
        return super().__len__()

    def keys(self) -> Any:
        self.iterated = True
        return super().keys()

    def values(self) -> Any:
        self.iterated = True
        return super().values()

    def items(self) -> Any:
        self.iterated = True
        return super().items()


def _element_value(header: Header, tag: Any) -> tuple[str | None, bool, bytes] | None:
    element = header.elements.get(tag)
    if element is None:
        return None
    vr, start, end, implicit = element
    return vr, implicit, bytes(header.buf[start:end])


def _position(raw: bytes) -> list[float] | None:
    """ImagePositionPatient as frame_table reads it; None unless three plain finite numbers."""
    parts = [p.strip(" \x00") for p in raw.decode("latin-1").split("\\")]
    if len(parts) != 3 or not all(parts):
        return None
    try:
        numbers = [float(p) for p in parts]
    except ValueError:
        return None
    return numbers if all(map(math.isfinite, numbers)) else None


class _Template:
    """The row of a classic single-frame image, reused for a later file of the batch whose header holds
    byte for byte the same value in every element the row read (present or absent), but for the
    per-instance ones, which are decoded from that file."""

    def __init__(self, row: dict[str, Any], reads: _Reads, header: Header) -> None:
        self.row = row
        tags = sorted(tag for tag in reads.read if isinstance(tag, int) and tag not in _PER_INSTANCE)
        self.expected = [(tag, _element_value(header, tag)) for tag in tags]
        # A file whose walk was skipped for this header's layout shares its element table: then one gather compares all values.
        self.elements = header.elements
        present = [header.elements[tag] for tag in tags if tag in header.elements]
        self.offsets = np.concatenate([np.arange(start, end) for _, start, end, _ in present] or [np.zeros(0, np.intp)])
        self.values = np.frombuffer(header.buf, np.uint8)[self.offsets]
        # VR of each per-instance element present; a file must have the same ones, under a VR decoded as here
        self.per_instance = {tag: header.elements[tag][0] for tag in _PER_INSTANCE if tag in header.elements}

    @staticmethod
    def fits(rows: list[dict[str, Any]], reads: _Reads) -> bool:
        """Whether the rows of a file can serve as a template (one row, one frame, an image)."""
        if len(rows) != 1 or reads.iterated:
            return False
        row = rows[0]
        return row.get("n_frames") == 1 and row["frame_positions"] is None and row["modality"] not in ANNOTATION_MODALITIES

    def rows(self, header: Header, path: str, memo: dict[tuple[Any, ...], Any]) -> dict[str, Any] | None:
        """The row of ``header`` from this template, or None when it does not apply."""
        elements, buf = header.elements, header.buf
        if elements is self.elements:
            if not np.array_equal(np.frombuffer(buf, np.uint8)[self.offsets], self.values):
                return None
        else:
            for tag, expected in self.expected:
                element = elements.get(tag)
                if element is None or expected is None:
                    if element is not expected:
                        return None
                elif element[0] != expected[0] or element[3] != expected[1] or buf[element[1] : element[2]] != expected[2]:
                    return None
        for tag in _PER_INSTANCE:
            element = elements.get(tag)
            if element is None:
                if tag in self.per_instance:
                    return None
            elif self.per_instance.get(tag, "") != element[0] or element[0] not in _PER_INSTANCE[tag] or not header.value(tag).isascii():
                return None
        position = None
        if _POSITION in self.per_instance:
            position = _position(header.value(_POSITION))
            if position is None:
                return None
        values = _Values(header, path, memo)
        try:
            sop, number = values.get(_SOP_INSTANCE, "text"), values.get(_INSTANCE_NUMBER, "int")
        except InvalidDicomFileError:  # the full path raises it, in its own order
            return None
        row = dict(self.row)
        row["sop_instance_uid"], row["instance_number"], row["image_position"] = sop, number, position
        return row


def instance_rows(
    header: Header,
    path: str,
    folder: str,
    *,
    include_phi: bool,
    salt: bytes,
    memo: dict[tuple[Any, ...], Any] | None = None,
) -> list[dict[str, Any]]:
    """The ``instances`` rows of one file: one per volume group its frames fall in.

    Parameters
    ----------
    header
        The file's walked header.
    path, folder
        The file and its folder, as the manifest records them.
    include_phi
        Keep the direct identifiers (:data:`PHI_FIELDS`).
    salt
        Salt of ``patient_key``.
    memo
        Decoded values shared by the files of one batch (values are returned
        shared: do not mutate them).

    Returns
    -------
    list of dict
        Rows keyed by column name; geometry columns come from the frame table
        (first frame of each group), so enhanced objects have them too.

    Raises
    ------
    InvalidDicomFileError
        If a value the manifest needs is malformed, or an image lacks its
        pixel data (a truncated file). A malformed value of a column that
        only describes (a date, a description, a name) is None instead.
    """
    if memo is None:
        return _rows(header, path, folder, include_phi, salt, {})
    templates: list[_Template] = memo.setdefault(
        ("templates", folder, include_phi, salt, header.transfer_syntax, header.little_endian, header.implicit_vr)
        + (header.pixel_tag, header.pixel_length, header.pixel_items),
        [],
    )
    for template in templates:
        row = template.rows(header, path, memo)
        if row is not None:
            return [row]
    reads = _Reads(header.elements)
    rows = _rows(dataclasses.replace(header, elements=reads), path, folder, include_phi, salt, memo)
    if len(templates) < _TEMPLATES and _Template.fits(rows, reads):
        templates.append(_Template(rows[0], reads, header))
    return rows


def _rows(header: Header, path: str, folder: str, include_phi: bool, salt: bytes, memo: dict[tuple[Any, ...], Any]) -> list[dict[str, Any]]:
    values = _Values(header, path, memo)
    base = _columns(values, FIELDS)
    base["transfer_syntax_uid"] = header.transfer_syntax or None
    base["patient_key"] = patient_key(values.get(_PATIENT_ID, "text") or "", salt)
    if include_phi:
        base.update(_columns(values, PHI_FIELDS))
    rows_value = values.get(_ROWS, "int")
    base["rows"] = rows_value
    for tag in _GEOMETRY_TAGS:
        if tag in header.elements:
            values.vr(tag)
    annotation = base["modality"] in ANNOTATION_MODALITIES
    ds = header.dataset(path)
    if annotation:
        base.update(annotation_fields(ds))
    if header.pixel_tag is None and (rows_value is not None or _has_pixels(base["sop_class_uid"])):
        # the walk reached the end of the file without an element cut short: most likely written so, not truncated
        raise InvalidDicomFileError(
            f"{path}: no Pixel Data element (7FE0,0010) in a {UID(base['sop_class_uid'] or '').name or 'image'} object: "
            "a header-only object, not an image (the file ends cleanly after its last element); "
            "if it should hold an image, it was cut short: re-export it",
            path=path,
            tag="(7FE0,0010)",
        )
    if rows_value is None and header.pixel_tag is None:  # not an image: a structure set, a report
        return [base]
    _check_pixel_module(header, values, base, path)
    base.update(image2d_fields(values.get, header.elements, ds))
    table = frame_table(ds)
    base["columns"] = values.get(_COLUMNS, "int")
    base["mosaic_tiles"] = table.mosaic[0] if table.mosaic else None
    groups: dict[str | None, list[int]]
    if annotation:
        groups = {None: list(range(len(table)))}
    else:
        groups = {}
        keys = group_keys(
            table,
            series_uid=base["series_instance_uid"] or "",
            series_number=base["series_number"],
            sop_class=base["sop_class_uid"] or "",
            transfer_syntax=header.transfer_syntax,
            folder=folder,
        )
        for i, key in enumerate(keys):
            groups.setdefault(key, []).append(i)
    # Plain lists once per file: indexing numpy arrays value by value costs more than the rest of the row.
    positions, orientations = table.positions.tolist(), table.orientations.tolist()
    spacings, frame_numbers = table.pixel_spacing.tolist(), table.frame_numbers.tolist()
    slopes, intercepts = table.rescale_slope.tolist(), table.rescale_intercept.tolist()
    philips_slopes = table.philips_scale_slope.tolist()
    echoes, times = table.echo.tolist(), table.temporal.tolist()
    out = []
    for group, members in groups.items():
        first = members[0]
        row = dict(base)
        row["series_key"] = group
        row["n_frames"] = len(members)
        row["frame_numbers"] = [frame_numbers[i] for i in members] if len(groups) > 1 else None
        row["frame_positions"] = _finite_list([v for i in members for v in positions[i]]) if len(members) > 1 else None
        row["image_position"] = _finite_list(positions[first])
        row["image_orientation"] = _finite_list(orientations[first])
        row["pixel_spacing"] = _finite_list(spacings[first])
        row["rescale_slope"] = slopes[first]
        row["rescale_intercept"] = intercepts[first]
        row["philips_scale_slope"] = philips_slopes[first] if math.isfinite(philips_slopes[first]) else None
        row["echo_key"] = echoes[first] if math.isfinite(echoes[first]) else None
        row["temporal_key"] = times[first] if math.isfinite(times[first]) else None
        if any(tag in header.elements for tag in _FUNCTIONAL_GROUPS):
            row.update(_frame_fields(ds, frame_numbers[first] - 1, row))
        out.append(row)
    return out


def _frame_fields(ds: Dataset, frame: int, row: dict[str, Any]) -> dict[str, Any]:
    """The :data:`_FRAME_FIELDS` columns an enhanced object's top level leaves empty, from ``frame``'s functional groups."""
    out: dict[str, Any] = {}
    for column, (sequence, keyword, kind) in _FRAME_FIELDS.items():
        if row.get(column) is not None:
            continue
        item = functional_item(ds, frame, sequence)
        if kind == "time":  # the time of day of a DT, as AcquisitionTime holds it; else the object's AcquisitionDateTime
            value = (header_value(item, keyword) if item is not None else None) or header_value(ds, "AcquisitionDateTime")
            out[column] = str(value or "").strip()[8:] or None
        elif item is not None:
            numbers = header_numbers(item, keyword, path=source_name(ds))  # an item does not know its file
            out[column] = (numbers if kind == "floats" else numbers[0]) if numbers else None
    return out
