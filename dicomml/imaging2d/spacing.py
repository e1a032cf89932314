"""Physical pixel size of 2D and projection images.

PS3.3 gives three spacings to a projection radiograph (section 10.7.1.3 and
the DX, MG and CR modules): Imager Pixel Spacing (0018,1164) at the front
of the detector; Pixel Spacing (0028,0030) in the patient, calibrated when
it differs from Imager Pixel Spacing or names a Pixel Spacing Calibration
Type (0028,0A02); and the Estimated Radiographic Magnification Factor
(0018,1114) that brings detector spacing to the isocentre. Ultrasound keeps
its scale in the Sequence of Ultrasound Regions, digitised film in Nominal
Scanned Pixel Spacing. Enhanced objects (Breast Tomosynthesis, Breast
Projection X-Ray) keep Pixel Spacing in the Pixel Measures functional group
(PS3.3 C.7.6.16.2.1), read for the first frame. :func:`physical_spacing`
picks one in that order of trust and names where it came from; with none it
says so instead of assuming 1 mm.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol, cast

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from dicomml.dicom.frames import functional_item

__all__ = ["SPACING_SOURCES", "HeaderValues", "Spacing", "physical_spacing"]


class HeaderValues(Protocol):
    """What the 2D header rules read: values by DICOM keyword (a pydicom Dataset, or the indexer's raw header)."""

    def get(self, key: str, default: Any = None, /) -> Any: ...

    def __contains__(self, key: Any, /) -> bool: ...


#: Values of ``Spacing.source`` (and the manifest's ``spacing_source``).
SPACING_SOURCES = (
    "pixel_spacing",  # Pixel Spacing: in the patient (calibrated) or a cross-sectional image's own
    "magnification_corrected",  # Imager Pixel Spacing / Estimated Radiographic Magnification Factor
    "imager_pixel_spacing",  # at the detector: objects are magnified by the beam's divergence
    "ultrasound_region",  # physical deltas of an ultrasound region in cm
    "nominal_scanned",  # Nominal Scanned Pixel Spacing of digitised film
    "none",  # no spacing in the header
)
#: Physical Units X/Y Direction (0018,6024/6026) value for centimetres.
_CM = 3


@dataclass(frozen=True)
class Spacing:
    """Row and column spacing of a 2D image.

    Attributes
    ----------
    row, column
        Millimetres between adjacent rows and between adjacent columns
        (Pixel Spacing's order), or None when the header gives none.
    source
        One of :data:`SPACING_SOURCES`.
    """

    row: float | None
    column: float | None
    source: str

    @property
    def known(self) -> bool:
        """Whether the header gave a physical size."""
        return self.row is not None


def _pair(value: object) -> tuple[float, float] | None:
    """Two positive finite numbers from a header value, else None (plain Python: the indexer calls this per file)."""
    if value is None:
        return None
    items: list[Any] = list(value) if isinstance(value, (list, tuple, MultiValue)) else [value]
    try:
        numbers = [float(v) for v in items[:2]]
    except (TypeError, ValueError):
        return None
    if len(numbers) < 2 or not all(math.isfinite(v) and v > 0 for v in numbers):
        return None
    return numbers[0], numbers[1]


def _close(a: tuple[float, float], b: tuple[float, float]) -> bool:
    return all(math.isclose(x, y, rel_tol=1e-6) for x, y in zip(a, b))


def _ultrasound(ds: HeaderValues) -> tuple[float, float] | None:
    """(row, column) mm of the first region whose deltas are in cm, equal across such regions."""
    found = None
    for region in ds.get("SequenceOfUltrasoundRegions") or []:
        if region.get("PhysicalUnitsXDirection") != _CM or region.get("PhysicalUnitsYDirection") != _CM:
            continue
        pair = _pair([region.get("PhysicalDeltaY"), region.get("PhysicalDeltaX")])
        if pair is None:
            continue
        pair = (abs(pair[0]) * 10.0, abs(pair[1]) * 10.0)
        if found is None:
            found = pair
        elif not _close(found, pair):
            return None  # regions of different scale: no one spacing holds for the whole image
    return found


def physical_spacing(ds: HeaderValues) -> Spacing:
    """The physical pixel size of a 2D image and where it came from.

    Parameters
    ----------
    ds
        The image's header (a pydicom Dataset, or anything that gives values by keyword).

    Returns
    -------
    Spacing
        In mm, (row, column) order; ``source="none"`` and None spacings when
        the header holds no usable spacing.

    Examples
    --------
    >>> from pydicom.dataset import Dataset
    >>> ds = Dataset()
    >>> ds.ImagerPixelSpacing = [0.2, 0.2]
    >>> ds.EstimatedRadiographicMagnificationFactor = 2.0
    >>> physical_spacing(ds)
    Spacing(row=0.1, column=0.1, source='magnification_corrected')
    """
    imager = _pair(ds.get("ImagerPixelSpacing"))
    pixel = _pair(ds.get("PixelSpacing"))
    if pixel is None:
        measures = functional_item(cast(Dataset, ds), 0, "PixelMeasuresSequence")  # reads the header's values by keyword only
        pixel = _pair(measures.get("PixelSpacing")) if measures is not None else None
    calibrated = bool(str(ds.get("PixelSpacingCalibrationType", "") or "").strip())
    if pixel is not None and (imager is None or calibrated or not _close(pixel, imager)):
        return Spacing(pixel[0], pixel[1], "pixel_spacing")
    if imager is not None:
        factor = ds.get("EstimatedRadiographicMagnificationFactor")
        if factor is not None and math.isfinite(float(factor)) and float(factor) > 0:
            return Spacing(imager[0] / float(factor), imager[1] / float(factor), "magnification_corrected")
        return Spacing(imager[0], imager[1], "imager_pixel_spacing")
    region = _ultrasound(ds) if "SequenceOfUltrasoundRegions" in ds else None
    if region is not None:
        return Spacing(region[0], region[1], "ultrasound_region")
    scanned = _pair(ds.get("NominalScannedPixelSpacing"))
    if scanned is not None:
        return Spacing(scanned[0], scanned[1], "nominal_scanned")
    return Spacing(None, None, "none")
