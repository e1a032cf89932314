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

import importlib
from typing import Any

_EXPORTS = {
    "Image2D": "dicomml.imaging2d.load",
    "load_image": "dicomml.imaging2d.load",
    "ImageConfig": "dicomml.imaging2d.prepare",
    "prepare_image": "dicomml.imaging2d.prepare",
    "preprocess_images": "dicomml.imaging2d.prepare",
    "ImageDataset": "dicomml.imaging2d.dataset",
    "Planar": "dicomml.imaging2d.augment",
    "ProjectionHeader": "dicomml.imaging2d.orientation",
    "display_flips": "dicomml.imaging2d.orientation",
    "projection_header": "dicomml.imaging2d.orientation",
    "Spacing": "dicomml.imaging2d.spacing",
    "physical_spacing": "dicomml.imaging2d.spacing",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'dicomml.imaging2d' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
