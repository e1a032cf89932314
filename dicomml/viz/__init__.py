"""Pictures of volumes: orthogonal views and a slice montage, windowed, with a mask overlay.

Side letters (R/L, A/P, S/I) come from the affine, so they are right whatever
the acquisition orientation. The default is the radiological convention
(patient right on the viewer's left); see :mod:`dicomml.viz.planes`.
"""

from dicomml.viz.planes import CONVENTIONS, DisplayGrid, Plane
from dicomml.viz.render import render, save_png
from dicomml.viz.window import window_limits

__all__ = ["CONVENTIONS", "DisplayGrid", "Plane", "render", "save_png", "window_limits"]
