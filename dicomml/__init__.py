"""dicomml: DICOM archives to training-ready PyTorch tensors.

The top level re-exports the handful of names most code needs; each is
imported on first use, so ``import dicomml`` stays cheap in worker processes.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "Volume": "dicomml.volume",
    "index": "dicomml.indexer",
    "Manifest": "dicomml.indexer",
    "load_series": "dicomml.assemble",
    "load_files": "dicomml.assemble",
    "load_mask": "dicomml.seg",
    "pairs": "dicomml.seg",
    "Cache": "dicomml.cache",
    "SeriesDataset": "dicomml.data",
    "StudyDataset": "dicomml.data",
    "SegmentationDataset": "dicomml.data",
    "PatchDataset": "dicomml.data",
    "ImageDataset": "dicomml.imaging2d",
    "preprocess": "dicomml.distributed",
    "write_seg": "dicomml.seg",
    "write_rtstruct": "dicomml.seg",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'dicomml' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
