"""Segmentation masks: DICOM SEG and RTSTRUCT decoded onto the image grid.

``seg_to_grid`` and ``rtstruct_to_grid`` are the array-level cores: an object
and a reference :class:`~dicomml.Volume` in, a mask Volume on exactly that grid
out. ``load_mask`` and ``pairs`` wire them to the manifest. ``write_seg`` and
``write_rtstruct`` go the other way: a prediction back onto its source
series' grid, as a DICOM SEG or an RT Structure Set.
"""

from dicomml.seg.dicomseg import read_segmentation, seg_to_grid, select_segments
from dicomml.seg.load import load_mask, pairs
from dicomml.seg.rtstruct import fill_polygons, rtstruct_to_grid
from dicomml.seg.rtwrite import write_rtstruct
from dicomml.seg.write import write_seg

__all__ = [
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
