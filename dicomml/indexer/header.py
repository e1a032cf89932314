"""A lean, validating walk over a DICOM header, up to the pixel data.

pydicom's reader decodes every element it meets; the indexer needs a few
dozen values from each of millions of files. :func:`read_header` walks the
element headers of a buffer (the start of the file), checks that
every length fits inside the file, that tags ascend and that VRs are valid,
and records where each top-level element's value lies; values are decoded
only when asked for. It never allocates what a lying length asks
for, and a corrupt header raises :class:`~dicomml.errors.InvalidDicomFileError`
naming the byte offset and the tag.

Sequences are walked (to validate them and find their end) but decoded only
if someone reads them, through the pydicom :class:`~pydicom.dataset.Dataset`
that :meth:`Header.dataset` builds over the same bytes, making a
``RawDataElement`` only for the elements that are read.
"""

from __future__ import annotations

import copy
import struct
import zlib
from collections.abc import Callable, Iterator, MutableMapping
from dataclasses import dataclass
from typing import Any, BinaryIO

import numpy as np
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.tag import BaseTag

from dicomml.dicom.frames import shown_value
from dicomml.dicom.io import MAX_INFLATED
from dicomml.dicom.meta import LONG_VRS
from dicomml.errors import InvalidDicomFileError

__all__ = ["PREFIX_BYTES", "Header", "Layouts", "NeedMoreBytes", "is_dicom_prefix", "read_file_header", "read_header", "tag_text"]

_VRS = frozenset(b"AE AS AT CS DA DS DT FD FL IS LO LT OB OD OF OL OV OW PN SH SL SQ SS ST SV TM UC UI UL UN UR US UT UV".split())
#: Explicit VRs whose length is 4 bytes, after 2 reserved bytes.
_VR_TEXT = {vr: vr.decode() for vr in _VRS}
_SHORT_VR_TEXT = {vr: text for vr, text in _VR_TEXT.items() if vr not in LONG_VRS}
_UNDEFINED = 0xFFFFFFFF
_ITEM, _ITEM_END, _SEQUENCE_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
_PIXEL_TAGS = frozenset({0x7FE00008, 0x7FE00009, 0x7FE00010})
_IMPLICIT_LE = "1.2.840.10008.1.2"
_EXPLICIT_BE = "1.2.840.10008.1.2.2"
_DEFLATED = "1.2.840.10008.1.2.1.99"
#: File meta elements whose values the walk uses: SOP class and transfer syntax.
_META_USED = frozenset({0x00020002, 0x00020010})
#: Nesting deeper than this is treated as corruption, not recursed into.
MAX_DEPTH = 16
#: Bytes read first; most classic headers fit, and the walk asks for more when not.
PREFIX_BYTES = 64 * 1024


class NeedMoreBytes(Exception):
    """The buffer holds only the start of the file and the walk needs bytes past it."""


def tag_text(tag: int) -> str:
    """``"(gggg,eeee)"`` of a tag number."""
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


@dataclass
class Header:
    """The header of one DICOM file, undecoded.

    Attributes
    ----------
    buf
        The bytes walked (the file's start, up to at least the pixel data).
    elements
        Top-level data elements before the pixel data, by tag number:
        ``(VR or None when implicit, value start, value end, implicit)``; a
        sequence of undefined length ends before its delimiter.
    transfer_syntax
        TransferSyntaxUID of the file meta, ``""`` if the file has no meta.
    media_storage_sop_class
        MediaStorageSOPClassUID of the file meta, ``""`` if absent.
    little_endian, implicit_vr
        Encoding of the dataset.
    pixel_tag
        Tag of the pixel data element (7FE0,0010 / 0008 / 0009), or None.
    pixel_length
        Its length in bytes (``0xFFFFFFFF`` when encapsulated), or None.
    pixel_items
        Items of encapsulated pixel data (the offset table, then fragments), or None.
    pixel_offset
        Offset of the pixel data value (after its element header) in the
        file, or in the inflated bytes of a deflated dataset; None without pixel data.
    """

    buf: bytes
    elements: dict[int, tuple[str | None, int, int, bool]]
    transfer_syntax: str
    media_storage_sop_class: str
    little_endian: bool
    implicit_vr: bool
    pixel_tag: int | None
    pixel_length: int | None
    pixel_items: int | None = None
    pixel_offset: int | None = None

    def value(self, tag: int) -> bytes:
        """The undecoded value bytes of a top-level element."""
        _, start, end, _ = self.elements[tag]
        return bytes(self.buf[start:end])

    def dataset(self, filename: str) -> Dataset:
        """A pydicom Dataset over the raw elements, built and decoded only as they are read (no file meta).

        Parameters
        ----------
        filename
            Recorded as ``ds.filename`` so that messages name the file.
        """
        ds = Dataset(_LazyElements(self))
        ds.set_original_encoding(self.implicit_vr, self.little_endian)
        ds.filename = filename
        return ds


class _LazyElements(MutableMapping[BaseTag, Any]):
    """The element mapping of a Dataset: a ``RawDataElement`` is made on first access.

    A header has ~100 top-level elements and frame_table reads ~15; making
    only those is most of the cost of handing a header to pydicom.
    """

    def __init__(self, header: Header) -> None:
        self._header = header
        self._made: dict[int, Any] = {}

    # Keys are plain ints: pydicom passes BaseTags, whose equality test (on every dict hit) runs in Python.
    def __getitem__(self, tag: int) -> Any:
        key = int(tag)
        made = self._made.get(key)
        if made is not None:
            return made
        vr, start, end, implicit = self._header.elements[key]
        raw = RawDataElement(BaseTag(key), vr, end - start, bytes(self._header.buf[start:end]), start, implicit, self._header.little_endian)
        self._made[key] = raw
        return raw

    def get(self, tag: int, default: Any = None) -> Any:  # without raising KeyError for absent tags
        key = int(tag)
        return self[key] if key in self._made or key in self._header.elements else default

    def __setitem__(self, tag: int, value: Any) -> None:  # pydicom stores converted elements back
        self._made[int(tag)] = value

    def __delitem__(self, tag: int) -> None:
        raise TypeError("a header read by the indexer is read-only")

    def __contains__(self, tag: object) -> bool:
        key = int(tag) if isinstance(tag, int) else tag
        return key in self._made or key in self._header.elements

    def __iter__(self) -> Iterator[BaseTag]:
        return (BaseTag(tag) for tag in sorted(set(self._header.elements) | set(self._made)))

    def __len__(self) -> int:
        return len(set(self._header.elements) | set(self._made))


class Layouts:
    """The layouts of the last few headers walked, so that a file laid out like one of them skips the walk.

    A layout is every byte the walk reads and relies on: the element headers
    (tags, VRs, lengths), sequences whole, the transfer syntax, the file and
    buffer sizes. A file equal to a layout in all of those gets the same
    element table and checks, whatever its plain values hold (UIDs, positions),
    so it gets that table without a walk. Deflated datasets and encapsulated
    pixel data (whose fragments lie past the buffer) are always walked.
    """

    def __init__(self, keep: int = 4) -> None:
        self._keep = keep
        self._known: list[tuple[int, int, np.ndarray, np.ndarray, Header]] = []

    def find(self, buf: bytes, size: int) -> Header | None:
        """The header of ``buf`` from a known layout, or None."""
        for known_size, length, offsets, expected, header in self._known:
            if size == known_size and len(buf) == length and np.array_equal(np.frombuffer(buf, np.uint8)[offsets], expected):
                known = copy.copy(header)  # the element table is shared: nobody changes a walked header
                known.buf = buf
                return known
        return None

    def add(self, header: Header, size: int, unused: list[tuple[int, int]]) -> None:
        """Remember a header walked from a ``size``-byte file; ``unused``: value spans (start, end) the walk did not read."""
        end = header.pixel_offset if header.pixel_offset is not None else size
        read = np.ones(end, bool)
        for start, stop in unused:
            read[start:stop] = False
        for vr, start, stop, _ in header.elements.values():
            if vr != "SQ":
                read[start:stop] = False
        offsets = np.flatnonzero(read)
        self._known.insert(0, (size, len(header.buf), offsets, np.frombuffer(header.buf, np.uint8)[offsets], header))
        del self._known[self._keep :]


class _Walk:
    """Element-header walk over ``buf`` (the first ``len(buf)`` of ``size`` bytes)."""

    def __init__(self, buf: bytes, size: int, path: str) -> None:
        self.buf = buf
        self.size = size
        self.path = path

    def fail(self, pos: int, problem: str, tag: int | None = None) -> InvalidDicomFileError:
        where = f" {tag_text(tag)}" if tag is not None else ""
        return InvalidDicomFileError(
            f"{self.path}: byte {pos}{where}: {problem}; the file is corrupt or truncated, exclude or re-export it",
            path=self.path,
            tag=tag_text(tag) if tag is not None else None,
        )

    def need(self, end: int, pos: int, what: str, tag: int | None = None) -> None:
        """Make sure bytes up to ``end`` exist: in the buffer, or else in the file."""
        if end <= len(self.buf):
            return
        if end > self.size:
            raise self.fail(pos, f"{what} runs to byte {end}, past the end of the file ({self.size} bytes)", tag)
        raise NeedMoreBytes(end)

    def element(self, pos: int, little: bool, implicit: bool) -> tuple[int, bytes | None, int, int]:
        """(tag, VR bytes or None, value length, value offset) of the element at ``pos``."""
        self.need(pos + 8, pos, "element header")
        buf = self.buf
        group, elem = struct.unpack_from("<HH" if little else ">HH", buf, pos)
        tag = group << 16 | elem
        if implicit or group == 0xFFFE:
            (length,) = struct.unpack_from("<L" if little else ">L", buf, pos + 4)
            return tag, None, length, pos + 8
        vr = bytes(buf[pos + 4 : pos + 6])
        if vr not in _VRS:
            raise self.fail(pos, f"invalid value representation {vr!r}", tag)
        if vr in LONG_VRS:
            self.need(pos + 12, pos, "element header", tag)
            (length,) = struct.unpack_from("<L" if little else ">L", buf, pos + 8)
            return tag, vr, length, pos + 12
        (length,) = struct.unpack_from("<H" if little else ">H", buf, pos + 6)
        return tag, vr, length, pos + 8

    def skip_sequence(self, pos: int, length: int, little: bool, implicit: bool, tag: int, depth: int) -> int:
        """Validate a sequence value starting at ``pos``; return the offset after it."""
        if depth > MAX_DEPTH:
            raise self.fail(pos, f"sequences nested deeper than {MAX_DEPTH}", tag)
        end = pos + length if length != _UNDEFINED else None
        if end is not None:
            self.need(end, pos, f"sequence of {length} bytes", tag)
        while end is None or pos < end:
            item, _, item_length, value = self.element(pos, little, True)
            if item == _SEQUENCE_END and end is None:
                return value
            if item != _ITEM:
                raise self.fail(pos, f"expected an item tag (FFFE,E000) in the sequence, found {tag_text(item)}", tag)
            if item_length == _UNDEFINED:
                pos = self.skip_dataset(value, None, little, implicit, depth + 1)
            else:
                self.need(value + item_length, pos, f"sequence item of {item_length} bytes", tag)
                self.skip_dataset(value, value + item_length, little, implicit, depth + 1)
                pos = value + item_length
        if pos != end:
            raise self.fail(pos, f"sequence items overrun the sequence length {length}", tag)
        return pos

    def skip_dataset(self, pos: int, end: int | None, little: bool, implicit: bool, depth: int) -> int:
        """Validate a nested dataset (an item); return the offset after it (after its delimiter)."""
        previous = -1
        while end is None or pos < end:
            tag, vr, length, value = self.element(pos, little, implicit)
            if tag == _ITEM_END and end is None:
                return value
            if tag <= previous:
                raise self.fail(pos, f"tags out of order ({tag_text(tag)} after {tag_text(previous)})", tag)
            previous = tag
            pos = self.value_end(pos, tag, vr, length, value, little, implicit, depth)
        return pos

    def value_end(self, pos: int, tag: int, vr: bytes | None, length: int, value: int, little: bool, implicit: bool, depth: int) -> int:
        """Offset after an element's value, walking it if it is a sequence."""
        if vr == b"SQ" or length == _UNDEFINED:
            if length == _UNDEFINED and vr not in (None, b"SQ", b"UN"):
                raise self.fail(pos, f"undefined length on VR {vr.decode()}", tag)
            # An SQ inside UN of undefined length is encoded implicit VR little endian.
            inner_implicit = implicit or vr == b"UN"
            return self.skip_sequence(value, length, little if vr != b"UN" else True, inner_implicit, tag, depth)
        self.need(value + length, pos, f"value of {length} bytes", tag)
        return value + length

    def fragments(self, pos: int, little: bool, read_at: Callable[[int, int], bytes]) -> int:
        """Validate encapsulated pixel data: items up to the sequence delimiter, inside the file; return their number.

        Item headers past the buffer are read with ``read_at(offset, 8)``, so the
        fragments themselves are never read.
        """
        count = 0
        while True:
            if pos + 8 > self.size:
                raise self.fail(pos, "encapsulated pixel data ends without a sequence delimiter", 0x7FE00010)
            head = self.buf[pos : pos + 8] if pos + 8 <= len(self.buf) else read_at(pos, 8)
            group, elem, length = struct.unpack("<HHL" if little else ">HHL", head)
            item = group << 16 | elem
            value = pos + 8
            if item == _SEQUENCE_END:
                return count
            if item != _ITEM or length == _UNDEFINED:
                raise self.fail(pos, f"expected a pixel data fragment item, found {tag_text(item)}", 0x7FE00010)
            if value + length > self.size:
                raise self.fail(pos, f"pixel data fragment of {length} bytes runs past the end of the file", 0x7FE00010)
            pos = value + length
            count += 1


def _text(raw: bytes) -> str:
    return raw.decode("ascii", "replace").strip(" \x00")


def _meta(walk: _Walk, pos: int) -> tuple[dict[int, bytes], int, list[tuple[int, int]]]:
    """File meta elements (group 0002, explicit VR little endian) from ``pos``, and the spans of the
    values the walk does not use (all but the transfer syntax and SOP class, and sequences)."""
    meta: dict[int, bytes] = {}
    unused: list[tuple[int, int]] = []
    buf = walk.buf
    while pos + 6 <= walk.size:
        walk.need(pos + 6, pos, "file meta element")
        if struct.unpack_from("<H", buf, pos)[0] != 0x0002:
            break
        tag, vr, length, value = walk.element(pos, True, False)
        end = walk.value_end(pos, tag, vr, length, value, True, False, 0)
        meta[tag] = bytes(buf[value:end])
        if tag not in _META_USED and vr != b"SQ" and length != _UNDEFINED:
            unused.append((value, end))
        pos = end
    return meta, pos, unused


def _looks_explicit(buf: bytes, pos: int) -> bool:
    return len(buf) >= pos + 6 and bytes(buf[pos + 4 : pos + 6]) in _VRS


def is_dicom_prefix(buf: bytes) -> bool:
    """Whether bytes start like DICOM: ``DICM`` at byte 128, or a group 0002 / 0008 element at byte 0."""
    return (len(buf) >= 132 and bytes(buf[128:132]) == b"DICM") or (len(buf) >= 8 and bytes(buf[0:2]) in (b"\x02\x00", b"\x08\x00"))


def read_header(
    buf: bytes, size: int, path: str, read_at: Callable[[int, int], bytes] | None = None, layouts: Layouts | None = None
) -> Header:
    """Walk the header of one DICOM file.

    Parameters
    ----------
    buf
        The file's bytes from offset 0: all of them, or a prefix.
    size
        The file's size in bytes; lengths are checked against it.
    path
        The file's path, for messages.
    read_at
        ``read_at(offset, n)`` reads bytes of the file past ``buf``: used
        only for the item headers of encapsulated pixel data. When None,
        those must lie in ``buf``.
    layouts
        Headers walked before (of one batch): a file laid out like one of
        them takes its element table instead of being walked.

    Returns
    -------
    Header

    Raises
    ------
    InvalidDicomFileError
        If the file is empty, not DICOM, truncated, or an element's tag
        order, VR or length is impossible.
    NeedMoreBytes
        If ``buf`` is a prefix and the walk needs bytes past it; read more
        (or all of the file) and call again.

    Examples
    --------
    >>> with open(path, "rb") as f:  # doctest: +SKIP
    ...     h = read_header(f.read(), os.path.getsize(path), path)
    >>> h.dataset(path).Modality  # doctest: +SKIP
    'CT'
    """
    if layouts is not None:
        known = layouts.find(buf, size)
        if known is not None:
            return known
    walk = _Walk(buf, size, path)
    if size == 0:
        raise InvalidDicomFileError(f"{path}: empty file (0 bytes), not DICOM; remove it", path=path)
    if not is_dicom_prefix(buf):
        raise InvalidDicomFileError(
            f"{path}: not a DICOM file: no 'DICM' marker at byte 128 and no DICOM element at byte 0 (a file of {size} bytes); "
            "an index records it as an error and goes on; move it out of the source to keep it off that list",
            path=path,
        )
    preamble = bytes(buf[128:132]) == b"DICM"
    meta, pos, unused = _meta(walk, 132) if preamble else _meta(walk, 0)
    syntax = _text(meta.get(0x00020010, b""))
    if "\\" in syntax:
        raise walk.fail(pos, f"Transfer Syntax UID holds several values ({shown_value(syntax)}), expected one", 0x00020010)
    little = syntax != _EXPLICIT_BE
    implicit = syntax == _IMPLICIT_LE or (not syntax and not _looks_explicit(buf, pos))
    if syntax == _DEFLATED:
        walk = _Walk(_inflate(walk, pos), 0, path)
        walk.size = len(walk.buf)
        pos = 0
    if not implicit and pos < walk.size and not _looks_explicit(walk.buf, pos):
        implicit = True  # pydicom's rule: trust the bytes when the declared syntax lies
    elements, pixel_tag, pixel_length, pixel_items, pixel_offset = _top_level(walk, pos, little, implicit, read_at or _no_reader)
    buf = walk.buf
    if not elements and pixel_tag is None:
        raise walk.fail(pos, "no data elements after the file meta")
    header = Header(
        buf=buf,
        elements=elements,
        transfer_syntax=syntax,
        media_storage_sop_class=_text(meta.get(0x00020002, b"")),
        little_endian=little,
        implicit_vr=implicit,
        pixel_tag=pixel_tag,
        pixel_length=pixel_length,
        pixel_items=pixel_items,
        pixel_offset=pixel_offset,
    )
    if layouts is not None and syntax != _DEFLATED and pixel_items is None:
        layouts.add(header, size, [(0, 128)] * preamble + unused)
    return header


def read_file_header(f: BinaryIO, size: int, path: str, layouts: Layouts | None = None) -> Header:
    """:func:`read_header` of an open file: its first :data:`PREFIX_BYTES`, more only when the walk asks.

    Parameters
    ----------
    f
        The file, open for binary reading (local, or an fsspec file object).
    size
        Its size in bytes.
    path
        The file's path, for messages.
    layouts
        See :func:`read_header`.

    Returns
    -------
    Header

    Raises
    ------
    InvalidDicomFileError
        As :func:`read_header`, or if the file ends before ``size`` bytes.
    """
    buf = f.read(min(size, PREFIX_BYTES)) if size else b""

    def read_at(offset: int, n: int) -> bytes:
        f.seek(offset)
        return f.read(n)

    while True:
        try:
            return read_header(buf, size, path, read_at, layouts)
        except NeedMoreBytes as more:
            want = min(size, max(int(more.args[0]), 2 * len(buf)))
            f.seek(len(buf))
            chunk = f.read(want - len(buf))
            if not chunk:
                raise InvalidDicomFileError(
                    f"{path}: the file ended at byte {len(buf)} while {size} bytes were expected; "
                    "it changed while being read, read it again",
                    path=path,
                ) from None
            buf += chunk


def _inflate(walk: _Walk, pos: int) -> bytes:
    if len(walk.buf) < walk.size:
        raise NeedMoreBytes(walk.size)
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    try:
        out = inflater.decompress(bytes(walk.buf[pos:]), MAX_INFLATED)
    except zlib.error as exc:
        raise walk.fail(pos, f"deflated dataset cannot be inflated ({exc})") from exc
    if inflater.unconsumed_tail:
        raise walk.fail(pos, f"deflated dataset inflates past {MAX_INFLATED} bytes")
    return out


def _no_reader(offset: int, n: int) -> bytes:
    raise NeedMoreBytes(offset + n)


def _top_level(
    walk: _Walk, pos: int, little: bool, implicit: bool, read_at: Callable[[int, int], bytes]
) -> tuple[dict[int, tuple[str | None, int, int, bool]], int | None, int | None, int | None, int | None]:
    elements: dict[int, tuple[str | None, int, int, bool]] = {}
    previous = -1
    buf = walk.buf
    size = walk.size
    fast = little and not implicit
    unpack_from = struct.unpack_from
    short_vr = _SHORT_VR_TEXT.get
    buflen = len(buf)  # the walk restarts on a longer buffer (NeedMoreBytes), never grows it
    while pos < size:
        if fast and pos + 8 <= buflen:
            # The common case, inlined: explicit VR little endian, a VR with a 2-byte length.
            # (Pixel data and sequences have 4-byte-length VRs, so they never take this path.)
            group, elem, vr, length = unpack_from("<HH2sH", buf, pos)
            text = short_vr(vr)
            if text is not None and group != 0xFFFE:
                tag = group << 16 | elem
                if tag <= previous:
                    raise walk.fail(pos, f"tags out of order ({tag_text(tag)} after {tag_text(previous)})", tag)
                previous = tag
                end = pos + 8 + length
                if end > buflen:
                    walk.need(end, pos, f"value of {length} bytes", tag)
                elements[tag] = (text, pos + 8, end, False)
                pos = end
                continue
        tag, vr, length, value = walk.element(pos, little, implicit)
        if tag <= previous:
            raise walk.fail(pos, f"tags out of order ({tag_text(tag)} after {tag_text(previous)})", tag)
        previous = tag
        if tag in _PIXEL_TAGS:
            items = None
            if length == _UNDEFINED:
                items = walk.fragments(value, little, read_at)
            elif value + length > size:
                raise walk.fail(pos, f"pixel data of {length} bytes runs past the end of the file ({size} bytes)", tag)
            return elements, tag, length, items, value
        if vr == b"SQ" or length == _UNDEFINED:
            end = walk.value_end(pos, tag, vr, length, value, little, implicit, 0)
            stop = end - 8 if length == _UNDEFINED else end  # keep the items, not the delimiter
            elements[tag] = ("SQ", value, stop, implicit or vr == b"UN")
        else:
            end = value + length
            if end > buflen:
                walk.need(end, pos, f"value of {length} bytes", tag)
            elements[tag] = (_VR_TEXT[vr] if vr is not None else None, value, end, implicit)
        pos = end
    return elements, None, None, None, None
