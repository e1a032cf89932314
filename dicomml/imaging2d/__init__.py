"""2D and projection imaging: radiographs, mammograms, ultrasound, secondary captures, cine.

``lut.py`` maps stored values to display values (Modality LUT, VOI LUT,
inversion, palette colour), ``spacing.py`` finds the physical pixel size,
``orientation.py`` reads laterality, view and Patient Orientation and flips
to a display convention, ``load.py`` puts them together for one file;
``resize.py`` letterboxes, ``prepare.py`` makes and caches a sample,
``dataset.py`` holds :class:`ImageDataset`. Names are imported on first use,
so the indexer's workers, which read only headers, never import torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dicomml._lazy import lazy_exports

if TYPE_CHECKING:
    from dicomml.imaging2d.augment import Planar as Planar
    from dicomml.imaging2d.dataset import ImageDataset as ImageDataset
    from dicomml.imaging2d.load import Image2D as Image2D
    from dicomml.imaging2d.load import load_image as load_image
    from dicomml.imaging2d.orientation import ProjectionHeader as ProjectionHeader
    from dicomml.imaging2d.orientation import display_flips as display_flips
    from dicomml.imaging2d.orientation import projection_header as projection_header
    from dicomml.imaging2d.prepare import ImageConfig as ImageConfig
    from dicomml.imaging2d.prepare import prepare_image as prepare_image
    from dicomml.imaging2d.spacing import Spacing as Spacing
    from dicomml.imaging2d.spacing import physical_spacing as physical_spacing


_EXPORTS = {
    "Image2D": "dicomml.imaging2d.load",
    "load_image": "dicomml.imaging2d.load",
    "ImageConfig": "dicomml.imaging2d.prepare",
    "prepare_image": "dicomml.imaging2d.prepare",
    "ImageDataset": "dicomml.imaging2d.dataset",
    "Planar": "dicomml.imaging2d.augment",
    "ProjectionHeader": "dicomml.imaging2d.orientation",
    "display_flips": "dicomml.imaging2d.orientation",
    "projection_header": "dicomml.imaging2d.orientation",
    "Spacing": "dicomml.imaging2d.spacing",
    "physical_spacing": "dicomml.imaging2d.spacing",
}

__all__ = [
    "Image2D",
    "ImageConfig",
    "ImageDataset",
    "Planar",
    "ProjectionHeader",
    "Spacing",
    "display_flips",
    "load_image",
    "physical_spacing",
    "prepare_image",
    "projection_header",
]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
