"""The modalities whose instances are 2D images (projection, ultrasound, captures, photographs).

One list for :class:`~dicomml.imaging2d.ImageDataset`'s default selection, for
``dicomml show`` and for the indexer, which says that a group of such images
that is no volume holds 2D images rather than a broken volume.
"""

from __future__ import annotations

__all__ = ["IMAGE_MODALITIES"]

IMAGE_MODALITIES = ("CR", "DX", "MG", "IO", "PX", "XA", "RF", "US", "OT", "SC", "XC", "ES", "GM")
