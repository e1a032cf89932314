"""Segmentation masks: DICOM SEG and RTSTRUCT decoded onto the image grid.

``seg_to_grid`` and ``rtstruct_to_grid`` are the array-level cores: an object
and a reference :class:`~dicomml.Volume` in, a mask Volume on exactly that grid
out. ``load_mask`` and ``pairs`` wire them to the manifest. ``write_seg`` and
``write_rtstruct`` go the other way: a prediction back onto its source
series' grid, as a DICOM SEG or an RT Structure Set.
"""

from __future__ import annotations

import importlib
from typing import Any

#: public name -> module; imported on first use, so RTSTRUCT works without highdicom (the [seg] extra)
_EXPORTS = {
    "AnnotationRecord": "dicomml.seg.labelmap",
    "annotation_records": "dicomml.seg.labelmap",
    "fill_polygons": "dicomml.seg.rtstruct",
    "load_mask": "dicomml.seg.load",
    "pairs": "dicomml.seg.load",
    "read_segmentation": "dicomml.seg.dicomseg",
    "rtstruct_to_grid": "dicomml.seg.rtstruct",
    "seg_to_grid": "dicomml.seg.dicomseg",
    "select_segments": "dicomml.seg.dicomseg",
    "write_rtstruct": "dicomml.seg.rtwrite",
    "write_seg": "dicomml.seg.write",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'dicomml.seg' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
