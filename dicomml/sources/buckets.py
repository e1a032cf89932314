"""Buckets and other fsspec URLs: listing, concurrent ranged header reads, whole-object reads.

Header reads ask for the first :data:`PREFIX_BYTES` of every object of a
batch at once (``cat_ranges``, which s3fs and gcsfs issue concurrently), so
indexing a bucket is bound by latency x objects / concurrency rather than by
bytes; a header longer than that is read on from where the prefix ends.
"""

from __future__ import annotations

import contextlib
import io
import os
import tarfile
import threading
import zipfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from dicomml.errors import MissingDependencyError, RemoteSourceError, SourceNotFoundError
from dicomml.paths import refuse_credentials
from dicomml.sources._remote import PREFIX_BYTES, PrefetchedFile, Remote, failure, is_transient, with_retries

if TYPE_CHECKING:
    import fsspec

    from dicomml.indexer.crawl import CrawlError, Entry, Files

__all__ = ["FsspecSource", "ObjectList", "filesystem"]

#: How to pass a bucket's credentials instead of in its URL.
_PASS_OPTIONS = "pass them in storage_options (the CLI: --storage-option KEY=VALUE)"
#: One lock per archive read in this process (not on the source object, which is pickled to workers).
_ARCHIVE_READS: dict[str, threading.Lock] = {}
#: The extra that brings each protocol's fsspec implementation.
EXTRAS = {"s3": "s3", "s3a": "s3", "gs": "gcs", "gcs": "gcs"}


def filesystem(url: str, storage_options: Mapping[str, Any] | None = None) -> tuple[fsspec.AbstractFileSystem, str]:
    """The fsspec filesystem and path of ``url``, with a one-line error when its package is missing.

    Raises
    ------
    MissingDependencyError
        If the protocol's implementation (s3fs, gcsfs) is not installed.
    RemoteSourceError
        If the URL carries credentials (``user:password@``): they would be recorded.
    """
    import fsspec

    refuse_credentials(url, RemoteSourceError, _PASS_OPTIONS)
    protocol = url.split("://", 1)[0]
    try:
        return fsspec.core.url_to_fs(url, **dict(storage_options or {}))
    except ImportError as exc:
        extra = EXTRAS.get(protocol)
        way = f"pip install 'dicomml[{extra}]'" if extra else f"install the fsspec implementation of {protocol}://"
        raise MissingDependencyError(f"{url}: reading {protocol}:// URLs needs a package that is not installed; {way}", path=url) from exc
    except FileNotFoundError as exc:  # an archive (zip://::x.zip) is opened here
        raise SourceNotFoundError(f"{url}: {exc.filename or 'it'} does not exist; check the path", path=url) from exc
    except (zipfile.BadZipFile, tarfile.TarError, EOFError) as exc:
        raise SourceNotFoundError(f"{url}: not a readable {protocol} archive ({exc}); check the file", path=url) from exc
    except ValueError as exc:  # "Protocol not known: foo", or options the protocol does not take
        raise SourceNotFoundError(f"{url}: fsspec cannot open it ({exc}); check the URL and its options", path=url) from exc


class ObjectList:
    """Seed a manifest from object URLs (those idc-index returns, say) without listing a bucket.

    A URL ending in ``/`` names a prefix: the objects under it are listed.

    Parameters
    ----------
    urls
        Object URLs of one protocol (``s3://bucket/key.dcm``...).

    Raises
    ------
    RemoteSourceError
        If a URL carries credentials (``key:secret@``): they would be recorded.
    """

    def __init__(self, urls: Iterable[str]) -> None:
        self.urls = [u.strip() for u in urls if u.strip()]
        for url in self.urls:
            refuse_credentials(url, RemoteSourceError, _PASS_OPTIONS)

    def __fspath__(self) -> str:  # how a manifest names the source
        return f"{len(self.urls)} object URLs" + (f" from {self.urls[0]}" if self.urls else "")


class FsspecSource:
    """A bucket or other fsspec location, read as the indexer's crawl and scan need.

    Parameters
    ----------
    url
        The root URL, or an :class:`ObjectList`.
    remote
        Storage options, concurrency and retries.
    """

    def __init__(self, url: str | ObjectList, remote: Remote) -> None:
        from fsspec.archive import AbstractArchiveFileSystem

        self.objects = url if isinstance(url, ObjectList) else None
        first = self.objects.urls[0] if self.objects and self.objects.urls else str(url)
        self.fs, self.root = filesystem(first, remote.storage_options)
        self.remote = remote
        self.protocol = self.fs.protocol
        # an archive's members (zip://dir/x.dcm::/data/archive.zip) are named with the archive, so that they open again
        archive = first.partition("::")[2] if isinstance(self.fs, AbstractArchiveFileSystem) else ""
        self.archive = archive if "://" in archive or not archive else os.path.abspath(os.path.expanduser(archive))

    def url(self, name: str) -> str:
        """The URL of the object ``name``, as the manifest records it."""
        return self.fs.unstrip_protocol(name) + (f"::{self.archive}" if self.archive else "")

    def name(self, url: str) -> str:
        """The object name of a URL :meth:`url` made."""
        return self.fs._strip_protocol(url.removesuffix(f"::{self.archive}") if self.archive else url)

    def _archive_mtime_ns(self) -> int:
        """The archive's own modification time, given to each member: a rewritten archive is read again whole."""
        from dicomml.indexer.crawl import mtime_ns

        fs, path = filesystem(self.archive, self.remote.storage_options)
        return mtime_ns(dict(with_retries(lambda: fs.info(path), self.archive, self.remote, "checking the archive")))

    def check(self) -> None:
        """Raise SourceNotFoundError if the root does not exist, RemoteSourceError if it cannot be reached (a URL
        list is checked object by object)."""
        if self.objects is None:
            url = self.url(self.root)
            # info, not exists: exists() answers False for an endpoint it cannot reach, which said "does not exist"
            with_retries(lambda: self.fs.info(self.root), url, self.remote, "checking the source")

    # -- crawl -------------------------------------------------------------------------------
    def walk(self) -> Iterator[Files | CrawlError]:
        """The objects under the root (or of the list), grouped by folder, sorted by path."""
        from dicomml.indexer.crawl import CrawlError

        if self.objects is None:
            found = with_retries(lambda: self.fs.find(self.root, detail=True), self.url(self.root), self.remote, "listing")
            yield from self._files(found)
            return
        prefixes = [u for u in self.objects.urls if u.endswith("/")]
        for prefix in prefixes:
            yield from self._files(self._find(prefix))
        names = [self.name(u) for u in self.objects.urls if not u.endswith("/")]
        infos = self._infos(names)
        good = {}
        for name, info in zip(names, infos):
            if isinstance(info, BaseException):
                url = self.url(name)
                kind = "missing" if isinstance(info, FileNotFoundError) else "unreadable"
                yield CrawlError(url, kind, f"{url}: cannot be listed ({type(info).__name__}); check the URL")
            else:
                good[name] = info
        yield from self._files(good)

    def _find(self, url: str) -> dict[str, Any]:
        path = self.name(url)
        return with_retries(lambda: self.fs.find(path, detail=True), url, self.remote, "listing")

    def _infos(self, names: Sequence[str]) -> list[Any]:
        """``info`` of many objects, concurrently on an async filesystem."""
        if not names:
            return []
        if getattr(self.fs, "async_impl", False):
            import asyncio

            from fsspec.asyn import sync

            async def gather() -> list[Any]:
                limit = asyncio.Semaphore(self.remote.concurrency)

                async def one(name: str) -> Any:
                    async with limit:
                        return await self.fs._info(name)

                return await asyncio.gather(*(one(n) for n in names), return_exceptions=True)

            return sync(self.fs.loop, gather)
        out: list[Any] = []
        for name in names:
            try:
                out.append(self.fs.info(name))
            except Exception as exc:  # recorded as a crawl error
                out.append(exc)
        return out

    def _files(self, found: Mapping[str, Mapping[str, Any]]) -> Iterator[Files | CrawlError]:
        from dicomml.indexer.crawl import CrawlError, Files, mtime_ns

        current: Files | None = None
        archive_mtime = self._archive_mtime_ns() if self.archive and found else 0
        for name in sorted(found):
            info = found[name]
            url = self.url(name)
            if info.get("type") != "file":
                yield CrawlError(url, "not_regular_file", f"{url}: not a file; skipped")
                continue
            folder = self.url(name.rsplit("/", 1)[0] if "/" in name else "")
            if current is None or current.folder != folder:
                if current is not None:
                    yield current
                current = Files(folder, [], [], [], [])
            current.paths.append(url)
            current.sizes.append(int(info.get("size") or 0))
            current.mtimes_ns.append(archive_mtime if self.archive else mtime_ns(dict(info)))
            current.open_paths.append(name)
        if current is not None:
            yield current

    # -- scan --------------------------------------------------------------------------------
    def _one_read(self) -> Any:
        """Held while reading: an archive's members are read through one file object, which threads would interleave."""
        return _ARCHIVE_READS.setdefault(self.archive, threading.Lock()) if self.archive else contextlib.nullcontext()

    def _cat(self, path: str, start: int | None = None, end: int | None = None) -> bytes:
        with self._one_read():
            return self.fs.cat_file(path, start=start, end=end)

    def _read_range(self, path: str) -> Any:
        url = self.url(path)
        return lambda start, end: with_retries(lambda: self._cat(path, start, end), url, self.remote, "reading a byte range")

    def open(self, path: str, mode: str = "rb") -> PrefetchedFile:
        """The object as a file whose reads are ranged requests."""
        size = self.fs.size(path)
        return PrefetchedFile(self.url(path), size, read_range=self._read_range(path))

    def prefetch(self, entries: Sequence[Entry]) -> dict[str, PrefetchedFile]:
        """The first bytes of every entry, requested together; failures become files that raise."""
        paths = [e.open_path for e in entries]
        ends = [min(e.size, PREFIX_BYTES) if e.size else PREFIX_BYTES for e in entries]
        got: dict[str, Any] = {}
        todo = list(range(len(entries)))
        for attempt in range(self.remote.retries + 1):
            with self._one_read():
                results = self.fs.cat_ranges(
                    [paths[i] for i in todo],
                    [0] * len(todo),
                    [ends[i] for i in todo],
                    on_error="return",
                    batch_size=self.remote.concurrency,  # requests in flight, as Remote says (async filesystems)
                )
            for i, result in zip(todo, results):
                got[paths[i]] = result
            todo = [i for i in todo if isinstance(got[paths[i]], BaseException) and is_transient(got[paths[i]])]
            if not todo or attempt == self.remote.retries:
                break
            import time

            time.sleep(self.remote.backoff_s * 2**attempt)
        out = {}
        for entry in entries:
            result = got[entry.open_path]
            if isinstance(result, BaseException):
                error = failure(entry.path, "reading the header", result, self.remote.retries + 1)
                out[entry.open_path] = PrefetchedFile(entry.path, entry.size, error=error)
            else:
                out[entry.open_path] = PrefetchedFile(entry.path, entry.size, bytes(result), self._read_range(entry.open_path))
        return out

    # -- load --------------------------------------------------------------------------------
    def read_object(self, url: str) -> io.BytesIO:
        """A whole object, retried."""
        path = self.name(url)
        return io.BytesIO(with_retries(lambda: self._cat(path), url, self.remote, "reading the object"))
