"""Slice stacks: ordering along the normal, spacing, gaps, duplicates and tilt.

The core under both the indexer's ``series`` table and assembly: from slice
positions and one orientation, say how the slices stack and what is wrong.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from dicomml.errors import GeometryError

__all__ = ["StackGeometry", "analyze_stack", "slice_normal"]

#: Two positions closer than this along the normal (mm) are the same slice.
POSITION_TOLERANCE_MM = 0.01
#: A step may differ from the median step by this fraction and still be uniform.
SPACING_TOLERANCE = 0.01
#: Positions that drift off the normal by more than this angle are a tilt.
TILT_TOLERANCE_DEG = 0.1


def slice_normal(orientation: ArrayLike) -> np.ndarray:
    """Unit normal of the slice plane: row cosine x column cosine (LPS+).

    Examples
    --------
    >>> slice_normal([1, 0, 0, 0, 1, 0]).tolist()
    [0.0, 0.0, 1.0]
    """
    iop = np.asarray(orientation, dtype=np.float64)
    n = np.cross(iop[:3], iop[3:])
    norm = np.linalg.norm(n)
    if not norm > 0.5:
        raise GeometryError(f"ImageOrientationPatient {iop.tolist()} has no normal")
    return n / norm


@dataclass(frozen=True)
class StackGeometry:
    """How a set of slice positions stacks along one normal.

    Attributes
    ----------
    order
        Indices into the input that sort it by position along the normal, then
        by input order for slices at the same position (time points, echoes).
    offsets
        Sorted distinct positions along the normal, mm.
    counts
        How many input slices lie at each distinct position.
    spacing
        Median step between distinct positions, mm (0.0 for a single slice).
    uniform
        Whether every step is within ``SPACING_TOLERANCE`` of the median.
    missing
        Slices missing, counted as whole median steps that a step skips.
    tilt_deg
        Angle between the normal and the line through the first and last
        distinct positions, degrees.
    step
        Vector between consecutive distinct positions (LPS+ mm): the first to
        the last divided by their number less one; the normal times spacing
        for a single slice is not defined, so it is the unit normal then.
    """

    order: np.ndarray
    offsets: np.ndarray
    counts: np.ndarray
    spacing: float
    uniform: bool
    missing: int
    tilt_deg: float
    step: np.ndarray

    @property
    def n_positions(self) -> int:
        """Number of distinct slice positions."""
        return int(self.offsets.size)

    @property
    def n_volumes(self) -> int:
        """Slices per position when every position has the same count, else 0."""
        return int(self.counts[0]) if np.all(self.counts == self.counts[0]) else 0

    @property
    def duplicates(self) -> int:
        """Extra slices at positions that hold more than the usual count."""
        usual = int(np.min(self.counts))
        return int(np.sum(self.counts - usual))

    def problem(self) -> str | None:
        """One phrase naming the first irregularity, or ``None`` when regular."""
        if self.n_volumes == 0:
            return f"duplicate slice positions ({self.duplicates} extra slices)"
        if self.tilt_deg > TILT_TOLERANCE_DEG:
            return f"gantry tilt {self.tilt_deg:.2f} deg"
        if self.missing:
            return f"{self.missing} missing slices (gap)"
        if not self.uniform:
            return "non-uniform slice spacing"
        return None


def analyze_stack(positions: ArrayLike, orientation: ArrayLike) -> StackGeometry:
    """Sort slice positions along the slice normal and check their regularity.

    Parameters
    ----------
    positions
        (n, 3) ImagePositionPatient of each slice, mm, LPS+, in any order.
    orientation
        The ImageOrientationPatient shared by all slices.

    Returns
    -------
    StackGeometry

    Raises
    ------
    GeometryError
        If ``positions`` is not (n, 3) with n >= 1.

    Examples
    --------
    >>> g = analyze_stack(np.array([[0, 0, 2.0], [0, 0, 0], [0, 0, 1]]), [1, 0, 0, 0, 1, 0])
    >>> g.order.tolist(), g.spacing, g.problem()
    ([1, 2, 0], 1.0, None)
    """
    pos = np.asarray(positions, dtype=np.float64)
    if pos.ndim != 2 or pos.shape[1] != 3 or pos.shape[0] == 0:
        raise GeometryError(f"positions must be (n, 3) with n >= 1, got {pos.shape}")
    normal = slice_normal(orientation)
    along = pos @ normal
    # Ties at one position keep input order, which callers fill with time/echo order.
    order = np.lexsort((np.arange(len(along)), along))
    sorted_along = along[order]
    new_position = np.concatenate([[True], np.diff(sorted_along) > POSITION_TOLERANCE_MM])
    starts = np.flatnonzero(new_position)
    counts = np.diff(np.append(starts, len(sorted_along)))
    offsets = sorted_along[starts]
    if offsets.size < 2:
        return StackGeometry(order, offsets, counts, 0.0, True, 0, 0.0, normal.copy())
    steps = np.diff(offsets)
    spacing = statistics.median(steps.tolist())  # np.median's NaN check imports numpy.ma (a fresh process pays it)
    uniform = bool(np.all(np.abs(steps - spacing) <= SPACING_TOLERANCE * spacing))
    missing = int(np.sum(np.maximum(np.rint(steps / spacing) - 1, 0)))
    first = pos[order[starts[0]]]
    last = pos[order[starts[-1]]]
    span = last - first
    cos = float(np.clip(abs(span @ normal) / np.linalg.norm(span), -1.0, 1.0))
    tilt = float(np.degrees(np.arccos(cos)))
    return StackGeometry(order, offsets, counts, spacing, uniform, missing, tilt, span / (offsets.size - 1))
