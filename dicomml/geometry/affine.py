"""Affines from DICOM geometry tags, and what can be read back from them."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from dicomml.errors import GeometryError
from dicomml.geometry.checks import geometry_problem

__all__ = ["LPS_TO_RAS", "axcodes", "dicom_affine", "spacing_of"]

#: Flips DICOM's LPS+ world into nibabel/MONAI's RAS+ world.
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def dicom_affine(
    orientation: ArrayLike,
    pixel_spacing: ArrayLike,
    origin: ArrayLike,
    slice_step: ArrayLike,
) -> np.ndarray:
    """Affine of a (slice, row, column) array built from DICOM tags.

    Parameters
    ----------
    orientation
        ImageOrientationPatient: row direction cosine (along a row, as the
        column index grows) then column direction cosine (as the row index
        grows), LPS+.
    pixel_spacing
        PixelSpacing: (distance between rows, distance between columns), mm.
    origin
        ImagePositionPatient of the first slice's first pixel, mm, LPS+.
    slice_step
        Vector from one slice's origin to the next one's, mm, LPS+.

    Returns
    -------
    numpy.ndarray
        4x4 float64 affine mapping indices (slice, row, column) to RAS+ mm.

    Raises
    ------
    GeometryError
        If the direction cosines are not unit length or not orthogonal, or a
        spacing is outside the physical range (see :mod:`dicomml.geometry.checks`).

    Examples
    --------
    >>> a = dicom_affine([1, 0, 0, 0, 1, 0], [0.5, 0.7], [10, 20, 30], [0, 0, 2])
    >>> a[:3, 3].tolist()
    [-10.0, -20.0, 30.0]
    """
    iop = np.asarray(orientation, dtype=np.float64)
    spacing = np.asarray(pixel_spacing, dtype=np.float64)
    if iop.shape != (6,) or spacing.shape != (2,):
        raise GeometryError(f"ImageOrientationPatient needs 6 values and PixelSpacing 2, got {iop.size} and {spacing.size}")
    found = geometry_problem(iop, spacing)
    if found is not None:
        raise GeometryError(found.problem, tag=found.tag)
    row_dir, col_dir = iop[:3], iop[3:]
    d_row, d_col = (float(v) for v in spacing)
    lps = np.eye(4)
    lps[:3, 0] = np.asarray(slice_step, dtype=np.float64)
    lps[:3, 1] = col_dir * d_row
    lps[:3, 2] = row_dir * d_col
    lps[:3, 3] = np.asarray(origin, dtype=np.float64)
    return LPS_TO_RAS @ lps


def spacing_of(affine: np.ndarray) -> tuple[float, ...]:
    """Voxel spacing in mm along each array axis (column norms of the 3x3).

    Examples
    --------
    >>> spacing_of(np.diag([2.0, 3.0, 4.0, 1.0]))
    (2.0, 3.0, 4.0)
    """
    a = np.asarray(affine, dtype=np.float64)
    return tuple(float(v) for v in np.linalg.norm(a[:3, :3], axis=0))


def axcodes(affine: np.ndarray) -> str:
    """Orientation code of the array axes, RAS+ letters (as nibabel's ``aff2axcodes``).

    Each letter names the world direction that an array axis increases
    towards: ``"LPS"`` means axis 0 points left, axis 1 posterior, axis 2 superior.

    Examples
    --------
    >>> axcodes(np.diag([-1.0, 1.0, 1.0, 1.0]))
    'LAS'
    """
    # nibabel's io_orientation rule in numpy: importing nibabel costs an index more than its series table.
    a = np.asarray(affine, dtype=np.float64)[:3, :3]
    norms = np.sqrt(np.sum(a * a, axis=0))
    norms[norms == 0] = 1
    u, s, vt = np.linalg.svd(a / norms, full_matrices=False)
    keep = s > s.max() * 3 * np.finfo(s.dtype).eps
    rotation = u[:, keep] @ vt[keep]  # the nearest shear-free matrix (polar decomposition)
    letters = [""] * 3
    # The most decided array axes choose first; each world axis is taken once.
    for axis in np.argsort(np.min(-(rotation**2), axis=0), kind="stable"):
        direction = rotation[:, axis]
        if np.allclose(direction, 0):
            raise GeometryError(f"affine axis {axis} has no direction; the affine is degenerate: {np.asarray(affine).tolist()}")
        world = int(np.argmax(np.abs(direction)))
        letters[axis] = "LPI"[world] if direction[world] < 0 else "RAS"[world]
        rotation[world, :] = 0
    return "".join(letters)
