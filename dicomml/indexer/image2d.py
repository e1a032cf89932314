"""The manifest columns of 2D and projection images: view, laterality, display, spacing source.

Filled for every image row by the same rules as loading
(:func:`~dicomml.imaging2d.orientation.projection_header`,
:func:`~dicomml.imaging2d.spacing.physical_spacing`), reading the plain
values straight from the raw header (the indexer's decoder, memoized per
batch) and handing sequences to pydicom only when the file has them.
"""

from __future__ import annotations

import functools
from typing import Any

from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset

from dicomml.imaging2d.orientation import projection_header
from dicomml.imaging2d.spacing import physical_spacing

__all__ = ["image2d_fields"]

#: Plain elements the rules read, and how the indexer decodes each (see ``schema.FIELDS``).
_KINDS = {
    "PixelSpacing": "floats",
    "ImagerPixelSpacing": "floats",
    "NominalScannedPixelSpacing": "floats",
    "EstimatedRadiographicMagnificationFactor": "float",
    "PixelSpacingCalibrationType": "text",
    "ImageLaterality": "text",
    "Laterality": "text",
    "ViewPosition": "text",
    "PatientOrientation": "text",
    "BurnedInAnnotation": "text",
    "PresentationLUTShape": "text",
}


@functools.lru_cache(maxsize=64)
def _tag(keyword: str) -> int:
    tag = tag_for_keyword(keyword)
    if tag is None:
        raise KeyError(keyword)
    return int(tag)


class _RawHeader:
    """Values by keyword: plain ones from the indexer's raw decoder, sequences from pydicom when present."""

    def __init__(self, decode: Any, elements: Any, ds: Dataset) -> None:
        self._decode, self._elements, self._ds = decode, elements, ds

    def get(self, key: str, default: Any = None, /) -> Any:
        tag = _tag(key)
        if tag not in self._elements:
            return default
        if key in _KINDS:
            value = self._decode(tag, _KINDS[key])
            return default if value is None else value
        return self._ds.get(key, default)

    def __contains__(self, key: Any, /) -> bool:
        return _tag(str(key)) in self._elements


def _non_empty(elements: Any, tag: int) -> bool:
    """Whether the element is present with a value (a sequence with items)."""
    return tag in elements and elements[tag][2] > elements[tag][1]


def image2d_fields(decode: Any, elements: Any, ds: Dataset) -> dict[str, Any]:
    """Values of the 2D columns (:data:`~dicomml.indexer.schema.IMAGE2D_FIELDS`) of one image header.

    Parameters
    ----------
    decode
        ``decode(tag, kind)``: the indexer's value decoder (``kind`` as in ``schema.FIELDS``).
    elements
        The header's top-level elements: tag -> (VR, value start, value end, implicit).
    ds
        The same header as a lazily decoded pydicom Dataset, for sequences.
    """
    header = _RawHeader(decode, elements, ds)
    projection = projection_header(header)
    return {
        "view": projection.view,
        "laterality": projection.laterality,
        "patient_orientation": "\\".join(projection.patient_orientation) if projection.patient_orientation else None,
        "burned_in": projection.burned_in,
        "has_voi_lut_table": _non_empty(elements, 0x00283010),
        "has_modality_lut_table": _non_empty(elements, 0x00283000),
        "presentation_lut_shape": (header.get("PresentationLUTShape") or "").strip().upper() or None,
        "spacing_source": physical_spacing(header).source,
    }
