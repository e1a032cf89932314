"""Reading DICOM files from local paths or fsspec URLs, with dicomml's errors."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from os import PathLike
from typing import TYPE_CHECKING, BinaryIO

import pydicom
from pydicom.dataset import FileDataset
from pydicom.errors import InvalidDicomError

from dicomml.dicom.meta import file_meta
from dicomml.errors import DicomMLError, InvalidDicomFileError, ResourceLimitError, SourceNotFoundError
from dicomml.paths import is_url, local_path

if TYPE_CHECKING:
    from dicomml.sources import Remote

__all__ = ["is_url", "read_dataset", "typed_errors"]


def read_dataset(path: str | PathLike[str], *, pixels: bool, defer_size: int | None = None, remote: Remote | None = None) -> FileDataset:
    """Read one DICOM file, header only or with its pixel data.

    Parameters
    ----------
    path
        Local path, ``file://`` URL, any fsspec URL, or a DICOMweb instance
        URL (``dicomweb+https://.../instances/{uid}``).
    pixels
        False reads the header only (``stop_before_pixels``).
    defer_size
        For local files: values longer than this many bytes (the pixel data
        of a large image) are read from the file only when first accessed, so
        one parse serves both the header and the pixels. Ignored for URLs,
        whose handle is closed on return.
    remote
        How to reach a remote ``path`` (storage options, credentials,
        retries): a :class:`dicomml.sources.Remote`, usually the manifest's
        ``remote``; default: none of them.

    Returns
    -------
    pydicom.dataset.FileDataset
        With ``filename`` set to ``str(path)``.

    Raises
    ------
    InvalidDicomFileError
        If the file is not DICOM or is truncated.
    SourceNotFoundError
        If the file does not exist (a ``FileNotFoundError``).
    ResourceLimitError
        If a deflated dataset inflates past :data:`MAX_INFLATED` bytes.
    RemoteSourceError
        If a remote object cannot be fetched (after retries).

    Examples
    --------
    >>> ds = read_dataset("memory://ct/IM0001.dcm", pixels=False)  # doctest: +SKIP
    """
    name = str(path)
    with typed_errors(name, "reading the file"):
        try:
            if is_url(name):
                from dicomml.sources import read_instance  # retried, with the given options and credentials

                fetched = read_instance(name, remote)
                _check_inflated_size(fetched, name)
                fetched.seek(0)
                ds = pydicom.dcmread(fetched, stop_before_pixels=not pixels)
                ds.filename = name
                return ds
            local = local_path(name)
            with open(local, "rb") as handle:
                _check_inflated_size(handle, name)
            return pydicom.dcmread(local, stop_before_pixels=not pixels, defer_size=defer_size)
        except InvalidDicomError as exc:
            raise InvalidDicomFileError(
                f"{name}: not a DICOM file ({exc}); remove it from the input or pass only DICOM files",
                path=name,
            ) from exc
        except (EOFError, ValueError, struct.error) as exc:
            raise InvalidDicomFileError(
                f"{name}: the file is truncated or its header cannot be parsed ({_first_line(exc)}); re-export or exclude it",
                path=name,
            ) from exc


def _first_line(exc: BaseException) -> str:
    """``exc`` on one line: a message that announces a list on its next lines (pydicom's "...all available plugins:") keeps it."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    text = f"{lines[0]} {'; '.join(lines[1:])}" if lines[0].endswith(":") else lines[0]
    return f"{type(exc).__name__}: {text[:300]}"


@contextmanager
def typed_errors(path: str, what: str, error: type[DicomMLError] = InvalidDicomFileError, tag: str | None = None) -> Iterator[None]:
    """Turn whatever a hostile file makes a reader or decoder raise into a one-line dicomml error.

    pydicom and the decoders raise ``TypeError``, ``RecursionError``,
    ``zlib.error``, ``struct.error``, ``NotImplementedError`` (an unknown VR),
    ``OSError``, a Rust decoder's ``PanicException``... on malformed input;
    none of these may escape a load.
    dicomml's own errors pass through; a missing file is
    :class:`~dicomml.errors.SourceNotFoundError`, running out of memory
    :class:`~dicomml.errors.ResourceLimitError`, a file the OS refuses
    ``error`` saying so, anything else ``error`` naming ``path`` and the
    exception.
    """
    try:
        yield
    except DicomMLError:
        raise
    except FileNotFoundError as exc:
        raise SourceNotFoundError(f"{path}: file not found; index again or check the path", path=path) from exc
    except PermissionError as exc:  # the file may be fine: the OS refused it
        raise error(f"{path}: cannot be read ({exc.strerror or 'permission denied'}); check permissions", path=path, tag=tag) from exc
    except MemoryError as exc:
        raise ResourceLimitError(f"{path}: {what} ran out of memory; the header asks for more memory than there is", path=path) from exc
    except (KeyboardInterrupt, SystemExit, GeneratorExit):
        raise
    except BaseException as exc:  # the boundary; BaseException too: a Rust decoder's panic is one
        raise error(
            f"{path}: {what} failed ({_first_line(exc)}); the file is corrupt or malformed, exclude it",
            path=path,
            tag=tag,
        ) from exc


_DEFLATED = b"1.2.840.10008.1.2.1.99"
#: A deflated dataset may not inflate past this many bytes (here, in the indexer's header walk and over DICOMweb).
MAX_INFLATED = 256 * 1024 * 1024


def _check_inflated_size(handle: BinaryIO, name: str) -> None:
    """For a deflated file, inflate it once in bounded steps, counting, so that a deflate bomb is refused
    before pydicom inflates it whole."""
    head = handle.read(1 << 16)
    if _DEFLATED not in head or head[128:132] != b"DICM":
        return  # not deflated, or no preamble (pydicom refuses the file before inflating it)
    handle.seek(max((value + length for _, value, length in file_meta(head)), default=132))  # the dataset's start
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    total = 0
    while chunk := handle.read(1 << 20):
        while chunk:
            total += len(inflater.decompress(chunk, 1 << 22))
            chunk = inflater.unconsumed_tail
            if total > MAX_INFLATED:
                raise ResourceLimitError(
                    f"{name}: (0002,0010) the deflated dataset inflates past {MAX_INFLATED} bytes; refused as a deflate bomb",
                    path=name,
                    tag="(0002,0010)",
                )
        if inflater.eof:
            return
