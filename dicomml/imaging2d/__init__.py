"""2D and projection imaging: radiographs, mammograms, ultrasound, secondary captures, cine.

``lut.py`` maps stored values to display values (Modality LUT, VOI LUT,
inversion, palette colour), ``spacing.py`` finds the physical pixel size,
``orientation.py`` reads laterality, view and Patient Orientation and flips
to a display convention, ``load.py`` puts them together for one file.
"""

from dicomml.imaging2d.load import Image2D, load_image
from dicomml.imaging2d.orientation import ProjectionHeader, display_flips, projection_header
from dicomml.imaging2d.spacing import Spacing, physical_spacing

__all__ = ["Image2D", "ProjectionHeader", "Spacing", "display_flips", "load_image", "physical_spacing", "projection_header"]
