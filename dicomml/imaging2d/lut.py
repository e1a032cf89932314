"""From stored pixel values to display values: Modality LUT, VOI LUT, presentation, colour.

pydicom's reference functions (``apply_modality_lut``, ``apply_voi_lut``,
``apply_color_lut``, the decoders' colour conversion) define the values.
For grey images the Modality and VOI steps are functions of the stored value
alone, so :func:`grey_table` evaluates pydicom's own functions once over every
stored value the header allows (at most 65,536) and :func:`apply_grey` applies
the table with one gather: the same numbers as calling them on the image,
without their float64 temporaries. Inversion (MONOCHROME1, Presentation LUT
Shape INVERSE) is ``low + high - value`` within the VOI output range, as
PS3.3 C.11.6 and highdicom's ``apply_presentation_lut=True`` have it, so a
stored value shows the same whatever else the image holds (pydicom's
``apply_presentation_lut`` subtracts from the image's own maximum); a
Presentation LUT Sequence gives P-values, as ``apply_presentation_lut``.
Enhanced multi-frame images (XA, US...) may carry a rescale and a
window per frame in their functional groups: :func:`frame_headers` gives
each frame's header, and frames sharing one are mapped by one table.
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydicom.dataset import Dataset
from pydicom.pixels.processing import apply_color_lut, apply_modality_lut, apply_presentation_lut, apply_voi_lut

from dicomml.dicom.frames import header_numbers, source_name
from dicomml.dicom.pixels import bits_stored
from dicomml.errors import ConfigError, InvalidDicomFileError
from dicomml.threads import parallel

__all__ = ["GreyTable", "VOI_CHOICES", "apply_grey", "frame_headers", "grey_table", "grey_values", "palette_to_rgb", "voi_dataset"]

#: What ``voi`` may name besides an index or a (center, width) window.
VOI_CHOICES = ("header", "none")
_GREY = frozenset({"MONOCHROME1", "MONOCHROME2"})
#: Bits Allocated of grey images mapped through a table (32 bits: too many stored values for one).
_TABLE_ALLOCATED = (1, 8, 16)
#: Pixels per np.take call of a gather: small enough for its intp indices to stay in cache.
_GATHER_BLOCK = 2**18
#: Functional groups whose items set a frame's Modality LUT and VOI LUT attributes.
_FRAME_GROUPS = ("PixelValueTransformationSequence", "FrameVOILUTSequence")
#: The top-level attributes each of those macros stands for.
_MACRO_KEYWORDS = {
    "PixelValueTransformationSequence": ("RescaleSlope", "RescaleIntercept", "RescaleType"),
    "FrameVOILUTSequence": ("WindowCenter", "WindowWidth", "VOILUTFunction", "VOILUTSequence", "WindowCenterWidthExplanation"),
}
#: Top-level attributes the LUT functions read.
_LUT_KEYWORDS = (
    "PhotometricInterpretation",
    "BitsAllocated",
    "BitsStored",
    "PixelRepresentation",
    "PresentationLUTShape",
    "PresentationLUTSequence",
    "ModalityLUTSequence",
    "RescaleSlope",
    "RescaleIntercept",
    "VOILUTSequence",
    "WindowCenter",
    "WindowWidth",
    "VOILUTFunction",
)


@dataclass(frozen=True)
class GreyTable:
    """Display value of every stored value of a grey image.

    Attributes
    ----------
    values
        ``values[i]`` is the display value of the stored value whose bit
        pattern, read as unsigned, is ``i``.
    invert
        Whether the image is shown inverted (``low + high - value`` after the table).
    voi_range
        ``(low, high)``, the VOI output range (what MONOCHROME1 is inverted within).
    meta
        What was applied: ``modality_lut``, ``voi``, ``voi_function``,
        ``window``, ``output_range``, ``inverted``.
    """

    values: np.ndarray
    invert: bool
    voi_range: tuple[float, float]
    meta: dict[str, Any]


def voi_dataset(ds: Dataset, voi: str | int | tuple[float, float]) -> tuple[Dataset | None, int, dict[str, Any]]:
    """The dataset pydicom's ``apply_voi_lut`` should see for a VOI choice, its item index and a description.

    Parameters
    ----------
    ds
        The image's dataset.
    voi
        ``"header"``: the first VOI LUT table, else the first window, else none
        (pydicom's preference); an int: that VOI transform of the header,
        its VOI LUT tables first, then its windows (with one table and two
        windows: 0 the table, 1 and 2 the windows);
        ``(center, width)``: a LINEAR window of modality values (a preset);
        ``"none"``: no VOI transform.

    Returns
    -------
    (dataset or None, index, meta)
        None when no VOI transform applies.

    Raises
    ------
    InvalidDicomFileError
        If the header lacks the window or table asked for.
    ConfigError
        If a ``(center, width)`` window is not finite or its width not positive.
    """
    path = source_name(ds)
    if isinstance(voi, tuple):
        center, width = float(voi[0]), float(voi[1])
        if not (math.isfinite(center) and math.isfinite(width) and width > 0):
            raise ConfigError(f"voi={voi!r}: a window is (center, width), finite, with a positive width")
        return _window_dataset(ds, center, width, "LINEAR"), 0, {"voi": "preset", "window": [center, width], "voi_function": "LINEAR"}
    if voi == "none":
        return None, 0, {"voi": "none"}
    tables = len(ds.get("VOILUTSequence") or [])
    index = 0 if voi == "header" else int(voi)
    if 0 <= index < tables:
        return ds, index, {"voi": "table", "voi_index": index}
    centers, widths = header_numbers(ds, "WindowCenter") or [], header_numbers(ds, "WindowWidth") or []
    n_windows = min(len(centers), len(widths))
    if voi == "header" and not tables and not n_windows:
        return None, 0, {"voi": "none"}
    window = index - tables
    if not 0 <= window < n_windows:
        raise InvalidDicomFileError(
            f"{path}: VOI {voi!r} asked for, but the header has {tables} VOI LUT table(s) and {n_windows} window(s); "
            f"pick an index below {tables + n_windows} (tables first, then windows), a (center, width) preset or voi='none'",
            path=path,
            tag="(0028,3010)" if tables else "(0028,1050)",
        )
    center, width = centers[window], widths[window]
    function = str(ds.get("VOILUTFunction", "LINEAR") or "LINEAR").strip().upper()
    meta = {"voi": "window", "voi_index": index, "window": [float(center), float(width)], "voi_function": function}
    if tables:  # pydicom applies a header's table before any of its windows: hand it the window alone
        return _window_dataset(ds, center, width, function), 0, meta
    return ds, window, meta


def _window_dataset(ds: Dataset, center: float, width: float, function: str) -> Dataset:
    """The attributes of ``ds`` pydicom's ``apply_windowing`` reads (bits, rescale), with one window."""
    window = Dataset()
    for keyword in (
        "PhotometricInterpretation",
        "BitsStored",
        "PixelRepresentation",
        "RescaleSlope",
        "RescaleIntercept",
        "ModalityLUTSequence",
    ):
        if keyword in ds:
            setattr(window, keyword, copy.deepcopy(ds[keyword].value))
    window.WindowCenter, window.WindowWidth, window.VOILUTFunction = center, width, function
    return window


def _signed(ds: Dataset) -> bool:
    """Whether pydicom decodes signed stored values (1-bit pixels come out uint8 whatever the header says)."""
    return int(ds.get("PixelRepresentation", 0) or 0) == 1 and int(ds.BitsAllocated) > 1


def _stored_range(ds: Dataset, bits: int) -> np.ndarray:
    """Every stored value of ``bits`` bits, in the dtype pydicom decodes to, ordered by unsigned bit pattern."""
    allocated = int(ds.BitsAllocated)
    dtype = np.dtype(f"{'i' if _signed(ds) else 'u'}{max(1, allocated // 8)}")
    if not _signed(ds):
        return np.arange(2**bits, dtype=dtype)
    # Bit patterns 0 .. 2**allocated - 1 read as signed; pydicom sign-extends the stored bits, so
    # patterns outside [-2**(bits-1), 2**(bits-1)) never occur and map like their clipped value.
    patterns = np.arange(2**allocated, dtype=np.dtype(f"u{allocated // 8}")).view(dtype)
    low, high = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    return np.clip(patterns, low, high).astype(dtype)


def _stored_ends(ds: Dataset, bits: int) -> np.ndarray:
    """The smallest and largest stored value of ``bits`` bits."""
    if _signed(ds):
        return np.array([-(2 ** (bits - 1)), 2 ** (bits - 1) - 1], dtype=np.int64)
    return np.array([0, 2**bits - 1], dtype=np.int64)


def grey_table(
    ds: Dataset, voi: str | int | tuple[float, float] = "header", *, dtype: Any = np.float32, bits: int | None = None
) -> GreyTable:
    """The display value of every stored value of a MONOCHROME1/2 image, through pydicom's functions.

    Parameters
    ----------
    ds
        The image's dataset (header is enough).
    voi
        See :func:`voi_dataset`.
    dtype
        Float type of the table (float64 gives pydicom's numbers exactly).
    bits
        Bits the decoded stored values span, when more than Bits Stored (a
        codestream's precision, see :func:`~dicomml.imaging2d.load.decoded_bits`):
        the table covers them, the output range stays that of Bits Stored.

    Returns
    -------
    GreyTable

    Raises
    ------
    InvalidDicomFileError
        If the image is not grey, stores more than 16 bits, or its LUTs cannot be applied.
    """
    path = source_name(ds)
    photometric = str(ds.get("PhotometricInterpretation", "")).strip()
    header_bits = bits_stored(ds)
    bits = max(bits or 0, header_bits)
    if photometric not in _GREY or not 1 <= bits <= 16 or int(ds.get("BitsAllocated") or 0) not in _TABLE_ALLOCATED:
        raise InvalidDicomFileError(
            f"{path}: a grey table needs MONOCHROME1/2 with 1-16 bits stored in 1, 8 or 16 allocated, "
            f"found {photometric or 'no'} Photometric Interpretation with {bits} bits stored",
            path=path,
            tag="(0028,0004)",
        )
    voi_ds, index, meta = voi_dataset(ds, voi)
    stored = _stored_range(ds, bits)
    values = _display(stored, ds, voi_ds, index, dtype)
    low, high = _stored_ends(ds, header_bits)
    # the output range is over the values the header allows, as for the same image uncompressed
    return _grey(ds, values, values[(stored >= low) & (stored <= high)], voi_ds, index, meta)


def _grey(ds: Dataset, values: np.ndarray, spanning: np.ndarray, voi_ds: Dataset | None, index: int, meta: dict[str, Any]) -> GreyTable:
    """The GreyTable of display values ``values``: its inversion, and its VOI output range and meta from
    ``spanning``, the display values of the stored values the header allows."""
    photometric = str(ds.get("PhotometricInterpretation", "")).strip()
    presentation = ds.get("PresentationLUTSequence")
    shape = str(ds.get("PresentationLUTShape", "") or "").strip().upper()
    # a Presentation LUT Sequence replaces the inversion (apply_grey applies it as apply_presentation_lut does)
    invert = not presentation and (photometric == "MONOCHROME1" or shape == "INVERSE")
    voi_range = _voi_output_range(spanning, voi_ds, index)
    meta.update(
        modality_lut="table"
        if ds.get("ModalityLUTSequence")
        else ("rescale" if "RescaleSlope" in ds and "RescaleIntercept" in ds else "none"),
        output_range=_p_value_range(ds) if presentation else list(voi_range),  # inversion keeps it
        inverted=("MONOCHROME1" if photometric == "MONOCHROME1" else "INVERSE") if invert else None,
    )
    return GreyTable(values=values, invert=invert, voi_range=voi_range, meta=meta)


def _voi_output_range(values: np.ndarray, voi_ds: Dataset | None, index: int) -> tuple[float, float]:
    """The range the VOI step maps into, which MONOCHROME1 is inverted within (PS3.3 C.11.6, highdicom).

    A window's is its own ``[y_min, y_max]`` (pydicom's, from Bits Stored and
    the rescale), even where the stored values reach only part of it; that of a
    VOI LUT table, a Modality LUT or a rescale alone is the range of
    ``values``, the display values of the stored range.
    """
    if voi_ds is not None and "WindowWidth" in voi_ds and not voi_ds.get("VOILUTSequence"):
        with np.errstate(over="ignore", invalid="ignore"):  # a sigmoid of infinity
            low, high = apply_voi_lut(np.array([-np.inf, np.inf]), voi_ds, index=index)  # inputs past both ends
        return float(low), float(high)
    return float(values.min()), float(values.max())


def _p_value_range(ds: Dataset) -> list[float]:
    """[0, 2**n - 1]: the P-values of a Presentation LUT Sequence of n-bit entries (PS3.3 C.11.6.1).

    Raises
    ------
    InvalidDicomFileError
        If its LUT Descriptor is missing or malformed.
    """
    try:
        bits = int(ds.PresentationLUTSequence[0].LUTDescriptor[2])
    except (AttributeError, IndexError, KeyError, TypeError, ValueError):
        bits = 0
    if not 1 <= bits <= 16:
        path = source_name(ds)
        raise InvalidDicomFileError(
            f"{path}: (2050,0010) Presentation LUT Sequence: its (0028,3002) LUT Descriptor gives no entry size of 1-16 bits; "
            "fix or exclude the file",
            path=path,
            tag="(2050,0010)",
        )
    return [0.0, float(2**bits - 1)]


#: Rescale elements, with their tags, that pydicom's ``apply_modality_lut`` reads.
_RESCALE = (("RescaleSlope", "(0028,1053)"), ("RescaleIntercept", "(0028,1052)"))


def _rescale(ds: Dataset) -> Dataset:
    """The dataset pydicom's rescale reads: ``ds``, or, where Rescale Slope or Intercept is empty (read as
    absent, 1 and 0, as the 3D frame table and the index read it), one holding the two values.

    Raises
    ------
    InvalidDicomFileError
        Naming the file and the tag, if one is not a finite number or holds several.
    """
    path = source_name(ds)
    found = {}
    for keyword, tag in _RESCALE:
        if keyword in ds:
            numbers = header_numbers(ds, keyword)  # raises for text, NaN and infinity
            if numbers is not None and len(numbers) != 1:
                raise InvalidDicomFileError(
                    f"{path}: {tag} {keyword} is {numbers}, expected one finite number; the header is malformed, fix or exclude the file",
                    path=path,
                    tag=tag,
                )
            found[keyword] = numbers
    if None not in found.values():
        return ds
    rescale = Dataset()
    rescale.RescaleSlope = (found.get("RescaleSlope") or [1.0])[0]
    rescale.RescaleIntercept = (found.get("RescaleIntercept") or [0.0])[0]
    return rescale


def _display(stored: np.ndarray, ds: Dataset, voi_ds: Dataset | None, index: int, dtype: Any) -> np.ndarray:
    """pydicom's Modality LUT then VOI LUT of ``stored``, as ``dtype``: typed errors, never NaN or infinity.

    Raises
    ------
    InvalidDicomFileError
        If a LUT is malformed, or the rescale takes stored values past ``dtype``'s range.
    """
    path = source_name(ds)
    modality = ds if ds.get("ModalityLUTSequence") else _rescale(ds)
    try:
        with np.errstate(over="ignore", invalid="ignore"):  # overflow is checked below, on the result
            values = apply_modality_lut(stored, modality)
            if voi_ds is not None:
                values = apply_voi_lut(values, voi_ds, index=index)
            values = np.asarray(values, dtype=dtype)
    except (ValueError, TypeError, KeyError, AttributeError, IndexError, NotImplementedError) as exc:
        named = re.search(r"\(0028,[0-9A-F]{4}\)", str(exc))  # pydicom names the element it rejects, e.g. a Window Width
        raise InvalidDicomFileError(
            f"{path}: the Modality/VOI LUT cannot be applied ({exc}); fix the LUT or pass voi='none'",
            path=path,
            tag=named.group() if named else "(0028,3000)" if "ModalityLUTSequence" in ds else "(0028,3010)",
        ) from exc
    if values.size and not np.isfinite(values).all():
        slope, intercept = (ds.get(keyword) for keyword, _ in _RESCALE)
        raise InvalidDicomFileError(
            f"{path}: (0028,1053) Rescale Slope {slope} and (0028,1052) Rescale Intercept {intercept} take stored "
            f"values past the range of {np.dtype(dtype).name}; the header is malformed, fix or exclude the file",
            path=path,
            tag="(0028,1053)",
        )
    return values


def apply_grey(stored: np.ndarray, table: GreyTable, *, ds: Dataset | None = None, threads: int = 1) -> np.ndarray:
    """Display values of stored values (any shape), the table gathered and the image inverted if due.

    Parameters
    ----------
    stored
        Stored values as pydicom decodes them (``uint8/16`` or ``int8/16``).
    table
        From :func:`grey_table` for the same header.
    ds
        When given and it holds a Presentation LUT Sequence, that table is
        applied after the VOI step as ``apply_presentation_lut`` does.
    threads
        Threads that share the gather (blocks of the image).

    Returns
    -------
    numpy.ndarray
        Float array of ``stored``'s shape.
    """
    stored = stored.astype(stored.dtype.newbyteorder("="), copy=False)  # big-endian decodes: index by value
    index = stored.view(np.dtype(f"u{stored.dtype.itemsize}")) if stored.dtype.kind == "i" else stored
    return _present(_gather(table.values, index, threads), table, ds)


def _present(values: np.ndarray, table: GreyTable, ds: Dataset | None) -> np.ndarray:
    """VOI output ``values`` (overwritten) through ``ds``'s Presentation LUT Sequence if any, else inverted if ``table`` says so."""
    if ds is not None and ds.get("PresentationLUTSequence"):
        return np.asarray(apply_presentation_lut(values, ds), dtype=values.dtype)
    if table.invert:  # within the VOI output range, not the image's: a stored value always shows the same
        np.subtract(values.dtype.type(sum(table.voi_range)), values, out=values)
    return values


def _gather(values: np.ndarray, index: np.ndarray, threads: int) -> np.ndarray:
    """``values[index]`` in blocks over ``threads`` threads: np.take converts each block's indices to intp,
    a temporary that stays in cache instead of one eight bytes per pixel; mode="wrap" masks the bits above
    the table's (an unsigned table has 2**bits entries, a signed one every bit pattern)."""
    out = np.empty(index.shape, values.dtype)
    flat, target = np.ascontiguousarray(index).reshape(-1), out.reshape(-1)

    def gather(starts: Sequence[int]) -> None:
        for start in starts:
            np.take(values, flat[start : start + _GATHER_BLOCK], mode="wrap", out=target[start : start + _GATHER_BLOCK])

    parallel(gather, range(0, flat.size, _GATHER_BLOCK), threads)
    return out


def palette_to_rgb(stored: np.ndarray, ds: Dataset) -> np.ndarray:
    """RGB of a PALETTE COLOR image through pydicom's ``apply_color_lut`` (``(..., 3)``, uint8 or uint16).

    Raises
    ------
    InvalidDicomFileError
        If the palette tables are missing or malformed.
    """
    try:
        rgb = apply_color_lut(stored, ds)
    except (ValueError, KeyError, AttributeError, IndexError, TypeError) as exc:  # TypeError: entries of neither 8 nor 16 bits
        path = source_name(ds)
        raise InvalidDicomFileError(
            f"{path}: (0028,1201) the palette colour lookup tables cannot be applied ({exc}); fix or exclude the file",
            path=path,
            tag="(0028,1201)",
        ) from exc
    return np.asarray(rgb[..., :3])


def _group_values(item: Dataset | None) -> dict[str, dict[str, Any]]:
    """The LUT attributes one functional groups item sets (rescale, window, VOI LUT table...), by macro."""
    groups: dict[str, dict[str, Any]] = {}
    for group in _FRAME_GROUPS:
        sequence = item.get(group) if item is not None else None
        if sequence:
            groups[group] = {element.keyword: element.value for element in sequence[0] if element.keyword}
    return groups


def frame_headers(ds: Dataset, n_frames: int) -> list[Dataset] | None:
    """Each frame's LUT header of an enhanced multi-frame image, None when its functional groups set no LUT.

    A frame's header is the image's top-level LUT attributes, replaced by
    the Shared Functional Groups' Pixel Value Transformation and Frame VOI LUT
    macros, replaced in turn by the frame's own Per-Frame Functional Groups
    macros (PS3.3 C.7.6.16): a macro replaces the one below it whole, so a
    frame's own VOI LUT table leaves no shared window behind.
    """
    shared = ds.get("SharedFunctionalGroupsSequence")
    per_frame = ds.get("PerFrameFunctionalGroupsSequence") or []
    common = _group_values(shared[0] if shared else None)
    own = [_group_values(per_frame[i] if i < len(per_frame) else None) for i in range(n_frames)]
    if not common and not any(own):
        return None
    base = {keyword: ds[keyword].value for keyword in _LUT_KEYWORDS if keyword in ds}
    headers = []
    for groups in own:
        values = dict(base)
        for group, group_values in {**common, **groups}.items():
            for keyword in _MACRO_KEYWORDS[group]:
                values.pop(keyword, None)
            values.update(group_values)
        header = Dataset()
        for keyword, value in values.items():
            setattr(header, keyword, copy.deepcopy(value))
        header.filename = getattr(ds, "filename", None)  # for messages
        if getattr(ds, "file_meta", None) is not None:  # the byte order of OW tables (LUT Data) is the file's
            header.file_meta = ds.file_meta
        headers.append(header)
    return headers


def _frame_groups(headers: list[Dataset]) -> dict[str, list[int]]:
    """Frame indices by their header's content, so that each distinct header gets one table."""
    groups: dict[str, list[int]] = {}
    for i, header in enumerate(headers):
        groups.setdefault(repr(_content(header)), []).append(i)
    return groups


def _content(item: Dataset) -> list[tuple[Any, Any]]:
    """(tag, value) of every element, into sequences (whose repr shows only their length), e.g. a frame's VOI LUT table."""
    return [(e.tag, [_content(inner) for inner in e.value] if e.VR == "SQ" else e.value) for e in item]


def grey_values(
    stored: np.ndarray,
    ds: Dataset,
    voi: str | int | tuple[float, float] = "header",
    *,
    dtype: Any = np.float32,
    threads: int = 1,
    bits: int | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Display values of a grey image's stored values and what was applied.

    Through a :func:`grey_table` for 1/8/16-bit images; 32-bit ones (too many
    values for a table) through pydicom's functions on the array itself, with
    the same output range (:func:`_deep_display`; float pixel data: the image's own).
    Frames of an enhanced image whose functional groups set their own rescale
    or window (:func:`frame_headers`) each get their own; ``meta`` then holds
    ``frame_windows`` (each frame's (center, width), or None) and the output
    range spans all frames'. ``threads`` share a table's gather; ``bits`` as
    in :func:`grey_table` (tables only).

    Returns
    -------
    (values, meta)
        Float array of ``stored``'s shape, and the table's ``meta``.
    """
    allocated = int(ds.get("BitsAllocated") or 0)
    headers = frame_headers(ds, stored.shape[0]) if stored.ndim == 3 else None
    if headers is not None and allocated in _TABLE_ALLOCATED:
        out = np.empty(stored.shape, dtype=dtype)
        windows: list[Any] = [None] * len(headers)
        metas = []
        for frames in _frame_groups(headers).values():  # the first group holds frame 0
            table = grey_table(headers[frames[0]], voi, dtype=dtype, bits=bits)
            out[frames] = apply_grey(stored[frames], table, ds=ds, threads=threads)
            metas.append(table.meta)
            for i in frames:
                windows[i] = table.meta.get("window")
        ranges = [m["output_range"] for m in metas]
        meta = dict(metas[0])
        meta.update(frame_windows=windows, output_range=[min(r[0] for r in ranges), max(r[1] for r in ranges)])
        return out, meta
    if allocated in _TABLE_ALLOCATED:
        table = grey_table(ds, voi, dtype=dtype, bits=bits)
        return apply_grey(stored, table, ds=ds, threads=threads), table.meta
    voi_ds, index, meta = voi_dataset(ds, voi)
    values = _display(stored, ds, voi_ds, index, dtype)  # first: a malformed LUT fails on the image itself
    # float pixel data (parametric maps) has no stored range: its own values span the output range
    spanning = values if stored.dtype.kind == "f" else _deep_display(ds, voi_ds, index, dtype)
    table = _grey(ds, spanning, spanning, voi_ds, index, meta)
    return _present(values, table, ds), table.meta


def _deep_display(ds: Dataset, voi_ds: Dataset | None, index: int, dtype: Any) -> np.ndarray:
    """Display values spanning those of every stored value of a 32-bit image, too many to list: those of
    the stored range's ends (a rescale and a window are monotone) and of every entry of a LUT table on the way."""
    ends = _stored_ends(ds, bits_stored(ds))
    stored = [ends]
    modality = ds.get("ModalityLUTSequence")
    if modality:
        stored.append(np.clip(_lut_inputs(modality[0]), *ends))
    values = [_display(np.concatenate(stored), ds, voi_ds, index, dtype)]
    if voi_ds is not None and voi_ds.get("VOILUTSequence"):  # its output is one of its entries
        values.append(np.asarray(apply_voi_lut(_lut_inputs(voi_ds.VOILUTSequence[index]), voi_ds, index=index), dtype=dtype))
    return np.concatenate(values)


def _lut_inputs(item: Dataset) -> np.ndarray:
    """The inputs a LUT table maps, one per entry: its LUT Descriptor's first mapped value on (0 entries: 2**16)."""
    entries, first = int(item.LUTDescriptor[0]) or 2**16, int(item.LUTDescriptor[1])
    return np.arange(first, first + entries, dtype=np.int64)
