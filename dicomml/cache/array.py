"""The layout of one cached array, and its fast read path.

Every array of a cache entry is a standard Zarr v3 array with exactly one
shard (the ``sharding_indexed`` codec, index at the end): inner chunks are
compressed with Blosc (LZ4, byte shuffle), or stored raw when Blosc would
save less than a third of the bytes (decided per array at write time and
recorded in its layout and its ``zarr.json``: decoding barely compressible
data costs more than reading it), and each carries a CRC32C; the shard index
carries its own CRC32C. Any Zarr v3 reader opens it; both its metadata
document and its shard are written here (:func:`write_array`), without
zarr-python.

Reading goes through :func:`read_region` instead of zarr-python's generic
pipeline, whose per-chunk overhead dominated whole-volume and patch reads
(measured in ``benchmarks/bench_cache.py``): a local shard is memory-mapped
once and decoded from the map (no copy of the file's bytes), an object
store's shard is one GET for a whole array or one byte-range read per inner
chunk a patch touches. Every chunk's CRC32C is checked before it is decoded,
so a corrupted chunk raises :class:`~dicomml.errors.CacheIntegrityError`
instead of returning wrong voxels. Checksums are computed by the ``crc32c``
package (the CPU's CRC32C instruction, without the GIL on large buffers).
A window read with the voxels (a lookup table) is applied to each row of
chunks as it is decoded, while that row is still in the CPU's cache.
"""

from __future__ import annotations

import json
import math
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property, partial
from itertools import product
from typing import Any, NamedTuple

import crc32c
import imagecodecs
import numpy as np

from dicomml.errors import CacheIntegrityError
from dicomml.threads import parallel

__all__ = [
    "CODECS",
    "DTYPES",
    "RAW_ABOVE",
    "ArrayLayout",
    "array_metadata",
    "index_nbytes",
    "read_index",
    "read_region",
    "shard_key",
    "write_array",
]

#: Offset and length of a chunk that the shard does not hold.
_MISSING = 2**64 - 1
_CRC = 4
#: The inner chunks' compressor: Blosc, LZ4 at level 1, byte shuffle (typesize: the dtype's item size).
_CNAME, _CLEVEL = "lz4", 1
#: Codecs of an array's inner chunks, as recorded in its layout.
CODECS = ("blosc", "raw")
#: dtypes of the arrays :func:`write_array` writes (numeric, little-endian), as recorded in their layouts, and their item sizes.
DTYPES = {
    n: np.dtype(n).itemsize
    for n in ("bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "float16", "float32", "float64")
}
#: Chunks are stored raw when Blosc leaves more than this fraction of the bytes: the saving does not pay for decoding.
RAW_ABOVE = 2 / 3
#: Voxels windowed per call (whole planes, at least one): the block stays in cache across the window's passes.
_WINDOW_BLOCK = 2**18
#: The same when several threads window one read: a row of 64-voxel chunks in one block (fewer calls while the threads
#: share the cores and the GIL, longer streams) gave the faster whole-volume read (``benchmarks/bench_cache.py``'s warm phase).
_SHARED_WINDOW_BLOCK = 2**20


@dataclass(frozen=True)
class ArrayLayout:
    """Shape, dtype and inner chunk shape of one cached array.

    Attributes
    ----------
    shape
        Array shape (all axes).
    dtype
        numpy dtype name, stored little-endian.
    chunks
        Inner chunk shape, same length as ``shape``; the shard is ``shape``
        rounded up to whole chunks.
    codec
        ``"blosc"`` (LZ4, byte shuffle) or ``"raw"`` (the chunks' bytes as
        they are); entries written before the choice existed are Blosc.
    """

    shape: tuple[int, ...]
    dtype: str
    chunks: tuple[int, ...]
    codec: str = "blosc"

    @cached_property  # asked several times per read
    def grid(self) -> tuple[int, ...]:
        """Number of inner chunks along each axis."""
        return tuple(max(1, math.ceil(s / c)) for s, c in zip(self.shape, self.chunks))

    @property
    def shard_shape(self) -> tuple[int, ...]:
        """Shape of the single shard: ``shape`` rounded up to whole chunks."""
        return tuple(g * c for g, c in zip(self.grid, self.chunks))

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {"shape": list(self.shape), "dtype": self.dtype, "chunks": list(self.chunks), "codec": self.codec}

    @classmethod
    def from_json(cls, data: Any) -> ArrayLayout:
        """Inverse of :meth:`to_json`, checked: a layout read from a store is untrusted data.

        Raises
        ------
        ValueError
            Naming the field (``codec``, ``dtype``, ``shape``, ``chunks``) that is not what :func:`write_array` writes.
        """
        if type(data) is not dict:
            raise ValueError(f"is {type(data).__name__}, not an object")
        codec, dtype, shape, chunks = data.get("codec", "blosc"), data.get("dtype"), data.get("shape"), data.get("chunks")
        if codec not in CODECS:
            raise ValueError(f"codec {codec!r} is not one of {', '.join(CODECS)}")
        if type(dtype) is not str or dtype not in DTYPES:
            raise ValueError(f"dtype {dtype!r} is not one the cache writes ({', '.join(DTYPES)})")
        if type(shape) is not list or type(chunks) is not list or len(chunks) != len(shape):
            raise ValueError(f"shape {shape!r} and chunks {chunks!r} are not two lists of one integer per axis")
        for size, chunk in zip(shape, chunks):  # one loop, no generator: every read opens its entry's marker
            if type(size) is not int or size < 0:
                raise ValueError(f"shape {shape!r} is not of non-negative integers")
            if type(chunk) is not int or not 1 <= chunk <= max(1, size):
                raise ValueError(f"chunks {chunks!r} are not positive integers, each at most its axis of shape {shape}")
        if math.prod(shape) * DTYPES[dtype] >= 2**62:
            raise ValueError(f"shape {shape!r} of {dtype} is larger than numpy can hold")
        return cls(tuple(shape), dtype, tuple(chunks), codec)


def shard_key(name: str, ndim: int) -> str:
    """Key of the single shard of array ``name`` (``"image/c/0/0/0"``)."""
    return "/".join([name, "c", *(["0"] * ndim)])


def write_array(name: str, data: np.ndarray, chunks: Sequence[int], codec: str = "auto") -> tuple[ArrayLayout, dict[str, list[bytes]]]:
    """Encode ``data`` as a one-shard Zarr v3 array named ``name``: its layout and its files.

    Both files are made here, in the calling thread: the metadata document
    (:func:`array_metadata`) and the shard. zarr-python's own write hands
    every inner chunk to its event-loop and codec threads, which costs more
    CPU time for the same chunks, and makes each metadata write a round trip
    to its event loop; that matters most when every core runs a worker
    (``benchmarks/bench_preprocess.py``). Any Zarr v3 reader reads the result
    (inner chunks in C order, where zarr-python writes Morton order; the index
    says where each one is).

    Parameters
    ----------
    name
        Array name inside the entry's group (``"image"``, ``"mask"``, ``"foreground"``).
    data
        The array; its dtype is kept (little-endian).
    chunks
        Inner chunk shape, one value per axis of ``data`` (clipped to its shape).
    codec
        ``"blosc"``, ``"raw"``, or ``"auto"``: Blosc unless it leaves more
        than :data:`RAW_ABOVE` of the bytes.

    Returns
    -------
    layout : ArrayLayout
        What :func:`read_region` needs to read the array back; its codec is
        ``"raw"`` when Blosc would leave more than :data:`RAW_ABOVE` of the bytes.
    files : dict
        Path relative to the group (``"image/zarr.json"``, :func:`shard_key`)
        to the file's bytes in parts, to be written in order; an empty array
        has no shard file.
    """
    chunks = tuple(int(max(1, min(c, s))) for c, s in zip(chunks, data.shape))
    dtype = np.dtype(data.dtype).newbyteorder("<")
    layout = ArrayLayout(tuple(data.shape), dtype.name, chunks)
    shard: dict[str, list[bytes]] = {}
    if data.size:
        if codec not in (*CODECS, "auto"):
            raise ValueError(f"codec {codec!r} is not one of auto, {', '.join(CODECS)}")
        data = data.astype(dtype, copy=False)
        frames = []
        if codec != "raw":
            import numcodecs.blosc  # here: importing numcodecs costs a reader as much as opening its cache

            frames = [
                numcodecs.blosc.compress(box, _CNAME.encode(), _CLEVEL, numcodecs.blosc.SHUFFLE) for box in _chunk_boxes(data, layout)
            ]
        if codec == "raw" or (
            codec == "auto" and sum(map(len, frames)) > RAW_ABOVE * math.prod(layout.grid) * math.prod(chunks) * dtype.itemsize
        ):
            layout = ArrayLayout(layout.shape, layout.dtype, layout.chunks, "raw")
            frames = [box.tobytes() for box in _chunk_boxes(data, layout)]
        shard[shard_key(name, data.ndim)] = _shard(frames, layout)
    return layout, {f"{name}/zarr.json": [json.dumps(array_metadata(layout)).encode()], **shard}


def array_metadata(layout: ArrayLayout) -> dict[str, Any]:
    """The Zarr v3 metadata document (``zarr.json``) of an array of ``layout``.

    One regular chunk (the shard) covering the array, with the
    ``sharding_indexed`` codec: inner chunks of ``layout.chunks``, each
    ``bytes`` (little-endian) + Blosc (unless the codec is ``"raw"``) +
    CRC32C, and the index at the end (``bytes`` + CRC32C). The same document
    zarr-python writes for these settings (tested).
    """
    dtype = np.dtype(layout.dtype)
    # the spec's bytes codec names an endianness only for multi-byte types
    as_bytes = {"name": "bytes", **({"configuration": {"endian": "little"}} if dtype.itemsize > 1 else {})}
    index_bytes = {"name": "bytes", "configuration": {"endian": "little"}}
    compress = [_blosc(dtype.itemsize)] if layout.codec == "blosc" else []
    sharding = {
        "chunk_shape": list(layout.chunks),
        "codecs": [as_bytes, *compress, {"name": "crc32c"}],
        "index_codecs": [index_bytes, {"name": "crc32c"}],
        "index_location": "end",
    }
    return {
        "zarr_format": 3,
        "node_type": "array",
        "shape": list(layout.shape),
        "data_type": dtype.name,
        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": list(layout.shard_shape)}},
        "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
        "fill_value": np.zeros((), dtype).item(),
        "codecs": [{"name": "sharding_indexed", "configuration": sharding}],
        "attributes": {},
        "storage_transformers": [],
    }


def _blosc(typesize: int) -> dict[str, Any]:
    """The Blosc codec's entry in the metadata: what :func:`write_array` compresses with."""
    config = {"typesize": typesize, "cname": _CNAME, "clevel": _CLEVEL, "shuffle": "shuffle", "blocksize": 0}
    return {"name": "blosc", "configuration": config}


def _chunk_boxes(data: np.ndarray, layout: ArrayLayout) -> Iterator[np.ndarray]:
    """Each inner chunk of ``data`` in C order, contiguous; edge chunks padded with the fill value 0, as the codec requires."""
    for cidx in product(*map(range, layout.grid)):
        box = data[tuple(slice(i * c, (i + 1) * c) for i, c in zip(cidx, layout.chunks))]
        if box.shape == layout.chunks:
            yield np.ascontiguousarray(box)
        else:
            padded = np.zeros(layout.chunks, dtype=data.dtype)
            padded[tuple(slice(0, n) for n in box.shape)] = box
            yield padded


def _shard(frames: Sequence[bytes], layout: ArrayLayout) -> list[bytes]:
    """The ``sharding_indexed`` shard of encoded chunks (C order): each chunk + its CRC32C, then the index + CRC32C."""
    parts: list[bytes] = []
    index = np.empty((*layout.grid, 2), dtype="<u8")
    offset = 0
    for cidx, frame in zip(product(*map(range, layout.grid)), frames):
        parts += [frame, crc32c.crc32c(frame).to_bytes(_CRC, "little")]
        index[cidx] = (offset, len(frame) + _CRC)
        offset += len(frame) + _CRC
    body = index.tobytes()
    return [*parts, body, crc32c.crc32c(body).to_bytes(_CRC, "little")]


def read_index(blob_tail: bytes | np.ndarray, layout: ArrayLayout, where: str) -> np.ndarray:
    """Decode and check a shard index (its last bytes), ``(grid..., 2)`` of (offset, length).

    Raises
    ------
    CacheIntegrityError
        If the index's CRC32C does not match (``where`` names the array).
    """
    body, crc = blob_tail[:-_CRC], blob_tail[-_CRC:]
    if crc32c.crc32c(np.frombuffer(body, np.uint8).data) != int.from_bytes(crc, "little"):
        raise CacheIntegrityError(
            f"{where}: shard index checksum mismatch; the entry is corrupted, delete it "
            "(Cache.delete or `dicomml cache verify --delete`) and recompute",
            path=where,
        )
    return np.frombuffer(body, dtype="<u8").reshape(*layout.grid, 2)


def index_nbytes(layout: ArrayLayout) -> int:
    """Size in bytes of the shard index (with its CRC32C) at the end of the shard."""
    return math.prod(layout.grid) * 16 + _CRC


def read_region(
    read: Any,
    layout: ArrayLayout,
    index: np.ndarray,
    region: tuple[slice, ...],
    where: str,
    blob: Any = None,
    lookup: np.ndarray | None = None,
    threads: int = 1,
    out: np.ndarray | None = None,
    scale: float | None = None,
) -> np.ndarray:
    """Decode the inner chunks that ``region`` touches into a new array (or ``out``).

    Parameters
    ----------
    read
        ``read(start, end) -> bytes`` of the shard file (unused when ``blob`` is
        given); thread-safe when ``threads`` > 1.
    layout
        The array's layout.
    index
        Its shard index (:func:`read_index`).
    region
        One ``slice(start, stop)`` per axis (step 1, within the shape).
    where
        Entry and array, for error messages.
    blob
        The whole shard file as a buffer (bytes, or a memory map of a local
        file, decoded in place).
    lookup
        Optional ``(C, 2**bits)`` table for an 8/16-bit integer array: the
        chunks of each row along the last axis are decoded side by side into
        a buffer that stays in the CPU's cache, then mapped through every
        row of the table (indexed by the stored value's bits) straight into
        the output (:func:`_window`), which then has a leading axis of C and
        the table's dtype. No temporary of the whole region.
    threads
        Read and decode with up to this many threads (the calling one and
        this process's shared decoding threads; each takes every n-th chunk,
        or row of chunks with ``lookup``; CRC32C, Blosc and numpy's passes
        release the GIL, so a second thread shortens a whole-volume read,
        as far as the two share the cores' memory bandwidth).
    out
        Where to write: C-contiguous, of the result's shape and dtype (e.g. a
        tensor in shared memory, so a DataLoader worker hands it over
        without a copy).
    scale
        Without ``lookup``: multiply the values by this, in the output's
        dtype (float32 unless ``out`` says otherwise), as they are copied
        out: one pass instead of copy, cast, then multiply (e.g. integers
        stored for [0, 1] samples).

    Returns
    -------
    numpy.ndarray
        The region (``(C, *region)`` with ``lookup``), C order.

    Raises
    ------
    CacheIntegrityError
        If a chunk is missing or its CRC32C does not match.
    """
    dtype = np.dtype(layout.dtype)
    shape = [r.stop - r.start for r in region]
    if out is None and lookup is not None:
        out = np.empty([len(lookup), *shape], dtype=lookup.dtype)
    elif out is None:
        out = np.empty(shape, dtype=dtype if scale is None else np.dtype(np.float32))
    if not out.size:  # an empty region touches no chunk
        return out
    rows = list(zip(lookup, _lines(lookup, dtype))) if lookup is not None else []  # each table row, and its line
    targets = out.reshape(-1, *shape)  # one per row of the table (one without a table)
    factor = None if scale is None else out.dtype.type(scale)
    # per axis, each touched chunk: its index, the box's slice in the chunk and in the output (once, not per chunk)
    axes = [
        [
            (
                i,
                slice(max(r.start, i * c) - i * c, min(r.stop, (i + 1) * c) - i * c),
                slice(max(r.start, i * c) - r.start, min(r.stop, (i + 1) * c) - r.start),
            )
            for i in range(r.start // c, (r.stop - 1) // c + 1)
        ]
        for r, c in zip(region, layout.chunks)
    ]
    spans = index[tuple(slice(a[0][0], a[-1][0] + 1) for a in axes)].reshape(-1, 2).tolist()  # C order, as product() walks
    jobs = [(*zip(*cell), *span) for cell, span in zip(product(*axes), spans)]
    chunk_bytes = math.prod(layout.chunks) * dtype.itemsize

    def decoded(cidx: tuple[int, ...], offset: int, length: int, buffer: np.ndarray) -> np.ndarray:
        """One chunk, its CRC32C checked first: a view of the shard (raw) or decoded into ``buffer``."""
        if offset == _MISSING or length <= _CRC:
            raise CacheIntegrityError(f"{where}: chunk {cidx} is missing from the shard; delete the entry and recompute", path=where)
        raw, base = (blob, offset) if blob is not None else (read(offset, offset + length), 0)
        if len(raw) < base + length or (layout.codec == "raw" and length - _CRC != chunk_bytes):
            raise CacheIntegrityError(f"{where}: chunk {cidx} is cut short (truncated shard); delete the entry and recompute", path=where)
        frame = np.frombuffer(raw, np.uint8, length - _CRC, base)  # a view, no copy
        if crc32c.crc32c(frame.data) != int.from_bytes(raw[base + length - _CRC : base + length], "little"):
            raise CacheIntegrityError(
                f"{where}: chunk {cidx} checksum mismatch (CRC32C); the entry is corrupted, delete it and recompute",
                path=where,
            )
        if layout.codec == "raw":
            return frame.view(dtype).reshape(layout.chunks)
        # imagecodecs, not numcodecs: its main-thread call takes Blosc's global context, lock and threads
        try:  # no cost unless raised; a frame larger than the layout's chunk (its chunks tampered with) is refused by Blosc
            imagecodecs.blosc_decode(frame, numthreads=1, out=buffer.reshape(-1).view(np.uint8))  # type: ignore[arg-type]  # stub: bytes-likes only
        except imagecodecs.BloscError:
            raise CacheIntegrityError(
                f"{where}: chunk {cidx} does not decode to a chunk of {layout.chunks}; delete the entry and recompute", path=where
            ) from None
        return buffer

    def copied(share: Sequence[tuple[Any, ...]]) -> None:
        # only what this codec needs: a small read would pay more for allocating a buffer than for decoding
        buffer = np.empty(layout.chunks if layout.codec == "blosc" else 0, dtype=dtype)
        for cidx, src, dst, offset, length in share:
            box = targets[0][dst]
            box[...] = decoded(cidx, offset, length, buffer)[src]
            if factor is not None:  # cast, then scaled in place: two vectorised passes beat one mixed-type ufunc
                np.multiply(box, factor, out=box)

    def windowed(share: Sequence[Sequence[tuple[Any, ...]]], block: int) -> None:
        buffer = np.empty(layout.chunks if layout.codec == "blosc" else 0, dtype=dtype)
        row = np.empty(math.prod(layout.chunks[:-1]) * shape[-1], dtype=dtype)
        floats = np.empty(block if any(line is None for _, line in rows) else 0, dtype=targets.dtype)  # for gathers
        # a line's integer passes run in ``row`` itself, unless another row of the table still needs the stored values
        ints = np.empty(block if len(rows) > 1 and any(line and line.bounds for _, line in rows) else 0, dtype=dtype)
        for chunks in share:
            lead = chunks[0][2][:-1]  # the row's box in the output, but the last axis whole
            stored = row[: math.prod(s.stop - s.start for s in lead) * shape[-1]].reshape(*(s.stop - s.start for s in lead), shape[-1])
            for cidx, src, dst, offset, length in chunks:
                stored[..., dst[-1]] = decoded(cidx, offset, length, buffer)[src]
            _window(stored, rows, [target[lead] for target in targets], floats, ints, block)

    if lookup is None:
        parallel(copied, jobs, threads)  # each thread writes its own chunks' boxes of ``out``
    else:  # the chunks of a row along the last axis decoded side by side (in cache), then windowed into long runs of ``out``
        per_row = len(axes[-1])
        row_jobs = [jobs[i : i + per_row] for i in range(0, len(jobs), per_row)]
        block = _WINDOW_BLOCK if min(threads, len(row_jobs)) == 1 else _SHARED_WINDOW_BLOCK
        parallel(partial(windowed, block=block), row_jobs, threads)
    return out


def _window(
    stored: np.ndarray,
    rows: Sequence[tuple[np.ndarray, _Line | None]],
    boxes: Sequence[np.ndarray],
    floats: np.ndarray,
    ints: np.ndarray,
    size: int,
) -> None:
    """``boxes[c][...] = table[stored]`` for each ``(table, line)`` of ``rows``, ``size`` voxels of planes at a time (kept in cache between passes).

    A table whose ``line`` is known (:func:`_line`, the usual linear window)
    is computed as one, in place in the output: float passes cost less than the
    gather, with the same bits; any other row is gathered through
    ``np.take`` into ``floats`` (it makes the block's indices intp first, a
    temporary that stays in cache), then copied. A line's integer passes
    (:func:`_draw`) overwrite ``stored`` when the table has one row, else
    run in ``ints``.
    """
    indices = stored.view(f"u{stored.dtype.itemsize}")  # a table is indexed by the stored bits read as unsigned
    if stored.ndim < 3:
        pieces: list[tuple[Any, ...]] = [()]
    else:
        step = max(1, size // math.prod(stored.shape[-2:]))
        pieces = [(*lead, slice(i, i + step)) for lead in np.ndindex(stored.shape[:-3]) for i in range(0, stored.shape[-3], step)]
    for piece in pieces:
        for (table, line), box in zip(rows, boxes):
            if line is not None:
                block = stored[piece]
                _draw(block, line, box[piece], block if len(rows) == 1 else _part(ints, block.shape, block.dtype))
            else:  # in range by construction: mode="wrap" skips the bounds checks
                part = indices[piece]
                mapped = _part(floats, part.shape, table.dtype)
                np.take(table, part, mode="wrap", out=mapped)
                box[piece] = mapped


class _Line(NamedTuple):
    """A lookup table row as a clipped line: origin, slope, low, high (float32), integer clip bounds or None; see :func:`_line`."""

    p: np.float32
    q: np.float32
    low: np.float32
    high: np.float32
    bounds: tuple[int, int] | None = None


def _part(buffer: np.ndarray, shape: tuple[int, ...], dtype: np.dtype[Any]) -> np.ndarray:
    """The start of ``buffer`` as an array of ``shape``, or a new array where it is too small."""
    size = math.prod(shape)
    return buffer[:size].reshape(shape) if size <= buffer.size else np.empty(shape, dtype)


#: Lines of the tables seen (by id while the table lives, with its bytes to compare): found once, not at every read.
_seen_lines: dict[tuple[int, str], tuple[bytes, list[_Line | None]]] = {}


def _lines(lookup: np.ndarray, dtype: np.dtype[Any]) -> list[_Line | None]:
    """:func:`_line` of each row of ``lookup`` for stored ``dtype``, memoized per table (and its contents)."""
    key, contents = (id(lookup), dtype.str), lookup.tobytes()  # bytes compare faster than values (NaN aside)
    seen = _seen_lines.get(key)
    if seen is not None and seen[0] == contents:
        return seen[1]
    lines = [_line(row, dtype) for row in lookup]
    if seen is None:
        weakref.finalize(lookup, _seen_lines.pop, key, None)
    _seen_lines[key] = (contents, lines)
    return lines


def _line(row: np.ndarray, dtype: np.dtype[Any]) -> _Line | None:
    """``(p, q, low, high)`` such that :func:`_draw` gives ``row`` bit for bit for every stored value, or None.

    ``row`` is indexed by the stored value's bits read as unsigned. A linear
    window (``clip((v - p) * q, low, high)`` in float32, as
    :func:`~dicomml.transforms.functional.scale_intensity` computes it) is
    found from two points of its ramp, rounded to float32 and its
    neighbours, then checked on every value of ``dtype``: any doubt keeps
    the table. With an integer origin, clipping the stored integers just
    outside the ramp, then subtracting the origin in integers, often lands
    on ``low`` and ``high`` exactly: those bounds are kept when that, too,
    gives every value's bits (fewer and narrower passes, see :func:`_draw`).
    """
    if row.dtype != np.float32 or row.size != 2 ** (8 * dtype.itemsize) or not np.isfinite(row).all():
        return None
    values = np.arange(row.size, dtype=f"u{dtype.itemsize}").view(dtype)
    order = np.argsort(values, kind="stable")
    low, high = row.min(), row.max()
    ramp = order[(row[order] > low) & (row[order] < high)]
    if len(ramp) < 2:
        return None
    (v0, v1), (t0, t1) = values[ramp[[0, -1]]].astype(np.float64), row[ramp[[0, -1]]].astype(np.float64)
    slope = (t1 - t0) / (v1 - v0)
    origin = v0 - t0 / slope
    drawn = np.empty_like(row)
    for q in _near(np.float32(slope)):
        for p in {np.float32(origin), np.float32(round(origin * 2) / 2)}:
            line = _Line(p, q, low, high)
            _draw(values, line, drawn)
            if np.array_equal(drawn.view(np.uint32), row.view(np.uint32)):
                return _in_integers(line, values, row, (int(v0) - 1, int(v1) + 1))
    return None


def _in_integers(line: _Line, values: np.ndarray, row: np.ndarray, bounds: tuple[int, int]) -> _Line:
    """``line`` with integer clip ``bounds`` where :func:`_draw` then still gives ``row``'s bits for every value, else as is."""
    limits = np.iinfo(values.dtype)
    a, b = max(bounds[0], limits.min), min(bounds[1], limits.max)
    origin = int(line.p) if float(line.p).is_integer() else None
    if origin is None or not (limits.min <= min(origin, a - origin) and max(origin, b - origin) <= limits.max):
        return line  # the subtraction would not be exact in the stored integers
    clipped = line._replace(bounds=(a, b))
    drawn = np.empty_like(row)
    _draw(values, clipped, drawn)
    return clipped if np.array_equal(drawn.view(np.uint32), row.view(np.uint32)) else line


def _near(x: np.float32) -> list[np.float32]:
    """``x`` and its float32 neighbours, two each side."""
    up, down = [x], [x]
    for _ in range(2):
        up.append(np.nextafter(up[-1], np.float32(np.inf)))
        down.append(np.nextafter(down[-1], np.float32(-np.inf)))
    return [x, up[1], down[1], up[2], down[2]]


def _draw(stored: np.ndarray, line: _Line, out: np.ndarray, ints: np.ndarray | None = None) -> None:
    """``out = clip((stored - p) * q, low, high)``, each step rounded to float32 (the passes :func:`_line` checks).

    With integer ``bounds`` ``(a, b)``: ``out = (clip(stored, a, b) - p) * q``,
    the clip and the subtraction exact in the stored integers, in ``ints``
    (shaped like ``stored``, or ``stored`` itself, then overwritten; a new
    array if None): half the bytes per pass and no float clip; then one
    pass casts and multiplies (the cast is exact, so the bits are those of
    a cast then a multiply).
    """
    p, q, low, high, bounds = line
    if bounds is not None:
        shifted = ints if ints is not None else np.empty_like(stored)
        np.clip(stored, *bounds, out=shifted)
        np.subtract(shifted, int(p), out=shifted)
        np.multiply(shifted, q, out=out)  # cast and multiply in one pass: numpy casts a buffer at a time, in cache
        return
    np.subtract(stored, p, out=out)  # 8/16-bit integers are exact in float32: cast and subtract in one pass, as above
    np.multiply(out, q, out=out)
    np.clip(out, low, high, out=out)
