"""Ceilings on what one header may make dicomml allocate.

Every size read from a header is checked against the bytes present (see
:mod:`dicomml.dicom.frames` and :mod:`dicomml.dicom.io`); what is left, the
size of the volume a series assembles into, is bounded here. The default
holds real CT and MR (512 x 512 x 4096, or 1024 x 1024 x 1024); raise it
for larger data with the ``max_voxels=`` argument of
:func:`dicomml.load_files` / :func:`dicomml.load_series`, the ``max_voxels``
field of a pipeline config, or the CLI's ``--max-voxels`` option (whose
default the environment variable ``DICOMML_MAX_VOXELS`` sets).
"""

from __future__ import annotations

from collections.abc import Sequence

from dicomml.errors import ResourceLimitError

__all__ = ["DEFAULT_MAX_VOXELS", "check_voxels"]

#: Voxels of one output volume (all time points together) unless a ``max_voxels`` argument says otherwise.
DEFAULT_MAX_VOXELS = 1 << 30


def check_voxels(shape: Sequence[int], what: str, limit: int, *, path: str | None = None, series_uid: str | None = None) -> None:
    """Raise :class:`~dicomml.errors.ResourceLimitError` before allocating an array of ``shape`` past ``limit`` voxels.

    ``what`` begins the message; ``path`` and ``series_uid``, where known, are
    the error's attributes (what the errors table and run reports record).

    Examples
    --------
    >>> check_voxels((3, 512, 512), "series s", DEFAULT_MAX_VOXELS)
    >>> check_voxels((3_000_000, 512, 512), "series s", DEFAULT_MAX_VOXELS)
    Traceback (most recent call last):
    ...
    dicomml.errors.ResourceLimitError: series s: a volume of 3000000x512x512 voxels exceeds the limit of 1073741824; ...
    """
    n = 1
    for side in shape:
        n *= int(side)
    if n > limit:
        raise ResourceLimitError(
            f"{what}: a volume of {'x'.join(str(int(s)) for s in shape)} voxels exceeds the limit of {limit}; "
            "if the header is right, raise it with max_voxels= (the CLI's --max-voxels, "
            "or the environment variable DICOMML_MAX_VOXELS there)",
            path=path,
            series_uid=series_uid,
        )
