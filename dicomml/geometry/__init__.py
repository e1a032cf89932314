"""Pure geometry: affines, axis codes and slice stacks.

Everything here is a function of arrays (affine, shape, positions) with no I/O.
Conventions: millimetres; affines are 4x4 and map array indices, in the array's
own axis order, to RAS+ world coordinates (nibabel and MONAI's convention);
DICOM inputs (ImagePositionPatient, ImageOrientationPatient) are LPS+.
"""

from dicomml.geometry.affine import (
    LPS_TO_RAS,
    axcodes,
    dicom_affine,
    spacing_of,
)
from dicomml.geometry.checks import geometry_problem
from dicomml.geometry.stack import StackGeometry, analyze_stack, slice_normal

__all__ = [
    "LPS_TO_RAS",
    "StackGeometry",
    "analyze_stack",
    "axcodes",
    "dicom_affine",
    "geometry_problem",
    "slice_normal",
    "spacing_of",
]
