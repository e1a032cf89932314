"""DICOM geometry validated as data before any of it is used.

Header values are untrusted: a spacing of 0 or 1e308, direction cosines that
are not orthonormal, or positions of 1e308 mm would otherwise reach affines,
sorting and resampling (division by zero, overflow, a volume of millions of
slices). :func:`geometry_problem` names the first value out of bounds, so that
the indexer marks the group unusable and loading raises a one-line error;
:func:`affine_problem` does the same for an affine that is to place a voxel grid.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike

__all__ = [
    "GeometryProblem",
    "ORTHONORMAL_TOLERANCE",
    "POSITION_LIMIT_MM",
    "SPACING_RANGE_MM",
    "affine_problem",
    "geometry_problem",
    "spacing_problem",
]

#: Direction cosines must have unit length, and be orthogonal, within this tolerance.
ORTHONORMAL_TOLERANCE = 1e-3
#: Pixel and slice spacing must lie in this range, mm (1 nm to 100 m): outside, it is not a measurement.
SPACING_RANGE_MM = (1e-6, 1e5)
#: Positions must lie within this distance of the origin on each axis, mm (1 km).
POSITION_LIMIT_MM = 1e6


class GeometryProblem(NamedTuple):
    """The first bad value: which input row, the DICOM tag, and a phrase naming the problem."""

    frame: int
    tag: str
    problem: str


def _first(bad: np.ndarray) -> int | None:
    hits = np.flatnonzero(bad)
    return int(hits[0]) if hits.size else None


def spacing_problem(values: np.ndarray, what: str) -> str | None:
    """A phrase when any of ``values`` (mm) is not finite or lies outside :data:`SPACING_RANGE_MM`, else None."""
    low, high = SPACING_RANGE_MM
    with np.errstate(invalid="ignore"):
        bad = ~(np.isfinite(values) & (values >= low) & (values <= high))
    if np.any(bad):
        return f"{what} {np.asarray(values).tolist()} is outside {low:g}..{high:g} mm"
    return None


def geometry_problem(
    orientations: ArrayLike, pixel_spacings: ArrayLike | None = None, positions: ArrayLike | None = None
) -> GeometryProblem | None:
    """The first out-of-bounds geometry value of some frames, or None when all are valid.

    Parameters
    ----------
    orientations
        (n, 6) or (6,) ImageOrientationPatient: must be finite, unit length and
        orthogonal within :data:`ORTHONORMAL_TOLERANCE`.
    pixel_spacings
        (n, 2) or (2,) PixelSpacing, mm: within :data:`SPACING_RANGE_MM`. NaN
        rows (absent) are skipped.
    positions
        (n, 3) ImagePositionPatient, mm: finite, within :data:`POSITION_LIMIT_MM`.

    Returns
    -------
    GeometryProblem or None

    Examples
    --------
    >>> geometry_problem([1, 0, 0, 0, 1, 0], [0.0, 0.0]).problem
    '(0028,0030) PixelSpacing [0.0, 0.0] is outside 1e-06..100000 mm'
    >>> geometry_problem([1, 0, 0, 0, 1, 0], [0.5, 0.5], [[0, 0, 0], [0, 0, 1]]) is None
    True
    """
    iop = np.atleast_2d(np.asarray(orientations, dtype=np.float64))
    if iop.shape[1] != 6:
        return GeometryProblem(0, "(0020,0037)", f"(0020,0037) ImageOrientationPatient has {iop.shape[1]} values, not 6")
    with np.errstate(all="ignore"):
        rows, cols = iop[:, :3], iop[:, 3:]
        off = np.maximum.reduce(
            [np.abs(np.linalg.norm(rows, axis=1) - 1), np.abs(np.linalg.norm(cols, axis=1) - 1), np.abs(np.sum(rows * cols, axis=1))]
        )
        i = _first(~(np.isfinite(off) & (off <= ORTHONORMAL_TOLERANCE)))
    if i is not None:
        return GeometryProblem(
            i,
            "(0020,0037)",
            f"(0020,0037) ImageOrientationPatient {iop[i].tolist()} is not two orthogonal unit vectors "
            f"(tolerance {ORTHONORMAL_TOLERANCE:g})",
        )
    if pixel_spacings is not None:
        spacing = np.atleast_2d(np.asarray(pixel_spacings, dtype=np.float64))
        for i, row in enumerate(spacing):
            problem = None if np.all(np.isnan(row)) else spacing_problem(row, "(0028,0030) PixelSpacing")
            if problem:
                return GeometryProblem(i, "(0028,0030)", problem)
    if positions is not None:
        pos = np.atleast_2d(np.asarray(positions, dtype=np.float64))
        with np.errstate(invalid="ignore"):
            i = _first(~np.all(np.isfinite(pos) & (np.abs(pos) <= POSITION_LIMIT_MM), axis=1))
        if i is not None:
            return GeometryProblem(
                i,
                "(0020,0032)",
                f"(0020,0032) ImagePositionPatient {pos[i].tolist()} is beyond {POSITION_LIMIT_MM:g} mm",
            )
    return None


def affine_problem(affine: ArrayLike) -> str | None:
    """A phrase when ``affine`` cannot place a voxel grid (not 4x4, not finite, singular), else None.

    The affine maps array indices to RAS+ mm; its 3x3 part must have rank 3
    (numpy's ``matrix_rank`` tolerance), or voxels along some direction all
    land on one place and no world position can be mapped back to an index.

    Examples
    --------
    >>> affine_problem(np.diag([1.0, 1.0, 0.0, 1.0]))
    'affine [[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]] is singular (its 3x3 part has rank 2); a voxel grid needs three independent axes'
    >>> affine_problem(np.eye(4)) is None
    True
    """
    a = np.asarray(affine, dtype=np.float64)
    if a.shape != (4, 4):
        return f"affine has shape {a.shape}, not 4x4"
    if not np.isfinite(a).all():
        return f"affine {a.tolist()} is not finite"
    rank = int(np.linalg.matrix_rank(a[:3, :3]))
    if rank < 3:
        return f"affine {a.tolist()} is singular (its 3x3 part has rank {rank}); a voxel grid needs three independent axes"
    return None
