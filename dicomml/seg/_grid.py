"""Placing 2D planes on a 3D grid, and nearest resampling between grids.

Pure functions of affines, shapes and arrays (no I/O). Conventions: affines
are 4x4 and map (slice, row, column) indices, or any three array indices, to
RAS+ millimetres; a *grid* is such an affine plus a spatial shape.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from dicomml.geometry import dicom_affine, slice_normal, spacing_of

__all__ = [
    "ALIGN_TOLERANCE",
    "ALIGN_TOLERANCE_MM",
    "PlaneMap",
    "map_planes",
    "nominal_slice_positions",
    "paint_label",
    "place",
    "resample_nearest",
    "stack_grid",
    "tolerance_voxels",
]

#: A plane is on the grid when each of its pixels lands within this fraction
#: of a voxel of a grid voxel centre (DS rounding of positions stays far below)...
ALIGN_TOLERANCE = 0.05
#: ... and within this many millimetres: on thick slices, or on the nominal
#: step of a stack kept irregular, 0.05 voxel would be millimetres, and planes
#: that far apart are different planes. Positions written to 0.1 mm stay within.
ALIGN_TOLERANCE_MM = 0.1


def tolerance_voxels(
    spacing: Sequence[float] | np.ndarray, tolerance: float = ALIGN_TOLERANCE, tolerance_mm: float = ALIGN_TOLERANCE_MM
) -> np.ndarray:
    """The alignment tolerance along each grid axis, in voxels of that axis.

    Parameters
    ----------
    spacing
        Voxel size along each grid axis, mm.
    tolerance
        Largest offset, in voxels.
    tolerance_mm
        Largest offset, in mm.

    Returns
    -------
    numpy.ndarray
        ``min(tolerance, tolerance_mm / spacing)`` per axis, voxels.

    Examples
    --------
    >>> tolerance_voxels([68.3, 0.5, 0.5]).round(4).tolist()
    [0.0015, 0.05, 0.05]
    """
    return np.minimum(tolerance, tolerance_mm / np.asarray(spacing, dtype=np.float64))


def nominal_slice_positions(meta: Mapping[str, Any]) -> str | None:
    """Why a reference's affine does not say where each of its slices lies, or None when it does.

    A series loaded with ``on_irregular="keep"`` over missing slices, uneven
    spacing, unequal repeats or frames without positions stacks its slices as
    they are under a nominal, even step (``meta["nominal_affine"]``, set by
    :func:`dicomml.load_series`): slice ``k`` need not lie where the affine
    puts it. ``"resample"`` puts the slices on a true grid.

    Parameters
    ----------
    meta
        The reference's ``Volume.meta``.

    Returns
    -------
    str or None
        The irregularity that made the affine nominal (the first of
        ``meta["irregularities"]``), or None.

    Examples
    --------
    >>> nominal_slice_positions({"nominal_affine": True, "irregularities": ["1 slice(s) missing: ..."]})
    '1 slice(s) missing: ...'
    >>> nominal_slice_positions({"irregularities": ["1 slice(s) missing: ..."]}) is None  # resampled: a true grid
    True
    """
    if not meta.get("nominal_affine"):
        return None
    return str(next(iter(meta.get("irregularities") or []), "its slices were stacked as they are"))


@dataclass(frozen=True)
class PlaneMap:
    """Where 2D planes (frames, contours) of one orientation fall on a grid.

    Attributes
    ----------
    origins
        (n, 3) grid indices (fractional) of each plane's pixel (0, 0).
    steps
        (3, 2) change of the grid index per plane row (column 0) and per plane
        column (column 1).
    plane_shape
        (rows, columns) of the planes.
    spacing
        Voxel size (mm) along each grid axis; it bounds the tolerances in mm.
    """

    origins: np.ndarray
    steps: np.ndarray
    plane_shape: tuple[int, int]
    spacing: tuple[float, ...] = (1.0, 1.0, 1.0)

    def aligned(self, tolerance: float = ALIGN_TOLERANCE, tolerance_mm: float = ALIGN_TOLERANCE_MM) -> bool:
        """Whether every plane lies on a grid slice of its own, pixel on voxel.

        True when a plane row and a plane column each step one voxel along two
        distinct grid axes (either sign, any order; the third grid axis is then
        the slice axis), every plane origin sits on a voxel centre, all within
        ``tolerance`` voxels and ``tolerance_mm`` mm (whichever is less, per
        grid axis) at the far corner of the plane, and planes that fall on one
        slice are one plane: their positions differ by no more than that
        tolerance. Distinct planes never collapse onto one slice.

        Examples
        --------
        >>> near = PlaneMap(np.array([[3 - 2.5 / 68.3, 0, 0]]), np.array([[0, 0], [1.0, 0], [0, 1.0]]), (2, 2), (68.3, 1, 1))
        >>> near.aligned()  # 2.5 mm off a 68.3 mm slice: within 0.05 voxel, not within 0.1 mm
        False
        """
        tol = tolerance_voxels(self.spacing, tolerance, tolerance_mm)
        whole = np.rint(self.steps)
        span = np.array(self.plane_shape, dtype=np.float64)
        drift = np.abs(self.steps - whole) @ span
        if np.any(drift > tol):
            return False
        if sorted(np.abs(whole).ravel().tolist()) != [0.0, 0.0, 0.0, 0.0, 1.0, 1.0]:
            return False
        if np.any(np.abs(whole).sum(axis=1) > 1):
            return False
        if not np.all(np.abs(self.origins - np.rint(self.origins)) <= tol):
            return False
        axis = self.slice_axis
        return not _collapsed(self.origins[:, axis], float(tol[axis]))

    @property
    def slice_axis(self) -> int:
        """The grid axis the planes stack along (the one their rows and columns do not step along)."""
        return int(np.argmin(np.abs(self.steps).sum(axis=1)))

    def offset_mm(self, affine: np.ndarray) -> float:
        """Largest distance (mm) between a plane origin and the voxel centre it is put on."""
        if self.origins.size == 0:
            return 0.0
        delta = self.origins - np.rint(self.origins)
        return float(np.max(np.linalg.norm(delta @ np.asarray(affine)[:3, :3].T, axis=1)))


def map_planes(
    affine: np.ndarray,
    orientation: Sequence[float],
    pixel_spacing: Sequence[float],
    positions: np.ndarray,
    plane_shape: tuple[int, int],
) -> PlaneMap:
    """Map DICOM planes (one orientation, several positions) into grid indices.

    Parameters
    ----------
    affine
        4x4 affine of the grid: indices to RAS+ mm.
    orientation
        ImageOrientationPatient of the planes (LPS+ direction cosines).
    pixel_spacing
        PixelSpacing of the planes: (between rows, between columns), mm.
    positions
        (n, 3) ImagePositionPatient of each plane, mm, LPS+.
    plane_shape
        (rows, columns) of the planes.

    Returns
    -------
    PlaneMap

    Examples
    --------
    >>> grid = dicom_affine([1, 0, 0, 0, 1, 0], [1, 1], [0, 0, 0], [0, 0, 1])
    >>> m = map_planes(grid, [1, 0, 0, 0, 1, 0], [1, 1], np.array([[0, 0, 2.0]]), (4, 4))
    >>> m.origins.tolist(), m.aligned()
    ([[2.0, 0.0, 0.0]], True)
    """
    to_grid = np.linalg.inv(np.asarray(affine, dtype=np.float64))
    plane = dicom_affine(orientation, pixel_spacing, [0.0, 0.0, 0.0], [0.0, 0.0, 0.0])
    steps = to_grid[:3, :3] @ plane[:3, 1:3]
    pos = np.asarray(positions, dtype=np.float64).reshape(-1, 3)
    ras = pos * np.array([-1.0, -1.0, 1.0])
    origins = ras @ to_grid[:3, :3].T + to_grid[:3, 3]
    return PlaneMap(origins, steps, (int(plane_shape[0]), int(plane_shape[1])), spacing_of(affine))


def _collapsed(levels: np.ndarray, tolerance: float) -> bool:
    """Whether planes at ``levels`` (fractional slice indices) that round to one slice differ by more than ``tolerance``."""
    if levels.size < 2:
        return False
    ordered = np.sort(levels)
    slices = np.rint(ordered)
    starts = np.flatnonzero(np.concatenate([[True], slices[1:] != slices[:-1]]))
    spread = np.maximum.reduceat(ordered, starts) - np.minimum.reduceat(ordered, starts)
    return bool(np.any(spread > tolerance))


def _window(start: int, length: int, size: int) -> tuple[slice, slice]:
    """Grid slice and plane slice for plane indices ``i`` at grid ``start + i``."""
    lo, hi = max(0, -start), max(0, min(length, size - start))
    hi = max(hi, lo)
    return slice(start + lo, start + hi), slice(lo, hi)


def place(
    plane_map: PlaneMap,
    index: int,
    plane: np.ndarray,
    grid_shape: Sequence[int],
    offset: tuple[int, int] = (0, 0),
) -> tuple[tuple[int | slice, ...], np.ndarray, bool]:
    """Put plane ``index`` of an aligned ``plane_map`` on a grid.

    Parameters
    ----------
    plane_map
        Where the planes fall; must be :meth:`PlaneMap.aligned`.
    index
        Which plane of ``plane_map``.
    plane
        Its pixels, (rows, columns), or a window of them.
    grid_shape
        Spatial shape of the grid.
    offset
        (row, column) in the whole plane of ``plane[0, 0]`` when ``plane`` is
        a window.

    Returns
    -------
    tuple
        The grid indexer (an int on the grid's slice axis, slices on the two
        others), the plane's pixels turned and cropped to fit that indexer (a
        view), and whether all of the plane landed on the grid. A plane off
        the grid's slices gives an empty view.

    Examples
    --------
    >>> m = PlaneMap(np.array([[1.0, 0, 3]]), np.array([[0, 0], [0, 1.0], [-1.0, 0]]), (2, 3))
    >>> where, view, whole = place(m, 0, np.arange(6).reshape(2, 3), (2, 3, 4))
    >>> where, view.tolist(), whole
    ((1, slice(0, 3, None), slice(2, 4, None)), [[3, 0], [4, 1], [5, 2]], True)
    """
    whole = np.rint(plane_map.steps).astype(int)
    axes = [int(np.flatnonzero(whole[:, p])[0]) for p in (0, 1)]  # grid axis of plane rows, columns
    slice_axis = 3 - sum(axes)
    start = np.rint(plane_map.origins[index] + plane_map.steps @ np.asarray(offset, dtype=np.float64)).astype(int)
    k = int(start[slice_axis])
    indexer: list[int | slice] = [k, k, k]
    if not 0 <= k < grid_shape[slice_axis]:
        return (0, slice(0, 0), slice(0, 0)), plane[:0, :0], False
    view = plane
    for p, g in enumerate(axes):
        if whole[g, p] < 0:
            view = np.flip(view, axis=p)
            start[g] -= plane.shape[p] - 1
    cut = []
    for p, g in enumerate(axes):
        grid_part, view_part = _window(int(start[g]), plane.shape[p], int(grid_shape[g]))
        indexer[g] = grid_part
        cut.append(view_part)
    cropped = view[cut[0], cut[1]]
    whole_plane = cropped.shape == plane.shape
    if axes[0] > axes[1]:
        cropped = cropped.T
    return tuple(indexer), cropped, whole_plane


def stack_grid(
    orientation: Sequence[float],
    pixel_spacing: Sequence[float],
    positions: np.ndarray,
    plane_shape: tuple[int, int],
) -> tuple[np.ndarray, tuple[int, int, int]] | None:
    """The regular grid whose slices the planes are: one step vector, along the normal or not (a tilted, sheared stack).

    Parameters
    ----------
    orientation
        ImageOrientationPatient of the planes (LPS+ direction cosines).
    pixel_spacing
        PixelSpacing of the planes: (between rows, between columns), mm.
    positions
        (n, 3) ImagePositionPatient of each plane, mm, LPS+; several planes
        may share a position, and slices may be missing (a sparse SEG).
    plane_shape
        (rows, columns) of the planes.

    Returns
    -------
    (numpy.ndarray, tuple of int) or None
        The grid's 4x4 affine (indices (slice, row, column) to RAS+ mm) and
        shape, from the lowest plane along the normal to the highest; None for
        fewer than two distinct positions, or positions that are not whole
        steps of one vector from the first (within ``ALIGN_TOLERANCE_MM``),
        or so far apart that the count of steps overflows. The shape is not
        bounded: check it before allocating.

    Examples
    --------
    >>> tilted = np.array([[0, 0, 0], [0, 0.5, 2], [0, 1.5, 6.0]])  # a step of (0, 0.5, 2) mm, one slice missing
    >>> affine, shape = stack_grid([1, 0, 0, 0, 1, 0], [1, 1], tilted, (4, 4))
    >>> shape, affine[1:3, 0].tolist()  # the slice axis in RAS+: y flips, z stays
    ((4, 4, 4), [-0.5, 2.0])
    """
    pos = np.asarray(positions, dtype=np.float64).reshape(-1, 3)
    normal = slice_normal(orientation)
    along = pos @ normal
    low, high = int(np.argmin(along)), int(np.argmax(along))
    levels = np.sort(along)
    gaps = np.diff(levels)[np.diff(levels) > ALIGN_TOLERANCE_MM]  # between distinct positions
    if gaps.size == 0:
        return None
    with np.errstate(over="ignore", invalid="ignore"):
        count = np.rint((along[high] - along[low]) / gaps.min())  # the smallest gap is one step (or whole steps)
    if not np.isfinite(count):  # positions near the float range (1e308 mm): no count of steps to check them against
        return None
    steps = int(count)
    step = (pos[high] - pos[low]) / steps
    index = np.rint((along - along[low]) / (step @ normal))
    off = pos - (pos[low] + index[:, None] * step)
    if not np.all(np.linalg.norm(off, axis=1) <= ALIGN_TOLERANCE_MM):
        return None
    return dicom_affine(orientation, pixel_spacing, pos[low], step), (steps + 1, int(plane_shape[0]), int(plane_shape[1]))


def resample_nearest(
    array: np.ndarray,
    affine: np.ndarray,
    target_affine: np.ndarray,
    target_shape: Sequence[int],
) -> tuple[np.ndarray, float]:
    """Nearest-neighbour resampling of a (..., i, j, k) array onto another grid.

    Parameters
    ----------
    array
        Source voxels; the last three axes are spatial, leading axes (channels)
        are carried along.
    affine
        4x4 affine of ``array``: indices to RAS+ mm.
    target_affine, target_shape
        The grid to sample onto (affine to RAS+ mm, spatial shape).

    Returns
    -------
    numpy.ndarray
        ``array.shape[:-3] + target_shape``, same dtype; voxels outside the
        source grid are 0.
    float
        Residual misalignment: the largest distance (mm) between a target voxel
        centre and the centre of the source voxel it took its value from
        (0.0 when no target voxel falls inside the source).

    Examples
    --------
    >>> out, residual = resample_nearest(np.ones((2, 2, 2)), np.eye(4), np.diag([0.5, 1, 1, 1]), (4, 2, 2))
    >>> out[:, 0, 0].tolist(), residual
    ([1.0, 1.0, 1.0, 0.0], 0.5)
    """
    src_shape = np.array(array.shape[-3:])
    to_src = np.linalg.inv(np.asarray(affine, dtype=np.float64)) @ np.asarray(target_affine, dtype=np.float64)
    out = np.zeros(array.shape[:-3] + tuple(int(s) for s in target_shape), dtype=array.dtype)
    _, n_j, n_k = (int(s) for s in target_shape)
    jk = np.stack(np.meshgrid(np.arange(n_j), np.arange(n_k), indexing="ij"), axis=-1).reshape(-1, 2)
    in_plane = jk @ to_src[:3, 1:3].T + to_src[:3, 3]
    linear = np.asarray(affine, dtype=np.float64)[:3, :3]
    residual = 0.0
    for i in range(int(target_shape[0])):
        exact = in_plane + i * to_src[:3, 0]
        nearest = np.rint(exact).astype(np.int64)
        inside = np.all((nearest >= 0) & (nearest < src_shape), axis=1)
        if not inside.any():
            continue
        hit = nearest[inside]
        out[..., i, jk[inside, 0], jk[inside, 1]] = array[..., hit[:, 0], hit[:, 1], hit[:, 2]]
        miss = (hit - exact[inside]) @ linear.T
        residual = max(residual, float(np.sqrt(np.max(np.sum(miss * miss, axis=1)))))
    return out, residual


def paint_label(region: np.ndarray, inside: np.ndarray, label: int) -> int | None:
    """Write ``label`` where ``inside`` is set, unless another label is already there.

    Returns
    -------
    int or None
        The first other label found under ``inside`` (nothing written then), or
        None once ``label`` is painted.
    """
    prior = region[inside]
    clash = prior[(prior != 0) & (prior != label)]
    if clash.size:
        return int(clash[0])
    region[inside] = label
    return None
