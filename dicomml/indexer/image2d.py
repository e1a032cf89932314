"""The manifest columns of 2D and projection images: view, laterality, display, spacing source.

Filled for every image row from the lazily decoded header (a handful of
top-level elements; sequences only when present), so that cohorts of
radiographs, mammograms and ultrasound are picked in SQL.
"""

from __future__ import annotations

from typing import Any

from pydicom.dataset import Dataset

from dicomml.imaging2d.orientation import projection_header
from dicomml.imaging2d.spacing import physical_spacing

__all__ = ["image2d_fields"]


def image2d_fields(ds: Dataset) -> dict[str, Any]:
    """Values of the 2D columns (:data:`~dicomml.indexer.schema.IMAGE2D_FIELDS`) of one image header."""
    header = projection_header(ds)
    return {
        "view": header.view,
        "laterality": header.laterality,
        "patient_orientation": "\\".join(header.patient_orientation) if header.patient_orientation else None,
        "burned_in": header.burned_in,
        "has_voi_lut_table": bool(ds.get("VOILUTSequence")),
        "has_modality_lut_table": bool(ds.get("ModalityLUTSequence")),
        "presentation_lut_shape": str(ds.get("PresentationLUTShape", "") or "").strip().upper() or None,
        "spacing_source": physical_spacing(ds).source,
    }
