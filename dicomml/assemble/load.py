"""``load_files`` and ``load_series``: DICOM files to one :class:`~dicomml.volume.Volume`.

Headers are read first (local files through the indexer's lean header walk,
:mod:`dicomml.indexer.header`, which also finds where uncompressed pixel data
lies), each frame is given its slot by
:func:`~dicomml.assemble.plan.plan_stack`, then every file is decoded
straight into one preallocated array (uncompressed little-endian frames read
from the file at their offset); threads are used where they overlap
something (remote reads, compressed frames, see :func:`_threads`). Rescale is applied in place,
in the narrowest dtype that holds the values exactly: integer slope and
intercept give int16 when the values fit (typical CT in HU, most MR), else a
wider integer type; fractional ones give float32.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from os import PathLike
from typing import Any

import numpy as np
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.tag import BaseTag
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from dicomml.assemble.plan import OnIrregular, StackPlan, plan_stack
from dicomml.assemble.resample import correct_tilt, equidistant
from dicomml.assemble.volumes import axis_name, shared_values, volume_table, volume_values
from dicomml.dicom.frames import FrameTable, frame_table, functional_item, header_numbers, header_value
from dicomml.dicom.io import is_url, read_dataset, typed_errors
from dicomml.dicom.philips import PHILIPS_SCALINGS, PhilipsScaling, float_scaling
from dicomml.dicom.pixels import PixelSpan, decode_into, is_native, native_layout, stored_dtype
from dicomml.dicom.series_key import dataset_group_keys
from dicomml.errors import (
    ConfigError,
    GeometryError,
    InconsistentGeometryError,
    InvalidDicomFileError,
    MixedSeriesError,
    SeriesAssemblyError,
)
from dicomml.geometry import axcodes, spacing_of
from dicomml.geometry.checks import spacing_problem
from dicomml.imaging2d.modalities import IMAGES_2D
from dicomml.indexer.header import read_file_header
from dicomml.indexer.manifest import Manifest
from dicomml.limits import DEFAULT_MAX_VOXELS, check_voxels
from dicomml.paths import check_unchanged, local_path
from dicomml.sources import Remote
from dicomml.volume import Volume

__all__ = ["load_files", "load_series"]

#: Most threads that read and decode files (I/O and most decoders release the GIL).
MAX_WORKERS = 8
#: Values longer than this (the pixel data of a large slice) stay on disk until decoded, so a
#: local file is parsed once and the headers of a long series do not hold all its pixels.
DEFER_BYTES = 64 * 1024
_PIXEL_DATA = 0x7FE00010
_UNDEFINED_LENGTH = 0xFFFFFFFF
#: Transfer syntaxes whose pixel data is raw little-endian values, read from the file at their offset.
_RAW_SYNTAXES = frozenset({ImplicitVRLittleEndian, ExplicitVRLittleEndian})


@dataclass
class _Source:
    """One file of the group: its header, frame table and the table rows wanted, and where its raw pixels lie."""

    path: str
    header: Dataset
    table: FrameTable
    rows: np.ndarray
    span: PixelSpan | None = None


def load_files(
    paths: Sequence[str | PathLike[str]],
    *,
    on_irregular: OnIrregular = "raise",
    frames: Sequence[Sequence[int] | None] | None = None,
    dtype: np.dtype | type | str | None = None,
    threads: int | None = None,
    philips_scaling: PhilipsScaling = "float",
    max_voxels: int = DEFAULT_MAX_VOXELS,
    remote: Remote | None = None,
) -> Volume:
    """Assemble DICOM files that form one volume group into a Volume.

    Slices are sorted by their position along the slice normal (never by file
    name or InstanceNumber); slices repeating a position become a leading
    ``time`` axis, ordered by the temporal key, then InstanceNumber, each
    slice in the volume of its own b-value and gradient.

    Parameters
    ----------
    paths
        Files (local paths or fsspec URLs): classic slices, enhanced
        multi-frame objects or Siemens mosaics, in any order.
    on_irregular
        ``"raise"`` (default) raises :class:`SliceGapError`,
        :class:`DuplicateSliceError`, :class:`GantryTiltError` or
        :class:`InconsistentGeometryError`; ``"resample"`` returns a regular
        grid (equidistant slices, tilt corrected, as dcm2niix does; float32);
        ``"keep"`` stacks the slices as they are and records the problem in
        ``meta["irregularities"]``.
    frames
        For each path, the 1-based frame numbers to use, or None for all.
    dtype
        A floating dtype (e.g. ``np.float32``) to decode and rescale straight
        into; None picks the narrowest exact dtype.
    threads
        Most threads that decode compressed local frames: the cores this
        process may use (e.g. 1 in each of as many workers as cores); None:
        every core, up to ``MAX_WORKERS``.
    philips_scaling
        Philips MR with a private MR Scale Slope (2005,100E): ``"float"``
        (default) gives its floating-point values, as dcm2niix does;
        ``"display"`` the standard Rescale Slope / Intercept only, as pydicom
        and ITK do (see :mod:`dicomml.dicom.philips`). Other images are the
        same either way.
    max_voxels
        Most voxels the assembled volume (all time points together, and any
        resampled grid) may have: a header that asks for more raises
        :class:`~dicomml.errors.ResourceLimitError` before anything is
        allocated. Default :data:`dicomml.limits.DEFAULT_MAX_VOXELS` (2**30).
    remote
        How to reach URLs among ``paths`` (a :class:`dicomml.sources.Remote`:
        storage options, credentials, retries); default: none of them.

    Returns
    -------
    Volume
        ``array`` is (slice, row, column), or (time, slice, row, column) with
        ``axes == ("time",)`` (``diffusion``, ``echo`` or ``phase`` when that is what varies, see
        :mod:`dicomml.assemble.volumes`) and the per-volume table in ``meta["volumes"]``; ``affine`` maps the last three indices to RAS+ mm.

    Raises
    ------
    MixedSeriesError
        If the files hold more than one volume group (see
        :mod:`dicomml.dicom.series_key`); the message names each group. Or,
        under ``"raise"`` and ``"resample"``, if slice positions hold
        different b-values or gradients.
    SeriesAssemblyError
        Or one of its subclasses, for irregular geometry under ``"raise"``.
    InvalidDicomFileError, UnsupportedTransferSyntaxError
        For a file that cannot be read or decoded.
    ResourceLimitError
        If the volume would exceed ``max_voxels``.

    Examples
    --------
    >>> vol = load_files(sorted(Path("ct").glob("*.dcm")))  # doctest: +SKIP
    >>> vol.array.dtype, vol.orientation  # doctest: +SKIP
    (dtype('int16'), 'SPL')
    """
    sources = _read_headers([str(p) for p in paths], frames, philips_scaling, remote)
    key = _single_group(sources)
    with typed_errors(f"series {key}", "assembling the volume", SeriesAssemblyError):
        return _assemble(sources, on_irregular, dtype, threads, series_key=key, max_voxels=max_voxels)


def load_series(
    manifest: Manifest | str | PathLike[str],
    series_key: str,
    *,
    on_irregular: OnIrregular = "raise",
    dtype: np.dtype | type | str | None = None,
    threads: int | None = None,
    philips_scaling: PhilipsScaling = "float",
    max_voxels: int = DEFAULT_MAX_VOXELS,
) -> Volume:
    """Assemble one volume group of a manifest into a Volume.

    Parameters
    ----------
    manifest
        A :class:`dicomml.Manifest` (remote files are read through its
        ``remote``), or the path of its folder.
    series_key
        The group's ``series_key`` (a row of the manifest's ``series`` table).
    on_irregular, dtype, threads, philips_scaling, max_voxels
        As for :func:`load_files`.

    Returns
    -------
    Volume
        With ``meta["series_key"] == series_key``.

    Raises
    ------
    SeriesNotFoundError
        If the manifest has no such series key.
    ManifestError
        If a local file changed since it was indexed (size or modification
        time): index it again.
    SeriesAssemblyError, InvalidDicomFileError, UnsupportedTransferSyntaxError, ResourceLimitError
        As for :func:`load_files`.

    Examples
    --------
    >>> vol = load_series("manifest/", "3f2a9c0d1b7e4a55")  # doctest: +SKIP
    """
    opened = Manifest.open(manifest)
    rows = opened.series_files(series_key)
    frames = [_frame_list(value) for value in rows["frame_numbers"]]
    sources = _read_headers([str(p) for p in rows["path"]], frames, philips_scaling, opened.remote)
    with typed_errors(f"series {series_key}", "assembling the volume", SeriesAssemblyError):
        try:
            volume = _assemble(sources, on_irregular, dtype, threads, series_key=series_key, max_voxels=max_voxels)
        except InconsistentGeometryError as exc:
            reason = opened.table("series", ["reason"], [("series_key", "==", series_key)]).column("reason").to_pylist()
            if reason != [IMAGES_2D]:
                raise
            raise InconsistentGeometryError(
                f"{exc}; these are 2D images: dicomml.ImageDataset and dicomml.imaging2d.load_image read them", series_uid=series_key
            ) from exc
    check_unchanged(zip(rows["path"], rows["size"], rows["mtime_ns"]))
    return volume


def _frame_list(value: Any) -> list[int] | None:
    """A manifest ``frame_numbers`` cell: a list of ints, or None (all frames) for any scalar (None, NaN, NA)."""
    if np.ndim(value) == 0:
        return None
    return [int(v) for v in value]


def _threads(*, remote: bool, compressed: bool, budget: int | None = None) -> int:
    """Threads to read and decode a series' files with.

    Remote reads wait on the network: MAX_WORKERS overlap them. Compressed
    local frames are decoded on up to one thread per core this process may
    use (``budget``, which the caller sets when workers share the cores). A
    local uncompressed frame is a read and a copy (or a conversion to float),
    cheapest in the calling thread.
    """
    if remote:
        return MAX_WORKERS
    if not compressed:
        return 1
    cores = min(MAX_WORKERS, os.cpu_count() or 1)
    return cores if budget is None else max(1, min(cores, budget))


def _map(function: Any, items: Sequence[Any], threads: int) -> list[Any]:
    """``function`` over ``items``, in up to ``threads`` threads."""
    workers = min(threads, len(items))
    if workers <= 1:
        return [function(item) for item in items]
    # One contiguous run of items per thread: per-item dispatch costs more than decoding a small plane.
    bounds = np.linspace(0, len(items), workers + 1).astype(int)
    with ThreadPoolExecutor(workers) as pool:
        runs = pool.map(lambda b: [function(item) for item in items[b[0] : b[1]]], zip(bounds[:-1], bounds[1:]))
        return [result for run in runs for result in run]


def _read_headers(
    paths: list[str], frames: Sequence[Sequence[int] | None] | None, philips_scaling: PhilipsScaling, remote: Remote | None = None
) -> list[_Source]:
    if not paths:
        raise SeriesAssemblyError("no files given; pass the paths of at least one DICOM image")
    if philips_scaling not in PHILIPS_SCALINGS:
        raise ConfigError(f"philips_scaling={philips_scaling!r} is not one of {', '.join(PHILIPS_SCALINGS)}")
    if frames is not None and len(frames) != len(paths):
        raise SeriesAssemblyError(f"frames has {len(frames)} entries for {len(paths)} paths; give one per path")

    def read(i: int) -> _Source:
        header, span = _read_header(paths[i], remote)
        with typed_errors(paths[i], "reading the frame geometry"):
            table = frame_table(header)
        if philips_scaling == "float":
            table = float_scaling(table)
        wanted = None if frames is None else frames[i]
        if wanted is None:
            rows = np.arange(len(table))
        else:
            rows = np.flatnonzero(np.isin(table.frame_numbers, np.asarray(wanted, dtype=np.int64)))
            if rows.size == 0:
                raise InvalidDicomFileError(
                    f"{paths[i]}: frames {list(wanted)} requested, but the file holds frames 1-{int(table.frame_numbers.max())}",
                    path=paths[i],
                )
        return _Source(paths[i], header, table, rows, span)

    if any(is_url(p) for p in paths):  # remote reads wait on the network: threads overlap them
        return _map(read, list(range(len(paths))), _threads(remote=True, compressed=False))
    # a local header is parsed in pure Python under the GIL: threads would only contend for it
    return [read(i) for i in range(len(paths))]


def _read_header(path: str, remote: Remote | None) -> tuple[Dataset, PixelSpan | None]:
    """A file's header, and where its pixel data lies when it can be read as raw values.

    A local file whose pixels are uncompressed little endian is read through
    the indexer's header walk (a Dataset decoded only where read, the pixel
    data left in the file); anything else (a URL, compressed, big endian or
    deflated data, odd bit layouts, a file the walk refuses) as pydicom reads
    it, so that its errors stay pydicom's. Each is read once: local files by
    pydicom with large values deferred, a URL fetched whole through ``remote``
    (its pixels kept until decoded).
    """
    if not is_url(path):
        lean = _lean_header(path)
        if lean is not None:
            return lean
    return read_dataset(path, pixels=True, defer_size=DEFER_BYTES, remote=remote), None


def _lean_header(path: str) -> tuple[Dataset, PixelSpan] | None:
    """The header walk's Dataset and pixel span of a local file with raw pixel data, else None."""
    local = local_path(path)
    try:
        with open(local, "rb") as f:
            header = read_file_header(f, os.fstat(f.fileno()).st_size, path)
    except (InvalidDicomFileError, OSError):
        return None  # pydicom reads it, or names what is wrong, as for any other file
    offset, length = header.pixel_offset, header.pixel_length
    if (
        header.transfer_syntax not in _RAW_SYNTAXES
        or header.pixel_tag != _PIXEL_DATA
        or offset is None
        or length in (None, _UNDEFINED_LENGTH)
    ):
        return None
    # Only the bytes before the pixel data are kept: a long series' headers need not hold its pixels.
    ds = dataclasses.replace(header, buf=header.buf[:offset]).dataset(path)
    ds.file_meta = _file_meta(header.transfer_syntax)
    # A deferred element (no value): the frame table checks the frames against its length, as after pydicom.
    vr = None if header.implicit_vr else "OW"
    ds[_PIXEL_DATA] = RawDataElement(BaseTag(_PIXEL_DATA), vr, length, None, offset, header.implicit_vr, True)
    try:
        layout = native_layout(ds)
        return None if layout is None else (ds, PixelSpan(local, offset, int(length), *layout))
    except InvalidDicomFileError:
        return None  # pydicom's path reports the bad pixel description


@functools.cache
def _file_meta(transfer_syntax: str) -> FileMetaDataset:
    """File meta naming only the transfer syntax, shared read-only by the lean headers of a syntax."""
    meta = FileMetaDataset()
    meta.TransferSyntaxUID = UID(transfer_syntax)
    return meta


def _text(ds: Dataset, keyword: str) -> str:
    """A string element's value, "" when absent."""
    value = header_value(ds, keyword)
    return "" if value is None else str(value)


def _folder(path: str) -> str:
    return path.rsplit("/", 1)[0] if is_url(path) else os.path.dirname(os.path.abspath(path))


def _single_group(sources: list[_Source]) -> str:
    """The one series key of the sources, or MixedSeriesError describing each group."""
    groups: dict[str, list[tuple[_Source, int]]] = {}
    for source in sources:
        ds = source.header
        keys = dataset_group_keys(ds, _folder(source.path), source.table)
        for row in source.rows:
            groups.setdefault(keys[row], []).append((source, int(row)))
    if len(groups) == 1:
        return next(iter(groups))
    described = []
    for key, members in groups.items():
        source, row = members[0]
        t = source.table
        described.append(
            f"{key}: {len(members)} slices like {os.path.basename(source.path)} "
            f"(series {source.header.get('SeriesInstanceUID', '?')} number {source.header.get('SeriesNumber', '?')}, "
            f"{t.rows}x{t.columns}, "
            f"orientation {np.round(t.orientations[row], 4).tolist()}, echo {t.echo[row]:g}, kind {t.kind[row]!r})"
        )
    raise MixedSeriesError(
        f"the {len(sources)} files hold {len(groups)} volume groups: "
        + "; ".join(described)
        + "; pass the files of one group (dicomml.index groups them for you)",
        series_uid=str(sources[0].header.get("SeriesInstanceUID", "")),
    )


def _thickness(ds: Dataset, path: str) -> float:
    """Slice step for a single-slice volume: SpacingBetweenSlices, else SliceThickness, else 1 mm."""
    items = [ds]
    measures = functional_item(ds, 0, "PixelMeasuresSequence")
    if measures is not None:
        items.insert(0, measures)
    for keyword, tag in (("SpacingBetweenSlices", "(0018,0088)"), ("SliceThickness", "(0018,0050)")):
        for item in items:
            value = item.get(keyword)
            try:
                step = float(value) if value is not None else 0.0
            except (TypeError, ValueError):
                continue
            if step > 0:
                problem = spacing_problem(np.array([step]), f"{tag} {keyword}")
                if problem:
                    raise GeometryError(f"{path}: {problem}; the header is corrupt, exclude the file", path=path, tag=tag)
                return step
    return 1.0


def _assemble(
    sources: list[_Source], on_irregular: OnIrregular, dtype: Any, threads: int | None, *, series_key: str, max_voxels: int
) -> Volume:
    index = [(s, int(r)) for s in sources for r in s.rows]
    table_rows = [(s.table, r) for s, r in index]
    temporal = np.array([t.temporal[r] for t, r in table_rows])
    instance = np.array([t.instance[r] for t, r in table_rows])
    time_order = np.empty(len(index), dtype=np.int64)
    time_order[np.lexsort((np.arange(len(index)), instance, temporal))] = np.arange(len(index))
    plan = plan_stack(
        np.array([t.positions[r] for t, r in table_rows]),
        np.array([t.orientations[r] for t, r in table_rows]),
        np.array([t.pixel_spacing[r] for t, r in table_rows]),
        time_order,
        [f"{_text(s.header, 'SOPInstanceUID') or s.path}#{s.table.frame_numbers[r]}#{r}" for s, r in index],
        thickness=_thickness(sources[0].header, sources[0].path),
        on_irregular=on_irregular,
        series=series_key,
        labels=[f"{s.path} frame {s.table.frame_numbers[r]}" for s, r in index],
        shared=lambda: np.array([shared_values(s.header, int(s.table.frame_numbers[r]) - 1) for s, r in index]),  # 4D only
    )
    slopes = np.ones(plan.n_volumes * plan.n_positions)
    intercepts = np.zeros_like(slopes)
    for (table, row), slot in zip(table_rows, plan.slots):
        if slot >= 0:
            slopes[slot], intercepts[slot] = table.rescale_slope[row], table.rescale_intercept[row]
    array = _decode_all(sources, plan, slopes, intercepts, dtype, threads, max_voxels)
    affine = plan.affine
    shape = (plan.n_volumes, plan.n_positions) if plan.n_volumes > 1 else (plan.n_positions,)
    array = array.reshape(*shape, *array.shape[-2:])
    if "equidistant" in plan.resample and plan.geometry is not None:
        array, affine = equidistant(array, plan.geometry.offsets, plan.geometry.spacing, affine, max_voxels=max_voxels)
    if "tilt" in plan.resample:
        array, affine = correct_tilt(array, affine, max_voxels=max_voxels)
    meta = _meta(sources, index, plan, slopes, intercepts, series_key, affine)
    geometry = plan.geometry  # kept with gaps, uneven steps, unequal repeats or no positions: slices are not where the affine says
    meta["nominal_affine"] = on_irregular == "keep" and (
        geometry is None or bool(geometry.missing) or not geometry.uniform or not geometry.n_volumes
    )
    if plan.n_volumes == 1:  # its own echo number and b-value, which a selection by echo or b-value checks
        first = min((int(slot), i) for i, slot in enumerate(plan.slots) if slot >= 0)[1]
        source, row = index[first]
        meta.update(volume_values(source.header, int(source.table.frame_numbers[row]) - 1))
        return Volume(array, affine, (), meta)
    volumes: list[list[tuple[Dataset, int]]] = [[] for _ in range(plan.n_volumes)]
    for slot, i in sorted((int(slot), i) for i, slot in enumerate(plan.slots) if slot >= 0):  # array order
        source, row = index[i]
        volumes[slot // plan.n_positions].append((source.header, int(source.table.frame_numbers[row]) - 1))
    meta["volumes"] = volume_table(volumes, affine)
    return Volume(array, affine, (axis_name(meta["volumes"]),), meta)


def _integral(values: np.ndarray) -> bool:
    return bool(np.all(np.isfinite(values)) and np.all(values == np.round(values)))


def _decode_all(
    sources: list[_Source],
    plan: StackPlan,
    slopes: np.ndarray,
    intercepts: np.ndarray,
    dtype: Any,
    threads: int | None,
    max_voxels: int,
) -> np.ndarray:
    first = sources[0]
    stored = {stored_dtype(s.header) if s.span is None else s.span.dtype for s in sources}
    integer = dtype is None and len(stored) == 1 and next(iter(stored)).kind in "ui" and _integral(slopes) and _integral(intercepts)
    if dtype is not None and np.dtype(dtype).kind != "f":
        raise SeriesAssemblyError(f"dtype={dtype!r}: pass a floating dtype, or None for the exact integer type")
    if integer:
        out_dtype = next(iter(stored))
    else:  # float64 only when asked for, or when the file stores 64-bit floats
        out_dtype = np.dtype(dtype) if dtype is not None else np.result_type(np.float32, *stored)
    shape = (len(slopes), first.table.rows, first.table.columns)
    series_uid = str(first.header.get("SeriesInstanceUID", "")) or None
    check_voxels(shape, f"{first.path} and the other files of its series", max_voxels, path=first.path, series_uid=series_uid)
    out = np.empty(shape, dtype=out_dtype)
    slots_by_source = []
    start = 0
    for source in sources:
        slots = plan.slots[start : start + source.rows.size]
        start += source.rows.size
        slots_by_source.append((source, source.rows[slots >= 0], slots[slots >= 0]))
    _check_rescale(slots_by_source, stored, slopes, intercepts, np.dtype(np.float64) if integer else out_dtype)

    def decode(item: tuple[_Source, np.ndarray, np.ndarray]) -> None:
        source, rows, slots = item
        if rows.size and source.span is not None:
            with typed_errors(source.path, "decoding (7FE0,0010) Pixel Data", tag="(7FE0,0010)"):
                decode_into(source.header, source.table, rows, out, slots, rescale=not integer, span=source.span)
        elif rows.size:
            with typed_errors(source.path, "decoding (7FE0,0010) Pixel Data", tag="(7FE0,0010)"):
                decode_into(source.header, source.table, rows, out, slots, rescale=not integer)
            for keyword in ("PixelData", "FloatPixelData", "DoubleFloatPixelData"):
                if keyword in source.header:
                    del source.header[keyword]  # the header lives on in meta; its pixels need not

    remote = any(is_url(s.path) for s in sources)
    compressed = not all(is_native(s.header) for s in sources)
    _map(decode, slots_by_source, _threads(remote=remote, compressed=compressed, budget=threads))
    return _rescale_integers(out, slopes, intercepts) if integer else out


def _check_rescale(
    slots_by_source: list[tuple[_Source, np.ndarray, np.ndarray]],
    stored: set[np.dtype],
    slopes: np.ndarray,
    intercepts: np.ndarray,
    dtype: np.dtype,
) -> None:
    """Refuse a finite slope or intercept that carries stored values past what ``dtype`` holds: infinities, not data."""
    integers = [np.iinfo(d) for d in stored if d.kind in "ui"]
    if not integers:
        return
    low, high = min(i.min for i in integers), max(i.max for i in integers)
    with np.errstate(over="ignore", invalid="ignore"):
        reach = np.maximum(np.abs(low * slopes + intercepts), np.abs(high * slopes + intercepts))
    bad = np.flatnonzero(~(reach <= np.finfo(dtype).max))
    if bad.size:
        slot = bad[0]
        path = next(source.path for source, _, slots in slots_by_source if slot in slots)
        raise InvalidDicomFileError(
            f"{path}: (0028,1053) RescaleSlope {slopes[slot]:g} and (0028,1052) RescaleIntercept {intercepts[slot]:g} carry "
            f"its stored values past {dtype} (to infinity); the header is corrupt, exclude the file",
            path=path,
            tag="(0028,1053)",
        )


def _rescale_integers(raw: np.ndarray, slopes: np.ndarray, intercepts: np.ndarray) -> np.ndarray:
    """Apply integer slope/intercept into the narrowest integer dtype that holds the result.

    int16 when the values fit (typical CT in HU), else uint16, int32, int64;
    8-bit data without rescale stays 8-bit. When the target has the stored
    width, the arithmetic runs in place with wrap-around, which is exact
    because the result is known to fit.
    """
    identity = bool(np.all(slopes == 1) and np.all(intercepts == 0))
    if identity and raw.itemsize == 1:
        return raw
    low, high = int(raw.min()), int(raw.max())
    ends = np.concatenate([low * slopes + intercepts, high * slopes + intercepts])
    lo, hi = float(ends.min()), float(ends.max())
    target = next(
        (np.dtype(t) for t in (np.int16, np.uint16, np.int32, np.int64) if np.iinfo(t).min <= lo and hi <= np.iinfo(t).max),
        None,
    )
    if target is None:  # a slope or intercept past int64 (a lying header): exact integers are not possible
        out64 = raw.astype(np.float64)
        out64 *= slopes.reshape(-1, *[1] * (raw.ndim - 1))
        out64 += intercepts.reshape(-1, *[1] * (raw.ndim - 1))
        return out64
    uniform = bool(np.all(slopes == slopes[0]) and np.all(intercepts == intercepts[0]))
    if target.itemsize == raw.itemsize:
        work = raw.view(f"u{raw.itemsize}")
        modulus = 1 << (8 * raw.itemsize)
        pairs = [(slice(None), slopes[0], intercepts[0])] if uniform else list(zip(range(len(slopes)), slopes, intercepts))
        for where, slope, intercept in pairs:
            if slope != 1:
                np.multiply(work[where], work.dtype.type(int(slope) % modulus), out=work[where])
            if intercept != 0:
                np.add(work[where], work.dtype.type(int(intercept) % modulus), out=work[where])
        return work.view(target)
    out = np.empty(raw.shape, dtype=target)
    for i, (slope, intercept) in enumerate(zip(slopes, intercepts)):
        out[i] = raw[i]  # widen first, then compute in the target type
        out[i] *= int(slope)
        out[i] += int(intercept)
    return out


def _one_or_list(values: np.ndarray) -> float | list[float]:
    return float(values[0]) if np.all(values == values[0]) else [float(v) for v in values]


def _meta(
    sources: list[_Source],
    index: list[tuple[_Source, int]],
    plan: StackPlan,
    slopes: np.ndarray,
    intercepts: np.ndarray,
    series_key: str,
    affine: np.ndarray,
) -> dict[str, Any]:
    ds = sources[0].header
    used = sorted((slot, i) for i, slot in enumerate(plan.slots) if slot >= 0)
    by_path = {index[i][0].path: index[i][0] for _, i in used}  # first use, in array order
    # the window of the middle slice: slices may carry their own (Siemens MR), and an edge slice's is no view of the volume
    middle, row = index[next(i for slot, i in used if slot >= plan.n_positions // 2)]
    voi = functional_item(middle.header, int(middle.table.frame_numbers[row]) - 1, "FrameVOILUTSequence") or middle.header
    transform = functional_item(ds, 0, "PixelValueTransformationSequence") or ds
    modality = str(ds.get("Modality", ""))
    return {
        "series_uid": str(ds.get("SeriesInstanceUID", "")),
        "series_key": series_key,
        "modality": modality,
        "sop_class": str(ds.get("SOPClassUID", "")),
        "rescale_slope": _one_or_list(slopes),
        "rescale_intercept": _one_or_list(intercepts),
        "rescale_type": str(transform.get("RescaleType") or ("HU" if modality == "CT" else "US")),
        "window_center": header_numbers(voi, "WindowCenter", path=middle.path) or [],
        "window_width": header_numbers(voi, "WindowWidth", path=middle.path) or [],
        # the window is in the header's display values; Philips' floating point is on another scale
        **({} if middle.table.display_scale is None else {"window_scale": float(middle.table.display_scale[row])}),
        "voi_lut_function": str(voi.get("VOILUTFunction") or "LINEAR"),
        "source_files": list(by_path),
        "sop_instance_uids": [_text(s.header, "SOPInstanceUID") for s in by_path.values()],
        "frame_of_reference_uid": str(ds.get("FrameOfReferenceUID", "")),
        "irregularities": list(plan.irregularities),
        "orientation": axcodes(affine),
        "spacing": list(spacing_of(affine)),
    }
