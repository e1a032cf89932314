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
import re
import sys
import tarfile
import threading
import time
import zipfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from dicomml.errors import MissingDependencyError, RemoteSourceError, SourceNotFoundError
from dicomml.paths import refuse_credentials
from dicomml.sources._remote import PREFIX_BYTES, PrefetchedFile, Remote, Transient, failure, is_transient, with_retries

if TYPE_CHECKING:
    import fsspec

    from dicomml.indexer.crawl import CrawlError, Entry, Files

__all__ = ["FsspecSource", "ObjectList", "bucket_options", "bucket_retries", "filesystem", "single_try"]

#: How to pass a bucket's credentials instead of in its URL.
_PASS_OPTIONS = "pass them in storage_options (the CLI: --storage-option KEY=VALUE)"
#: One lock per archive read in this process (not on the source object, which is pickled to workers).
_ARCHIVE_READS: dict[str, threading.Lock] = {}
#: The extra that brings each protocol's fsspec implementation.
EXTRAS = {"s3": "s3", "s3a": "s3", "gs": "gcs", "gcs": "gcs"}

T = TypeVar("T")


def chained(url: str) -> bool:
    """Whether ``::`` in ``url`` chains filesystems (``zip://x.dcm::study.zip``, ``simplecache::s3://b/k``) rather
    than being part of an object's key (``s3://b/a::b.dcm``)."""
    import fsspec
    from fsspec.archive import AbstractArchiveFileSystem
    from fsspec.implementations.cached import CachingFileSystem

    head = url.split("::", 1)[0]
    if "::" not in url or "://" not in head:
        return "::" in url
    try:
        return issubclass(fsspec.get_filesystem_class(head.split("://", 1)[0]), (AbstractArchiveFileSystem, CachingFileSystem))
    except (ImportError, ValueError):  # opening it says what is wrong
        return True


def bucket_options(url: str, remote: Remote) -> dict[str, Any]:
    """``remote``'s storage options for ``url``, with its timeout (s3, gs) and its retries as the only ones (s3) where
    they do not say otherwise."""
    given = dict(remote.storage_options)
    protocol = url.split("://", 1)[0]
    if protocol in ("s3", "s3a"):  # botocore retries 4 times by default, each with its own timeouts
        config = {"connect_timeout": remote.timeout_s, "read_timeout": remote.timeout_s, "retries": {"total_max_attempts": 1}}
        return {**given, "config_kwargs": {**config, **given.get("config_kwargs", {})}}
    if protocol in ("gs", "gcs"):
        return {"requests_timeout": remote.timeout_s, **given}
    return given


def filesystem(url: str, storage_options: Mapping[str, Any] | None = None) -> tuple[fsspec.AbstractFileSystem, str]:
    """The fsspec filesystem and path of ``url``, with a one-line error when its package is missing.

    Raises
    ------
    MissingDependencyError
        If the protocol's implementation (s3fs, gcsfs) is not installed.
    RemoteSourceError
        If the URL carries credentials (``user:password@``), which would be recorded, or an option the
        filesystem does not take.
    """
    import fsspec

    refuse_credentials(url, RemoteSourceError, _PASS_OPTIONS)
    protocol = url.split("://", 1)[0]
    try:
        if chained(url):
            fs, path = fsspec.core.url_to_fs(url, **dict(storage_options or {}))
        else:  # fsspec would read a key's "::" as a chain
            fs, path = fsspec.core.url_to_fs(url.split("::", 1)[0], **dict(storage_options or {}))
            path = fs._strip_protocol(url)
    except TypeError as exc:  # a filesystem that takes no such option
        raise _open_failure(url, exc) from exc
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
    if hasattr(fs, "set_session"):  # s3fs hands the options it does not know to a session it makes on first use: made now
        try:
            fs.connect()
        except Exception as exc:  # no request is sent: a wrong option or profile
            raise _open_failure(url, exc) from exc
    return fs, path


def single_try(fs: fsspec.AbstractFileSystem) -> None:
    """Make s3fs try each call once: it tries 5 times, each with its own timeout, before ours (a Remote's or a run's)."""
    if hasattr(fs, "set_session"):
        fs.retries = 1


def _open_failure(url: str, exc: BaseException) -> RemoteSourceError:
    """An option the filesystem does not take, said as such; any other failure to open it as a remote call's."""
    unknown = re.search(r"unexpected keyword argument '(\w+)'", str(exc)) if isinstance(exc, TypeError) else None
    if unknown is None:
        return failure(url, "opening it", exc, 1)
    protocol = url.split("://", 1)[0]
    return RemoteSourceError(
        f"{url}: unknown storage option {unknown[1]!r} for {protocol}://; check storage_options (the CLI: --storage-option KEY=VALUE)",
        path=url,
    )


def _as_transient(exc: BaseException) -> BaseException:
    """A failure that s3fs would retry itself (a body cut short, an unparsable answer) as one a retry of ours may cure:
    its own retries are turned off."""
    s3 = sys.modules.get("s3fs.core")  # loaded wherever an s3 bucket was opened
    if s3 is None or not isinstance(exc, s3.S3_RETRYABLE_ERRORS) or is_transient(exc):
        return exc
    error = Transient(f"{type(exc).__name__}: {exc}")
    error.__cause__ = exc
    return error


def bucket_retries(call: Callable[[], T], url: str, remote: Remote, what: str) -> T:
    """:func:`with_retries`, with the failures s3fs would retry counted as transient."""

    def once() -> T:
        try:
            return call()
        except Exception as exc:  # classified by with_retries
            error = _as_transient(exc)
            if error is exc:
                raise
            raise error from exc

    return with_retries(once, url, remote, what)


class ObjectList:
    """Seed a manifest from object URLs (those idc-index returns, say) without listing a bucket.

    A URL ending in ``/`` names a prefix: the objects under it are listed;
    an object that two entries name is indexed once.

    Parameters
    ----------
    urls
        Object URLs of one protocol (``s3://bucket/key.dcm``...), or DICOMweb URLs (servers, studies or
        series), each indexed as it would be alone.

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
        self.fs, self.root = filesystem(first, bucket_options(first, remote))
        self.remote = remote
        self.protocol = self.fs.protocol
        # an archive's members (zip://dir/x.dcm::/data/archive.zip) are named with the archive, so that they open again
        archive = first.partition("::")[2] if isinstance(self.fs, AbstractArchiveFileSystem) else ""
        self.archive = archive if "://" in archive or not archive else os.path.abspath(os.path.expanduser(archive))
        single_try(self.fs)

    def __setstate__(self, state: dict[str, Any]) -> None:  # an unpickled filesystem has its class's retries again
        self.__dict__.update(state)
        single_try(self.fs)

    def url(self, name: str) -> str:
        """The URL of the object ``name``, as the manifest records it."""
        return self.fs.unstrip_protocol(name) + (f"::{self.archive}" if self.archive else "")

    def name(self, url: str) -> str:
        """The object name of a URL :meth:`url` made."""
        return self.fs._strip_protocol(url.removesuffix(f"::{self.archive}") if self.archive else url)

    def _archive_mtime_ns(self) -> int:
        """The archive's own modification time, given to each member: a rewritten archive is read again whole."""
        from dicomml.indexer.crawl import mtime_ns

        fs, path = filesystem(self.archive, bucket_options(self.archive, self.remote))
        return mtime_ns(dict(bucket_retries(lambda: fs.info(path), self.archive, self.remote, "checking the archive")))

    def check(self) -> None:
        """Raise SourceNotFoundError if the root does not exist, RemoteSourceError if it cannot be reached (a URL
        list is checked object by object)."""
        if self.objects is None:
            url = self.url(self.root)
            # info, not exists: exists() answers False for an endpoint it cannot reach, which said "does not exist"
            bucket_retries(lambda: self.fs.info(self.root), url, self.remote, "checking the source")

    # -- crawl -------------------------------------------------------------------------------
    def walk(self) -> Iterator[Files | CrawlError]:
        """The objects under the root (or of the list), grouped by folder, sorted by path."""
        from dicomml.indexer.crawl import CrawlError

        if self.objects is None:
            yield from self._files(
                bucket_retries(lambda: self.fs.find(self.root, detail=True), self.url(self.root), self.remote, "listing")
            )
            return
        found: dict[str, Any] = {}  # by name: a prefix and an object under it (or a sub-prefix) give it once
        for prefix in (u for u in self.objects.urls if u.endswith("/")):
            found.update(self._find(prefix))
        names = list(dict.fromkeys(n for n in (self.name(u) for u in self.objects.urls if not u.endswith("/")) if n not in found))
        for name, info in zip(names, self._infos(names)):
            if isinstance(info, BaseException):
                url = self.url(name)
                kind = "missing" if isinstance(info, FileNotFoundError) else "unreadable"
                yield CrawlError(url, kind, f"{url}: cannot be listed ({type(info).__name__}); check the URL")
            else:
                found[name] = info
        yield from self._files(found)

    def _find(self, url: str) -> dict[str, Any]:
        path = self.name(url)
        return bucket_retries(lambda: self.fs.find(path, detail=True), url, self.remote, "listing")

    def _infos(self, names: Sequence[str]) -> list[Any]:
        """``info`` of many objects (an exception for those that failed), concurrently on an async filesystem, retried."""
        if not getattr(self.fs, "async_impl", False):
            return self._retried(names, lambda todo: [self._info_or_error(n) for n in todo])
        import asyncio

        from fsspec.asyn import sync

        def infos(todo: list[str]) -> list[Any]:
            async def gather() -> list[Any]:
                limit = asyncio.Semaphore(self.remote.concurrency)

                async def one(name: str) -> Any:
                    async with limit:
                        return await self.fs._info(name)

                return await asyncio.gather(*(one(n) for n in todo), return_exceptions=True)

            return sync(self.fs.loop, gather)

        return self._retried(names, infos)

    def _info_or_error(self, name: str) -> Any:
        try:
            return self.fs.info(name)
        except Exception as exc:  # recorded as a crawl error
            return exc

    def _retried(self, items: Sequence[Any], call: Callable[[list[Any]], list[Any]]) -> list[Any]:
        """``call(items)`` (one result or exception per item), asked again for the items whose failure a retry may cure."""
        results: list[Any] = [None] * len(items)
        todo = list(range(len(items)))
        for attempt in range(self.remote.retries + 1):
            for i, result in zip(todo, call([items[i] for i in todo]) if todo else []):
                results[i] = _as_transient(result) if isinstance(result, BaseException) else result
            todo = [i for i in todo if isinstance(results[i], BaseException) and is_transient(results[i])]
            if not todo or attempt == self.remote.retries:
                break
            time.sleep(self.remote.backoff_s * 2**attempt)
        return results

    def _files(self, found: Mapping[str, Mapping[str, Any]]) -> Iterator[Files | CrawlError]:
        from dicomml.indexer.crawl import CrawlError, Files, mtime_ns

        current: Files | None = None
        archive_mtime = self._archive_mtime_ns() if self.archive and found else 0
        for name in sorted(found):
            info = found[name]
            url = self.url(name)
            if name.endswith("/") and not info.get("size"):  # a folder marker ("prefix/" object) some tools write
                continue
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
        return lambda start, end: bucket_retries(lambda: self._cat(path, start, end), url, self.remote, "reading a byte range")

    def open(self, path: str, mode: str = "rb") -> PrefetchedFile:
        """The object as a file whose reads are ranged requests."""
        size = self.fs.size(path)
        return PrefetchedFile(self.url(path), size, read_range=self._read_range(path))

    def prefetch(self, entries: Sequence[Entry]) -> dict[str, PrefetchedFile]:
        """The first bytes of every entry, requested together; failures become files that raise."""
        sized = [e for e in entries if e.size]  # an empty object has no byte 0 to ask for (HTTP 416): the scan says it is empty

        def heads(todo: list[Entry]) -> list[Any]:
            with self._one_read():
                return list(
                    self.fs.cat_ranges(
                        [e.open_path for e in todo],
                        [0] * len(todo),
                        [min(e.size, PREFIX_BYTES) for e in todo],
                        on_error="return",
                        batch_size=self.remote.concurrency,  # requests in flight, as Remote says (async filesystems)
                    )
                )

        got: dict[str, Any] = {e.open_path: b"" for e in entries}
        got.update(zip((e.open_path for e in sized), self._retried(sized, heads)))
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
        return io.BytesIO(bucket_retries(lambda: self._cat(path), url, self.remote, "reading the object"))
