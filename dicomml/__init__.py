"""dicomml: DICOM archives to training-ready PyTorch tensors.

The top level re-exports the handful of names most code needs; each is
imported on first use, so ``import dicomml`` stays cheap in worker processes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dicomml._lazy import lazy_exports

if TYPE_CHECKING:
    from dicomml.assemble import load_files as load_files
    from dicomml.assemble import load_series as load_series
    from dicomml.cache import Cache as Cache
    from dicomml.data import PatchDataset as PatchDataset
    from dicomml.data import SegmentationDataset as SegmentationDataset
    from dicomml.data import SeriesDataset as SeriesDataset
    from dicomml.data import StudyDataset as StudyDataset
    from dicomml.distributed import preprocess as preprocess
    from dicomml.distributed import preprocess_images as preprocess_images
    from dicomml.imaging2d import ImageDataset as ImageDataset
    from dicomml.indexer import Manifest as Manifest
    from dicomml.indexer import index as index
    from dicomml.seg import load_mask as load_mask
    from dicomml.seg import pairs as pairs
    from dicomml.seg import write_rtstruct as write_rtstruct
    from dicomml.seg import write_seg as write_seg
    from dicomml.volume import Volume as Volume


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
    "preprocess_images": "dicomml.distributed",
    "write_seg": "dicomml.seg",
    "write_rtstruct": "dicomml.seg",
}

__all__ = [
    "Cache",
    "ImageDataset",
    "Manifest",
    "PatchDataset",
    "SegmentationDataset",
    "SeriesDataset",
    "StudyDataset",
    "Volume",
    "index",
    "load_files",
    "load_mask",
    "load_series",
    "pairs",
    "preprocess",
    "preprocess_images",
    "write_rtstruct",
    "write_seg",
]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
