"""Directions (diffusion gradients) as components along an image's array axes. Pure: arrays in, arrays out.

A direction stored this way follows its image through reorientation and
resampling: :func:`reaxis_table` re-expresses it for the new grid.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["fsl_bvecs", "gradients_in_axes", "reaxis_table"]


def gradients_in_axes(ras: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """(n, 3) directions in RAS+ as components along the three array axes of ``affine``."""
    columns = np.asarray(affine, dtype=np.float64)[:3, :3]
    return np.asarray(ras, dtype=np.float64) @ (columns / np.linalg.norm(columns, axis=0))


def reaxis_table(meta: Mapping[str, Any], old_affine: np.ndarray, new_affine: np.ndarray) -> dict[str, Any]:
    """``meta`` with its gradients re-expressed along the axes of ``new_affine`` (a new grid of the same image)."""
    table = meta.get("volumes")
    if not isinstance(table, Mapping) or "gradient" not in table:
        return dict(meta)
    old = np.asarray(old_affine, dtype=np.float64)[:3, :3]
    ras = np.asarray(table["gradient"], dtype=np.float64) @ (old / np.linalg.norm(old, axis=0)).T
    return {**meta, "volumes": {**table, "gradient": gradients_in_axes(ras, new_affine).round(6).tolist()}}


def fsl_bvecs(gradients: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """(3, n) rows of a ``.bvec`` file, FSL's convention as dcm2niix writes it.

    Parameters
    ----------
    gradients
        (n, 3) components along the axes of ``affine``.
    affine
        4x4 of the image as the NIfTI stores it (axes x, y, z); the first
        component is negated when its determinant is positive (FSL's
        radiological convention).
    """
    out = np.asarray(gradients, dtype=np.float64).copy()
    if np.linalg.det(np.asarray(affine)[:3, :3]) > 0:
        out[:, 0] *= -1
    return out.T
