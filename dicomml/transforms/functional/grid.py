"""Target grids: pure functions of (affine, shape) that say where to resample.

A grid is a 4x4 affine (array indices, in the array's own axis order, to RAS+
millimetres) plus a spatial shape of three ints. Nothing here touches voxels
or imports torch; the kernels in :mod:`dicomml.transforms.functional.spatial`
consume these grids.

Grid convention (``align="edges"``, the default): the output field of view
starts at the same outer voxel *edge* as the input, output voxel ``d``
samples input index ``d * r + (r - 1) / 2`` along an axis scaled by
``r = new_spacing / old_spacing``, and the shape is ``round(n / r)``. These
are the sample positions of torch's
``interpolate(scale_factor=1 / r, align_corners=False)`` (which floors the
size instead), so the resampler can run torch's fused trilinear kernel. TorchIO's ``Resample`` centres its
grid on the input's field of view and floors the size: the same grid only
where ``n / r`` is whole (10 voxels from 1 to 3 mm: first output centre at
+1.5 mm there, +1.0 mm here). MONAI's ``Spacing(scale_extent=True)`` gives
the same size but can place it elsewhere (20 voxels from 1 to 2 mm: -0.5 mm
there, +0.5 mm here). ``align="centers"`` is MONAI ``Spacing``'s
default: the first voxel *centre* stays put (input index ``d * r``) and the
shape is ``round((n - 1) / r + 1)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from dicomml.errors import GeometryError
from dicomml.geometry.affine import spacing_of
from dicomml.geometry.checks import affine_problem

__all__ = ["ALIGNS", "check_axcodes", "orient_grid", "output_axes_in_source_order", "shape_grid", "shift_grid", "spacing_grid"]

#: The two grid conventions (see the module docstring).
ALIGNS = ("edges", "centers")

_PAIRS = ("LR", "PA", "IS")


def check_axcodes(axcodes: str) -> str:
    """Validate an orientation code: three letters, one of each pair L/R, P/A, I/S.

    Raises
    ------
    GeometryError
        If the code is not three distinct axes.

    Examples
    --------
    >>> check_axcodes("spl")
    'SPL'
    """
    code = str(axcodes).upper()
    axes = [next((i for i, pair in enumerate(_PAIRS) if c in pair), -1) for c in code]
    if len(code) != 3 or sorted(axes) != [0, 1, 2]:
        raise GeometryError(f"axis code {axcodes!r} is not three letters naming each of L/R, P/A and I/S once; use e.g. 'RAS' or 'LPS'")
    return code


def _check(affine: np.ndarray, shape: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    problem = affine_problem(affine)
    if problem is not None:
        raise GeometryError(f"a grid needs an invertible, finite affine: the {problem}")
    n = np.asarray(tuple(shape), dtype=np.int64)
    if n.shape != (3,) or np.any(n < 1):
        raise GeometryError(f"a grid needs three positive sizes, got {tuple(shape)}")
    return np.asarray(affine, dtype=np.float64), n


def orient_grid(affine: np.ndarray, shape: Sequence[int], axcodes: str) -> tuple[np.ndarray, tuple[int, int, int]]:
    """The same voxels relaid (permuted and flipped, never interpolated) to ``axcodes``.

    Parameters
    ----------
    affine
        4x4 affine of the input, indices to RAS+ mm.
    shape
        Spatial shape of the input (three ints, in its axis order).
    axcodes
        Target orientation: the RAS+ letter each output axis increases towards,
        e.g. ``"RAS"``, ``"LPS"`` or DICOM axial's ``"SPL"``. For oblique
        affines the closest axes are used (nibabel's ``io_orientation``).

    Returns
    -------
    tuple
        The output affine (4x4 float64, RAS+ mm) and shape.

    Raises
    ------
    GeometryError
        For a bad axis code, affine or shape.

    Examples
    --------
    >>> a, s = orient_grid(np.diag([-2.0, 1.0, 1.0, 1.0]), (3, 4, 5), "RAS")
    >>> a[0].tolist(), s
    ([2.0, 0.0, 0.0, -4.0], (3, 4, 5))
    """
    a, n = _check(affine, shape)
    # imported here: importing nibabel imports pydicom, which a Dataset over a filled cache never needs
    from nibabel.orientations import axcodes2ornt, inv_ornt_aff, io_orientation, ornt_transform

    transform = ornt_transform(io_orientation(a), axcodes2ornt(tuple(check_axcodes(axcodes))))
    out_shape = [0, 0, 0]
    for axis, (target, _) in enumerate(transform):
        out_shape[int(target)] = int(n[axis])
    return a @ inv_ornt_aff(transform, tuple(int(v) for v in n)), tuple(out_shape)  # type: ignore[return-value]


def output_axes_in_source_order(affine: np.ndarray, shape: Sequence[int], axcodes: str, values: Sequence) -> list:
    """Per-axis ``values`` given for the axes after :func:`orient_grid`, listed per input axis.

    Used to scale a grid in the input's own axis order and orient it after,
    so that orientation plus resampling stays one fast pass (the scaled grid
    is anchored at the input's first voxel edge, in its stored order).

    Examples
    --------
    >>> output_axes_in_source_order(np.diag([1.0, 1.0, 1.0, 1.0])[[2, 1, 0, 3]], (2, 3, 4), "RAS", [1, 2, 3])
    [3, 2, 1]
    """
    a, _ = _check(affine, shape)
    oriented, _ = orient_grid(a, shape, axcodes)
    source_axis = np.argmax(np.abs(np.linalg.solve(a, oriented)[:3, :3]), axis=0)
    out = [None] * 3
    for j, p in enumerate(source_axis):
        out[int(p)] = values[j]
    return out


def _scaled(affine: np.ndarray, ratio: np.ndarray, align: str) -> np.ndarray:
    if align not in ALIGNS:
        raise GeometryError(f"align={align!r} is not one of {ALIGNS}")
    index_map = np.diag([*ratio, 1.0])
    if align == "edges":
        index_map[:3, 3] = (ratio - 1.0) / 2.0
    return affine @ index_map


def spacing_grid(
    affine: np.ndarray, shape: Sequence[int], spacing: float | Sequence[float | None], align: str = "edges"
) -> tuple[np.ndarray, tuple[int, int, int]]:
    """The grid with voxel size ``spacing`` (mm) over the same field of view.

    Parameters
    ----------
    affine, shape
        Input grid: 4x4 affine (indices to RAS+ mm) and three sizes.
    spacing
        Target voxel size in mm per array axis (in the array's axis order), or
        one number (numpy scalars included) for isotropic voxels. ``None`` or
        a value <= 0 keeps that axis' spacing. Sizes are rounded half to even
        after rounding to 1e-6, so that float noise in the spacings does not
        decide them.
    align
        ``"edges"`` (default) or ``"centers"``; see the module docstring.

    Returns
    -------
    tuple
        Output affine (directions kept, columns of length ``spacing``) and shape.

    Raises
    ------
    GeometryError
        For a bad affine, shape, spacing or ``align``.

    Examples
    --------
    >>> a, s = spacing_grid(np.diag([2.0, 1.0, 1.0, 1.0]), (10, 4, 4), 1.0)
    >>> s, float(a[0, 3])
    ((20, 4, 4), -0.5)
    """
    a, n = _check(affine, shape)
    old = np.asarray(spacing_of(a))
    wanted: list[float | None] = [spacing] * 3 if np.ndim(spacing) == 0 else list(spacing)  # type: ignore[list-item,arg-type]
    if len(wanted) != 3:
        raise GeometryError(f"spacing needs 1 or 3 values (mm), got {spacing!r}")
    new = np.array([o if w is None or float(w) <= 0 else float(w) for o, w in zip(old, wanted)])
    ratio = new / old
    sizes = n / ratio if align == "edges" else (n - 1) / ratio + 1
    # rounded to 1e-6 first: float noise in the spacings must not tip a size across .5 either way
    out = np.maximum(1, np.rint(np.round(sizes, 6))).astype(np.int64)
    return _scaled(a, ratio, align), tuple(int(v) for v in out)  # type: ignore[return-value]


def shape_grid(affine: np.ndarray, shape: Sequence[int], out_shape: Sequence[int]) -> tuple[np.ndarray, tuple[int, int, int]]:
    """The grid of ``out_shape`` voxels over the same field of view (edges aligned).

    Output voxel ``d`` samples input index ``(d + 0.5) * n / m - 0.5``, as
    ``torch.nn.functional.interpolate(size=out_shape, align_corners=False)`` does.

    Raises
    ------
    GeometryError
        For a bad affine or shape.

    Examples
    --------
    >>> a, s = shape_grid(np.eye(4), (4, 4, 4), (2, 4, 4))
    >>> a[0].tolist(), s
    ([2.0, 0.0, 0.0, 0.5], (2, 4, 4))
    """
    a, n = _check(affine, shape)
    _, m = _check(affine, out_shape)
    return _scaled(a, n / m, "edges"), tuple(int(v) for v in m)  # type: ignore[return-value]


def shift_grid(affine: np.ndarray, start: Sequence[int]) -> np.ndarray:
    """Affine of a crop (or pad, for negative starts) beginning at index ``start``.

    Examples
    --------
    >>> shift_grid(np.diag([2.0, 1.0, 1.0, 1.0]), (1, -2, 0))[:3, 3].tolist()
    [2.0, -2.0, 0.0]
    """
    a = np.asarray(affine, dtype=np.float64).copy()
    a[:3, 3] = a[:3, :3] @ np.asarray(start, dtype=np.float64) + a[:3, 3]
    return a
