"""Where DICOM lives: local folders, fsspec URLs (buckets, with storage options), DICOMweb servers.

:func:`open_source` resolves a URL into a source object that the indexer
walks and reads headers through; :func:`read_instance` is how assembly,
masks and the cache fetch one remote instance with its pixel data.

Credentials and storage options of a remote source are kept in this process
only: :func:`connect` states them once for a URL prefix (``index`` does it
for the sources it is given), and every later read under that prefix uses
them. They are never written to a manifest, a cache or a log. A read path
takes only a URL, so this per-process table is how loads deep in assembly,
masks and the cache find them without a parameter threaded through each.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from dicomml.sources._remote import PREFIX_BYTES, PrefetchedFile, Remote
from dicomml.sources.buckets import FsspecSource, ObjectList, filesystem
from dicomml.sources.dicomweb import DicomWebSource, is_dicomweb

__all__ = [
    "PREFIX_BYTES",
    "DicomWebSource",
    "FsspecSource",
    "ObjectList",
    "PrefetchedFile",
    "Remote",
    "connect",
    "filesystem",
    "is_dicomweb",
    "open_source",
    "read_instance",
]

_lock = threading.Lock()
_connections: dict[str, Remote] = {}
_sources: dict[str, DicomWebSource | FsspecSource] = {}


def connect(
    url: str,
    *,
    storage_options: Mapping[str, Any] | None = None,
    auth: Any = None,
    concurrency: int | None = None,
    retries: int | None = None,
    timeout_s: float | None = None,
) -> None:
    """State how to reach the remote sources under a URL prefix, for this process.

    Parameters
    ----------
    url
        A prefix: ``s3://bucket``, ``dicomweb+https://host/dicom-web``.
    storage_options
        fsspec options of a bucket: ``{"anon": True}``, ``{"endpoint_url": ...}``,
        ``{"profile": "name"}``.
    auth
        DICOMweb credentials: a bearer token (str) or ``(user, password)``.
    concurrency, retries, timeout_s
        See :class:`Remote`; defaults as there.

    Examples
    --------
    >>> dicomml.sources.connect("s3://idc-open-data", storage_options={"anon": True})  # doctest: +SKIP
    """
    defaults = Remote()
    settings = Remote(
        storage_options=dict(storage_options or {}),
        auth=auth,
        concurrency=defaults.concurrency if concurrency is None else concurrency,
        retries=defaults.retries if retries is None else retries,
        timeout_s=defaults.timeout_s if timeout_s is None else timeout_s,
    )
    with _lock:
        _connections[url.rstrip("/")] = settings
        for key in [k for k in _sources if k.startswith(url.rstrip("/"))]:
            del _sources[key]


def _settings(url: str) -> Remote:
    with _lock:
        best = max((p for p in _connections if url.startswith(p)), key=len, default=None)
        return _connections[best] if best is not None else Remote()


def open_source(
    url: str | ObjectList, *, storage_options: Mapping[str, Any] | None = None, auth: Any = None
) -> DicomWebSource | FsspecSource:
    """The source object of a URL (or an :class:`ObjectList`), checked to exist.

    Arguments given here win over what :func:`connect` stated for the URL.

    Raises
    ------
    SourceNotFoundError
        If the bucket path does not exist.
    RemoteSourceError
        If the server cannot be reached or refuses the credentials.
    MissingDependencyError
        If the protocol's package (s3fs, gcsfs, dicomweb-client) is not installed.
    """
    key = url.urls[0] if isinstance(url, ObjectList) and url.urls else str(url)
    settings = _settings(key)
    if storage_options is not None:
        settings = replace(settings, storage_options=dict(storage_options))
    if auth is not None:
        settings = replace(settings, auth=auth)
    source: DicomWebSource | FsspecSource
    source = DicomWebSource(key, settings) if is_dicomweb(key) else FsspecSource(url, settings)
    source.check()
    return source


def _reader(url: str) -> DicomWebSource | FsspecSource:
    """A cached source object for reads under ``url``'s server or bucket."""
    if is_dicomweb(url):
        from dicomml.sources.dicomweb import _parts

        root = "dicomweb+" + _parts(url)["base"]
    else:
        root = url.split("://", 1)[0] + "://" + url.split("://", 1)[1].split("/", 1)[0]
    settings = _settings(url)
    with _lock:
        source = _sources.get(root)
        if source is None:
            source = DicomWebSource(root, settings) if is_dicomweb(url) else FsspecSource(root, settings)
            _sources[root] = source
        return source


def read_instance(url: str) -> io.BytesIO:
    """The bytes of one remote instance, whole (a WADO-RS retrieve, or a bucket object), retried.

    Raises
    ------
    RemoteSourceError
        Naming the URL, when the server or bucket keeps failing.
    """
    return _reader(url).read_instance(url) if is_dicomweb(url) else _reader(url).read_object(url)  # type: ignore[union-attr]
