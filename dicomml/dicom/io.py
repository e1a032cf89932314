"""Reading DICOM files from local paths or fsspec URLs, with dicomml's errors."""

from __future__ import annotations

import os
import struct
import urllib.parse
from os import PathLike

import pydicom
from pydicom.dataset import FileDataset
from pydicom.errors import InvalidDicomError

from dicomml.errors import InvalidDicomFileError

__all__ = ["is_url", "local_path", "printable", "read_dataset", "storable_path"]


def is_url(path: str | PathLike[str]) -> bool:
    """Whether ``path`` is an fsspec URL (``memory://``, ``s3://``, ...) rather than a local path."""
    return "://" in str(path) and not str(path).startswith("file://")


def storable_path(path: str) -> str:
    """``path`` as a manifest (or any UTF-8 store) records it, losslessly.

    A file name that is not valid UTF-8 reaches Python with surrogate escapes,
    which UTF-8 stores refuse; such a path becomes a percent-encoded
    ``file://`` URL of its bytes. Every other path is returned as it is (a
    plain local path never starts with ``file://``). :func:`local_path` undoes it.

    Example
    -------
    >>> storable_path("/d/\udcff.dcm")
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


def read_dataset(path: str | PathLike[str], *, pixels: bool, defer_size: int | None = None) -> FileDataset:
    """Read one DICOM file, header only or with its pixel data.

    Parameters
    ----------
    path
        Local path, ``file://`` URL or any fsspec URL.
    pixels
        False reads the header only (``stop_before_pixels``).
    defer_size
        For local files: values longer than this many bytes (the pixel data
        of a large image) are read from the file only when first accessed, so
        one parse serves both the header and the pixels. Ignored for URLs,
        whose handle is closed on return.

    Returns
    -------
    pydicom.dataset.FileDataset
        With ``filename`` set to ``str(path)``.

    Raises
    ------
    InvalidDicomFileError
        If the file is not DICOM or is truncated.
    FileNotFoundError
        If the file does not exist.

    Example
    -------
    >>> ds = read_dataset("memory://ct/IM0001.dcm", pixels=False)  # doctest: +SKIP
    """
    name = str(path)
    try:
        if is_url(name):
            import fsspec

            with fsspec.open(name, "rb") as handle:
                ds = pydicom.dcmread(handle, stop_before_pixels=not pixels)
            ds.filename = name
            return ds
        return pydicom.dcmread(local_path(name), stop_before_pixels=not pixels, defer_size=defer_size)
    except InvalidDicomError as exc:
        raise InvalidDicomFileError(
            f"{name}: not a DICOM file ({exc}); remove it from the input or pass only DICOM files",
            path=name,
        ) from exc
    except (EOFError, ValueError, struct.error) as exc:
        raise InvalidDicomFileError(
            f"{name}: the file is truncated or its header cannot be parsed ({exc}); re-export or exclude it",
            path=name,
        ) from exc

