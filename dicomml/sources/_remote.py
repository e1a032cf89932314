"""What every remote source shares: its settings, retries with backoff, and prefetched header bytes."""

from __future__ import annotations

import errno
import json
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from dicomml.errors import DicomMLError, MissingDependencyError, RemoteSourceError, SourceNotFoundError

__all__ = ["PREFIX_BYTES", "PrefetchedFile", "Remote", "failure", "is_transient", "shown", "with_retries"]

#: Bytes of a header read first; more only when the header runs past them.
PREFIX_BYTES = 64 * 1024

T = TypeVar("T")


@dataclass(frozen=True)
class Remote:
    """How to reach remote sources, passed to each call that reads them; credentials live in memory only.

    Neither the storage options nor the credentials appear in a repr, a
    manifest, a cache or a log. A Remote also holds the connections it
    opened (one client per server or bucket), reused by later reads through
    it; they are not pickled, so a Remote sent to a worker process opens its
    own.

    Examples
    --------
    >>> remote = Remote(auth="TOKEN", storage_options={"anon": True})
    >>> remote
    Remote(concurrency=16, retries=4, timeout_s=30.0, backoff_s=0.2)

    Attributes
    ----------
    storage_options
        fsspec options of a bucket (``anon``, ``endpoint_url``, ``profile``...).
    auth
        DICOMweb credentials: a bearer token (str) or ``(user, password)``.
    concurrency
        Requests in flight at once, per source.
    retries
        Tries after the first on 429, 5xx, timeouts, dropped or truncated answers.
    timeout_s
        Seconds to wait for a server's answer.
    backoff_s
        First wait between tries; doubled each time, with jitter.
    readers
        The source objects opened through this Remote, by server or bucket.
    """

    storage_options: Mapping[str, Any] = field(default_factory=dict, repr=False)
    auth: Any = field(default=None, repr=False)
    concurrency: int = 16
    retries: int = 4
    timeout_s: float = 30.0
    backoff_s: float = 0.2
    readers: dict[str, Any] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __getstate__(self) -> dict[str, Any]:  # connections stay in the process that opened them
        return {k: v for k, v in self.__dict__.items() if k != "readers"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        for key, value in {**state, "readers": {}}.items():
            object.__setattr__(self, key, value)


class Transient(Exception):
    """An answer worth asking again for (a truncated body, a 5xx)."""


#: HTTP statuses that a retry may cure.
RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})
#: Errors of a client that found no usable credentials (botocore, google-auth): its settings are wrong, no server said no.
_NO_CREDENTIALS = frozenset(
    {"NoCredentialsError", "PartialCredentialsError", "CredentialRetrievalError", "ProfileNotFound", "DefaultCredentialsError"}
)


#: botocore's errors of a refused, lost or timed-out connection (endpoint unreachable, reset, read timeout): no OSError.
_BOTOCORE_CONNECTION = frozenset({"ConnectionError", "HTTPClientError"})


def _status(exc: BaseException) -> int | None:
    """The HTTP status of a failed call: requests' response, or botocore's, which s3fs keeps as the cause of the OSError it raises."""
    for error in (exc, exc.__cause__):
        response = getattr(error, "response", None)
        status = (
            response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if isinstance(response, dict)
            else getattr(response, "status_code", None)
        )
        if status is not None:
            return int(status)
    return None


def _no_credentials(exc: BaseException) -> bool:
    return any(cls.__name__ in _NO_CREDENTIALS for cls in type(exc).__mro__)


#: OS errors no retry cures: no space, no quota, a read-only file system, a file or name too large.
_LASTING_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG, errno.ENAMETOOLONG})


def is_transient(exc: BaseException) -> bool:
    """Whether a retry may cure the failure (a timeout, a reset, a 5xx or 429), not a 4xx, missing credentials or a missing object."""
    if isinstance(exc, (Transient, TimeoutError, ConnectionError, json.JSONDecodeError)):
        return True
    if any(c.__module__ == "botocore.exceptions" and c.__name__ in _BOTOCORE_CONNECTION for c in type(exc).__mro__):
        return True
    if _no_credentials(exc):
        return False
    status = _status(exc)
    if status is not None:
        return status in RETRY_STATUS
    try:
        import requests
    except ImportError:  # pragma: no cover - requests comes with fsspec's HTTP and dicomweb-client
        return False
    if isinstance(exc, requests.RequestException):
        return True
    # s3fs / aiohttp errors that carry no status: a reset or a short read; a full or read-only disk stays so
    lasting = (FileNotFoundError, PermissionError, DicomMLError)
    return isinstance(exc, OSError) and not isinstance(exc, lasting) and exc.errno not in _LASTING_ERRNOS


def _reason(exc: BaseException) -> str:
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if status is not None:
        return f"HTTP {status}"
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}"[:200] if text else type(exc).__name__


def with_retries(call: Callable[[], T], url: str, remote: Remote, what: str) -> T:
    """``call()``, tried again with backoff while it fails in a way a retry may cure.

    Raises
    ------
    SourceNotFoundError
        If the object does not exist.
    RemoteSourceError
        Naming ``url``, when the tries are spent or the failure is not transient
        (401, 403, 404 are said at once).
    MissingDependencyError
        As ``call`` raised it (a client package not installed), at once.
    """
    for attempt in range(remote.retries + 1):
        try:
            return call()
        except (RemoteSourceError, MissingDependencyError):  # said in one line already; no retry installs a package
            raise
        except FileNotFoundError as exc:
            raise SourceNotFoundError(f"{shown(url)}: does not exist; check the URL", path=shown(url)) from exc
        except Exception as exc:  # classified below: transient ones are retried
            if not is_transient(exc) or attempt == remote.retries:
                raise failure(url, what, exc, attempt + 1) from exc
            time.sleep(remote.backoff_s * 2**attempt * (0.5 + random.random() / 2))
    raise AssertionError("unreachable")  # pragma: no cover


def failure(url: str, what: str, exc: BaseException, tries: int) -> RemoteSourceError:
    """The one-line error of a remote call that failed for good (the tries said only when a retry might have cured it)."""
    transient = is_transient(exc)
    status = _status(exc)
    if _no_credentials(exc):
        hint = "check the credentials and storage_options (the CLI: --storage-option KEY=VALUE; a public S3 bucket: anon=true)"
    elif isinstance(exc, PermissionError) or status in (401, 403):  # s3fs and gcsfs say a 403 as PermissionError
        hint = "check the credentials"
    elif status == 404:
        hint = "check the URL"
    elif status is not None and not transient:  # a 400, 405...: the request as asked is refused, a rerun would be too
        hint = "check the URL and the source's settings"
    else:
        hint = "check the server, or rerun to resume"
    from dicomml.indexer.privacy import withhold_identifiers  # on a failure only: reads need no indexer module

    reason = withhold_identifiers(_reason(exc))  # an HTTP client's reason names the URL it asked for, query and all
    return RemoteSourceError(
        f"{shown(url)}: {what} failed{f' after {tries} tries' if transient else ''} ({reason}); {hint}", path=shown(url)
    )


def shown(url: str) -> str:
    """``url`` as a message or an ``errors`` row names it: the values of identifier filters (``?PatientID=``) withheld.

    Examples
    --------
    >>> shown("dicomweb+https://pacs/dicom-web?PatientID=123&Modality=CT")
    'dicomweb+https://pacs/dicom-web?PatientID=WITHHELD&Modality=CT'
    """
    if "?" not in url:  # only a query names a patient; anything else is shown exactly as written
        return url
    from dicomml.indexer.privacy import storable_source  # on a message only: reads need no indexer module

    return storable_source(url, include_phi=False)


class PrefetchedFile:
    """A read-only file over bytes fetched ahead (the start of an object), reading more on demand.

    Parameters
    ----------
    url
        For messages.
    size
        The object's full size in bytes.
    prefix
        Its first bytes.
    read_range
        ``(start, end) -> bytes`` for bytes past the prefix; None when there are none to fetch.
    error
        Raised by every read: the fetch failed.
    """

    def __init__(
        self,
        url: str,
        size: int,
        prefix: bytes = b"",
        read_range: Callable[[int, int], bytes] | None = None,
        error: BaseException | None = None,
    ) -> None:
        self.url, self._size, self._prefix, self._read_range, self._error = url, size, prefix, read_range, error
        self._pos = 0

    @property
    def size(self) -> int:
        """The object's size; raises the fetch's error if it failed."""
        if self._error is not None:
            raise self._error
        return self._size

    def read(self, n: int = -1) -> bytes:
        if self._error is not None:
            raise self._error
        end = self._size if n is None or n < 0 else min(self._size, self._pos + n)
        start = self._pos
        if end <= len(self._prefix):
            out = self._prefix[start:end]
        elif self._read_range is None:
            out = self._prefix[start:end]
        else:
            head = self._prefix[start:] if start < len(self._prefix) else b""
            out = head + self._read_range(max(start, len(self._prefix)), end)
        self._pos = start + len(out)
        return out

    def seek(self, offset: int, whence: int = 0) -> int:
        self._pos = offset if whence == 0 else (self._pos + offset if whence == 1 else self._size + offset)
        return self._pos

    def tell(self) -> int:
        return self._pos

    def close(self) -> None:
        self._prefix = b""

    def __enter__(self) -> PrefetchedFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
