"""Irregular stacks to regular grids: equidistant slices and gantry-tilt correction.

Both follow dcm2niix (its ``*_Eq_1`` and ``*_Tilt_1`` outputs) and take real
arrays of shape (..., slices, rows, columns), of any dtype, whose affine maps
(slice, row, column) to RAS+ mm; they return float32. Interpolation is linear (the edge pixels
extend half a pixel); voxels that no input slice covers take the minimum of
the input, as dcm2niix does.
"""

from __future__ import annotations

import numpy as np

from dicomml.limits import DEFAULT_MAX_VOXELS, check_voxels

__all__ = ["equidistant", "correct_tilt"]


def equidistant(
    array: np.ndarray, offsets: np.ndarray, spacing: float, affine: np.ndarray, *, max_voxels: int = DEFAULT_MAX_VOXELS
) -> tuple[np.ndarray, np.ndarray]:
    """Resample slices at uneven positions along the normal to an even step.

    Parameters
    ----------
    array
        (..., n, rows, columns) real array, slices sorted by ``offsets``.
    offsets
        (n,) positions of the slices along the slice normal, mm, increasing.
    spacing
        Wanted step, mm (the median step of the stack); the first and last
        slices are kept and the step is adjusted to fit a whole number of them.
    affine
        4x4 RAS+ affine of ``array`` whose slice column is the mean step.
    max_voxels
        Most voxels the output may have (see :mod:`dicomml.limits`).

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        The resampled array (float32) and its affine.

    Examples
    --------
    >>> a = np.arange(3, dtype=np.float32)[:, None, None] * np.ones((1, 2, 2), np.float32)
    >>> out, aff = equidistant(a, np.array([0.0, 1.0, 3.0]), 1.0, np.diag([1.5, 1, 1, 1]))
    >>> out[:, 0, 0].tolist(), float(aff[0, 0])
    ([0.0, 1.0, 1.5, 2.0], 1.0)
    """
    n = offsets.size
    span = float(offsets[-1] - offsets[0])
    n_new = int(round(span / spacing)) + 1
    targets = offsets[0] + np.arange(n_new) * (span / (n_new - 1))
    lower = np.clip(np.searchsorted(offsets, targets, side="right") - 1, 0, n - 2)
    weight = ((targets - offsets[lower]) / (offsets[lower + 1] - offsets[lower])).astype(np.float32)
    shape = (*array.shape[:-3], n_new, *array.shape[-2:])
    check_voxels(shape, f"resampling to equidistant slices of {spacing:g} mm", max_voxels)
    out = np.empty(shape, dtype=np.float32)
    for k in range(n_new):
        below, above = array[..., lower[k], :, :], array[..., lower[k] + 1, :, :]
        np.multiply(below, 1 - weight[k], out=out[..., k, :, :])
        out[..., k, :, :] += weight[k] * above
    new_affine = affine.copy()
    new_affine[:3, 0] = affine[:3, 0] * (n - 1) / (n_new - 1)
    return out, new_affine


def _shift_lines(source: np.ndarray, start: float, size: int, axis: int, fill: float) -> np.ndarray:
    """Sample ``source`` along ``axis`` at ``start + arange(size)`` (linear; ``fill`` outside)."""
    coords = start + np.arange(size)
    lower = np.floor(coords).astype(np.int64)
    frac = (coords - lower).astype(np.float32)
    length = source.shape[axis]
    lo = np.take(source, np.clip(lower, 0, length - 1), axis=axis)
    hi = np.take(source, np.clip(lower + 1, 0, length - 1), axis=axis)
    shape = [1] * source.ndim
    shape[axis] = size
    out = lo * (1 - frac).reshape(shape) + hi * frac.reshape(shape)
    inside = (coords >= -0.5) & (coords <= length - 0.5)  # within the extent of the edge pixels
    index = [slice(None)] * source.ndim
    index[axis] = ~inside
    out[tuple(index)] = fill
    return out


def correct_tilt(array: np.ndarray, affine: np.ndarray, *, max_voxels: int = DEFAULT_MAX_VOXELS) -> tuple[np.ndarray, np.ndarray]:
    """Remove a gantry tilt: make the slice axis perpendicular to the slice plane.

    Each slice keeps its plane; it is shifted in-plane by the part of the
    slice step that lies in the plane, and the grid is enlarged so that no
    slice is cut (dcm2niix's ``_Tilt_1`` output).

    Parameters
    ----------
    array
        (..., slices, rows, columns) real array.
    affine
        4x4 RAS+ affine whose slice column is oblique to the plane.
    max_voxels
        Most voxels the output may have (see :mod:`dicomml.limits`).

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        The corrected array (float32, maybe more rows/columns) and its affine,
        whose slice column is the plane normal times the true slice spacing.

    Examples
    --------
    >>> aff = np.eye(4); aff[:3, 0] = [1, 1, 0]  # each slice 1 mm along the normal and one row on
    >>> out, new = correct_tilt(np.ones((2, 3, 3), np.float32), aff)
    >>> out.shape, new[:3, 0].tolist()
    ((2, 4, 3), [1.0, 0.0, 0.0])
    """
    step, col_vec, row_vec = affine[:3, 0], affine[:3, 1], affine[:3, 2]
    normal = np.cross(col_vec, row_vec)
    normal /= np.linalg.norm(normal)
    along = float(step @ normal)
    in_plane = step - along * normal
    d_row = float(in_plane @ col_vec) / float(col_vec @ col_vec)
    d_col = float(in_plane @ row_vec) / float(row_vec @ row_vec)
    n, rows, cols = array.shape[-3:]
    k = np.arange(n)
    row_shift, col_shift = k * d_row, k * d_col
    row0, col0 = int(np.floor(row_shift.min() + 1e-6)), int(np.floor(col_shift.min() + 1e-6))
    new_rows = rows - row0 + int(np.ceil(row_shift.max() - 1e-6))
    new_cols = cols - col0 + int(np.ceil(col_shift.max() - 1e-6))
    fill = float(array.min())
    shape = (*array.shape[:-3], n, new_rows, new_cols)
    check_voxels(shape, "correcting gantry tilt", max_voxels)
    out = np.empty(shape, dtype=np.float32)
    for i in range(n):
        plane = array[..., i, :, :]
        shifted = _shift_lines(plane, row0 - row_shift[i], new_rows, plane.ndim - 2, fill)
        out[..., i, :, :] = _shift_lines(shifted, col0 - col_shift[i], new_cols, plane.ndim - 1, fill)
    new_affine = affine.copy()
    new_affine[:3, 0] = along * normal
    new_affine[:3, 3] = affine[:3, 3] + row0 * col_vec + col0 * row_vec
    return out, new_affine
