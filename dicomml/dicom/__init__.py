"""The adapter from pydicom datasets to arrays: per-frame headers and pixel data.

Names are imported on first use, so the modules of this package that need no
pydicom (``philips``' constants, read by the config) import none.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dicomml._lazy import lazy_exports

if TYPE_CHECKING:
    from dicomml.dicom.frames import FrameTable as FrameTable
    from dicomml.dicom.frames import frame_table as frame_table

_EXPORTS = {"FrameTable": "dicomml.dicom.frames", "frame_table": "dicomml.dicom.frames"}

__all__ = ["FrameTable", "frame_table"]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
