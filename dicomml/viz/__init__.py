"""Pictures of volumes (orthogonal views and a slice montage, windowed, with a mask overlay), of 2D images and of a cohort.

Side letters (R/L, A/P, S/I) come from the affine, so they are right whatever
the acquisition orientation. The default is the radiological convention
(patient right on the viewer's left); see :mod:`dicomml.viz.planes`.
"""

from dicomml.viz.cohort import render_cohort, save_cohort_png
from dicomml.viz.image2d import render_images, save_images_png
from dicomml.viz.planes import CONVENTIONS, DisplayGrid, Plane
from dicomml.viz.render import render, save_png
from dicomml.viz.window import window_limits

__all__ = [
    "CONVENTIONS",
    "DisplayGrid",
    "Plane",
    "render",
    "render_cohort",
    "render_images",
    "save_cohort_png",
    "save_images_png",
    "save_png",
    "window_limits",
]
