"""The adapter from pydicom datasets to arrays: per-frame headers and pixel data."""

from dicomml.dicom.frames import FrameTable, frame_table

__all__ = ["FrameTable", "frame_table"]
