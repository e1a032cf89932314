"""Segmentation masks: DICOM SEG and RTSTRUCT decoded onto the image grid.

``seg_to_grid`` and ``rtstruct_to_grid`` are the array-level cores: an object
and a reference :class:`~dicomml.Volume` in, a mask Volume on exactly that grid
out. ``load_mask`` and ``pairs`` wire them to the manifest.
"""

from dicomml.seg.dicomseg import read_segmentation, seg_to_grid, select_segments
from dicomml.seg.load import load_mask, pairs
from dicomml.seg.rtstruct import fill_polygons, rtstruct_to_grid

__all__ = [
    "fill_polygons",
    "load_mask",
    "pairs",
    "read_segmentation",
    "rtstruct_to_grid",
    "seg_to_grid",
    "select_segments",
]
