"""Paths and URLs: stored losslessly in UTF-8 stores (Parquet, JSON), checked against the manifest, refused with
credentials, written whole; no DICOM reader is imported here."""

from __future__ import annotations

import contextlib
import os
import re
import urllib.parse
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

from dicomml.errors import ManifestError, OutputError

__all__ = [
    "atomic_output",
    "check_unchanged",
    "is_url",
    "local_path",
    "os_reason",
    "printable",
    "refuse_credentials",
    "refuse_url",
    "storable_path",
]

#: The user information of a URL's authority: ``scheme://user:password@``.
_USERINFO = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)[^/?#@]*@")


def storable_path(path: str) -> str:
    """``path`` as a manifest (or any UTF-8 store) records it, losslessly.

    A file name that is not valid UTF-8 reaches Python with surrogate escapes,
    which UTF-8 stores refuse; such a path becomes a percent-encoded
    ``file://`` URL of its bytes. Every other path is returned as it is (a
    plain local path never starts with ``file://``). :func:`local_path` undoes it.

    Examples
    --------
    >>> storable_path(os.fsdecode(b"/d/\\xff.dcm"))
    'file:///d/%FF.dcm'
    """
    try:
        path.encode("utf-8")
        return path
    except UnicodeEncodeError:
        return "file://" + urllib.parse.quote(os.fsencode(path))


def is_url(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is an fsspec URL (``memory://``, ``s3://``, ...) rather than a local path."""
    return "://" in str(path) and not str(path).startswith("file://")


def local_path(name: str) -> str:
    """The path to open for a local path or ``file://`` URL (percent escapes decoded, as :func:`storable_path` wrote them)."""
    if not name.startswith("file://"):
        return name
    return os.fsdecode(urllib.parse.unquote_to_bytes(name[len("file://") :]))


#: Control characters and the line separators ``str.splitlines`` honours: a file name holding one would split a one-line message.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def printable(text: str) -> str:
    """``text`` on one line, safe to store in UTF-8 and to print: undecodable file-name bytes shown as ``\\xff``,
    control characters as Python's ``repr`` shows them (``\\n``, ``\\t``, ``\\x1b``).

    Examples
    --------
    >>> print(printable("/d/a\\nb.dcm"))
    /d/a\\nb.dcm
    """
    text = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], text)


def refuse_credentials(url: str, error: type[Exception], how: str) -> None:
    """Raise ``error`` if ``url`` carries credentials (``scheme://user:password@host``).

    URLs are recorded in manifests, caches' reports and messages; the message
    shows the URL without them (and without the values of identifier filters,
    ``?PatientID=``) and says ``how`` to pass them instead.

    Examples
    --------
    >>> refuse_credentials("s3://bucket/dicom", ValueError, "use storage_options")
    >>> refuse_credentials("https://ann:pw@host/x", ValueError, "use storage_options")
    Traceback (most recent call last):
    ValueError: https://host/x: credentials in the URL would be recorded; use storage_options
    """
    if _USERINFO.match(url):
        from dicomml.indexer.privacy import storable_source  # only to word the refusal: the query may name a patient

        raise error(f"{storable_source(url, include_phi=False)}: credentials in the URL would be recorded; {how}")


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike[str]) -> Iterator[Path]:
    """A temporary file beside ``path`` to write, renamed onto ``path`` when the block succeeds.

    The temporary name keeps ``path``'s suffixes (``.nii.gz``), for writers
    that choose the format by them. A failed write leaves neither it nor a
    partial ``path``; an OSError (a full disk, a permission) becomes one
    :class:`~dicomml.errors.OutputError` naming ``path``.

    Examples
    --------
    >>> with atomic_output(tmp_path / "x.txt") as tmp:  # doctest: +SKIP
    ...     tmp.write_text("done")
    """
    refuse_url(os.fspath(path), "the output")
    path = Path(path)
    tmp = path.with_name(f".{uuid.uuid4().hex[:12]}-{path.name}")
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as exc:
        raise OutputError(f"{path}: cannot be written ({os_reason(exc)}); free space or choose another path", path=str(path)) from exc
    finally:
        tmp.unlink(missing_ok=True)


#: A URL's scheme and at least one slash (a Windows drive letter is one character).
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+:/")


def refuse_url(path: str, what: str) -> None:
    """Refuse a URL given where a local file or folder is written: the writers would make a local folder ``s3:``.

    Raises
    ------
    OutputError
        If ``path`` starts with a URL's scheme (``s3://bucket/x.nii.gz``, ``file:///x``; also as ``pathlib``
        shortens them, ``s3:/bucket``), naming it and ``what`` (the option).
    """
    if _URL.match(path):
        raise OutputError(
            f"{path}: {what} must be a local path, not a URL; write it here, then copy it (aws s3 cp, gcloud storage cp)", path=path
        )


def os_reason(exc: BaseException) -> str:
    """The operating system's word for a failed write, under the wrappers that writers put around it."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, OSError) and cause.strerror:
            return cause.strerror
        cause = cause.__cause__ or cause.__context__
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def check_unchanged(files: Iterable[tuple[str, int, int]]) -> None:
    """Refuse a local file rewritten since it was indexed: its row and cache key describe what it held then.

    ``files`` are ``(path, size, mtime_ns)`` as the manifest records them;
    URLs and files gone are passed over (their reads say what is wrong).
    Call it after reading them, so that a file that no longer decodes says
    so itself.

    Raises
    ------
    ManifestError
        Naming the first file whose size or modification time changed.
    """
    for path, size, mtime_ns in files:
        if is_url(path):
            continue
        try:
            info = os.stat(local_path(path))
        except FileNotFoundError:
            continue
        if (info.st_size, info.st_mtime_ns) != (size, mtime_ns):
            raise ManifestError(f"{path}: changed since it was indexed (size or modification time); index its source again", path=str(path))
