"""Where DICOM lives: local folders, fsspec URLs (buckets, with storage options), DICOMweb servers.

:func:`open_source` resolves a URL into a source object that the indexer
walks and reads headers through; :func:`read_instance` is how assembly,
masks and the cache fetch one remote instance with its pixel data.

How to reach a remote source (storage options, credentials, concurrency,
retries) is a :class:`Remote` passed to each call: ``index(...,
storage_options=, auth=)`` returns a :class:`~dicomml.Manifest` that carries
it, and every load from that manifest reads through it
(``Manifest(path, remote=Remote(...))`` does the same for a manifest opened
later). Nothing of it is kept in the process, nor written to a manifest, a
cache or a log.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from dicomml.errors import RemoteSourceError
from dicomml.sources._remote import PREFIX_BYTES, PrefetchedFile, Remote
from dicomml.sources.buckets import FsspecSource, ObjectList, chained, filesystem
from dicomml.sources.dicomweb import DicomWebSource, is_dicomweb, server

if TYPE_CHECKING:
    from dicomml.indexer.crawl import CrawlError, Entry, Files

__all__ = [
    "PREFIX_BYTES",
    "DicomWebList",
    "DicomWebSource",
    "FsspecSource",
    "ObjectList",
    "PrefetchedFile",
    "Remote",
    "filesystem",
    "is_dicomweb",
    "open_source",
    "read_instance",
]


def open_source(
    url: str | ObjectList,
    remote: Remote | None = None,
    *,
    storage_options: Mapping[str, Any] | None = None,
    auth: Any = None,
) -> DicomWebSource | FsspecSource | DicomWebList:
    """The source object of a URL (or an :class:`ObjectList`), checked to exist.

    Parameters
    ----------
    url
        A bucket or fsspec URL, a ``dicomweb+http(s)://`` URL, or an :class:`ObjectList` (of bucket
        URLs, or of DICOMweb URLs: each is read as that URL alone would be).
    remote
        How to reach it; default :class:`Remote` ().
    storage_options, auth
        When given, they replace those of ``remote``.

    Raises
    ------
    SourceNotFoundError
        If the bucket path does not exist.
    RemoteSourceError
        If the server cannot be reached or refuses the credentials, or a URL list mixes DICOMweb and bucket URLs.
    MissingDependencyError
        If the protocol's package (s3fs, gcsfs, dicomweb-client) is not installed.
    """
    settings = with_options(remote, storage_options, auth)
    source: DicomWebSource | FsspecSource | DicomWebList
    if isinstance(url, ObjectList) and any(map(is_dicomweb, url.urls)):
        if not all(map(is_dicomweb, url.urls)):
            raise RemoteSourceError(f"{os.fspath(url)}: mixes DICOMweb and bucket URLs; give each kind as a list of its own")
        # one source per server, not per URL: a list of thousands of series shares one session and one metadata bound
        several = len({server(u) for u in url.urls}) > 1
        source = DicomWebList(url.urls, settings) if several else DicomWebSource(url.urls, settings)
    else:
        source = DicomWebSource(str(url), settings) if is_dicomweb(str(url)) else FsspecSource(url, settings)
    source.check()
    return source


class DicomWebList:
    """The DICOMweb URLs of an :class:`ObjectList` on several servers: one :class:`DicomWebSource` per server
    (one session, one bound on the metadata kept), walked one server after the other.

    Parameters
    ----------
    urls
        Study, series or server URLs.
    remote
        How to reach them.
    """

    protocol = DicomWebSource.protocol

    def __init__(self, urls: Sequence[str], remote: Remote) -> None:
        by_server: dict[str, list[str]] = {}
        for url in urls:
            by_server.setdefault(server(url), []).append(url)
        self.sources = {base: DicomWebSource(group, remote) for base, group in by_server.items()}

    def check(self) -> None:
        """Ask each server once."""
        for source in self.sources.values():
            source.check()

    def walk(self) -> Iterator[Files | CrawlError]:
        """Each server's series, in the order of its URLs."""
        for source in self.sources.values():
            yield from source.walk()

    def open(self, path: str, mode: str = "rb") -> PrefetchedFile:
        """The header of one instance that :meth:`walk` listed."""
        return self.sources[server(path)].open(path, mode)

    def prefetch(self, entries: Sequence[Entry]) -> dict[str, PrefetchedFile]:
        """Header bytes of entries that :meth:`walk` listed, each asked of its server's source."""
        by_server: dict[str, list[Entry]] = {}
        for entry in entries:
            by_server.setdefault(server(entry.open_path), []).append(entry)
        return {path: f for base, part in by_server.items() for path, f in self.sources[base].prefetch(part).items()}


def with_options(remote: Remote | None, storage_options: Mapping[str, Any] | None = None, auth: Any = None) -> Remote:
    """``remote`` (default :class:`Remote` ()) with ``storage_options`` and ``auth`` put in where given."""
    settings = remote or Remote()
    if storage_options is not None:
        settings = replace(settings, storage_options=dict(storage_options))
    if auth is not None:
        settings = replace(settings, auth=auth)
    return settings


def _reader(url: str, remote: Remote) -> DicomWebSource | FsspecSource:
    """The source object for reads under ``url``'s server or bucket, opened once per Remote."""
    if is_dicomweb(url):
        from dicomml.sources.dicomweb import _parts

        root = "dicomweb+" + _parts(url)["base"]
    else:  # the bucket, with the archive its members are in (zip://dir/x.dcm::archive.zip)
        head, chain, archive = url.partition("::") if chained(url) else (url, "", "")
        root = head.split("://", 1)[0] + "://" + head.split("://", 1)[1].split("/", 1)[0] + chain + archive
    source = remote.readers.get(root)
    if source is None:  # two threads may both open one: the later simply wins, both work
        source = DicomWebSource(root, remote) if is_dicomweb(url) else FsspecSource(root, remote)
        remote.readers[root] = source
    return source


def read_instance(url: str, remote: Remote | None = None) -> io.BytesIO:
    """The bytes of one remote instance, whole (a WADO-RS retrieve, or a bucket object), retried.

    Parameters
    ----------
    url
        The instance's URL as the manifest records it.
    remote
        How to reach it; default :class:`Remote` () (no credentials, default fsspec options).

    Raises
    ------
    RemoteSourceError
        Naming the URL, when the server or bucket keeps failing.
    """
    reader = _reader(url, remote or Remote())
    return reader.read_instance(url) if isinstance(reader, DicomWebSource) else reader.read_object(url)
