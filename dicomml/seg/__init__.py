"""Segmentation masks: DICOM SEG and RTSTRUCT decoded onto the image grid.

``seg_to_grid`` and ``rtstruct_to_grid`` are the array-level cores: an object
and a reference :class:`~dicomml.Volume` in, a mask Volume on exactly that grid
out. ``load_mask`` and ``pairs`` wire them to the manifest. ``write_seg`` and
``write_rtstruct`` go the other way: a prediction back onto its source
series' grid, as a DICOM SEG or an RT Structure Set.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dicomml._lazy import lazy_exports

if TYPE_CHECKING:
    from dicomml.seg.dicomseg import read_segmentation as read_segmentation
    from dicomml.seg.dicomseg import seg_to_grid as seg_to_grid
    from dicomml.seg.dicomseg import select_segments as select_segments
    from dicomml.seg.labelmap import AnnotationRecord as AnnotationRecord
    from dicomml.seg.labelmap import annotation_records as annotation_records
    from dicomml.seg.load import load_mask as load_mask
    from dicomml.seg.load import pairs as pairs
    from dicomml.seg.rtstruct import fill_polygons as fill_polygons
    from dicomml.seg.rtstruct import rtstruct_to_grid as rtstruct_to_grid
    from dicomml.seg.rtwrite import write_rtstruct as write_rtstruct
    from dicomml.seg.write import write_seg as write_seg


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

__all__ = [
    "AnnotationRecord",
    "annotation_records",
    "fill_polygons",
    "load_mask",
    "pairs",
    "read_segmentation",
    "rtstruct_to_grid",
    "seg_to_grid",
    "select_segments",
    "write_rtstruct",
    "write_seg",
]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
