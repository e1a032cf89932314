"""Reading DICOM files from local paths or fsspec URLs, with dicomml's errors."""

from __future__ import annotations

import struct
from os import PathLike

import pydicom
from pydicom.dataset import FileDataset
from pydicom.errors import InvalidDicomError

from dicomml.paths import local_path
from dicomml.errors import InvalidDicomFileError

__all__ = ["is_url", "read_dataset"]


def is_url(path: str | PathLike[str]) -> bool:
    """Whether ``path`` is an fsspec URL (``memory://``, ``s3://``, ...) rather than a local path."""
    return "://" in str(path) and not str(path).startswith("file://")


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

    Examples
    --------
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

