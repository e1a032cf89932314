"""Decoding pixel data into slots of a preallocated array.

pydicom's decoders do the work (deflate, RLE, JPEG, JPEG-LS and JPEG 2000
through pylibjpeg, pyjpegls and python-gdcm, big endian and odd layouts);
uncompressed little-endian data is read as a view on the pixel bytes instead,
which skips pydicom's per-call set-up, paid once per slice. Grey JPEG 2000
frames whose codestream matches the header are decoded by imagecodecs'
OpenJPEG, which can split one frame over several threads (pydicom's plugins
decode a frame on one thread, except GDCM, which dicomml does not use); the
values are the ones pydicom's decoders give. This module
picks the frames wanted, cuts mosaics into slices and writes each plane
straight into its slot of the output, optionally applying rescale slope and
intercept on the way (no per-slice float copies).
"""

from __future__ import annotations

import logging
import re
import struct
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from pydicom.dataset import Dataset
from pydicom.encaps import generate_frames, get_frame
from pydicom.pixels import get_decoder, pixel_array
from pydicom.pixels.utils import get_j2k_parameters
from pydicom.uid import AllTransferSyntaxes, ExplicitVRLittleEndian, ImplicitVRLittleEndian, JPEG2000TransferSyntaxes

from dicomml.dicom.frames import FrameTable, frame_size, header_value, source_name
from dicomml.dicom.io import typed_errors
from dicomml.errors import InvalidDicomFileError, UnsupportedTransferSyntaxError
from dicomml.imaging2d.modalities import is_colour

__all__ = [
    "PixelSpan",
    "bits_stored",
    "check_fragments",
    "decode_into",
    "decode_pixels",
    "is_native",
    "native_layout",
    "native_stack",
    "stored_dtype",
    "transfer_syntax",
]

#: pydicom's words for a layout its plugins do not handle (as opposed to data they failed on).
_UNSUPPORTED_FEATURE = re.compile(r"support|bits allocated", re.IGNORECASE)
_NATIVE_LITTLE_ENDIAN = frozenset({ImplicitVRLittleEndian, ExplicitVRLittleEndian})
_ENCAPSULATED = frozenset(str(uid) for uid in AllTransferSyntaxes if uid.is_encapsulated)
#: Item and sequence delimiter tags of encapsulated pixel data, as (group, element).
_ITEM, _SEQUENCE_END = (0xFFFE, 0xE000), (0xFFFE, 0xE0DD)
#: How pydicom's RLE decoder starts its warning that a segment decoded to more bytes than the frame holds.
_RLE_EXCESS = "The decoded RLE segment contains non-conformant padding"
_doubts = threading.local()


class _RecordDoubts(logging.Filter):
    """Keeps, for the thread that asked, pydicom's warning that it kept an RLE segment longer than its frame:
    pydicom decodes on, where the excess is anything from one padding byte to a scrambled codestream.
    A logging filter because the record is made in the decoding thread (``warnings`` filters are process-wide)."""

    def filter(self, record: logging.LogRecord) -> bool:
        kept = getattr(_doubts, "messages", None)
        if kept is not None and record.getMessage().startswith(_RLE_EXCESS):
            kept.append(record.getMessage())
        return True


logging.getLogger("pydicom").addFilter(_RecordDoubts())


def transfer_syntax(ds: Dataset) -> str:
    """The file meta's Transfer Syntax UID, "" when there is none.

    Raises
    ------
    InvalidDicomFileError
        If it holds several values or is not text.
    """
    uid = header_value(ds.file_meta, "TransferSyntaxUID") if getattr(ds, "file_meta", None) is not None else None
    if uid is None:
        return ""
    if not isinstance(uid, str):
        path = source_name(ds)
        raise InvalidDicomFileError(
            f"{path}: (0002,0010) Transfer Syntax UID is {uid!r}, expected one UID; the file meta is malformed, fix or exclude the file",
            path=path,
            tag="(0002,0010)",
        )
    return uid


def bits_stored(ds: Dataset) -> int:
    """Bits Stored (0028,0101), Bits Allocated when absent, checked against Bits Allocated.

    Raises
    ------
    InvalidDicomFileError
        If it is below 1 or above Bits Allocated.
    """
    allocated = header_value(ds, "BitsAllocated")
    stored = header_value(ds, "BitsStored")
    if stored is None:
        return int(allocated or 0)
    if isinstance(stored, (int, float)) and 1 <= stored <= (allocated if isinstance(allocated, (int, float)) else 32):
        return int(stored)
    path = source_name(ds)
    raise InvalidDicomFileError(
        f"{path}: (0028,0101) Bits Stored is {stored!r}, expected 1 to Bits Allocated ({allocated!r}); "
        "the pixel description is malformed, fix or exclude the file",
        path=path,
        tag="(0028,0101)",
    )


def check_fragments(ds: Dataset) -> None:
    """Check that every item of encapsulated pixel data lies within the pixel data read.

    pydicom finds the end of encapsulated pixel data by its sequence
    delimiter and does not check the items' lengths: a fragment whose length
    points past the end would be decoded with the following item headers and
    fragments inside it.

    Raises
    ------
    InvalidDicomFileError
        If an item's length runs past the end of the pixel data.
    """
    data = ds.PixelData
    pos, size = 0, len(data)
    while pos + 8 <= size:
        group, element, length = struct.unpack_from("<HHL", data, pos)
        if (group, element) == _SEQUENCE_END or (group, element) != _ITEM:
            return  # the end, or not an item: pydicom's parser reports the latter
        if pos + 8 + length > size:
            path = source_name(ds)
            raise InvalidDicomFileError(
                f"{path}: (7FE0,0010) Pixel Data item at byte {pos} declares {length} bytes, only {size - pos - 8} follow; "
                "the file is truncated or corrupt, exclude it",
                path=path,
                tag="(7FE0,0010)",
            )
        pos += 8 + length


#: Red Palette Color Lookup Table Descriptor, which a PALETTE COLOR image carries.
_PALETTE_DESCRIPTOR = 0x00281101
_COLOUR_ADVICE = "colour images are not volumes: read them with dicomml.ImageDataset or dicomml.imaging2d.load_image"


def stored_dtype(ds: Dataset) -> np.dtype:
    """The numpy dtype that pydicom decodes this object's stored values to.

    Raises
    ------
    InvalidDicomFileError
        If the pixel description (BitsAllocated, PixelRepresentation,
        SamplesPerPixel) is missing or the image is not grey levels
        (:func:`~dicomml.imaging2d.modalities.is_colour`).
    """
    path = source_name(ds)
    if "FloatPixelData" in ds:
        return np.dtype(np.float32)
    if "DoubleFloatPixelData" in ds:
        return np.dtype(np.float64)
    samples = int(header_value(ds, "SamplesPerPixel") or 1)
    if samples != 1:
        raise InvalidDicomFileError(
            f"{path}: (0028,0002) Samples per Pixel is {samples}, expected 1; {_COLOUR_ADVICE}", path=path, tag="(0028,0002)"
        )
    # the table's descriptor first: a dict lookup, where parsing the interpretation per slice slows a stack's read
    if _PALETTE_DESCRIPTOR in ds and is_colour(samples, header_value(ds, "PhotometricInterpretation")):
        raise InvalidDicomFileError(
            f"{path}: (0028,0004) Photometric Interpretation is PALETTE COLOR (indices into a colour table); {_COLOUR_ADVICE}",
            path=path,
            tag="(0028,0004)",
        )
    bits = header_value(ds, "BitsAllocated")
    signed = int(header_value(ds, "PixelRepresentation") or 0) == 1
    if bits not in (1, 8, 16, 32):
        raise InvalidDicomFileError(
            f"{path}: (0028,0100) Bits Allocated is {bits!r}, expected 1, 8, 16 or 32",
            path=path,
            tag="(0028,0100)",
        )
    size = max(1, int(bits) // 8)
    return np.dtype(f"{'i' if signed else 'u'}{size}")


def decode_pixels(ds: Dataset, index: int | None = None, *, threads: int = 1) -> np.ndarray:
    """pydicom's decoded pixels (all frames, or one 0-based frame; colour as RGB), typed errors on failure;
    a grey JPEG 2000 frame is decoded on up to ``threads`` threads."""
    path = source_name(ds)
    uid = transfer_syntax(ds)
    with typed_errors(path, "decoding (7FE0,0010) Pixel Data", tag="(7FE0,0010)"):
        if uid in _ENCAPSULATED:
            check_fragments(ds)
        if uid in _J2K_SYNTAXES:
            grey = _j2k_grey(ds, index, threads)
            if grey is not None:
                return grey
        failures: list[NotImplementedError | RuntimeError] = []
        for plugin in _plugins(uid):  # the next plugin may handle what one cannot (12-bit JPEG, odd J2K)
            _doubts.messages = []
            try:
                array = pixel_array(ds, index=index, decoding_plugin=plugin)
            except (NotImplementedError, RuntimeError) as exc:
                failures.append(exc)
                continue
            finally:
                doubts, _doubts.messages = _doubts.messages, None
            if not doubts:
                return array
            # pylibjpeg-rle decodes a padding byte and refuses more: it, not pydicom's plugin, decides
            failures.append(RuntimeError(doubts[0]))
        first = failures[0]  # the preferred plugin's reason decides between corrupt and unsupported
        if isinstance(first, RuntimeError) and _decodable(uid) and not _UNSUPPORTED_FEATURE.search(str(first)):
            raise first  # a decoder is there and failed on the data: corrupt, typed as such on the way out
        raise UnsupportedTransferSyntaxError(
            f"{path}: (0002,0010) Transfer Syntax UID {uid} cannot be decoded by the installed "
            f"decoders ({str(first).splitlines()[0] if str(first) else type(first).__name__}); install a decoder "
            "that supports it or re-encode the file (e.g. with dcmtk's dcmdjpeg)",
            path=path,
            tag="(0002,0010)",
        ) from first


_J2K_SYNTAXES = frozenset(str(uid) for uid in JPEG2000TransferSyntaxes)


def _j2k_grey(ds: Dataset, index: int | None, threads: int) -> np.ndarray | None:
    """A grey JPEG 2000 object's frames (all, or frame ``index``) decoded by imagecodecs on ``threads``
    threads, shaped as pydicom returns them; None, for pydicom's plugins to decode, when the image is not
    single-sample MONOCHROME, a codestream's signedness differs from Pixel Representation (pydicom
    corrects that), or imagecodecs cannot decode it into the header's size and type."""
    import imagecodecs

    if int(header_value(ds, "SamplesPerPixel") or 1) != 1 or not str(ds.get("PhotometricInterpretation", "")).startswith("MONOCHROME"):
        return None
    n_frames = int(header_value(ds, "NumberOfFrames") or 1)
    dtype = stored_dtype(ds)
    signed = int(header_value(ds, "PixelRepresentation") or 0) == 1
    if index is None:
        codestreams = list(generate_frames(ds.PixelData, number_of_frames=n_frames))
    else:
        codestreams = [get_frame(ds.PixelData, index, number_of_frames=n_frames)]
    out = np.empty((len(codestreams), *_frame_shape(ds)), dtype)
    for codestream, slot in zip(codestreams, out):
        if get_j2k_parameters(codestream).get("is_signed") != signed:
            return None
        try:
            imagecodecs.jpeg2k_decode(codestream, numthreads=threads, out=slot)
        except (imagecodecs.Jpeg2kError, ValueError):  # not this frame's layout, or corrupt: pydicom's plugins decide
            return None
    return out[0] if index is not None or n_frames == 1 else out


def _plugins(uid: str) -> list[str]:
    """The decoding plugins to try, in pydicom's order: all but GDCM, which aborts the whole process on
    some corrupt codestreams; GDCM only when it is the one installed plugin for the syntax ("" lets
    pydicom choose)."""
    try:
        available = get_decoder(uid).available_plugins
    except (NotImplementedError, ValueError, TypeError):
        return [""]
    return [name for name in available if name != "gdcm"] or [""]


def _decodable(uid: str) -> bool:
    """Whether an installed pydicom decoder plugin handles this transfer syntax."""
    try:
        return bool(get_decoder(uid).is_available)
    except (NotImplementedError, ValueError, TypeError):
        return False


def is_native(ds: Dataset) -> bool:
    """Whether ``ds``'s pixels are uncompressed little-endian bytes (read without a decoder)."""
    return transfer_syntax(ds) in _NATIVE_LITTLE_ENDIAN


def native_layout(ds: Dataset) -> tuple[np.dtype, int] | None:
    """(little-endian dtype, BitsStored) of stored values that can be read straight from uncompressed
    bytes (8, 16 or 32 bits allocated, HighBit = BitsStored - 1); None when pydicom must decode."""
    bits = header_value(ds, "BitsAllocated")
    if bits not in (8, 16, 32):
        return None
    stored = bits_stored(ds)
    high_bit = header_value(ds, "HighBit")
    if high_bit is not None and int(high_bit) != stored - 1:
        return None
    return stored_dtype(ds).newbyteorder("<"), stored


def _stored_values(stack: np.ndarray, stored: int) -> np.ndarray:
    """``stack`` as is when its ``stored`` low bits fill it, else masked (unsigned) or sign-extended
    (signed) as pydicom does."""
    bits = 8 * stack.dtype.itemsize
    if stored >= bits:
        return stack
    if stack.dtype.kind == "u":
        return stack & stack.dtype.type((1 << stored) - 1)
    shift = bits - stored
    return (stack << shift) >> shift  # arithmetic shift: sign-extends the stored bits


def native_stack(ds: Dataset, n_frames: int) -> np.ndarray | None:
    """All frames' stored values, (frames, rows, columns), read from uncompressed little-endian
    bytes without pydicom's decoder: a view when BitsStored fills BitsAllocated, else masked
    (unsigned) or sign-extended (signed) as pydicom does. None when pydicom must decode."""
    if not is_native(ds) or "PixelData" not in ds or _PALETTE_DESCRIPTOR in ds:
        return None  # palette indices: pydicom's decoding, for the 2D reader to map through the table
    layout = native_layout(ds)
    if layout is None:
        return None
    dtype, stored = layout
    rows, columns = _frame_shape(ds)
    count = n_frames * rows * columns
    data = ds.PixelData
    if len(data) < count * dtype.itemsize:
        return None  # let pydicom report the short pixel data
    return _stored_values(np.frombuffer(data, dtype=dtype, count=count).reshape(n_frames, rows, columns), stored)


@dataclass(frozen=True)
class PixelSpan:
    """Where a local file holds uncompressed little-endian pixel data (see :func:`native_layout`).

    Attributes
    ----------
    path
        The file.
    offset
        File offset of the first pixel byte.
    length
        Bytes of pixel data.
    dtype, bits_stored
        Little-endian dtype of the stored values and the low bits that hold
        each value (:func:`native_layout`).
    """

    path: str
    offset: int
    length: int
    dtype: np.dtype
    bits_stored: int


def _file_planes(span: PixelSpan, ds: Dataset, table: FrameTable, rows: Sequence[int] | np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
    """(table row, 2D plane) for each wanted row, each frame read from the file into one reused buffer
    (a plane is valid until the next is drawn)."""
    side = table.mosaic[0] if table.mosaic else 1  # a mosaic frame holds side x side tiles of the table's size
    frame = np.empty((table.rows * side, table.columns * side), dtype=span.dtype)
    buffer = frame.data.cast("B")
    current = 0
    with open(span.path, "rb", buffering=0) as f:
        for row in rows:
            number = int(table.frame_numbers[row])
            if number != current:
                f.seek(span.offset + (number - 1) * frame.nbytes)
                got = f.readinto(buffer)
                if got != frame.nbytes:
                    raise InvalidDicomFileError(
                        f"{span.path}: (7FE0,0010) Pixel Data of frame {number} ends after {got} of {frame.nbytes} bytes; "
                        "the file is truncated or changed while being read",
                        path=span.path,
                        tag="(7FE0,0010)",
                    )
                current = number
                values = _stored_values(frame, span.bits_stored)
            if table.mosaic is None:
                yield row, values
            else:
                yield row, _tile(values, table, row)


def _tile(mosaic: np.ndarray, table: FrameTable, row: int) -> np.ndarray:
    """Slice ``row`` of a Siemens mosaic."""
    tile_row, tile_col = divmod(int(row), table.mosaic[0] if table.mosaic else 1)
    return mosaic[tile_row * table.rows : (tile_row + 1) * table.rows, tile_col * table.columns : (tile_col + 1) * table.columns]


def _planes(ds: Dataset, table: FrameTable, rows: Sequence[int] | np.ndarray) -> list[tuple[int, np.ndarray]]:
    """(table row, 2D plane) for each wanted row of the table, decoding each frame once."""
    n_frames = int(header_value(ds, "NumberOfFrames") or 1)
    wanted_frames = sorted({int(table.frame_numbers[r]) for r in rows})
    native = native_stack(ds, n_frames)
    if native is not None:
        frames = {f: native[f - 1] for f in wanted_frames}
    elif len(wanted_frames) == n_frames:
        stack = decode_pixels(ds, None).reshape(n_frames, *_frame_shape(ds))
        frames = {f: stack[f - 1] for f in wanted_frames}
    else:
        frames = {f: decode_pixels(ds, f - 1).reshape(_frame_shape(ds)) for f in wanted_frames}
    if table.mosaic is None:
        return [(r, frames[int(table.frame_numbers[r])]) for r in rows]
    return [(r, _tile(frames[1], table, r)) for r in rows]


def _frame_shape(ds: Dataset) -> tuple[int, int]:
    return frame_size(ds)


def decode_into(
    ds: Dataset,
    table: FrameTable,
    rows: Sequence[int] | np.ndarray,
    out: np.ndarray,
    slots: Sequence[int] | np.ndarray,
    *,
    rescale: bool,
    span: PixelSpan | None = None,
) -> None:
    """Decode table rows of one object into ``out[slots[i]]``.

    Parameters
    ----------
    ds
        The dataset, read with its pixel data.
    table
        Its :func:`~dicomml.dicom.frames.frame_table`.
    rows
        Rows of ``table`` (frames, or mosaic slices) to decode.
    out
        (n, rows, columns) array to write into; with ``rescale=False`` its
        dtype must hold the stored values (see :func:`stored_dtype`).
    slots
        For each of ``rows``, the index along ``out``'s first axis.
    rescale
        Apply each row's rescale slope and intercept while writing (for a
        floating-point ``out``).
    span
        Where the file holds the uncompressed pixel data, to read frame by
        frame instead of from ``ds`` (which may then be a header only); only
        when :func:`native_layout` of ``ds`` is not None.

    Raises
    ------
    UnsupportedTransferSyntaxError
        If no installed decoder handles the transfer syntax.
    InvalidDicomFileError
        If the pixel data cannot be read.
    """
    planes = _planes(ds, table, rows) if span is None else _file_planes(span, ds, table, rows)
    for (row, plane), slot in zip(planes, slots):
        if plane.shape != out.shape[-2:]:
            path = source_name(ds)
            raise InvalidDicomFileError(
                f"{path}: decoded plane is {plane.shape}, expected {out.shape[-2:]} from Rows/Columns",
                path=path,
                tag="(0028,0010)",
            )
        target = out[slot]
        slope, intercept = table.rescale_slope[row], table.rescale_intercept[row]
        if rescale and slope != 1:  # computed in out's float type: no float64 temporaries
            np.multiply(plane, out.dtype.type(slope), out=target, casting="unsafe")
            if intercept != 0:
                np.add(target, out.dtype.type(intercept), out=target)
        elif rescale and intercept != 0:  # one pass, the values converted to out's type first as a copy would
            np.add(plane, out.dtype.type(intercept), out=target, dtype=out.dtype, casting="unsafe")
        else:
            np.copyto(target, plane, casting="unsafe")
