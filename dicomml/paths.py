"""File paths in UTF-8 stores (Parquet, JSON), losslessly; no DICOM reader is imported here."""

from __future__ import annotations

import os
import urllib.parse

__all__ = ["local_path", "printable", "storable_path"]


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


def local_path(name: str) -> str:
    """The path to open for a local path or ``file://`` URL (percent escapes decoded, as :func:`storable_path` wrote them)."""
    if not name.startswith("file://"):
        return name
    return os.fsdecode(urllib.parse.unquote_to_bytes(name[len("file://") :]))


def printable(text: str) -> str:
    """``text`` with undecodable file-name bytes shown as ``\\xff``: safe to store in UTF-8 and to print."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
