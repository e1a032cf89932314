"""Ceilings on what one header may make dicomml allocate.

Every size read from a header is checked against the bytes present (see
:mod:`dicomml.dicom.frames` and :mod:`dicomml.dicom.io`); what is left, the
size of the volume a series assembles into, is bounded here. The default
holds real CT and MR (512 x 512 x 4096, or 1024 x 1024 x 1024); raise it
with the environment variable ``DICOMML_MAX_VOXELS`` for larger data.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from dicomml.errors import ResourceLimitError

__all__ = ["DEFAULT_MAX_VOXELS", "check_voxels", "max_voxels"]

#: Voxels of one output volume (all time points together) unless ``DICOMML_MAX_VOXELS`` says otherwise.
DEFAULT_MAX_VOXELS = 1 << 30


def max_voxels() -> int:
    """The ceiling in force: ``DICOMML_MAX_VOXELS`` if set, else :data:`DEFAULT_MAX_VOXELS`."""
    text = os.environ.get("DICOMML_MAX_VOXELS", "")
    return int(text) if text.isdigit() else DEFAULT_MAX_VOXELS


def check_voxels(shape: Sequence[int], what: str) -> None:
    """Raise :class:`~dicomml.errors.ResourceLimitError` before allocating an array of ``shape`` past the ceiling.

    Examples
    --------
    >>> check_voxels((3, 512, 512), "series s")
    >>> check_voxels((3_000_000, 512, 512), "series s")
    Traceback (most recent call last):
    ...
    dicomml.errors.ResourceLimitError: series s: a volume of 3000000x512x512 voxels exceeds the limit of 1073741824; ...
    """
    n = 1
    for side in shape:
        n *= int(side)
    limit = max_voxels()
    if n > limit:
        raise ResourceLimitError(
            f"{what}: a volume of {'x'.join(str(int(s)) for s in shape)} voxels exceeds the limit of {limit}; "
            "if the header is right, raise it with the environment variable DICOMML_MAX_VOXELS"
        )
