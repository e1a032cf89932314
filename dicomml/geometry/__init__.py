"""Pure geometry: affines, axis codes and slice stacks.

Everything here is a function of arrays (affine, shape, positions) with no I/O.
Conventions: millimetres; affines are 4x4 and map array indices, in the array's
own axis order, to RAS+ world coordinates (nibabel and MONAI's convention);
DICOM inputs (ImagePositionPatient, ImageOrientationPatient) are LPS+.
Names are imported on first use: ``directions`` (read by every transform)
needs no nibabel.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dicomml._lazy import lazy_exports

if TYPE_CHECKING:
    from dicomml.geometry.affine import LPS_TO_RAS as LPS_TO_RAS
    from dicomml.geometry.affine import axcodes as axcodes
    from dicomml.geometry.affine import dicom_affine as dicom_affine
    from dicomml.geometry.affine import spacing_of as spacing_of
    from dicomml.geometry.checks import geometry_problem as geometry_problem
    from dicomml.geometry.stack import StackGeometry as StackGeometry
    from dicomml.geometry.stack import analyze_stack as analyze_stack
    from dicomml.geometry.stack import slice_normal as slice_normal

_EXPORTS = {
    "LPS_TO_RAS": "dicomml.geometry.affine",
    "StackGeometry": "dicomml.geometry.stack",
    "analyze_stack": "dicomml.geometry.stack",
    "axcodes": "dicomml.geometry.affine",
    "dicom_affine": "dicomml.geometry.affine",
    "geometry_problem": "dicomml.geometry.checks",
    "slice_normal": "dicomml.geometry.stack",
    "spacing_of": "dicomml.geometry.affine",
}

__all__ = ["LPS_TO_RAS", "StackGeometry", "analyze_stack", "axcodes", "dicom_affine", "geometry_problem", "slice_normal", "spacing_of"]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
