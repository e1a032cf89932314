"""`Volume`: voxels, a 4x4 affine and metadata."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dicomml.errors import ConfigError
from dicomml.geometry.affine import axcodes, spacing_of

__all__ = ["Volume"]


@dataclass
class Volume:
    """Voxels plus the affine that places them in the patient, plus metadata.

    Attributes
    ----------
    array
        numpy array; the last three axes are spatial. Loaded DICOM keeps its
        (slice, row, column) order, which the affine describes.
    affine
        4x4 float64; maps the last three indices to RAS+ millimetres
        (nibabel and MONAI's convention).
    axes
        Names of the leading, non-spatial axes, e.g. ``("time",)`` or
        ``("echo",)``; empty for a plain 3D volume.
    meta
        UIDs, modality, rescale, window, source files and any irregularity
        found (``meta["irregularities"]``).

    Examples
    --------
    >>> v = Volume(np.zeros((2, 3, 4), np.int16), np.diag([3.0, 2.0, 1.0, 1.0]))
    >>> v.spacing, v.orientation
    ((3.0, 2.0, 1.0), 'RAS')
    """

    array: np.ndarray
    affine: np.ndarray
    axes: tuple[str, ...] = ()
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.affine = np.asarray(self.affine, dtype=np.float64)
        if self.affine.shape != (4, 4):
            raise ConfigError(f"affine must be 4x4, got {self.affine.shape}")
        if self.array.ndim != 3 + len(self.axes):
            raise ConfigError(f"array has {self.array.ndim} axes; expected 3 spatial + {len(self.axes)} named {self.axes}")

    @property
    def spatial_shape(self) -> tuple[int, int, int]:
        """Shape of the last three (spatial) axes."""
        return tuple(self.array.shape[-3:])  # type: ignore[return-value]

    @property
    def spacing(self) -> tuple[float, ...]:
        """Voxel size in mm along the three spatial array axes."""
        return spacing_of(self.affine)

    @property
    def orientation(self) -> str:
        """RAS+ axis code of the spatial axes, e.g. ``"SPL"`` for DICOM axial order."""
        return axcodes(self.affine)

    def __repr__(self) -> str:
        sp = "x".join(f"{s:.3g}" for s in self.spacing)
        lead = f" axes={self.axes}" if self.axes else ""
        return f"Volume(shape={self.array.shape}, dtype={self.array.dtype}, spacing={sp} mm, {self.orientation}{lead})"
