"""A torso-like phantom defined in patient space, sampled at any voxel grid.

The anatomy lives in RAS+ millimetres (x to the patient's right, y anterior,
z superior; origin at the centre of the torso), so a CT series and an MR
series acquired in different orientations show the same structures at the
same places. Everything here is numpy: no DICOM, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["LABELS", "LESION_CENTRE", "LESION_RADIUS", "TISSUES", "Tissue", "label_at", "tissue_at", "voxel_centres"]

#: Segments of the sample SEG: segment number -> segment label.
LABELS = {1: "lesion", 2: "liver"}


@dataclass(frozen=True)
class Tissue:
    """One tissue class: its CT number (HU) and its T1-weighted MR signal."""

    name: str
    hu: float
    mr: float


#: Index = tissue id returned by :func:`tissue_at`; 0 is air outside the body.
TISSUES = (
    Tissue("air", -1000.0, 0.0),
    Tissue("fat", -100.0, 900.0),
    Tissue("muscle", 45.0, 450.0),
    Tissue("lung", -850.0, 40.0),
    Tissue("bone", 700.0, 250.0),
    Tissue("liver", 100.0, 550.0),
    Tissue("heart", 180.0, 400.0),
    Tissue("lesion", 35.0, 300.0),
)
_ID = {t.name: i for i, t in enumerate(TISSUES)}


def _ellipsoid(p: np.ndarray, centre: tuple[float, float, float], radii: tuple[float, float, float]) -> np.ndarray:
    d = (p - np.asarray(centre)) / np.asarray(radii)
    return np.einsum("...i,...i->...", d, d) <= 1.0


def _elliptic_cylinder(
    p: np.ndarray, centre_xy: tuple[float, float], radii_xy: tuple[float, float], z_range: tuple[float, float]
) -> np.ndarray:
    d = (p[..., :2] - np.asarray(centre_xy)) / np.asarray(radii_xy)
    inside = np.einsum("...i,...i->...", d, d) <= 1.0
    return inside & (p[..., 2] >= z_range[0]) & (p[..., 2] <= z_range[1])


#: Lesion: a sphere in the right lung (RAS+ mm centre, radius mm).
LESION_CENTRE = (60.0, 15.0, 45.0)
LESION_RADIUS = 12.0


def tissue_at(p: np.ndarray) -> np.ndarray:
    """Tissue id (index into :data:`TISSUES`) at RAS+ points ``p`` (..., 3), mm."""
    tissue = np.zeros(p.shape[:-1], np.uint8)
    z_body = (-110.0, 110.0)
    layers = [
        ("fat", _elliptic_cylinder(p, (0, 0), (115, 85), z_body)),
        ("muscle", _elliptic_cylinder(p, (0, 0), (105, 75), z_body)),
        ("liver", _ellipsoid(p, (45, 5, -40), (55, 55, 40))),
        ("lung", _ellipsoid(p, (55, 5, 35), (38, 50, 58)) | _ellipsoid(p, (-55, 5, 35), (38, 50, 58))),
        ("heart", _ellipsoid(p, (-15, 30, 15), (35, 28, 35))),
        ("bone", _elliptic_cylinder(p, (0, -55), (14, 14), z_body)),
        ("lesion", _ellipsoid(p, LESION_CENTRE, (LESION_RADIUS,) * 3)),
    ]
    for name, inside in layers:
        tissue[inside] = _ID[name]
    return tissue


def label_at(p: np.ndarray) -> np.ndarray:
    """Segment label (see :data:`LABELS`) at RAS+ points ``p`` (..., 3), mm; 0 is background."""
    tissue = tissue_at(p)
    label = np.zeros_like(tissue)
    label[tissue == _ID["lesion"]] = 1
    label[tissue == _ID["liver"]] = 2
    return label


def voxel_centres(affine: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """RAS+ mm coordinates (shape + (3,)) of every voxel of a grid.

    Parameters
    ----------
    affine
        4x4, maps the grid's (i, j, k) indices to RAS+ mm.
    shape
        The grid's shape.

    Returns
    -------
    numpy.ndarray
        float64 array of shape ``shape + (3,)``.
    """
    ijk = np.stack(np.meshgrid(*(np.arange(n, dtype=np.float64) for n in shape), indexing="ij"), axis=-1)
    return ijk @ affine[:3, :3].T + affine[:3, 3]
