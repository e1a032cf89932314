"""`Cache`: a content-keyed Zarr v3 store of preprocessed volumes.

Layout of a cache at ``ROOT`` (a local folder or any fsspec URL)::

    ROOT/zarr.json                 Zarr v3 group; attribute dicomml_cache_format
    ROOT/data/KEY/TOKEN/           one Zarr v3 group per written copy of an entry:
        zarr.json                  attributes: affine, meta, layouts, checksums
        image/                     (i, j, k) one shard, inner chunks, Blosc LZ4 + CRC32C
        mask/                      (C, i, j, k) uint8, same chunks (optional)
        foreground/                (N, 4) int32 rows (channel, i, j, k) of mask voxels > 0
    ROOT/entries/KEY.json          the publish marker: which TOKEN is the entry
    ROOT/tmp/                      markers being written
    ROOT/leases/KEY.TOKEN.json     a writer at work on data/KEY/TOKEN (host, pid)
    ROOT/lists/NAME.json           a Dataset's samples and their keys, kept for an unchanged manifest

Publishing is atomic: a writer fills ``data/KEY/TOKEN`` (TOKEN is unique per
writer), then writes the marker to ``tmp/`` and renames it to
``entries/KEY.json``. Readers only follow markers, so a writer killed at any
moment leaves nothing that a reader trusts, and writers racing on one key
each publish a complete copy (the last rename wins; ``gc`` removes the copy
no marker names). Nothing is pickled: markers are JSON, arrays are Zarr.

``gc`` never removes what a live writer may still publish, whatever its
grace: a writer takes a lease before it creates its data folder, refreshes
it before each file, and drops it after publishing; ``gc`` lists data
folders, then leases, then markers, so a folder it sees either has a lease or
is already named by a marker; a key's folder, into which a writer that gc did
not see may put a data folder at any moment, is emptied of what gc saw and
removed only if then empty, never recursively. A lease is live while its
process runs (a writer on this host) or for :data:`LEASE_SECONDS` after its
last refresh (another host); temporary files younger than that are a publish
in flight and are kept too. A put that fails
(a full disk, a read-only mount) removes what it wrote and raises
:class:`~dicomml.errors.CacheError`; one whose marker went out before the
failure (an object store's rename is a copy, then a delete of the temporary
file) reads the marker back, keeps its data and returns the entry, the
temporary file left for ``gc``. A marker that does not parse (cut short
by a crash on a store without atomic renames) publishes nothing: readers get
:class:`~dicomml.errors.CacheIntegrityError`, and the next put of its key
replaces it.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import mmap
import os
import re
import socket
import sys
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import crc32c
import fsspec
import numpy as np
from fsspec.implementations.local import LocalFileSystem

from dicomml.cache.array import ArrayLayout, index_nbytes, read_index, read_region, shard_key, write_array
from dicomml.cache.key import FORMAT_VERSION
from dicomml.errors import (
    CacheError,
    CacheIntegrityError,
    CacheMissError,
    ConfigError,
    DicomMLError,
    RemoteSourceError,
    SourceNotFoundError,
)
from dicomml.paths import os_reason, refuse_credentials
from dicomml.sources._remote import Remote
from dicomml.sources.buckets import bucket_options, bucket_retries, filesystem, single_try

if sys.platform != "win32":  # Windows has no limit to ask
    import resource

__all__ = ["Cache", "CacheEntry", "FOREGROUND_MAX"]

#: Bytes of the write check's probe: one block of any file system.
_PROBE_BYTES = 4096

#: At most this many foreground voxels are indexed per entry, shared among mask channels (evenly strided).
FOREGROUND_MAX = 200_000
#: A writer's lease (and a temporary file) counts as live this long after its last refresh, whatever gc's grace.
LEASE_SECONDS = 600.0
#: Memory maps of local shard files this process keeps open for the next reads, all Caches together (each map holds a
#: file descriptor), and at most a quarter of the soft limit on open files.
MAPS_KEPT = 64
#: A local shard file up to this size, read whole and not mapped already, is read with one ``read`` instead of mapped.
READ_WHOLE_BELOW = 4 << 20
#: Read-ahead is asked for a mapped shard in pieces of this size: the kernel caps one request at its read-ahead window.
_AHEAD_PIECE = 1 << 20
_ARRAYS = ("image", "mask", "foreground")
#: Number of axes of each array an entry may hold (an image has a leading axis of volumes or not).
_NDIMS = {"image": (3, 4), "mask": (4,), "foreground": (2,)}
#: The last part of an entry's data folder, ``data/KEY/TOKEN``: a plain name (the writer's is a uuid4 hex).
_TOKEN = re.compile(r"[0-9A-Za-z_-]+")
#: How reads of a cache's shard files are tried again (a source's defaults: its retries and backoff).
_READS = Remote()
T = TypeVar("T")
K = TypeVar("K")
#: Per thread: the memory a small shard read whole goes into, reused by the next such read while still in the CPU's cache.
_read_buffers = threading.local()


class Kept(Generic[K, T]):
    """Values kept for reuse by key, the least recently used dropped once their weights add up to more than ``limit()``.

    One per process for what every reader shares (memory maps, a Dataset's
    foreground indexes); safe to use from several threads, and empty again
    in a forked child (a DataLoader worker), whose lock no parent thread holds.

    Parameters
    ----------
    limit
        The most total weight kept, asked at each :meth:`put` (a limit that can change).
    weight
        A value's weight (1 each by default; bytes, say).

    Examples
    --------
    >>> kept = Kept(lambda: 2)
    >>> for key in "abc":
    ...     kept.put(key, key.upper())
    >>> kept.get("a"), kept.get("c")
    (None, 'C')
    """

    def __init__(self, limit: Callable[[], int], weight: Callable[[T], int] = lambda value: 1) -> None:
        self._limit, self._weight = limit, weight
        self._forget()
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=self._forget)

    def _forget(self) -> None:
        """Empty, with a lock no thread holds (a forked child's parent threads are gone)."""
        self._items: OrderedDict[K, tuple[T, int]] = OrderedDict()
        self._total = 0
        self._lock = threading.Lock()

    def clear(self) -> None:
        """Drop every value (a memory map closes once no array views it)."""
        with self._lock:
            self._items.clear()
            self._total = 0

    def get(self, key: K) -> T | None:
        """The value kept for ``key``, now the most recently used; None if none is."""
        with self._lock:
            kept = self._items.get(key)
            if kept is None:
                return None
            self._items.move_to_end(key)
            return kept[0]

    def put(self, key: K, value: T) -> None:
        """Keep ``value`` for ``key``, dropping the least recently used beyond the limit (``value`` too, if alone beyond it)."""
        weight, limit = self._weight(value), self._limit()
        with self._lock:
            if key in self._items:
                self._total -= self._items.pop(key)[1]
            self._items[key] = (value, weight)
            self._total += weight
            while self._total > limit:
                self._total -= self._items.popitem(last=False)[1][1]

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[K]:
        with self._lock:
            return iter(list(self._items))


def _maps_limit() -> int:
    """How many memory maps this process keeps: :data:`MAPS_KEPT`, at most a quarter of the soft limit on open files."""
    if sys.platform == "win32":
        return MAPS_KEPT
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return MAPS_KEPT if soft == resource.RLIM_INFINITY else min(MAPS_KEPT, soft // 4)


#: Memory maps of local shard files by the Cache that mapped them (another sees a file removed since: ``verify``) and path.
_maps: Kept[tuple[object, str], mmap.mmap] = Kept(_maps_limit)


@dataclass(frozen=True)
class CacheEntry:
    """A published cache entry, opened for reading.

    Attributes
    ----------
    key
        The cache key.
    affine
        4x4 float64, maps the last three indices of ``image`` to RAS+ mm.
    meta
        Provenance: series key, source fingerprint, config, source files...
    layouts
        Layout of each stored array (``image`` and, if cached, ``mask`` and
        ``foreground``).
    checksums
        CRC32C of each decoded array, recorded at write time.
    """

    key: str
    affine: np.ndarray
    meta: dict[str, Any]
    layouts: dict[str, ArrayLayout]
    checksums: dict[str, int] = field(repr=False)
    _cache: Cache = field(repr=False)
    _path: str = field(repr=False)
    # arrays read whole at once, by name: shard, message prefix, region, parsed index (a copy's bytes never change)
    _wholes: dict[str, tuple[str, str, tuple[slice, ...], np.ndarray]] = field(default_factory=dict, repr=False, compare=False)

    @property
    def shape(self) -> tuple[int, int, int]:
        """Spatial shape (i, j, k) of the image."""
        return self.layouts["image"].shape[-3:]  # type: ignore[return-value]

    @property
    def has_mask(self) -> bool:
        """Whether masks were cached with the image."""
        return "mask" in self.layouts

    def nbytes(self) -> int:
        """Bytes of the entry's data in the store (all arrays, metadata included).

        Raises
        ------
        CacheIntegrityError
            If an array's shard file is missing or shorter than its index (a partial copy of the cache, a lost write).
        """
        fs = self._cache.fs
        fs.invalidate_cache(self._path)  # other processes write the cache; fsspec keeps listings of object stores
        sizes = {path.rstrip("/"): int(info["size"]) for path, info in fs.find(self._path, detail=True).items()}
        for name, layout in self.layouts.items():
            shard = f"{self._path}/{shard_key(name, len(layout.shape))}"
            if not math.prod(layout.shape):  # an empty array has no shard file
                continue
            if shard not in sizes:
                raise _missing(shard, f"{self._cache.url}: entry {self.key}")
            if sizes[shard] < index_nbytes(layout):
                raise CacheIntegrityError(
                    f"{self._cache.url}: entry {self.key}: shard file {shard} is cut short ({sizes[shard]} bytes); "
                    "delete the entry and recompute",
                    path=shard,
                )
        return sum(sizes.values())

    def read(
        self,
        name: str = "image",
        start: Sequence[int] | None = None,
        size: Sequence[int] | None = None,
        *,
        lookup: np.ndarray | None = None,
        threads: int = 1,
        volumes: slice | None = None,
        out: np.ndarray | None = None,
        scale: float | None = None,
    ) -> np.ndarray:
        """Read a whole array, or the spatial box ``start`` .. ``start + size``.

        Parameters
        ----------
        name
            ``"image"``, ``"mask"`` or ``"foreground"``.
        start, size
            Voxel corner and extent along the three spatial (last) axes; leading
            axes (volumes of an N-D image, mask channels) are read whole unless
            ``volumes`` says otherwise. Omit both for the whole array.
        lookup
            For an 8/16-bit integer array: a ``(C, 2**bits)`` table applied while
            decoding (see :func:`~dicomml.cache.array.read_region`), e.g. the
            windows of :meth:`~dicomml.transforms.Transform.lookup_table`.
        threads
            Decode with up to this many threads (chunks are shared out among them).
        volumes
            Of an array with a leading axis (an N-D image: time, echo,
            diffusion... or a study's channels), only these (a slice, e.g.
            ``slice(3, 4)``); each is stored in chunks of its own, so the
            others are not read.
        out
            Write into this C-contiguous array (the result's shape and dtype)
            instead of a new one, e.g. a tensor in shared memory.
        scale
            Without ``lookup``: multiply the values by this as they are copied
            out, in the result's dtype (float32 unless ``out`` is given).

        Returns
        -------
        numpy.ndarray
            The voxels, in the cached dtype (``(C, ...)`` in the table's dtype with ``lookup``, float32 with ``scale``).

        Raises
        ------
        KeyError
            If the entry has no such array.
        ValueError
            If the box leaves the array.
        CacheIntegrityError
            If a chunk touched is missing or fails its checksum.

        Examples
        --------
        >>> patch = entry.read("image", start=(10, 20, 30), size=(96, 96, 96))  # doctest: +SKIP
        """
        layout = self.layouts[name]
        known = self._wholes.get(name) if start is None and size is None and volumes is None else None
        if known is not None:  # read whole before (a later epoch): the same file, every chunk still checked
            shard, where, region, index = known
            mapped = self._cache._map(shard, layout, where, whole=True)
            return read_region(None, layout, index, region, where, blob=mapped, lookup=lookup, threads=threads, out=out, scale=scale)
        shard = f"{self._path}/{shard_key(name, len(layout.shape))}"
        where = f"{self._cache.url}: entry {self.key} array {name}"
        fs = self._cache.fs
        lead = len(layout.shape) - 3
        if volumes is not None and lead != 1:
            raise ConfigError(f"volumes={volumes}: the {name} array of shape {layout.shape} has no single leading axis")
        if volumes is not None and volumes.step not in (None, 1):
            raise ConfigError(f"volumes={volumes}: give a contiguous slice (step 1)")
        kept = (slice(*volumes.indices(layout.shape[0])[:2]),) if volumes is not None else tuple(slice(0, s) for s in layout.shape[:lead])
        if start is None and size is None and volumes is not None:
            start, size = (0, 0, 0), layout.shape[-3:]
        if start is None and size is None:
            region = tuple(slice(0, s) for s in layout.shape)
        elif start is None or size is None:
            raise ConfigError("give both start and size, or neither")
        else:
            region = kept + tuple(slice(int(b), int(b) + int(n)) for b, n in zip(start, size))
            if any(r.start < 0 or r.stop > s or r.stop <= r.start for r, s in zip(region, layout.shape)):
                raise ConfigError(f"box start={list(start)} size={list(size)} leaves the {name} array of shape {layout.shape}")
        options: dict[str, Any] = {"lookup": lookup, "threads": threads, "out": out, "scale": scale}
        if not math.prod(layout.shape):  # no chunks, so no shard file (a mask without foreground)
            return read_region(None, layout, np.empty((0, 2), np.uint64), region, where, **options)
        if isinstance(fs, LocalFileSystem):  # decoded from a memory map (no copy of the file's bytes), or a small file's one read
            mapped = self._cache._map(shard, layout, where, whole=start is None and volumes is None)
            if isinstance(mapped, np.ndarray):  # read at once: its index is at hand; kept as a copy, a view would keep the bytes alive
                index = read_index(mapped[-index_nbytes(layout) :], layout, where).copy()
                self._wholes[name] = (shard, where, region, index)
            else:
                index = self._cache._index(self, name, shard, where, mapped)
            return read_region(None, layout, index, region, where, blob=mapped, **options)
        if start is None:  # one GET on object stores
            blob = _cat(fs, shard, where)
            index = read_index(blob[-index_nbytes(layout) :], layout, where)
            return read_region(None, layout, index, region, where, blob=blob, **options)
        index = self._cache._index(self, name, shard, where)
        with _fetch(lambda: fs.open(shard, "rb"), shard, where) as f:  # one open, one ranged read per touched chunk
            lock = threading.Lock()

            def read(start: int, end: int) -> bytes:
                def once() -> bytes:
                    f.seek(start)
                    return f.read(end - start)

                with lock:
                    return _fetch(once, shard, where)

            return read_region(read, layout, index, region, where, **options)


class Cache:
    """Content-keyed store of preprocessed volumes: Zarr v3, atomic, checksummed.

    Parameters
    ----------
    url
        Local folder or fsspec URL (``s3://bucket/cache``, ``memory://c``);
        created if absent.
    storage_options
        Passed to fsspec for remote URLs.
    create
        Create the cache when ``url`` holds none; False opens an existing
        cache only (inspection and checks must not make one on a typo).

    Raises
    ------
    CacheError
        If the cache cannot be opened or created (fsspec knows no such
        protocol, say), or (``create=False``) if ``url`` is not a dicomml cache.
    MissingDependencyError
        If the URL's fsspec implementation (s3fs, gcsfs) is not installed.
    CacheIntegrityError
        If the cache is of another format version.

    Examples
    --------
    >>> cache = Cache(tmp_path / "cache")  # doctest: +SKIP
    >>> cache.put("k1", np.zeros((4, 5, 6), np.int16), np.eye(4))  # doctest: +SKIP
    >>> cache.open("k1").read().shape  # doctest: +SKIP
    (4, 5, 6)
    """

    def __init__(self, url: str | os.PathLike[str], *, storage_options: Mapping[str, Any] | None = None, create: bool = True) -> None:
        self.url = os.fspath(url)
        refuse_credentials(self.url, CacheError, "pass them in storage_options (the CLI: --storage-option KEY=VALUE)")
        # a bucket's request timeout and single try are a source's (Remote's defaults): a stalled request fails, not hangs
        self._storage_options = bucket_options(self.url, Remote(storage_options=dict(storage_options or {})))
        self._fs, root = self._filesystem()
        self.root = root.rstrip("/")
        self._indexes: dict[tuple[str, str], np.ndarray] = {}
        self._maps_of = object()  # keys this Cache's maps among the process's: another Cache sees a file removed since

        def probe() -> tuple[bytes | None, bool]:
            found = self.fs.exists(f"{self.root}/zarr.json")
            if not found and create:
                self._create_root()
            return self.fs.cat_file(f"{self.root}/zarr.json") if found or create else None, found or self.fs.exists(self.root)

        try:  # a store is asked again as a bucket source asks (each request is tried once)
            root_json, folder_found = (
                probe() if isinstance(self.fs, LocalFileSystem) else bucket_retries(probe, self.url, _READS, "opening")
            )
        except Exception as exc:  # an OSError, or a storage client's own (botocore's EndpointConnectionError)
            cause = exc.__cause__ if isinstance(exc, RemoteSourceError) and exc.__cause__ else exc
            reason = " ".join(str(cause).split()) or type(cause).__name__
            raise CacheError(
                f"{self.url}: cannot open the cache ({reason}); check the path, its permissions and any storage options",
                path=self.url,
            ) from exc
        if root_json is None:
            what = "is not a dicomml cache (no zarr.json)" if folder_found else "does not exist"
            raise CacheError(f"{self.url}: {what}; check the path", path=self.url)
        fmt = json.loads(root_json).get("attributes", {}).get("dicomml_cache_format")
        if fmt != FORMAT_VERSION:
            raise CacheIntegrityError(
                f"{self.url}: cache format {fmt}, this dicomml writes format {FORMAT_VERSION}; use another folder",
                path=self.url,
            )

    def __getstate__(self) -> dict[str, Any]:  # DataLoader workers get fresh memos
        state = dict(self.__dict__)
        state["_indexes"], state["_maps_of"] = {}, object()
        return state

    @property
    def storage_options(self) -> dict[str, Any]:
        """The fsspec options the cache was opened with (a bucket's with its timeout and retries)."""
        return dict(self._storage_options)

    @property
    def fs(self) -> fsspec.AbstractFileSystem:
        """The cache's fsspec filesystem, made anew in a process forked from the one that made it."""
        if self._pid != os.getpid():  # a forked DataLoader worker: s3fs's event loop and sessions are the parent's
            self._fs = self._filesystem()[0]
        return self._fs

    def _filesystem(self) -> tuple[fsspec.AbstractFileSystem, str]:
        """The filesystem and root path of the cache's URL, made in this process."""
        try:  # a missing s3fs or gcsfs stays a MissingDependencyError naming the extra
            fs, root = filesystem(self.url, self._storage_options)
        except (SourceNotFoundError, RemoteSourceError) as exc:  # an unknown protocol, an option it does not take
            raise CacheError(str(exc), path=self.url) from exc
        single_try(fs)
        self._pid = os.getpid()
        return fs, root

    def __repr__(self) -> str:
        return f"Cache({self.url!r})"

    # -- reading ---------------------------------------------------------------

    def has(self, key: str) -> bool:
        """Whether ``key`` is published (complete and visible)."""
        marker = self._marker(key)
        self.fs.invalidate_cache(marker)  # other processes publish: fsspec's listing of entries/ may be stale
        return bool(self.fs.exists(marker))

    def keys(self) -> list[str]:
        """Keys of all published entries, sorted."""
        names = (p.rsplit("/", 1)[-1] for p in _ls(self.fs, f"{self.root}/entries"))
        return sorted(n[: -len(".json")] for n in names if n.endswith(".json"))

    def open(self, key: str) -> CacheEntry:
        """Open a published entry.

        Raises
        ------
        CacheMissError
            If ``key`` is not published.
        CacheIntegrityError
            If its marker is unreadable, or a field of it is not what :meth:`put` writes (a data
            folder other than the entry's, a dtype, shape or chunks it does not write, a checksum
            missing...): a marker read from the store is untrusted data.
        """
        return self._entry(key, self._marker_text(key))

    def _marker_text(self, key: str) -> bytes:
        """The bytes of ``key``'s marker; CacheMissError if it is not published."""
        try:
            if isinstance(self.fs, LocalFileSystem):  # a plain read: fsspec's file object costs more than the marker's bytes
                with open(self._marker(key), "rb") as f:
                    return f.read()
            return self.fs.cat_file(self._marker(key))
        except FileNotFoundError:
            raise CacheMissError(
                f"{self.url}: no entry {key}; compute it (a Dataset without cache_only=True, or `dicomml preprocess`)",
                path=self.url,
            ) from None

    def _entry(self, key: str, text: bytes) -> CacheEntry:
        """The entry a marker's bytes describe (see :meth:`open`)."""
        try:
            affine, meta, layouts, checksums, data = _parse_marker(text, key)
        except (ValueError, KeyError, TypeError, RecursionError) as exc:
            reason = str(exc) if type(exc) is ValueError else f"no field {exc}" if type(exc) is KeyError else repr(exc)
            raise CacheIntegrityError(
                f"{self.url}: marker of entry {key} is invalid ({reason}); delete the entry and recompute",
                path=self._marker(key),
            ) from None
        return CacheEntry(key=key, affine=affine, meta=meta, layouts=layouts, checksums=checksums, _cache=self, _path=f"{self.root}/{data}")

    def published(self, key: str) -> CacheEntry | None:
        """The entry of ``key``, opened; None when it is not published or its marker is invalid (:meth:`put` replaces that marker).

        Examples
        --------
        >>> Cache(tmp_path / "cache").published("0" * 64) is None  # doctest: +SKIP
        True
        """
        try:
            return self.open(key)
        except (CacheMissError, CacheIntegrityError):
            return None

    def _index(self, entry: CacheEntry, name: str, shard: str, where: str, blob: Any = None) -> np.ndarray:
        memo = (entry._path, name)  # data folders never change once written
        if memo not in self._indexes:
            size = index_nbytes(entry.layouts[name])
            tail = blob[len(blob) - size :] if blob is not None else _cat(self.fs, shard, where, -size)
            self._indexes[memo] = read_index(tail, entry.layouts[name], where)
        return self._indexes[memo]

    def _map(self, path: str, layout: ArrayLayout, where: str, whole: bool = False) -> mmap.mmap | np.ndarray:
        """A read-only memory map of a local shard file, kept for the next reads (the process's last :data:`MAPS_KEPT`).

        Reading from the map copies nothing and, once its pages are mapped,
        faults nothing; a file removed by ``gc`` stays readable while mapped.
        A file read ``whole`` of at most :data:`READ_WHOLE_BELOW` bytes that
        is not mapped already is read instead, into this thread's read buffer
        (valid until the thread's next such read; nothing is kept): mapping
        and faulting in a small file read once per epoch (a 2D sample) costs
        more than copying it. Out of file descriptors (EMFILE), the kept maps
        are dropped and the file opened once more.
        """
        mapped = _maps.get((self._maps_of, path))
        if mapped is not None:
            return mapped
        try:
            opened = _open_shard(path, layout, where, whole)
        except OSError as exc:
            if exc.errno != errno.EMFILE:
                raise
            _maps.clear()  # each kept map holds a descriptor: closed with it, unless a sample still views it
            opened = _open_shard(path, layout, where, whole)
        if not isinstance(opened, np.ndarray):  # a map; one beyond the limit is unmapped once no array views it
            _maps.put((self._maps_of, path), opened)
        return opened

    # -- writing ---------------------------------------------------------------

    def check_writable(self) -> None:
        """Raise unless a file can be written into the cache: a run checks once before it computes anything.

        Writes a small file under ``tmp/`` and removes it (not an empty one: a
        full disk still makes empty files).

        Raises
        ------
        CacheError
            Naming the cache and the reason (a read-only file system, a permission).

        Examples
        --------
        >>> Cache(tmp_path / "cache").check_writable()  # doctest: +SKIP
        """
        probe = f"{self.root}/tmp/write-check.{uuid.uuid4().hex}"
        try:
            self.fs.makedirs(f"{self.root}/tmp", exist_ok=True)
            self.fs.pipe_file(probe, bytes(_PROBE_BYTES))
        except OSError as exc:
            raise CacheError(
                f"{self.url}: the cache cannot be written ({os_reason(exc)}); make it writable or choose another cache",
                path=self.url,
            ) from exc
        with contextlib.suppress(OSError):
            self._remove(probe)

    def put(
        self,
        key: str,
        image: np.ndarray,
        affine: np.ndarray,
        *,
        mask: np.ndarray | None = None,
        meta: Mapping[str, Any] | None = None,
        chunks: Sequence[int] = (64, 64, 64),
        codec: str = "auto",
    ) -> CacheEntry:
        """Write an entry and publish it atomically; a published key is left as is.

        Parameters
        ----------
        key
            Cache key (:func:`~dicomml.cache.entry_key`).
        image
            (i, j, k) array, or (V, i, j, k) with a leading axis (the volumes
            of an N-D series, a study's channels), any numeric dtype.
        affine
            4x4, maps (i, j, k) to RAS+ mm.
        mask
            Optional (C, i, j, k) masks on the image grid (stored as given).
        meta
            JSON-able provenance.
        chunks
            Inner chunk shape (i, j, k) in voxels; each volume of an N-D
            image has chunks of its own, so one reads without the others.
        codec
            Of the image: ``"auto"`` (Blosc unless it would save less than a
            third of the bytes), ``"blosc"`` or ``"raw"`` (no compression: for
            samples read whole at every epoch, whose bytes are few). Masks
            are always ``"auto"``.

        Returns
        -------
        CacheEntry
            The published entry (this writer's or a racing writer's, both complete).

        Raises
        ------
        ValueError
            If shapes disagree.
        CacheError
            If the entry cannot be written (a full disk, a read-only or
            unwritable cache, a store's failure: its cause); nothing is published.

        Notes
        -----
        A key whose marker does not parse is not published (:meth:`open`
        raises :class:`~dicomml.errors.CacheIntegrityError`): put writes the
        entry anew and its marker replaces the invalid one.
        """
        image = np.asarray(image)
        if image.ndim not in (3, 4):
            raise ConfigError(f"image must be (i, j, k) or (V, i, j, k), got shape {image.shape}")
        if mask is not None and (mask.ndim != 4 or mask.shape[1:] != image.shape[-3:]):
            raise ConfigError(f"mask must be (C, {', '.join(map(str, image.shape[-3:]))}), got shape {mask.shape}")
        published = self.published(key)
        if published is not None:
            return published
        chunks = tuple(int(c) for c in chunks)
        data = f"data/{key}/{uuid.uuid4().hex}"
        arrays = {"image": (image, (1,) * (image.ndim - 3) + chunks)}
        if mask is not None:
            fg = _foreground(mask)
            arrays.update(mask=(mask, (mask.shape[0], *chunks)), foreground=(fg, (max(1, len(fg)), 4)))
        encoded = {name: write_array(name, array, inner, codec if name == "image" else "auto") for name, (array, inner) in arrays.items()}
        marker = {
            "format": FORMAT_VERSION,
            "data": data,
            "affine": np.asarray(affine, dtype=np.float64).reshape(4, 4).tolist(),
            "meta": _jsonable(dict(meta or {})),
            "layouts": {n: layout.to_json() for n, (layout, _) in encoded.items()},
            "checksums": {n: _crc(a) for n, (a, _) in arrays.items()},
            "created": time.time(),
        }
        lease = f"{self.root}/leases/{key}.{data.rsplit('/', 1)[-1]}.json"
        try:
            self._renew(lease)  # before the data folder exists: gc sees the folder only with its lease
            self._write(f"{self.root}/{data}/zarr.json", [json.dumps(_group(marker)).encode()])
            for _, files in encoded.values():
                for path, parts in files.items():
                    self._renew(lease)
                    self._write(f"{self.root}/{data}/{path}", parts)
            # the group above the entry, for readers that walk the hierarchy: after the data folder (see _remove_key_folder)
            if not self.fs.exists(f"{self.root}/data/{key}/zarr.json"):
                self._publish_json(f"{self.root}/data/{key}/zarr.json", _group())
            published = self.published(key)
            if published is not None:  # a racing writer published first; ours was never visible
                self._discard(data, lease)
                return published
            self._publish_json(self._marker(key), marker)
        except BaseException as exc:
            named = self._names(key, data)
            if named and isinstance(exc, Exception):  # published: only the cleanup after it failed (an object store's move deletes)
                return self._published(key, lease)
            removed = named is False and self._discard(data, lease)  # never what a marker names; unknown (a store down) is gc's
            if isinstance(exc, Exception) and not isinstance(exc, DicomMLError):  # an OSError, or a storage client's own
                full = " (the disk is full: free space or choose another cache)" if getattr(exc, "errno", None) == errno.ENOSPC else ""
                left = (
                    "nothing was published and its partial files were removed"
                    if removed
                    else "nothing was published; `dicomml cache gc` removes its partial files"
                    if named is False
                    else "its marker could not be read back: rerun (a published entry is skipped); `dicomml cache gc` removes the rest"
                )
                raise CacheError(
                    f"{self.url}: writing entry {key} failed ({os_reason(exc)}){full}; {left}",
                    path=self.url,
                ) from exc
            raise
        return self._published(key, lease)

    def _names(self, key: str, data: str) -> bool | None:
        """Whether the published marker of ``key`` names the data folder ``data``; None if it cannot be read."""
        try:
            return bool(json.loads(self.fs.cat_file(self._marker(key))).get("data") == data)
        except (FileNotFoundError, ValueError, AttributeError):  # none, or one cut short or not an object: names nothing
            return False
        except Exception:  # the store fails: whether the marker went out is unknown
            return None

    def _published(self, key: str, lease: str) -> CacheEntry:
        """The entry ``put`` published, its lease dropped (one left behind is stale once this process ends: gc removes it)."""
        with contextlib.suppress(OSError):
            self._remove(lease)
        return self.open(key)

    def delete(self, key: str) -> None:
        """Unpublish ``key`` (its data is removed by :meth:`gc`). No error if absent."""
        if self.has(key):  # a read-only cache without the key is left alone
            self._remove(self._marker(key))  # another process may unpublish it first

    # -- checking and cleaning -------------------------------------------------

    def verify(self, key: str, *, delete: bool = False) -> None:
        """Decode every chunk of an entry and compare each array's checksum.

        An entry unpublished or replaced while it is checked (another
        process's delete and ``gc``) is not failed for the files it lost:
        the entry published now is checked instead.

        Parameters
        ----------
        key
            The entry.
        delete
            Unpublish the entry if it fails, so that it is recomputed: only
            the marker that was checked, not one another writer published since.

        Raises
        ------
        CacheMissError
            If ``key`` is not published (or was unpublished while checked).
        CacheIntegrityError
            If its marker is invalid, a file or chunk is missing, a CRC32C
            fails, or a decoded array's checksum differs from the one
            recorded at write time.
        """
        text = self._marker_text(key)
        try:
            entry = self._entry(key, text)
            for name in entry.layouts:
                got = _crc(entry.read(name))
                if got != entry.checksums[name]:
                    raise CacheIntegrityError(
                        f"{self.url}: entry {key} array {name}: checksum {got:#010x}, recorded "
                        f"{entry.checksums[name]:#010x}; delete the entry and recompute",
                        path=entry._path,
                    )
        except CacheIntegrityError:
            try:
                changed = self._marker_text(key) != text
            except CacheMissError:
                changed = True
            if changed:  # not the failure of the entry now published (if any): that one is checked anew
                return self.verify(key, delete=delete)
            if delete:
                self.delete(key)
            raise

    def gc(self, grace_seconds: float = 3600.0) -> list[str]:
        """Remove data no marker names and stale temporary files.

        Parameters
        ----------
        grace_seconds
            Only remove what is older than this, so writers still at work keep
            their data.

        Returns
        -------
        list of str
            Paths removed, relative to the cache root.
        """
        now = time.time()
        # The order is the guarantee (see the module): data folders, then leases, then markers.
        folders = {folder: _dirs(self.fs, folder) for folder in _dirs(self.fs, f"{self.root}/data")}
        leased, removed = set(), []
        for path in _ls(self.fs, f"{self.root}/leases"):
            key, token = path.rsplit("/", 1)[-1].removesuffix(".json").rsplit(".", 1)
            if self._lease_live(path, now):
                leased.add(f"{self.root}/data/{key}/{token}")
            elif now - _mtime(self.fs, path) >= grace_seconds:
                self._remove(path)  # bookkeeping, not reported
        live = set()
        for key in self.keys():
            try:
                live.add(self.open(key)._path)
            except (CacheMissError, CacheIntegrityError):  # unpublished since listed, or an invalid marker: names no data
                continue
        for folder, tokens in folders.items():
            for path in tokens:
                if path not in live and path not in leased and now - _mtime(self.fs, path) >= grace_seconds:
                    self._remove(path, recursive=True)
                    removed.append(path)
            busy = any(p.startswith(f"{folder}/") for p in leased)
            if not busy and not _dirs(self.fs, folder) and now - _mtime(self.fs, folder) >= grace_seconds:
                self._remove_key_folder(folder)
        for path in _ls(self.fs, f"{self.root}/tmp"):
            if now - _mtime(self.fs, path) >= max(grace_seconds, LEASE_SECONDS):
                self._remove(path)
                removed.append(path)
        return [p[len(self.root) + 1 :] for p in removed]

    def _renew(self, lease: str) -> None:
        """Write a writer's lease (its host and process, so gc can tell whether it still runs), or refresh its time."""
        if isinstance(self.fs, LocalFileSystem) and os.path.exists(lease):
            os.utime(lease)  # a rewrite killed halfway would leave a lease naming no one
            return
        self._publish_json(lease, {"host": socket.gethostname(), "pid": os.getpid()})

    def _lease_live(self, lease: str, now: float) -> bool:
        """A lease of this host is live while its process runs; another host's, for LEASE_SECONDS after its refresh."""
        try:
            holder = json.loads(self.fs.cat_file(lease))
        except FileNotFoundError:
            return False  # dropped since listed: its entry is published (or was discarded)
        except (OSError, ValueError):
            holder = {}
        if holder.get("host") == socket.gethostname():
            return _process_runs(int(holder.get("pid", 0)))
        return now - _mtime(self.fs, lease) < LEASE_SECONDS

    def _remove_key_folder(self, folder: str) -> None:
        """Remove a key's folder that held no data folder, never recursively: a writer may make one in it at any moment.

        A writer whose lease gc did not see may make its data folder here
        while gc removes this one, so only what gc saw goes: the ``zarr.json``
        first, then the folder if it is empty (``rmdir`` refuses one that is
        not), and the ``zarr.json`` is put back when a data folder came (a
        writer writes it after its data folder, so it puts back one removed
        before its own check).
        """
        self._remove(f"{folder}/zarr.json")
        try:
            if _ls(self.fs, folder):  # an object store's rmdir may not look
                raise OSError(errno.ENOTEMPTY, "a writer's data folder came", folder)
            self.fs.rmdir(folder)
        except FileNotFoundError:  # gone (an object store has no folders: its last file was the zarr.json)
            return
        except OSError:
            self._publish_json(f"{folder}/zarr.json", _group())

    def _remove(self, path: str, recursive: bool = False) -> None:
        """Remove a file (or a folder); already gone is fine: a racing writer or gc removed it."""
        try:
            self.fs.rm(path, recursive=recursive)
        except FileNotFoundError:
            pass

    def _discard(self, data: str, lease: str) -> bool:
        """Remove a failed or superseded writer's data folder and lease (best effort: the disk may be full, the cache read-only);
        whether both went."""
        removed = True
        for path, recursive in ((f"{self.root}/{data}", True), (lease, False)):
            try:
                self._remove(path, recursive=recursive)
            except OSError:  # gc removes what is left: a lease whose process has ended is stale
                removed = False
        return removed

    def info(self) -> dict[str, Any]:
        """Summary: url, format, entries, invalid entries, bytes of published data, bytes of unreferenced data.

        ``invalid_entries`` counts markers that do not parse (:meth:`open`
        raises :class:`~dicomml.errors.CacheIntegrityError`); their data is
        unreferenced, the next put of their key replaces them.
        """
        live, invalid = set(), 0
        for key in self.keys():
            try:
                live.add(self.open(key)._path)
            except CacheMissError:  # unpublished since listed
                continue
            except CacheIntegrityError:
                invalid += 1
        used = other = 0
        for folder in _dirs(self.fs, f"{self.root}/data"):
            for path in _dirs(self.fs, folder):
                size = self.fs.du(path)
                if path in live:
                    used += size
                else:
                    other += size
        return {
            "url": self.url,
            "format": FORMAT_VERSION,
            "entries": len(live),
            "invalid_entries": invalid,
            "bytes": used,
            "unreferenced_bytes": other,
        }

    # -- kept lists -------------------------------------------------------------

    def read_list(self, name: str) -> Any:
        """The JSON document :meth:`write_list` kept under ``name``; None if there is none or it is unreadable.

        A kept list only saves work (:func:`~dicomml.pipeline.series_sources`
        resolves it again without one), so an unreadable one is a miss.
        """
        try:
            return json.loads(self.fs.cat_file(self._list(name)))
        except (OSError, ValueError):
            return None

    def write_list(self, name: str, document: Mapping[str, Any]) -> None:
        """Keep a JSON ``document`` under ``name``, atomically (see :meth:`_publish_json`)."""
        self._publish_json(self._list(name), document)

    # -- helpers ---------------------------------------------------------------

    def _marker(self, key: str) -> str:
        return self._json_path("entries", key, "cache key")

    def _list(self, name: str) -> str:
        return self._json_path("lists", name, "list name")

    def _json_path(self, folder: str, name: str, what: str) -> str:
        if not name or "/" in name or name.startswith("."):
            raise ConfigError(f"{what} {name!r} must be a non-empty name without '/'")
        return f"{self.root}/{folder}/{name}.json"

    def _create_root(self) -> None:
        """Write the root group's ``zarr.json`` (Zarr v3 group metadata), ``data/``'s before it; see :meth:`_publish_json`."""
        self._publish_json(f"{self.root}/data/zarr.json", _group())
        self._publish_json(f"{self.root}/zarr.json", _group({"dicomml_cache_format": FORMAT_VERSION}))

    def _publish_json(self, target: str, document: Mapping[str, Any]) -> None:
        """Write ``document`` to ``target`` by a temporary file in ``tmp/`` and a rename.

        Atomic on POSIX, one PUT on object stores: writers racing on the same
        path (a new cache's root, an entry's marker) each rename a complete
        file over it, so no reader sees a half-written one.
        """
        tmp = f"{self.root}/tmp/{target.rsplit('/', 1)[-1]}.{uuid.uuid4().hex}"
        self.fs.makedirs(f"{self.root}/tmp", exist_ok=True)
        try:
            self.fs.pipe_file(tmp, json.dumps(document).encode())
            self.fs.makedirs(target.rsplit("/", 1)[0], exist_ok=True)
            self.fs.mv(tmp, target)
        except BaseException:
            with contextlib.suppress(OSError):  # the error that stopped the write is the one to raise
                self._remove(tmp)
            raise

    def _write(self, target: str, parts: Sequence[bytes]) -> None:
        """Write a file of an entry being written (invisible until its marker is published), in parts."""
        try:
            self.fs.makedirs(target.rsplit("/", 1)[0], exist_ok=True)
        except FileNotFoundError:  # gc removed the key's empty folder between makedirs' check and its mkdir: made anew
            self.fs.makedirs(target.rsplit("/", 1)[0], exist_ok=True)
        with self.fs.open(target, "wb") as f:
            for part in parts:
                f.write(part)


def _parse_marker(text: bytes, key: str) -> tuple[np.ndarray, dict[str, Any], dict[str, ArrayLayout], dict[str, int], str]:
    """The fields of ``key``'s marker that readers use, each checked against what :meth:`Cache.put` writes.

    A marker read from a store is untrusted data: the data folder must be one
    of this entry's (``data/KEY/TOKEN``, nothing outside the cache), each
    layout one :meth:`ArrayLayout.from_json` accepts with the dimensions of
    its array, each checksum a CRC32C.

    Returns
    -------
    tuple
        affine (4x4 float64), meta, layouts, checksums, data folder (relative to the root).

    Raises
    ------
    ValueError
        Naming the field that is wrong (or from ``json.loads``); KeyError for a missing one.
    """
    marker = json.loads(text)
    if not isinstance(marker, dict):
        raise ValueError(f"the marker is {type(marker).__name__}, not an object")
    data, meta, documents, checksums = marker["data"], marker["meta"], marker["layouts"], marker["checksums"]
    if not (isinstance(data, str) and data.startswith(f"data/{key}/") and _TOKEN.fullmatch(data, len(key) + 6)):
        raise ValueError(f"data {data!r} is not a folder data/{key}/TOKEN of this entry")
    try:
        affine = np.asarray(marker["affine"], dtype=np.float64).reshape(4, 4)
    except (TypeError, ValueError):
        affine = np.full((4, 4), np.nan)
    if not np.isfinite(affine).all():
        raise ValueError("affine is not a 4x4 matrix of finite numbers")
    if not isinstance(meta, dict):
        raise ValueError(f"meta is {type(meta).__name__}, not an object")
    if not (isinstance(documents, dict) and "image" in documents and documents.keys() <= _NDIMS.keys()):
        raise ValueError(f"layouts {sorted(documents) if isinstance(documents, dict) else documents!r} are not image [, mask, foreground]")
    layouts = {}
    for name, document in documents.items():
        try:
            layouts[name] = layout = ArrayLayout.from_json(document)
        except ValueError as exc:
            raise ValueError(f"layouts.{name}: {exc}") from None
        if len(layout.shape) not in _NDIMS[name]:
            raise ValueError(
                f"layouts.{name}: shape {list(layout.shape)} has {len(layout.shape)} axes, not {' or '.join(map(str, _NDIMS[name]))}"
            )
    if ("mask" in layouts) != ("foreground" in layouts):
        raise ValueError(f"layouts {sorted(layouts)}: a mask comes with its foreground")
    if "mask" in layouts and layouts["mask"].shape[1:] != layouts["image"].shape[-3:]:
        raise ValueError(
            f"layouts.mask: shape {list(layouts['mask'].shape)} is not on the image's grid {list(layouts['image'].shape[-3:])}"
        )
    if "foreground" in layouts and (layouts["foreground"].shape[1] != 4 or layouts["foreground"].dtype != "int32"):
        raise ValueError(f"layouts.foreground: {layouts['foreground'].dtype} {list(layouts['foreground'].shape)} is not int32 (N, 4)")
    if not (isinstance(checksums, dict) and checksums.keys() == layouts.keys()):
        raise ValueError(f"checksums {checksums!r} are not one per array ({', '.join(layouts)})")
    for name, crc in checksums.items():
        if type(crc) is not int or not 0 <= crc < 2**32:
            raise ValueError(f"checksums.{name}: {crc!r} is not a CRC32C (an integer from 0 to 2**32 - 1)")
    return affine, meta, layouts, checksums, data


def _group(attributes: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A Zarr v3 group's metadata document."""
    return {"zarr_format": 3, "node_type": "group", "attributes": dict(attributes or {})}


def _cat(fs: fsspec.AbstractFileSystem, path: str, where: str, start: int | None = None) -> bytes:
    return _fetch(lambda: fs.cat_file(path, start=start), path, where)


def _fetch(call: Callable[[], T], path: str, where: str) -> T:
    """``call()`` reading a shard file, asked again as a bucket source asks (a cache in a bucket tries each request
    once); a missing file is a CacheIntegrityError, any other failure one CacheError naming the entry."""
    try:
        return bucket_retries(call, path, _READS, "reading the shard file")
    except SourceNotFoundError:
        raise _missing(path, where) from None
    except RemoteSourceError as exc:  # the storage client's own error (aiohttp's, botocore's) is its cause
        raise CacheError(f"{where}: {exc}", path=path) from exc.__cause__


def _open_shard(path: str, layout: ArrayLayout, where: str, whole: bool) -> mmap.mmap | np.ndarray:
    """A local shard file mapped (or, small and read ``whole``, read into the thread's buffer): see ``Cache._map``."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        raise _missing(path, where) from None
    try:
        size = os.fstat(fd).st_size
        if size < index_nbytes(layout):
            raise CacheIntegrityError(f"{where}: shard file {path} is cut short ({size} bytes); delete the entry and recompute", path=path)
        if whole and size <= READ_WHOLE_BELOW:
            blob = _read_buffer(size)
            if os.readv(fd, [blob.data]) != size:
                raise CacheIntegrityError(f"{where}: shard file {path} changed while read; delete the entry and recompute", path=path)
            return blob
        mapped = mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
    finally:
        os.close(fd)
    if hasattr(mapped, "madvise"):  # read ahead the whole file while the first chunks decode: the index (at the end) first
        size = len(mapped)
        tail = (size - 1) // _AHEAD_PIECE * _AHEAD_PIECE
        for start in (tail, *range(0, tail, _AHEAD_PIECE)):
            mapped.madvise(mmap.MADV_WILLNEED, start, min(_AHEAD_PIECE, size - start))
    return mapped


def _missing(path: str, where: str) -> CacheIntegrityError:
    return CacheIntegrityError(f"{where}: shard file {path} is missing; delete the entry and recompute", path=path)


def _ls(fs: fsspec.AbstractFileSystem, path: str) -> list[str]:
    """The paths in ``path``, listed anew (other processes write the cache; fsspec keeps listings of object stores)."""
    try:
        return sorted(p.rstrip("/") for p in fs.ls(path, detail=False, refresh=True))
    except FileNotFoundError:
        return []


def _dirs(fs: fsspec.AbstractFileSystem, path: str) -> list[str]:
    try:
        return sorted(d["name"].rstrip("/") for d in fs.ls(path, detail=True, refresh=True) if d["type"] == "directory")
    except FileNotFoundError:
        return []


def _mtime(fs: fsspec.AbstractFileSystem, path: str) -> float:
    probe = f"{path}/zarr.json" if fs.isdir(path) and fs.exists(f"{path}/zarr.json") else path
    try:
        modified = fs.modified(probe)
    except (NotImplementedError, FileNotFoundError):
        return 0.0
    return modified.timestamp()


def _process_runs(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # runs, as another user
        return True
    return True


def _crc(array: np.ndarray) -> int:
    return crc32c.crc32c(np.ascontiguousarray(array).view(np.uint8).reshape(-1).data)


def _foreground(mask: np.ndarray) -> np.ndarray:
    """(N, 4) int32 rows (channel, i, j, k) of voxels > 0, per channel at most FOREGROUND_MAX // C (evenly strided)."""
    per_channel = max(1, FOREGROUND_MAX // max(1, mask.shape[0]))
    rows = [np.empty((0, 4), np.int32)]
    for c, channel in enumerate(mask):
        idx = np.argwhere(channel > 0)
        if len(idx) > per_channel:
            idx = idx[np.linspace(0, len(idx) - 1, per_channel).astype(np.int64)]
        rows.append(np.column_stack([np.full(len(idx), c), idx]).astype(np.int32))
    return np.ascontiguousarray(np.concatenate(rows))


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def _read_buffer(size: int) -> np.ndarray:
    """This thread's buffer for a shard read whole, ``size`` bytes long (grown when a larger one comes)."""
    buffer = getattr(_read_buffers, "buffer", None)
    if buffer is None or len(buffer) < size:
        buffer = _read_buffers.buffer = np.empty(size, np.uint8)
    return buffer[:size]
