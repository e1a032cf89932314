"""The modalities whose instances are 2D images (projection, ultrasound, captures, photographs).

One list for :class:`~dicomml.imaging2d.ImageDataset`'s default selection, for
``dicomml show`` and for the indexer, which gives a group of such images that
makes no volume the reason :data:`IMAGES_2D` rather than a broken volume's
(and :func:`dicomml.load_series` points from it to the 2D readers); and which
images are in colour (:func:`is_colour`), read by the 2D readers only.
"""

from __future__ import annotations

__all__ = ["IMAGES_2D", "IMAGE_MODALITIES", "VOLUME_SOP_CLASSES", "is_colour"]

IMAGE_MODALITIES = ("CR", "DX", "MG", "IO", "PX", "XA", "RF", "US", "OT", "SC", "XC", "ES", "GM")
#: The ``series`` reason of a group of 2D images that makes no volume.
IMAGES_2D = "2D images, not a volume (ImageDataset reads them)"
#: SOP classes of those modalities whose frames are a volume's reconstructed slices: the series table and
#: ``load_series`` read them, ImageDataset does not (X-Ray 3D Angiographic, X-Ray 3D Craniofacial, Breast Tomosynthesis).
VOLUME_SOP_CLASSES = ("1.2.840.10008.5.1.4.1.1.13.1.1", "1.2.840.10008.5.1.4.1.1.13.1.2", "1.2.840.10008.5.1.4.1.1.13.1.3")


def is_colour(samples_per_pixel: int | None, photometric: str | None) -> bool:
    """Whether images of this Samples per Pixel and Photometric Interpretation are in colour (RGB, YBR, or
    PALETTE COLOR, whose one sample indexes a colour table): not a volume's grey levels."""
    return (samples_per_pixel or 1) > 1 or str(photometric or "").strip() == "PALETTE COLOR"
