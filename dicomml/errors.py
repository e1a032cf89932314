"""The one exception tree of dicomml.

Every error dicomml raises on purpose is a :class:`DicomMLError`. Each class
also inherits the builtin that fits it (as zarr does), so ``except ValueError``
keeps working for callers that do not know dicomml.

Exceptions carry ``path``, ``series_uid`` and ``tag`` so that the indexer's
``errors`` table and the preprocessing run report can record them.
"""

from __future__ import annotations

__all__ = [
    "DicomMLError",
    "InvalidDicomFileError",
    "ResourceLimitError",
    "UnsupportedTransferSyntaxError",
    "ManifestError",
    "SourceNotFoundError",
    "RemoteSourceError",
    "SeriesNotFoundError",
    "SeriesAssemblyError",
    "MixedSeriesError",
    "SliceGapError",
    "DuplicateSliceError",
    "GantryTiltError",
    "InconsistentGeometryError",
    "GeometryError",
    "FrameOfReferenceError",
    "SUVError",
    "SegReferenceError",
    "SegmentNotFoundError",
    "SegmentOverlapError",
    "CacheError",
    "CacheIntegrityError",
    "CacheMissError",
    "ConfigError",
    "OutputError",
    "MissingDependencyError",
]


class DicomMLError(Exception):
    """Base of every dicomml error.

    Parameters
    ----------
    message
        One line: the file, the problem, observed vs expected, the way out.
    path
        The file (or store entry) concerned, if any.
    series_uid
        The SeriesInstanceUID or series key concerned, if any.
    tag
        The DICOM tag concerned, as ``"(0028,0030)"``, if any.
    """

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        series_uid: str | None = None,
        tag: str | None = None,
    ) -> None:
        super().__init__(message)
        self.path = path
        self.series_uid = series_uid
        self.tag = tag

    def __reduce__(self):  # keeps the keyword attributes across processes
        return (_rebuild, (type(self), str(self), self.path, self.series_uid, self.tag))


def _rebuild(cls, message, path, series_uid, tag):
    return cls(message, path=path, series_uid=series_uid, tag=tag)


class InvalidDicomFileError(DicomMLError, ValueError):
    """A file is not DICOM, is truncated, or its header cannot be parsed."""


class ResourceLimitError(DicomMLError, MemoryError):
    """A header asks for more memory than a limit allows (a volume past the voxel ceiling, an inflation bomb)."""


class UnsupportedTransferSyntaxError(DicomMLError, NotImplementedError):
    """Pixel data in a transfer syntax that no installed decoder handles."""


class ManifestError(DicomMLError, OSError):
    """A manifest folder is missing, unwritable or has an unknown schema."""


class SourceNotFoundError(DicomMLError, FileNotFoundError):
    """A source to index (a folder or URL) does not exist."""


class RemoteSourceError(DicomMLError, OSError):
    """A server or bucket kept failing (5xx, 429, timeouts, dropped or truncated answers) after retries."""


class SeriesNotFoundError(DicomMLError, KeyError):
    """A series key or annotation key that the manifest does not hold."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class SeriesAssemblyError(DicomMLError, ValueError):
    """A series cannot be assembled into one regular volume."""


class MixedSeriesError(SeriesAssemblyError):
    """The files given hold more than one volume group."""


class SliceGapError(SeriesAssemblyError):
    """Slices are missing: a step along the slice normal exceeds the spacing."""


class DuplicateSliceError(SeriesAssemblyError):
    """Two slices (of one time point or echo) lie at the same position."""


class GantryTiltError(SeriesAssemblyError):
    """Slice positions progress obliquely to the slice normal (gantry tilt)."""


class InconsistentGeometryError(SeriesAssemblyError):
    """Orientation, pixel spacing, shape or spacing differ between slices."""


class GeometryError(DicomMLError, ValueError):
    """Invalid input to a pure geometry function (affine, axis codes, shape)."""


class FrameOfReferenceError(GeometryError):
    """Series of one study sample lie in different frames of reference (FrameOfReferenceUID), so
    their world coordinates need not agree."""


class SUVError(DicomMLError, ValueError):
    """A PET series cannot be converted to SUV: a tag the formula needs is missing or unusable."""


class SegReferenceError(DicomMLError, LookupError):
    """A SEG or RTSTRUCT whose referenced image series cannot be found or matched."""


class SegmentNotFoundError(DicomMLError, KeyError):
    """A segment (number, label, property code) or ROI name that a SEG or RTSTRUCT lacks."""

    def __str__(self) -> str:
        return str(self.args[0])


class SegmentOverlapError(DicomMLError, ValueError):
    """Segments overlap (or are fractional), so they cannot share one label map."""


class CacheError(DicomMLError, OSError):
    """A cache folder or URL cannot be created, read or written."""


class CacheIntegrityError(CacheError):
    """A cache entry is incomplete, its checksums do not match, or the store is of another format."""


class CacheMissError(DicomMLError, KeyError):
    """A cache entry is absent and computing it was not allowed (``cache_only=True``)."""

    def __str__(self) -> str:
        return str(self.args[0])


class ConfigError(DicomMLError, ValueError):
    """A pipeline configuration, or an argument given to dicomml, is invalid (unknown key, wrong type or value)."""


class OutputError(DicomMLError, OSError):
    """An output file cannot be written where asked (its folder cannot be made or written)."""


class MissingDependencyError(DicomMLError, ImportError):
    """An optional dependency that a feature needs is not installed; the message names the extra."""
