"""Display planes of a volume: reorientation for the screen and side labels from the affine.

The volume is reoriented (nibabel's ``io_orientation``, no resampling) to a
display grid whose axes run, in RAS+ letters,

- ``"LPI"`` in the radiological convention: the patient's right on the
  viewer's left in axial and coronal views (as if facing the patient);
- ``"RPI"`` in the neurological convention: the patient's right on the
  viewer's right (as if looking from behind / above).

Axial views have anterior at the top, coronal and sagittal views superior at
the top, and sagittal views anterior on the viewer's left, in both
conventions. The side letters of every plane are read back from the display
grid's affine, not assumed. Oblique volumes are shown on their nearest
anatomical axes (as ``nibabel.as_closest_canonical`` would), and say so.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from nibabel.orientations import apply_orientation, axcodes2ornt, inv_ornt_aff, io_orientation, ornt_transform

from dicomml.errors import GeometryError
from dicomml.geometry.affine import axcodes, spacing_of

__all__ = ["CONVENTIONS", "DisplayGrid", "Plane", "PlaneName"]

Convention = Literal["radiological", "neurological"]
PlaneName = Literal["sagittal", "coronal", "axial"]

#: Display grid axis code (RAS+ letters) per convention.
CONVENTIONS: dict[str, str] = {"radiological": "LPI", "neurological": "RPI"}
#: Display grid axis held fixed by each plane.
_FIXED_AXIS: dict[str, int] = {"sagittal": 0, "coronal": 1, "axial": 2}
_OPPOSITE = {"R": "L", "L": "R", "A": "P", "P": "A", "S": "I", "I": "S"}
#: An axis further than this from its nearest anatomical axis makes the volume oblique.
OBLIQUE_TOLERANCE_DEG = 1.0


@dataclass(frozen=True)
class Plane:
    """One 2D view cut from a :class:`DisplayGrid`, ready for ``imshow``.

    Attributes
    ----------
    name
        ``"axial"``, ``"coronal"`` or ``"sagittal"``.
    image
        (rows, columns) voxels; row 0 is the top of the picture.
    labels
        (rows, columns) integer labels of the mask, or ``None``.
    sides
        Patient side (RAS+ letter) at each edge: keys ``left``, ``right``,
        ``top``, ``bottom``.
    aspect
        Height over width of one pixel (row spacing / column spacing), for
        ``imshow(aspect=...)``.
    position
        Where the plane cuts, e.g. ``"z = 45.0 mm"`` (RAS+ world coordinate
        of the plane's centre along the axis it holds fixed).
    """

    name: str
    image: np.ndarray
    labels: np.ndarray | None
    sides: dict[str, str]
    aspect: float
    position: str


class DisplayGrid:
    """A volume (and optional label map) reoriented for display.

    Parameters
    ----------
    array
        3D voxels (i, j, k) described by ``affine``.
    affine
        4x4, maps (i, j, k) to RAS+ mm.
    labels
        Optional integer label map on exactly the same grid.
    convention
        ``"radiological"`` (default) or ``"neurological"``.

    Raises
    ------
    GeometryError
        If ``array`` is not 3D, the convention is unknown, or ``labels`` has
        another shape.

    Examples
    --------
    >>> g = DisplayGrid(np.zeros((4, 5, 6)), np.diag([2.0, 3.0, 4.0, 1.0]))
    >>> g.plane("axial", 0).sides
    {'left': 'R', 'right': 'L', 'top': 'A', 'bottom': 'P'}
    """

    def __init__(
        self,
        array: np.ndarray,
        affine: np.ndarray,
        labels: np.ndarray | None = None,
        convention: Convention = "radiological",
    ) -> None:
        if array.ndim != 3:
            raise GeometryError(f"display needs a 3D array, got shape {array.shape}")
        if convention not in CONVENTIONS:
            raise GeometryError(f"display convention {convention!r} is unknown; use one of {sorted(CONVENTIONS)}")
        if labels is not None and labels.shape != array.shape:
            raise GeometryError(f"label map shape {labels.shape} differs from the image's {array.shape}")
        affine = np.asarray(affine, dtype=np.float64)
        transform = ornt_transform(io_orientation(affine), axcodes2ornt(CONVENTIONS[convention]))
        self.array = apply_orientation(array, transform)
        self.labels = None if labels is None else apply_orientation(labels, transform)
        self.affine = affine @ inv_ornt_aff(transform, array.shape)
        self.codes = axcodes(self.affine)
        self.spacing = spacing_of(self.affine)
        self.obliquity_deg = _obliquity_deg(affine)

    @property
    def shape(self) -> tuple[int, int, int]:
        """Shape of the display grid."""
        return self.array.shape  # type: ignore[no-any-return]

    def index_of(self, point_ras: np.ndarray) -> tuple[int, int, int]:
        """Nearest display-grid voxel to a RAS+ point (mm), clipped to the grid."""
        ijk = np.linalg.solve(self.affine, np.append(np.asarray(point_ras, np.float64), 1.0))[:3]
        return tuple(int(np.clip(np.rint(v), 0, n - 1)) for v, n in zip(ijk, self.shape))  # type: ignore[return-value]

    def plane(self, name: PlaneName, index: int) -> Plane:
        """The plane ``name`` at ``index`` along the display axis it holds fixed.

        Raises
        ------
        GeometryError
            If ``name`` is not a plane or ``index`` is out of the grid.
        """
        fixed = _fixed_axis(name)
        if not 0 <= index < self.shape[fixed]:
            raise GeometryError(f"{name} index {index} is outside 0..{self.shape[fixed] - 1}")
        cols, rows = (a for a in range(3) if a != fixed)
        image = np.take(self.array, index, axis=fixed).T
        labels = None if self.labels is None else np.take(self.labels, index, axis=fixed).T
        centre = np.array([(n - 1) / 2 for n in self.shape] + [1.0])
        centre[fixed] = index
        world = float((self.affine @ centre)[fixed])
        sides = {
            "left": _OPPOSITE[self.codes[cols]],
            "right": self.codes[cols],
            "top": _OPPOSITE[self.codes[rows]],
            "bottom": self.codes[rows],
        }
        aspect = self.spacing[rows] / self.spacing[cols]
        return Plane(name, image, labels, sides, aspect, f"{'xyz'[fixed]} = {world:.1f} mm")

    def plane_through(self, name: PlaneName, voxel: Sequence[int]) -> Plane:
        """The plane ``name`` through a display-grid voxel (e.g. from :meth:`index_of`)."""
        return self.plane(name, voxel[_fixed_axis(name)])


def _fixed_axis(name: str) -> int:
    if name not in _FIXED_AXIS:
        raise GeometryError(f"plane {name!r} is unknown; use one of {sorted(_FIXED_AXIS)}")
    return _FIXED_AXIS[name]


def _obliquity_deg(affine: np.ndarray) -> float:
    """Largest angle (degrees) between an array axis and its nearest anatomical axis."""
    directions = affine[:3, :3] / np.linalg.norm(affine[:3, :3], axis=0)
    cosines = np.clip(np.max(np.abs(directions), axis=0), -1.0, 1.0)
    return float(np.degrees(np.arccos(np.min(cosines))))
